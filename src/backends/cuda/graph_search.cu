// CUDA backend: graph search, one block per query (see graph_search.hpp).
//
// Shared memory per block: the query, the candidate list as 64-bit keys (the score's order in
// the high half, as the select kernels' keys; the node in the low 31 bits, bit 31 marking an
// entry already expanded) and an open-addressing hash of the nodes seen. The list is kept
// sorted: slots [0, itopk) are the best so far, the next search_width x degree slots receive an
// iteration's new neighbours, and a bitonic sort of the whole list merges them.
#include <algorithm>
#include <string>

#include "backends/cuda/cuda_common.hpp"
#include "backends/cuda/device_util.cuh"
#include "backends/cuda/graph_search.hpp"
#include "hive_gpu/error.hpp"

namespace hive::gpu::HIVE_GPU_DEVICE_NS {
namespace {

using namespace dev;

constexpr int kGsThreads = 128;
constexpr uint32_t kHashSlots = 8192;  // visited nodes a query can hold (32 KiB)
constexpr int kHashProbes = 32;        // a full neighbourhood of the table counts as visited
constexpr int kIterationCap = 1024;    // max_iterations = 0: the list converges well before
constexpr uint64_t kExpanded = uint64_t(1) << 31;
constexpr uint32_t kNodeMask = 0x7fffffffu;

// Inserts node into the visited hash; false when it was there already (or no slot was free
// within kHashProbes: treated as seen, so a crowded table only narrows the search).
__device__ __forceinline__ bool first_visit(uint32_t* table, uint32_t node) {
  uint32_t h = (node * 0x9e3779b1u) & (kHashSlots - 1);
  for (int p = 0; p < kHashProbes; ++p) {
    const uint32_t old = atomicCAS(table + h, kNoNode, node);
    if (old == kNoNode) return true;
    if (old == node) return false;
    h = (h + 1) & (kHashSlots - 1);
  }
  return false;
}

__device__ __forceinline__ uint64_t splitmix(uint64_t z) {
  z += 0x9e3779b97f4a7c15ull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// Ascending bitonic sort of len (a power of two) keys by the whole block.
__device__ __forceinline__ void block_sort(uint64_t* keys, int len) {
  for (int size = 2; size <= len; size <<= 1) {
    for (int stride = size >> 1; stride > 0; stride >>= 1) {
      for (int i = int(threadIdx.x); i < len / 2; i += kGsThreads) {
        const int lo = 2 * i - (i & (stride - 1)), hi = lo + stride;
        const bool asc = (lo & size) == 0;
        const uint64_t x = keys[lo], y = keys[hi];
        if ((x > y) == asc) {
          keys[lo] = y;
          keys[hi] = x;
        }
      }
      __syncthreads();
    }
  }
}

// Scores the nodes cand[0 .. count) (kNoNode: an empty slot) into keys out[0 .. count), a wave
// per node: lanes stride over the dimensions, then a butterfly reduction (every metric).
template <int W, Metric M>
__device__ __forceinline__ void score(const HwWave<W>& wv, const GraphSearchArgs& a, const float* q,
                                      const uint32_t* cand, int count, uint64_t* out) {
  constexpr int kWaves = kGsThreads / W;
  for (int s = int(threadIdx.x) / W; s < count; s += kWaves) {
    const uint32_t node = cand[s];
    if (node == kNoNode) {
      if (wv.lane() == 0) out[s] = kEmptyKey;
      continue;  // uniform across the wave
    }
    const float* x = a.base + std::size_t(node) * a.dim;
    float acc = 0.0f;
    for (std::size_t j = std::size_t(wv.lane()); j < a.dim; j += W) acc = step<M>(acc, q[j], __ldg(x + j));
    const float d = finish<M>(wave_reduce<M>(wv, acc));
    if (wv.lane() == 0) out[s] = isnan(d) ? kEmptyKey : (uint64_t(float_order(d)) << 32) | uint64_t(node);
  }
}

template <int W, Metric M>
__global__ void __launch_bounds__(kGsThreads) graph_search_kernel(const GraphSearchArgs a, int list_len, int max_iter) {
  if constexpr (wave_compiled<W>()) {
    extern __shared__ uint64_t smem[];
    uint64_t* keys = smem;                                            // list_len
    uint32_t* table = reinterpret_cast<uint32_t*>(keys + list_len);   // kHashSlots
    float* q = reinterpret_cast<float*>(table + kHashSlots);          // dim
    __shared__ uint32_t cand[kGraphMaxItopk];
    __shared__ int parents[4];
    __shared__ int nparents;
    const HwWave<W> wv;
    const int tid = int(threadIdx.x);
    const std::size_t qi = blockIdx.x;
    for (std::size_t j = std::size_t(tid); j < a.dim; j += kGsThreads) q[j] = a.queries[qi * a.dim + j];
    for (uint32_t j = uint32_t(tid); j < kHashSlots; j += kGsThreads) table[j] = kNoNode;
    for (int j = tid; j < list_len; j += kGsThreads) keys[j] = kEmptyKey;
    __syncthreads();
    // Start nodes: pseudo-random, fixed by (seed, query, i); a repeat counts once.
    for (int i = tid; i < a.seeds; i += kGsThreads) {
      const uint32_t node = uint32_t(splitmix(a.seed ^ (uint64_t(qi) << 20) ^ uint64_t(i)) % a.n);
      cand[i] = first_visit(table, node) ? node : kNoNode;
    }
    __syncthreads();
    score<W, M>(wv, a, q, cand, a.seeds, keys);
    __syncthreads();
    block_sort(keys, list_len);
    for (int it = 0; it < max_iter; ++it) {
      // Wave 0 finds the first search_width entries not yet expanded (ballots over the list).
      if (tid < W) {
        int found = 0;
        for (int b0 = 0; b0 < a.itopk && found < a.search_width; b0 += W) {
          const int j = b0 + wv.lane();
          const uint64_t key = j < a.itopk ? keys[j] : kEmptyKey;
          auto m = wv.ballot(key != kEmptyKey && (key & kExpanded) == 0);
          for (; m != 0 && found < a.search_width; ++found) {
            if (wv.lane() == 0) parents[found] = b0 + HwWave<W>::lowest(m);
            m &= m - 1;
          }
        }
        if (wv.lane() == 0) nparents = found;
      }
      __syncthreads();
      const int np = nparents;
      if (np == 0) break;  // every entry expanded: converged (uniform)
      const int fresh = np * a.degree;
      for (int j = tid; j < fresh; j += kGsThreads) {
        const uint32_t parent = uint32_t(keys[parents[j / a.degree]]) & kNodeMask;
        const uint32_t nb = a.graph[std::size_t(parent) * std::size_t(a.degree) + std::size_t(j % a.degree)];
        cand[j] = (nb < a.n && first_visit(table, nb)) ? nb : kNoNode;
      }
      for (int j = a.itopk + fresh + tid; j < list_len; j += kGsThreads) keys[j] = kEmptyKey;
      __syncthreads();
      if (tid < np) keys[parents[tid]] |= kExpanded;
      score<W, M>(wv, a, q, cand, fresh, keys + a.itopk);
      __syncthreads();
      block_sort(keys, list_len);
    }
    for (int j = tid; j < a.k; j += kGsThreads) {
      const uint64_t key = keys[j];
      const std::size_t o = qi * std::size_t(a.k) + std::size_t(j);
      a.nodes[o] = key == kEmptyKey ? kNoNode : uint32_t(key) & kNodeMask;
      a.distances[o] = key == kEmptyKey ? __int_as_float(0x7f800000) : key_score(key & ~kExpanded);
    }
  }
}

}  // namespace

void launch_graph_search(const GraphSearchArgs& a, cudaStream_t stream) {
  auto bad = [](const std::string& why) { return Error(ErrorCode::InvalidArgument, "graph search: " + why); };
  if (a.nq == 0) return;
  if (a.n == 0 || a.n > std::size_t(kNodeMask)) throw bad("the graph must hold 1 .. 2^31 - 1 nodes");
  if (a.degree < 1 || a.degree > kGraphMaxDegree) throw bad("degree " + std::to_string(a.degree) + " out of 1..64");
  if (a.itopk != 32 && a.itopk != 64 && a.itopk != 128 && a.itopk != 256)
    throw bad("itopk " + std::to_string(a.itopk) + " is not 32, 64, 128 or 256");
  if (a.k < 1 || a.k > a.itopk) throw bad("k " + std::to_string(a.k) + " out of 1..itopk");
  if (a.seeds < 1 || a.seeds > a.itopk) throw bad("seeds " + std::to_string(a.seeds) + " out of 1..itopk");
  if (a.metric == Metric::Hamming) throw bad("Hamming graphs are not supported");
  if (a.search_width < 1 || a.search_width > 4 || a.search_width * a.degree > kGraphMaxItopk)
    throw bad("search_width " + std::to_string(a.search_width) + " out of 1..4 (and width x degree <= 256)");
  if (a.nq > 0x7fffffffu) throw bad("too many queries in one launch");
  int list_len = 1;
  while (list_len < a.itopk + a.search_width * a.degree) list_len <<= 1;
  const std::size_t smem = std::size_t(list_len) * 8 + kHashSlots * 4 + a.dim * 4;
  if (smem > 48 * 1024) throw bad("dim " + std::to_string(a.dim) + " leaves no room in shared memory");
  const int max_iter = a.max_iterations > 0 ? a.max_iterations : kIterationCap;
  with_wave([&]<int W>() {
    switch (a.metric) {
      case Metric::L2:
        graph_search_kernel<W, Metric::L2><<<unsigned(a.nq), kGsThreads, smem, stream>>>(a, list_len, max_iter);
        break;
      case Metric::InnerProduct:
        graph_search_kernel<W, Metric::InnerProduct><<<unsigned(a.nq), kGsThreads, smem, stream>>>(a, list_len,
                                                                                                    max_iter);
        break;
      case Metric::Cosine:
        graph_search_kernel<W, Metric::Cosine><<<unsigned(a.nq), kGsThreads, smem, stream>>>(a, list_len, max_iter);
        break;
      case Metric::L1:
        graph_search_kernel<W, Metric::L1><<<unsigned(a.nq), kGsThreads, smem, stream>>>(a, list_len, max_iter);
        break;
      case Metric::Linf:
        graph_search_kernel<W, Metric::Linf><<<unsigned(a.nq), kGsThreads, smem, stream>>>(a, list_len, max_iter);
        break;
      case Metric::Hamming: break;
    }
  });
  check(cudaGetLastError(), "graph search kernel launch");
}

}  // namespace hive::gpu::HIVE_GPU_DEVICE_NS
