// CUDA backend: host-side launchers of the device kernels (defined in the .cu files), so the
// store itself is plain C++. Every launcher enqueues on `stream` and checks the launch.
#pragma once
#include "backends/cuda/gpu_runtime.hpp"

#include <cstddef>
#include <cstdint>

#include "hive_gpu/types.hpp"

namespace hive::gpu::HIVE_GPU_DEVICE_NS {

// A candidate as one 64-bit key: the score's bits mapped to an unsigned order in the high
// half, the row in the low half. Smaller keys are better; ties go to the smaller row.
inline constexpr uint64_t kEmptyKey = ~uint64_t(0);

// Distances (internal convention: smaller is better, InnerProduct as -dot) of rows
// [0, n) against nq queries: scores[q * ld + r]. Queries are fp32 rows of `dim` (packed bits
// of dim / 8 bytes for Hamming), `queries` in device memory.
struct ScanArgs {
  const void* base = nullptr;
  std::size_t n = 0;
  std::size_t dim = 0;
  Metric metric = Metric::L2;
  ScalarType storage = ScalarType::F32;
  const void* queries = nullptr;
  std::size_t nq = 0;
  float* scores = nullptr;
  std::size_t ld = 0;
};
void launch_scan(const ScanArgs& a, cudaStream_t stream);

// Fused scan + selection (float metrics, fp32 / fp16 / bf16 storage): each of `blocks`
// blocks (scan_select_blocks(n, storage)) scores its share of rows against each query with
// launch_scan's arithmetic and keeps its W best keys (W the device's wave size), written sorted
// to lists[q * lists_ld + block * W ...] (lists_ld >= fused_lists_ld(blocks)); the last block
// to finish (tickets[q * kTicketsLd], zeroed once by the caller and left zeroed by the kernel)
// merges them and writes the query's k <= 32 results like launch_finalize
// to rows / distances (device or pinned host memory). So a search is one launch. Removed rows
// (`deleted`, may be null) and NaN never enter. With `scores` set it writes every row's score
// (scores[q * n + row], no removed-row check) instead, for a selection that follows.
// The query: a.queries in device memory, or (nq == 1, dim <= 256) host_query, passed inside
// the kernel's arguments so no upload precedes the launch.
inline constexpr std::size_t kFusedMaxQueryBytes = 32 * 1024;  // the query is staged in shared memory
// A CUDA graph holding one fused-kernel launch, kept by its owner and reused by the next single
// query of the same kernel and shape (FusedOutput::graph): its parameters are set and the graph
// launched, which took the host ~3.4 us against ~4.1-4.5 for a kernel launch on an H100 machine
// (~0.8 us sooner at the GPU). The graph objects are held as opaque pointers (NVIDIA only).
struct FusedGraph {
  const void* func = nullptr;
  unsigned grid_x = 0, grid_y = 0;
  std::size_t smem = 0;
  void* graph = nullptr;  // cudaGraph_t
  void* node = nullptr;   // cudaGraphNode_t
  void* exec = nullptr;   // cudaGraphExec_t
  FusedGraph() = default;
  FusedGraph(const FusedGraph&) = delete;
  FusedGraph& operator=(const FusedGraph&) = delete;
  ~FusedGraph() { reset(); }
  void reset();
};
struct FusedOutput {
  std::size_t blocks = 0;
  const float* host_query = nullptr;
  const uint32_t* deleted = nullptr;
  uint64_t* lists = nullptr;
  std::size_t lists_ld = 0;
  unsigned* tickets = nullptr;
  int k = 0;
  bool negate = false;
  int64_t* rows = nullptr;
  float* distances = nullptr;
  float* scores = nullptr;
  // The single-query screen (nq == 1 with host_query, k <= kFusedScreenMaxK, dim % 8 == 0; the
  // ScanArgs describe an fp16 copy of fp32 rows, metric L2 or InnerProduct): lists keep 32 rows
  // by the copy's scores, which the last block re-scores exactly from exact_rows under
  // exact_metric (L2, InnerProduct or Cosine) and answers with if the bounds prove no other row
  // can enter the k best; else rows[0] = kScreenInconclusive. The scan's query is host_query *
  // qscale; score_scale, bound_g, bound_e: see screen_finish in scan.cu.
  const float* exact_rows = nullptr;
  Metric exact_metric = Metric::L2;
  float qscale = 1.0f;
  double score_scale = 1.0, bound_g = 0.0, bound_e = 0.0;
  // With k <= 32, one query and `tagged` set (2 k words of host memory the device can write):
  // result i goes there instead of rows / distances, as two words tagged with `seq` in their high
  // half, (seq << 32) | row (low 32 bits; -1: none, kScreenInconclusive) and (seq << 32) | the
  // distance's bits. The host waits by watching for all 2 k tags (each word is written whole)
  // instead of synchronising the stream, and without a flag behind a system-scope fence.
  uint64_t* tagged = nullptr;
  unsigned seq = 0;
  // Set (with `tagged`): the launch goes through this graph, made or updated as needed.
  FusedGraph* graph = nullptr;
};
inline constexpr int64_t kScreenInconclusive = -2;
inline constexpr int kFusedScreenMaxK = 16;
// The large-k form of the same screen (the caller's steps: the copy's scores, their m best by
// radix selection, the first m - 1 re-scored and the k best of those kept): rows[0] =
// kScreenInconclusive unless the bounds of `o` (as single_screen fills them; `scanned` the
// metric the copy was scanned with) prove no row outside the m - 1 enters the k best.
// approx_last: the m-th copy key; exact: the k best exact keys, sorted.
void launch_screen_check(const uint64_t* approx_last, const uint64_t* exact, int k, const FusedOutput& o,
                         Metric scanned, int64_t* rows, cudaStream_t stream);
bool fused_supported(const ScanArgs& a);
inline constexpr std::size_t kTicketsLd = 64;  // ticket counters per query (one used; 64: a cache line of its own)
inline constexpr int kFusedMaxK = 32;          // the fused kernel's own results (wave lists)
// Keys of the lists buffer for `blocks` blocks on the current device (W keys per block list).
std::size_t fused_lists_ld(std::size_t blocks);
std::size_t scan_select_blocks(std::size_t n, ScalarType storage);
void launch_scan_select(const ScanArgs& a, const FusedOutput& o, cudaStream_t stream);
inline constexpr std::size_t kFusedParamDims = 256;  // largest query passed as host_query

// Exact distances of candidate rows: for each query q and slot j < len, keys[q * ld + j]
// (a candidate key, or kEmptyKey) is replaced by the key of the same row with its exact
// distance, computed exactly as launch_scan computes it.
void launch_rescore(const ScanArgs& a, uint64_t* keys, std::size_t len, std::size_t ld, cudaStream_t stream);
// The same for lists of different lengths: query q's first min(counts[q], len) keys hold rows.
// Where rescore_lists_clears(a), its slots after them up to len may hold anything and are made
// empty (kEmptyKey); elsewhere they must be empty already (the per-slot kernel, which this falls
// back to, reads them). The same scores as launch_rescore, bitwise; faster where the lists are
// short and of uneven length (the batch screen's candidates).
bool rescore_lists_clears(const ScanArgs& a);
void launch_rescore_lists(const ScanArgs& a, uint64_t* keys, std::size_t ld, const uint32_t* counts, std::size_t len,
                          cudaStream_t stream);

// How a score matrix entry becomes the ranking score: Raw (already final), or from a dot
// product s: L2 -> norms[row] - 2 s (|q|^2 left out), NegDot -> -s, OneMinusDot -> 1 - s.
enum class Transform : int { Raw = 0, L2FromDot = 1, NegDot = 2, OneMinusDot = 3 };

// HIVE_GPU_CUDA_LEGACY_SELECT=1 (read once): the bitonic chunk sort for every selection, no warp
// select and no radix selection.
bool legacy_select();

// Capacity (a compile-time top-k size) that serves k: 32, 256 or 2048.
int select_capacity(int k);

// Scratch keys (per buffer) that select_from_scores / select_from_keys need.
std::size_t select_scratch_keys(std::size_t nq, std::size_t len, int cap);

// The `cap` best keys of each of nq rows of scores (length len, leading dimension ld; row r of
// the matrix is stored row row0 + r), sorted best first, into out[q * out_ld + j]. Rows set in
// `deleted` (a bitmap over stored rows, may be null) and NaN scores never enter; slots beyond
// the live count get kEmptyKey. scratch_a / scratch_b hold select_scratch_keys() keys each.
void select_from_scores(const float* scores, std::size_t ld, std::size_t nq, std::size_t len, int64_t row0,
                        const uint32_t* deleted, Transform t, const float* norms, int cap, uint64_t* out,
                        std::size_t out_ld, uint64_t* scratch_a, uint64_t* scratch_b, cudaStream_t stream);
// The same over keys already formed (keys[q * ld + j], j < len).
void select_from_keys(const uint64_t* keys, std::size_t ld, std::size_t nq, std::size_t len, int cap,
                      uint64_t* out, std::size_t out_ld, uint64_t* scratch_a, uint64_t* scratch_b,
                      cudaStream_t stream);

// Writes the first k of each query's sorted keys (keys[q * ld + j]) as reported distances and
// rows: kEmptyKey -> row -1 and +inf (-inf when negate); negate reports -score (InnerProduct).
void launch_finalize(const uint64_t* keys, std::size_t ld, std::size_t nq, int k, bool negate, float* distances,
                     int64_t* rows, cudaStream_t stream);

// thresholds[q] = the score of keys[q * ld + k - 1] raised by 2^-20 of its magnitude (+inf
// where that slot is empty): a screen threshold.
void launch_kth_scores(const uint64_t* keys, std::size_t ld, std::size_t nq, int k, float* thresholds,
                       cudaStream_t stream);

// Squared norms of the decoded rows [first, first + n) into norms[first ...].
void launch_norms(const void* base, std::size_t first, std::size_t n, std::size_t dim, ScalarType storage,
                  float* norms, cudaStream_t stream);
// Decodes n rows starting at `first` (fp16 / bf16 / fp32) to fp32 in out (n x dim).
void launch_decode(const void* base, std::size_t first, std::size_t n, std::size_t dim, ScalarType storage,
                   float* out, cudaStream_t stream);
// fp32 values times `scale` (a power of two, so the product is exact barring overflow) to
// fp16 / bf16 (storage F16 or BF16), rounding to nearest even.
void launch_encode_half(const float* in, std::size_t count, ScalarType storage, void* out, cudaStream_t stream,
                        float scale = 1.0f);
// *out (zeroed by the caller) = the float bits of the largest |in[i]| (NaN wins: its bits are
// larger than every finite value's).
void launch_max_abs(const float* in, std::size_t count, uint32_t* out, cudaStream_t stream);
// dst row i = src row keep[i], for i < n (rows of row_bytes bytes).
void launch_gather(const void* src, void* dst, const uint32_t* keep, std::size_t n, std::size_t row_bytes,
                   cudaStream_t stream);

}  // namespace hive::gpu::HIVE_GPU_DEVICE_NS
