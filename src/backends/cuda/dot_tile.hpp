// CUDA backend: a portable shared-memory tiled matrix product (queries x stored rows), with no
// BLAS, vendor intrinsics or warp-level primitives, so the same source builds for CUDA and HIP.
// It is the large-batch path where no BLAS exists (AMD).
#pragma once
#include <cstddef>

#include "backends/cuda/gpu_runtime.hpp"  // defines cudaStream_t (CUDA or HIP) and the macro HIVE_GPU_DEVICE_NS
#include "hive_gpu/types.hpp"            // hive::gpu::ScalarType {F32, F16, BF16, Bits}

namespace hive::gpu::HIVE_GPU_DEVICE_NS {

// out[q * ld + r] = sum_j queries[q * dim + j] * decode(rows[r * dim + j]), for q < nq, r < n:
// fp32 accumulation; rows in their storage encoding (F32, F16 or BF16, row-major, n x dim,
// device memory, 16-byte aligned base); queries fp32 row-major nq x dim in device memory;
// out device memory with leading dimension ld >= n. Enqueues on `stream`, checks the launch.
// Only out[q * ld + r] with q < nq, r < n is written. Each sum is taken in index order with
// fused multiply-adds, so the result does not depend on the launch (deterministic).
void launch_dot_tile(const void* rows, std::size_t n, ScalarType storage, const float* queries, std::size_t nq,
                     std::size_t dim, float* out, std::size_t ld, cudaStream_t stream);

}  // namespace hive::gpu::HIVE_GPU_DEVICE_NS
