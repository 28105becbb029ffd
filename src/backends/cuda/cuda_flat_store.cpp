// CUDA flat storage and exact search.
//
// Rows live in device memory in their storage encoding (capacity doubles on growth with a
// device-to-device copy); removed rows are a bitmap mirrored to the device before a search;
// L2 / inner-product / cosine stores keep squared row norms on the device (the matrix-product
// path, the screen's error bounds).
//
// Search paths, all ending in device-side top-k selection (no host sort):
//  - single query (float metrics): the fused kernel scores the rows, 16-byte loads with the next
//    step's rows in flight (rows of at most 16 16-byte chunks split across half-warps), and keeps
//    each block's 32 best in warp-register lists; the last block to finish merges them and writes
//    the results straight into pinned host memory, then a completion flag the host watches
//    (wait_single). One launch, no upload (the query travels in the kernel's arguments,
//    d <= 256), no download and no stream synchronisation. k > 32: the same kernel writes the
//    scores, then a radix selection. HIVE_GPU_CUDA_LEGACY_SCAN=1 turns this off (scan + select);
//    HIVE_GPU_CUDA_LEGACY_FUSED=1 keeps the whole-warp-per-row layout without the prefetch.
//    fp32 stores (L2 / inner product / cosine, k <= 16, >= kSingleScreenMinRows rows) scan
//    their fp16 copy instead, half the bytes, and the last block re-scores its 32 best from the
//    fp32 rows; proven error bounds decide whether those hold the exact k best, else the fp32
//    rows are scanned (single_screen). 32 < k <= 1024: the copy's scores, their 2k best by
//    radix selection, re-scored, and the same bound check (single_query_large_k).
//    HIVE_GPU_CUDA_NO_F16_SCREEN=1 (read per search) turns these and the batches' fp16 screen off.
//  - scan: one kernel scores every live row for up to 8 queries per pass (one warp per row,
//    16-byte loads), then selection rounds reduce the scores to the k best per query.
//  - screen (L2 / inner product / cosine, batches >= kGemmMinQueries, stores >= kScreenMinRows,
//    k <= kScreenMaxK): a threshold per query that provably bounds its k-th best exact score
//    (the exact k-th best of a gathered sample of rows, found on large stores by screening the
//    sample the same way with a sub-sample's thresholds), then one tensor-core kernel (screen.cu)
//    that emits only rows whose low-precision score less its error bound reaches it, then an
//    exact re-score of those candidates and the k best of them: exact results, no score matrix
//    in memory. HIVE_GPU_CUDA_NO_SCREEN=1 turns it off; a candidate overflow falls back to:
//  - gemm (same metrics and batches): tiles of rows x queries through cuBLAS, or where it does
//    not load (and always on HIP, which has no BLAS here) our own tiled kernel (dot_tile.cu);
//    each tile reduced at once to k + margin candidates, the candidates re-scored exactly with
//    the scan's own arithmetic, then the k best kept. HIVE_GPU_CUDA_TF32=1: tensor-core
//    screening (TF32 for fp32 storage, fp16 / bf16 GEMM for half storage), margin max(16, k).
// HIVE_GPU_CUDA_PORTABLE=1 (read per search): on CUDA, the paths a HIP build takes (no
// tensor-core screen, no cuBLAS: the tiled kernel), so they can be tested on an NVIDIA GPU.
// Selection: capacities 32 and 256 (k + margin <= 256) are a single-pass warp select (each key
// read once); above that, scores go through a radix selection (radix_select.cu) and candidate
// keys through the bitonic chunk sort; HIVE_GPU_CUDA_LEGACY_SELECT=1: the bitonic sort on the scan
// and GEMM paths.
// Other tuning knobs (read per search): HIVE_GPU_CUDA_SCORE_TILE_MB, HIVE_GPU_CUDA_QUERY_TILE,
// HIVE_GPU_CUDA_SCREEN_SAMPLE (rows per sampled row for the screen thresholds),
// HIVE_GPU_CUDA_SUB_SAMPLE (the same for the sample's own sub-sample),
// HIVE_GPU_CUDA_SCREEN_LEGACY_GRID (the screen's earlier split of rows over CTAs, screen.cu),
// HIVE_GPU_CUDA_NO_SAMPLE_SCREEN / HIVE_GPU_CUDA_SAMPLE_SCREEN_FACTOR (how the sample's own k
// best are found, see screen_tile), HIVE_GPU_CUDA_NO_STAGE_AHEAD; read once:
// HIVE_GPU_CUDA_FUSED_STEPS (the fused kernel's minimum steps per warp, scan.cu).
// A caller's stream (FlatOptions::stream) replaces the store's own.
#include "backends/cuda/cuda_flat_store.hpp"

#include <algorithm>
#include <atomic>
#include <bit>
#include <chrono>
#include <cstdio>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <limits>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "backends/cpu/thread_pool.hpp"
#include "backends/cuda/cuda_common.hpp"
#include "backends/cuda/dot_tile.hpp"
#include "backends/cuda/kernels.hpp"
#include "backends/cuda/radix_select.hpp"
#include "core/copy_screen.hpp"
#include "core/env.hpp"
#include "hive_gpu/error.hpp"
#if !defined(HIVE_GPU_HIP)
#include "backends/cuda/blas.hpp"
#include "backends/cuda/screen.hpp"
#endif

namespace hive::gpu::HIVE_GPU_DEVICE_NS {
namespace {

constexpr std::size_t kGemmMinQueries = 32;
constexpr std::size_t kGemmQueryTile = 4096;
// Largest score tile (floats) either path materialises: 256 MiB.
constexpr std::size_t kScoreBudget = std::size_t(64) << 20;
#if !defined(HIVE_GPU_HIP)
// The screen path (large batches): stores of at least kScreenMinRows rows, k <= kScreenMaxK; a
// sample of n / kScreenSampleRatio rows (at most kScreenMaxSample) sets the thresholds, and at
// most kScreenMaxCandidates candidates per query are kept (more: the cuBLAS path instead).
constexpr std::size_t kScreenMinRows = 65536;
constexpr int kScreenMaxK = 256;
constexpr std::size_t kScreenSampleRatio = 32;
// The sample's own thresholds come from a sub-sample of 1 / kScreenSubSampleRatio of it (cuBLAS
// scores and a selection): 1 / 32 let ~330 candidates a query through the sample's screen, whose
// test and re-score then cost more than the sub-sample saved; 1 / 16 (~160) took the 10 000 x 1M
// fp16 batch from 8.67 to 8.31 ms on an H100 (1 / 8: 8.40, its selection the cost).
constexpr std::size_t kScreenSubSampleRatio = 16;
constexpr std::size_t kScreenMaxSample = 65536;
constexpr std::size_t kScreenMaxCandidates = 8192;
#endif
constexpr std::size_t kMaxRows = std::size_t(std::numeric_limits<uint32_t>::max()) - 1;
// Single queries on fp32 stores of at least this many rows read the fp16 copy (single_screen):
// below it the scan's fixed latency dominates and the exact re-score would only add to it.
constexpr std::size_t kSingleScreenMinRows = 16384;
std::atomic<uint64_t> g_screen_answered{0}, g_screen_inconclusive{0};
std::atomic<uint64_t> g_batch_screened{0}, g_batch_sample_screened{0};

std::size_t ceil_div(std::size_t a, std::size_t b) { return (a + b - 1) / b; }

using detail::env_flag;
using detail::env_size;  // (both read per call)

// Largest |x_i| (a NaN anywhere: NaN or a finite value; callers treat both as they must). Eight
// independent maxima: a single running maximum is bound by its 4-cycle dependency chain, which
// made this check ~0.5 ms of every 3 334-query screen tile.
float max_abs(const float* x, std::size_t n) {
  float m[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int j = 0; j < 8; ++j) {
      const float a = std::fabs(x[i + std::size_t(j)]);
      m[j] = a > m[j] ? a : m[j];
    }
  for (; i < n; ++i) m[0] = std::max(m[0], std::fabs(x[i]));
  float r = m[0];
  for (int j = 1; j < 8; ++j) r = std::max(r, m[j]);
  return r;
}

#if !defined(HIVE_GPU_HIP)
// Error bound of the screen's scores: |screen score - exact score| <= a |q| |r| + b (|q|^2 + |r|^2),
// where "exact" is the scan's fp32 arithmetic that ranks the candidates. Terms: rounding the
// operands for the tensor cores (TF32 taken as truncation, 2^-10; fp16 queries 2^-11; bf16
// queries 2^-8; half rows are exact), the fp32 accumulation of d products (taken as d 2^-22,
// allowing for the tensor cores' truncating adds), the scan's own d-step fp32 error, and the
// epilogue's few fp32 operations; then doubled. fp16 queries are scaled by a power of two in
// the kernel so that neither overflow nor subnormals occur (screen_tile checks their range).
//
// shadow_scale > 0: fp32 rows screened through their fp16 copy times that power of two (the
// largest |value| scaled into [2^14, 2^15)): each row value rounds within 2^-11 of itself, or,
// among fp16's subnormals, within 2^-25 / shadow_scale. The latter adds at most
// sqrt(d) 2^-25 / shadow_scale |q| to the dot product: the term c |q|.
struct ScreenBound {
  float a, b, c = 0.0f;
};
ScreenBound screen_bound(Metric metric, ScalarType storage, std::size_t dim, double shadow_scale = 0.0) {
  const double d = double(dim);
  const bool shadow = shadow_scale > 0.0;
  const double uq = storage == ScalarType::F32 && !shadow ? 0x1p-10
                    : storage == ScalarType::F16 || shadow ? 0x1p-11
                                                           : 0x1p-8;
  const double ur = shadow ? 0x1p-11 : storage == ScalarType::F32 ? 0x1p-10 : 0.0;
  double dot = uq + ur + uq * ur + d * 0x1p-22;
  double a = 0, b = 0;
  if (metric == Metric::L2) {
    a = 2 * dot;                 // the dot product enters twice
    b = (d + 8) * 0x1p-21;       // norms, the scan's squared differences, the epilogue
  } else {
    a = dot + d * 0x1p-21;       // the scan's own dot product
    b = 0x1p-21;                 // 1 - dot (cosine), the epilogue
  }
  const double c = shadow ? (metric == Metric::L2 ? 2.0 : 1.0) * std::sqrt(d) * 0x1p-25 / shadow_scale : 0.0;
  return ScreenBound{float(2 * a), float(2 * b), float(2 * c)};
}
#endif

class CudaFlatStore final : public detail::FlatStore {
 public:
  CudaFlatStore(const detail::StoreConfig& cfg, int ordinal)
      : FlatStore(cfg), ordinal_(ordinal), row_bytes_(cfg.row_bytes()), stream_(make_stream(ordinal, cfg.stream)) {}

  void append(std::size_t n, const void* encoded) override {
    if (n == 0) return;
    if (rows_ + n > kMaxRows)
      throw Error(ErrorCode::Unsupported, "the CUDA backend holds at most " + std::to_string(kMaxRows) + " rows");
    use_device(ordinal_);
    if (rows_ + n > capacity_) reallocate(std::max(rows_ + n, capacity_ * 2));
    deleted_.resize(rows_ + n);  // may throw: before any change to the rows
    check(cudaMemcpyAsync(data_.as<uint8_t>() + rows_ * row_bytes_, encoded, n * row_bytes_, cudaMemcpyHostToDevice,
                          stream_->get()),
          "upload rows");
    if (uses_norms()) launch_norms(data_.get(), rows_, n, cfg_.dim, cfg_.storage, norms_.as<float>(), stream_->get());
    stream_->sync("append");
    rows_ += n;
    ++version_;
    extend_shadow(rows_ - n, n);
  }

  void write_row(std::size_t row, const void* encoded) override {
    use_device(ordinal_);
    check(cudaMemcpyAsync(data_.as<uint8_t>() + row * row_bytes_, encoded, row_bytes_, cudaMemcpyHostToDevice,
                          stream_->get()),
          "upload row");
    if (uses_norms()) launch_norms(data_.get(), row, 1, cfg_.dim, cfg_.storage, norms_.as<float>(), stream_->get());
    stream_->sync("write_row");
    ++version_;
    drop_shadow();
    set_deleted(row, false);
  }

  void read_rows(std::size_t first, std::size_t n, void* out) const override {
    if (n == 0) return;
    use_device(ordinal_);
    std::lock_guard<std::mutex> lock(mu_);
    check(cudaMemcpyAsync(out, data_.as<const uint8_t>() + first * row_bytes_, n * row_bytes_, cudaMemcpyDeviceToHost,
                          stream_->get()),
          "download rows");
    stream_->sync("read_rows");
  }

  void set_deleted(std::size_t row, bool deleted) override {
    deleted_.set(row, deleted);
    ++version_;
  }

  void compact(const std::vector<std::size_t>& keep) override {
    use_device(ordinal_);
    const std::size_t n = keep.size();
    if (n > 0) {
      std::vector<uint32_t> idx(keep.begin(), keep.end());
      DeviceBuffer dkeep(n * sizeof(uint32_t));
      DeviceBuffer fresh(capacity_ * row_bytes_);
      check(cudaMemcpyAsync(dkeep.get(), idx.data(), n * sizeof(uint32_t), cudaMemcpyHostToDevice, stream_->get()),
            "upload compaction map");
      launch_gather(data_.get(), fresh.get(), dkeep.as<uint32_t>(), n, row_bytes_, stream_->get());
      if (uses_norms()) launch_norms(fresh.get(), 0, n, cfg_.dim, cfg_.storage, norms_.as<float>(), stream_->get());
      stream_->sync("compact");
      data_ = std::move(fresh);
    }
    rows_ = n;
    ++version_;
    drop_shadow();
    deleted_.reset(rows_);
  }

  void reserve(std::size_t rows) override {
    if (rows <= capacity_) return;
    if (rows > kMaxRows)
      throw Error(ErrorCode::Unsupported, "the CUDA backend holds at most " + std::to_string(kMaxRows) + " rows");
    use_device(ordinal_);
    reallocate(rows);
  }

  void clear() override {
    rows_ = 0;
    ++version_;
    drop_shadow();
    deleted_.reset(0);
  }

  std::size_t rows() const override { return rows_; }

  void search(std::size_t nq, const void* queries, int k, float* distances, int64_t* rows) const override;

 private:
  static std::unique_ptr<Stream> make_stream(int ordinal, void* borrowed) {
    use_device(ordinal);
    if (borrowed != nullptr) return std::make_unique<Stream>(static_cast<cudaStream_t>(borrowed));
    return std::make_unique<Stream>();
  }
  // Squared row norms: the L2 GEMM path's scores, and the screen's error bounds.
  bool uses_norms() const {
    return cfg_.metric == Metric::L2 || cfg_.metric == Metric::InnerProduct || cfg_.metric == Metric::Cosine;
  }
  bool hamming() const { return cfg_.metric == Metric::Hamming; }

  void reallocate(std::size_t capacity) {
    DeviceBuffer fresh(capacity * row_bytes_);
    DeviceBuffer fresh_norms(uses_norms() ? capacity * sizeof(float) : 0);
    if (rows_) {
      check(cudaMemcpyAsync(fresh.get(), data_.get(), rows_ * row_bytes_, cudaMemcpyDeviceToDevice, stream_->get()),
            "copy rows on growth");
      if (uses_norms())
        check(cudaMemcpyAsync(fresh_norms.get(), norms_.get(), rows_ * sizeof(float), cudaMemcpyDeviceToDevice,
                              stream_->get()),
              "copy norms on growth");
      stream_->sync("grow");
    }
    data_ = std::move(fresh);
    norms_ = std::move(fresh_norms);
    capacity_ = capacity;
  }

  // Under mu_: the removed-rows bitmap on the device (null when nothing is removed).
  const uint32_t* device_bitmap() const { return deleted_.device(*stream_); }

  bool use_gemm(std::size_t nq) const {
    if (nq < kGemmMinQueries) return false;
    if (cfg_.metric != Metric::L2 && cfg_.metric != Metric::InnerProduct && cfg_.metric != Metric::Cosine) return false;
    static const bool disabled = env_flag("HIVE_GPU_CUDA_NO_GEMM");
    return !disabled;
  }
  // cuBLAS for the matrix products, where it loads (never on HIP or in portable mode).
  bool use_blas() const {
#if defined(HIVE_GPU_HIP)
    return false;
#else
    if (portable()) return false;
    if (!blas_tried_) {
      blas_tried_ = true;
      auto h = std::make_unique<BlasHandle>(stream_->get());
      if (h->ok()) blas_ = std::move(h);
    }
    return blas_ != nullptr;
#endif
  }
  static bool portable() { return portable_paths(); }

  // Rows a GEMM-path search covers: the store's own, or a gathered sample of them.
  struct RowsView {
    const void* base;
    std::size_t n;
    const float* norms;
    const uint32_t* deleted;
  };
  RowsView all_rows(const uint32_t* bitmap) const { return RowsView{data_.get(), rows_, norms_.as<float>(), bitmap}; }
  ScanArgs scan_args(const void* dq, std::size_t nq) const { return scan_args(all_rows(nullptr), dq, nq); }
  ScanArgs scan_args(const RowsView& v, const void* dq, std::size_t nq) const {
    ScanArgs a;
    a.base = v.base;
    a.n = v.n;
    a.dim = cfg_.dim;
    a.metric = cfg_.metric;
    a.storage = cfg_.storage;
    a.queries = dq;
    a.nq = nq;
    return a;
  }

  // Single queries (float metrics): the fused scan, its results written straight into pinned
  // host memory (no query upload for dim <= 256, no result download). With `screen`, fp32
  // stores may read their fp16 copy instead (single_screen); returns whether it did, and then
  // rows[0] == kScreenInconclusive asks for the plain scan.
  bool single_fused() const;
  bool single_query(const float* hq, int k, const uint32_t* bitmap, float* dist, int64_t* rows, bool screen) const;
  // Waits for the work single_query enqueued: where its kernel writes tagged results
  // (FusedOutput::tagged; signal_pending_), by watching them, then decodes its k results into
  // rows / dist (the arrays single_query was given); else by synchronising the stream.
  void wait_single(int k, float* dist, int64_t* rows) const;
  // Fills the screen's part of `o` (the copy, the scaled query, the error bounds) where it
  // applies (k <= max_k among other conditions).
  bool single_screen(const float* hq, int k, FusedOutput& o, int max_k) const;
  // k > 32 through the copy (o as single_screen filled it, o.scores the score buffer).
  void single_query_large_k(const float* hq, int k, const uint32_t* bitmap, FusedOutput& o, float* dist,
                            int64_t* rows) const;
  void scan_tile(const uint8_t* dq, std::size_t nq, int k, const uint32_t* bitmap, float* ddist, int64_t* drows) const;
  // The k best keys of each query over v (cuBLAS score tiles, each reduced to candidates,
  // re-scored exactly), sorted, into out[q * select_capacity(k) ...].
  void gemm_keys(const RowsView& v, const float* dq, std::size_t nq, int k, bool fast, uint64_t* out) const;
  void gemm_tile(const float* dq, std::size_t nq, int k, const uint32_t* bitmap, float* ddist, int64_t* drows) const;
#if !defined(HIVE_GPU_HIP)
  // Large batches, exact: thresholds from a sample, the tensor-core screen, exact re-score.
  // Returns false (having written nothing) where the candidates overflow their buffer.
  bool use_screen(std::size_t nq, int k) const;
  std::vector<uint32_t> sample_rows(std::size_t m) const;
  // in_range: every query's largest |component| is 0 or in [2^-24, 2^100] (the fp16 screens'
  // condition). while_screening runs on the host while the GPU screens the store (the next
  // tile's staging).
  bool screen_tile(const float* dq, std::size_t nq, int k, bool in_range, const uint32_t* bitmap, float* ddist,
                   int64_t* drows, const std::function<void()>& while_screening) const;
  // Rows idx of (rows, norms) (the store's encoding) into out_rows / out_norms, the indices
  // uploaded through pin_idx (which must not be reused before the stream passes the copy) into
  // dev_idx.
  void gather_rows(const std::vector<uint32_t>& idx, const void* rows, const float* norms, PinnedBuffer& pin_idx,
                   DeviceBuffer& dev_idx, DeviceBuffer& out_rows, DeviceBuffer& out_norms) const;
  // Rows a screen reads: `exact` (re-scored; its count, norms and deleted rows are the screen's),
  // `screened` (the same rows in the screen's encoding: the store's, or the fp16 copy times
  // row_scale, shadow_scale > 0, see screen_bound).
  struct ScreenRows {
    RowsView exact;
    const void* screened;
    ScalarType storage;
    float row_scale;
    double shadow_scale;
  };
  // Screens r against the queries with the thresholds in ws_thr_ (query norms in ws_qnorm_),
  // expecting about `expect` candidates a query, re-scores them and leaves each query's k best
  // keys, sorted, in ws_keys2_ (select_capacity(k) apart). Returns the largest candidate count,
  // or SIZE_MAX (nothing selected) where the candidates overflowed their buffer.
  // while_screening (may be empty) runs on the host while the GPU screens.
  std::size_t screen_rows(const ScreenRows& r, const float* dq, std::size_t nq, int k, std::size_t expect,
                          const std::function<void()>& while_screening = {}) const;
#endif
  // The fp16 copy of fp32 rows the screens read (made on demand; appends extend it while their
  // values fit its scale, other changes to the rows drop it); false where the rows' range does
  // not allow it.
  bool ensure_shadow() const;
  void extend_shadow(std::size_t first, std::size_t n);
  void drop_shadow() {
    shadow_ok_ = false;
    ++shadow_gen_;
    screen_tally_.reset();
  }
  // Largest |value| of `count` fp32 values and largest squared norm of `n` norms on the device.
  std::pair<float, float> device_maxima(const float* values, std::size_t count, const float* norms,
                                        std::size_t n) const;

  int ordinal_;
  std::size_t row_bytes_;
  std::unique_ptr<Stream> stream_;
  DeviceBuffer data_, norms_;
  std::size_t rows_ = 0, capacity_ = 0;
  RowBitmap deleted_;

  // Search state: one search at a time per store (they share the stream and the workspace).
  mutable std::mutex mu_;
  mutable DeviceBuffer ws_row_terms_;  // the wgmma screen's scratch
  mutable DeviceBuffer ws_tickets_, ws_radix_, ws_idx_, ws_sample_, ws_sample_norms_, ws_thr_, ws_qnorm_, ws_scand_,
      ws_count_;
  mutable PinnedBuffer pin_idx_, pin_idx2_, pin_count_;
  mutable DeviceBuffer ws_idx2_, ws_sample2_, ws_sample2_norms_, ws_sample_half_;  // the screen's sub-sample
  // What ws_sample_ (rows, 0: nothing), ws_sample2_ (sub_rows) and ws_sample_half_ (half) hold,
  // kept across searches while the store is as it was (version_: rows, removals) and the sizes
  // asked for are the same; the half rows while the fp16 copy is too (shadow_gen_). Gathering
  // them took ~0.15 ms of each batch before its first screen.
  struct SampleState {
    std::size_t rows = 0, sub_rows = 0;
    bool half = false;
    uint64_t version = 0, half_gen = 0;
    std::size_t want = 0, want_sub = 0;
  };
  mutable SampleState sample_;
  // Changes to the rows or the removed set (append, write_row, set_deleted, compact, clear), and
  // to the fp16 copy (made, extended or dropped).
  uint64_t version_ = 0;
  mutable uint64_t shadow_gen_ = 0;
  mutable DeviceBuffer ws_queries_, ws_scores_, ws_a_, ws_b_, ws_cand_, ws_keys_, ws_keys2_, ws_rows_,
      ws_decoded_, ws_qhalf_;
  mutable PinnedBuffer pin_in_, pin_rows_;
  // Query tiles after the first go up on a stream of their own while the tile before is
  // screened; the search's stream waits for up_done_ before the tile's work.
  struct OwnedEvent {
    cudaEvent_t e = nullptr;
    ~OwnedEvent() {
      if (e != nullptr) (void)cudaEventDestroy(e);
    }
  };
  mutable std::unique_ptr<Stream> up_stream_;
  mutable OwnedEvent up_done_;
  // The single-query kernel's tagged results (FusedOutput::tagged), the tag it will write, and
  // whether the last single_query enqueued such a kernel.
  mutable PinnedBuffer pin_done_;
  mutable unsigned done_seq_ = 0;
  mutable bool signal_pending_ = false;
  mutable FusedGraph fused_graph_;  // the single query's launch (FusedOutput::graph)
#if !defined(HIVE_GPU_HIP)
  mutable bool blas_tried_ = false;
  mutable std::unique_ptr<BlasHandle> blas_;
#endif
  // fp32 storage: an fp16 copy of the rows times shadow_scale_ (a power of two that put the
  // largest |value| into [2^14, 2^15) when the copy was made; appended rows may reach fp16's
  // largest, 65504), for the screens. shadow_max_: the largest |value| it holds, unscaled;
  // shadow_norm2_: the largest squared row norm (fp32, as the store keeps them).
  mutable DeviceBuffer shadow_, ws_max_;
  mutable PinnedBuffer pin_max_;
  mutable bool shadow_ok_ = false, shadow_usable_ = false;
  mutable float shadow_scale_ = 1.0f, shadow_max_ = 0.0f, shadow_norm2_ = 0.0f;
  // The single-query screen's outcomes since the copy was made.
  mutable detail::ScreenTally screen_tally_;

  // HIVE_GPU_CUDA_PROFILE=1 (read per search): batch searches print their phases' times to
  // stderr. Each mark synchronises the stream, so a phase's time is its own, host and GPU.
  // HIVE_GPU_CUDA_PROFILE=2: a timeline instead, nothing synchronised: each mark records an
  // event, printed as [phase: GPU us since the first mark / host us since the first mark], so
  // the GPU's idle time (a phase's GPU time longer than its kernels) shows where the host holds
  // it up.
  mutable int prof_mode_ = 0;
  mutable std::string prof_line_;
  mutable std::chrono::steady_clock::time_point prof_t_{}, prof_t0_{};
  struct ProfEvent {
    const char* what;
    cudaEvent_t e;
    double host_us;
  };
  mutable std::vector<ProfEvent> prof_events_;
  mutable std::vector<cudaEvent_t> prof_pool_;
  void prof_start() const {
    prof_mode_ = !env_flag("HIVE_GPU_CUDA_PROFILE") ? 0 : env_size("HIVE_GPU_CUDA_PROFILE", 1) == 2 ? 2 : 1;
    prof_line_.clear();
    prof_events_.clear();
    prof_t_ = prof_t0_ = std::chrono::steady_clock::now();
    if (prof_mode_ == 2) prof_mark("start");
  }
  void prof_mark(const char* what) const {
    if (prof_mode_ == 0) return;
    if (prof_mode_ == 2) {
      if (prof_events_.size() == prof_pool_.size()) {
        cudaEvent_t e;
        check(cudaEventCreate(&e), "cudaEventCreate");
        prof_pool_.push_back(e);
      }
      cudaEvent_t e = prof_pool_[prof_events_.size()];
      check(cudaEventRecord(e, stream_->get()), "cudaEventRecord");
      prof_events_.push_back(
          {what, e, std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - prof_t0_).count()});
      return;
    }
    stream_->sync("profile");
    const auto now = std::chrono::steady_clock::now();
    char buf[64];
    std::snprintf(buf, sizeof buf, " [%s %.0f]", what, std::chrono::duration<double, std::micro>(now - prof_t_).count());
    prof_line_ += buf;
    prof_t_ = now;
  }
  // A mark of the timeline alone (HIVE_GPU_CUDA_PROFILE=2), where a synchronising mark would
  // change what it measures.
  void prof_note(const char* what) const {
    if (prof_mode_ == 2) prof_mark(what);
  }
  void prof_print() const {
    if (prof_mode_ == 2 && !prof_events_.empty()) {
      stream_->sync("profile");
      for (const ProfEvent& p : prof_events_) {
        float ms = 0.0f;
        check(cudaEventElapsedTime(&ms, prof_events_.front().e, p.e), "cudaEventElapsedTime");
        char buf[96];
        std::snprintf(buf, sizeof buf, " [%s %.0f/%.0f]", p.what, 1e3 * ms, p.host_us);
        prof_line_ += buf;
      }
      prof_events_.clear();
    }
    if (prof_mode_ != 0 && !prof_line_.empty()) std::fprintf(stderr, "cuda-profile (us):%s\n", prof_line_.c_str());
  }
};

void CudaFlatStore::scan_tile(const uint8_t* dq, std::size_t nq, int k, const uint32_t* bitmap, float* ddist,
                              int64_t* drows) const {
  cudaStream_t s = stream_->get();
  const int cap = select_capacity(k);
  const std::size_t n = rows_;
  ws_scores_.ensure(nq * n * sizeof(float));
  const std::size_t scratch = select_scratch_keys(nq, n, cap) * sizeof(uint64_t);
  ws_a_.ensure(scratch);
  ws_b_.ensure(scratch);
  ws_keys_.ensure(nq * std::size_t(cap) * sizeof(uint64_t));
  ScanArgs a = scan_args(dq, nq);
  a.scores = ws_scores_.as<float>();
  a.ld = n;
  launch_scan(a, s);
  if (cap > 256 && !legacy_select()) {  // above the warp select's lists: radix selection
    ws_radix_.ensure(radix_select_workspace_bytes(nq, n, k));
    radix_select(ws_scores_.as<float>(), n, nq, n, bitmap, k, ws_keys_.as<uint64_t>(), std::size_t(cap),
                 ws_radix_.get(), s);
  } else {
    select_from_scores(ws_scores_.as<float>(), n, nq, n, 0, bitmap, Transform::Raw, nullptr, cap,
                       ws_keys_.as<uint64_t>(), std::size_t(cap), ws_a_.as<uint64_t>(), ws_b_.as<uint64_t>(), s);
  }
  launch_finalize(ws_keys_.as<uint64_t>(), std::size_t(cap), nq, k, cfg_.metric == Metric::InnerProduct, ddist, drows, s);
}

bool CudaFlatStore::single_fused() const {
  static const bool legacy_scan = env_flag("HIVE_GPU_CUDA_LEGACY_SCAN");
  return !legacy_scan && fused_supported(scan_args(nullptr, 1));
}

bool CudaFlatStore::single_query(const float* hq, int k, const uint32_t* bitmap, float* dist, int64_t* rows,
                                 bool screen) const {
  cudaStream_t s = stream_->get();
  const std::size_t n = rows_;
  const void* dq = nullptr;  // the query travels inside the kernel's arguments when it is small
  if (cfg_.dim > kFusedParamDims) {
    ws_queries_.ensure(cfg_.dim * sizeof(float));
    check(cudaMemcpyAsync(ws_queries_.get(), hq, cfg_.dim * sizeof(float), cudaMemcpyHostToDevice, s),
          "upload query");
    dq = ws_queries_.get();
  }
  FusedOutput o;
  o.blocks = scan_select_blocks(n, cfg_.storage);
  o.host_query = hq;
  o.deleted = bitmap;
  o.k = k;
  o.negate = cfg_.metric == Metric::InnerProduct;
  if (k <= 32) {
    // One launch: the blocks' lists are merged by the last block, which writes the results.
    ScanArgs a = scan_args(dq, 1);
    const bool screened = screen && dq == nullptr && single_screen(hq, k, o, kFusedScreenMaxK);
    if (screened) {  // the fp16 copy, scanned as L2 or inner product (cosine: see single_screen)
      a.base = shadow_.get();
      a.storage = ScalarType::F16;
      a.metric = cfg_.metric == Metric::L2 ? Metric::L2 : Metric::InnerProduct;
      o.blocks = scan_select_blocks(n, ScalarType::F16);
    }
    ws_cand_.ensure(fused_lists_ld(o.blocks) * sizeof(uint64_t));
    if (ws_tickets_.bytes() < kTicketsLd * sizeof(unsigned)) {
      ws_tickets_.ensure(kTicketsLd * sizeof(unsigned));
      check(cudaMemsetAsync(ws_tickets_.get(), 0, kTicketsLd * sizeof(unsigned), s), "clear tickets");
    }
    o.lists = ws_cand_.as<uint64_t>();
    o.lists_ld = fused_lists_ld(o.blocks);
    o.tickets = ws_tickets_.as<unsigned>();
    o.rows = rows;
    o.distances = dist;
    constexpr std::size_t kTaggedBytes = 2 * kFusedMaxK * sizeof(uint64_t);
    if (pin_done_.get() == nullptr) {  // pinned memory may come back from the pool as it was left
      pin_done_.ensure(kTaggedBytes);
      std::memset(pin_done_.get(), 0, kTaggedBytes);
    }
    done_seq_ = done_seq_ + 1 == 0 ? 1 : done_seq_ + 1;  // (the tags start at 0; never 0 again)
    o.tagged = pin_done_.as<uint64_t>();
    o.seq = done_seq_;
    // HIVE_GPU_CUDA_NO_GRAPH=1 (read per search): a plain kernel launch, for A/B timing.
    o.graph = env_flag("HIVE_GPU_CUDA_NO_GRAPH") ? nullptr : &fused_graph_;
    launch_scan_select(a, o, s);
    signal_pending_ = true;
    return screened;
  }
  signal_pending_ = false;
  // Larger k: the same scan writes every score, then a radix selection over them.
  ws_scores_.ensure(n * sizeof(float));
  o.scores = ws_scores_.as<float>();
  if (screen && dq == nullptr && 2 * k <= kMaxK && single_screen(hq, k, o, kMaxK / 2)) {
    single_query_large_k(hq, k, bitmap, o, dist, rows);
    return true;
  }
  launch_scan_select(scan_args(dq, 1), o, s);
  ws_radix_.ensure(radix_select_workspace_bytes(1, n, k));
  ws_keys_.ensure(std::size_t(k) * sizeof(uint64_t));
  radix_select(ws_scores_.as<float>(), n, 1, n, bitmap, k, ws_keys_.as<uint64_t>(), std::size_t(k), ws_radix_.get(), s);
  launch_finalize(ws_keys_.as<uint64_t>(), std::size_t(k), 1, k, o.negate, dist, rows, s);
  return false;
}

// Watching the tagged results in host memory sees the kernel's end ~2.7 us sooner than
// cudaStreamSynchronize (an empty kernel's launch-to-return: 8.6 vs 11.3 us on an H100, CUDA
// 13), and without a system-scope fence and a flag behind the results (~0.9 us more in the
// kernel). The kernel may still be exiting when the results are seen: the next work on the
// stream waits for it, and every free of a buffer it uses synchronises. A kernel that failed
// never writes them: after 20 ms the stream's synchronisation reports the error.
// HIVE_GPU_CUDA_SYNC_WAIT=1 (read per search) synchronises the stream first, for A/B timing.
void CudaFlatStore::wait_single(int k, float* dist, int64_t* rows) const {
  const bool tagged = signal_pending_;
  signal_pending_ = false;
  if (!tagged) {
    stream_->sync("search");
    return;
  }
  if (env_flag("HIVE_GPU_CUDA_SYNC_WAIT")) stream_->sync("search");
  const volatile uint64_t* words = pin_done_.as<volatile uint64_t>();
  const std::size_t n = 2 * std::size_t(k);
  auto all_in = [&] {
    for (std::size_t i = 0; i < n; ++i)
      if (unsigned(words[i] >> 32) != done_seq_) return false;
    return true;
  };
  const auto t0 = std::chrono::steady_clock::now();
  for (unsigned spins = 1; !all_in(); ++spins) {
    if (spins % 4096 == 0 && std::chrono::steady_clock::now() - t0 > std::chrono::milliseconds(20)) {
      stream_->sync("search");
      if (!all_in()) throw Error(ErrorCode::Internal, "CUDA single query: the kernel did not write its results");
      break;
    }
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
  }
  for (int i = 0; i < k; ++i) {
    const uint32_t row = uint32_t(words[2 * i]), bits = uint32_t(words[2 * i + 1]);
    rows[i] = row == uint32_t(-1) ? -1 : row == uint32_t(kScreenInconclusive) ? kScreenInconclusive : int64_t(row);
    dist[i] = std::bit_cast<float>(bits);
  }
}

// Large k through the fp16 copy: its scores of every row, their m = 2k best by radix selection,
// the first m - 1 of those re-scored exactly (the m-th stays the copy's: every other row's copy
// score is at least its), the k best of them written, then the bound check (launch_screen_check)
// marks the answer inconclusive unless it proves no other row enters the k best.
void CudaFlatStore::single_query_large_k(const float* hq, int k, const uint32_t* bitmap, FusedOutput& o,
                                         float* dist, int64_t* rows) const {
  cudaStream_t s = stream_->get();
  const std::size_t n = rows_, dim = cfg_.dim;
  ScanArgs a = scan_args(nullptr, 1);
  a.base = shadow_.get();
  a.storage = ScalarType::F16;
  a.metric = cfg_.metric == Metric::L2 ? Metric::L2 : Metric::InnerProduct;  // (cosine: see single_screen)
  FusedOutput so = o;
  so.exact_rows = nullptr;  // scores only: no in-kernel re-score
  so.blocks = scan_select_blocks(n, ScalarType::F16);
  launch_scan_select(a, so, s);
  const int m = 2 * k, cap = select_capacity(k);
  ws_radix_.ensure(radix_select_workspace_bytes(1, n, m));
  ws_keys_.ensure(std::size_t(m) * sizeof(uint64_t));
  radix_select(ws_scores_.as<float>(), n, 1, n, bitmap, m, ws_keys_.as<uint64_t>(), std::size_t(m), ws_radix_.get(), s);
  ws_queries_.ensure(dim * sizeof(float));
  check(cudaMemcpyAsync(ws_queries_.get(), hq, dim * sizeof(float), cudaMemcpyHostToDevice, s), "upload query");
  launch_rescore(scan_args(ws_queries_.get(), 1), ws_keys_.as<uint64_t>(), std::size_t(m - 1), std::size_t(m), s);
  const std::size_t scratch = select_scratch_keys(1, std::size_t(m - 1), cap) * sizeof(uint64_t);
  ws_a_.ensure(scratch);
  ws_b_.ensure(scratch);
  ws_keys2_.ensure(std::size_t(cap) * sizeof(uint64_t));
  select_from_keys(ws_keys_.as<uint64_t>(), std::size_t(m), 1, std::size_t(m - 1), cap, ws_keys2_.as<uint64_t>(),
                   std::size_t(cap), ws_a_.as<uint64_t>(), ws_b_.as<uint64_t>(), s);
  launch_finalize(ws_keys2_.as<uint64_t>(), std::size_t(cap), 1, k, o.negate, dist, rows, s);
  launch_screen_check(ws_keys_.as<uint64_t>() + (m - 1), ws_keys2_.as<uint64_t>(), k, o, a.metric, rows, s);
}

// The single-query screen: fp32 rows read through their fp16 copy (half the bytes: the scan is
// bound by memory), the W best by the copy re-scored exactly, and a proof that no other row can
// enter the k best (else the caller scans the fp32 rows). Bounds, u = 2^-24, u_h = 2^-11 (fp16
// rounding), g_d = d u / (1 - d u) (any order of d fp32 sums), eta = 2^-25 / scale (fp16's
// subnormal spacing, unscaled), X >= every row norm, y the copy of row x unscaled:
//   |y_i - x_i| <= u_h |x_i| + eta, so |y - x| <= Delta = u_h X + eta sqrt(d);
//   inner product (cosine as 1 - dot): the fp32 dot products of q with x and with y (the scan's
//   query is q / scale: exact) each lie within g_d sum |q_i| |x_i| (or |y_i|) of their real
//   values, and those within u_h sum |q_i x_i| + eta |q|_1 of each other, so
//   |copy score - exact score| <= E = (2 g_d + u_h + g_d u_h) |q| X + (1 + g_d) eta |q|_1
//   (+ u (1 + |q| X) for cosine's 1 - dot, + products underflowing, 4 d 2^-149);
//   L2: both scores are sums of squared fp32 differences, within g = (1 + u)^2 (1 + g_d) - 1 of
//   |q - x|^2 and |q - y|^2 (relative; the scan's query is q * scale, its score times
//   scale^-2: exact), and | |q - y| - |q - x| | <= Delta.
// Every bound is doubled for safety; screen_finish (scan.cu) turns them into the lower bound of
// the exact score of rows outside the list.
bool CudaFlatStore::single_screen(const float* hq, int k, FusedOutput& o, int max_k) const {
  const std::size_t dim = cfg_.dim;
  if (cfg_.storage != ScalarType::F32 || !uses_norms() || k > max_k || dim % 8 != 0 ||
      dim > kFusedParamDims || rows_ < kSingleScreenMinRows)
    return false;
  if (env_flag("HIVE_GPU_CUDA_NO_F16_SCREEN")) return false;  // read per search: one benchmark times both
  if (!screen_tally_.worth_trying()) return false;
  const detail::QueryMagnitudes qm = detail::query_magnitudes(hq, dim);
  const double q1 = qm.l1, qmax = qm.max, qmin = qm.min_nonzero;
  if (!std::isfinite(qm.norm2) || !ensure_shadow()) return false;
  const double d = double(dim), u = 0x1p-24, uh = 0x1p-11, scale = shadow_scale_;
  const double gd = d * u / (1 - d * u), eta = 0x1p-25 / scale, qn = std::sqrt(qm.norm2);
  const double X = std::sqrt(double(shadow_norm2_) * (1 + 2 * gd));  // the norms' own fp32 error
  if (cfg_.metric == Metric::L2) {
    // The scan's query q * scale stays normal (an exact scaling), and its squared differences
    // from the copy stay far from overflow.
    if (qmax > 0 && qmin * scale < 0x1p-126) return false;
    const double big = qmax * scale + 65504.0;
    if (!(big * big * d < 0x1p120)) return false;
    const double g = (1 + u) * (1 + u) * (1 + gd) - 1;
    o.qscale = float(scale);
    o.score_scale = 1.0 / (scale * scale);
    o.bound_g = 2 * g;
    o.bound_e = 2 * (uh * X + eta * std::sqrt(d));
  } else {
    // The scan's query q / scale must stay normal (an exact scaling).
    if (qmax > 0 && qmin / scale < 0x1p-126) return false;
    double e = (2 * gd + uh + gd * uh) * qn * X + (1 + gd) * eta * q1 + 4 * d * 0x1p-149;
    if (cfg_.metric == Metric::Cosine) e += u * (1 + qn * X);
    o.qscale = float(1.0 / scale);
    o.score_scale = 1.0;
    o.bound_g = 0.0;
    o.bound_e = 2 * e;
  }
  o.exact_rows = data_.as<float>();
  o.exact_metric = cfg_.metric;
  return true;
}

void CudaFlatStore::gemm_keys(const RowsView& v, const float* dq, std::size_t nq, int k, bool fast,
                              uint64_t* out) const {
  cudaStream_t s = stream_->get();
  // Tensor-core screening when `fast`: TF32 for fp32 storage, fp16 / bf16 GEMM (queries rounded
  // to the storage type) for half storage. Either way the candidates are re-scored exactly in
  // fp32 before the final k are chosen.
  const bool blas = use_blas();
  const bool half_gemm = blas && fast && (cfg_.storage == ScalarType::F16 || cfg_.storage == ScalarType::BF16);
  const std::size_t n = v.n, dim = cfg_.dim;
  // Candidates kept per query before the exact re-score: k plus a margin for rounding.
  const int cap_c = select_capacity(std::min(kMaxK, k + (fast ? std::max(16, k) : 16)));
  const int cap_k = select_capacity(k);
  // Score tile (floats): HIVE_GPU_CUDA_SCORE_TILE_MB overrides the default 256 MiB (a tile that
  // fits the GPU's L2 cache spares the HBM round trip of the scores, at more launches).
  const std::size_t budget = std::min<std::size_t>(env_size("HIVE_GPU_CUDA_SCORE_TILE_MB", 256), 4096) << 18;
  const std::size_t row_tile = std::min(n, std::max<std::size_t>(1024, budget / nq));
  const std::size_t tiles = ceil_div(n, row_tile);
  const std::size_t cand_ld = tiles * std::size_t(cap_c);
  ws_scores_.ensure(nq * row_tile * sizeof(float));
  if (blas && cfg_.storage != ScalarType::F32) ws_decoded_.ensure(row_tile * dim * sizeof(float));
  const std::size_t scratch = std::max({select_scratch_keys(nq, row_tile, cap_c), select_scratch_keys(nq, cand_ld, cap_c),
                                        select_scratch_keys(nq, std::size_t(cap_c), cap_k)}) *
                              sizeof(uint64_t);
  ws_a_.ensure(scratch);
  ws_b_.ensure(scratch);
  ws_cand_.ensure(nq * cand_ld * sizeof(uint64_t));
  ws_keys_.ensure(nq * std::size_t(cap_c) * sizeof(uint64_t));
  const Transform t = cfg_.metric == Metric::L2             ? Transform::L2FromDot
                      : cfg_.metric == Metric::InnerProduct ? Transform::NegDot
                                                            : Transform::OneMinusDot;
  if (half_gemm) {
    ws_qhalf_.ensure(nq * dim * sizeof(uint16_t));
    launch_encode_half(dq, nq * dim, cfg_.storage, ws_qhalf_.get(), s);
  }
  for (std::size_t ti = 0; ti < tiles; ++ti) {
    const std::size_t r0 = ti * row_tile, m = std::min(row_tile, n - r0);
    const void* rows_at = static_cast<const uint8_t*>(v.base) + r0 * row_bytes_;
    if (!blas) {
      launch_dot_tile(rows_at, m, cfg_.storage, dq, nq, dim, ws_scores_.as<float>(), row_tile, s);
    } else {
#if !defined(HIVE_GPU_HIP)
      const bool done = half_gemm && blas_->dot_products_half(rows_at, m, ws_qhalf_.get(), nq, dim,
                                                              cfg_.storage == ScalarType::BF16,
                                                              ws_scores_.as<float>(), row_tile);
      if (!done) {
        const float* x = static_cast<const float*>(rows_at);
        if (cfg_.storage != ScalarType::F32) {
          launch_decode(v.base, r0, m, dim, cfg_.storage, ws_decoded_.as<float>(), s);
          x = ws_decoded_.as<float>();
        }
        blas_->dot_products(x, m, dq, nq, dim, ws_scores_.as<float>(), row_tile, fast);
      }
#endif
    }
    prof_mark("gemm");
    select_from_scores(ws_scores_.as<float>(), row_tile, nq, m, int64_t(r0), v.deleted, t, v.norms, cap_c,
                       ws_cand_.as<uint64_t>() + ti * std::size_t(cap_c), cand_ld, ws_a_.as<uint64_t>(),
                       ws_b_.as<uint64_t>(), s);
    prof_mark("select");
  }
  const uint64_t* cand = ws_cand_.as<uint64_t>();
  std::size_t cand_stride = cand_ld;
  if (tiles > 1) {
    select_from_keys(cand, cand_ld, nq, cand_ld, cap_c, ws_keys_.as<uint64_t>(), std::size_t(cap_c),
                     ws_a_.as<uint64_t>(), ws_b_.as<uint64_t>(), s);
    cand = ws_keys_.as<uint64_t>();
    cand_stride = std::size_t(cap_c);
  }
  prof_mark("merge");
  launch_rescore(scan_args(v, dq, nq), const_cast<uint64_t*>(cand), std::size_t(cap_c), cand_stride, s);
  prof_mark("rescore");
  select_from_keys(cand, cand_stride, nq, std::size_t(cap_c), cap_k, out, std::size_t(cap_k), ws_a_.as<uint64_t>(),
                   ws_b_.as<uint64_t>(), s);
}

void CudaFlatStore::gemm_tile(const float* dq, std::size_t nq, int k, const uint32_t* bitmap, float* ddist,
                              int64_t* drows) const {
  const int cap_k = select_capacity(k);
  ws_keys2_.ensure(nq * std::size_t(cap_k) * sizeof(uint64_t));
  gemm_keys(all_rows(bitmap), dq, nq, k, env_flag("HIVE_GPU_CUDA_TF32"), ws_keys2_.as<uint64_t>());
  launch_finalize(ws_keys2_.as<uint64_t>(), std::size_t(cap_k), nq, k, cfg_.metric == Metric::InnerProduct, ddist,
                  drows, stream_->get());
}

#if !defined(HIVE_GPU_HIP)
bool CudaFlatStore::use_screen(std::size_t nq, int k) const {
  // Read per search (like HIVE_GPU_CUDA_TF32), so one benchmark can time both paths.
  return !env_flag("HIVE_GPU_CUDA_NO_SCREEN") && !portable() && use_gemm(nq) && use_blas() &&
         rows_ >= kScreenMinRows && k <= kScreenMaxK &&
         screen_supported(cfg_.metric, cfg_.storage, cfg_.dim) && rows_ - deleted_.count() >= 64 * std::size_t(k);
}

// Live rows spread evenly over the store, at most `m` of them.
std::vector<uint32_t> CudaFlatStore::sample_rows(std::size_t m) const {
  return detail::spread_sample(rows_, m, [&](std::size_t r) { return deleted_.test(r); });
}

#endif

std::pair<float, float> CudaFlatStore::device_maxima(const float* values, std::size_t count, const float* norms,
                                                     std::size_t n) const {
  cudaStream_t s = stream_->get();
  ws_max_.ensure(2 * sizeof(uint32_t));
  pin_max_.ensure(2 * sizeof(uint32_t));
  check(cudaMemsetAsync(ws_max_.get(), 0, 2 * sizeof(uint32_t), s), "clear maxima");
  launch_max_abs(values, count, ws_max_.as<uint32_t>(), s);
  launch_max_abs(norms, n, ws_max_.as<uint32_t>() + 1, s);
  check(cudaMemcpyAsync(pin_max_.get(), ws_max_.get(), 2 * sizeof(uint32_t), cudaMemcpyDeviceToHost, s),
        "download maxima");
  stream_->sync("row maxima");
  float m[2];
  std::memcpy(m, pin_max_.get(), sizeof m);
  return {m[0], m[1]};
}

bool CudaFlatStore::ensure_shadow() const {
  if (shadow_ok_) return shadow_usable_;
  shadow_ok_ = true;
  shadow_usable_ = false;
  screen_tally_.reset();
  if (cfg_.storage != ScalarType::F32 || !uses_norms() || rows_ == 0) return false;
  const std::size_t count = rows_ * cfg_.dim;
  const auto [mx, n2] = device_maxima(data_.as<float>(), count, norms_.as<float>(), rows_);
  // A NaN or infinity fails the range test (so does an all-zero store: nothing to gain).
  if (!(mx >= 0x1p-24f && mx <= 0x1p100f) || !std::isfinite(n2)) return false;
  int ex = 0;
  (void)std::frexp(mx, &ex);  // mx = m 2^ex, m in [0.5, 1): mx 2^(15 - ex) in [2^14, 2^15)
  shadow_scale_ = std::ldexp(1.0f, 15 - ex);
  shadow_max_ = mx;
  shadow_norm2_ = n2;
  shadow_.ensure(capacity_ * cfg_.dim * sizeof(uint16_t));  // room for appends
  ++shadow_gen_;
  launch_encode_half(data_.as<float>(), count, ScalarType::F16, shadow_.get(), stream_->get(), shadow_scale_);
  shadow_usable_ = true;
  return true;
}

void CudaFlatStore::extend_shadow(std::size_t first, std::size_t n) {
  if (!shadow_ok_ || !shadow_usable_) {
    drop_shadow();
    return;
  }
  const std::size_t dim = cfg_.dim;
  if (shadow_.bytes() < (first + n) * dim * sizeof(uint16_t)) {  // the store grew: make it anew when needed
    drop_shadow();
    return;
  }
  const auto [mx, n2] = device_maxima(data_.as<float>() + first * dim, n * dim, norms_.as<float>() + first, n);
  // Values that still fit: scaled, below fp16's largest finite value (65504).
  if (!(double(mx) * double(shadow_scale_) < 65504.0) || !std::isfinite(n2)) {
    drop_shadow();
    return;
  }
  ++shadow_gen_;
  launch_encode_half(data_.as<float>() + first * dim, n * dim, ScalarType::F16,
                     shadow_.as<uint16_t>() + first * dim, stream_->get(), shadow_scale_);
  shadow_max_ = std::max(shadow_max_, mx);
  shadow_norm2_ = std::max(shadow_norm2_, n2);
}

#if !defined(HIVE_GPU_HIP)
void CudaFlatStore::gather_rows(const std::vector<uint32_t>& idx, const void* rows, const float* norms,
                                PinnedBuffer& pin_idx, DeviceBuffer& dev_idx, DeviceBuffer& out_rows,
                                DeviceBuffer& out_norms) const {
  cudaStream_t s = stream_->get();
  const std::size_t m = idx.size();
  pin_idx.ensure(m * sizeof(uint32_t));
  std::memcpy(pin_idx.get(), idx.data(), m * sizeof(uint32_t));
  dev_idx.ensure(m * sizeof(uint32_t));
  out_rows.ensure(m * row_bytes_);
  out_norms.ensure(m * sizeof(float));
  check(cudaMemcpyAsync(dev_idx.get(), pin_idx.get(), m * sizeof(uint32_t), cudaMemcpyHostToDevice, s),
        "upload sample rows");
  launch_gather(rows, out_rows.get(), dev_idx.as<uint32_t>(), m, row_bytes_, s);
  launch_gather(norms, out_norms.get(), dev_idx.as<uint32_t>(), m, sizeof(float), s);
}

std::size_t CudaFlatStore::screen_rows(const ScreenRows& r, const float* dq, std::size_t nq, int k,
                                       std::size_t expect, const std::function<void()>& while_screening) const {
  cudaStream_t s = stream_->get();
  std::size_t cap = 256;
  while (cap < 4 * expect && cap < kScreenMaxCandidates) cap *= 2;
  ws_scand_.ensure(nq * cap * sizeof(uint64_t));
  ws_count_.ensure(nq * sizeof(uint32_t));
  // The lists' slots past their counts must read empty in the selection: the list re-score
  // clears them where it runs (a memset of the whole buffer took ~20 us a screen, 56 MB for a
  // 3 456-query tile), else they are cleared here.
  const ScanArgs rescore_args = scan_args(r.exact, dq, nq);
  if (!rescore_lists_clears(rescore_args))
    check(cudaMemsetAsync(ws_scand_.get(), 0xff, nq * cap * sizeof(uint64_t), s), "clear candidates");
  check(cudaMemsetAsync(ws_count_.get(), 0, nq * sizeof(uint32_t), s), "clear candidate counts");
  ScreenArgs sa;
  sa.base = r.screened;
  sa.n = r.exact.n;
  sa.dim = cfg_.dim;
  sa.storage = r.storage;
  sa.row_scale = r.row_scale;
  sa.metric = cfg_.metric;
  sa.queries = dq;
  sa.nq = nq;
  sa.row_sq_norms = r.exact.norms;
  sa.query_sq_norms = ws_qnorm_.as<float>();
  sa.thresholds = ws_thr_.as<float>();
  const ScreenBound eb = screen_bound(cfg_.metric, cfg_.storage, cfg_.dim, r.shadow_scale);
  sa.a = eb.a;
  sa.b = eb.b;
  sa.c = eb.c;
  sa.deleted = r.exact.deleted;
  sa.cand = ws_scand_.as<uint64_t>();
  sa.count = ws_count_.as<uint32_t>();
  sa.cap = cap;
  if (screen_wgmma_runs(sa.storage, cfg_.dim)) {  // the wgmma kernel's scratch (else mma.sync runs)
    ws_row_terms_.ensure(screen_scratch_bytes(r.exact.n, nq, cfg_.dim));
    sa.scratch = ws_row_terms_.get();
  }
  launch_screen(sa, s);
  prof_note("screen-enqueued");
  if (while_screening) while_screening();
  prof_note("staged");
  pin_count_.ensure(nq * sizeof(uint32_t));
  check(cudaMemcpyAsync(pin_count_.get(), ws_count_.get(), nq * sizeof(uint32_t), cudaMemcpyDeviceToHost, s),
        "download candidate counts");
  stream_->sync("screen");
  prof_mark("screen");
  const auto* counts = pin_count_.as<const uint32_t>();
  const std::size_t most = *std::max_element(counts, counts + nq);
  if (prof_mode_ != 0) {
    std::size_t sum = 0;
    for (std::size_t q = 0; q < nq; ++q) sum += counts[q];
    prof_line_ += " [candidates mean " + std::to_string(sum / nq) + " most " + std::to_string(most) + "]";
  }
  if (most > cap) return std::numeric_limits<std::size_t>::max();  // too many for the buffer
  // Exact scores of the candidates (the scan's arithmetic), then the k best of them, sorted.
  const int cap_k = select_capacity(k);
  const std::size_t len = std::max<std::size_t>(most, 1);
  launch_rescore_lists(rescore_args, ws_scand_.as<uint64_t>(), cap, ws_count_.as<uint32_t>(), len, s);
  prof_mark("rescore-kernel");
  const std::size_t scratch = select_scratch_keys(nq, len, cap_k) * sizeof(uint64_t);
  ws_a_.ensure(scratch);
  ws_b_.ensure(scratch);
  ws_keys2_.ensure(nq * std::size_t(cap_k) * sizeof(uint64_t));
  select_from_keys(ws_scand_.as<uint64_t>(), cap, nq, len, cap_k, ws_keys2_.as<uint64_t>(), std::size_t(cap_k),
                   ws_a_.as<uint64_t>(), ws_b_.as<uint64_t>(), s);
  return most;
}

bool CudaFlatStore::screen_tile(const float* dq, std::size_t nq, int k, bool in_range, const uint32_t* bitmap,
                                float* ddist, int64_t* drows, const std::function<void()>& while_screening) const {
  cudaStream_t s = stream_->get();
  const std::size_t n = rows_, dim = cfg_.dim;
  const int cap_k = select_capacity(k);
  prof_mark("upload");
  // fp32 storage screens through an fp16 copy of the rows where their range allows (fp16
  // tensor cores: about 1.4x TF32's speed; HIVE_GPU_CUDA_NO_F16_SCREEN=1 keeps TF32). fp16
  // queries: the kernel's power-of-two scaling keeps the rounding relative while each query's
  // largest component lies in [2^-24, 2^100] (in_range); others take the cuBLAS path (fp16
  // storage) or the TF32 screen (fp32 storage).
  if (!in_range && cfg_.storage == ScalarType::F16) return false;
  bool shadow = cfg_.storage == ScalarType::F32 && !env_flag("HIVE_GPU_CUDA_NO_F16_SCREEN") &&
                screen_supported(cfg_.metric, ScalarType::F16, dim);
  // 1. A proven upper bound of each query's k-th best exact score: the k-th best exact score
  //    among any k live rows is one. Taken from a sample of m rows, so about k n / m rows beat it.
  const std::size_t ratio = env_size("HIVE_GPU_CUDA_SCREEN_SAMPLE", kScreenSampleRatio);  // tuning knob
  // (Larger k: a larger sample, so that about k n / m <= 1024 candidates are expected.)
  auto sample_size = [&](std::size_t rows, std::size_t per_sampled) {
    return std::clamp<std::size_t>(std::max(rows / per_sampled, std::size_t(k) * (rows / 1024)),
                                   64 * std::size_t(k), kScreenMaxSample);
  };
  // The sample (and its sub-sample, its fp16 copy) is gathered once and kept while the store
  // does not change (sample_): every query tile, and every batch, uses the same rows.
  const std::size_t want = sample_size(n, ratio);
  if (sample_.rows == 0 || sample_.version != version_ || sample_.want != want) {
    sample_ = SampleState{};
    const std::vector<uint32_t> idx = sample_rows(want);
    if (idx.size() < std::size_t(k)) return false;
    gather_rows(idx, data_.get(), norms_.as<float>(), pin_idx_, ws_idx_, ws_sample_, ws_sample_norms_);
    sample_.rows = idx.size();
    sample_.version = version_;
    sample_.want = want;
  }
  const std::size_t ms = sample_.rows;
  ws_thr_.ensure(nq * sizeof(float));
  ws_qnorm_.ensure(nq * sizeof(float));
  launch_norms(dq, 0, nq, dim, ScalarType::F32, ws_qnorm_.as<float>(), s);
  const RowsView sample{ws_sample_.get(), ms, ws_sample_norms_.as<float>(), nullptr};
  prof_mark("sample");
  shadow = shadow && in_range && ensure_shadow();
  // The rows the screen reads: the store's (fp16 / bf16, or fp32 through TF32) or the fp32
  // rows' fp16 copy; the exact rows are the store's.
  const ScreenRows full{all_rows(bitmap), shadow ? shadow_.get() : data_.get(), shadow ? ScalarType::F16 : cfg_.storage,
                        shadow ? shadow_scale_ : 1.0f, shadow ? double(shadow_scale_) : 0.0};

  // The sample's k best: with a sample of its own (a sub-sample) through the same screen where
  // the sample is large enough (two small steps instead of cuBLAS scores of every sampled row
  // and a selection over them), else through gemm_keys.
  bool thresholds = false;
  const std::size_t ms2 = sample_size(ms, env_size("HIVE_GPU_CUDA_SUB_SAMPLE", kScreenSubSampleRatio));
  // (HIVE_GPU_CUDA_SAMPLE_SCREEN_FACTOR, default 16: how many times the sub-sample's size the
  // sample must be; 1 lets tests take this path on small stores. HIVE_GPU_CUDA_SUB_SAMPLE: the
  // sub-sample's ratio, default kScreenSubSampleRatio.)
  if (!env_flag("HIVE_GPU_CUDA_NO_SAMPLE_SCREEN") && ms >= env_size("HIVE_GPU_CUDA_SAMPLE_SCREEN_FACTOR", 16) * ms2) {
    if (sample_.sub_rows == 0 || sample_.want_sub != ms2) {
      const std::vector<uint32_t> idx2 = detail::spread_sample(ms, ms2, [](std::size_t) { return false; });
      gather_rows(idx2, ws_sample_.get(), ws_sample_norms_.as<float>(), pin_idx2_, ws_idx2_, ws_sample2_,
                  ws_sample2_norms_);
      sample_.sub_rows = idx2.size();
      sample_.want_sub = ms2;
    }
    const std::size_t m2 = sample_.sub_rows;
    ws_keys2_.ensure(nq * std::size_t(cap_k) * sizeof(uint64_t));
    gemm_keys(RowsView{ws_sample2_.get(), m2, ws_sample2_norms_.as<float>(), nullptr}, dq, nq, k, true,
              ws_keys2_.as<uint64_t>());
    launch_kth_scores(ws_keys2_.as<uint64_t>(), std::size_t(cap_k), nq, k, ws_thr_.as<float>(), s);
    const void* screened = sample.base;
    if (shadow) {  // the sample's rows in the copy's encoding
      if (!sample_.half || sample_.half_gen != shadow_gen_) {
        ws_sample_half_.ensure(ms * dim * sizeof(uint16_t));
        launch_gather(shadow_.get(), ws_sample_half_.get(), ws_idx_.as<uint32_t>(), ms, dim * sizeof(uint16_t), s);
        sample_.half = true;
        sample_.half_gen = shadow_gen_;
      }
      screened = ws_sample_half_.get();
    }
    prof_mark("sub-sample");
    const ScreenRows part{sample, screened, full.storage, full.row_scale, full.shadow_scale};
    if (screen_rows(part, dq, nq, k, std::size_t(k) * ms / m2) != std::numeric_limits<std::size_t>::max()) {
      launch_kth_scores(ws_keys2_.as<uint64_t>(), std::size_t(cap_k), nq, k, ws_thr_.as<float>(), s);
      thresholds = true;
      g_batch_sample_screened.fetch_add(1, std::memory_order_relaxed);
    }
    prof_mark("sample-screen");
  }
  if (!thresholds) {
    ws_keys2_.ensure(nq * std::size_t(cap_k) * sizeof(uint64_t));
    gemm_keys(sample, dq, nq, k, true, ws_keys2_.as<uint64_t>());
    launch_kth_scores(ws_keys2_.as<uint64_t>(), std::size_t(cap_k), nq, k, ws_thr_.as<float>(), s);
    prof_mark("sample-topk");
  }

  // 2. The tensor-core screen: every row whose low-precision score, less its error bound, does
  //    not exceed the threshold becomes a candidate (no score is written to memory); then their
  //    exact scores and the k best.
  if (screen_rows(full, dq, nq, k, std::size_t(k) * n / ms, while_screening) == std::numeric_limits<std::size_t>::max())
    return false;  // too many candidates for the buffer: the caller takes another path
  launch_finalize(ws_keys2_.as<uint64_t>(), std::size_t(cap_k), nq, k, cfg_.metric == Metric::InnerProduct, ddist,
                  drows, s);
  prof_mark("rescore");
  g_batch_screened.fetch_add(1, std::memory_order_relaxed);
  return true;
}
#endif

void CudaFlatStore::search(std::size_t nq, const void* queries, int k, float* distances, int64_t* rows) const {
  if (nq == 0) return;
  const std::size_t kk = std::size_t(k);
  if (rows_ == 0 || deleted_.count() == rows_) {
    const float worst = cfg_.metric == Metric::InnerProduct ? -std::numeric_limits<float>::infinity()
                                                            : std::numeric_limits<float>::infinity();
    std::fill(distances, distances + nq * kk, worst);
    std::fill(rows, rows + nq * kk, int64_t(-1));
    return;
  }
  std::lock_guard<std::mutex> lock(mu_);
  use_device(ordinal_);
  cudaStream_t s = stream_->get();
  const uint32_t* bitmap = device_bitmap();
  // Results land in pinned host memory (rows, then distances): written there by the kernels
  // on the single-query path, downloaded in one copy otherwise.
  const std::size_t out_bytes = nq * kk * (sizeof(int64_t) + sizeof(float));
  pin_rows_.ensure(out_bytes);
  int64_t* const host_rows = pin_rows_.as<int64_t>();
  float* const host_dist = reinterpret_cast<float*>(host_rows + nq * kk);
  bool done = false;  // the results are in host_rows / host_dist
  const bool single = nq == 1 && !hamming() && single_fused();
  if (single) {
    const auto* hq = static_cast<const float*>(queries);
    if (single_query(hq, k, bitmap, host_dist, host_rows, true)) {
      wait_single(k, host_dist, host_rows);
      done = true;
      screen_tally_.note(host_rows[0] == kScreenInconclusive);
      if (host_rows[0] == kScreenInconclusive) {  // the fp16 copy could not decide: the fp32 rows
        g_screen_inconclusive.fetch_add(1, std::memory_order_relaxed);
        single_query(hq, k, bitmap, host_dist, host_rows, false);
        wait_single(k, host_dist, host_rows);
      } else {
        g_screen_answered.fetch_add(1, std::memory_order_relaxed);
      }
    }
  } else {
    prof_start();
    const std::size_t qbytes = hamming() ? row_bytes_ : cfg_.dim * sizeof(float);
    pin_in_.ensure(nq * qbytes);
    ws_queries_.ensure(nq * qbytes);
    ws_rows_.ensure(out_bytes);
    int64_t* const drows_all = ws_rows_.as<int64_t>();
    float* const ddist_all = reinterpret_cast<float*>(drows_all + nq * kk);
    // Queries [q0, q0 + m) through their own part of the pinned buffer: the matrix path copies
    // each query tile into it on the host while the GPU screens the tile before (5 MB of
    // queries took ~1 ms up front), then uploads it just before the tile's work.
    // Staging also notes which queries the fp16 screens can take (largest |component| 0 or in
    // [2^-24, 2^100], see screen_tile), reading each query while it is in cache.
    std::size_t staged = 0;  // queries [0, staged) are in the pinned buffer
#if defined(HIVE_GPU_HIP)
    const bool note_range = false;  // (no fp16 screens on HIP)
#else
    const bool note_range = !hamming() && use_gemm(nq);
#endif
    std::vector<uint8_t> fp16_ok(note_range ? nq : 0);
    // Pieces of 256 queries across the CPU pool (one core copied ~2.6 GB/s here: the first
    // tile's 1.8 MB took ~0.7 ms before the GPU could start).
    auto stage = [&](std::size_t upto) {
      if (upto <= staged) return;
      const auto t0 = std::chrono::steady_clock::now();
      constexpr std::size_t kPiece = 256;
      const std::size_t from = staged, pieces = ceil_div(upto - from, kPiece);
      auto piece = [&](std::size_t i) {
        const std::size_t a = from + i * kPiece, b = std::min(upto, a + kPiece);
        std::memcpy(pin_in_.as<uint8_t>() + a * qbytes, static_cast<const uint8_t*>(queries) + a * qbytes,
                    (b - a) * qbytes);
        if (note_range)
          for (std::size_t q = a; q < b; ++q) {
            const float mx = max_abs(pin_in_.as<const float>() + q * cfg_.dim, cfg_.dim);
            fp16_ok[q] = !(mx != 0 && (mx < 0x1p-24f || mx > 0x1p100f));
          }
      };
      if (pieces > 1)
        cpu::ThreadPool::instance().parallel_for(pieces, piece);
      else
        piece(0);
      staged = upto;
      if (prof_mode_ != 0) {
        char buf[48];
        std::snprintf(buf, sizeof buf, " [stage %.0f]",
                      std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count());
        prof_line_ += buf;
      }
    };
    // HIVE_GPU_CUDA_NO_STAGE_AHEAD=1 (read per search): each tile staged just before its work.
    const bool ahead = !env_flag("HIVE_GPU_CUDA_NO_STAGE_AHEAD");
    // Queries [q0, q0 + m) staged, then sent up on `to`.
    auto upload = [&](std::size_t q0, std::size_t m, cudaStream_t to) {
      stage(q0 + m);
      check(cudaMemcpyAsync(ws_queries_.as<uint8_t>() + q0 * qbytes, pin_in_.as<uint8_t>() + q0 * qbytes, m * qbytes,
                            cudaMemcpyHostToDevice, to),
            "upload queries");
    };
    // HIVE_GPU_CUDA_NO_UPLOAD_STREAM=1 (read per search): every tile uploaded on the search's
    // stream just before its work.
    const bool up_ahead = ahead && !env_flag("HIVE_GPU_CUDA_NO_UPLOAD_STREAM");
    std::size_t uploaded = 0;  // queries [0, uploaded) were sent on up_stream_
    // (A search that threw may have left an upload there, still reading pin_in_.)
    if (up_stream_) up_stream_->sync("query upload");
    auto upload_ahead = [&](std::size_t q0, std::size_t m) {
      if (!up_ahead) {
        stage(q0 + m);
        return;
      }
      if (!up_stream_) up_stream_ = std::make_unique<Stream>();
      if (up_done_.e == nullptr) check(cudaEventCreateWithFlags(&up_done_.e, cudaEventDisableTiming), "cudaEventCreate");
      upload(q0, m, up_stream_->get());
      check(cudaEventRecord(up_done_.e, up_stream_->get()), "cudaEventRecord");
      uploaded = q0 + m;
    };
    const auto* dq = ws_queries_.as<const uint8_t>();
    const bool gemm = use_gemm(nq);
    if (!gemm) upload(0, nq, s);
    prof_mark("upload");
    if (gemm) {
      // Query tiles of about equal size (10 000 queries: 3456 + 3456 + 3088, not 4096 + 4096 +
      // 1808), rounded up to whole 128-query blocks of the screen (3 x 3334 left a 6-query block
      // in each tile: 81 blocks of work for 79).
      const std::size_t most = std::min({nq, env_size("HIVE_GPU_CUDA_QUERY_TILE", kGemmQueryTile), std::size_t(65535)});
      const std::size_t tile = std::min(most, ceil_div(ceil_div(nq, ceil_div(nq, most)), 128) * 128);
      for (std::size_t q0 = 0; q0 < nq; q0 += tile) {
        const std::size_t m = std::min(tile, nq - q0);
        if (uploaded >= q0 + m)
          check(cudaStreamWaitEvent(s, up_done_.e, 0), "cudaStreamWaitEvent");
        else
          upload(q0, m, s);
        const auto* tq = reinterpret_cast<const float*>(dq + q0 * qbytes);
#if defined(HIVE_GPU_HIP)
        const bool screened = false;  // the screen is NVIDIA tensor-core code
        (void)upload_ahead;
#else
        const bool in_range = std::all_of(fp16_ok.begin() + long(q0), fp16_ok.begin() + long(q0 + m),
                                          [](uint8_t ok) { return ok != 0; });
        const bool screened =
            use_screen(m, k) && screen_tile(tq, m, k, in_range, bitmap, ddist_all + q0 * kk, drows_all + q0 * kk, [&] {
              if (ahead && q0 + m < nq) upload_ahead(q0 + m, std::min(tile, nq - q0 - m));
            });
#endif
        if (!screened) gemm_tile(tq, m, k, bitmap, ddist_all + q0 * kk, drows_all + q0 * kk);
      }
    } else {
      const std::size_t tile = std::clamp<std::size_t>(kScoreBudget / rows_, 1, std::min<std::size_t>(nq, 8 * 65535));
      for (std::size_t q0 = 0; q0 < nq; q0 += tile) {
        const std::size_t m = std::min(tile, nq - q0);
        scan_tile(dq + q0 * qbytes, m, k, bitmap, ddist_all + q0 * kk, drows_all + q0 * kk);
      }
    }
    check(cudaMemcpyAsync(host_rows, drows_all, out_bytes, cudaMemcpyDeviceToHost, s), "download results");
  }
  if (!done) {
    if (single)
      wait_single(k, host_dist, host_rows);
    else
      stream_->sync("search");
  }
  // Out of pinned memory: one core copied ~5-10 GB/s here, ~0.15 ms for a 10 000-query batch's
  // 1.2 MB of results, so large results are copied in pieces across the CPU pool.
  constexpr std::size_t kCopyPiece = std::size_t(1) << 14;  // results a piece
  const std::size_t results = nq * kk, pieces = ceil_div(results, kCopyPiece);
  auto copy_out = [&](std::size_t i) {
    const std::size_t a = i * kCopyPiece, b = std::min(results, a + kCopyPiece);
    std::memcpy(rows + a, host_rows + a, (b - a) * sizeof(int64_t));
    std::memcpy(distances + a, host_dist + a, (b - a) * sizeof(float));
  };
  if (pieces > 1)
    cpu::ThreadPool::instance().parallel_for(pieces, copy_out);
  else
    copy_out(0);
  if (nq > 1) {
    prof_mark("download");
    prof_print();
  }
}

}  // namespace

SingleScreenStats single_screen_stats() {
  return SingleScreenStats{g_screen_answered.load(), g_screen_inconclusive.load()};
}

BatchScreenStats batch_screen_stats() {
  return BatchScreenStats{g_batch_screened.load(), g_batch_sample_screened.load()};
}

std::unique_ptr<detail::FlatStore> make_cuda_flat_store(const detail::StoreConfig& cfg, int ordinal) {
  return std::make_unique<CudaFlatStore>(cfg, ordinal);
}

}  // namespace hive::gpu::HIVE_GPU_DEVICE_NS
