// The runtime API of the CUDA tree: CUDA's own, or HIP's through the vendor header when the
// same sources are compiled for AMD GPUs (HIVE_GPU_HIP). Include this instead of
// <cuda_runtime_api.h>.
//
// HIVE_GPU_DEVICE_NS names the tree's namespace, hive::gpu::cuda or hive::gpu::hip, so that a
// build with both toolchains links both backends into one library without clashes.
#pragma once

#if defined(HIVE_GPU_HIP)
#include "backends/hip/hip_vendor.hpp"
#define HIVE_GPU_DEVICE_NS hip
#else
#include <cuda_runtime_api.h>
#define HIVE_GPU_DEVICE_NS cuda
#endif
