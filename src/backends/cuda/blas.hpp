// CUDA backend: cuBLAS, loaded at run time (dlopen) so that a library built with CUDA still
// loads on machines without the CUDA toolkit's cuBLAS; without it the large-batch path falls
// back to the scan.
#pragma once
#include "backends/cuda/gpu_runtime.hpp"

#include <cstddef>
#include <string>

namespace hive::gpu::HIVE_GPU_DEVICE_NS {

class BlasHandle {
 public:
  // An unusable handle (ok() false) when cuBLAS cannot be loaded or initialised.
  explicit BlasHandle(cudaStream_t stream);
  ~BlasHandle();
  BlasHandle(const BlasHandle&) = delete;
  BlasHandle& operator=(const BlasHandle&) = delete;
  bool ok() const { return handle_ != nullptr; }

  // out[q * ld + r] = dot(queries[q], rows[r]) for q < nq, r < n (both row-major, dim wide).
  // tf32: TF32 tensor cores (about 10 mantissa bits) instead of full fp32.
  void dot_products(const float* rows, std::size_t n, const float* queries, std::size_t nq, std::size_t dim,
                    float* out, std::size_t ld, bool tf32);
  // The same with fp16 (bf16 when `bf16`) rows and queries, fp32 accumulation and output
  // (cublasGemmEx, tensor cores). Returns false, doing nothing, where cublasGemmEx is missing.
  bool dot_products_half(const void* rows, std::size_t n, const void* queries, std::size_t nq, std::size_t dim,
                         bool bf16, float* out, std::size_t ld);

 private:
  void* handle_ = nullptr;
};

// Why cuBLAS is unavailable (empty when it loaded).
std::string blas_unavailable_reason();

}  // namespace hive::gpu::HIVE_GPU_DEVICE_NS
