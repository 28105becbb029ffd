// HnswIndex: ids, deletes, validation and files over the CPU backend's HNSW graph
// (backends/cpu/hnsw_graph.hpp). Graph node i holds stored row i; a deleted node keeps
// routing searches (the graph stays connected) but is never returned, until compact()
// rebuilds the graph from the live rows. Upsert re-inserts the vector as a new node and deletes
// the old one.
#include "hive_gpu/hnsw_index.hpp"

#include <algorithm>
#include <cstring>
#include <limits>
#include <mutex>
#include <numeric>
#include <shared_mutex>

#include "backends/cpu/hnsw_graph.hpp"
#include "backends/cpu/thread_pool.hpp"
#include "core/file_format.hpp"
#include "core/hnsw_access.hpp"
#include "core/id_map.hpp"
#include "core/row_encoding.hpp"
#include "core/validate.hpp"
#include "hive_gpu/error.hpp"

namespace hive::gpu {

namespace {

constexpr int kMaxM = 256;
constexpr int kMaxEf = 1 << 20;

HnswOptions checked(std::size_t dim, Metric metric, HnswOptions o) {
  if (uint8_t(metric) > uint8_t(Metric::Hamming))
    throw Error(ErrorCode::UnknownMetric, "metric code " + std::to_string(int(metric)) + " is not a metric");
  if (dim == 0 || dim > (std::size_t(1) << 24))
    throw Error(ErrorCode::InvalidArgument, "dim = " + std::to_string(dim) + " is out of range [1, 2^24]");
  if (o.M < 2 || o.M > kMaxM)
    throw Error(ErrorCode::InvalidArgument, "M = " + std::to_string(o.M) + " is out of range [2, 256]");
  if (o.ef_construction < 1 || o.ef_construction > kMaxEf)
    throw Error(ErrorCode::InvalidArgument, "ef_construction = " + std::to_string(o.ef_construction) +
                                                " is out of range [1, 2^20]");
  if (o.ef_search < 1 || o.ef_search > kMaxEf)
    throw Error(ErrorCode::InvalidArgument, "ef_search = " + std::to_string(o.ef_search) + " is out of range [1, 2^20]");
  if (metric == Metric::Hamming) {
    if (dim % 8 != 0)
      throw Error(ErrorCode::InvalidArgument,
                  "a Hamming index needs dim (in bits) to be a multiple of 8, got " + std::to_string(dim));
    o.storage = ScalarType::Bits;
  } else if (o.storage == ScalarType::Bits || uint8_t(o.storage) > uint8_t(ScalarType::Bits)) {
    throw Error(ErrorCode::InvalidArgument,
                "storage " + std::string(to_string(o.storage)) + " is for Hamming indexes; use f32, f16 or bf16");
  }
  return o;
}

void check_ef(int ef) {
  if (ef < 1 || ef > kMaxEf) throw Error(ErrorCode::InvalidArgument, "ef = " + std::to_string(ef) + " is out of range [1, 2^20]");
}

}  // namespace

struct HnswIndex::State {
  Context ctx;
  std::size_t dim;
  Metric metric;
  HnswOptions opt;
  std::unique_ptr<cpu::HnswGraph> graph;
  detail::IdMap ids;             // row = graph node
  std::vector<uint8_t> deleted;  // per node
  // Searches share the lock; mutations take it alone.
  mutable std::shared_mutex mu;

  State(const Context& c, std::size_t d, Metric m, HnswOptions o)
      : ctx(c), dim(d), metric(m), opt(checked(d, m, o)), graph(make_graph()) {
    if (ctx.info().backend != "cpu")
      throw Error(ErrorCode::Unsupported, "HnswIndex runs on the CPU backend, not '" + ctx.info().backend + "'");
  }

  std::unique_ptr<cpu::HnswGraph> make_graph() const {
    return std::make_unique<cpu::HnswGraph>(dim, metric, opt.storage,
                                            cpu::HnswParams{opt.M, opt.ef_construction, opt.seed});
  }
  std::size_t row_bytes() const { return hive::gpu::row_bytes(opt.storage, dim); }
  bool is_bits() const { return metric == Metric::Hamming; }
  void require_floats() const {
    if (is_bits())
      throw Error(ErrorCode::Unsupported, "a Hamming index takes packed bits (the uint8_t overloads), not floats");
  }
  void require_bits() const {
    if (!is_bits()) throw Error(ErrorCode::Unsupported, "packed-bit vectors need a Hamming index");
  }
  std::vector<uint8_t> encode(std::size_t n, const float* x) const {
    return detail::encode_rows(dim, metric, opt.storage, n, x, "vectors");
  }

  // Inserts encoded rows as new nodes and gives them ids (new ones, or live ids that move:
  // upsert). Everything that can throw for a bad input has been checked by the caller.
  void insert(std::size_t n, const void* encoded, const int64_t* new_ids) {
    if (n == 0) return;
    ids.reserve(ids.rows() + n);
    deleted.reserve(deleted.size() + n);
    graph->add(n, encoded);
    const std::size_t first = ids.rows();
    ids.append_untracked(n);
    deleted.resize(first + n, 0);
    for (std::size_t i = 0; i < n; ++i) {
      const std::size_t old = ids.assign(first + i, new_ids[i]);
      if (old != detail::IdMap::npos) deleted[old] = 1;
    }
  }

  // One query's results (scores in the kernels' convention -> reported distances).
  void search_one(const void* q, int k, int ef, float* dist, int64_t* out_ids,
                  std::vector<detail::Candidate>& buf) const {
    buf.resize(std::size_t(k));
    const std::size_t m = graph->search(q, k, ef, deleted.data(), buf.data());
    const bool negate = metric == Metric::InnerProduct;  // kernels minimise -dot; report the dot
    const float worst = negate ? -std::numeric_limits<float>::infinity() : std::numeric_limits<float>::infinity();
    for (std::size_t j = 0; j < std::size_t(k); ++j) {
      if (j < m) {
        dist[j] = negate ? -buf[j].score : buf[j].score;
        out_ids[j] = ids.id_at(std::size_t(buf[j].row));
      } else {
        dist[j] = worst;
        out_ids[j] = kNoId;
      }
    }
  }

  void search(std::size_t nq, const void* q, std::size_t q_bytes, int k, int ef, float* dist, int64_t* out_ids) const {
    const auto* base = static_cast<const uint8_t*>(q);
    const std::size_t kk = std::size_t(k);
    if (nq == 1) {
      std::vector<detail::Candidate> buf;
      search_one(base, k, ef, dist, out_ids, buf);
      return;
    }
    cpu::ThreadPool::instance().parallel_for(nq, [&](std::size_t i) {
      thread_local std::vector<detail::Candidate> buf;
      search_one(base + i * q_bytes, k, ef, dist + i * kk, out_ids + i * kk, buf);
    });
  }

  void check_outputs(std::size_t nq, int k, int ef, float* dist, int64_t* out_ids) const {
    detail::check_k(k);
    check_ef(ef);
    detail::check_pointer(dist, nq, "distances");
    detail::check_pointer(out_ids, nq, "ids");
  }
};

HnswIndex::HnswIndex(const Context& ctx, std::size_t dim, Metric metric, HnswOptions options)
    : s_(std::make_unique<State>(ctx, dim, metric, options)) {}
HnswIndex::HnswIndex(std::size_t dim, Metric metric, HnswOptions options)
    : HnswIndex(Context::open("cpu"), dim, metric, options) {}
HnswIndex::HnswIndex(std::unique_ptr<State> s) : s_(std::move(s)) {}
HnswIndex::~HnswIndex() = default;
HnswIndex::HnswIndex(HnswIndex&&) noexcept = default;
HnswIndex& HnswIndex::operator=(HnswIndex&&) noexcept = default;

std::size_t HnswIndex::dim() const { return s_->dim; }
Metric HnswIndex::metric() const { return s_->metric; }
ScalarType HnswIndex::storage() const { return s_->opt.storage; }
const HnswOptions& HnswIndex::options() const { return s_->opt; }
const Context& HnswIndex::context() const { return s_->ctx; }
std::size_t HnswIndex::size() const {
  std::shared_lock lock(s_->mu);
  return s_->ids.live();
}
std::size_t HnswIndex::stored_rows() const {
  std::shared_lock lock(s_->mu);
  return s_->ids.rows();
}
int HnswIndex::max_level() const {
  std::shared_lock lock(s_->mu);
  return s_->graph->max_level();
}
int64_t HnswIndex::next_id() const {
  std::shared_lock lock(s_->mu);
  return s_->ids.next_id();
}

void HnswIndex::set_ef_search(int ef) {
  check_ef(ef);
  std::unique_lock lock(s_->mu);
  s_->opt.ef_search = ef;
}
int HnswIndex::ef_search() const {
  std::shared_lock lock(s_->mu);
  return s_->opt.ef_search;
}

void HnswIndex::add(std::size_t n, const float* x) {
  std::unique_lock lock(s_->mu);
  s_->require_floats();
  const auto enc = s_->encode(n, x);
  const auto ids = s_->ids.sequential(n);
  s_->insert(n, enc.data(), ids.data());
}

void HnswIndex::add_with_ids(std::size_t n, const float* x, const int64_t* ids) {
  std::unique_lock lock(s_->mu);
  s_->require_floats();
  s_->ids.check_new(n, ids);
  const auto enc = s_->encode(n, x);
  s_->insert(n, enc.data(), ids);
}

void HnswIndex::upsert(std::size_t n, const float* x, const int64_t* ids) {
  std::unique_lock lock(s_->mu);
  s_->require_floats();
  detail::check_pointer(ids, n, "ids");
  detail::check_ids(ids, n);
  const auto enc = s_->encode(n, x);
  s_->insert(n, enc.data(), ids);
}

void HnswIndex::add(std::size_t n, const uint8_t* bits) {
  std::unique_lock lock(s_->mu);
  s_->require_bits();
  detail::check_pointer(bits, n, "vectors");
  const auto ids = s_->ids.sequential(n);
  s_->insert(n, bits, ids.data());
}

void HnswIndex::add_with_ids(std::size_t n, const uint8_t* bits, const int64_t* ids) {
  std::unique_lock lock(s_->mu);
  s_->require_bits();
  detail::check_pointer(bits, n, "vectors");
  s_->ids.check_new(n, ids);
  s_->insert(n, bits, ids);
}

void HnswIndex::upsert(std::size_t n, const uint8_t* bits, const int64_t* ids) {
  std::unique_lock lock(s_->mu);
  s_->require_bits();
  detail::check_pointer(bits, n, "vectors");
  detail::check_pointer(ids, n, "ids");
  detail::check_ids(ids, n);
  s_->insert(n, bits, ids);
}

void HnswIndex::search(std::size_t nq, const float* q, int k, float* distances, int64_t* ids) const {
  search(nq, q, k, distances, ids, ef_search());
}

void HnswIndex::search(std::size_t nq, const float* q, int k, float* distances, int64_t* ids, int ef) const {
  std::shared_lock lock(s_->mu);
  s_->require_floats();
  s_->check_outputs(nq, k, ef, distances, ids);
  std::vector<float> scratch;
  const float* ready = detail::prepare_queries(s_->dim, s_->metric, nq, q, scratch);
  if (nq == 0) return;
  s_->search(nq, ready, s_->dim * sizeof(float), k, ef, distances, ids);
}

void HnswIndex::search(std::size_t nq, const uint8_t* q, int k, float* distances, int64_t* ids) const {
  search(nq, q, k, distances, ids, ef_search());
}

void HnswIndex::search(std::size_t nq, const uint8_t* q, int k, float* distances, int64_t* ids, int ef) const {
  std::shared_lock lock(s_->mu);
  s_->require_bits();
  s_->check_outputs(nq, k, ef, distances, ids);
  detail::check_pointer(q, nq, "queries");
  if (nq == 0) return;
  s_->search(nq, q, s_->row_bytes(), k, ef, distances, ids);
}

std::size_t HnswIndex::remove(std::size_t n, const int64_t* ids) {
  std::unique_lock lock(s_->mu);
  detail::check_pointer(ids, n, "ids");
  return s_->ids.remove_all(n, ids, [&](std::size_t row) { s_->deleted[row] = 1; });
}

bool HnswIndex::contains(int64_t id) const {
  std::shared_lock lock(s_->mu);
  return s_->ids.contains(id);
}

std::vector<float> HnswIndex::get(int64_t id) const {
  std::shared_lock lock(s_->mu);
  s_->require_floats();
  return detail::decode_row(s_->dim, s_->opt.storage, s_->graph->row(s_->ids.row_of(id)));
}

std::vector<uint8_t> HnswIndex::get_bits(int64_t id) const {
  std::shared_lock lock(s_->mu);
  s_->require_bits();
  const uint8_t* r = s_->graph->row(s_->ids.row_of(id));
  return std::vector<uint8_t>(r, r + s_->row_bytes());
}

std::vector<int64_t> HnswIndex::ids() const {
  std::shared_lock lock(s_->mu);
  return s_->ids.live_ids();
}

void HnswIndex::reserve(std::size_t n) {
  std::unique_lock lock(s_->mu);
  s_->graph->reserve(n);
  s_->ids.reserve(n);
  s_->deleted.reserve(n);
}

void HnswIndex::compact() {
  std::unique_lock lock(s_->mu);
  if (s_->ids.live() == s_->ids.rows()) return;
  const std::vector<std::size_t> live = s_->ids.live_rows();
  const std::size_t rb = s_->row_bytes();
  std::vector<uint8_t> rows(live.size() * rb);
  for (std::size_t i = 0; i < live.size(); ++i) std::memcpy(rows.data() + i * rb, s_->graph->row(live[i]), rb);
  auto fresh = s_->make_graph();
  fresh->add(live.size(), rows.data());  // may throw (memory): nothing has changed yet
  s_->graph = std::move(fresh);
  s_->ids.compact();
  s_->deleted.assign(live.size(), 0);
}

void HnswIndex::reset() {
  std::unique_lock lock(s_->mu);
  s_->graph = s_->make_graph();
  s_->ids.clear();
  s_->deleted.clear();
}

// File: the common header (kind 2, count = nodes), ids (kNoId for deleted nodes), every
// node's row, then 8 bytes (ef_search, zero) and the graph (HnswGraph::save_graph).
namespace {

void write_hnsw_file(const std::string& path, Metric metric, ScalarType storage, std::size_t dim, int64_t next_id,
                     const std::vector<int64_t>& ids, const void* rows, int ef_search,
                     const std::vector<uint8_t>& graph) {
  const std::size_t n = ids.size(), rb = row_bytes(storage, dim);
  detail::AtomicFileWriter w(path);
  detail::FileHeader h;
  h.kind = detail::kKindHnsw;
  h.metric = metric;
  h.storage = storage;
  h.dim = dim;
  h.count = n;
  h.next_id = next_id;
  h.extra_bytes = 8 + graph.size();
  w.write_header(h, rb);
  w.write_payload(ids.data(), n * sizeof(int64_t));
  if (n > 0) w.write_payload(rows, n * rb);
  const uint32_t params[2] = {uint32_t(ef_search), 0};
  w.write_payload(params, sizeof params);
  w.write_payload(graph.data(), graph.size());
  w.commit();
}

template <class T>
void put(std::vector<uint8_t>& out, T v) {
  const auto* b = reinterpret_cast<const uint8_t*>(&v);
  out.insert(out.end(), b, b + sizeof v);
}

}  // namespace

void HnswIndex::save(const std::string& path) const {
  std::shared_lock lock(s_->mu);
  const std::size_t n = s_->ids.rows();
  std::vector<uint8_t> graph;
  s_->graph->save_graph(graph);
  std::vector<int64_t> ids(n);
  for (std::size_t r = 0; r < n; ++r) ids[r] = s_->ids.id_at(r);
  write_hnsw_file(path, s_->metric, s_->opt.storage, s_->dim, s_->ids.next_id(), ids,
                  n > 0 ? s_->graph->row(0) : nullptr, s_->opt.ef_search, graph);
}

detail::HnswLevel0 detail::HnswAccess::read_level0(const std::string& path) {
  const HnswIndex index = HnswIndex::load(path);
  const auto& s = *index.s_;
  if (s.metric == Metric::Hamming)
    throw Error(ErrorCode::Unsupported, "'" + path + "' holds a Hamming index: GraphIndex takes float vectors");
  HnswLevel0 g;
  g.dim = s.dim;
  g.metric = s.metric;
  g.M = s.opt.M;
  g.ef_search = s.opt.ef_search;
  g.ef_construction = s.opt.ef_construction;
  g.seed = s.opt.seed;
  g.next_id = s.ids.next_id();
  const std::size_t n = s.ids.rows(), width = std::size_t(2 * g.M);
  g.ids.resize(n);
  g.rows.resize(n * s.dim);
  g.links.assign(n * width, 0xffffffffu);
  for (std::size_t i = 0; i < n; ++i) {
    g.ids[i] = s.deleted[i] ? kNoId : s.ids.id_at(i);
    const auto row = detail::decode_row(s.dim, s.opt.storage, s.graph->row(i));
    std::copy(row.begin(), row.end(), g.rows.begin() + std::ptrdiff_t(i * s.dim));
    const uint32_t* l = s.graph->level0(i);
    for (uint32_t j = 0; j < l[0]; ++j) g.links[i * width + j] = l[1 + j];
  }
  return g;
}

void detail::HnswAccess::write_level0(const std::string& path, const HnswLevel0& g) {
  const std::size_t n = g.ids.size(), width = std::size_t(2 * g.M), M = std::size_t(g.M);
  std::vector<uint8_t> levels(n, 0);
  for (uint32_t u : g.upper) levels.at(u) = 1;
  std::vector<uint8_t> graph;
  graph.reserve(cpu::HnswGraph::kGraphHeaderBytes + n + 8 + n * (1 + width) * 4 + g.upper.size() * (1 + M) * 4);
  put<uint32_t>(graph, uint32_t(g.M));
  put<uint32_t>(graph, uint32_t(g.ef_construction));
  put<uint64_t>(graph, g.seed);
  put<int32_t>(graph, n == 0 ? -1 : g.upper.empty() ? 0 : 1);
  put<uint32_t>(graph, g.upper.empty() ? 0 : g.upper[0]);
  put<uint64_t>(graph, g.seed);  // the level generator starts afresh
  graph.insert(graph.end(), levels.begin(), levels.end());
  graph.resize(cpu::HnswGraph::kGraphHeaderBytes + (n + 7) / 8 * 8, 0);
  auto put_list = [&](const std::vector<uint32_t>& links, std::size_t words) {
    put<uint32_t>(graph, uint32_t(links.size()));
    for (std::size_t j = 0; j < words; ++j) put<uint32_t>(graph, j < links.size() ? links[j] : 0u);
  };
  for (std::size_t i = 0; i < n; ++i) {
    std::vector<uint32_t> keep;
    for (std::size_t j = 0; j < width; ++j) {
      const uint32_t v = g.links[i * width + j];
      if (v < n && v != uint32_t(i) && std::find(keep.begin(), keep.end(), v) == keep.end()) keep.push_back(v);
    }
    put_list(keep, width);
  }
  // Level 1, in node order: each upper node's links chosen by HNSW's heuristic among the other
  // upper nodes (nearest first, a candidate kept only while it is nearer to the node than to any
  // link kept): links then point in every direction, so a greedy descent crosses regions that
  // level 0 does not connect (L2 on the stored rows).
  const std::size_t E = g.upper.size();
  std::vector<float> dist(E * E, 0.0f);
  for (std::size_t a = 0; a < E; ++a)
    for (std::size_t b = a + 1; b < E; ++b) {
      double s2 = 0;
      const float* x = g.rows.data() + std::size_t(g.upper[a]) * g.dim;
      const float* y = g.rows.data() + std::size_t(g.upper[b]) * g.dim;
      for (std::size_t j = 0; j < g.dim; ++j) s2 += (double(x[j]) - double(y[j])) * (double(x[j]) - double(y[j]));
      dist[a * E + b] = dist[b * E + a] = float(s2);
    }
  std::vector<std::size_t> order(E);
  std::iota(order.begin(), order.end(), std::size_t(0));
  std::sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return g.upper[a] < g.upper[b]; });
  for (std::size_t a : order) {
    std::vector<std::size_t> by;
    for (std::size_t b = 0; b < E; ++b)
      if (b != a) by.push_back(b);
    std::sort(by.begin(), by.end(), [&](std::size_t x, std::size_t y) { return dist[a * E + x] < dist[a * E + y]; });
    std::vector<std::size_t> kept;
    for (std::size_t c : by) {
      if (kept.size() >= M) break;
      bool ok = true;
      for (std::size_t k : kept) ok = ok && dist[c * E + k] > dist[c * E + a];
      if (ok) kept.push_back(c);
    }
    std::vector<uint32_t> links;
    for (std::size_t k : kept) links.push_back(g.upper[k]);
    put_list(links, M);
  }
  write_hnsw_file(path, g.metric, ScalarType::F32, g.dim, g.next_id, g.ids, g.rows.data(), g.ef_search, graph);
}

HnswIndex HnswIndex::load(const std::string& path) {
  detail::FileReader r(path);
  const auto& h = r.header();
  auto corrupt = [&](const std::string& why) { return Error(ErrorCode::CorruptFile, "'" + path + "': " + why); };
  if (h.kind != detail::kKindHnsw)
    throw Error(ErrorCode::Unsupported, "'" + path + "' holds a flat index: open it with FlatIndex::load");
  const std::size_t n = h.count;
  const std::size_t rb = row_bytes(h.storage, h.dim);
  if (h.extra_bytes < 8 + cpu::HnswGraph::kGraphHeaderBytes) throw corrupt("the graph section is truncated");
  std::vector<int64_t> ids(n);
  r.read_payload(ids.data(), n * sizeof(int64_t));
  std::vector<uint8_t> rows(n * rb);
  r.read_payload(rows.data(), rows.size());
  uint32_t params[2];
  r.read_payload(params, sizeof params);
  std::vector<uint8_t> graph(h.extra_bytes - 8);
  r.read_payload(graph.data(), graph.size());
  r.finish();
  // Past the checksums: what is left to check is consistency.
  HnswOptions o;
  o.storage = h.storage;
  std::memcpy(&o.M, graph.data(), 4);
  std::memcpy(&o.ef_construction, graph.data() + 4, 4);
  std::memcpy(&o.seed, graph.data() + 8, 8);
  o.ef_search = int(params[0]);
  std::unique_ptr<State> s;
  try {
    s = std::make_unique<State>(Context::open("cpu"), h.dim, h.metric, o);
  } catch (const Error& e) {
    throw corrupt(std::string("bad parameters: ") + e.what());
  }
  if (!s->graph->load(n, rows.data(), graph.data(), graph.size())) throw corrupt("the graph is damaged");
  std::vector<int64_t> live;
  for (int64_t id : ids)
    if (id != kNoId) live.push_back(id);
  try {
    detail::check_ids(live.data(), live.size());
  } catch (const Error& e) {
    throw corrupt(e.what());
  }
  if (!live.empty() && *std::max_element(live.begin(), live.end()) >= h.next_id &&
      h.next_id != std::numeric_limits<int64_t>::max())
    throw corrupt("next id is not above every stored id");
  s->ids.append_untracked(n);
  s->deleted.assign(n, 0);
  for (std::size_t i = 0; i < n; ++i) {
    if (ids[i] == kNoId)
      s->deleted[i] = 1;
    else
      s->ids.assign(i, ids[i]);
  }
  s->ids.set_next_id(h.next_id);
  return HnswIndex(std::move(s));
}

}  // namespace hive::gpu
