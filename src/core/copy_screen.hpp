// Shared by the GPU backends' single-query screens, which scan an fp16 copy of fp32 rows and
// answer only where error bounds prove the answer exact (CUDA: CudaFlatStore::single_screen;
// Vulkan: VulkanFlatStore::screen_params). The bounds themselves differ per backend.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>

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

}  // namespace hive::gpu::detail
