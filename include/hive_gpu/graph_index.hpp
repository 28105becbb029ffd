// hive-gpu: approximate search on a fixed-degree proximity graph built and searched on the GPU
// (CUDA, or HIP on AMD), after cuVS's CAGRA: a k-NN graph from overlapping k-means clusters,
// pruned by rank-based detours, with reverse edges; searched with one thread block per query.
// Same Index contract as FlatIndex and HnswIndex. Its files are HNSW files of one level:
// HnswIndex::load opens them on the CPU, and GraphIndex::load opens HnswIndex's files (their
// level 0 becomes the graph).
#pragma once
#include <cstdint>
#include <memory>
#include <string>

#include "hive_gpu/context.hpp"
#include "hive_gpu/index.hpp"

namespace hive::gpu {

struct GraphSearchParams {
  // Sorted candidate list per query: a power of two in 16 .. 1024, raised to cover k. Larger
  // finds more of the true neighbours, slower.
  int itopk = 64;
  // List entries expanded per iteration (1 .. 4): more work per step, fewer steps.
  int search_width = 1;
  // 0: until every list entry has been expanded; else at most this many iterations.
  int max_iterations = 0;
};

struct GraphOptions {
  // Links per node: even, 4 .. 64.
  int graph_degree = 32;
  // Neighbours per node before pruning: graph_degree .. 128.
  int intermediate_degree = 64;
  GraphSearchParams search;
  // Seed of the build's sampling and of the searches' start nodes (same seed, same results).
  uint64_t seed = 1;
  // A caller's cudaStream_t / hipStream_t for every device operation (null: the index's own).
  void* stream = nullptr;
};

class GraphIndex final : public Index {
 public:
  // dim: vector length. Metrics: L2, InnerProduct, Cosine, L1, Linf (not Hamming). Throws
  // InvalidArgument for a bad dim or option, Unsupported for a context without a GPU graph
  // (the CPU: use HnswIndex there).
  GraphIndex(const Context& ctx, std::size_t dim, Metric metric, GraphOptions options = {});
  // On Context::open("auto").
  GraphIndex(std::size_t dim, Metric metric, GraphOptions options = {});
  ~GraphIndex() override;
  GraphIndex(GraphIndex&&) noexcept;
  GraphIndex& operator=(GraphIndex&&) noexcept;

  // Reads a file written by save() or HnswIndex::save (its level 0, at most 64 links per
  // node). Throws Io, CorruptFile, VersionMismatch, or Unsupported (a flat or Hamming file).
  static GraphIndex load(const std::string& path, const Context& ctx);
  static GraphIndex load(const std::string& path);

  std::size_t dim() const override;
  Metric metric() const override;
  ScalarType storage() const override;  // F32
  std::size_t size() const override;
  const GraphOptions& options() const;
  const Context& context() const;

  void set_search_params(const GraphSearchParams& p);
  GraphSearchParams search_params() const;

  using Index::add;
  using Index::add_with_ids;
  using Index::search;
  using Index::upsert;
  using Index::remove;
  // The first add builds the graph on the device; later adds insert their vectors in batches
  // (each new vector searches the graph for its neighbours) without a rebuild.
  void add(std::size_t n, const float* x) override;
  void add_with_ids(std::size_t n, const float* x, const int64_t* ids) override;
  void upsert(std::size_t n, const float* x, const int64_t* ids) override;
  void search(std::size_t nq, const float* q, int k, float* distances, int64_t* ids) const override;
  // The same with this call's parameters instead of search_params().
  void search(std::size_t nq, const float* q, int k, float* distances, int64_t* ids, const GraphSearchParams& p) const;

  std::size_t remove(std::size_t n, const int64_t* ids) override;
  bool contains(int64_t id) const override;
  std::vector<float> get(int64_t id) const override;
  std::vector<int64_t> ids() const override;
  int64_t next_id() const override;
  // The graph's links of a vector, as ids (deleted vectors still route: they appear as -1).
  std::vector<int64_t> neighbors(int64_t id) const;

  void reserve(std::size_t n) override;
  // Rebuilds the graph from the live vectors (ids kept).
  void compact() override;
  // Rebuilds the graph over every stored vector (after many batch insertions, say).
  void rebuild();
  void reset() override;
  void save(const std::string& path) const override;

  // Nodes in the graph, deleted ones included.
  std::size_t stored_rows() const;

 private:
  struct State;
  std::unique_ptr<State> s_;
  explicit GraphIndex(std::unique_ptr<State> s);
};

}  // namespace hive::gpu
