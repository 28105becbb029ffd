// GPU benchmarks: the deterministic uniform [-1, 1) data both benchmarks use (xorshift64), so
// their data sets are the same for the same seed.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

namespace hive::gpu::bench {

inline std::vector<float> uniform_data(std::size_t count, uint64_t seed) {
  std::vector<float> v(count);
  uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
  for (auto& x : v) {
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    x = float(double(s >> 11) * (2.0 / 9007199254740992.0) - 1.0);
  }
  return v;
}

}  // namespace hive::gpu::bench
