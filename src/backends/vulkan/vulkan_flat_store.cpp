// Vulkan backend: a flat index's rows in device-local buffers, searched by compute shaders.
//
// Storage. Rows are kept in chunks, each one storage buffer of at most the device's
// maxStorageBufferRange (128 MiB on lavapipe, 4 GiB on most GPUs) and 1 GiB; every chunk but
// the last is full. The last grows by doubling with a device-to-device copy; a full one starts
// the next. A row occupies row_v4 16-byte pieces (zero padded), so every shader reads rows as
// uvec4 whatever the encoding: fp32, IEEE fp16 and bf16 are decoded in the shader from 32-bit
// words (no 16-bit storage feature needed) and Hamming bit vectors are XORed word by word.
// Each chunk has a deleted-rows bitmap on the device; the host keeps the master copy and
// uploads the chunks that changed before a search.
//
// Search, per block of queries:
//  - a few queries (<= kFusedQueries) with a small enough k: scan_select.comp reads each chunk
//    once per query, every workgroup keeping its own top-k, then merge_select.comp merges the
//    workgroup lists with the running top-k of the chunks before;
//  - otherwise tiles: distance_tile.comp fills a queries x rows key matrix for a tile of
//    rows (64 x 64 per workgroup), merge_select.comp (MODE 1) takes each segment's top-k of it
//    and a second merge_select merges those with the running top-k;
//  - batches of kBatchMinQueries or more on fp32 stores (L2 / inner product / cosine, k <=
//    kBatchMaxK, one chunk of at least kBatchMinRows rows, dim % 16 == 0 and <= 128) where the
//    device has cooperative matrices: the batch screen (search_batch_screened): thresholds from
//    the tiled search of a sample of rows, batch_screen.comp on the fp16 copy, exact re-score
//    (rescore.comp) and select; a block whose candidates overflow takes the tiled path.
//  - single queries on fp32 stores (L2 / inner product / cosine, k <= 16, one chunk of at least
//    kScreenMinRows rows, dim % 8 == 0): the fused scan reads an fp16 copy of the rows instead
//    (half the bytes; scan_lists.comp on 32-wide subgroups) and keeps 32 per query;
//    screen_finish.comp re-scores them from the fp32 rows and answers where error bounds prove
//    no other row enters the k best (screen_params), writing the results straight into the
//    host-visible readback buffer (on 32-wide subgroups it also does the last list merge); else
//    the fp32 rows are scanned.
//    HIVE_GPU_VULKAN_NO_F16_SCREEN=1 (read per search) turns it off.
// The running lists ping-pong between two candidate buffers (A, B): [query][k running | lists];
// the first merge of a search skips the (not yet written) running list.
// Everything is recorded into one command buffer and waited for once (Stream::run).
#include "backends/vulkan/vulkan_flat_store.hpp"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <mutex>
#include <optional>
#include <utility>
#include <string>

#include "core/copy_screen.hpp"
#include "core/env.hpp"
#include "hive_gpu/error.hpp"

namespace hive::gpu::vk {
namespace {

constexpr uint32_t kWG = 256;            // workgroup size of the select shaders
constexpr std::size_t kFusedQueries = 4; // up to this many queries scan the base themselves
constexpr uint32_t kNone = 0xffffffffu;
constexpr VkDeviceSize kStagingBytes = 64ull << 20;
constexpr std::size_t kScreenMinRows = 16384;  // below it the screen's extra dispatch does not pay
constexpr uint32_t kScreenList = 32;          // rows the copy's scan keeps per query
constexpr uint32_t kScreenMaxK = 16;
constexpr uint32_t kUnsure = 0xfffffffeu;     // screen_finish: the copy could not decide
// The batch screen (search_batch_screened): blocks of at least kBatchMinQueries queries, k <=
// kBatchMaxK, stores of at least kBatchMinRows rows (HIVE_GPU_VULKAN_BATCH_SCREEN_MIN_ROWS, read
// per search, lets tests use fewer); thresholds from a sample of rows / kBatchSampleRatio rows
// (HIVE_GPU_VULKAN_SCREEN_SAMPLE; at most kBatchMaxSample); at most kBatchMaxCandidates
// candidates a query, else the block takes the tiled path.
constexpr std::size_t kBatchMinQueries = 32;
constexpr uint32_t kBatchMaxK = 64;
constexpr std::size_t kBatchMinRows = 65536;
constexpr std::size_t kBatchSampleRatio = 64;
constexpr std::size_t kBatchMaxSample = 65536;
constexpr std::size_t kBatchMaxCandidates = 8192;
constexpr uint32_t kBatchQueriesPerWg = 128;  // batch_screen.comp
constexpr uint32_t kBatchTile = 64;
std::atomic<uint64_t> g_batch_screened{0}, g_batch_fallback{0};

using detail::env_flag;
using detail::env_size;

uint32_t next_pow2(uint32_t x) {
  uint32_t p = 1;
  while (p < x) p <<= 1;
  return p;
}

// The screen's copy scan on NVIDIA GPUs that tell their SM count (VK_NV_shader_sm_builtins): 8
// rows an invocation and round, kNvScreenWgsPerSm workgroups an SM (all resident at once, each
// a long run of rows). On an H100 (132 SMs) the copy scan of a million rows took 122.7 us so,
// 133.8 us with the defaults (4 rows, up to 1024 workgroups); other counts (264 to 2112
// workgroups, 2, 4 or 8 rows) took 130-216 us: too few workgroups leave SMs idle, more than
// fit at once leave a partial last wave.
constexpr std::size_t kNvScreenWgsPerSm = 3;
bool nv_screen_tuned(const PhysicalDevice& pd) { return pd.vendor_id == 0x10DE && pd.info.compute_units > 0; }

// The screen scan's rows per invocation and round (HIVE_GPU_VULKAN_SCREEN_E, a tuning knob read
// per search), and its candidate buffer (entries).
uint32_t screen_rows_per_round(const PhysicalDevice& pd) {
  return uint32_t(std::clamp<std::size_t>(env_size("HIVE_GPU_VULKAN_SCREEN_E", nv_screen_tuned(pd) ? 8 : 4), 1, 8));
}
uint32_t screen_buffer(uint32_t e) { return std::max(8 * kWG, next_pow2(2 * e * kWG)); }

// merge_select's per-invocation list (KL): the next power of two >= k up to 32, else none.
int32_t private_list(uint32_t k) { return k <= 32 ? int32_t(next_pow2(k)) : 0; }

int metric_code(Metric m) { return int(m); }  // the shader codes follow the enum (common.glsl)
int storage_code(ScalarType s) { return int(s); }

struct ScanPush {
  uint32_t n, row_base, rows_per_wg, k, out_ld, out_off, q_first;
};
struct ListsPush {  // merge_lists.comp
  uint32_t lists, in_ld, in_off, lists_per_wg, k, out_ld, out_off;
};
struct MergePush {
  uint32_t m, in_ld, in_off, seg_len, k, out_ld, out_off, row_base;
};
struct TilePush {
  uint32_t n, r0, nr, q0, nq, ld;
};
struct EncodePush {
  uint32_t first, count;
  float scale;
};
struct BatchScreenPush {  // batch_screen.comp
  uint32_t n, rows_per_wg, nq, cap, t_ld, t_off, info_off;
  float rel, rc;
};
struct RescorePush {
  uint32_t nq, cap, ld, off;
};
struct NormsPush {
  uint32_t first, count;
};
struct FinishPush {
  uint32_t in_ld, out_ld, k, q_first;
  float score_scale, bound_g, bound_e;
  uint32_t rows_off, lists, in_off;
};

struct BatchBounds;  // the batch screen's error bounds (see batch_bounds)

// The single-query screen's parameters for one query (see VulkanFlatStore::screen_params).
struct ScreenParams {
  float qscale = 1, score_scale = 1, bound_g = 0, bound_e = 0;
};

class VulkanFlatStore final : public detail::FlatStore {
 public:
  VulkanFlatStore(const detail::StoreConfig& cfg, std::shared_ptr<Gpu> gpu)
      : FlatStore(cfg), gpu_(std::move(gpu)), stream_(*gpu_) {
    const PhysicalDevice& pd = gpu_->physical();
    row_v4_ = std::max<std::size_t>(1, (cfg.row_bytes() + 15) / 16);
    stride_ = row_v4_ * 16;
    const VkDeviceSize limit = std::min<VkDeviceSize>(pd.max_buffer_bytes, VkDeviceSize(1) << 30);
    std::size_t rows = std::size_t(limit / stride_) / 32 * 32;
    // HIVE_GPU_VULKAN_CHUNK_ROWS: smaller chunks, so that tests cover the multi-chunk paths.
    rows = std::min(rows, env_size("HIVE_GPU_VULKAN_CHUNK_ROWS", rows) / 32 * 32);
    chunk_max_ = std::max<std::size_t>(rows, 32);
    if (chunk_max_ * stride_ > limit)
      throw Error(ErrorCode::Unsupported, "Vulkan: one row (" + std::to_string(stride_) +
                                              " bytes) does not fit the device's storage buffer limit");
    max_buffer_ = limit;
    for (auto& st : ring_streams_) st = std::make_unique<Stream>(*gpu_);
  }

  void append(std::size_t n, const void* encoded) override {
    std::lock_guard<std::mutex> lock(mu_);
    if (n == 0) return;
    ensure_capacity(rows_ + n);  // throws before anything changes
    upload_rows(rows_, n, static_cast<const unsigned char*>(encoded));
    rows_ += n;  // the fp16 copy, if any, is extended at the next screened search
    deleted_.resize((rows_ + 31) / 32, 0u);
    recount_chunks();
  }

  void write_row(std::size_t row, const void* encoded) override {
    std::lock_guard<std::mutex> lock(mu_);
    upload_rows(row, 1, static_cast<const unsigned char*>(encoded));
    mark_deleted(row, false);
    copy_ok_ = false;
  }

  void read_rows(std::size_t first, std::size_t n, void* out) const override {
    std::lock_guard<std::mutex> lock(mu_);
    auto* dst = static_cast<unsigned char*>(out);
    const std::size_t rb = cfg_.row_bytes();
    for_each_piece(first, n, [&](std::size_t c, std::size_t off, std::size_t take) {
      ensure(readback_, take * stride_, Memory::Readback);
      stream_.copy(chunks_[c].rows, off * stride_, readback_, 0, take * stride_);
      stream_.run();
      const auto* src = readback_.as<unsigned char>();
      for (std::size_t i = 0; i < take; ++i) std::memcpy(dst + i * rb, src + i * stride_, rb);
      dst += take * rb;
    });
  }

  void set_deleted(std::size_t row, bool deleted) override {
    std::lock_guard<std::mutex> lock(mu_);
    mark_deleted(row, deleted);
  }

  void compact(const std::vector<std::size_t>& keep) override {
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<Chunk> fresh;
    for (std::size_t left = keep.size(); left > 0;) {
      const std::size_t cap = std::min(chunk_max_, round32(left));
      fresh.push_back(make_chunk(cap));
      left -= std::min(left, cap);
    }
    // Runs of consecutive kept rows that stay within one source and one destination chunk
    // become one copy region each; one copy command per (source, destination) chunk pair.
    std::size_t i = 0;
    while (i < keep.size()) {
      const std::size_t sc = keep[i] / chunk_max_, dc = i / chunk_max_;
      std::vector<VkBufferCopy> regions;
      while (i < keep.size() && keep[i] / chunk_max_ == sc && i / chunk_max_ == dc) {
        std::size_t j = i + 1;
        while (j < keep.size() && keep[j] == keep[j - 1] + 1 && keep[j] / chunk_max_ == sc && j / chunk_max_ == dc) ++j;
        regions.push_back({VkDeviceSize(keep[i] % chunk_max_) * stride_, VkDeviceSize(i % chunk_max_) * stride_,
                           VkDeviceSize(j - i) * stride_});
        i = j;
      }
      stream_.copy_regions(chunks_[sc].rows, fresh[dc].rows, regions);
    }
    stream_.run();
    chunks_ = std::move(fresh);
    copy_ok_ = false;
    rows_ = keep.size();
    deleted_.assign((rows_ + 31) / 32, 0u);
    recount_chunks();
  }

  void reserve(std::size_t rows) override {
    std::lock_guard<std::mutex> lock(mu_);
    ensure_capacity(rows);
  }

  void clear() override {
    std::lock_guard<std::mutex> lock(mu_);
    chunks_.clear();
    rows_ = 0;
    deleted_.clear();
    copy_ok_ = false;
    copy_ = Buffer();
    max_abs_ = max_norm2_ = 0;
    finite_ = true;
  }

  std::size_t rows() const override {
    std::lock_guard<std::mutex> lock(mu_);
    return rows_;
  }

  void search(std::size_t nq, const void* queries, int k, float* distances, int64_t* rows) const override;

 private:
  struct Chunk {
    Buffer rows;
    Buffer deleted;       // one bit per row, cap / 32 words
    std::size_t cap = 0;  // rows the buffer holds (a multiple of 32)
    std::size_t n = 0;    // rows in use
    bool dirty = true;    // the device bitmap is stale
  };

  static std::size_t round32(std::size_t x) { return (x + 31) / 32 * 32; }

  Chunk make_chunk(std::size_t cap) const {
    Chunk c;
    c.cap = cap;
    c.rows = Buffer(*gpu_, VkDeviceSize(cap) * stride_, Memory::Device);
    c.deleted = Buffer(*gpu_, VkDeviceSize(cap / 32) * 4, Memory::Device);
    stream_.fill(c.deleted, 0, VkDeviceSize(cap / 32) * 4, 0u);
    return c;
  }

  std::size_t capacity() const {
    std::size_t c = 0;
    for (const auto& ch : chunks_) c += ch.cap;
    return c;
  }

  // Room for `want` rows: grows the last chunk by doubling (device copy) up to chunk_max_,
  // then adds chunks. Allocates everything before replacing anything.
  void ensure_capacity(std::size_t want) {
    if (want >= std::size_t(kNone))
      throw Error(ErrorCode::Unsupported, "Vulkan: a flat index holds fewer than 2^32 - 1 rows");
    std::size_t have = capacity();
    if (have >= want) return;
    std::vector<Chunk> added;
    std::optional<Chunk> grown;
    if (!chunks_.empty() && chunks_.back().cap < chunk_max_) {
      const Chunk& last = chunks_.back();
      const std::size_t need = want - (have - last.cap);
      const std::size_t cap = std::min(chunk_max_, round32(std::max(need, 2 * last.cap)));
      grown = make_chunk(cap);
      have += cap - last.cap;
    }
    while (have < want) {
      const std::size_t cap = std::min(chunk_max_, round32(std::max<std::size_t>(want - have, 1024)));
      added.push_back(make_chunk(cap));
      have += cap;
    }
    if (grown) {
      stream_.copy(chunks_.back().rows, 0, grown->rows, 0, VkDeviceSize(chunks_.back().n) * stride_);
      grown->n = chunks_.back().n;
    }
    stream_.run();  // the copy, and the fills of the new bitmaps
    if (grown) chunks_.back() = std::move(*grown);
    for (auto& c : added) chunks_.push_back(std::move(c));
  }

  // Rows in use per chunk. Bitmaps need no upload for this: appended rows are live, and a new
  // or grown chunk starts dirty (its zero-filled bitmap lacks the marks already made).
  void recount_chunks() {
    for (std::size_t c = 0; c < chunks_.size(); ++c) {
      const std::size_t first = c * chunk_max_;
      chunks_[c].n = rows_ > first ? std::min(chunks_[c].cap, rows_ - first) : 0;
    }
  }

  void mark_deleted(std::size_t row, bool del) {
    uint32_t& w = deleted_[row / 32];
    const uint32_t bit = 1u << (row % 32);
    w = del ? (w | bit) : (w & ~bit);
    chunks_[row / chunk_max_].dirty = true;
  }

  void ensure(Buffer& b, VkDeviceSize bytes, Memory kind) const {
    if (b.size() >= bytes && !b.empty()) return;
    b = Buffer();  // free first: the old one may be large
    b = Buffer(*gpu_, std::max<VkDeviceSize>(bytes, 4096), kind);
  }

  // Rows [first, first + n) in pieces that fit the staging buffers and stay within one chunk:
  // fn(chunk, first row in it, rows).
  template <class Fn>
  void for_each_piece(std::size_t first, std::size_t n, Fn&& fn) const {
    const std::size_t per = std::max<std::size_t>(1, std::size_t(kStagingBytes / stride_));
    while (n > 0) {
      const std::size_t c = first / chunk_max_, off = first % chunk_max_;
      const std::size_t take = std::min({n, per, chunk_max_ - off});
      fn(c, off, take);
      first += take;
      n -= take;
    }
  }

  // Rows [first, first + n) from the host, padded to stride_, through a ring of two staging
  // buffers, each with its own stream: while the device copies one piece, the host fills the
  // other.
  void upload_rows(std::size_t first, std::size_t n, const unsigned char* src) {
    const std::size_t rb = cfg_.row_bytes();
    std::size_t piece = 0;
    for_each_piece(first, n, [&](std::size_t c, std::size_t off, std::size_t take) {
      const std::size_t s = piece++ & 1;
      Stream& up = *ring_streams_[s];
      up.wait();  // the staging buffer's previous copy is done
      ensure(ring_[s], take * stride_, Memory::Upload);
      auto* dst = ring_[s].as<unsigned char>();
      for (std::size_t i = 0; i < take; ++i) {
        std::memcpy(dst + i * stride_, src + i * rb, rb);
        std::memset(dst + i * stride_ + rb, 0, stride_ - rb);
        if (tracks_maxima()) note_row(reinterpret_cast<const float*>(src + i * rb));
      }
      up.copy(ring_[s], 0, chunks_[c].rows, off * stride_, take * stride_);
      up.submit();
      src += take * rb;
    });
    ring_streams_[0]->wait();
    ring_streams_[1]->wait();
  }

  // The largest |value| and squared norm of the fp32 rows stored (upper bounds: removed rows
  // stay counted), for the screen's range and error bounds.
  bool tracks_maxima() const {  // the stores the screen serves (see screen_ready)
    const Metric m = cfg_.metric;
    return cfg_.storage == ScalarType::F32 && (m == Metric::L2 || m == Metric::InnerProduct || m == Metric::Cosine);
  }
  void note_row(const float* x) {
    double n2 = 0, mx = 0;
    for (std::size_t j = 0; j < cfg_.dim; ++j) {
      const double v = std::fabs(double(x[j]));
      n2 += v * v;
      mx = std::max(mx, v);
    }
    if (!std::isfinite(n2) || !std::isfinite(mx)) finite_ = false;
    max_abs_ = std::max(max_abs_, mx);
    max_norm2_ = std::max(max_norm2_, n2);
  }

  // The device bitmaps of the chunks whose rows were deleted or restored since the last search,
  // staged side by side and copied in one submission.
  void sync_deleted() const {
    std::size_t total = 0;
    for (const auto& ch : chunks_)
      if (ch.dirty) total += ch.cap / 32;
    if (total == 0) return;
    ensure(upload_, VkDeviceSize(total) * 4, Memory::Upload);
    auto* dst = upload_.as<uint32_t>();
    std::size_t at = 0;
    for (std::size_t c = 0; c < chunks_.size(); ++c) {
      Chunk& ch = const_cast<Chunk&>(chunks_[c]);
      if (!ch.dirty) continue;
      const std::size_t w0 = c * chunk_max_ / 32, words = ch.cap / 32;
      const std::size_t have = deleted_.size() > w0 ? std::min(words, deleted_.size() - w0) : 0;
      std::memset(dst + at, 0, words * 4);
      if (have) std::memcpy(dst + at, deleted_.data() + w0, have * 4);
      stream_.copy(upload_, VkDeviceSize(at) * 4, ch.deleted, 0, VkDeviceSize(words) * 4);
      ch.dirty = false;
      at += words;
    }
    stream_.run();
  }

  // A dispatch of `items` invocations in workgroups of 256: up to 65 535 groups in x, the rest in
  // y (encode_half, row_norms and gather_rows index gid.x + gid.y * groups.x * 256).
  void dispatch_items(VkPipeline pipe, const Bindings& b, const void* push, uint32_t bytes,
                      std::size_t items) const {
    const std::size_t groups = (items + 255) / 256, gx = std::min<std::size_t>(groups, 65535);
    stream_.dispatch(pipe, b, push, bytes, uint32_t(gx), uint32_t((groups + gx - 1) / gx));
  }

  bool half_storage() const { return cfg_.storage == ScalarType::F16 || cfg_.storage == ScalarType::BF16; }
  std::size_t query_v4() const { return half_storage() ? 2 * row_v4_ : row_v4_; }

  // Shared memory scan_select needs for list capacity kp.
  std::size_t scan_shared(uint32_t kp, uint32_t bs) const { return std::size_t(kp + bs) * 8 + query_v4() * 16 + 64; }

  // rows_copy: scan that buffer (the fp16 copy of chunk 0) with metric scan_metric instead.
  // leave_lists (one chunk): the last list merge is left to the caller (see reduce; the lists
  // and their offset go to result_lists_).
  void search_fused(std::size_t q0, std::size_t nq, uint32_t k, uint32_t kp, uint32_t bs, uint32_t e,
                    const Buffer* rows_copy = nullptr, int scan_metric = 0, bool leave_lists = false) const;
  // The single-query screen: whether it applies to a search for k (making or extending the
  // copy), the parameters for a query, and the recorded work (copy scan, screen_finish).
  bool screen_ready(std::size_t nq, uint32_t k) const;
  // Whether the rows can have an fp16 copy (one chunk, fp32 rows of a finite range), and the
  // copy and the rows' squared norms made or extended (recorded, not run).
  bool copy_possible() const;
  void ensure_copy() const;
  // The batch screen: whether it serves a search of nq queries for k (making the copy), the
  // per-query terms of its test (false: a query outside the ranges its bounds cover), the
  // sample of rows its thresholds come from, and the recorded work for one block (thresholds,
  // screen, exact re-score, select); returns the candidate capacity a query had.
  bool batch_screen_ok(std::size_t nq, uint32_t k) const;
  BatchBounds batch_bounds() const;
  bool batch_query_terms(const float* q, const BatchBounds& bb, float* terms) const;
  void make_sample(uint32_t k) const;
  std::size_t search_batch_screened(std::size_t nq, uint32_t k, uint32_t kp, uint32_t bs, uint32_t e) const;
  bool screen_params(const float* q, ScreenParams& sp) const;
  void search_screened(std::size_t nq, uint32_t k, const ScreenParams& sp, uint32_t e) const;
  // only: that chunk instead of the store's (the batch screen's sample; rows numbered from 0).
  void search_tiled(std::size_t q0, std::size_t nq, uint32_t k, uint32_t kp, uint32_t bs, uint32_t e,
                    const Chunk* only = nullptr) const;
  // Reduces entries [first, m) of each of nq rows of `cur` (row length ld) to k, leaving them in
  // entries [0, k) of the buffer it returns (cur or the other one). first = k skips the running
  // list (the first merge, before there is one). With `leave` (and the subgroup list merge in
  // use), the last merge, of at most 32 lists, is left to the caller's own shader: *leave becomes
  // {lists, offset of the first}; otherwise {0, 0}.
  // sorted: entries [first, m) are sorted lists of k (the merge by shuffles may take them).
  int reduce(int cur, std::size_t nq, std::size_t first, std::size_t m, std::size_t ld, uint32_t k, uint32_t kp,
             uint32_t bs, uint32_t e, std::pair<std::size_t, std::size_t>* leave = nullptr,
             bool sorted = true) const;
  Buffer& keys(int which) const { return which ? bk_ : ak_; }
  // Both candidate buffers (keys and rows) for `entries` entries.
  void ensure_candidates(std::size_t entries) const {
    for (int b = 0; b < 2; ++b) {
      ensure(keys(b), VkDeviceSize(entries) * 4, Memory::Device);
      ensure(rowsb(b), VkDeviceSize(entries) * 4, Memory::Device);
    }
  }
  Buffer& rowsb(int which) const { return which ? br_ : ar_; }

  std::shared_ptr<Gpu> gpu_;
  mutable Stream stream_;
  mutable std::mutex mu_;
  std::size_t row_v4_ = 0, stride_ = 0, chunk_max_ = 0;
  VkDeviceSize max_buffer_ = 0;
  std::vector<Chunk> chunks_;
  std::size_t rows_ = 0;
  std::vector<uint32_t> deleted_;  // master copy, one bit per row
  // Workspace, grown on demand and kept: the search path allocates only when a larger call comes.
  mutable Buffer upload_, readback_, queries_, dist_, ak_, ar_, bk_, br_;
  // Few queries (<= kFusedQueries) go straight into device-local mapped memory where the device
  // has it, sparing the staging copy and its barrier (~4 us a single query on an H100);
  // qbuf_ is the query buffer of the search being recorded.
  mutable Buffer queries_mapped_;
  mutable const Buffer* qbuf_ = nullptr;
  Buffer ring_[2];                                // row uploads (upload_rows)
  std::unique_ptr<Stream> ring_streams_[2];
  mutable int result_buf_ = 0;         // which candidate buffer holds the last block's results
  mutable std::size_t result_ld_ = 0;  // and its entries per query
  // search_fused's leave_lists: {lists left, offset of the first} ({0, 0}: merged to one)
  mutable std::pair<std::size_t, std::size_t> result_lists_{0, 0};
  // The screen's fp16 copy of chunk 0 (rows times copy_scale_, a power of two that put the
  // largest |value| into [2^14, 2^15) when it was made), valid for rows [0, copy_rows_) while
  // copy_ok_; appends are encoded at the next screened search while they fit its scale.
  mutable Buffer copy_;
  mutable Buffer norms_;  // the fp32 rows' squared norms, made and extended with the copy
  mutable bool copy_ok_ = false;
  mutable std::size_t copy_rows_ = 0;
  mutable float copy_scale_ = 1.0f;
  double max_abs_ = 0, max_norm2_ = 0;
  bool finite_ = true;
  // The screen's outcomes since the copy was made.
  mutable detail::ScreenTally screen_tally_;
  // The batch screen: its sample of rows (a chunk of its own, no row deleted), its candidates
  // (nq counts, then nq x cap rows) and their counts read back.
  mutable Chunk sample_;
  mutable Buffer sample_idx_, cand_, cand_rb_;
};

int VulkanFlatStore::reduce(int cur, std::size_t nq, std::size_t first, std::size_t m, std::size_t ld, uint32_t k,
                            uint32_t kp, uint32_t bs, uint32_t e, std::pair<std::size_t, std::size_t>* leave,
                            bool sorted) const {
  if (leave != nullptr) *leave = {0, 0};
  // Sorted lists of k <= 32 pairs (the fused scan's) on subgroups of 32: merged by shuffles
  // (merge_lists.comp), 32 lists a workgroup and level. HIVE_GPU_VULKAN_NO_LIST_MERGE=1 (read per
  // search) keeps merge_select, for A/B timing.
  const PhysicalDevice& pd = gpu_->physical();
  if (sorted && k <= 32 && pd.subgroup_size == 32 && pd.compute_shuffle && (m - first) % k == 0 &&
      !env_flag("HIVE_GPU_VULKAN_NO_LIST_MERGE")) {
    VkPipeline merge = gpu_->pipeline(Shader::MergeLists, {});
    constexpr std::size_t kListsPerWg = 32;
    std::size_t lists = (m - first) / k;
    while (true) {
      const std::size_t groups = (lists + kListsPerWg - 1) / kListsPerWg;
      if (groups == 1 && leave != nullptr) {
        *leave = {lists, first};
        return cur;
      }
      ListsPush lp{uint32_t(lists), uint32_t(ld), uint32_t(first), uint32_t(kListsPerWg), k, uint32_t(ld), 0};
      stream_.dispatch(merge, {&keys(cur), &rowsb(cur), &keys(cur ^ 1), &rowsb(cur ^ 1)}, &lp, sizeof lp,
                       uint32_t(groups), uint32_t(nq));
      cur ^= 1;
      if (groups == 1) return cur;
      lists = groups;
      first = 0;
    }
  }
  VkPipeline merge = gpu_->pipeline(Shader::MergeSelect, {0, int32_t(kp), int32_t(bs), int32_t(e), private_list(k)});
  // One workgroup a query up to `whole` entries (one dispatch, no second level); beyond that,
  // segments of `seg` in parallel first.
  const std::size_t seg = std::max<std::size_t>(4096, 4 * std::size_t(kp));
  const std::size_t whole = std::max<std::size_t>(16384, 4 * std::size_t(kp));
  while (true) {
    m -= first;
    const std::size_t groups = m > whole ? (m + seg - 1) / seg : 1;
    MergePush mp{uint32_t(m), uint32_t(ld), uint32_t(first), uint32_t(groups == 1 ? m : seg), k, uint32_t(ld), 0, 0};
    first = 0;
    stream_.dispatch(merge, {&keys(cur), &rowsb(cur), &keys(cur ^ 1), &rowsb(cur ^ 1)}, &mp, sizeof mp,
                     uint32_t(groups), uint32_t(nq));
    cur ^= 1;
    if (groups == 1) return cur;
    m = groups * k;
  }
}

void VulkanFlatStore::search_fused(std::size_t q0, std::size_t nq, uint32_t k, uint32_t kp, uint32_t bs, uint32_t e,
                                   const Buffer* rows_copy, int scan_metric, bool leave_lists) const {
  // The fp16 copy: 8 values a piece, so half the pieces of the fp32 rows (dim % 8 == 0).
  const std::size_t rv4 = rows_copy != nullptr ? row_v4_ / 2 : row_v4_;
  const int metric = rows_copy != nullptr ? scan_metric : metric_code(cfg_.metric);
  const int storage = storage_code(rows_copy != nullptr ? ScalarType::F16 : cfg_.storage);
  // Invocations per row: up to 8 (128 contiguous bytes a group) where subgroup shuffles exist.
  const PhysicalDevice& pd = gpu_->physical();
  uint32_t g = 1;
  // HIVE_GPU_VULKAN_NO_COOP: one invocation a row (for A/B timing); read once.
  static const bool no_coop = env_size("HIVE_GPU_VULKAN_NO_COOP", 0) != 0;
  // HIVE_GPU_VULKAN_COOP_G (tuning, read per search): the most invocations a row.
  const std::size_t g_max = env_size("HIVE_GPU_VULKAN_COOP_G", 8);
  if (pd.compute_shuffle && !no_coop)
    while (g < g_max && 2 * g <= rv4 && 2 * g <= pd.subgroup_size) g *= 2;
  // The screen's copy scan on 32-wide subgroups keeps its lists in registers (scan_lists.comp:
  // 8 invocations a row, 8 rows a round); HIVE_GPU_VULKAN_NO_SCAN_LISTS=1 (read per search) keeps
  // scan_select, for A/B timing.
  const bool lists = rows_copy != nullptr && k == 32 && e == 8 && g == 8 && pd.subgroup_size == 32 &&
                     !env_flag("HIVE_GPU_VULKAN_NO_SCAN_LISTS");
  VkPipeline scan = lists ? gpu_->pipeline(Shader::ScanLists, {metric, storage, int32_t(rv4)})
                          : gpu_->pipeline(g > 1 ? Shader::ScanSelectCoop : Shader::ScanSelect,
                                           {metric, storage, int32_t(kp), int32_t(bs), int32_t(rv4), int32_t(e),
                                            int32_t(g)});
  // HIVE_GPU_VULKAN_SCAN_WGS (tuning, read per search): the most workgroups a chunk and query
  // (with it, a workgroup's rows may go down to kWG instead of 4 kWG).
  const std::size_t forced_wgs = env_size("HIVE_GPU_VULKAN_SCAN_WGS", 0);
  const std::size_t max_wgs = forced_wgs > 0                                   ? forced_wgs
                              : rows_copy != nullptr && nv_screen_tuned(pd) ? kNvScreenWgsPerSm * pd.info.compute_units
                              : k <= 64                                     ? 1024
                                                                            : 256;
  const std::size_t min_rows = forced_wgs > 0 ? kWG : 4 * kWG;
  auto rows_per_wg = [&](std::size_t n) {
    const std::size_t r = std::max<std::size_t>(min_rows, (n + max_wgs - 1) / max_wgs);
    return (r + 31) / 32 * 32;
  };
  std::size_t wmax = 1;
  for (const auto& ch : chunks_)
    if (ch.n) wmax = std::max(wmax, (ch.n + rows_per_wg(ch.n) - 1) / rows_per_wg(ch.n));
  const std::size_t ld = (wmax + 1) * k;
  ensure_candidates(nq * ld);
  int cur = 0;
  bool running = false;  // entries [0, k) hold the chunks before (none for the first)
  for (std::size_t c = 0; c < chunks_.size(); ++c) {
    const Chunk& ch = chunks_[c];
    if (ch.n == 0) continue;
    const std::size_t rpw = rows_per_wg(ch.n), w = (ch.n + rpw - 1) / rpw;
    ScanPush sp{uint32_t(ch.n), uint32_t(c * chunk_max_), uint32_t(rpw), k, uint32_t(ld), k, uint32_t(q0)};
    const Buffer& rows = rows_copy != nullptr ? *rows_copy : ch.rows;  // (a copy: one chunk)
    stream_.dispatch(scan, {&rows, qbuf_, &ch.deleted, &keys(cur), &rowsb(cur)}, &sp, sizeof sp, uint32_t(w),
                     uint32_t(nq));
    const bool leave = leave_lists && chunks_.size() == 1;
    cur = reduce(cur, nq, running ? 0 : k, (w + 1) * k, ld, k, kp, bs, e, leave ? &result_lists_ : nullptr);
    running = true;
  }
  result_buf_ = cur;
  result_ld_ = ld;
}

void VulkanFlatStore::search_tiled(std::size_t q0, std::size_t nq, uint32_t k, uint32_t kp, uint32_t bs, uint32_t e,
                                   const Chunk* only) const {
  VkPipeline tile = gpu_->pipeline(Shader::DistanceTile,
                                   {metric_code(cfg_.metric), storage_code(cfg_.storage), int32_t(row_v4_)});
  VkPipeline select = gpu_->pipeline(Shader::MergeSelect, {1, int32_t(kp), int32_t(bs), int32_t(e), private_list(k)});
  // Row tiles: nq x rt keys within min(1 GiB, an eighth of the device, the binding limit).
  // Fewer, longer row tiles mean fewer select workgroups (each costs a shared-memory merge).
  const VkDeviceSize dist_limit =
      std::min<VkDeviceSize>({max_buffer_, 1ull << 30, gpu_->physical().info.total_memory / 8});
  std::size_t rt = std::min<std::size_t>(chunk_max_, std::size_t(dist_limit / 4 / nq));
  rt = std::clamp<std::size_t>(rt / 64 * 64, 64, std::size_t(1) << 20);  // x groups stay below 65535
  if (only != nullptr) rt = std::min(rt, (only->n + 63) / 64 * 64);
  // Segment of a key-matrix row per workgroup. With per-invocation lists (small k) a segment
  // costs one shared-memory merge however long it is: segments as long as ~1024 workgroups a
  // row tile allow (on the H100 this took the select of a 10 000 x 1M batch from ~230 to ~115 ms).
  std::size_t seg = std::max<std::size_t>(4096, 4 * std::size_t(kp));
  if (private_list(k) > 0) seg = std::clamp<std::size_t>(nq * rt / 1024, seg, rt);
  const std::size_t segs = (rt + seg - 1) / seg;
  const std::size_t ld = (segs + 1) * k;
  if (VkDeviceSize(nq * ld) * 4 > max_buffer_) throw Error(ErrorCode::Internal, "Vulkan: candidate lists exceed a binding");
  ensure(dist_, VkDeviceSize(nq * rt) * 4, Memory::Device);
  ensure_candidates(nq * ld);
  int cur = 0;
  bool running = false;
  const std::size_t nchunks = only != nullptr ? 1 : chunks_.size();
  for (std::size_t c = 0; c < nchunks; ++c) {
    const Chunk& ch = only != nullptr ? *only : chunks_[c];
    for (std::size_t r0 = 0; r0 < ch.n; r0 += rt) {
      const std::size_t nr = std::min(rt, ch.n - r0);
      TilePush tp{uint32_t(ch.n), uint32_t(r0), uint32_t(nr), uint32_t(q0), uint32_t(nq), uint32_t(rt)};
      stream_.dispatch(tile, {&ch.rows, qbuf_, &ch.deleted, &dist_}, &tp, sizeof tp, uint32_t((nr + 63) / 64),
                       uint32_t((nq + 63) / 64));
      const std::size_t s = (nr + seg - 1) / seg;
      MergePush mp{uint32_t(nr), uint32_t(rt), 0, uint32_t(seg), k, uint32_t(ld), k, uint32_t(c * chunk_max_ + r0)};
      stream_.dispatch(select, {&dist_, &dist_, &keys(cur), &rowsb(cur)}, &mp, sizeof mp, uint32_t(s), uint32_t(nq));
      cur = reduce(cur, nq, running ? 0 : k, (s + 1) * k, ld, k, kp, bs, e);
      running = true;
    }
  }
  result_buf_ = cur;
  result_ld_ = ld;
}

bool VulkanFlatStore::copy_possible() const {
  return tracks_maxima() && cfg_.dim % 8 == 0 && chunks_.size() == 1 && finite_ &&
         max_abs_ > 0x1p-24 && max_abs_ < 0x1p100;
}

void VulkanFlatStore::ensure_copy() const {
  const Chunk& ch = chunks_[0];
  // Whole 64-row steps of the batch screen stay inside both buffers (it reads past the last row).
  const std::size_t rows_cap = (ch.cap + kBatchTile - 1) / kBatchTile * kBatchTile;
  const VkDeviceSize bytes = VkDeviceSize(rows_cap) * (stride_ / 2);
  VkPipeline encode = gpu_->pipeline(Shader::EncodeHalf, {});
  VkPipeline norms = gpu_->pipeline(Shader::RowNorms, {int32_t(row_v4_)});
  auto encode_rows = [&](std::size_t first, std::size_t n) {  // rows [first, first + n): copy and norms
    const std::size_t per_row = row_v4_ / 2, pieces = n * per_row;
    EncodePush ep{uint32_t(first * per_row), uint32_t(pieces), copy_scale_};
    dispatch_items(encode, {&ch.rows, &copy_}, &ep, sizeof ep, pieces);
    NormsPush np{uint32_t(first), uint32_t(n)};
    dispatch_items(norms, {&ch.rows, &norms_}, &np, sizeof np, n);
  };
  // Appended rows join the copy while their values fit its scale (below fp16's largest, 65504).
  if (copy_ok_ && copy_.size() >= bytes && max_abs_ * double(copy_scale_) < 65504.0) {
    if (copy_rows_ < rows_) encode_rows(copy_rows_, rows_ - copy_rows_);
  } else {
    int ex = 0;
    (void)std::frexp(max_abs_, &ex);  // max_abs_ = m 2^ex, m in [0.5, 1): scaled into [2^14, 2^15)
    copy_scale_ = std::ldexp(1.0f, 15 - ex);
    ensure(copy_, bytes, Memory::Device);
    ensure(norms_, VkDeviceSize(rows_cap) * 4, Memory::Device);
    encode_rows(0, rows_);
    copy_ok_ = true;
    screen_tally_.reset();
  }
  copy_rows_ = rows_;
}

bool VulkanFlatStore::screen_ready(std::size_t nq, uint32_t k) const {
  if (nq > kFusedQueries || k > kScreenMaxK || rows_ < kScreenMinRows || !copy_possible()) return false;
  if (env_flag("HIVE_GPU_VULKAN_NO_F16_SCREEN")) return false;  // read per search: one benchmark times both
  if (!screen_tally_.worth_trying()) return false;
  ensure_copy();
  return true;
}

// Bounds, as on CUDA (CudaFlatStore::single_screen) but for Vulkan's looser arithmetic: an fma
// may round twice (g_d = 2 (d + 2) u / (1 - 2 (d + 2) u), u = 2^-24), packHalf2x16 may round
// toward zero (u_h = 2^-10) and flush fp16 subnormals (eta = 2^-14 / scale), X >= every row norm:
//   |y - x| <= Delta = u_h X + eta sqrt(d) (y the copy unscaled);
//   inner product / cosine: |copy key - exact key| <= E = (2 g_d + u_h + g_d u_h) |q| X
//     + (1 + g_d) eta |q|_1 (+ 2 u (1 + |q| X) for cosine's 1 - dot);
//   L2: both keys within g = (1 + u)^2 (1 + g_d) - 1 of |q - x|^2 and |q - y|^2 (relative).
// Each doubled, then rounded up to float. The scan's query is q * scale (L2) or q / scale, exact.
bool VulkanFlatStore::screen_params(const float* q, ScreenParams& sp) const {
  const detail::QueryMagnitudes qm = detail::query_magnitudes(q, cfg_.dim);
  const double q1 = qm.l1, qmax = qm.max, qmin = qm.min_nonzero;
  if (!std::isfinite(qm.norm2)) return false;
  const double d = double(cfg_.dim), u = 0x1p-24, uh = 0x1p-10, scale = copy_scale_;
  const double gd = 2 * (d + 2) * u / (1 - 2 * (d + 2) * u), eta = 0x1p-14 / scale, qn = std::sqrt(qm.norm2);
  const double X = std::sqrt(max_norm2_) * (1 + 0x1p-20);
  const double up = 1 + 0x1p-20;  // rounding the bounds to float, upwards
  if (cfg_.metric == Metric::L2) {
    if (qmax > 0 && (qmax * scale > 0x1p100 || qmin * scale < 0x1p-100)) return false;
    const double big = qmax * scale + 65504.0;
    if (!(big * big * d < 0x1p120)) return false;
    const double g = (1 + u) * (1 + u) * (1 + gd) - 1;
    sp.qscale = float(scale);
    sp.score_scale = float(1.0 / (scale * scale));
    sp.bound_g = float(2 * g * up);
    sp.bound_e = float(2 * (uh * X + eta * std::sqrt(d)) * up);
  } else {
    if (qmax > 0 && (qmin / scale < 0x1p-100 || qmax / scale > 0x1p100)) return false;
    double e = (2 * gd + uh + gd * uh) * qn * X + (1 + gd) * eta * q1 + 0x1p-120 * d;
    if (cfg_.metric == Metric::Cosine) e += 2 * u * (1 + qn * X);
    sp.qscale = float(1.0 / scale);
    sp.score_scale = 1.0f;
    sp.bound_g = 0.0f;
    sp.bound_e = float(2 * e * up);
  }
  return std::isfinite(sp.bound_e) && std::isfinite(sp.bound_g);
}

void VulkanFlatStore::search_screened(std::size_t nq, uint32_t k, const ScreenParams& sp, uint32_t e) const {
  // The copy's scan on the scaled queries (entries nq .. 2 nq of the query buffer): 32 a query,
  // e rows an invocation and round (screen_rows_per_round).
  const uint32_t bs = screen_buffer(e);
  const int scan_metric = metric_code(cfg_.metric == Metric::L2 ? Metric::L2 : Metric::InnerProduct);
  // The last list merge (of at most 32 lists) happens inside screen_finish where subgroups have
  // 32 invocations (its LISTS variant): one dispatch fewer.
  result_lists_ = {0, 0};
  search_fused(nq, nq, kScreenList, kScreenList, bs, e, &copy_, scan_metric, /*leave_lists=*/true);
  const int cur = result_buf_;
  const bool lists = result_lists_.first > 0;
  VkPipeline finish = gpu_->pipeline(lists ? Shader::ScreenFinishLists : Shader::ScreenFinish,
                                     {metric_code(cfg_.metric), int32_t(row_v4_)});
  // The results go straight to the host-visible readback buffer (keys, then rows: the layout
  // read_results copies into), sparing the copies and their barriers.
  ensure(readback_, VkDeviceSize(nq * k) * 8, Memory::Readback);
  FinishPush fp{uint32_t(result_ld_), k, k, 0, sp.score_scale, sp.bound_g, sp.bound_e, uint32_t(nq * k),
                uint32_t(result_lists_.first), uint32_t(result_lists_.second)};
  stream_.dispatch(finish, {&chunks_[0].rows, qbuf_, &keys(cur), &rowsb(cur), &readback_, &readback_}, &fp,
                   sizeof fp, 1, uint32_t(nq));
}

// The batch screen's error bounds. With acc the shader's product of the fp16 operands (the
// query times s_q, the copy times its scale S) and dot_hat = acc / (s_q S), the screened score
// S_hat (L2: |q|^2 + |r|^2 - 2 dot_hat; inner product: -dot_hat; cosine: 1 - dot_hat, with the
// rows' squared norms from row_norms.comp) is within
//   a |q| |r| + b (|q|^2 + |r|^2) + c |q|
// of the key rescore.comp computes, the bound CUDA's screen proves (screen_bound there) with
// Vulkan's looser arithmetic: packHalf2x16 may round toward zero (2^-10 for the query and for the
// copy) and flush fp16 subnormals (the query's, below 2^-28 |q| each after its scaling: sqrt(d)
// 2^-27 into a; the copy's, below 2^-14 / S each: c), an fma may round twice, and the products
// are summed in fp32 in any order (d 2^-22: the tensor cores' truncating adds or fp32 FMAs).
// The b terms also cover the few fp32 operations of the test itself; everything is doubled.
// The thresholds come from the tiled search's arithmetic (distance_tile.comp), which may round
// differently from rescore.comp: tau' = tau + |tau| rel (L2's sums of squares: 3 g_d) + A_q (dot
// products: 2 g_d |q| X, X bounding the row norms).
struct BatchBounds {
  double a, b, c, rel, gd, X;
  float rc;
};
BatchBounds VulkanFlatStore::batch_bounds() const {
  const Metric metric = cfg_.metric;
  const double copy_scale = copy_scale_, max_norm2 = max_norm2_;
  const double d = double(cfg_.dim), u = 0x1p-24, uh = 0x1p-10;
  const double gd = 2 * (d + 2) * u / (1 - 2 * (d + 2) * u);
  const double dot = 2 * uh + uh * uh + d * 0x1p-22 + std::sqrt(d) * 0x1p-27;
  const double flush = std::sqrt(d) * 0x1p-14 / copy_scale;
  BatchBounds bb{};
  if (metric == Metric::L2) {
    bb.a = 2 * dot;
    bb.b = (d + 8) * 0x1p-21 + 0x1p-19;
    bb.c = 2 * flush;
  } else {
    bb.a = dot + d * 0x1p-21;
    bb.b = 0x1p-21 + 0x1p-19;
    bb.c = flush;
  }
  bb.a *= 2;
  bb.b *= 2;
  bb.c *= 2;
  bb.rel = 3 * gd + 0x1p-20;
  bb.gd = gd;
  bb.X = std::sqrt(max_norm2) * (1 + 0x1p-20);
  bb.rc = float(metric == Metric::L2 ? 1 - bb.b : -bb.b);
  return bb;
}

// x rounded to a float no larger (smaller: `down`) or no smaller than it.
float round_float(double x, bool down) {
  float f = float(x);
  if (down && double(f) > x) f = std::nextafter(f, -std::numeric_limits<float>::infinity());
  if (!down && double(f) < x) f = std::nextafter(f, std::numeric_limits<float>::infinity());
  return f;
}

bool VulkanFlatStore::batch_screen_ok(std::size_t nq, uint32_t k) const {
  if (nq < kBatchMinQueries || k > kBatchMaxK || cfg_.dim % 16 != 0 || cfg_.dim > 128 || !copy_possible())
    return false;
  // Both read per search: tests lower the row count, benchmarks time both paths.
  if (rows_ < env_size("HIVE_GPU_VULKAN_BATCH_SCREEN_MIN_ROWS", kBatchMinRows)) return false;
  if (env_flag("HIVE_GPU_VULKAN_NO_BATCH_SCREEN")) return false;
  const PhysicalDevice& pd = gpu_->physical();
  // The fp32-FMA variant (no cooperative matrices) is a correctness path: on the H100 it took
  // 744 ms for 10 000 x 1M, the tiled search 211 ms. It runs only when asked for: by
  // HIVE_GPU_VULKAN_NO_COOPMAT=1 (A/B on a device with them) or HIVE_GPU_VULKAN_BATCH_SCREEN_FMA=1
  // (tests, on lavapipe).
  const bool no_coop = env_flag("HIVE_GPU_VULKAN_NO_COOPMAT");
  const bool coop = pd.coop_matrix && !no_coop;
  if (!coop && !no_coop && !env_flag("HIVE_GPU_VULKAN_BATCH_SCREEN_FMA")) return false;
  const std::size_t cv4 = cfg_.dim / 8;  // batch_screen.comp's shared memory (16-byte pieces)
  const std::size_t rows_and_scores = 2 * 32 * (cv4 + 1) + kBatchQueriesPerWg * 40 / 4;
  const std::size_t shared = (coop ? std::max<std::size_t>(kBatchQueriesPerWg * cv4, rows_and_scores)
                                   : kBatchQueriesPerWg * cv4) * 16 + kBatchQueriesPerWg * 16;
  if (shared > pd.max_shared_bytes) return false;
  std::size_t dead = 0;
  for (uint32_t w : deleted_) dead += std::size_t(__builtin_popcount(w));
  if (rows_ - dead < 64 * std::size_t(k)) return false;
  ensure_copy();
  return true;
}

// terms: (W, P, Qb, A, s_q, 0, 0, 0) as batch_screen.comp reads them.
bool VulkanFlatStore::batch_query_terms(const float* q, const BatchBounds& bb, float* terms) const {
  const detail::QueryMagnitudes qm = detail::query_magnitudes(q, cfg_.dim);
  const double d = double(cfg_.dim), qmax = qm.max, qn2 = qm.norm2;
  if (!std::isfinite(qn2)) return false;
  // The scaled query's largest component in [2^14, 2^15) (no fp16 overflow), and products and
  // squared distances far from fp32's range.
  if (qmax > 0 && (qmax < 0x1p-24 || qmax > 0x1p100)) return false;
  if (!(qmax * max_abs_ * d < 0x1p100) || !((qmax + max_abs_) * (qmax + max_abs_) * d < 0x1p120)) return false;
  int ex = 0;
  (void)std::frexp(qmax, &ex);
  const double sq = qmax > 0 ? std::ldexp(1.0, 15 - ex) : 1.0;
  const double qn = std::sqrt(qn2);
  const double w = (cfg_.metric == Metric::L2 ? 2.0 : 1.0) / (sq * double(copy_scale_));  // a power of two
  double qb = -bb.b * qn2 - bb.c * qn;
  if (cfg_.metric == Metric::L2) qb += qn2;
  if (cfg_.metric == Metric::Cosine) qb += 1.0;
  qb -= 0x1p-20 * (qn2 + 1.0 + bb.c * qn) + 0x1p-120 * d;
  double A = 0;
  if (cfg_.metric != Metric::L2) A = 2 * bb.gd * qn * bb.X;
  if (cfg_.metric == Metric::Cosine) A += 4 * 0x1p-24 * (1 + qn * bb.X);
  terms[0] = float(w);
  terms[1] = round_float(-bb.a * qn, true);
  terms[2] = round_float(qb, true);
  terms[3] = round_float(A * (1 + 0x1p-20), false);
  terms[4] = float(sq);
  terms[5] = terms[6] = terms[7] = 0.0f;
  return std::isfinite(terms[1]) && std::isfinite(terms[2]) && std::isfinite(terms[3]) && terms[0] > 0.0f &&
         std::isfinite(terms[0]);
}

// Live rows spread evenly over the store (the next live row of each of m strides), gathered
// into sample_.
void VulkanFlatStore::make_sample(uint32_t k) const {
  const std::size_t n = rows_;
  const std::size_t ratio = std::max<std::size_t>(1, env_size("HIVE_GPU_VULKAN_SCREEN_SAMPLE", kBatchSampleRatio));
  std::size_t m = std::clamp<std::size_t>(std::max(n / ratio, std::size_t(k) * (n / 1024)), 64 * std::size_t(k),
                                          kBatchMaxSample);
  m = std::min(m, n);
  const std::vector<uint32_t> idx =
      detail::spread_sample(n, m, [&](std::size_t r) { return (deleted_[r / 32] >> (r % 32) & 1u) != 0; });
  if (sample_.cap < round32(idx.size())) sample_ = make_chunk(round32(std::max<std::size_t>(idx.size(), 32)));
  sample_.n = idx.size();
  if (idx.empty()) return;
  ensure(sample_idx_, VkDeviceSize(idx.size()) * 4, Memory::Upload);  // read by the shader where it lies
  std::memcpy(sample_idx_.as<uint32_t>(), idx.data(), idx.size() * 4);
  VkPipeline gather = gpu_->pipeline(Shader::GatherRows, {int32_t(row_v4_)});
  const uint32_t count = uint32_t(idx.size());
  dispatch_items(gather, {&chunks_[0].rows, &sample_idx_, &sample_.rows}, &count, sizeof count,
                 idx.size() * row_v4_);
}

std::size_t VulkanFlatStore::search_batch_screened(std::size_t nq, uint32_t k, uint32_t kp, uint32_t bs,
                                                   uint32_t e) const {
  const PhysicalDevice& pd = gpu_->physical();
  // Candidates: about e = k n / m rows beat a threshold from m sample rows, a count whose spread
  // is about e / sqrt(k) (for k = 1, an exponential one: above 18 e once in 10^8 queries). Room
  // for e (2 + 16 / sqrt(k)), in whole rescore.comp workgroups.
  const double expect = double(k) * double(rows_) / double(std::max<std::size_t>(sample_.n, 1));
  const double want = std::max(256.0, expect * (2.0 + 16.0 / std::sqrt(double(k))));
  const std::size_t cap = std::min<std::size_t>(kBatchMaxCandidates, (std::size_t(want) + 255) / 256 * 256);
  const std::size_t ld = k + cap;
  ensure_candidates(nq * ld);  // first: the thresholds' search then leaves them in place
  // 1. Thresholds: each query's k-th best exact key among the sample rows.
  search_tiled(0, nq, k, kp, bs, e, &sample_);
  const int t = result_buf_;
  // 2. The screen.
  ensure(cand_, VkDeviceSize(nq + nq * cap) * 4, Memory::Device);
  stream_.fill(cand_, 0, VkDeviceSize(nq) * 4, 0u);
  const bool coop = pd.coop_matrix && !env_flag("HIVE_GPU_VULKAN_NO_COOPMAT");
  VkPipeline screen = gpu_->pipeline(coop ? Shader::BatchScreenCoop : Shader::BatchScreen,
                                     {metric_code(cfg_.metric), int32_t(cfg_.dim / 16)});
  // x: query groups; y: row ranges, about 12 workgroups an SM in all (HIVE_GPU_VULKAN_BATCH_WGS,
  // tuning, read per search).
  const std::size_t gx = (nq + kBatchQueriesPerWg - 1) / kBatchQueriesPerWg;
  const std::size_t units = pd.info.compute_units > 0 ? std::size_t(pd.info.compute_units) : 64;
  const std::size_t target = std::max<std::size_t>(1, env_size("HIVE_GPU_VULKAN_BATCH_WGS", 12 * units));
  const std::size_t ranges = std::clamp<std::size_t>(target / gx, 1, 65535);
  std::size_t rpw = (rows_ + ranges - 1) / ranges;
  rpw = (rpw + kBatchTile - 1) / kBatchTile * kBatchTile;
  const std::size_t gy = (rows_ + rpw - 1) / rpw;
  const BatchBounds bb = batch_bounds();
  BatchScreenPush bp{uint32_t(rows_), uint32_t(rpw), uint32_t(nq), uint32_t(cap), uint32_t(result_ld_), k - 1,
                     uint32_t(nq * row_v4_), float(bb.rel), bb.rc};
  stream_.dispatch(screen, {&copy_, qbuf_, &keys(t), &norms_, &chunks_[0].deleted, &cand_}, &bp, sizeof bp,
                   uint32_t(gx), uint32_t(gy));
  // 3. Exact keys of the candidates, then the k best of them.
  VkPipeline rescore = gpu_->pipeline(Shader::Rescore, {metric_code(cfg_.metric), int32_t(row_v4_)});
  RescorePush rp{uint32_t(nq), uint32_t(cap), uint32_t(ld), k};
  stream_.dispatch(rescore, {&chunks_[0].rows, qbuf_, &cand_, &keys(t ^ 1), &rowsb(t ^ 1)}, &rp, sizeof rp,
                   uint32_t(cap / 256), uint32_t(nq));
  result_buf_ = reduce(t ^ 1, nq, k, k + cap, ld, k, kp, bs, e, nullptr, /*sorted=*/false);
  result_ld_ = ld;
  ensure(cand_rb_, VkDeviceSize(nq) * 4, Memory::Readback);
  stream_.copy(cand_, 0, cand_rb_, 0, VkDeviceSize(nq) * 4);
  return cap;
}

void VulkanFlatStore::search(std::size_t nq, const void* queries, int k_in, float* distances, int64_t* rows) const {
  std::lock_guard<std::mutex> lock(mu_);
  const uint32_t k = uint32_t(k_in);
  const bool negate = cfg_.metric == Metric::InnerProduct;
  const float worst = negate ? -std::numeric_limits<float>::infinity() : std::numeric_limits<float>::infinity();
  if (rows_ == 0 || nq == 0) {
    std::fill(distances, distances + nq * k, worst);
    std::fill(rows, rows + nq * k, int64_t(-1));
    return;
  }
  sync_deleted();
  const uint32_t kp = std::max<uint32_t>(16, next_pow2(k));
  // Rounds of e entries per invocation between barriers, and a candidate buffer of bs >= e * kWG
  // (a merge sorts only its filled part). Four entries a round where the shared memory allows.
  const uint32_t e = kp <= 512 ? 4 : 1;
  const uint32_t bs = e == 4 ? 8 * kWG : 4 * kWG;
  const bool fits = scan_shared(kp, bs) <= gpu_->physical().max_shared_bytes;
  const std::size_t qv4 = query_v4();
  const std::size_t qbytes = qv4 * 16;
  // Queries are staged in blocks: the query buffer and the candidate lists stay within the
  // binding limit, and the merge grid's y extent within 65535.
  const std::size_t in_row = cfg_.metric == Metric::Hamming ? cfg_.row_bytes() : cfg_.dim * 4;
  // Candidate lists take at most 6 k entries a query on the tiled path (see search_tiled).
  std::size_t block = std::max<std::size_t>(
      1, std::min<std::size_t>({nq, 4096, std::size_t(max_buffer_ / qbytes), std::size_t(max_buffer_ / (24 * k))}));
  // The batch screen: its candidates (k + cap entries a query, at most) within a binding too.
  bool batch = batch_screen_ok(nq, k);
  if (batch) {
    make_sample(k);  // (recorded: it runs with the first block)
    batch = sample_.n >= k;  // (always, as the sample's strides are at most 64 rows; kept in case)
  }
  if (batch) block = std::min<std::size_t>(block, max_buffer_ / (4 * (k + kBatchMaxCandidates + 1)));
  block = (nq + (nq + block - 1) / block - 1) / ((nq + block - 1) / block);  // equal blocks
  std::vector<float> terms;
  const auto* src = static_cast<const unsigned char*>(queries);
  // Each query's first k entries of the result buffer -> readback, one region per query; for
  // more than a few queries the lists are first packed side by side (a merge_select of k entries
  // into the other buffer), and copied as one region: a region a query cost ~1.6 us each on an
  // H100 (two 3 334-region copies, ~10 ms).
  auto read_results = [&](std::size_t n) {
    ensure(readback_, VkDeviceSize(n * k) * 8, Memory::Readback);
    if (n > 8 && result_ld_ != k) {
      VkPipeline pack = gpu_->pipeline(Shader::MergeSelect, {0, int32_t(kp), int32_t(bs), int32_t(e), private_list(k)});
      MergePush mp{k, uint32_t(result_ld_), 0, k, k, k, 0, 0};
      const int from = result_buf_;
      stream_.dispatch(pack, {&keys(from), &rowsb(from), &keys(from ^ 1), &rowsb(from ^ 1)}, &mp, sizeof mp, 1,
                       uint32_t(n));
      result_buf_ = from ^ 1;
      result_ld_ = k;
    }
    const std::size_t regions = result_ld_ == k ? 1 : n;
    const std::size_t per = result_ld_ == k ? n * k : k;  // entries a region
    std::vector<VkBufferCopy> kr(regions), rr(regions);
    for (std::size_t i = 0; i < regions; ++i) {
      kr[i] = {VkDeviceSize(i * result_ld_) * 4, VkDeviceSize(i * k) * 4, VkDeviceSize(per) * 4};
      rr[i] = {VkDeviceSize(i * result_ld_) * 4, VkDeviceSize((n + i) * k) * 4, VkDeviceSize(per) * 4};
    }
    stream_.copy_regions(keys(result_buf_), readback_, kr);
    stream_.copy_regions(rowsb(result_buf_), readback_, rr);
    stream_.run();
  };
  for (std::size_t q0 = 0; q0 < nq; q0 += block) {
    const std::size_t n = std::min(block, nq - q0);
    // The screen: the queries again after them, scaled for the copy (see screen_params).
    ScreenParams sp;
    const uint32_t screen_e = screen_rows_per_round(gpu_->physical());
    bool screen =
        scan_shared(kScreenList, screen_buffer(screen_e)) <= gpu_->physical().max_shared_bytes && screen_ready(n, k);
    for (std::size_t i = 0; i < n && screen; ++i) {
      ScreenParams one;
      screen = screen_params(reinterpret_cast<const float*>(src + (q0 + i) * in_row), one);
      sp.qscale = one.qscale;  // the same for every query: the copy's scale
      sp.score_scale = one.score_scale;
      sp.bound_g = std::max(sp.bound_g, one.bound_g);
      sp.bound_e = std::max(sp.bound_e, one.bound_e);
    }
    // The batch screen: each query's terms (batch_query_terms) go after the queries.
    bool bscreen = batch && !screen && n >= kBatchMinQueries;
    if (bscreen) {
      terms.resize(n * 8);
      const BatchBounds bb = batch_bounds();
      for (std::size_t i = 0; i < n && bscreen; ++i)
        bscreen = batch_query_terms(reinterpret_cast<const float*>(src + (q0 + i) * in_row), bb, &terms[i * 8]);
    }
    const std::size_t staged = screen ? 2 * n : n;
    const VkDeviceSize staged_bytes = VkDeviceSize(staged * qbytes + (bscreen ? n * 32 : 0));
    const bool direct = n <= kFusedQueries && gpu_->has_mapped_memory();
    if (direct) {
      ensure(queries_mapped_, staged_bytes, Memory::Mapped);
      qbuf_ = &queries_mapped_;
    } else {
      ensure(upload_, staged_bytes, Memory::Upload);
      ensure(queries_, staged_bytes, Memory::Device);
      qbuf_ = &queries_;
    }
    auto* dst = (direct ? queries_mapped_ : upload_).as<unsigned char>();
    for (std::size_t i = 0; i < n; ++i) {
      std::memcpy(dst + i * qbytes, src + (q0 + i) * in_row, in_row);
      std::memset(dst + i * qbytes + in_row, 0, qbytes - in_row);
      if (!screen) continue;
      float* scaled = reinterpret_cast<float*>(dst + (n + i) * qbytes);
      const float* qi = reinterpret_cast<const float*>(src + (q0 + i) * in_row);
      for (std::size_t j = 0; j < cfg_.dim; ++j) scaled[j] = qi[j] * sp.qscale;
      std::memset(dst + (n + i) * qbytes + in_row, 0, qbytes - in_row);
    }
    if (bscreen) std::memcpy(dst + n * qbytes, terms.data(), n * 32);
    if (!direct) stream_.copy(upload_, 0, queries_, 0, staged_bytes);
    std::size_t cap = 0;
    if (bscreen)
      cap = search_batch_screened(n, k, kp, bs, e);
    else if (screen)
      search_screened(n, k, sp, screen_e);
    else if (n <= kFusedQueries && fits)
      search_fused(0, n, k, kp, bs, e);
    else
      search_tiled(0, n, k, kp, bs, e);
    if (screen)
      stream_.run();  // screen_finish wrote the readback buffer
    else
      read_results(n);
    if (bscreen) {
      const uint32_t* counts = cand_rb_.as<uint32_t>();
      const std::size_t most = *std::max_element(counts, counts + n);
      const bool over = most > cap;  // some query's candidates overflowed: the tiled path for the block
      (over ? g_batch_fallback : g_batch_screened).fetch_add(1, std::memory_order_relaxed);
      if (env_flag("HIVE_GPU_VULKAN_SCREEN_REPORT"))
        std::fprintf(stderr, "vulkan-batch-screen: %zu queries, %zu sample rows, most candidates %zu of %zu, %s%s\n", n,
                     sample_.n, most, cap, over ? "fallback" : "screened",
                     gpu_->physical().coop_matrix && !env_flag("HIVE_GPU_VULKAN_NO_COOPMAT") ? " (coopmat)" : "");
      if (over) {
        search_tiled(0, n, k, kp, bs, e);
        read_results(n);
      }
    }
    if (screen) {
      bool unsure = false;
      for (std::size_t i = 0; i < n; ++i) unsure = unsure || readback_.as<uint32_t>()[(n + i) * k] == kUnsure;
      screen_tally_.note(unsure);
      if (unsure) {  // the copy could not decide for some query: the fp32 rows for the block
        search_fused(0, n, k, kp, bs, e);
        read_results(n);
      }
    }
    const float* rk = readback_.as<float>();
    const uint32_t* rrow = readback_.as<uint32_t>() + n * k;
    for (std::size_t i = 0; i < n * k; ++i) {
      const std::size_t o = q0 * k + i;
      if (rrow[i] == kNone) {
        rows[o] = -1;
        distances[o] = worst;
      } else {
        rows[o] = int64_t(rrow[i]);
        distances[o] = negate ? -rk[i] : rk[i];
      }
    }
  }
}

}  // namespace

std::unique_ptr<detail::FlatStore> make_vulkan_flat_store(const detail::StoreConfig& cfg, std::shared_ptr<Gpu> gpu) {
  return std::make_unique<VulkanFlatStore>(cfg, std::move(gpu));
}

}  // namespace hive::gpu::vk
