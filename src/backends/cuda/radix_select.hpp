// CUDA backend: exact top-k by radix selection, for k above the warp select's register lists
// (k <= kMaxK). Cost is a few passes over the scores whatever k is, where the bitonic chunk sort
// grows with k.
#pragma once
#include "backends/cuda/gpu_runtime.hpp"

#include <cstddef>
#include <cstdint>

namespace hive::gpu::HIVE_GPU_DEVICE_NS {

// Device memory (bytes) radix_select needs for nq queries of n rows and this k.
std::size_t radix_select_workspace_bytes(std::size_t nq, std::size_t n, int k);

// For each query q < nq: the k best (smallest) keys make_key(scores[q * ld + r], r), r < n,
// sorted ascending, into out[q * out_ld + j], j < k (only those slots are written, so
// out_ld >= k is enough); when fewer than k rows are live the remaining slots get kEmptyKey.
// Rows set in `deleted` (a bitmap over rows, may be null) and NaN scores never enter. Keys
// compare as 64-bit unsigned (score order in the high half, row in the low half; -0 ranks as
// +0), so ties go to the smaller row: exactly what select_from_scores(..., Transform::Raw, ...)
// gives. 1 <= k <= kMaxK, n < 2^32, nq <= 65535. `workspace` (device memory of at least
// radix_select_workspace_bytes(nq, n, k)) is reset on the stream by every call, so it can be
// reused by the next call on the same stream. Enqueues only: no allocation, no host sync.
void radix_select(const float* scores, std::size_t ld, std::size_t nq, std::size_t n, const uint32_t* deleted,
                  int k, uint64_t* out, std::size_t out_ld, void* workspace, cudaStream_t stream);

}  // namespace hive::gpu::HIVE_GPU_DEVICE_NS
