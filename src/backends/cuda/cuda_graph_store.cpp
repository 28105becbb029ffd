// CUDA backend: the graph store of GraphIndex (core/backend.hpp's GraphStore). Rows (fp32) and
// links (n x degree uint32) live in device memory, growing by doubling; the build and batch
// insertion run the kernels of graph_build.cu, searches the kernel of graph_search.cu.
//
// Build (why this way: docs/design.md, "GPU graph build"):
//  1. k-means (L2, on a sample) into about 2n / kClusterTarget clusters; every node joins its
//     two nearest clusters, so clusters overlap and a node near a border sees both sides.
//  2. Per cluster: its members gathered, all their pairwise scores as matrix products (cuBLAS
//     TF32 where it loads, else our tiled kernel; the scan for L1 / Linf), the intermediate + 1
//     best of each member by the select kernels, scattered to the member's candidate slots.
//  3. Each node's candidates from its two clusters merged (repeats and itself dropped): its
//     k-NN list. Small stores (one cluster) get the exact k-NN graph.
//  4. CAGRA's rank-based pruning to `degree`, reverse edges, and the final lists.
// Batch insertion (extend): new rows in chunks of at most the linked count; each chunk's
// neighbours come from a graph search, are pruned against the existing lists, and each new node
// is written into the back half of its nearest neighbours' lists.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <cstdlib>
#include <limits>
#include <mutex>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "backends/cpu/thread_pool.hpp"
#include "backends/cuda/blas.hpp"
#include "backends/cuda/cuda_common.hpp"
#include "backends/cuda/cuda_flat_store.hpp"
#include "backends/cuda/dot_tile.hpp"
#include "backends/cuda/graph_build.hpp"
#include "backends/cuda/graph_search.hpp"
#include "backends/cuda/kernels.hpp"
#include "core/backend.hpp"
#include "hive_gpu/error.hpp"

namespace hive::gpu::HIVE_GPU_DEVICE_NS {
namespace {

constexpr uint32_t kNone = 0xffffffffu;
constexpr uint32_t kSecondSlot = 0x80000000u;
constexpr std::size_t kClusterTarget = 4096;          // members per cluster (each node is in two)
constexpr std::size_t kSamplePerCluster = 128;        // k-means sample
constexpr int kKmeansIterations = 10;
constexpr std::size_t kScoreBudget = std::size_t(32) << 20;  // floats of one score tile (128 MiB)
constexpr std::size_t kMaxNodes = std::size_t(0x7fffffff);
// The traversal encoding (HIVE_GPU_GRAPH_ROWS): uint8 codes (per-dimension offset and step,
// scored by integer dot products) for L2 and the dot products, fp16 for L1 and Linf. On the
// H100 the codes gave 1.3-1.6x fp16's QPS on Fashion-MNIST and the same on 1M x 128, at the
// same recall (docs/benchmarks.md).
constexpr const char* kDefaultRows = "u8";
constexpr int kFewestEntries = 16;  // entry points a search scores at least (calibrate_entries)

std::size_t ceil_div(std::size_t a, std::size_t b) { return (a + b - 1) / b; }

class CudaGraphStore final : public detail::GraphStore {
 public:
  CudaGraphStore(const detail::GraphConfig& cfg, int ordinal) : GraphStore(cfg), ordinal_(ordinal) {
    use_device(ordinal);
    stream_ = cfg.stream ? std::make_unique<Stream>(static_cast<cudaStream_t>(cfg.stream)) : std::make_unique<Stream>();
  }
  ~CudaGraphStore() override {
    for (cudaEvent_t e : events_) (void)cudaEventDestroy(e);
    for (cudaEvent_t e : up_events_) (void)cudaEventDestroy(e);
  }
  CudaGraphStore(const CudaGraphStore&) = delete;
  CudaGraphStore& operator=(const CudaGraphStore&) = delete;

  void append(std::size_t n, const float* rows) override {
    if (n == 0) return;
    if (rows_ + n > kMaxNodes)
      throw Error(ErrorCode::Unsupported, "a GPU graph holds at most 2^31 - 1 nodes");
    use_device(ordinal_);
    phase(nullptr);
    if (rows_ + n > capacity_) reallocate(std::max(rows_ + n, capacity_ * 2));
    deleted_.resize(rows_ + n);
    upload_rows(rows, n, base_.as<float>() + rows_ * dim());
    launch_encode_half(base_.as<float>() + rows_ * dim(), n * dim(), ScalarType::F16,
                       base16_.as<uint16_t>() + rows_ * dim(), s());
    // Rows added after the codes' ranges were set take them as they are (clamped codes: the
    // traversal is approximate anyway, and the best entries are re-scored from fp32).
    if (u8_ready_)
      launch_encode_u8(base_.as<float>() + rows_ * dim(), n, dim(), lo_.as<float>(), scale_.as<float>(),
                       base8_.as<uint8_t>() + rows_ * dim(), code_norms_.as<float>() + rows_, s());
    stream_->sync("append");
    rows_ += n;
    phase("allocation and upload");
  }

  std::size_t rows() const override { return rows_; }
  std::size_t linked() const override { return linked_; }

  void build() override {
    use_device(ordinal_);
    build_all();
    linked_ = rows_;
    u8_ready_ = false;  // codes are made when a search first asks for them (traversal())
    choose_entries();
    link_entries();
    calibrate_entries();
    phase("entry points");
  }

  void extend() override {
    if (linked_ == rows_) return;
    use_device(ordinal_);
    // Too few linked nodes to search for neighbours: build everything instead.
    if (linked_ < std::size_t(4 * K())) {
      build();
      return;
    }
    while (linked_ < rows_) {
      const std::size_t m = std::min(rows_ - linked_, linked_);
      insert_chunk(linked_, m);
      linked_ += m;
    }
    calibrate_entries();
  }

  void set_deleted(std::size_t row, bool deleted) override { deleted_.set(row, deleted); }

  void read_rows(std::size_t first, std::size_t n, float* out) const override {
    if (n == 0) return;
    use_device(ordinal_);
    std::lock_guard<std::mutex> lock(mu_);
    check(cudaMemcpyAsync(out, base_.as<const float>() + first * dim(), n * dim() * sizeof(float),
                          cudaMemcpyDeviceToHost, s()),
          "download rows");
    stream_->sync("read_rows");
  }

  void read_graph(uint32_t* out) const override {
    if (rows_ == 0) return;
    use_device(ordinal_);
    std::lock_guard<std::mutex> lock(mu_);
    check(cudaMemcpyAsync(out, graph_.get(), rows_ * degree() * sizeof(uint32_t), cudaMemcpyDeviceToHost, s()),
          "download graph");
    stream_->sync("read_graph");
  }

  std::vector<uint32_t> entry_points() const override {
    std::vector<uint32_t> out(static_cast<std::size_t>(n_entries_));
    if (n_entries_ == 0) return out;
    use_device(ordinal_);
    std::lock_guard<std::mutex> lock(mu_);
    check(cudaMemcpyAsync(out.data(), entries_.get(), out.size() * 4, cudaMemcpyDeviceToHost, s()), "download entries");
    stream_->sync("entry points");
    return out;
  }

  void load(std::size_t n, const float* rows, const uint32_t* graph) override {
    use_device(ordinal_);
    if (n > kMaxNodes) throw Error(ErrorCode::Unsupported, "a GPU graph holds at most 2^31 - 1 nodes");
    if (n > capacity_) {
      DeviceBuffer b(n * dim() * sizeof(float)), h(n * dim() * 2), g(n * degree() * sizeof(uint32_t));
      base_ = std::move(b);
      base16_ = std::move(h);
      graph_ = std::move(g);
      capacity_ = n;
    }
    half_ok_ = true;
    upload_rows(rows, n, base_.as<float>());
    launch_encode_half(base_.as<float>(), n * dim(), ScalarType::F16, base16_.get(), s());
    u8_ready_ = false;
    check(cudaMemcpyAsync(graph_.get(), graph, n * degree() * sizeof(uint32_t), cudaMemcpyHostToDevice, s()),
          "upload graph");
    stream_->sync("load");
    rows_ = linked_ = n;
    choose_entries();
    calibrate_entries();
    deleted_.reset(n);
  }

  void clear() override {
    rows_ = linked_ = 0;
    u8_ready_ = false;
    n_entries_ = entries_used_ = 0;
    deleted_.reset(0);
  }

  void search(std::size_t nq, const float* queries, int k, const detail::GraphSearchConfig& p, float* distances,
              int64_t* rows) const override {
    if (nq == 0) return;
    use_device(ordinal_);
    std::lock_guard<std::mutex> lock(mu_);
    if (linked_ == 0) {
      fill_empty(nq, k, distances, rows);
      return;
    }
    const std::size_t qbytes = nq * dim() * sizeof(float), obytes = nq * std::size_t(k) * 4;
    search_q_.ensure(qbytes);
    search_out_.ensure(2 * obytes);
    pinned_.ensure(2 * obytes);
    pinned_q_.ensure(qbytes);
    GraphSearchArgs a = search_args(p, k, entries_used_ > 0 ? entries_used_ : n_entries_);
    a.deleted = deleted_.device(*stream_);
    // Large batches in four pieces, each uploaded on a copy stream while the search of the one
    // before runs (a 10 000 x 784 batch is 31 MB from pageable memory: milliseconds).
    const std::size_t pieces = nq >= 4096 ? 4 : 1, per = ceil_div(nq, pieces);
    if (!copy_stream_) copy_stream_ = std::make_unique<Stream>();
    ensure_events(events_, pieces);
    using clk = std::chrono::steady_clock;
    const auto t0 = clk::now();
    for (std::size_t c = 0; c < pieces; ++c) {
      const std::size_t q0 = c * per, qn = std::min(per, nq - std::min(nq, q0));
      if (qn == 0) break;
      // Staged into pinned memory by the CPU pool (a pageable upload is one core's memcpy), then
      // one DMA; the staging of the next piece overlaps this piece's transfer and search.
      float* staged = pinned_q_.as<float>() + q0 * dim();
      const std::size_t floats = qn * dim();
      (void)stage_floats(staged, queries + q0 * dim(), floats, false);
      check(cudaMemcpyAsync(search_q_.as<float>() + q0 * dim(), staged, floats * sizeof(float), cudaMemcpyHostToDevice,
                            copy_stream_->get()),
            "upload queries");
      check(cudaEventRecord(events_[c], copy_stream_->get()), "cudaEventRecord");
      check(cudaStreamWaitEvent(s(), events_[c], 0), "cudaStreamWaitEvent");
      a.queries = search_q_.as<float>() + q0 * dim();
      a.nq = qn;
      a.first_query = q0;
      a.distances = search_out_.as<float>() + q0 * std::size_t(k);
      a.nodes = reinterpret_cast<uint32_t*>(search_out_.as<uint8_t>() + obytes) + q0 * std::size_t(k);
      launch_graph_search(a, s());
    }
    const auto t1 = clk::now();
    if (timing()) stream_->sync("timing");
    const auto t2 = clk::now();
    check(cudaMemcpyAsync(pinned_.get(), search_out_.get(), 2 * obytes, cudaMemcpyDeviceToHost, s()),
          "download results");
    stream_->sync("graph search");
    if (timing()) {
      auto ms = [](clk::time_point x, clk::time_point y) { return std::chrono::duration<double, std::milli>(y - x).count(); };
      // The host-to-device link alone: the same bytes again, from pinned memory, nothing else queued.
      const auto l0 = clk::now();
      check(cudaMemcpyAsync(search_q_.get(), pinned_q_.get(), qbytes, cudaMemcpyHostToDevice, s()), "link test");
      stream_->sync("link test");
      std::fprintf(stderr, "graph search: %.1f MB of queries over the link alone: %.3f ms\n", double(qbytes) / 1e6,
                   ms(l0, clk::now()));
      std::fprintf(stderr, "graph search: %zu queries: uploads staged %.3f ms, then GPU %.3f ms, download %.3f ms\n",
                   nq, ms(t0, t1), ms(t1, t2), ms(t2, clk::now()));
    }
    const float* d = pinned_.as<float>();
    const uint32_t* nodes = reinterpret_cast<const uint32_t*>(pinned_.as<uint8_t>() + obytes);
    const bool negate = cfg_.metric == Metric::InnerProduct;  // the kernel minimises -dot
    for (std::size_t i = 0; i < nq * std::size_t(k); ++i) {
      if (nodes[i] == kNoNode) {
        rows[i] = kNoId;
        distances[i] = negate ? -std::numeric_limits<float>::infinity() : std::numeric_limits<float>::infinity();
      } else {
        rows[i] = int64_t(nodes[i]);
        distances[i] = negate ? -d[i] : d[i];
      }
    }
  }

 private:
  std::size_t dim() const { return cfg_.dim; }
  int degree() const { return cfg_.degree; }
  int K() const { return cfg_.intermediate_degree; }
  cudaStream_t s() const { return stream_->get(); }

  static void fill_empty(std::size_t nq, int k, float* distances, int64_t* rows) {
    for (std::size_t i = 0; i < nq * std::size_t(k); ++i) {
      rows[i] = kNoId;
      distances[i] = std::numeric_limits<float>::infinity();
    }
  }

  // `entries`: how many entry points (the first ones: farthest-first order, the most spread)
  // each query scores; `seeds`: random starts per query, or -1 for a few that vary the start
  // per query (more where the entry points are few).
  GraphSearchArgs search_args(const detail::GraphSearchConfig& p, int k, int entries, int seeds = -1) const {
    GraphSearchArgs a;
    a.base = base_.as<float>();
    a.n = linked_;
    a.dim = dim();
    a.metric = cfg_.metric;
    a.graph = graph_.as<uint32_t>();
    a.degree = degree();
    a.k = k;
    a.itopk = p.itopk;
    a.search_width = p.search_width;
    a.max_iterations = p.max_iterations;
    entries = std::clamp(entries, 0, n_entries_);
    a.entries = entries > 0 ? entries_.as<uint32_t>() : nullptr;
    a.n_entries = entries;
    a.seeds = seeds >= 0 ? seeds : std::min(p.itopk, entries == 0 ? 32 : entries < 32 ? 16 : 8);
    a.seed = cfg_.seed;
    switch (traversal()) {
      case 8:
        a.rows8 = base8_.as<uint8_t>();
        a.lo = lo_.as<float>();
        a.scale = scale_.as<float>();
        a.code_norms = code_norms_.as<float>();
        break;
      case 16: a.rows16 = base16_.get(); break;
      default: break;
    }
    return a;
  }

  // Links between entry points, in every entry's own list (slots [D/2 - D/4, D/2): the back of
  // the forward links, which batch insertion does not overwrite): chosen by HNSW's heuristic
  // among the other entries (nearest first, one kept only while nearer to the entry than to
  // any kept), so they point in every direction and join regions the k-NN links leave apart
  // (well-separated clusters). Any search, a CPU one on a saved file too, can then cross them.
  void link_entries() {
    const std::size_t E = std::size_t(n_entries_), d = dim(), D = std::size_t(degree());
    const std::size_t X = D / 4;
    if (E < 2 || X == 0) return;
    DeviceBuffer rows(E * d * 4), norms(E * 4), dots_out(E * E * 4);
    launch_gather(base_.get(), rows.get(), entries_.as<uint32_t>(), E, d * 4, s());
    launch_norms(rows.get(), 0, E, d, ScalarType::F32, norms.as<float>(), s());
    dots(rows.as<float>(), E, rows.as<float>(), E, dots_out.as<float>(), E);
    std::vector<float> dot(E * E), nrm(E);
    std::vector<uint32_t> ids(E), lists(E * D);
    check(cudaMemcpyAsync(dot.data(), dots_out.get(), E * E * 4, cudaMemcpyDeviceToHost, s()), "download dots");
    check(cudaMemcpyAsync(nrm.data(), norms.get(), E * 4, cudaMemcpyDeviceToHost, s()), "download norms");
    check(cudaMemcpyAsync(ids.data(), entries_.get(), E * 4, cudaMemcpyDeviceToHost, s()), "download entries");
    for (std::size_t a = 0; a < E; ++a)
      check(cudaMemcpyAsync(lists.data() + a * D, graph_.as<uint32_t>() + std::size_t(ids[a]) * D, D * 4,
                            cudaMemcpyDeviceToHost, s()),
            "download entry lists");
    stream_->sync("entry links");
    auto l2 = [&](std::size_t a, std::size_t b) { return nrm[a] + nrm[b] - 2.0f * dot[a * E + b]; };
    std::vector<std::size_t> by(E);
    for (std::size_t a = 0; a < E; ++a) {
      std::iota(by.begin(), by.end(), std::size_t(0));
      std::sort(by.begin(), by.end(), [&](std::size_t x, std::size_t y) { return l2(a, x) < l2(a, y); });
      std::vector<std::size_t> kept;
      for (std::size_t c : by) {
        if (kept.size() >= X) break;
        if (c == a) continue;
        bool ok = true;
        for (std::size_t k : kept) ok = ok && l2(c, k) > l2(c, a);
        if (ok) kept.push_back(c);
      }
      uint32_t* list = lists.data() + a * D;
      std::size_t slot = D / 2 - X;
      for (std::size_t k : kept) {
        if (std::find(list, list + D, ids[k]) != list + D) continue;  // linked already
        list[slot++] = ids[k];
      }
      check(cudaMemcpyAsync(graph_.as<uint32_t>() + std::size_t(ids[a]) * D, list, D * 4, cudaMemcpyHostToDevice, s()),
            "upload entry lists");
    }
    stream_->sync("entry links");
  }

  // Up to `count` distinct sample rows by farthest-first traversal (L2), starting at row 0.
  std::vector<uint32_t> farthest_first(const float* sample, std::size_t ns, std::size_t count) {
    const std::size_t d = dim();
    DeviceBuffer mind(ns * 4), best(count * 8);
    check(cudaMemsetAsync(mind.get(), 0x7f, ns * 4, s()), "init distances");  // 3.4e38
    check(cudaMemsetAsync(best.get(), 0, count * 8, s()), "init farthest");
    for (std::size_t e = 0; e + 1 < count; ++e)
      launch_farthest_step(sample, ns, d, mind.as<float>(), best.as<uint64_t>(), int(e), s());
    std::vector<uint64_t> keys(count);
    check(cudaMemcpyAsync(keys.data(), best.get(), count * 8, cudaMemcpyDeviceToHost, s()), "download centres");
    stream_->sync("farthest-first");
    std::vector<uint32_t> rows{0};
    std::vector<uint8_t> taken(ns, 0);
    taken[0] = 1;
    for (std::size_t e = 0; e + 1 < count; ++e) {
      const std::size_t r = std::size_t(keys[e] & 0xffffffffu);
      if (keys[e] == 0 || r >= ns || taken[r]) continue;  // every row already a centre (duplicates)
      taken[r] = 1;
      rows.push_back(uint32_t(r));
    }
    return rows;
  }

  // Entry points every search scores first: farthest-first centres of a random sample of the
  // linked nodes (L2), so the searches start near the query even where the links leave regions
  // unconnected (well-separated clusters). Their number: up to 1024, and at most 128K floats of
  // rows (each query reads them all).
  void choose_entries() {
    n_entries_ = entries_used_ = 0;
    const std::size_t n = linked_, d = dim();
    if (n == 0) return;
    const std::size_t want = std::min<std::size_t>({n, 1024, std::max<std::size_t>(32, (std::size_t(128) << 10) / d)});
    const std::size_t ns = std::min(n, 64 * want);
    std::vector<uint32_t> pick(n);
    std::iota(pick.begin(), pick.end(), 0u);
    std::mt19937_64 rng(cfg_.seed ^ 0x5eedull);
    for (std::size_t i = 0; i < ns; ++i) std::swap(pick[i], pick[i + rng() % (n - i)]);
    pick.resize(ns);
    DeviceBuffer dpick(ns * 4), sample(ns * d * 4);
    check(cudaMemcpyAsync(dpick.get(), pick.data(), ns * 4, cudaMemcpyHostToDevice, s()), "upload sample");
    launch_gather(base_.get(), sample.get(), dpick.as<uint32_t>(), ns, d * 4, s());
    std::vector<uint32_t> entries;
    for (uint32_t r : farthest_first(sample.as<float>(), ns, want)) entries.push_back(pick[r]);
    entries_.ensure(entries.size() * 4);
    check(cudaMemcpyAsync(entries_.get(), entries.data(), entries.size() * 4, cudaMemcpyHostToDevice, s()),
          "upload entry points");
    stream_->sync("entry points");
    n_entries_ = int(entries.size());
  }

  // How many entry points a search scores first. Every one costs each query a row read; on data
  // whose graph is one connected region a few suffice, separated clusters need one near each.
  // So: a sample of queries (indexed rows, and midpoints of random pairs of them, which fall
  // between clusters) is searched with all the entry points, then with the first 16, 32, ...
  // (default list length); the fewest whose nearest result agrees with that of all of them for
  // at least 99 % of the sample are kept.
  void calibrate_entries() {
    entries_used_ = n_entries_;
    const std::size_t n = linked_, d = dim();
    if (n_entries_ <= kFewestEntries || n < 1000) return;
    const std::size_t m = 512, half = m / 2;
    std::vector<uint32_t> pick(m + half);
    std::mt19937_64 rng(cfg_.seed ^ 0xca1bull);
    for (auto& r : pick) r = uint32_t(rng() % n);
    DeviceBuffer dpick(pick.size() * 4), rows(pick.size() * d * 4), q(m * d * 4), dist(m * 4), nodes(m * 4);
    check(cudaMemcpyAsync(dpick.get(), pick.data(), pick.size() * 4, cudaMemcpyHostToDevice, s()), "upload sample");
    launch_gather(base_.get(), rows.get(), dpick.as<uint32_t>(), pick.size(), d * 4, s());
    std::vector<float> host(pick.size() * d);
    check(cudaMemcpyAsync(host.data(), rows.get(), host.size() * 4, cudaMemcpyDeviceToHost, s()), "download sample");
    stream_->sync("entry calibration");
    // Queries half..m: midpoints of rows (i, m + i - half).
    for (std::size_t i = half; i < m; ++i)
      for (std::size_t j = 0; j < d; ++j) host[i * d + j] = 0.5f * (host[i * d + j] + host[(m + i - half) * d + j]);
    check(cudaMemcpyAsync(q.get(), host.data(), m * d * 4, cudaMemcpyHostToDevice, s()), "upload calibration queries");
    detail::GraphSearchConfig p;  // the default list length and width
    auto nearest = [&](int entries, std::vector<uint32_t>& found, std::vector<float>& score) {
      GraphSearchArgs a = search_args(p, 1, entries);
      a.queries = q.as<float>();
      a.nq = m;
      a.distances = dist.as<float>();
      a.nodes = nodes.as<uint32_t>();
      launch_graph_search(a, s());
      found.resize(m);
      score.resize(m);
      check(cudaMemcpyAsync(found.data(), nodes.get(), m * 4, cudaMemcpyDeviceToHost, s()), "download calibration");
      check(cudaMemcpyAsync(score.data(), dist.get(), m * 4, cudaMemcpyDeviceToHost, s()), "download calibration");
      stream_->sync("entry calibration");
    };
    std::vector<uint32_t> ref, found;
    std::vector<float> ref_d, d_found;
    nearest(n_entries_, ref, ref_d);
    for (int e = kFewestEntries; e < n_entries_; e *= 2) {
      nearest(e, found, d_found);
      std::size_t same = 0;
      for (std::size_t i = 0; i < m; ++i) same += found[i] == ref[i] || d_found[i] <= ref_d[i];  // ties count
      if (timing()) std::fprintf(stderr, "graph build: %d entry points: %zu of %zu nearest as with all %d\n", e, same, m, n_entries_);
      if (same * 100 >= m * 99) {
        entries_used_ = e;
        return;
      }
    }
  }

  void reallocate(std::size_t capacity) {
    DeviceBuffer b(capacity * dim() * sizeof(float)), h(capacity * dim() * 2), c(u8_ready_ ? capacity * dim() : 0),
        cn(u8_ready_ ? capacity * sizeof(float) : 0), g(capacity * degree() * sizeof(uint32_t));
    if (rows_) {
      check(cudaMemcpyAsync(b.get(), base_.get(), rows_ * dim() * sizeof(float), cudaMemcpyDeviceToDevice, s()),
            "copy rows on growth");
      check(cudaMemcpyAsync(h.get(), base16_.get(), rows_ * dim() * 2, cudaMemcpyDeviceToDevice, s()),
            "copy fp16 rows on growth");
      if (u8_ready_) {
        check(cudaMemcpyAsync(c.get(), base8_.get(), rows_ * dim(), cudaMemcpyDeviceToDevice, s()),
              "copy uint8 rows on growth");
        check(cudaMemcpyAsync(cn.get(), code_norms_.get(), rows_ * sizeof(float), cudaMemcpyDeviceToDevice, s()),
              "copy code norms on growth");
      }
      check(cudaMemcpyAsync(g.get(), graph_.get(), linked_ * degree() * sizeof(uint32_t), cudaMemcpyDeviceToDevice,
                            s()),
            "copy links on growth");
      stream_->sync("grow");
    }
    base_ = std::move(b);
    base16_ = std::move(h);
    base8_ = std::move(c);
    code_norms_ = std::move(cn);
    graph_ = std::move(g);
    capacity_ = capacity;
  }

  // uint8 codes of every row: per dimension an offset (the minimum) and a step (the range /
  // 255), and each row's norm in code space (score_codes in graph_search.cu uses both).
  // Made on first use (under the search lock, or the index's exclusive one); later appends
  // encode their rows with the same offsets and scale.
  void encode_all_u8() const {
    u8_ready_ = false;
    const std::size_t n = rows_, d = dim();
    if (n == 0) return;
    DeviceBuffer mins(d * 4), maxs(d * 4);
    check(cudaMemsetAsync(mins.get(), 0xff, d * 4, s()), "init minima");
    check(cudaMemsetAsync(maxs.get(), 0, d * 4, s()), "init maxima");
    launch_row_ranges(base_.as<float>(), n, d, mins.as<uint32_t>(), maxs.as<uint32_t>(), s());
    std::vector<uint32_t> mn(d), mx(d);
    check(cudaMemcpyAsync(mn.data(), mins.get(), d * 4, cudaMemcpyDeviceToHost, s()), "download minima");
    check(cudaMemcpyAsync(mx.data(), maxs.get(), d * 4, cudaMemcpyDeviceToHost, s()), "download maxima");
    stream_->sync("row ranges");
    // Each dimension's range in 255 steps (a constant dimension: step 1, every code 0).
    std::vector<float> lo(d), scale(d);
    for (std::size_t j = 0; j < d; ++j) {
      lo[j] = order_to_float(mn[j]);
      const float range = order_to_float(mx[j]) - lo[j];
      scale[j] = range > 0.0f && std::isfinite(range) ? range / 255.0f : 1.0f;
    }
    lo_.ensure(d * 4);
    scale_.ensure(d * 4);
    check(cudaMemcpyAsync(lo_.get(), lo.data(), d * 4, cudaMemcpyHostToDevice, s()), "upload offsets");
    check(cudaMemcpyAsync(scale_.get(), scale.data(), d * 4, cudaMemcpyHostToDevice, s()), "upload scales");
    base8_.ensure(capacity_ * d);
    code_norms_.ensure(capacity_ * sizeof(float));
    launch_encode_u8(base_.as<float>(), n, d, lo_.as<float>(), scale_.as<float>(), base8_.as<uint8_t>(),
                     code_norms_.as<float>(), s());
    stream_->sync("uint8 codes");
    u8_ready_ = true;
  }

  // `count` events (timing off) in `ev`, created on first need and kept.
  static void ensure_events(std::vector<cudaEvent_t>& ev, std::size_t count) {
    while (ev.size() < count) {
      cudaEvent_t e = nullptr;
      check(cudaEventCreateWithFlags(&e, cudaEventDisableTiming), "cudaEventCreate");
      ev.push_back(e);
    }
  }

  // Copies `len` floats into pinned staging memory on the CPU pool (a pageable upload is one
  // core's memcpy); with `want_max`, returns their largest |value| from the same pass (else 0).
  static float stage_floats(float* stage, const float* src, std::size_t len, bool want_max) {
    constexpr std::size_t kChunk = std::size_t(1) << 16;  // floats per pool task
    std::vector<float> part((len + kChunk - 1) / kChunk, 0.0f);
    cpu::ThreadPool::instance().parallel_for(part.size(), [&](std::size_t c) {
      const std::size_t f0 = c * kChunk, m = std::min(kChunk, len - f0);
      std::memcpy(stage + f0, src + f0, m * sizeof(float));
      if (!want_max) return;
      float mx = 0.0f;
      for (std::size_t j = 0; j < m; ++j) mx = std::max(mx, std::fabs(stage[f0 + j]));
      part[c] = mx;
    });
    float most = 0.0f;
    for (float m : part) most = std::max(most, m);
    return most;
  }

  // Rows to the device through two pinned staging buffers: the CPU pool copies a piece (and
  // finds its largest |value|) while the piece before crosses the link. A pageable upload is
  // one core's memcpy: it was over half of Fashion-MNIST's build (0.09-0.11 of 0.16-0.18 s),
  // with a one-core range check after it. Enqueued on s(); the caller synchronises.
  // fp16 traversal needs every value within its range (|x| <= 65504, with room for the sums of
  // differences the metrics form from them): one value past 2^14 turns it off for good.
  void upload_rows(const float* rows, std::size_t n, float* dst) {
    constexpr std::size_t kPiece = std::size_t(4) << 20;  // floats per piece (16 MiB)
    const std::size_t floats = n * dim(), piece = std::min(floats, kPiece);
    if (floats == 0) return;
    pinned_up_.ensure(2 * piece * sizeof(float));
    ensure_events(up_events_, 2);
    float most = 0.0f;
    for (std::size_t p0 = 0, i = 0; p0 < floats; p0 += piece, ++i) {
      const std::size_t len = std::min(piece, floats - p0);
      float* stage = pinned_up_.as<float>() + (i % 2) * piece;
      if (i >= 2) check(cudaEventSynchronize(up_events_[i % 2]), "staging buffer");  // its last upload is done
      most = std::max(most, stage_floats(stage, rows + p0, len, true));
      check(cudaMemcpyAsync(dst + p0, stage, len * sizeof(float), cudaMemcpyHostToDevice, s()), "upload rows");
      check(cudaEventRecord(up_events_[i % 2], s()), "cudaEventRecord");
    }
    if (most > 16384.0f) half_ok_ = false;
  }
  // The rows searches traverse, as bits per value: 8 (uint8 codes), 16 (fp16) or 32; the
  // compact ones re-score their best entries from fp32. HIVE_GPU_GRAPH_ROWS=u8|f16|f32 (read
  // per search) picks one; codes are made on first use and serve L2, inner product and cosine
  // (L1 and Linf take fp16 instead); fp16 needs values within 2^14.
  int traversal() const {
    const char* e = std::getenv("HIVE_GPU_GRAPH_ROWS");
    const std::string want = e != nullptr && *e != '\0' ? e : kDefaultRows;
    const bool dot_metric = cfg_.metric == Metric::L2 || cfg_.metric == Metric::InnerProduct || cfg_.metric == Metric::Cosine;
    if (want == "u8" && rows_ > 0 && dot_metric) {
      if (!u8_ready_) encode_all_u8();
      return 8;
    }
    if ((want == "u8" || want == "f16") && half_ok_) return 16;
    return 32;
  }

#if !defined(HIVE_GPU_HIP)
  // cuBLAS where it loads (not on HIP, nor with HIVE_GPU_CUDA_PORTABLE=1).
  BlasHandle* blas() {
    if (portable_paths()) return nullptr;
    if (!blas_tried_) {
      blas_tried_ = true;
      auto h = std::make_unique<BlasHandle>(s());
      if (h->ok()) blas_ = std::move(h);
    }
    return blas_.get();
  }
#endif

  // out[q * ld + r] = dot(queries[q], rows[r]).
  void dots(const float* rows, std::size_t n, const float* queries, std::size_t nq, float* out, std::size_t ld) {
#if !defined(HIVE_GPU_HIP)
    if (BlasHandle* b = blas()) {
      b->dot_products(rows, n, queries, nq, dim(), out, ld, /*tf32=*/true);
      return;
    }
#endif
    launch_dot_tile(rows, n, ScalarType::F32, queries, nq, dim(), out, ld, s());
  }

  // Two nearest of nlist centroids (L2) for rows [0, n) of `rows`, into labels (2 per row).
  void nearest_centroids(const float* centroids, const float* cnorms, std::size_t nlist, const float* rows,
                         std::size_t n, uint32_t* labels, DeviceBuffer& scores, float* margins = nullptr) {
    const std::size_t tile = std::max<std::size_t>(1, std::min(n, kScoreBudget / nlist));
    scores.ensure(tile * nlist * sizeof(float));
    for (std::size_t t0 = 0; t0 < n; t0 += tile) {
      const std::size_t tn = std::min(tile, n - t0);
      dots(centroids, nlist, rows + t0 * dim(), tn, scores.as<float>(), nlist);
      launch_nearest_two(scores.as<float>(), nlist, tn, nlist, cnorms, labels + 2 * t0,
                         margins != nullptr ? margins + t0 : nullptr, s());
    }
  }

  // Labels (two clusters per node) of every row, on the host; nlist clusters. A node's second
  // cluster is kept only among the closest second-comers of that cluster (by how much farther
  // it is than the node's first), at most as many as the cluster's own members: otherwise a
  // centroid between regions (near the mean of several) is everyone's second and grows huge.
  std::vector<uint32_t> cluster(std::size_t nlist) {
    const std::size_t n = rows_, d = dim();
    std::vector<uint32_t> labels(2 * n);
    if (nlist <= 1) {
      for (std::size_t i = 0; i < n; ++i) {
        labels[2 * i] = 0;
        labels[2 * i + 1] = kNone;
      }
      return labels;
    }
    const std::size_t ns = std::min(n, nlist * kSamplePerCluster);
    std::vector<uint32_t> pick(n);
    std::iota(pick.begin(), pick.end(), 0u);
    std::mt19937_64 rng(cfg_.seed);
    for (std::size_t i = 0; i < ns; ++i) std::swap(pick[i], pick[i + rng() % (n - i)]);  // partial shuffle
    pick.resize(ns);
    DeviceBuffer dpick(ns * 4), sample(ns * d * 4), cent(nlist * d * 4), cnorms(nlist * 4), sums(nlist * d * 4),
        counts(nlist * 4), slabels(2 * ns * 4), scores, all(2 * n * 4), dmargins(n * 4);
    check(cudaMemcpyAsync(dpick.get(), pick.data(), ns * 4, cudaMemcpyHostToDevice, s()), "upload sample");
    launch_gather(base_.get(), sample.get(), dpick.as<uint32_t>(), ns, d * 4, s());
    // Initial centroids: farthest-first centres of the sample, so that every well-separated
    // region gets its own (random picks leave some regions to share one, and clusters of 100k).
    std::vector<uint32_t> init = farthest_first(sample.as<float>(), ns, nlist);
    while (init.size() < nlist) init.push_back(uint32_t(init.size() % ns));  // duplicates in the sample
    check(cudaMemcpyAsync(dpick.get(), init.data(), nlist * 4, cudaMemcpyHostToDevice, s()), "upload centres");
    launch_gather(sample.get(), cent.get(), dpick.as<uint32_t>(), nlist, d * 4, s());
    for (int it = 0; it < kKmeansIterations; ++it) {
      launch_norms(cent.get(), 0, nlist, d, ScalarType::F32, cnorms.as<float>(), s());
      nearest_centroids(cent.as<float>(), cnorms.as<float>(), nlist, sample.as<float>(), ns, slabels.as<uint32_t>(),
                        scores);
      check(cudaMemsetAsync(sums.get(), 0, nlist * d * 4, s()), "zero sums");
      check(cudaMemsetAsync(counts.get(), 0, nlist * 4, s()), "zero counts");
      launch_centroid_sums(sample.as<float>(), ns, d, slabels.as<uint32_t>(), sums.as<float>(), counts.as<uint32_t>(),
                           s());
      launch_centroid_divide(sums.as<float>(), counts.as<uint32_t>(), nlist, d, cent.as<float>(), s());
    }
    launch_norms(cent.get(), 0, nlist, d, ScalarType::F32, cnorms.as<float>(), s());
    nearest_centroids(cent.as<float>(), cnorms.as<float>(), nlist, base_.as<float>(), n, all.as<uint32_t>(), scores,
                      dmargins.as<float>());
    std::vector<float> margins(n);
    check(cudaMemcpyAsync(labels.data(), all.get(), 2 * n * 4, cudaMemcpyDeviceToHost, s()), "download labels");
    check(cudaMemcpyAsync(margins.data(), dmargins.get(), n * 4, cudaMemcpyDeviceToHost, s()), "download margins");
    stream_->sync("k-means");
    std::vector<std::size_t> own(nlist, 0);
    std::vector<std::vector<std::pair<float, uint32_t>>> second(nlist);
    for (std::size_t i = 0; i < n; ++i) {
      ++own[labels[2 * i]];
      const uint32_t l1 = labels[2 * i + 1];
      if (l1 != kNone && l1 < nlist) second[l1].emplace_back(margins[i], uint32_t(i));
      labels[2 * i + 1] = kNone;
    }
    for (std::size_t c = 0; c < nlist; ++c) {
      auto& v = second[c];
      const std::size_t keep = std::min(v.size(), own[c]);
      std::nth_element(v.begin(), v.begin() + std::ptrdiff_t(keep), v.end());
      for (std::size_t j = 0; j < keep; ++j) labels[2 * std::size_t(v[j].second) + 1] = uint32_t(c);
    }
    return labels;
  }

  void build_all() {
    const std::size_t n = rows_, d = dim();
    const int D = degree();
    if (n == 0) return;
    if (n == 1) {
      std::vector<uint32_t> none(std::size_t(D), kNone);
      check(cudaMemcpyAsync(graph_.get(), none.data(), none.size() * 4, cudaMemcpyHostToDevice, s()), "upload links");
      stream_->sync("build");
      return;
    }
    const int K = std::min<int>(this->K(), int(std::min<std::size_t>(n - 1, std::size_t(kPruneMaxList))));
    const int width = K + 1;  // the node itself comes back among its cluster's best
    const std::size_t nlist = n <= 3 * kClusterTarget / 2 ? 1 : ceil_div(2 * n, kClusterTarget);
    phase(nullptr);
    const std::vector<uint32_t> labels = cluster(nlist);
    phase("k-means and assignment");

    // Members of each cluster (host CSR): the plain node for gathers, the tagged one (bit 31:
    // the node's second cluster) for the candidate slots.
    std::vector<std::size_t> start(nlist + 1, 0);
    for (std::size_t i = 0; i < n; ++i) {
      ++start[labels[2 * i] + 1];
      const uint32_t l1 = labels[2 * i + 1];
      if (l1 != kNone && l1 != labels[2 * i]) ++start[l1 + 1];
    }
    for (std::size_t c = 0; c < nlist; ++c) start[c + 1] += start[c];
    std::vector<uint32_t> plain(start[nlist]), tagged(start[nlist]);
    {
      std::vector<std::size_t> fill(start.begin(), start.end() - 1);
      for (std::size_t i = 0; i < n; ++i) {
        const std::size_t p0 = fill[labels[2 * i]]++;
        plain[p0] = uint32_t(i);
        tagged[p0] = uint32_t(i);
        const uint32_t l1 = labels[2 * i + 1];
        if (l1 != kNone && l1 != labels[2 * i]) {
          const std::size_t p1 = fill[l1]++;
          plain[p1] = uint32_t(i);
          tagged[p1] = uint32_t(i) | kSecondSlot;
        }
      }
    }
    std::size_t largest = 0;
    for (std::size_t c = 0; c < nlist; ++c) largest = std::max(largest, start[c + 1] - start[c]);

    const std::size_t total = start[nlist];
    const int cap = select_capacity(width);
    // Each cluster's score tiles: qt(m) members at a time against all m, qt(m) m <= kScoreBudget.
    auto query_tile = [](std::size_t m) { return std::max<std::size_t>(1, std::min(m, kScoreBudget / m)); };
    std::size_t most_scores = 0, most_queries = 0, most_scratch = 0;
    for (std::size_t c = 0; c < nlist; ++c) {
      const std::size_t m = start[c + 1] - start[c];
      if (m == 0) continue;
      most_scores = std::max(most_scores, query_tile(m) * m);
      most_queries = std::max(most_queries, query_tile(m));
      most_scratch = std::max(most_scratch, select_scratch_keys(query_tile(m), m, cap));
    }
    DeviceBuffer dplain(total * 4), dtagged(total * 4), buf(largest * d * 4), norms(largest * 4),
        scores(most_scores * 4), keys(most_queries * std::size_t(cap) * 8), sa(most_scratch * 8), sb(most_scratch * 8),
        cand(n * 2 * std::size_t(width) * 8);
    check(cudaMemcpyAsync(dplain.get(), plain.data(), total * 4, cudaMemcpyHostToDevice, s()), "upload members");
    check(cudaMemcpyAsync(dtagged.get(), tagged.data(), total * 4, cudaMemcpyHostToDevice, s()), "upload members");
    check(cudaMemsetAsync(cand.get(), 0xff, n * 2 * std::size_t(width) * 8, s()), "clear candidates");
    double t_scores = 0, t_select = 0;
    const Metric metric = cfg_.metric;
    const bool by_dots = metric == Metric::L2 || metric == Metric::InnerProduct || metric == Metric::Cosine;
    const Transform t = metric == Metric::L2             ? Transform::L2FromDot
                        : metric == Metric::InnerProduct ? Transform::NegDot
                        : metric == Metric::Cosine       ? Transform::OneMinusDot
                                                         : Transform::Raw;
    for (std::size_t c = 0; c < nlist; ++c) {
      const std::size_t m = start[c + 1] - start[c];
      if (m == 0) continue;
      launch_gather(base_.get(), buf.get(), dplain.as<uint32_t>() + start[c], m, d * 4, s());
      if (metric == Metric::L2) launch_norms(buf.get(), 0, m, d, ScalarType::F32, norms.as<float>(), s());
      const std::size_t qt = query_tile(m);
      for (std::size_t q0 = 0; q0 < m; q0 += qt) {
        const std::size_t nq = std::min(qt, m - q0);
        const float* q = buf.as<float>() + q0 * d;
        lap(nullptr);
        if (by_dots) {
          dots(buf.as<float>(), m, q, nq, scores.as<float>(), m);
        } else {
          ScanArgs a;
          a.base = buf.get();
          a.n = m;
          a.dim = d;
          a.metric = metric;
          a.storage = ScalarType::F32;
          a.queries = q;
          a.nq = nq;
          a.scores = scores.as<float>();
          a.ld = m;
          launch_scan(a, s());
        }
        lap(&t_scores);
        select_from_scores(scores.as<float>(), m, nq, m, 0, nullptr, t, norms.as<float>(), cap, keys.as<uint64_t>(),
                           std::size_t(cap), sa.as<uint64_t>(), sb.as<uint64_t>(), s());
        lap(&t_select);
        launch_scatter_candidates(keys.as<uint64_t>(), std::size_t(cap), nq, width, dtagged.as<uint32_t>(), start[c],
                                  start[c] + q0, cand.as<uint64_t>(), s());
      }
    }
    if (timing()) {
      double sq = 0;
      for (std::size_t c = 0; c < nlist; ++c) sq += double(start[c + 1] - start[c]) * double(start[c + 1] - start[c]);
      std::fprintf(stderr, "graph build: %zu clusters, largest %zu, %.3g scores; scores %.4f s, selection %.4f s\n",
                   nlist, largest, sq, t_scores, t_select);
    }
    phase("cluster k-NN (matrix products, selection)");
    // Scratch of the clusters is released before the graph-sized buffers are made.
    buf = DeviceBuffer();
    scores = DeviceBuffer();
    DeviceBuffer knn(n * std::size_t(K) * 4);
    launch_merge_candidates(cand.as<uint64_t>(), n, width, K, knn.as<uint32_t>(), s());
    cand = DeviceBuffer();
    phase("candidate merge");
    DeviceBuffer pruned(n * std::size_t(D) * 4), rev(n * std::size_t(D) * 4), rev_count(n * 4);
    launch_prune(knn.as<uint32_t>(), std::size_t(K), K, n, knn.as<uint32_t>(), std::size_t(K), K, D,
                 pruned.as<uint32_t>(), std::size_t(D), 0, s());
    check(cudaMemsetAsync(rev_count.get(), 0, n * 4, s()), "zero reverse counts");
    launch_reverse_edges(pruned.as<uint32_t>(), n, D, rev.as<uint32_t>(), rev_count.as<uint32_t>(), s());
    launch_merge_graph(pruned.as<uint32_t>(), rev.as<uint32_t>(), rev_count.as<uint32_t>(), n, D,
                       graph_.as<uint32_t>(), s());
    stream_->sync("graph build");
    phase("pruning and reverse edges");
  }

  // HIVE_GPU_GRAPH_TIMING=1: each build phase's seconds on stderr (the stream synchronised).
  static bool timing() {
    static const bool on = [] {
      const char* e = std::getenv("HIVE_GPU_GRAPH_TIMING");
      return e != nullptr && *e != '\0' && std::string(e) != "0";
    }();
    return on;
  }
  // With timing on: adds the seconds since the last lap to *acc (null: starts a lap).
  void lap(double* acc) {
    if (!timing()) return;
    stream_->sync("timing");
    const auto now = std::chrono::steady_clock::now();
    if (acc != nullptr) *acc += std::chrono::duration<double>(now - lap_t0_).count();
    lap_t0_ = now;
  }
  std::chrono::steady_clock::time_point lap_t0_;
  void phase(const char* done) {
    if (!timing()) return;
    stream_->sync("timing");
    const auto now = std::chrono::steady_clock::now();
    if (done != nullptr)
      std::fprintf(stderr, "graph build: %-45s %8.4f s\n", done, std::chrono::duration<double>(now - phase_t0_).count());
    phase_t0_ = now;
  }
  std::chrono::steady_clock::time_point phase_t0_;

  // Links new nodes [first, first + m) into the graph of nodes [0, first).
  void insert_chunk(std::size_t first, std::size_t m) {
    const int D = degree();
    const int K = std::min<int>(this->K(), int(std::min<std::size_t>(first, std::size_t(kPruneMaxList))));
    detail::GraphSearchConfig p;
    p.itopk = 64;
    while (p.itopk < 2 * K) p.itopk <<= 1;
    // Every entry point: a new node's links matter more than the time.
    GraphSearchArgs a = search_args(p, K, n_entries_, 8);
    a.n = first;
    a.queries = base_.as<float>() + first * dim();
    a.nq = m;
    DeviceBuffer dist(m * std::size_t(K) * 4), nodes(m * std::size_t(K) * 4), taken(first * 4);
    a.distances = dist.as<float>();
    a.nodes = nodes.as<uint32_t>();
    launch_graph_search(a, s());
    launch_prune(nodes.as<uint32_t>(), std::size_t(K), K, m, graph_.as<uint32_t>(), std::size_t(D), D, D,
                 graph_.as<uint32_t>(), std::size_t(D), first, s());
    check(cudaMemsetAsync(taken.get(), 0, first * 4, s()), "zero link counts");
    launch_link_back(graph_.as<uint32_t>(), D, first, m, taken.as<uint32_t>(), s());
    stream_->sync("graph insert");
  }

  int ordinal_;
  std::unique_ptr<Stream> stream_;
  // base16_: the fp16 traversal copy of base_.
  DeviceBuffer base_, base16_, graph_, entries_;
  // Made on first use (encode_all_u8()): the codes, each dimension's offset and step, and each
  // row's norm in code space.
  mutable DeviceBuffer base8_, lo_, scale_, code_norms_;
  mutable bool u8_ready_ = false;
  bool half_ok_ = true;
  int n_entries_ = 0;
  int entries_used_ = 0;  // of them, scored by each search (calibrate_entries)
  std::size_t rows_ = 0, linked_ = 0, capacity_ = 0;
  RowBitmap deleted_;
  mutable DeviceBuffer search_q_, search_out_;
  mutable PinnedBuffer pinned_, pinned_q_;
  PinnedBuffer pinned_up_;               // upload_rows' two staging buffers
  std::vector<cudaEvent_t> up_events_;   // the last upload from each
  mutable std::unique_ptr<Stream> copy_stream_;  // query uploads, overlapping the searches
  mutable std::vector<cudaEvent_t> events_;
  mutable std::mutex mu_;
#if !defined(HIVE_GPU_HIP)
  bool blas_tried_ = false;
  std::unique_ptr<BlasHandle> blas_;
#endif
};

}  // namespace

std::unique_ptr<detail::GraphStore> make_cuda_graph_store(const detail::GraphConfig& cfg, int ordinal) {
  return std::make_unique<CudaGraphStore>(cfg, ordinal);
}

}  // namespace hive::gpu::HIVE_GPU_DEVICE_NS
