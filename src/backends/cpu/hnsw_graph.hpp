// Internal: the HNSW graph of HnswIndex (CPU). Nodes are numbered in insertion order; each
// holds its row in the storage encoding (Cosine rows normalised by the caller) and its links:
// level 0 in one flat array (1 + 2M words per node: count, then links), upper levels in a
// per-node array (level L holds L (1 + M) words). Deleted flags belong to the caller and are
// passed to searches: deleted nodes still route, they are never returned.
//
// Concurrency: add() inserts a batch with every thread of the CPU pool (a lock per node guards
// its link lists, a global lock the entry point); searches may run concurrently with each other
// but not with add(), reserve() or load() (HnswIndex's shared lock sees to that).
#pragma once
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include "backends/cpu/kernels.hpp"
#include "core/topk.hpp"
#include "hive_gpu/types.hpp"

namespace hive::gpu::cpu {

struct HnswParams {
  int M = 16;
  int ef_construction = 200;
  uint64_t seed = 100;
};

class HnswGraph {
 public:
  HnswGraph(std::size_t dim, Metric metric, ScalarType storage, HnswParams params);
  ~HnswGraph();
  HnswGraph(const HnswGraph&) = delete;
  HnswGraph& operator=(const HnswGraph&) = delete;

  std::size_t size() const { return n_; }
  int max_level() const { return max_level_; }
  std::size_t row_bytes() const { return row_bytes_; }
  const uint8_t* row(std::size_t node) const { return rows_ + node * row_bytes_; }
  const HnswParams& params() const { return p_; }
  // Level-0 links of a node: a count, then that many node indices (2M words after the count).
  const uint32_t* level0(std::size_t node) const { return links(uint32_t(node), 0); }

  void reserve(std::size_t capacity);
  // Appends n encoded rows as nodes size() .. size() + n - 1 and links them in.
  void add(std::size_t n, const void* rows);
  void clear();

  // The k best live nodes for query q (fp32, or packed bits for Hamming; normalised for
  // Cosine), with a candidate list of max(ef, k): `out` gets up to k (score, node) pairs, best
  // first, scores in the kernels' convention (smaller is better). deleted: one flag per node,
  // or null. Returns how many were written.
  std::size_t search(const void* q, int k, int ef, const uint8_t* deleted, detail::Candidate* out) const;

  // Serialised graph (levels, links, entry point), for files: bytes() of them, written by
  // save_to and read back by load_from (which checks every link and returns false on damage).
  std::size_t graph_bytes() const;
  void save_graph(std::vector<uint8_t>& out) const;
  // rows: n encoded rows already validated by the caller; graph: the bytes save_graph wrote.
  bool load(std::size_t n, const void* rows, const uint8_t* graph, std::size_t graph_size);
  // Graph bytes a file must hold for n nodes with these levels (for the reader's size check).
  static std::size_t graph_bytes_for(std::size_t n, int M, const uint8_t* levels);
  static constexpr std::size_t kGraphHeaderBytes = 32;

 private:
  struct Visited;
  struct VisitedPool;
  using Heap = std::vector<std::pair<float, uint32_t>>;

  std::size_t words0() const { return std::size_t(1) + std::size_t(2 * p_.M); }
  std::size_t words_up() const { return std::size_t(1) + std::size_t(p_.M); }
  uint32_t* links(uint32_t node, int level) {
    return level == 0 ? links0_.get() + std::size_t(node) * words0()
                      : upper_[node].get() + std::size_t(level - 1) * words_up();
  }
  const uint32_t* links(uint32_t node, int level) const {
    return level == 0 ? links0_.get() + std::size_t(node) * words0()
                      : upper_[node].get() + std::size_t(level - 1) * words_up();
  }
  int max_links(int level) const { return level == 0 ? 2 * p_.M : p_.M; }

  static constexpr std::size_t kMaxLinks = 2 * 256;  // level-0 links at the largest M
  // Distance from a query (fp32 / bits) to a node, and to m <= kMaxLinks nodes at once.
  float dist(const void* q, uint32_t node) const;
  void dists(const void* q, const uint32_t* nodes, std::size_t m, float* out) const;
  // The query form of a stored node (its row decoded to fp32 in `buf`, or the row itself).
  const void* as_query(uint32_t node, std::vector<float>& buf) const;
  int draw_level();
  // Greedy descent from level `from` down to level `to` + 1: cur / dcur move to the closest
  // node found on each level (kLocked: reading each list under its node's lock, during a build).
  template <bool kLocked>
  void descend(const void* q, uint32_t& cur, float& dcur, int from, int to) const;
  void insert(uint32_t node);
  template <bool kLocked>
  void search_layer(const void* q, uint32_t ep, float ep_dist, int ef, int level, const uint8_t* deleted,
                    Heap& top) const;
  // Keeps at most m of the candidates (sorted ascending by distance to the base) by the HNSW
  // heuristic: a candidate closer to a kept one than to the base is dropped.
  void select_neighbors(Heap& sorted, int m, std::vector<float>& buf) const;
  void connect(uint32_t node, const Heap& neighbors, int level, std::vector<float>& buf);

  std::size_t dim_;
  Metric metric_;
  ScalarType storage_;
  HnswParams p_;
  std::size_t row_bytes_;
  double level_mult_;
  ScanFn scan_ = nullptr;
  GatherFn gather_ = nullptr;
  ScanBitsFn hamming_ = nullptr;
  DecodeFn decode_ = nullptr;

  std::size_t n_ = 0, capacity_ = 0;
  std::unique_ptr<uint8_t[]> rows_mem_;
  uint8_t* rows_ = nullptr;  // rows_mem_ aligned to 64 bytes
  std::unique_ptr<uint32_t[]> links0_;
  std::vector<std::unique_ptr<uint32_t[]>> upper_;
  std::vector<uint8_t> levels_;
  std::unique_ptr<std::mutex[]> locks_;
  std::mutex global_;
  int max_level_ = -1;
  uint32_t entry_ = 0;
  uint64_t rng_state_;
  std::unique_ptr<VisitedPool> visited_;
};

}  // namespace hive::gpu::cpu
