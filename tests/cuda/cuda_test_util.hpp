// Helpers shared by the kernel-level CUDA tests: device detection (tests skip, not pass, where
// no GPU exists) and scoped device memory.
#pragma once
#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstddef>

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

}  // namespace hive::gpu::cuda::test

#define REQUIRE_DEVICE()                                                                  \
  do {                                                                                    \
    if (!::hive::gpu::cuda::test::has_device()) GTEST_SKIP() << "CUDA has no device";     \
  } while (0)

#define CUDA_OK(call) ASSERT_EQ(cudaSuccess, (call)) << #call
