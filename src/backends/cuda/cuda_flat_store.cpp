// CUDA flat storage and exact search.
//
// Rows live in device memory in their storage encoding (capacity doubles on growth with a
// device-to-device copy); removed rows are a bitmap mirrored to the device before a search;
// L2 stores keep squared row norms on the device for the matrix-product path.
//
// Search paths, all ending in device-side top-k selection (no host sort):
//  - fused (single query, k <= 32, float metrics): one kernel scores the rows and keeps each
//    block's 32 best in warp-register lists; a short warp-select merge and the finalize follow.
//    HIVE_GPU_CUDA_LEGACY_SCAN=1 turns it off (scan + select instead). It serves every float
//    metric and fp32 / fp16 / bf16 storage; rows of at most 16 16-byte chunks (fp16 / bf16 at
//    d <= 128, fp32 at d <= 64) are split across half-warps so every lane loads
//    and with fp32 rows of at most one 16-byte chunk per lane (d <= 128) each warp loads its next
//    rows before reducing the current ones (HIVE_GPU_CUDA_LEGACY_FUSED=1 turns both off).
//  - scan: one kernel scores every live row for up to 8 queries per pass (one warp per row,
//    16-byte loads), then selection rounds reduce the scores to the k best per query.
//  - gemm (L2 / inner product / cosine, batches >= kGemmMinQueries, when cuBLAS loads): tiles
//    of rows x queries through cuBLAS, each tile reduced at once to k + margin candidates,
//    the candidates re-scored exactly with the scan's own arithmetic, then the k best kept.
//    The nq x n score matrix never exists whole. HIVE_GPU_CUDA_TF32=1: tensor-core screening
//    (TF32 for fp32 storage, fp16 / bf16 GEMM for half storage), margin max(16, k).
// Selection: capacities 32 and 256 (k + margin <= 256) are a single-pass warp select (each key
// read once); capacity 2048, or HIVE_GPU_CUDA_LEGACY_SELECT=1, uses the bitonic chunk sort.
// Other tuning knobs (read per search): HIVE_GPU_CUDA_SCORE_TILE_MB, HIVE_GPU_CUDA_QUERY_TILE.
#include "backends/cuda/cuda_flat_store.hpp"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <mutex>

#include "backends/cuda/blas.hpp"
#include "backends/cuda/cuda_common.hpp"
#include "backends/cuda/kernels.hpp"
#include "hive_gpu/error.hpp"

namespace hive::gpu::cuda {
namespace {

constexpr std::size_t kGemmMinQueries = 32;
constexpr std::size_t kGemmQueryTile = 4096;
// Largest score tile (floats) either path materialises: 256 MiB.
constexpr std::size_t kScoreBudget = std::size_t(64) << 20;
constexpr std::size_t kMaxRows = std::size_t(std::numeric_limits<uint32_t>::max()) - 1;

std::size_t ceil_div(std::size_t a, std::size_t b) { return (a + b - 1) / b; }

bool env_set(const char* name) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0' && std::strcmp(v, "0") != 0;
}

// A positive integer from the environment (read per call), or `fallback`.
std::size_t env_size(const char* name, std::size_t fallback) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return fallback;
  char* end = nullptr;
  const unsigned long long x = std::strtoull(v, &end, 10);
  return (end != nullptr && *end == '\0' && x > 0) ? std::size_t(x) : fallback;
}

class CudaFlatStore final : public detail::FlatStore {
 public:
  CudaFlatStore(const detail::StoreConfig& cfg, int ordinal)
      : FlatStore(cfg), ordinal_(ordinal), row_bytes_(cfg.row_bytes()), stream_(make_stream(ordinal)) {}

  void append(std::size_t n, const void* encoded) override {
    if (n == 0) return;
    if (rows_ + n > kMaxRows)
      throw Error(ErrorCode::Unsupported, "the CUDA backend holds at most " + std::to_string(kMaxRows) + " rows");
    use_device(ordinal_);
    if (rows_ + n > capacity_) reallocate(std::max(rows_ + n, capacity_ * 2));
    deleted_.resize(ceil_div(rows_ + n, 32), 0);  // may throw: before any change to the rows
    check(cudaMemcpyAsync(data_.as<uint8_t>() + rows_ * row_bytes_, encoded, n * row_bytes_, cudaMemcpyHostToDevice,
                          stream_->get()),
          "upload rows");
    if (uses_norms()) launch_norms(data_.get(), rows_, n, cfg_.dim, cfg_.storage, norms_.as<float>(), stream_->get());
    stream_->sync("append");
    rows_ += n;
    deleted_dirty_ = true;
  }

  void write_row(std::size_t row, const void* encoded) override {
    use_device(ordinal_);
    check(cudaMemcpyAsync(data_.as<uint8_t>() + row * row_bytes_, encoded, row_bytes_, cudaMemcpyHostToDevice,
                          stream_->get()),
          "upload row");
    if (uses_norms()) launch_norms(data_.get(), row, 1, cfg_.dim, cfg_.storage, norms_.as<float>(), stream_->get());
    stream_->sync("write_row");
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
    uint32_t& word = deleted_[row / 32];
    const uint32_t bit = uint32_t(1) << (row % 32);
    if (((word & bit) != 0) == deleted) return;
    word ^= bit;
    deleted_count_ += deleted ? 1 : std::size_t(-1);
    deleted_dirty_ = true;
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
    deleted_.assign(ceil_div(rows_, 32), 0);
    deleted_count_ = 0;
    deleted_dirty_ = true;
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
    deleted_.clear();
    deleted_count_ = 0;
    deleted_dirty_ = true;
  }

  std::size_t rows() const override { return rows_; }

  void search(std::size_t nq, const void* queries, int k, float* distances, int64_t* rows) const override;

 private:
  static std::unique_ptr<Stream> make_stream(int ordinal) {
    use_device(ordinal);
    return std::make_unique<Stream>();
  }
  bool uses_norms() const { return cfg_.metric == Metric::L2; }
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
  const uint32_t* device_bitmap() const {
    if (deleted_count_ == 0) return nullptr;
    if (deleted_dirty_) {
      deleted_dev_.ensure(std::max<std::size_t>(deleted_.size(), 1) * sizeof(uint32_t));
      check(cudaMemcpyAsync(deleted_dev_.get(), deleted_.data(), deleted_.size() * sizeof(uint32_t),
                            cudaMemcpyHostToDevice, stream_->get()),
            "upload removed-rows bitmap");
      stream_->sync("upload removed-rows bitmap");  // deleted_ may change after we return
      deleted_dirty_ = false;
    }
    return deleted_dev_.as<uint32_t>();
  }

  bool use_gemm(std::size_t nq) const {
    if (nq < kGemmMinQueries) return false;
    if (cfg_.metric != Metric::L2 && cfg_.metric != Metric::InnerProduct && cfg_.metric != Metric::Cosine) return false;
    static const bool disabled = env_set("HIVE_GPU_CUDA_NO_GEMM");
    if (disabled) return false;
    if (!blas_tried_) {
      blas_tried_ = true;
      auto h = std::make_unique<BlasHandle>(stream_->get());
      if (h->ok()) blas_ = std::move(h);
    }
    return blas_ != nullptr;
  }

  ScanArgs scan_args(const void* dq, std::size_t nq) const {
    ScanArgs a;
    a.base = data_.get();
    a.n = rows_;
    a.dim = cfg_.dim;
    a.metric = cfg_.metric;
    a.storage = cfg_.storage;
    a.queries = dq;
    a.nq = nq;
    return a;
  }

  void scan_tile(const uint8_t* dq, std::size_t nq, int k, const uint32_t* bitmap, float* ddist, int64_t* drows) const;
  void gemm_tile(const float* dq, std::size_t nq, int k, const uint32_t* bitmap, float* ddist, int64_t* drows) const;

  int ordinal_;
  std::size_t row_bytes_;
  std::unique_ptr<Stream> stream_;
  DeviceBuffer data_, norms_;
  std::size_t rows_ = 0, capacity_ = 0;
  std::vector<uint32_t> deleted_;  // host mirror, authoritative
  std::size_t deleted_count_ = 0;

  // Search state: one search at a time per store (they share the stream and the workspace).
  mutable std::mutex mu_;
  mutable bool deleted_dirty_ = false;
  mutable DeviceBuffer deleted_dev_;
  mutable DeviceBuffer ws_queries_, ws_scores_, ws_a_, ws_b_, ws_cand_, ws_keys_, ws_keys2_, ws_rows_,
      ws_decoded_, ws_qhalf_;
  mutable PinnedBuffer pin_in_, pin_rows_;
  mutable bool blas_tried_ = false;
  mutable std::unique_ptr<BlasHandle> blas_;
};

void CudaFlatStore::scan_tile(const uint8_t* dq, std::size_t nq, int k, const uint32_t* bitmap, float* ddist,
                              int64_t* drows) const {
  cudaStream_t s = stream_->get();
  const int cap = select_capacity(k);
  const std::size_t n = rows_;
  static const bool legacy_scan = env_set("HIVE_GPU_CUDA_LEGACY_SCAN");
  if (nq == 1 && cap == 32 && !hamming() && !legacy_scan) {
    // Fused: one kernel scores the rows and keeps each block's 32 best, then one or two
    // small selection launches merge the blocks' lists; no score vector is written.
    const std::size_t blocks = scan_select_blocks(n);
    const std::size_t len = blocks * 32;
    ws_cand_.ensure(nq * len * sizeof(uint64_t));
    const std::size_t scratch = select_scratch_keys(nq, len, cap) * sizeof(uint64_t);
    ws_a_.ensure(scratch);
    ws_b_.ensure(scratch);
    ws_keys_.ensure(nq * std::size_t(cap) * sizeof(uint64_t));
    launch_scan_select(scan_args(dq, nq), bitmap, ws_cand_.as<uint64_t>(), blocks, len, s);
    select_from_keys(ws_cand_.as<uint64_t>(), len, nq, len, cap, ws_keys_.as<uint64_t>(), std::size_t(cap),
                     ws_a_.as<uint64_t>(), ws_b_.as<uint64_t>(), s);
    launch_finalize(ws_keys_.as<uint64_t>(), std::size_t(cap), nq, k, cfg_.metric == Metric::InnerProduct, ddist,
                    drows, s);
    return;
  }
  ws_scores_.ensure(nq * n * sizeof(float));
  const std::size_t scratch = select_scratch_keys(nq, n, cap) * sizeof(uint64_t);
  ws_a_.ensure(scratch);
  ws_b_.ensure(scratch);
  ws_keys_.ensure(nq * std::size_t(cap) * sizeof(uint64_t));
  ScanArgs a = scan_args(dq, nq);
  a.scores = ws_scores_.as<float>();
  a.ld = n;
  launch_scan(a, s);
  select_from_scores(ws_scores_.as<float>(), n, nq, n, 0, bitmap, Transform::Raw, nullptr, cap, ws_keys_.as<uint64_t>(),
                     std::size_t(cap), ws_a_.as<uint64_t>(), ws_b_.as<uint64_t>(), s);
  launch_finalize(ws_keys_.as<uint64_t>(), std::size_t(cap), nq, k, cfg_.metric == Metric::InnerProduct, ddist, drows, s);
}

void CudaFlatStore::gemm_tile(const float* dq, std::size_t nq, int k, const uint32_t* bitmap, float* ddist,
                              int64_t* drows) const {
  cudaStream_t s = stream_->get();
  // Tensor-core screening (read per search, so a benchmark can compare both): TF32 for fp32
  // storage, fp16 / bf16 GEMM (queries rounded to the storage type) for half storage. Either
  // way the candidates are re-scored exactly in fp32 before the final k are chosen.
  const bool tf32 = env_set("HIVE_GPU_CUDA_TF32");
  const bool half_gemm = tf32 && (cfg_.storage == ScalarType::F16 || cfg_.storage == ScalarType::BF16);
  const std::size_t n = rows_, dim = cfg_.dim;
  // Candidates kept per query before the exact re-score: k plus a margin for rounding.
  const int cap_c = select_capacity(std::min(kMaxK, k + (tf32 ? std::max(16, k) : 16)));
  const int cap_k = select_capacity(k);
  // Score tile (floats): HIVE_GPU_CUDA_SCORE_TILE_MB overrides the default 256 MiB (a tile that
  // fits the GPU's L2 cache spares the HBM round trip of the scores, at more launches).
  const std::size_t budget = std::min<std::size_t>(env_size("HIVE_GPU_CUDA_SCORE_TILE_MB", 256), 4096) << 18;
  const std::size_t row_tile = std::min(n, std::max<std::size_t>(1024, budget / nq));
  const std::size_t tiles = ceil_div(n, row_tile);
  const std::size_t cand_ld = tiles * std::size_t(cap_c);
  ws_scores_.ensure(nq * row_tile * sizeof(float));
  if (cfg_.storage != ScalarType::F32) ws_decoded_.ensure(row_tile * dim * sizeof(float));
  const std::size_t scratch = std::max({select_scratch_keys(nq, row_tile, cap_c), select_scratch_keys(nq, cand_ld, cap_c),
                                        select_scratch_keys(nq, std::size_t(cap_c), cap_k)}) *
                              sizeof(uint64_t);
  ws_a_.ensure(scratch);
  ws_b_.ensure(scratch);
  ws_cand_.ensure(nq * cand_ld * sizeof(uint64_t));
  ws_keys_.ensure(nq * std::size_t(cap_c) * sizeof(uint64_t));
  ws_keys2_.ensure(nq * std::size_t(cap_k) * sizeof(uint64_t));
  const Transform t = cfg_.metric == Metric::L2             ? Transform::L2FromDot
                      : cfg_.metric == Metric::InnerProduct ? Transform::NegDot
                                                            : Transform::OneMinusDot;
  if (half_gemm) {
    ws_qhalf_.ensure(nq * dim * sizeof(uint16_t));
    launch_encode_half(dq, nq * dim, cfg_.storage, ws_qhalf_.get(), s);
  }
  for (std::size_t ti = 0; ti < tiles; ++ti) {
    const std::size_t r0 = ti * row_tile, m = std::min(row_tile, n - r0);
    const void* rows_at = data_.as<const uint8_t>() + r0 * row_bytes_;
    const bool done = half_gemm && blas_->dot_products_half(rows_at, m, ws_qhalf_.get(), nq, dim,
                                                            cfg_.storage == ScalarType::BF16,
                                                            ws_scores_.as<float>(), row_tile);
    if (!done) {
      const float* x = static_cast<const float*>(rows_at);
      if (cfg_.storage != ScalarType::F32) {
        launch_decode(data_.get(), r0, m, dim, cfg_.storage, ws_decoded_.as<float>(), s);
        x = ws_decoded_.as<float>();
      }
      blas_->dot_products(x, m, dq, nq, dim, ws_scores_.as<float>(), row_tile, tf32);
    }
    select_from_scores(ws_scores_.as<float>(), row_tile, nq, m, int64_t(r0), bitmap, t, norms_.as<float>(), cap_c,
                       ws_cand_.as<uint64_t>() + ti * std::size_t(cap_c), cand_ld, ws_a_.as<uint64_t>(),
                       ws_b_.as<uint64_t>(), s);
  }
  const uint64_t* cand = ws_cand_.as<uint64_t>();
  std::size_t cand_stride = cand_ld;
  if (tiles > 1) {
    select_from_keys(cand, cand_ld, nq, cand_ld, cap_c, ws_keys_.as<uint64_t>(), std::size_t(cap_c),
                     ws_a_.as<uint64_t>(), ws_b_.as<uint64_t>(), s);
    cand = ws_keys_.as<uint64_t>();
    cand_stride = std::size_t(cap_c);
  }
  launch_rescore(scan_args(dq, nq), const_cast<uint64_t*>(cand), std::size_t(cap_c), cand_stride, s);
  select_from_keys(cand, cand_stride, nq, std::size_t(cap_c), cap_k, ws_keys2_.as<uint64_t>(), std::size_t(cap_k),
                   ws_a_.as<uint64_t>(), ws_b_.as<uint64_t>(), s);
  launch_finalize(ws_keys2_.as<uint64_t>(), std::size_t(cap_k), nq, k, cfg_.metric == Metric::InnerProduct, ddist,
                  drows, s);
}

void CudaFlatStore::search(std::size_t nq, const void* queries, int k, float* distances, int64_t* rows) const {
  if (nq == 0) return;
  const std::size_t kk = std::size_t(k);
  if (rows_ == 0 || deleted_count_ == rows_) {
    const float worst = cfg_.metric == Metric::InnerProduct ? -std::numeric_limits<float>::infinity()
                                                            : std::numeric_limits<float>::infinity();
    std::fill(distances, distances + nq * kk, worst);
    std::fill(rows, rows + nq * kk, int64_t(-1));
    return;
  }
  std::lock_guard<std::mutex> lock(mu_);
  use_device(ordinal_);
  cudaStream_t s = stream_->get();
  const std::size_t qbytes = hamming() ? row_bytes_ : cfg_.dim * sizeof(float);
  pin_in_.ensure(nq * qbytes);
  std::memcpy(pin_in_.get(), queries, nq * qbytes);
  ws_queries_.ensure(nq * qbytes);
  // Results in one device buffer (rows, then distances) and one download.
  const std::size_t out_bytes = nq * kk * (sizeof(int64_t) + sizeof(float));
  ws_rows_.ensure(out_bytes);
  pin_rows_.ensure(out_bytes);
  int64_t* const drows_all = ws_rows_.as<int64_t>();
  float* const ddist_all = reinterpret_cast<float*>(drows_all + nq * kk);
  check(cudaMemcpyAsync(ws_queries_.get(), pin_in_.get(), nq * qbytes, cudaMemcpyHostToDevice, s), "upload queries");
  const uint32_t* bitmap = device_bitmap();
  const auto* dq = ws_queries_.as<const uint8_t>();
  if (use_gemm(nq)) {
    const std::size_t tile = std::min({nq, env_size("HIVE_GPU_CUDA_QUERY_TILE", kGemmQueryTile), std::size_t(65535)});
    for (std::size_t q0 = 0; q0 < nq; q0 += tile) {
      const std::size_t m = std::min(tile, nq - q0);
      gemm_tile(reinterpret_cast<const float*>(dq + q0 * qbytes), m, k, bitmap, ddist_all + q0 * kk,
                drows_all + q0 * kk);
    }
  } else {
    const std::size_t tile = std::clamp<std::size_t>(kScoreBudget / rows_, 1, std::min<std::size_t>(nq, 8 * 65535));
    for (std::size_t q0 = 0; q0 < nq; q0 += tile) {
      const std::size_t m = std::min(tile, nq - q0);
      scan_tile(dq + q0 * qbytes, m, k, bitmap, ddist_all + q0 * kk, drows_all + q0 * kk);
    }
  }
  check(cudaMemcpyAsync(pin_rows_.get(), ws_rows_.get(), out_bytes, cudaMemcpyDeviceToHost, s), "download results");
  stream_->sync("search");
  const auto* host_rows = static_cast<const int64_t*>(pin_rows_.get());
  std::memcpy(rows, host_rows, nq * kk * sizeof(int64_t));
  std::memcpy(distances, host_rows + nq * kk, nq * kk * sizeof(float));
}

}  // namespace

std::unique_ptr<detail::FlatStore> make_cuda_flat_store(const detail::StoreConfig& cfg, int ordinal) {
  return std::make_unique<CudaFlatStore>(cfg, ordinal);
}

}  // namespace hive::gpu::cuda
