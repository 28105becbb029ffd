// Shared by the GPU backends' screens: the single-query ones scan an fp16 copy of fp32 rows and
// answer only where error bounds prove the answer exact (CUDA: CudaFlatStore::single_screen;
// Vulkan: VulkanFlatStore::screen_params), the batch ones take thresholds from a sample of rows.
// The bounds themselves differ per backend.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <vector>

namespace hive::gpu::detail {

// A query's magnitudes, which the bounds and the range checks of its scaling need.
struct QueryMagnitudes {
  double norm2 = 0, l1 = 0, max = 0;
  double min_nonzero = std::numeric_limits<double>::infinity();  // of the nonzero |q_j|
};
inline QueryMagnitudes query_magnitudes(const float* q, std::size_t dim) {
  QueryMagnitudes m;
  for (std::size_t j = 0; j < dim; ++j) {
    const double v = std::fabs(double(q[j]));
    m.norm2 += v * v;
    m.l1 += v;
    m.max = std::max(m.max, v);
    if (v > 0) m.min_nonzero = std::min(m.min_nonzero, v);
  }
  return m;
}

// The screen's outcomes since its copy was made. It stops trying after 8 or more inconclusive
// answers that are over a quarter of its tries (data whose near distances fp16 cannot resolve:
// each try then costs a scan of the copy on top of the fp32 rows).
struct ScreenTally {
  unsigned tries = 0, misses = 0;
  bool worth_trying() const { return !(misses >= 8 && 4 * misses > tries); }
  void note(bool inconclusive) {
    ++tries;
    if (inconclusive) ++misses;
  }
  void reset() { tries = misses = 0; }
};

// The batch screens' sample (CUDA and Vulkan): live rows spread evenly over [0, n), the first
// row of each of m strides [i n / m, (i + 1) n / m) that `deleted(r)` does not mark (a stride
// with none gives no row), in order. Stepped without a division per row (two 64-bit divisions a
// row made this ~0.4 ms for 31 250 rows). m >= 1.
template <class Deleted>
std::vector<uint32_t> spread_sample(std::size_t n, std::size_t m, Deleted&& deleted) {
  std::vector<uint32_t> idx;
  idx.reserve(m);
  const std::size_t q = n / m, rem = n % m;
  std::size_t start = 0, frac = 0;  // start = i n / m, frac = i n % m
  for (std::size_t i = 0; i < m; ++i) {
    std::size_t end = start + q;
    frac += rem;
    if (frac >= m) {
      frac -= m;
      ++end;
    }
    std::size_t r = start;
    while (r < end && deleted(r)) ++r;
    if (r < end) idx.push_back(uint32_t(r));
    start = end;
  }
  return idx;
}

}  // namespace hive::gpu::detail
