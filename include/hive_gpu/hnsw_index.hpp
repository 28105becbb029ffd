// hive-gpu: approximate search on a hierarchical navigable small-world graph (HNSW, Malkov &
// Yashunin), on the CPU backend. Same Index contract as FlatIndex: ids, soft delete (deleted
// vectors still route searches but are never returned), upsert, compaction, save/load.
#pragma once
#include <cstdint>
#include <memory>
#include <string>

#include "hive_gpu/context.hpp"
#include "hive_gpu/index.hpp"

namespace hive::gpu {

namespace detail {
struct HnswAccess;  // GraphIndex's files (src/core/hnsw_access.hpp)
}

struct HnswOptions {
  // Links per node above level 0 (2 M at level 0). 2 .. 256.
  int M = 16;
  // Candidate list of an insertion: larger builds a better graph, slower.
  int ef_construction = 200;
  // Candidate list of a search (raised to k when smaller); set_ef_search() changes it.
  int ef_search = 64;
  // Encoding of stored vectors: F32, F16 or BF16 (Hamming indexes store Bits).
  ScalarType storage = ScalarType::F32;
  // Seed of the level draws: the same seed and insertion order give the same graph when
  // vectors are added one thread at a time (multi-threaded adds depend on the schedule).
  uint64_t seed = 100;
};

class HnswIndex final : public Index {
 public:
  // dim: vector length (bits for Hamming, a multiple of 8). Throws InvalidArgument for a bad
  // dim or option, Unsupported for a context that is not the CPU backend's.
  HnswIndex(const Context& ctx, std::size_t dim, Metric metric, HnswOptions options = {});
  HnswIndex(std::size_t dim, Metric metric, HnswOptions options = {});
  ~HnswIndex() override;
  HnswIndex(HnswIndex&&) noexcept;
  HnswIndex& operator=(HnswIndex&&) noexcept;

  // Reads a file written by save() (graph included: no rebuild). Throws Io, CorruptFile or
  // VersionMismatch.
  static HnswIndex load(const std::string& path);

  std::size_t dim() const override;
  Metric metric() const override;
  ScalarType storage() const override;
  std::size_t size() const override;
  const HnswOptions& options() const;
  const Context& context() const;

  // The search candidate list (>= 1); searches use max(ef_search, k).
  void set_ef_search(int ef);
  int ef_search() const;

  using Index::add;
  using Index::add_with_ids;
  using Index::search;
  using Index::upsert;
  using Index::remove;
  // Batches are inserted by every thread of the CPU pool (HIVE_GPU_NUM_THREADS).
  void add(std::size_t n, const float* x) override;
  void add_with_ids(std::size_t n, const float* x, const int64_t* ids) override;
  void upsert(std::size_t n, const float* x, const int64_t* ids) override;
  void search(std::size_t nq, const float* q, int k, float* distances, int64_t* ids) const override;
  // The same with this call's candidate list instead of ef_search().
  void search(std::size_t nq, const float* q, int k, float* distances, int64_t* ids, int ef) const;
  void add(std::size_t n, const uint8_t* bits) override;
  void add_with_ids(std::size_t n, const uint8_t* bits, const int64_t* ids) override;
  void upsert(std::size_t n, const uint8_t* bits, const int64_t* ids) override;
  void search(std::size_t nq, const uint8_t* q, int k, float* distances, int64_t* ids) const override;
  void search(std::size_t nq, const uint8_t* q, int k, float* distances, int64_t* ids, int ef) const;

  std::size_t remove(std::size_t n, const int64_t* ids) override;
  bool contains(int64_t id) const override;
  std::vector<float> get(int64_t id) const override;
  std::vector<uint8_t> get_bits(int64_t id) const override;
  std::vector<int64_t> ids() const override;
  int64_t next_id() const override;

  void reserve(std::size_t n) override;
  // Rebuilds the graph from the live vectors (ids kept): deleted nodes stop costing memory
  // and search time.
  void compact() override;
  void reset() override;
  void save(const std::string& path) const override;

  // Nodes in the graph, deleted ones included.
  std::size_t stored_rows() const;
  // The top level of the graph (-1 when empty).
  int max_level() const;

 private:
  friend struct detail::HnswAccess;
  struct State;
  std::unique_ptr<State> s_;
  explicit HnswIndex(std::unique_ptr<State> s);
};

}  // namespace hive::gpu
