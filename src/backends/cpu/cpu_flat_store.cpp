// CPU flat storage and exact search.
//
// Two search paths, chosen per call:
//  - scan: the SIMD kernels score blocks of rows small enough to stay in L2 while every query
//    of a task reuses them; few queries split the base across threads, many split the queries.
//    A single query therefore streams the base once at memory bandwidth.
//  - gemm (L2 / inner product / cosine, batches >= kGemmMinQueries): tiles of queries x rows
//    through a matrix product (AVX512-BF16 where the CPU has it, else BLAS sgemm), each tile's
//    scores reduced at once, so the nq x n score matrix never exists. The product only screens:
//    every score carries a proven error bound (bf16 rounding, zero for vectors exactly
//    representable in bf16, plus fp32 accumulation), each query keeps every row whose lower
//    bound does not exceed the k-th smallest upper bound, and those candidates are re-scored
//    with the exact kernels. The result is the same as the scan path's, distances included.
#include "backends/cpu/cpu_flat_store.hpp"

#include <sys/mman.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <mutex>
#include <new>

#include "backends/cpu/bf16_gemm.hpp"
#include "backends/cpu/kernels.hpp"
#include "backends/cpu/thread_pool.hpp"
#include "core/topk.hpp"
#include "hive_gpu/error.hpp"

#ifdef HIVE_GPU_WITH_BLAS
#include <cblas.h>
#endif

namespace hive::gpu::cpu {

namespace {

using detail::Candidate;
using detail::TopK;

constexpr std::size_t kAlign = 64;
// Below this many queries a BLAS call's packing costs more than it saves.
constexpr std::size_t kGemmMinQueries = 16;
constexpr std::size_t kGemmQueryTile = 1024;
constexpr std::size_t kGemmRowTile = 1024;
// Rows scored per kernel call in the scan path: about 128 KiB of encoded rows, so a block
// stays in L2 while each query of the task passes over it.
constexpr std::size_t kScanBlockBytes = 128u << 10;
// Fewer rows than this per thread are not worth a split.
constexpr std::size_t kMinRowsPerSplit = 2048;

struct FreeDeleter {
  void operator()(uint8_t* p) const { std::free(p); }
};
using Buffer = std::unique_ptr<uint8_t, FreeDeleter>;

// Large stores are 2 MiB aligned and ask for transparent huge pages: a search streams the
// whole buffer, and on 4 KiB pages the hardware prefetchers stop at every page boundary.
constexpr std::size_t kHugePage = 2u << 20;

Buffer allocate(std::size_t bytes) {
  const bool huge = bytes >= 4 * kHugePage;
  const std::size_t align = huge ? kHugePage : kAlign;
  const std::size_t rounded = (std::max<std::size_t>(bytes, 1) + align - 1) / align * align;
  auto* p = static_cast<uint8_t*>(std::aligned_alloc(align, rounded));
  if (!p)
    throw Error(ErrorCode::OutOfMemory, "cannot allocate " + std::to_string(bytes) + " bytes for vectors");
  if (huge && !std::getenv("HIVE_GPU_NO_THP")) (void)::madvise(p, rounded, MADV_HUGEPAGE);  // advice only: failure is harmless
  return Buffer(p);
}

std::size_t ceil_div(std::size_t a, std::size_t b) { return (a + b - 1) / b; }

class CpuFlatStore final : public detail::FlatStore {
 public:
  explicit CpuFlatStore(const detail::StoreConfig& cfg) : FlatStore(cfg), row_bytes_(cfg.row_bytes()) {}

  void append(std::size_t n, const void* encoded) override {
    if (n == 0) return;
    grow_to(rows_ + n);
    if (gemm_metric()) norms_.resize(rows_ + n);  // may throw: before any change
    deleted_.resize(ceil_div(rows_ + n, 64), 0);
    std::memcpy(data_.get() + rows_ * row_bytes_, encoded, n * row_bytes_);
    const std::size_t first = rows_;
    rows_ += n;
    update_norms(first, n);
  }

  void write_row(std::size_t row, const void* encoded) override {
    std::memcpy(data_.get() + row * row_bytes_, encoded, row_bytes_);
    set_deleted(row, false);
    update_norms(row, 1);
  }

  void read_rows(std::size_t first, std::size_t n, void* out) const override {
    std::memcpy(out, data_.get() + first * row_bytes_, n * row_bytes_);
  }

  void set_deleted(std::size_t row, bool deleted) override {
    uint64_t& word = deleted_[row / 64];
    const uint64_t bit = uint64_t(1) << (row % 64);
    const bool was = (word & bit) != 0;
    if (was == deleted) return;
    word ^= bit;
    deleted_count_ += deleted ? 1 : std::size_t(-1);
  }

  void compact(const std::vector<std::size_t>& keep) override {
    for (std::size_t i = 0; i < keep.size(); ++i) {
      if (keep[i] == i) continue;
      std::memcpy(data_.get() + i * row_bytes_, data_.get() + keep[i] * row_bytes_, row_bytes_);
      if (!norms_.empty()) norms_[i] = norms_[keep[i]];
    }
    rows_ = keep.size();
    if (!norms_.empty()) norms_.resize(rows_);
    deleted_.assign(ceil_div(rows_, 64), 0);
    deleted_count_ = 0;
  }

  void reserve(std::size_t rows) override {
    if (rows > capacity_) reallocate(rows);
  }

  void clear() override {
    rows_ = 0;
    norms_.clear();
    deleted_.clear();
    deleted_count_ = 0;
  }

  std::size_t rows() const override { return rows_; }

  void search(std::size_t nq, const void* queries, int k, float* distances, int64_t* rows) const override;

 private:
  void grow_to(std::size_t rows) {
    if (rows > capacity_) reallocate(std::max(rows, capacity_ * 2));
  }
  void reallocate(std::size_t capacity) {
    Buffer fresh = allocate(capacity * row_bytes_);
    if (rows_) std::memcpy(fresh.get(), data_.get(), rows_ * row_bytes_);
    data_ = std::move(fresh);
    capacity_ = capacity;
  }
  // Metrics the gemm path serves. It keeps squared norms of the decoded rows for them: it ranks
  // L2 by ||x||^2 - 2 q.x and scales its error bounds by ||x||.
  bool gemm_metric() const {
    return cfg_.metric == Metric::L2 || cfg_.metric == Metric::InnerProduct || cfg_.metric == Metric::Cosine;
  }
  void update_norms(std::size_t first, std::size_t n) {
    if (!gemm_metric()) return;
    const std::vector<float> zero(cfg_.dim, 0.0f);
    kernels().scan_fn(Metric::L2, cfg_.storage)(zero.data(), row_ptr(first), n, cfg_.dim, norms_.data() + first);
  }
  const uint8_t* row_ptr(std::size_t row) const { return data_.get() + row * row_bytes_; }
  bool is_deleted(std::size_t row) const { return (deleted_[row / 64] >> (row % 64)) & 1u; }
  // Marks removed rows NaN, which every "score <= threshold" test rejects; +inf would tie with
  // live rows whose distance overflowed and could take their slots.
  void mask_deleted(float* scores, std::size_t first, std::size_t n) const {
    if (deleted_count_ == 0) return;
    for (std::size_t i = 0; i < n; ++i)
      if (is_deleted(first + i)) scores[i] = std::numeric_limits<float>::quiet_NaN();
  }

  // Scores one query (fp32 or bits) against rows [first, first + n) with the kernels.
  void score(const KernelTable& kt, const void* q, std::size_t first, std::size_t n, float* out) const {
    if (cfg_.metric == Metric::Hamming)
      kt.hamming(static_cast<const uint8_t*>(q), row_ptr(first), n, row_bytes_, out);
    else
      kt.scan_fn(cfg_.metric, cfg_.storage)(static_cast<const float*>(q), row_ptr(first), n, cfg_.dim, out);
  }
  const void* query_ptr(const void* queries, std::size_t i) const {
    const std::size_t qbytes = cfg_.metric == Metric::Hamming ? row_bytes_ : cfg_.dim * sizeof(float);
    return static_cast<const uint8_t*>(queries) + i * qbytes;
  }

  void search_scan(std::size_t nq, const void* queries, int k, std::vector<std::vector<Candidate>>& out) const;
  bool gemm_available() const;
  void search_gemm(std::size_t nq, const float* queries, int k, std::vector<std::vector<Candidate>>& out) const;
  // Splits [0, rows_) into `splits` ranges and nq queries into chunks, runs task(q0, q1, r0,
  // r1, heaps) on the pool, and gathers every task's candidates per query into out.
  template <class Heap, class Task>
  void run_tiles(std::size_t nq, std::size_t query_chunk, std::size_t splits, int k,
                 std::vector<std::vector<Candidate>>& out, const Task& task) const;

  std::size_t row_bytes_;
  Buffer data_;
  std::size_t rows_ = 0;
  std::size_t capacity_ = 0;
  std::vector<uint64_t> deleted_;
  std::size_t deleted_count_ = 0;
  std::vector<float> norms_;
};

template <class Heap, class Task>
void CpuFlatStore::run_tiles(std::size_t nq, std::size_t query_chunk, std::size_t splits, int k,
                             std::vector<std::vector<Candidate>>& out, const Task& task) const {
  const std::size_t chunks = ceil_div(nq, query_chunk);
  std::vector<std::vector<Candidate>> partial(chunks * splits * query_chunk);
  ThreadPool::instance().parallel_for(chunks * splits, [&](std::size_t t) {
    const std::size_t c = t / splits, s = t % splits;
    const std::size_t q0 = c * query_chunk, q1 = std::min(nq, q0 + query_chunk);
    const std::size_t r0 = rows_ * s / splits, r1 = rows_ * (s + 1) / splits;
    std::vector<Heap> heaps(q1 - q0, Heap(k));
    task(q0, q1, r0, r1, heaps);
    for (std::size_t q = q0; q < q1; ++q) partial[(c * splits + s) * query_chunk + (q - q0)] = std::move(heaps[q - q0].items());
  });
  for (std::size_t q = 0; q < nq; ++q) {
    const std::size_t c = q / query_chunk;
    auto& all = out[q];
    for (std::size_t s = 0; s < splits; ++s) {
      auto& p = partial[(c * splits + s) * query_chunk + (q - c * query_chunk)];
      all.insert(all.end(), p.begin(), p.end());
    }
  }
}

void CpuFlatStore::search_scan(std::size_t nq, const void* queries, int k,
                               std::vector<std::vector<Candidate>>& out) const {
  const KernelTable& kt = kernels();
  const std::size_t threads = std::size_t(ThreadPool::instance().size());
  // Few queries: split the base so every thread streams its own part. Many: split queries.
  std::size_t splits = 1, query_chunk = nq;
  if (nq < threads) {
    splits = std::min(ceil_div(threads, nq), std::max<std::size_t>(1, rows_ / kMinRowsPerSplit));
  } else {
    query_chunk = ceil_div(nq, std::min(nq, threads * 4));
  }
  const std::size_t block = std::clamp<std::size_t>(kScanBlockBytes / row_bytes_, 16, 4096);
  run_tiles<TopK>(nq, query_chunk, splits, k, out,
            [&](std::size_t q0, std::size_t q1, std::size_t r0, std::size_t r1, std::vector<TopK>& heaps) {
              std::vector<float> scores(block);
              for (std::size_t b = r0; b < r1; b += block) {
                const std::size_t m = std::min(block, r1 - b);
                for (std::size_t q = q0; q < q1; ++q) {
                  score(kt, query_ptr(queries, q), b, m, scores.data());
                  mask_deleted(scores.data(), b, m);
                  heaps[q - q0].push_block(scores.data(), m, int64_t(b));
                }
              }
            });
}

// Every row whose true score may be among the k best, given scores known only within
// [lower, upper]: a row enters while its lower bound is <= the k-th smallest upper bound seen
// (which only falls), and is dropped once a later bound excludes it.
class BoundedTopK {
 public:
  explicit BoundedTopK(int k) : upper_(k) {}
  float threshold() const { return upper_.threshold(); }
  void push(float lower, float upper, int64_t row) {
    if (lower > upper_.threshold()) return;
    upper_.push(upper, row);
    cands_.push_back({lower, row});
    if (cands_.size() >= cap_) {
      prune();
      cap_ = std::max(cap_, 2 * cands_.size());
    }
  }
  // The surviving candidates (score = lower bound).
  std::vector<Candidate>& items() {
    prune();
    return cands_;
  }

 private:
  void prune() {
    const float t = upper_.threshold();
    cands_.erase(std::remove_if(cands_.begin(), cands_.end(), [t](const Candidate& c) { return c.score > t; }),
                 cands_.end());
  }
  TopK upper_;
  std::vector<Candidate> cands_;
  std::size_t cap_ = 256;
};

#ifdef HIVE_GPU_WITH_BLAS
extern "C" void openblas_set_num_threads(int);
#endif

bool use_bf16_engine() {
  static const bool on = best_simd_level() == SimdLevel::AVX512 && bf16_gemm_supported() &&
                         std::getenv("HIVE_GPU_NO_BF16") == nullptr;
  return on;
}

bool CpuFlatStore::gemm_available() const {
#ifdef HIVE_GPU_WITH_BLAS
  return true;
#else
  return use_bf16_engine();
#endif
}

void CpuFlatStore::search_gemm(std::size_t nq, const float* queries, int k,
                               std::vector<std::vector<Candidate>>& out) const {
  const bool bf16 = use_bf16_engine();
#ifdef HIVE_GPU_WITH_BLAS
  // Our pool parallelises over tiles; BLAS must not start threads of its own inside them.
  static std::once_flag once;
  std::call_once(once, [] { openblas_set_num_threads(1); });
#endif
  const KernelTable& kt = kernels();
  const std::size_t dim = cfg_.dim;
  const bool l2 = cfg_.metric == Metric::L2;
  // Error bounds, as multiples of ||q|| ||x||: bf16 rounding of both operands (relative
  // 2^-8 each) unless both are exact, and fp32 accumulation in any order (gamma_d, applied to
  // sum |q_p x_p| <= (1 + 2^-8)^2 ||q|| ||x||), then slack for forming the score itself.
  const double u16 = std::ldexp(1.0, -8), u32 = std::ldexp(1.0, -24);
  const double gamma = double(dim + 2) * u32 / (1.0 - double(dim + 2) * u32);
  const float c_round = float(2 * u16 + u16 * u16);
  const float c_acc = float(gamma * (1 + u16) * (1 + u16) * 1.0001);
  const float c_form = float(8 * u32);

  std::vector<float> qnorm(nq);
  for (std::size_t i = 0; i < nq; ++i) {
    double sq = 0;
    for (std::size_t p = 0; p < dim; ++p) sq += double(queries[i * dim + p]) * double(queries[i * dim + p]);
    qnorm[i] = float(std::sqrt(sq) * (1 + 4 * u32));
  }

  const std::size_t threads = std::size_t(ThreadPool::instance().size());
  const std::size_t query_chunk = std::min(kGemmQueryTile, ceil_div(nq, threads));
  const std::size_t chunks = ceil_div(nq, query_chunk);
  const std::size_t splits = chunks >= threads ? 1
                                               : std::min(ceil_div(threads, chunks),
                                                          std::max<std::size_t>(1, rows_ / kGemmRowTile));
  const bool decode = cfg_.storage != ScalarType::F32;
  run_tiles<BoundedTopK>(nq, query_chunk, splits, k, out,
            [&](std::size_t q0, std::size_t q1, std::size_t r0, std::size_t r1, std::vector<BoundedTopK>& heaps) {
              const std::size_t mq = q1 - q0;
              std::vector<float> tile(mq * kGemmRowTile);
              std::vector<float> decoded(decode ? kGemmRowTile * dim : 0);
              std::vector<float> base(kGemmRowTile), slack(kGemmRowTile), w_exact(kGemmRowTile),
                  w_inexact(kGemmRowTile), lower(kGemmRowTile), upper(kGemmRowTile);
              std::vector<uint16_t> packed_q, packed_x;
              std::vector<uint8_t> q_exact(mq, 1), x_exact(kGemmRowTile, 1);
              if (bf16) {
                packed_q.resize(bf16_packed_queries_size(mq, dim));
                packed_x.resize(bf16_packed_rows_size(kGemmRowTile, dim));
                bf16_pack_queries(queries + q0 * dim, mq, dim, packed_q.data(), q_exact.data());
              }
              for (std::size_t b = r0; b < r1; b += kGemmRowTile) {
                const std::size_t m = std::min(kGemmRowTile, r1 - b);
                const float* x = reinterpret_cast<const float*>(row_ptr(b));
                if (decode) {
                  kt.decode[int(cfg_.storage)](row_ptr(b), decoded.data(), m * dim);
                  x = decoded.data();
                }
                if (bf16) {
                  bf16_pack_rows(x, m, dim, packed_x.data(), x_exact.data());
                  bf16_gemm(packed_q.data(), mq, packed_x.data(), m, dim, tile.data(), m);
                } else {
#ifdef HIVE_GPU_WITH_BLAS
                  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(mq), int(m), int(dim), 1.0f,
                              queries + q0 * dim, int(dim), x, int(dim), 0.0f, tile.data(), int(m));
#endif
                }
                // Per row, the parts of the bound that do not depend on the query, so the per-score
                // work is one branch-free pass (it vectorises) and a sparse push:
                //   L2: score = |x|^2 - 2 q.x, err = 2 c |q| |x| + (gamma + c_form) |x|^2 + 2 c_form |q.x|
                //   IP/cosine: score = -q.x, err = c |q| |x| + c_form |q.x|
                const float* nrm = norms_.data() + b;
                const float ip_scale = l2 ? 2.0f : 1.0f;
                for (std::size_t j = 0; j < m; ++j) {
                  const float xn = std::sqrt(nrm[j]) * float(1 + 4 * u32);
                  const float c = bf16 && !x_exact[j] ? c_acc + c_round : c_acc;
                  base[j] = l2 ? nrm[j] : 0.0f;
                  slack[j] = l2 ? (float(gamma) + c_form) * nrm[j] : 0.0f;
                  w_exact[j] = ip_scale * c * xn;
                  w_inexact[j] = ip_scale * (c_acc + (bf16 ? c_round : 0.0f)) * xn;
                }
                for (std::size_t q = 0; q < mq; ++q) {
                  const float* ip = tile.data() + q * m;
                  const float qn = qnorm[q0 + q];
                  const float* w = bf16 && !q_exact[q] ? w_inexact.data() : w_exact.data();
                  for (std::size_t j = 0; j < m; ++j) {
                    const float sc = base[j] - ip_scale * ip[j];
                    const float err = qn * w[j] + slack[j] + ip_scale * c_form * std::fabs(ip[j]);
                    lower[j] = sc - err;
                    upper[j] = sc + err;
                  }
                  BoundedTopK& heap = heaps[q];
                  float t = heap.threshold();
                  for (std::size_t j = 0; j < m; ++j) {
                    if (lower[j] > t) continue;
                    if (deleted_count_ && is_deleted(b + j)) continue;
                    heap.push(lower[j], upper[j], int64_t(b + j));
                    t = heap.threshold();
                  }
                }
              }
            });
  // Re-score the candidates exactly; write_best then keeps the k best.
  ThreadPool::instance().parallel_for(ceil_div(nq, 64), [&](std::size_t t) {
    for (std::size_t q = t * 64; q < std::min(nq, t * 64 + 64); ++q)
      for (auto& c : out[q]) score(kt, queries + q * dim, std::size_t(c.row), 1, &c.score);
  });
}

void CpuFlatStore::search(std::size_t nq, const void* queries, int k, float* distances, int64_t* rows) const {
  std::vector<std::vector<Candidate>> cand(nq);
  if (rows_ > 0) {
    if (gemm_metric() && nq >= kGemmMinQueries && gemm_available())
      search_gemm(nq, static_cast<const float*>(queries), k, cand);
    else
      search_scan(nq, queries, k, cand);
  }
  const std::size_t kk = std::size_t(k);
  for (std::size_t q = 0; q < nq; ++q) {
    detail::write_best(cand[q], k, distances + q * kk, rows + q * kk);
    if (cfg_.metric == Metric::InnerProduct)  // kernels minimise -dot; report the dot product
      for (std::size_t j = 0; j < kk; ++j) distances[q * kk + j] = -distances[q * kk + j];
  }
}

}  // namespace

std::unique_ptr<detail::FlatStore> make_cpu_flat_store(const detail::StoreConfig& cfg) {
  return std::make_unique<CpuFlatStore>(cfg);
}

}  // namespace hive::gpu::cpu
