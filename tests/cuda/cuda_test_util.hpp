// Helpers shared by the kernel-level CUDA tests: device detection (tests skip, not pass, where
// no GPU exists), scoped device memory, and the float64 reference score.
#pragma once
#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstddef>

#include "hive_gpu/types.hpp"

namespace hive::gpu::cuda::test {

inline bool has_device() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    (void)cudaGetLastError();
    return false;
  }
  return count > 0;
}

// Device memory freed on scope exit (null when the allocation failed).
struct DeviceMem {
  void* p = nullptr;
  explicit DeviceMem(std::size_t bytes) {
    if (cudaMalloc(&p, std::max<std::size_t>(bytes, 1)) != cudaSuccess) p = nullptr;
  }
  ~DeviceMem() { cudaFree(p); }
  DeviceMem(const DeviceMem&) = delete;
  DeviceMem& operator=(const DeviceMem&) = delete;
  template <class T>
  T* as() const {
    return static_cast<T*>(p);
  }
};

// The float64 score of a against b, smaller is nearer: L2 squared distance, inner product -dot,
// cosine 1 - cos (on the raw vectors).
inline double exact_score(Metric m, const float* a, const float* b, std::size_t dim) {
  double s = 0, na = 0, nb = 0;
  for (std::size_t j = 0; j < dim; ++j) {
    const double x = a[j], y = b[j];
    if (m == Metric::L2) s += (x - y) * (x - y);
    else s += x * y;
    na += x * x;
    nb += y * y;
  }
  if (m == Metric::L2) return s;
  if (m == Metric::InnerProduct) return -s;
  return 1.0 - s / std::sqrt(na * nb);
}

}  // namespace hive::gpu::cuda::test

#define REQUIRE_DEVICE()                                                                  \
  do {                                                                                    \
    if (!::hive::gpu::cuda::test::has_device()) GTEST_SKIP() << "CUDA has no device";     \
  } while (0)

#define CUDA_OK(call) ASSERT_EQ(cudaSuccess, (call)) << #call
