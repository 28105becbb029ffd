// CUDA backend: search of a fixed-degree proximity graph, one thread block per query (the
// single-CTA scheme of CAGRA). GraphIndex's search (cuda_graph_store.cpp); its batch insertion
// also finds a new node's neighbours with it.
#pragma once
#include <cstddef>
#include <cstdint>

#include "backends/cuda/gpu_runtime.hpp"
#include "hive_gpu/types.hpp"

namespace hive::gpu::HIVE_GPU_DEVICE_NS {

inline constexpr uint32_t kNoNode = 0xffffffffu;
inline constexpr int kGraphMaxDegree = 64;
inline constexpr int kGraphMaxItopk = 1024;
inline constexpr int kGraphMaxFresh = 256;  // search_width x degree

// Device pointers. base: n fp32 rows of dim (Cosine rows normalised); graph: n x degree node
// indices (kNoNode pads a short list); queries: nq fp32 rows.
struct GraphSearchArgs {
  const float* base = nullptr;
  std::size_t n = 0, dim = 0;
  Metric metric = Metric::L2;  // L2, InnerProduct, Cosine, L1 or Linf
  const uint32_t* graph = nullptr;
  int degree = 0;              // 1 .. kGraphMaxDegree
  const float* queries = nullptr;
  std::size_t nq = 0;
  std::size_t first_query = 0;  // the batch position of queries[0] (it seeds the start nodes)
  int k = 0;                   // 1 .. itopk
  int itopk = 64;              // a power of two in 16 .. 1024: the sorted candidate list kept per query
  int search_width = 1;        // entries expanded per iteration: 1 .. 4 (search_width x degree <= 256)
  int max_iterations = 0;      // 0: no limit but the list's convergence (every entry expanded)
  int seeds = 32;              // random start nodes per query, 0 .. itopk
  const uint32_t* entries = nullptr;  // entry points every query scores first (may be null)
  // An fp16 copy of base (n x dim, IEEE binary16) to traverse with, or null: fp32 throughout.
  // With it, the best min(itopk, max(2 k, 32)) entries are re-scored from base at the end.
  const void* rows16 = nullptr;
  // Or uint8 codes of base (n x dim; code = (x - lo[j]) / scale[j], clamped to 0..255) with lo
  // and scale (dim floats each, device) and, for L2, code_norms (n floats: sum_j (scale[j] c_j)^2):
  // the same re-scoring at the end. L2, InnerProduct and Cosine only: each block turns its query
  // into 16-bit integer weights and scores a row by integer dot products with its codes (dp4a).
  const uint8_t* rows8 = nullptr;
  const float* lo = nullptr;
  const float* scale = nullptr;
  const float* code_norms = nullptr;
  int n_entries = 0;
  uint64_t seed = 1;           // of the start nodes (the same seed, the same results)
  const uint32_t* deleted = nullptr;  // bitmap over nodes (may be null): routed through, never returned
  float* distances = nullptr;  // nq x k, in the kernels' convention (smaller is better)
  uint32_t* nodes = nullptr;   // nq x k; kNoNode where fewer than k nodes were reached
};

// Each query: start from `seeds` pseudo-random nodes, then repeatedly expand the best
// `search_width` entries of its sorted list not yet expanded: their neighbours not seen before
// (a hash of visited nodes in shared memory) are scored and merged into the list, which keeps
// the itopk best. Stops when every entry of the list has been expanded (or after
// max_iterations). Results skip deleted nodes. Enqueues on stream; throws
// Error(InvalidArgument) for arguments out of range.
void launch_graph_search(const GraphSearchArgs& a, cudaStream_t stream);

}  // namespace hive::gpu::HIVE_GPU_DEVICE_NS
