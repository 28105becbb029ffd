// CUDA backend: the tensor-core screen of a large query batch. Every query x row score is
// computed with mma.sync (TF32 / fp16 / bf16 operands, fp32 accumulate) and only rows that could
// beat the query's threshold, given an error bound, are emitted as candidates: the nq x n score
// matrix never reaches memory. The caller re-scores the candidates exactly.
#pragma once
#include "backends/cuda/gpu_runtime.hpp"

#include <cstddef>
#include <cstdint>

#include "hive_gpu/types.hpp"

namespace hive::gpu::HIVE_GPU_DEVICE_NS {

// Device pointers; base and queries 16-byte aligned (cudaMalloc'd buffers are).
struct ScreenArgs {
  const void* base = nullptr;  // n rows x dim, row-major, in the storage encoding
  std::size_t n = 0, dim = 0;
  ScalarType storage = ScalarType::F32;  // F32 (TF32 mma), F16 (fp16 mma), BF16 (bf16 mma)
  Metric metric = Metric::L2;            // L2, InnerProduct or Cosine
  const float* queries = nullptr;        // nq x dim fp32
  std::size_t nq = 0;
  const float* row_sq_norms = nullptr;    // n: fp32 sum of squares of each decoded row
  const float* query_sq_norms = nullptr;  // nq: fp32 sum of squares of each query
  const float* thresholds = nullptr;      // nq: tau_q, internal convention (smaller is better); may be +inf
  float a = 0, b = 0, c = 0;              // error-bound coefficients
  // base holds the rows times row_scale (a power of two; F16 only, e.g. an fp16 copy of fp32
  // rows scaled into fp16's range): the test divides it back out exactly.
  float row_scale = 1.0f;
  const uint32_t* deleted = nullptr;      // bitmap over rows (bit r % 32 of word r / 32), may be null
  uint64_t* cand = nullptr;               // nq x cap; only slots below each query's count are written
  uint32_t* count = nullptr;              // nq; the caller zeroes
  std::size_t cap = 0;
  // Row tiles (256 rows; 128 for the wgmma kernel) each CTA streams; 0 picks one from the
  // problem size. Tests set it to exercise the multi-tile paths on small inputs.
  unsigned tiles_per_cta = 0;
  // Which kernel: Auto takes the wgmma one where screen_wgmma_runs() (unless the environment sets
  // HIVE_GPU_CUDA_NO_WGMMA=1), else mma.sync; tests and benchmarks name one.
  enum class Kernel { Auto, MmaSync, Wgmma } kernel = Kernel::Auto;
  // Scratch of screen_scratch_bytes(n, nq, dim) bytes (16-byte aligned) for the wgmma kernel's
  // per-row, per-tile and per-query set-up; without it Auto takes the mma.sync kernel.
  void* scratch = nullptr;
};

// Bytes of ScreenArgs::scratch for n rows and nq queries of dim elements (fp16 / bf16 operands).
std::size_t screen_scratch_bytes(std::size_t n, std::size_t nq, std::size_t dim);

// Scores, with dot the tensor-core dot product of query q and row r, qn2 / rn2 the squared norms:
//   L2: s = qn2 + rn2 - 2 dot;  InnerProduct: s = -dot;  Cosine: s = 1 - dot.
// Row r is emitted for query q iff it is not deleted and
//   NOT (s - (a sqrt(qn2) sqrt(rn2) + b (qn2 + rn2) + c sqrt(qn2)) > tau_q)   (so a NaN emits),
// evaluated in fp32 after a rearrangement that is exact in real arithmetic (see screen.cu); its
// fp32 rounding moves the test by at most about 2^-22 (qn2 + rn2) + 2^-23 |tau_q| (+ 2^-23 for
// Cosine's 1) on the scale of s, which b must cover along with the norms' own rounding.
// Operands: F32 -> both rounded to tf32 (nearest, ties away); F16 / BF16 -> rows as stored,
// queries rounded to nearest even, fp16 ones after an exact power-of-two scale that puts each
// query's largest component in [2^14, 2^15) (undone exactly in the test): no fp16 overflow, and
// the queries' rounding error stays relative (2^-11 per component) at any query scale (largest
// component between 2^-25 and 2^115), with no subnormal term.
// Emitting: pos = atomicAdd(&count[q], 1), and cand[q * cap + pos] = r if pos < cap; count keeps
// counting past cap (the caller detects the overflow). The order of a query's candidates is
// unspecified.
//
// Supported: L2 / InnerProduct / Cosine; F32 with dim % 4 == 0 and dim <= 256, F16 / BF16 with
// dim % 8 == 0 and dim <= 512 (rows are copied in 16-byte pieces; the CTA's 128 queries stay in
// shared memory, at most 1 KiB of operand bytes each), provided the kernel's shared memory,
// 128 P + 100368 bytes with P the row's operand bytes rounded up to 64, fits the current
// device's per-block limit: every such dim on sm_90 (227 KiB), P <= 512 on sm_80 (fp32 dim <= 128,
// fp16 / bf16 dim <= 256), none on sm_86 / sm_89 (99 KiB). Otherwise the caller takes another path.
bool screen_supported(Metric m, ScalarType s, std::size_t dim);

// Whether the wgmma kernel (screen_wgmma.cu, sm_90a) serves these operands on the current
// device: fp16 / bf16 rows (an fp32 store's fp16 copy included), dim % 8 == 0 and dim <= 128
// (the queries' operands stay in registers), a compute capability 9.0 device and a build with
// HIVE_GPU_CUDA_WGMMA. Same contract and results as the mma.sync kernel: the tensor cores'
// fp32 accumulation is the same hardware's.
bool screen_wgmma_runs(ScalarType s, std::size_t dim);

// Enqueues the screen on `stream`; throws Error(Internal) for an unsupported configuration
// (Kernel::Wgmma included where screen_wgmma_runs is false).
void launch_screen(const ScreenArgs& a, cudaStream_t stream);

}  // namespace hive::gpu::HIVE_GPU_DEVICE_NS
