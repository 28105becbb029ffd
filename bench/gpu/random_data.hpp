// GPU benchmarks: deterministic data (xorshift64), the same for the same seed: uniform [-1, 1),
// and clustered (what graph indexes are built for).
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

// n points around `centers` centres (uniform in [-1, 1)^d, fixed by centre_seed, so base and
// queries drawn with different seeds share them), each coordinate offset by uniform noise of
// half-width 0.25.
inline std::vector<float> clustered_data(std::size_t n, std::size_t d, uint64_t seed, std::size_t centers = 1000,
                                         uint64_t centre_seed = 7) {
  const std::vector<float> c = uniform_data(centers * d, centre_seed);
  const std::vector<float> noise = uniform_data(n * d, seed);
  const std::vector<float> pick = uniform_data(n, seed + 1000003);
  std::vector<float> v(n * d);
  for (std::size_t i = 0; i < n; ++i) {
    const auto cc = std::size_t((pick[i] + 1.0f) * 0.5f * float(centers)) % centers;
    for (std::size_t j = 0; j < d; ++j) v[i * d + j] = c[cc * d + j] + 0.25f * noise[i * d + j];
  }
  return v;
}

}  // namespace hive::gpu::bench
