#include "backends/cuda/blas.hpp"

#include <cublas_v2.h>
#include <dlfcn.h>

#include <mutex>

#include "hive_gpu/error.hpp"

namespace hive::gpu::HIVE_GPU_DEVICE_NS {
namespace {

struct Api {
  decltype(&cublasCreate_v2) create = nullptr;
  decltype(&cublasDestroy_v2) destroy = nullptr;
  decltype(&cublasSetStream_v2) set_stream = nullptr;
  decltype(&cublasSetMathMode) set_math_mode = nullptr;
  decltype(&cublasSgemm_v2) sgemm = nullptr;
  // Optional; spelled out because cublas_api.h overloads cublasGemmEx for C++.
  using GemmEx = cublasStatus_t (*)(cublasHandle_t, cublasOperation_t, cublasOperation_t, int, int, int, const void*,
                                    const void*, cudaDataType, int, const void*, cudaDataType, int, const void*, void*,
                                    cudaDataType, int, cublasComputeType_t, cublasGemmAlgo_t);
  GemmEx gemm_ex = nullptr;
  std::string error;
  bool ok() const { return sgemm != nullptr; }
};

template <class F>
bool bind(void* lib, const char* name, F& fn) {
  fn = reinterpret_cast<F>(dlsym(lib, name));
  return fn != nullptr;
}

const Api& api() {
  static const Api a = [] {
    Api r;
    void* lib = nullptr;
    for (const char* name : {"libcublas.so.13", "libcublas.so.12", "libcublas.so"}) {
      lib = dlopen(name, RTLD_NOW | RTLD_LOCAL);
      if (lib) break;
    }
    if (!lib) {
      const char* e = dlerror();
      r.error = std::string("cannot load libcublas: ") + (e ? e : "unknown error");
      return r;
    }
    Api t;
    if (!bind(lib, "cublasCreate_v2", t.create) || !bind(lib, "cublasDestroy_v2", t.destroy) ||
        !bind(lib, "cublasSetStream_v2", t.set_stream) || !bind(lib, "cublasSetMathMode", t.set_math_mode) ||
        !bind(lib, "cublasSgemm_v2", t.sgemm)) {
      r.error = "libcublas lacks an expected symbol";
      return r;
    }
    bind(lib, "cublasGemmEx", t.gemm_ex);
    return t;  // the library stays loaded for the life of the process
  }();
  return a;
}

}  // namespace

std::string blas_unavailable_reason() { return api().error; }

BlasHandle::BlasHandle(cudaStream_t stream) {
  const Api& a = api();
  if (!a.ok()) return;
  cublasHandle_t h = nullptr;
  if (a.create(&h) != CUBLAS_STATUS_SUCCESS) return;
  if (a.set_stream(h, stream) != CUBLAS_STATUS_SUCCESS) {
    a.destroy(h);
    return;
  }
  handle_ = h;
}

BlasHandle::~BlasHandle() {
  if (handle_) api().destroy(static_cast<cublasHandle_t>(handle_));
}

void BlasHandle::dot_products(const float* rows, std::size_t n, const float* queries, std::size_t nq, std::size_t dim,
                              float* out, std::size_t ld, bool tf32) {
  const Api& a = api();
  auto h = static_cast<cublasHandle_t>(handle_);
  a.set_math_mode(h, tf32 ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH);
  // Column-major view: rows is dim x n, queries dim x nq; out (n x nq, ld) = rows^T queries,
  // i.e. row-major nq x n with out[q * ld + r].
  const float one = 1.0f, zero = 0.0f;
  const cublasStatus_t st = a.sgemm(h, CUBLAS_OP_T, CUBLAS_OP_N, int(n), int(nq), int(dim), &one, rows, int(dim),
                                    queries, int(dim), &zero, out, int(ld));
  if (st != CUBLAS_STATUS_SUCCESS)
    throw Error(ErrorCode::Internal, "cublasSgemm failed with status " + std::to_string(int(st)));
}

bool BlasHandle::dot_products_half(const void* rows, std::size_t n, const void* queries, std::size_t nq,
                                   std::size_t dim, bool bf16, float* out, std::size_t ld) {
  const Api& a = api();
  if (a.gemm_ex == nullptr) return false;
  auto h = static_cast<cublasHandle_t>(handle_);
  a.set_math_mode(h, CUBLAS_DEFAULT_MATH);
  const cudaDataType t = bf16 ? CUDA_R_16BF : CUDA_R_16F;
  const float one = 1.0f, zero = 0.0f;
  const cublasStatus_t st = a.gemm_ex(h, CUBLAS_OP_T, CUBLAS_OP_N, int(n), int(nq), int(dim), &one, rows, t, int(dim),
                                      queries, t, int(dim), &zero, out, CUDA_R_32F, int(ld), CUBLAS_COMPUTE_32F,
                                      CUBLAS_GEMM_DEFAULT);
  if (st != CUBLAS_STATUS_SUCCESS)
    throw Error(ErrorCode::Internal, "cublasGemmEx failed with status " + std::to_string(int(st)));
  return true;
}

}  // namespace hive::gpu::HIVE_GPU_DEVICE_NS
