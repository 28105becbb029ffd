// CUDA backend: graph build kernels (see graph_build.hpp). None of them is on a search path;
// they favour plain code over the last few percent.
#include <algorithm>

#include "backends/cuda/cuda_common.hpp"
#include "backends/cuda/device_util.cuh"
#include "backends/cuda/graph_build.hpp"
#include "backends/cuda/kernels.hpp"

namespace hive::gpu::HIVE_GPU_DEVICE_NS {
namespace {

using namespace dev;

constexpr uint32_t kNone = 0xffffffffu;
constexpr uint32_t kSecondSlot = 0x80000000u;

unsigned blocks_for(std::size_t work, int threads) {
  return unsigned(std::min<std::size_t>((work + std::size_t(threads) - 1) / std::size_t(threads), 65535u * 16u));
}

// One wave per row: each lane keeps its best two, then the wave merges them lane by lane.
template <int W>
__global__ void nearest_two_kernel(const float* scores, std::size_t ld, std::size_t nrows, std::size_t ncols,
                                   const float* norms, uint32_t* labels, float* margins) {
  if constexpr (wave_compiled<W>()) {
    const HwWave<W> wv;
    const std::size_t waves = std::size_t(gridDim.x) * blockDim.x / W;
    for (std::size_t r = (std::size_t(blockIdx.x) * blockDim.x + threadIdx.x) / W; r < nrows; r += waves) {
      uint64_t b0 = kEmptyKey, b1 = kEmptyKey;
      for (std::size_t c = std::size_t(wv.lane()); c < ncols; c += W) {
        const uint64_t key = make_key(__fsub_rn(norms[c], 2.0f * scores[r * ld + c]), uint32_t(c));
        if (key < b0) {
          b1 = b0;
          b0 = key;
        } else if (key < b1) {
          b1 = key;
        }
      }
      for (int m = W / 2; m > 0; m >>= 1) {
        const uint64_t o0 = wv.shfl_xor(b0, m), o1 = wv.shfl_xor(b1, m);
        // The best two of {b0, b1, o0, o1} (each pair sorted).
        const uint64_t lo = b0 < o0 ? b0 : o0;
        const uint64_t hi = b0 < o0 ? (b1 < o0 ? b1 : o0) : (o1 < b0 ? o1 : b0);
        b0 = lo;
        b1 = hi;
      }
      if (wv.lane() == 0) {
        labels[2 * r] = b0 == kEmptyKey ? 0u : key_row(b0);
        labels[2 * r + 1] = b1 == kEmptyKey ? kNone : key_row(b1);
        if (margins != nullptr)
          margins[r] = (b0 == kEmptyKey || b1 == kEmptyKey) ? __int_as_float(0x7f800000) : key_score(b1) - key_score(b0);
      }
    }
  }
}

__global__ void centroid_sums_kernel(const float* rows, std::size_t n, std::size_t dim, const uint32_t* labels,
                                     float* sums, uint32_t* counts) {
  const std::size_t total = n * dim, stride = std::size_t(gridDim.x) * blockDim.x;
  for (std::size_t t = std::size_t(blockIdx.x) * blockDim.x + threadIdx.x; t < total; t += stride) {
    const std::size_t i = t / dim, j = t % dim;
    const uint32_t c = labels[2 * i];
    atomicAdd(sums + std::size_t(c) * dim + j, rows[t]);
    if (j == 0) atomicAdd(counts + c, 1u);
  }
}

__global__ void centroid_divide_kernel(const float* sums, const uint32_t* counts, std::size_t nlist, std::size_t dim,
                                       float* centroids) {
  const std::size_t total = nlist * dim, stride = std::size_t(gridDim.x) * blockDim.x;
  for (std::size_t t = std::size_t(blockIdx.x) * blockDim.x + threadIdx.x; t < total; t += stride) {
    const uint32_t cnt = counts[t / dim];
    if (cnt > 0) centroids[t] = sums[t] / float(cnt);  // an empty cluster keeps its centroid
  }
}

__global__ void scatter_candidates_kernel(const uint64_t* keys, std::size_t keys_ld, std::size_t nq, int width,
                                          const uint32_t* members, std::size_t member_base, std::size_t first,
                                          uint64_t* cand) {
  const std::size_t total = nq * std::size_t(width), stride = std::size_t(gridDim.x) * blockDim.x;
  for (std::size_t t = std::size_t(blockIdx.x) * blockDim.x + threadIdx.x; t < total; t += stride) {
    const std::size_t i = t / std::size_t(width), j = t % std::size_t(width);
    const uint32_t m = members[first + i];
    const std::size_t node = m & ~kSecondSlot, slot = (m & kSecondSlot) ? 1 : 0;
    const uint64_t key = keys[i * keys_ld + j];
    uint64_t out = kEmptyKey;
    if (key != kEmptyKey) {
      const uint32_t nb = members[member_base + key_row(key)] & ~kSecondSlot;
      out = (key & 0xffffffff00000000ull) | uint64_t(nb);
    }
    cand[node * 2 * std::size_t(width) + slot * std::size_t(width) + j] = out;
  }
}

constexpr int kMergeThreads = 128;
constexpr int kMergeMax = 512;  // 2 width <= kMergeMax (width <= kPruneMaxList + 1 < 256)

// One block per node: bitonic sort in shared memory, then each entry checks the ones before it.
__global__ void __launch_bounds__(kMergeThreads)
    merge_candidates_kernel(const uint64_t* cand, std::size_t n, int width, int K, uint32_t* knn) {
  __shared__ uint64_t keys[kMergeMax];
  __shared__ uint8_t keep[kMergeMax];
  __shared__ int pos[kMergeMax];
  const int len2 = 2 * width;
  int len = 1;
  while (len < len2) len <<= 1;
  for (std::size_t node = blockIdx.x; node < n; node += gridDim.x) {
    for (int j = int(threadIdx.x); j < len; j += kMergeThreads)
      keys[j] = j < len2 ? cand[node * std::size_t(len2) + std::size_t(j)] : kEmptyKey;
    __syncthreads();
    for (int size = 2; size <= len; size <<= 1) {
      for (int stride = size >> 1; stride > 0; stride >>= 1) {
        for (int i = int(threadIdx.x); i < len / 2; i += kMergeThreads) {
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
    for (int j = int(threadIdx.x); j < len; j += kMergeThreads) {
      const uint64_t key = keys[j];
      bool k = key != kEmptyKey && key_row(key) != uint32_t(node);
      for (int i = 0; k && i < j; ++i) k = key_row(keys[i]) != key_row(key);
      keep[j] = k ? 1 : 0;
    }
    __syncthreads();
    // Output positions: a serial prefix count by one thread is enough for <= 512 entries.
    if (threadIdx.x == 0) {
      int c = 0;
      for (int j = 0; j < len; ++j) pos[j] = keep[j] ? c++ : -1;
    }
    __syncthreads();
    for (int j = int(threadIdx.x); j < K; j += kMergeThreads) knn[node * std::size_t(K) + std::size_t(j)] = kNone;
    __syncthreads();
    for (int j = int(threadIdx.x); j < len; j += kMergeThreads)
      if (pos[j] >= 0 && pos[j] < K) knn[node * std::size_t(K) + std::size_t(pos[j])] = key_row(keys[j]);
    __syncthreads();
  }
}

constexpr int kPruneThreads = 128;
constexpr int kPruneHash = 512;  // slots of the id -> rank table (> 2 kPruneMaxList)

__device__ __forceinline__ uint32_t prune_slot(uint32_t id) { return (id * 0x9e3779b1u) >> 23; }  // 9 bits

__global__ void __launch_bounds__(kPruneThreads)
    prune_kernel(const uint32_t* lists, std::size_t ld_lists, int len, std::size_t n, const uint32_t* others,
                 std::size_t ld_others, int len_others, int degree, uint32_t* out, std::size_t ld_out,
                 std::size_t out_first) {
  __shared__ uint32_t list[kPruneMaxList];
  __shared__ uint32_t detour[kPruneMaxList];
  __shared__ uint32_t table_id[kPruneHash];
  __shared__ int table_rank[kPruneHash];
  for (std::size_t x = blockIdx.x; x < n; x += gridDim.x) {
    for (int j = int(threadIdx.x); j < kPruneHash; j += kPruneThreads) table_id[j] = kNone;
    for (int j = int(threadIdx.x); j < len; j += kPruneThreads) {
      list[j] = lists[x * ld_lists + std::size_t(j)];
      detour[j] = 0;
    }
    __syncthreads();
    for (int r = int(threadIdx.x); r < len; r += kPruneThreads) {
      const uint32_t id = list[r];
      if (id == kNone) continue;
      for (uint32_t h = prune_slot(id);; h = (h + 1) & (kPruneHash - 1)) {
        const uint32_t old = atomicCAS(table_id + h, kNone, id);
        if (old == kNone) {
          table_rank[h] = r;
          break;
        }
        if (old == id) break;  // a repeat keeps its first rank
      }
    }
    __syncthreads();
    // Pairs (i, j): z = list[i], y = others[z][j]; only i < len - 1 can precede a later rank.
    const int pairs = (len - 1) * len_others;
    for (int p = int(threadIdx.x); p < pairs; p += kPruneThreads) {
      const int i = p / len_others, j = p % len_others;
      const uint32_t z = list[i];
      if (z == kNone) continue;
      const uint32_t y = others[std::size_t(z) * ld_others + std::size_t(j)];
      if (y == kNone) continue;
      for (uint32_t h = prune_slot(y);; h = (h + 1) & (kPruneHash - 1)) {
        const uint32_t id = table_id[h];
        if (id == kNone) break;
        if (id == y) {
          const int r = table_rank[h];
          if (i < r && j < r) atomicAdd(detour + r, 1u);
          break;
        }
      }
    }
    __syncthreads();
    for (int r = int(threadIdx.x); r < len; r += kPruneThreads) {
      if (list[r] == kNone) continue;
      const uint64_t mine = (uint64_t(detour[r]) << 32) | uint64_t(r);
      int before = 0;
      for (int s = 0; s < len; ++s)
        if (list[s] != kNone && ((uint64_t(detour[s]) << 32) | uint64_t(s)) < mine) ++before;
      if (before < degree) out[(x + out_first) * ld_out + std::size_t(before)] = list[r];
    }
    int valid = 0;
    for (int s = 0; s < len; ++s) valid += list[s] != kNone ? 1 : 0;
    for (int s = valid + int(threadIdx.x); s < degree; s += kPruneThreads)
      out[(x + out_first) * ld_out + std::size_t(s)] = kNone;
    __syncthreads();
  }
}

__global__ void reverse_edges_kernel(const uint32_t* pruned, std::size_t n, int degree, int p, uint32_t* rev,
                                     uint32_t* rev_count) {
  const std::size_t stride = std::size_t(gridDim.x) * blockDim.x;
  for (std::size_t x = std::size_t(blockIdx.x) * blockDim.x + threadIdx.x; x < n; x += stride) {
    const uint32_t y = pruned[x * std::size_t(degree) + std::size_t(p)];
    if (y == kNone || y >= n) continue;
    const uint32_t s = atomicAdd(rev_count + y, 1u);
    if (s < uint32_t(degree)) rev[std::size_t(y) * std::size_t(degree) + s] = uint32_t(x);
  }
}

constexpr int kMaxDegree = 64;

__device__ __forceinline__ bool holds(const uint32_t* o, int cnt, uint32_t y) {
  for (int i = 0; i < cnt; ++i)
    if (o[i] == y) return true;
  return false;
}

__global__ void merge_graph_kernel(const uint32_t* pruned, const uint32_t* rev, const uint32_t* rev_count,
                                   std::size_t n, int degree, uint32_t* graph) {
  const std::size_t stride = std::size_t(gridDim.x) * blockDim.x;
  for (std::size_t x = std::size_t(blockIdx.x) * blockDim.x + threadIdx.x; x < n; x += stride) {
    uint32_t o[kMaxDegree];
    int cnt = 0;
    const uint32_t* fwd = pruned + x * std::size_t(degree);
    const int half = degree / 2;
    for (int t = 0; t < half; ++t) {
      const uint32_t y = fwd[t];
      if (y != kNone && !holds(o, cnt, y)) o[cnt++] = y;
    }
    const int nr = int(min(rev_count[x], uint32_t(degree)));
    for (int t = 0, added = 0; t < nr && cnt < degree && added < degree - half; ++t) {
      const uint32_t y = rev[x * std::size_t(degree) + std::size_t(t)];
      if (y != kNone && y != uint32_t(x) && !holds(o, cnt, y)) {
        o[cnt++] = y;
        ++added;
      }
    }
    for (int t = half; t < degree && cnt < degree; ++t) {
      const uint32_t y = fwd[t];
      if (y != kNone && !holds(o, cnt, y)) o[cnt++] = y;
    }
    for (int t = 0; t < degree; ++t) graph[x * std::size_t(degree) + std::size_t(t)] = t < cnt ? o[t] : kNone;
  }
}

__global__ void link_back_kernel(uint32_t* graph, int degree, std::size_t first, std::size_t m, uint32_t* taken) {
  const int half = degree / 2;
  const std::size_t total = m * std::size_t(half), stride = std::size_t(gridDim.x) * blockDim.x;
  for (std::size_t t = std::size_t(blockIdx.x) * blockDim.x + threadIdx.x; t < total; t += stride) {
    const std::size_t x = first + t / std::size_t(half);
    const uint32_t y = graph[x * std::size_t(degree) + t % std::size_t(half)];
    if (y == kNone || y >= first) continue;
    const uint32_t s = atomicAdd(taken + y, 1u);
    if (s < uint32_t(degree - half)) graph[std::size_t(y) * std::size_t(degree) + std::size_t(degree - 1) - s] = uint32_t(x);
  }
}

template <int W>
__global__ void farthest_step_kernel(const float* sample, std::size_t ns, std::size_t dim, float* mind,
                                     unsigned long long* best, int round) {
  if constexpr (wave_compiled<W>()) {
    __shared__ unsigned long long block_best;
    if (threadIdx.x == 0) block_best = 0;
    __syncthreads();
    const HwWave<W> wv;
    const std::size_t centre = round == 0 ? 0 : std::size_t(best[round - 1] & 0xffffffffull);
    const float* c = sample + centre * dim;
    const std::size_t waves = std::size_t(gridDim.x) * blockDim.x / W;
    unsigned long long mine = 0;
    for (std::size_t r = (std::size_t(blockIdx.x) * blockDim.x + threadIdx.x) / W; r < ns; r += waves) {
      float acc = 0.0f;
      for (std::size_t j = std::size_t(wv.lane()); j < dim; j += W) acc = step<Metric::L2>(acc, c[j], sample[r * dim + j]);
      acc = wave_reduce<Metric::L2>(wv, acc);
      const float m = fminf(mind[r], acc);
      if (wv.lane() == 0) mind[r] = m;
      const unsigned long long key = (uint64_t(float_order(m)) << 32) | uint64_t(r);
      mine = key > mine ? key : mine;
    }
    if (wv.lane() == 0 && mine != 0) atomicMax(&block_best, mine);
    __syncthreads();
    if (threadIdx.x == 0 && block_best != 0) atomicMax(best + round, block_best);
  }
}

__global__ void row_ranges_kernel(const float* rows, std::size_t n, std::size_t dim, uint32_t* mins, uint32_t* maxs) {
  const std::size_t per = (n + gridDim.x - 1) / gridDim.x, r0 = std::size_t(blockIdx.x) * per;
  const std::size_t r1 = min(n, r0 + per);
  for (std::size_t j = threadIdx.x; j < dim; j += blockDim.x) {
    float lo = __int_as_float(0x7f800000), hi = -lo;
    for (std::size_t r = r0; r < r1; ++r) {
      const float v = rows[r * dim + j];
      lo = fminf(lo, v);
      hi = fmaxf(hi, v);
    }
    if (r0 < r1) {
      atomicMin(mins + j, float_order(lo));
      atomicMax(maxs + j, float_order(hi));
    }
  }
}

// One wave per row.
template <int W>
__global__ void encode_u8_kernel(const float* rows, std::size_t n, std::size_t dim, const float* lo, const float* scale,
                                 uint8_t* out, float* norms) {
  if constexpr (wave_compiled<W>()) {
    const HwWave<W> wv;
    const std::size_t waves = std::size_t(gridDim.x) * blockDim.x / W;
    for (std::size_t r = (std::size_t(blockIdx.x) * blockDim.x + threadIdx.x) / W; r < n; r += waves) {
      float acc = 0.0f;
      for (std::size_t j = std::size_t(wv.lane()); j < dim; j += W) {
        const float c = fminf(fmaxf(rintf((rows[r * dim + j] - lo[j]) / scale[j]), 0.0f), 255.0f);
        out[r * dim + j] = uint8_t(c);
        const float v = scale[j] * c;
        acc = __fmaf_rn(v, v, acc);
      }
      acc = wave_reduce<Metric::L2>(wv, acc);
      if (wv.lane() == 0) norms[r] = acc;
    }
  }
}

}  // namespace

void launch_row_ranges(const float* rows, std::size_t n, std::size_t dim, uint32_t* mins, uint32_t* maxs,
                       cudaStream_t stream) {
  if (n == 0) return;
  const unsigned blocks = unsigned(std::min<std::size_t>(1024, n));
  row_ranges_kernel<<<blocks, 128, 0, stream>>>(rows, n, dim, mins, maxs);
  check(cudaGetLastError(), "row ranges kernel launch");
}

void launch_encode_u8(const float* rows, std::size_t n, std::size_t dim, const float* lo, const float* scale,
                      uint8_t* out, float* norms, cudaStream_t stream) {
  if (n == 0) return;
  with_wave([&]<int W>() {
    encode_u8_kernel<W><<<blocks_for(n * W, 256), 256, 0, stream>>>(rows, n, dim, lo, scale, out, norms);
  });
  check(cudaGetLastError(), "uint8 encode kernel launch");
}

void launch_farthest_step(const float* sample, std::size_t ns, std::size_t dim, float* mind, uint64_t* best,
                          int step, cudaStream_t stream) {
  if (ns == 0) return;
  with_wave([&]<int W>() {
    farthest_step_kernel<W><<<blocks_for(ns * W, 256), 256, 0, stream>>>(
        sample, ns, dim, mind, reinterpret_cast<unsigned long long*>(best), step);
  });
  check(cudaGetLastError(), "farthest-first kernel launch");
}

void launch_nearest_two(const float* scores, std::size_t ld, std::size_t nrows, std::size_t ncols,
                        const float* norms, uint32_t* labels, float* margins, cudaStream_t stream) {
  if (nrows == 0) return;
  with_wave([&]<int W>() {
    nearest_two_kernel<W><<<blocks_for(nrows * W, 256), 256, 0, stream>>>(scores, ld, nrows, ncols, norms, labels,
                                                                          margins);
  });
  check(cudaGetLastError(), "nearest-two kernel launch");
}

void launch_centroid_sums(const float* rows, std::size_t n, std::size_t dim, const uint32_t* labels, float* sums,
                          uint32_t* counts, cudaStream_t stream) {
  if (n == 0) return;
  centroid_sums_kernel<<<blocks_for(n * dim, 256), 256, 0, stream>>>(rows, n, dim, labels, sums, counts);
  check(cudaGetLastError(), "centroid sums kernel launch");
}

void launch_centroid_divide(const float* sums, const uint32_t* counts, std::size_t nlist, std::size_t dim,
                            float* centroids, cudaStream_t stream) {
  centroid_divide_kernel<<<blocks_for(nlist * dim, 256), 256, 0, stream>>>(sums, counts, nlist, dim, centroids);
  check(cudaGetLastError(), "centroid divide kernel launch");
}

void launch_scatter_candidates(const uint64_t* keys, std::size_t keys_ld, std::size_t nq, int width,
                               const uint32_t* members, std::size_t member_base, std::size_t first, uint64_t* cand,
                               cudaStream_t stream) {
  if (nq == 0) return;
  scatter_candidates_kernel<<<blocks_for(nq * std::size_t(width), 256), 256, 0, stream>>>(
      keys, keys_ld, nq, width, members, member_base, first, cand);
  check(cudaGetLastError(), "scatter kernel launch");
}

void launch_merge_candidates(const uint64_t* cand, std::size_t n, int width, int K, uint32_t* knn,
                             cudaStream_t stream) {
  if (n == 0) return;
  if (2 * width > kMergeMax) throw Error(ErrorCode::Internal, "graph build: candidate lists too long");
  merge_candidates_kernel<<<unsigned(std::min<std::size_t>(n, 65535u * 4u)), kMergeThreads, 0, stream>>>(cand, n,
                                                                                                         width, K, knn);
  check(cudaGetLastError(), "merge kernel launch");
}

void launch_prune(const uint32_t* lists, std::size_t ld_lists, int len, std::size_t n, const uint32_t* others,
                  std::size_t ld_others, int len_others, int degree, uint32_t* out, std::size_t ld_out,
                  std::size_t out_first, cudaStream_t stream) {
  if (n == 0) return;
  if (len < 1 || len > kPruneMaxList || len_others < 1 || len_others > kPruneMaxList)
    throw Error(ErrorCode::Internal, "graph build: list too long to prune");
  prune_kernel<<<unsigned(std::min<std::size_t>(n, 65535u * 4u)), kPruneThreads, 0, stream>>>(
      lists, ld_lists, len, n, others, ld_others, len_others, degree, out, ld_out, out_first);
  check(cudaGetLastError(), "prune kernel launch");
}

void launch_reverse_edges(const uint32_t* pruned, std::size_t n, int degree, uint32_t* rev, uint32_t* rev_count,
                          cudaStream_t stream) {
  if (n == 0) return;
  for (int p = 0; p < degree; ++p) {
    reverse_edges_kernel<<<blocks_for(n, 256), 256, 0, stream>>>(pruned, n, degree, p, rev, rev_count);
    check(cudaGetLastError(), "reverse edges kernel launch");
  }
}

void launch_merge_graph(const uint32_t* pruned, const uint32_t* rev, const uint32_t* rev_count, std::size_t n,
                        int degree, uint32_t* graph, cudaStream_t stream) {
  if (n == 0) return;
  if (degree > kMaxDegree) throw Error(ErrorCode::Internal, "graph build: degree above 64");
  merge_graph_kernel<<<blocks_for(n, 128), 128, 0, stream>>>(pruned, rev, rev_count, n, degree, graph);
  check(cudaGetLastError(), "graph merge kernel launch");
}

void launch_link_back(uint32_t* graph, int degree, std::size_t first, std::size_t m, uint32_t* taken,
                      cudaStream_t stream) {
  if (m == 0 || degree < 2) return;
  link_back_kernel<<<blocks_for(m * std::size_t(degree / 2), 256), 256, 0, stream>>>(graph, degree, first, m, taken);
  check(cudaGetLastError(), "link-back kernel launch");
}

}  // namespace hive::gpu::HIVE_GPU_DEVICE_NS
