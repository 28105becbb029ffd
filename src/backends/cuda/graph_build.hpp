// CUDA backend: the kernels of the GPU graph build (issue 7; the plan is in docs/design.md).
//
// The build makes a k-NN graph of `intermediate` neighbours per node from overlapping k-means
// clusters (every node joins its two nearest clusters; each cluster's all-pairs distances are
// one matrix product and one top-k selection), then prunes it CAGRA's way: an edge X->Y that a
// two-hop route X->Z->Y with both hops ranked before it can replace is "detourable", and each
// node keeps the `degree` edges with the fewest detours; finally reverse edges replace the back
// half of every list. Batch insertion searches the graph for each new node's neighbours, prunes
// them the same way against the existing lists and links the new node into the back of its
// neighbours' lists. Host orchestration: cuda_graph_store.cpp.
#pragma once
#include <cstddef>
#include <cstdint>

#include "backends/cuda/gpu_runtime.hpp"
#include "hive_gpu/types.hpp"

namespace hive::gpu::HIVE_GPU_DEVICE_NS {

// Lists longer than this cannot be pruned (the pruning kernel holds one in shared memory).
inline constexpr int kPruneMaxList = 128;

// For each of nrows score rows (scores[r * ld + c], c < ncols, dot products), the two columns
// with the smallest norms[c] - 2 score (L2 to centroid c, less the row's own norm): labels[2r]
// and labels[2r + 1] (0xffffffff where ncols == 1); margins (may be null): the second's squared
// distance less the first's.
void launch_nearest_two(const float* scores, std::size_t ld, std::size_t nrows, std::size_t ncols,
                        const float* norms, uint32_t* labels, float* margins, cudaStream_t stream);

// k-means update: sums[label[2i]] += rows[i], counts[label[2i]] += 1 for i < n (sums and counts
// zeroed by the caller); then centroids[c] = sums[c] / counts[c] where counts[c] > 0.
void launch_centroid_sums(const float* rows, std::size_t n, std::size_t dim, const uint32_t* labels, float* sums,
                          uint32_t* counts, cudaStream_t stream);
void launch_centroid_divide(const float* sums, const uint32_t* counts, std::size_t nlist, std::size_t dim,
                            float* centroids, cudaStream_t stream);

// Cluster results to per-node candidates: for i < nq and j < width, keys[i * keys_ld + j] has
// a member position (its low half) and a score; members[first + i] is the query node (bit 31:
// its second cluster) and members[pos] the neighbour. Writes the key, its low half replaced by
// the neighbour's node, to cand[node * 2 width + slot * width + j].
void launch_scatter_candidates(const uint64_t* keys, std::size_t keys_ld, std::size_t nq, int width,
                               const uint32_t* members, std::size_t member_base, std::size_t first, uint64_t* cand,
                               cudaStream_t stream);

// Each node's 2 width candidates: sorted, duplicates and the node itself dropped, the best K
// node numbers written to knn[node * K ...] (0xffffffff past the last).
void launch_merge_candidates(const uint64_t* cand, std::size_t n, int width, int K, uint32_t* knn,
                             cudaStream_t stream);

// CAGRA rank pruning. Node x (x < n) has the ranked list lists[x * ld_lists ...] of len entries
// (0xffffffff: none); neighbour z's own ranked list is others[z * ld_others ...] (len_others).
// Edge x->y at rank r is detourable via z at rank i < r when y sits in z's list at rank j < r.
// Writes the degree entries with the fewest detours (ties: lower rank first) to
// out[(x + out_first) * ld_out ...].
void launch_prune(const uint32_t* lists, std::size_t ld_lists, int len, std::size_t n, const uint32_t* others,
                  std::size_t ld_others, int len_others, int degree, uint32_t* out, std::size_t ld_out,
                  std::size_t out_first, cudaStream_t stream);

// Reverse edges of a pruned graph (n x degree): for each rank p in turn, y = pruned[x][p] gets x
// appended to rev[y] (at most degree, counted in rev_count, zeroed by the caller).
void launch_reverse_edges(const uint32_t* pruned, std::size_t n, int degree, uint32_t* rev, uint32_t* rev_count,
                          cudaStream_t stream);

// The final lists: the first half of each pruned list, then its reverse edges (at most half a
// list), then the rest of the pruned list, without repeats, padded with 0xffffffff.
void launch_merge_graph(const uint32_t* pruned, const uint32_t* rev, const uint32_t* rev_count, std::size_t n,
                        int degree, uint32_t* graph, cudaStream_t stream);

// One step of farthest-first traversal over ns sample rows (L2): the centre is row 0 at step 0,
// else the row of best[step - 1]; mind[i] becomes min(mind[i], |row i - centre|^2) (mind starts
// at a huge value) and best[step] (zeroed by the caller) the key (distance order, row) of the
// farthest row. After E steps the centres cover the data: a new one always lands in the region
// the earlier ones serve worst (so every well-separated cluster gets one).
void launch_farthest_step(const float* sample, std::size_t ns, std::size_t dim, float* mind, uint64_t* best,
                          int step, cudaStream_t stream);

// Per-dimension ranges of rows [0, n) (fp32, n x dim): mins[j] / maxs[j] receive the extreme
// values' order keys (the select kernels' float_order; the caller sets mins to 0xffffffff and
// maxs to 0, and maps them back with order_to_float).
void launch_row_ranges(const float* rows, std::size_t n, std::size_t dim, uint32_t* mins, uint32_t* maxs,
                       cudaStream_t stream);
inline float order_to_float(uint32_t o) {
  const uint32_t u = (o & 0x80000000u) ? (o & 0x7fffffffu) : ~o;
  float f;
  static_assert(sizeof f == sizeof u);
  __builtin_memcpy(&f, &u, sizeof f);
  return f;
}
// uint8 codes of n rows: out = clamp(round((x - lo[j]) / scale[j]), 0, 255), and each row's
// norms[r] = sum_j (scale[j] code_j)^2 (graph search's uint8 traversal scores L2 with it).
void launch_encode_u8(const float* rows, std::size_t n, std::size_t dim, const float* lo, const float* scale,
                      uint8_t* out, float* norms, cudaStream_t stream);

// Batch insertion: new nodes first .. first + m - 1 already have their lists in graph; each of
// the first half of a new node's neighbours y < first gets the new node written over the back
// of its list (from the last slot forward, at most half a list per batch; taken[y] counts,
// zeroed by the caller).
void launch_link_back(uint32_t* graph, int degree, std::size_t first, std::size_t m, uint32_t* taken,
                      cudaStream_t stream);

}  // namespace hive::gpu::HIVE_GPU_DEVICE_NS
