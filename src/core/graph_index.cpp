// GraphIndex: ids, deletes, validation and files over a GPU backend's graph store
// (core/backend.hpp's GraphStore; CUDA / HIP: backends/cuda/cuda_graph_store.cpp). Node i holds
// stored row i. A deleted node keeps routing searches but is never returned, until compact()
// rebuilds the graph from the live rows. Upsert inserts the vector as a new node and deletes
// the old one. Files: HNSW files of one level (core/hnsw_access.hpp).
#include "hive_gpu/graph_index.hpp"

#include <algorithm>
#include <mutex>
#include <shared_mutex>

#include "core/backend.hpp"
#include "core/hnsw_access.hpp"
#include "core/id_map.hpp"
#include "core/row_encoding.hpp"
#include "core/validate.hpp"
#include "hive_gpu/error.hpp"

namespace hive::gpu {

namespace {

constexpr std::size_t kMaxDim = 16384;  // the search kernel keeps the query in shared memory
constexpr int kMaxGraphK = 1024;        // the search list's largest size

void check_params(const GraphSearchParams& p) {
  if (p.itopk < 16 || p.itopk > 1024 || (p.itopk & (p.itopk - 1)) != 0)
    throw Error(ErrorCode::InvalidArgument, "itopk = " + std::to_string(p.itopk) + " is not a power of two in [16, 1024]");
  if (p.search_width < 1 || p.search_width > 4)
    throw Error(ErrorCode::InvalidArgument, "search_width = " + std::to_string(p.search_width) + " is out of range [1, 4]");
  if (p.max_iterations < 0)
    throw Error(ErrorCode::InvalidArgument, "max_iterations = " + std::to_string(p.max_iterations) + " is negative");
}

GraphOptions checked(std::size_t dim, Metric metric, const GraphOptions& o) {
  if (uint8_t(metric) > uint8_t(Metric::Hamming))
    throw Error(ErrorCode::UnknownMetric, "metric code " + std::to_string(int(metric)) + " is not a metric");
  if (metric == Metric::Hamming)
    throw Error(ErrorCode::Unsupported, "GraphIndex takes float vectors; Hamming graphs are HnswIndex's");
  if (dim == 0 || dim > kMaxDim)
    throw Error(ErrorCode::InvalidArgument, "dim = " + std::to_string(dim) + " is out of range [1, 16384] for GraphIndex");
  if (o.graph_degree < 4 || o.graph_degree > 64 || o.graph_degree % 2 != 0)
    throw Error(ErrorCode::InvalidArgument,
                "graph_degree = " + std::to_string(o.graph_degree) + " is not an even number in [4, 64]");
  if (o.intermediate_degree < o.graph_degree || o.intermediate_degree > 128)
    throw Error(ErrorCode::InvalidArgument, "intermediate_degree = " + std::to_string(o.intermediate_degree) +
                                                " is out of range [graph_degree, 128]");
  check_params(o.search);
  if (o.search.search_width * o.graph_degree > 256)
    throw Error(ErrorCode::InvalidArgument, "search_width x graph_degree exceeds 256");
  return o;
}

}  // namespace

struct GraphIndex::State {
  Context ctx;
  std::size_t dim;
  Metric metric;
  GraphOptions opt;
  std::unique_ptr<detail::GraphStore> store;
  detail::IdMap ids;  // row = graph node
  mutable std::shared_mutex mu;

  State(const Context& c, std::size_t d, Metric m, const GraphOptions& o)
      : ctx(c), dim(d), metric(m), opt(checked(d, m, o)), store(c.device()->make_graph_store(config())) {}

  detail::GraphConfig config() const {
    detail::GraphConfig g;
    g.dim = dim;
    g.metric = metric;
    g.degree = opt.graph_degree;
    g.intermediate_degree = opt.intermediate_degree;
    g.seed = opt.seed;
    g.stream = opt.stream;
    return g;
  }

  // Rows ready for the store (no copy unless Cosine normalises them): the upload reads them.
  const float* ready_rows(std::size_t n, const float* x, std::vector<float>& scratch) const {
    return detail::prepare_rows(dim, metric, n, x, scratch, "vectors", "vectors");
  }

  // Appends rows as new nodes, links them in (the first batch builds the graph) and gives them
  // their ids; a live id moves to its new node (upsert). If linking fails (device memory), the
  // new nodes stay as deleted nodes without ids: the index is as it was.
  void insert(std::size_t n, const float* rows, const int64_t* new_ids) {
    if (n == 0) return;
    ids.reserve(ids.rows() + n);
    const std::size_t first = store->rows();
    store->append(n, rows);
    try {
      if (store->linked() == 0)
        store->build();
      else
        store->extend();
    } catch (...) {
      ids.append_untracked(n);
      for (std::size_t i = 0; i < n; ++i) store->set_deleted(first + i, true);
      throw;
    }
    ids.append_untracked(n);
    for (std::size_t i = 0; i < n; ++i) {
      const std::size_t old = ids.assign(first + i, new_ids[i]);
      if (old != detail::IdMap::npos) store->set_deleted(old, true);
    }
  }

  void search(std::size_t nq, const float* q, int k, const GraphSearchParams& p, float* dist, int64_t* out) const {
    detail::check_k(k);
    if (k > kMaxGraphK)
      throw Error(ErrorCode::InvalidK, "k = " + std::to_string(k) + ": GraphIndex returns at most 1024 neighbours");
    check_params(p);
    if (p.search_width * opt.graph_degree > 256)
      throw Error(ErrorCode::InvalidArgument, "search_width x graph_degree exceeds 256");
    detail::check_pointer(dist, nq, "distances");
    detail::check_pointer(out, nq, "ids");
    std::vector<float> scratch;
    const float* ready = detail::prepare_queries(dim, metric, nq, q, scratch);
    if (nq == 0) return;
    detail::GraphSearchConfig c;
    c.itopk = p.itopk;
    while (c.itopk < k) c.itopk <<= 1;
    c.search_width = p.search_width;
    c.max_iterations = p.max_iterations;
    store->search(nq, ready, k, c, dist, out);
    ids.rows_to_ids(out, nq * std::size_t(k));
  }

  // Every stored row (fp32) from the device.
  std::vector<float> all_rows() const {
    std::vector<float> rows(store->rows() * dim);
    store->read_rows(0, store->rows(), rows.data());
    return rows;
  }

  // Replaces the graph by one built over `rows` (ids kept by the caller's renumbering).
  void rebuild_from(const std::vector<float>& rows) {
    auto fresh = ctx.device()->make_graph_store(config());
    const std::size_t n = rows.size() / dim;
    fresh->append(n, rows.data());
    fresh->build();
    store = std::move(fresh);
  }
};

GraphIndex::GraphIndex(const Context& ctx, std::size_t dim, Metric metric, GraphOptions options)
    : s_(std::make_unique<State>(ctx, dim, metric, options)) {}
GraphIndex::GraphIndex(std::size_t dim, Metric metric, GraphOptions options)
    : GraphIndex(Context::open("auto"), dim, metric, options) {}
GraphIndex::GraphIndex(std::unique_ptr<State> s) : s_(std::move(s)) {}
GraphIndex::~GraphIndex() = default;
GraphIndex::GraphIndex(GraphIndex&&) noexcept = default;
GraphIndex& GraphIndex::operator=(GraphIndex&&) noexcept = default;

std::size_t GraphIndex::dim() const { return s_->dim; }
Metric GraphIndex::metric() const { return s_->metric; }
ScalarType GraphIndex::storage() const { return ScalarType::F32; }
const GraphOptions& GraphIndex::options() const { return s_->opt; }
const Context& GraphIndex::context() const { return s_->ctx; }
std::size_t GraphIndex::size() const {
  std::shared_lock lock(s_->mu);
  return s_->ids.live();
}
std::size_t GraphIndex::stored_rows() const {
  std::shared_lock lock(s_->mu);
  return s_->ids.rows();
}
int64_t GraphIndex::next_id() const {
  std::shared_lock lock(s_->mu);
  return s_->ids.next_id();
}

void GraphIndex::set_search_params(const GraphSearchParams& p) {
  check_params(p);
  if (p.search_width * s_->opt.graph_degree > 256)
    throw Error(ErrorCode::InvalidArgument, "search_width x graph_degree exceeds 256");
  std::unique_lock lock(s_->mu);
  s_->opt.search = p;
}
GraphSearchParams GraphIndex::search_params() const {
  std::shared_lock lock(s_->mu);
  return s_->opt.search;
}

void GraphIndex::add(std::size_t n, const float* x) {
  std::unique_lock lock(s_->mu);
  std::vector<float> scratch;
  const float* rows = s_->ready_rows(n, x, scratch);
  const auto ids = s_->ids.sequential(n);
  s_->insert(n, rows, ids.data());
}

void GraphIndex::add_with_ids(std::size_t n, const float* x, const int64_t* ids) {
  std::unique_lock lock(s_->mu);
  s_->ids.check_new(n, ids);
  std::vector<float> scratch;
  s_->insert(n, s_->ready_rows(n, x, scratch), ids);
}

void GraphIndex::upsert(std::size_t n, const float* x, const int64_t* ids) {
  std::unique_lock lock(s_->mu);
  detail::check_pointer(ids, n, "ids");
  detail::check_ids(ids, n);
  std::vector<float> scratch;
  s_->insert(n, s_->ready_rows(n, x, scratch), ids);
}

void GraphIndex::search(std::size_t nq, const float* q, int k, float* distances, int64_t* ids) const {
  search(nq, q, k, distances, ids, search_params());
}

void GraphIndex::search(std::size_t nq, const float* q, int k, float* distances, int64_t* ids,
                        const GraphSearchParams& p) const {
  std::shared_lock lock(s_->mu);
  s_->search(nq, q, k, p, distances, ids);
}

std::size_t GraphIndex::remove(std::size_t n, const int64_t* ids) {
  std::unique_lock lock(s_->mu);
  detail::check_pointer(ids, n, "ids");
  return s_->ids.remove_all(n, ids, [&](std::size_t row) { s_->store->set_deleted(row, true); });
}

bool GraphIndex::contains(int64_t id) const {
  std::shared_lock lock(s_->mu);
  return s_->ids.contains(id);
}

std::vector<float> GraphIndex::get(int64_t id) const {
  std::shared_lock lock(s_->mu);
  std::vector<float> out(s_->dim);
  s_->store->read_rows(s_->ids.row_of(id), 1, out.data());
  return out;
}

std::vector<int64_t> GraphIndex::ids() const {
  std::shared_lock lock(s_->mu);
  return s_->ids.live_ids();
}

std::vector<int64_t> GraphIndex::neighbors(int64_t id) const {
  std::shared_lock lock(s_->mu);
  const std::size_t row = s_->ids.row_of(id);
  const std::size_t deg = std::size_t(s_->opt.graph_degree);
  std::vector<uint32_t> links(s_->store->rows() * deg);
  s_->store->read_graph(links.data());
  std::vector<int64_t> out;
  for (std::size_t j = 0; j < deg; ++j) {
    const uint32_t v = links[row * deg + j];
    if (v < s_->store->rows()) out.push_back(s_->ids.id_at(v));
  }
  return out;
}

void GraphIndex::reserve(std::size_t n) {
  std::unique_lock lock(s_->mu);
  s_->ids.reserve(n);
}

void GraphIndex::compact() {
  std::unique_lock lock(s_->mu);
  if (s_->ids.live() == s_->ids.rows()) return;
  const std::vector<std::size_t> live = s_->ids.live_rows();
  const std::vector<float> all = s_->all_rows();
  std::vector<float> rows(live.size() * s_->dim);
  for (std::size_t i = 0; i < live.size(); ++i)
    std::copy_n(all.begin() + std::ptrdiff_t(live[i] * s_->dim), s_->dim, rows.begin() + std::ptrdiff_t(i * s_->dim));
  s_->rebuild_from(rows);  // may throw: nothing has changed yet
  s_->ids.compact();
}

void GraphIndex::rebuild() {
  std::unique_lock lock(s_->mu);
  if (s_->store->rows() == 0) return;
  s_->store->build();
}

void GraphIndex::reset() {
  std::unique_lock lock(s_->mu);
  s_->store->clear();
  s_->ids.clear();
}

void GraphIndex::save(const std::string& path) const {
  std::shared_lock lock(s_->mu);
  detail::HnswLevel0 g;
  g.dim = s_->dim;
  g.metric = s_->metric;
  g.M = s_->opt.graph_degree / 2;
  g.ef_search = s_->opt.search.itopk;
  g.seed = s_->opt.seed;
  g.next_id = s_->ids.next_id();
  const std::size_t n = s_->ids.rows();
  g.ids.resize(n);
  for (std::size_t r = 0; r < n; ++r) g.ids[r] = s_->ids.id_at(r);
  g.rows = s_->all_rows();
  g.links.resize(n * std::size_t(s_->opt.graph_degree));
  s_->store->read_graph(g.links.data());
  // The CPU's search descends from level 1: the entry points the GPU searches start from.
  g.upper = s_->store->entry_points();
  detail::HnswAccess::write_level0(path, g);
}

GraphIndex GraphIndex::load(const std::string& path) { return load(path, Context::open("auto")); }

GraphIndex GraphIndex::load(const std::string& path, const Context& ctx) {
  const detail::HnswLevel0 g = detail::HnswAccess::read_level0(path);
  if (2 * g.M > 64)
    throw Error(ErrorCode::Unsupported, "'" + path + "' has " + std::to_string(2 * g.M) +
                                            " links per node at level 0; GraphIndex searches at most 64");
  GraphOptions o;
  o.graph_degree = std::max(4, 2 * g.M);
  o.intermediate_degree = std::max(o.graph_degree, 64);
  o.seed = g.seed;
  int itopk = 32;
  while (itopk < g.ef_search && itopk < 1024) itopk <<= 1;
  o.search.itopk = itopk;
  auto s = std::make_unique<State>(ctx, g.dim, g.metric, o);
  const std::size_t n = g.ids.size();
  std::vector<uint32_t> links(n * std::size_t(o.graph_degree), 0xffffffffu);
  const std::size_t w = std::size_t(2 * g.M);
  for (std::size_t i = 0; i < n; ++i) std::copy_n(g.links.begin() + std::ptrdiff_t(i * w), w, links.begin() + std::ptrdiff_t(i * std::size_t(o.graph_degree)));
  s->store->load(n, g.rows.data(), links.data());
  s->ids.append_untracked(n);
  for (std::size_t i = 0; i < n; ++i) {
    if (g.ids[i] == kNoId)
      s->store->set_deleted(i, true);
    else
      s->ids.assign(i, g.ids[i]);
  }
  s->ids.set_next_id(g.next_id);
  return GraphIndex(std::move(s));
}

}  // namespace hive::gpu
