// Internal: the small interface each backend implements (one vtable per backend, as ggml).
// The backend-neutral FlatIndex (src/core/flat_index.cpp) owns ids, validation, deletes
// bookkeeping and file I/O; a backend only stores encoded rows and searches them.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "hive_gpu/device.hpp"
#include "hive_gpu/types.hpp"

namespace hive::gpu::detail {

struct StoreConfig {
  std::size_t dim = 0;  // elements per vector (bits for Hamming)
  Metric metric = Metric::L2;
  ScalarType storage = ScalarType::F32;  // Bits for Hamming
  void* stream = nullptr;                // FlatOptions::stream (GPU backends)
  std::size_t row_bytes() const { return hive::gpu::row_bytes(storage, dim); }
};

// Rows of one flat index on one device, in the storage encoding (fp32, IEEE fp16, bf16, or
// packed bits). Row numbers are dense 0..rows()-1; the core maps them to user ids.
class FlatStore {
 public:
  virtual ~FlatStore() = default;
  const StoreConfig& config() const { return cfg_; }

  // Appends n encoded rows (row_bytes() each). Strong guarantee: throws before changing
  // anything (OutOfMemory) or appends all of them.
  virtual void append(std::size_t n, const void* encoded) = 0;
  // Overwrites row `row` (< rows()) in place and clears its deleted mark.
  virtual void write_row(std::size_t row, const void* encoded) = 0;
  // Copies n encoded rows starting at `first` into out.
  virtual void read_rows(std::size_t first, std::size_t n, void* out) const = 0;
  // Deleted rows never appear in search results.
  virtual void set_deleted(std::size_t row, bool deleted) = 0;
  // Keeps the listed rows (ascending, all live) as rows 0..keep.size()-1; nothing is deleted
  // afterwards.
  virtual void compact(const std::vector<std::size_t>& keep) = 0;
  virtual void reserve(std::size_t rows) = 0;
  virtual void clear() = 0;
  virtual std::size_t rows() const = 0;

  // Exact k nearest live rows for nq queries. Queries are fp32 rows of dim (already
  // normalised for Cosine) or packed bits (Hamming). Writes nq x k values in the metric's
  // reported convention (see types.hpp), best first, and row numbers; unfilled slots get
  // row -1 and the worst value. 1 <= k <= kMaxK is checked by the caller.
  virtual void search(std::size_t nq, const void* queries, int k, float* distances,
                      int64_t* rows) const = 0;

 protected:
  explicit FlatStore(StoreConfig cfg) : cfg_(cfg) {}
  StoreConfig cfg_;
};

struct GraphConfig {
  std::size_t dim = 0;
  Metric metric = Metric::L2;         // every float metric
  int degree = 32;                    // links per node
  int intermediate_degree = 64;       // the k-NN list each node's links are pruned from
  uint64_t seed = 1;                  // of the build's sampling and the searches' start nodes
  void* stream = nullptr;             // a caller's stream (GPU backends)
};

struct GraphSearchConfig {
  int itopk = 64;           // sorted candidate list per query (a power of two, >= k)
  int search_width = 1;     // list entries expanded per iteration
  int max_iterations = 0;   // 0: until every list entry has been expanded
};

// Rows and links of one graph index on one device. Node i is row i; nodes [0, linked()) are in
// the graph, later rows wait for build() or extend(). Rows are fp32 (normalised for Cosine).
class GraphStore {
 public:
  virtual ~GraphStore() = default;
  const GraphConfig& config() const { return cfg_; }

  // Appends n rows as unlinked nodes; throws before changing anything or appends them all.
  virtual void append(std::size_t n, const float* rows) = 0;
  virtual std::size_t rows() const = 0;
  virtual std::size_t linked() const = 0;
  // Builds the graph over every row from scratch.
  virtual void build() = 0;
  // Batch insertion: links rows [linked(), rows()) into the graph without a rebuild.
  virtual void extend() = 0;
  virtual void set_deleted(std::size_t row, bool deleted) = 0;
  virtual void read_rows(std::size_t first, std::size_t n, float* out) const = 0;
  // rows() x degree links (0xffffffff: none); requires linked() == rows().
  virtual void read_graph(uint32_t* out) const = 0;
  // Nodes every search starts from (chosen at build time), for files' upper level.
  virtual std::vector<uint32_t> entry_points() const { return {}; }
  // Replaces everything by n rows and their links (n x degree, every link < n or 0xffffffff).
  virtual void load(std::size_t n, const float* rows, const uint32_t* graph) = 0;
  virtual void clear() = 0;
  // The k best live linked nodes of each query (fp32, normalised for Cosine), best first, in
  // the metric's reported convention; row -1 and the worst value where fewer were reached.
  virtual void search(std::size_t nq, const float* queries, int k, const GraphSearchConfig& p, float* distances,
                      int64_t* rows) const = 0;

 protected:
  explicit GraphStore(GraphConfig cfg) : cfg_(cfg) {}
  GraphConfig cfg_;
};

// One device of one backend.
class Device {
 public:
  virtual ~Device() = default;
  virtual const DeviceInfo& info() const = 0;
  // Throws Unsupported where the device cannot hold this configuration (e.g. bf16 on a
  // backend without it).
  virtual std::unique_ptr<FlatStore> make_flat_store(const StoreConfig& cfg) = 0;
  // A GPU-built graph (GraphIndex); backends without one throw Unsupported.
  virtual std::unique_ptr<GraphStore> make_graph_store(const GraphConfig& cfg);
};

// A backend: finds its devices once, on first use.
class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string name() const = 0;
  // Higher is preferred by Context::open("auto") (GPU backends above the CPU).
  virtual int priority() const = 0;
  virtual BackendStatus status() = 0;
  virtual std::vector<std::shared_ptr<Device>> devices() = 0;
};

// Every backend this build knows of: compiled-in ones, plus placeholders reporting
// "not compiled in" for the others, in priority order. Built once, thread-safe.
const std::vector<std::unique_ptr<Backend>>& registry();

// Factories of the compiled-in backends (defined in each backend's directory).
std::unique_ptr<Backend> make_cpu_backend();
#ifdef HIVE_GPU_WITH_CUDA
std::unique_ptr<Backend> make_cuda_backend();
#endif
#ifdef HIVE_GPU_WITH_HIP
std::unique_ptr<Backend> make_hip_backend();
#endif
#ifdef HIVE_GPU_WITH_VULKAN
std::unique_ptr<Backend> make_vulkan_backend();
#endif

}  // namespace hive::gpu::detail
