#include "backends/cpu/hnsw_graph.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <limits>

#include "backends/cpu/thread_pool.hpp"
#include "hive_gpu/error.hpp"

namespace hive::gpu::cpu {

namespace {

constexpr int kMaxLevel = 63;  // levels are stored in a byte; 63 is never reached in practice
constexpr std::size_t kRowAlign = 64;

std::size_t pad8(std::size_t b) { return (b + 7) / 8 * 8; }

template <class T>
void put(std::vector<uint8_t>& out, T v) {
  const std::size_t at = out.size();
  out.resize(at + sizeof(T));
  std::memcpy(out.data() + at, &v, sizeof(T));
}
template <class T>
T get(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}

// splitmix64: a small, well-mixed generator whose sequence is fixed by the seed.
uint64_t next_random(uint64_t& s) {
  uint64_t z = (s += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

inline void prefetch(const void* p) { __builtin_prefetch(p, 0, 3); }

}  // namespace

// Per-search visited marks: a node is visited when its tag equals the current epoch, so a new
// search costs one increment instead of clearing the array.
struct HnswGraph::Visited {
  std::vector<uint16_t> tags;
  uint16_t epoch = 0;
  void start(std::size_t n) {
    if (tags.size() < n) tags.resize(n, 0);
    if (++epoch == 0) {
      std::fill(tags.begin(), tags.end(), uint16_t(0));
      epoch = 1;
    }
  }
  bool test_and_set(uint32_t node) {
    if (tags[node] == epoch) return true;
    tags[node] = epoch;
    return false;
  }
};

struct HnswGraph::VisitedPool {
  std::mutex mu;
  std::vector<std::unique_ptr<Visited>> free;
  std::unique_ptr<Visited> take() {
    std::lock_guard<std::mutex> lock(mu);
    if (free.empty()) return std::make_unique<Visited>();
    auto v = std::move(free.back());
    free.pop_back();
    return v;
  }
  void give(std::unique_ptr<Visited> v) {
    std::lock_guard<std::mutex> lock(mu);
    free.push_back(std::move(v));
  }
};

HnswGraph::HnswGraph(std::size_t dim, Metric metric, ScalarType storage, HnswParams params)
    : dim_(dim),
      metric_(metric),
      storage_(storage),
      p_(params),
      row_bytes_(hive::gpu::row_bytes(storage, dim)),
      level_mult_(1.0 / std::log(double(std::max(params.M, 2)))),
      rng_state_(params.seed),
      visited_(std::make_unique<VisitedPool>()) {
  const KernelTable& k = kernels();
  if (metric == Metric::Hamming) {
    hamming_ = k.hamming;
  } else {
    scan_ = k.scan_fn(metric, storage);
    gather_ = k.gather_fn(metric, storage);
    decode_ = k.decode[int(storage)];
  }
}

HnswGraph::~HnswGraph() = default;

void HnswGraph::dists(const void* q, const uint32_t* nodes, std::size_t m, float* out) const {
  if (hamming_ != nullptr) {
    for (std::size_t i = 0; i < m; ++i) hamming_(static_cast<const uint8_t*>(q), row(nodes[i]), 1, row_bytes_, out + i);
    return;
  }
  const void* ptrs[kMaxLinks];
  for (std::size_t i = 0; i < m; ++i) ptrs[i] = row(nodes[i]);
  gather_(static_cast<const float*>(q), ptrs, m, dim_, out);
}

float HnswGraph::dist(const void* q, uint32_t node) const {
  float out;
  if (hamming_ != nullptr)
    hamming_(static_cast<const uint8_t*>(q), row(node), 1, row_bytes_, &out);
  else
    scan_(static_cast<const float*>(q), row(node), 1, dim_, &out);
  return out;
}

const void* HnswGraph::as_query(uint32_t node, std::vector<float>& buf) const {
  if (hamming_ != nullptr || storage_ == ScalarType::F32) return row(node);
  buf.resize(dim_);
  decode_(row(node), buf.data(), dim_);
  return buf.data();
}

int HnswGraph::draw_level() {
  // u in (0, 1]: -ln(u) >= 0, finite.
  const double u = double((next_random(rng_state_) >> 11) + 1) * 0x1p-53;
  return std::min(kMaxLevel, int(-std::log(u) * level_mult_));
}

void HnswGraph::reserve(std::size_t capacity) {
  if (capacity <= capacity_) return;
  auto mem = std::make_unique<uint8_t[]>(capacity * row_bytes_ + kRowAlign);
  auto links = std::make_unique<uint32_t[]>(capacity * words0());  // zeroed: no links
  uint8_t* aligned = mem.get() + (kRowAlign - reinterpret_cast<uintptr_t>(mem.get()) % kRowAlign) % kRowAlign;
  if (n_ > 0) {
    std::memcpy(aligned, rows_, n_ * row_bytes_);
    std::memcpy(links.get(), links0_.get(), n_ * words0() * sizeof(uint32_t));
  }
  rows_mem_ = std::move(mem);
  rows_ = aligned;
  links0_ = std::move(links);
  upper_.resize(capacity);
  levels_.resize(capacity);
  locks_ = std::make_unique<std::mutex[]>(capacity);  // none is held outside add()
  capacity_ = capacity;
}

void HnswGraph::clear() {
  n_ = capacity_ = 0;
  rows_mem_.reset();
  rows_ = nullptr;
  links0_.reset();
  upper_.clear();
  levels_.clear();
  locks_.reset();
  max_level_ = -1;
  entry_ = 0;
  rng_state_ = p_.seed;
}

void HnswGraph::add(std::size_t n, const void* rows) {
  if (n == 0) return;
  if (n_ + n > std::size_t(std::numeric_limits<uint32_t>::max()))
    throw Error(ErrorCode::InvalidArgument, "an HNSW graph holds at most 2^32 - 1 nodes");
  reserve(std::max(n_ + n, capacity_ + capacity_ / 2));
  const std::size_t first = n_;
  std::memcpy(rows_ + first * row_bytes_, rows, n * row_bytes_);
  // Levels are drawn in node order before any insertion, so they depend only on the seed.
  for (std::size_t i = first; i < first + n; ++i) {
    const int level = draw_level();
    levels_[i] = uint8_t(level);
    if (level > 0) upper_[i] = std::make_unique<uint32_t[]>(std::size_t(level) * words_up());
  }
  n_ = first + n;
  ThreadPool::instance().parallel_for(n, [&](std::size_t i) { insert(uint32_t(first + i)); });
}

template <bool kLocked>
void HnswGraph::search_layer(const void* q, uint32_t ep, float ep_dist, int ef, int level, const uint8_t* deleted,
                             Heap& top) const {
  std::unique_ptr<Visited> visited = visited_->take();
  visited->start(n_);
  top.clear();
  Heap cand;  // min-heap on distance (std::greater)
  cand.reserve(std::size_t(ef) * 2);
  const std::size_t cap = std::size_t(ef);
  visited->test_and_set(ep);
  float lower = std::numeric_limits<float>::infinity();
  if (deleted == nullptr || deleted[ep] == 0) {
    top.emplace_back(ep_dist, ep);
    lower = ep_dist;
  }
  cand.emplace_back(ep_dist, ep);
  uint32_t list[kMaxLinks], todo[kMaxLinks];
  float dd[kMaxLinks];
  while (!cand.empty()) {
    const auto [dc, c] = cand.front();
    if (dc > lower && top.size() >= cap) break;
    std::pop_heap(cand.begin(), cand.end(), std::greater<>());
    cand.pop_back();
    const uint32_t* l = links(c, level);
    uint32_t count;
    if constexpr (kLocked) {
      std::lock_guard<std::mutex> lock(locks_[c]);
      count = l[0];
      std::memcpy(list, l + 1, count * sizeof(uint32_t));
      l = list;
    } else {
      count = l[0];
      ++l;
    }
    // The unvisited neighbours first, their rows prefetched, then all their distances in one
    // gather call (four rows at a time: independent chains, several memory streams), then the
    // heap updates in neighbour order: the same result as one neighbour at a time.
    std::size_t m = 0;
    for (uint32_t j = 0; j < count; ++j) {
      const uint32_t nb = l[j];
      if (visited->test_and_set(nb)) continue;
      prefetch(row(nb));
      todo[m++] = nb;
    }
    if (m == 0) continue;
    dists(q, todo, m, dd);
    for (std::size_t j = 0; j < m; ++j) {
      const float d = dd[j];
      const uint32_t nb = todo[j];
      if (top.size() < cap || d < lower) {
        cand.emplace_back(d, nb);
        std::push_heap(cand.begin(), cand.end(), std::greater<>());
        if (deleted == nullptr || deleted[nb] == 0) {
          top.emplace_back(d, nb);
          std::push_heap(top.begin(), top.end());
          if (top.size() > cap) {
            std::pop_heap(top.begin(), top.end());
            top.pop_back();
          }
        }
        if (!top.empty()) lower = top.front().first;
      }
    }
  }
  visited_->give(std::move(visited));
}

void HnswGraph::select_neighbors(Heap& sorted, int m, std::vector<float>& buf) const {
  if (sorted.size() <= std::size_t(m)) return;
  Heap kept;
  kept.reserve(std::size_t(m));
  uint32_t ids[4];
  float dd[4];
  for (const auto& [d, c] : sorted) {
    if (kept.size() >= std::size_t(m)) break;
    const void* cq = as_query(c, buf);
    bool good = true;
    // Four kept neighbours at a time (one gather call), stopping at the first that is closer.
    for (std::size_t i = 0; good && i < kept.size(); i += 4) {
      const std::size_t b = std::min<std::size_t>(4, kept.size() - i);
      for (std::size_t j = 0; j < b; ++j) ids[j] = kept[i + j].second;
      dists(cq, ids, b, dd);
      for (std::size_t j = 0; j < b; ++j) good = good && !(dd[j] < d);
    }
    if (good) kept.emplace_back(d, c);
  }
  sorted.swap(kept);
}

void HnswGraph::connect(uint32_t node, const Heap& neighbors, int level, std::vector<float>& buf) {
  const int maxm = max_links(level);
  std::vector<float> nbuf;
  Heap h;
  {
    std::lock_guard<std::mutex> lock(locks_[node]);
    uint32_t* l = links(node, level);
    const uint32_t had = l[0];
    if (had == 0) {
      l[0] = uint32_t(neighbors.size());
      for (std::size_t j = 0; j < neighbors.size(); ++j) l[1 + j] = neighbors[j].second;
    } else {
      // Other insertions already linked back to this node while it searched (its lock is not
      // held through an insertion, which could deadlock): keep those links too, so none is
      // lost, re-selecting by the heuristic when the union overflows the list.
      const void* nq = as_query(node, nbuf);
      float dd[kMaxLinks];
      dists(nq, l + 1, had, dd);
      h.assign(neighbors.begin(), neighbors.end());
      for (uint32_t j = 0; j < had; ++j) {
        const uint32_t e = l[1 + j];
        if (std::none_of(neighbors.begin(), neighbors.end(), [e](const auto& p) { return p.second == e; }))
          h.emplace_back(dd[j], e);
      }
      std::sort(h.begin(), h.end());
      select_neighbors(h, maxm, buf);
      l[0] = uint32_t(h.size());
      for (std::size_t j = 0; j < h.size(); ++j) l[1 + j] = h[j].second;
    }
  }
  for (const auto& [d, nb] : neighbors) {
    std::lock_guard<std::mutex> lock(locks_[nb]);
    uint32_t* l = links(nb, level);
    const uint32_t count = l[0];
    if (int(count) < maxm) {
      l[1 + count] = node;
      l[0] = count + 1;
      continue;
    }
    // Full: keep the best of its links and the new node by the same heuristic.
    const void* nq = as_query(nb, nbuf);
    float dd[kMaxLinks];
    dists(nq, l + 1, count, dd);
    h.clear();
    h.emplace_back(d, node);  // distances are symmetric
    for (uint32_t j = 0; j < count; ++j) h.emplace_back(dd[j], l[1 + j]);
    std::sort(h.begin(), h.end());
    select_neighbors(h, maxm, buf);
    l[0] = uint32_t(h.size());
    for (std::size_t j = 0; j < h.size(); ++j) l[1 + j] = h[j].second;
  }
}

template <bool kLocked>
void HnswGraph::descend(const void* q, uint32_t& cur, float& dcur, int from, int to) const {
  for (int lev = from; lev > to; --lev) {
    for (bool changed = true; changed;) {
      changed = false;
      std::unique_lock<std::mutex> lock;
      if constexpr (kLocked) lock = std::unique_lock<std::mutex>(locks_[cur]);
      const uint32_t* l = links(cur, lev);
      for (uint32_t j = 0; j < l[0]; ++j) {
        const float d = dist(q, l[1 + j]);
        if (d < dcur) {
          dcur = d;
          cur = l[1 + j];
          changed = true;
        }
      }
    }
  }
}

void HnswGraph::insert(uint32_t node) {
  thread_local std::vector<float> qbuf, buf;
  const int level = levels_[node];
  std::unique_lock<std::mutex> g(global_);
  const int top = max_level_;
  if (top < 0) {  // the first node
    entry_ = node;
    max_level_ = level;
    return;
  }
  const uint32_t ep = entry_;
  if (level <= top) g.unlock();  // a new top level keeps the lock until the entry point moves
  const void* q = as_query(node, qbuf);
  uint32_t cur = ep;
  float dcur = dist(q, cur);
  descend<true>(q, cur, dcur, top, level);
  Heap found;
  for (int lev = std::min(level, top); lev >= 0; --lev) {
    search_layer<true>(q, cur, dcur, p_.ef_construction, lev, nullptr, found);
    std::sort(found.begin(), found.end());
    cur = found.front().second;
    dcur = found.front().first;
    select_neighbors(found, p_.M, buf);
    connect(node, found, lev, buf);
  }
  if (level > top) {
    entry_ = node;
    max_level_ = level;
  }
}

std::size_t HnswGraph::search(const void* q, int k, int ef, const uint8_t* deleted, detail::Candidate* out) const {
  if (n_ == 0 || k <= 0) return 0;
  uint32_t cur = entry_;
  float dcur = dist(q, cur);
  descend<false>(q, cur, dcur, max_level_, 0);
  thread_local Heap top;
  search_layer<false>(q, cur, dcur, std::max(ef, k), 0, deleted, top);
  std::sort(top.begin(), top.end());
  const std::size_t m = std::min(top.size(), std::size_t(k));
  for (std::size_t i = 0; i < m; ++i) out[i] = detail::Candidate{top[i].first, int64_t(top[i].second)};
  return m;
}

// ---- serialisation ---------------------------------------------------------------------------
std::size_t HnswGraph::graph_bytes_for(std::size_t n, int M, const uint8_t* levels) {
  std::size_t upper_words = 0;
  for (std::size_t i = 0; i < n; ++i) upper_words += std::size_t(levels[i]) * std::size_t(1 + M);
  return kGraphHeaderBytes + pad8(n) + (n * std::size_t(1 + 2 * M) + upper_words) * sizeof(uint32_t);
}

std::size_t HnswGraph::graph_bytes() const { return graph_bytes_for(n_, p_.M, levels_.data()); }

void HnswGraph::save_graph(std::vector<uint8_t>& out) const {
  out.clear();
  out.reserve(graph_bytes());
  put<uint32_t>(out, uint32_t(p_.M));
  put<uint32_t>(out, uint32_t(p_.ef_construction));
  put<uint64_t>(out, p_.seed);
  put<int32_t>(out, int32_t(max_level_));
  put<uint32_t>(out, entry_);
  put<uint64_t>(out, rng_state_);  // so adds after a load draw the levels they would have drawn
  out.insert(out.end(), levels_.begin(), levels_.begin() + std::ptrdiff_t(n_));
  out.resize(kGraphHeaderBytes + pad8(n_), 0);
  const auto* l0 = reinterpret_cast<const uint8_t*>(links0_.get());
  out.insert(out.end(), l0, l0 + n_ * words0() * sizeof(uint32_t));
  for (std::size_t i = 0; i < n_; ++i) {
    if (levels_[i] == 0) continue;
    const auto* up = reinterpret_cast<const uint8_t*>(upper_[i].get());
    out.insert(out.end(), up, up + std::size_t(levels_[i]) * words_up() * sizeof(uint32_t));
  }
}

bool HnswGraph::load(std::size_t n, const void* rows, const uint8_t* graph, std::size_t graph_size) {
  if (graph_size < kGraphHeaderBytes + pad8(n)) return false;
  if (get<uint32_t>(graph) != uint32_t(p_.M)) return false;
  const int top = get<int32_t>(graph + 16);
  const uint32_t entry = get<uint32_t>(graph + 20);
  const uint64_t rng = get<uint64_t>(graph + 24);
  const uint8_t* levels = graph + kGraphHeaderBytes;
  if (graph_size != graph_bytes_for(n, p_.M, levels)) return false;
  if (n == 0) {
    if (top != -1) return false;
  } else {
    const int highest = int(*std::max_element(levels, levels + n));
    if (highest > kMaxLevel || top != highest || entry >= n || levels[entry] != highest) return false;
  }
  clear();
  rng_state_ = rng;
  reserve(n);
  std::memcpy(rows_, rows, n * row_bytes_);
  std::memcpy(levels_.data(), levels, n);
  const uint8_t* p = levels + pad8(n);
  std::memcpy(links0_.get(), p, n * words0() * sizeof(uint32_t));
  p += n * words0() * sizeof(uint32_t);
  for (std::size_t i = 0; i < n; ++i) {
    if (levels[i] == 0) continue;
    const std::size_t words = std::size_t(levels[i]) * words_up();
    upper_[i] = std::make_unique<uint32_t[]>(words);
    std::memcpy(upper_[i].get(), p, words * sizeof(uint32_t));
    p += words * sizeof(uint32_t);
  }
  n_ = n;
  max_level_ = top;
  entry_ = entry;
  // Every link list: a count within bounds, links to other existing nodes of that level.
  for (std::size_t i = 0; i < n; ++i) {
    for (int lev = 0; lev <= levels[i]; ++lev) {
      const uint32_t* l = links(uint32_t(i), lev);
      if (int(l[0]) > max_links(lev)) return false;
      for (uint32_t j = 0; j < l[0]; ++j)
        if (l[1 + j] >= n || l[1 + j] == i || levels[l[1 + j]] < lev) return false;
    }
  }
  return true;
}

}  // namespace hive::gpu::cpu
