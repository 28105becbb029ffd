// CUDA backend: graph search, one block per query (see graph_search.hpp).
//
// Shared memory per block: the query, the sorted candidate list as 64-bit keys (the score's
// order in the high half, as the select kernels' keys; the node in the low 31 bits, bit 31
// marking an entry already expanded), a second list to merge into, the iteration's fresh
// candidates and an open-addressing hash of the nodes seen.
//
// An iteration: wave 0 picks the parents (ballots over the list); their neighbours not seen
// before are scored by teams of T lanes (T = 4 .. W, about four 16-byte loads per lane for a
// row, so a block has every fresh row's loads in flight at once); each wave sorts a W-key run of
// the fresh keys in registers; then every key finds its place in the merged list by counting
// (a binary search in the old list and in each sorted run) and is written there. Three block
// barriers per iteration instead of a bitonic network's dozens.
#include <algorithm>
#include <string>
#include <type_traits>

#include "backends/cuda/cuda_common.hpp"
#include "backends/cuda/device_util.cuh"
#include "backends/cuda/graph_search.hpp"
#include "hive_gpu/error.hpp"

namespace hive::gpu::HIVE_GPU_DEVICE_NS {
namespace {

using namespace dev;

constexpr int kGsThreads = 128;
// 16-byte loads a lane has in flight for one row before it uses any (a row's loads one after
// another would cost a memory latency each; nvcc does not unroll the runtime-bound loop).
// Measured on the H100 against one at a time: 1.18x on Fashion-MNIST (fp16), 1.23x on 1M.
constexpr int kLoadGroup = 4;
// Blocks per SM the registers must leave room for (48 registers a thread on NVIDIA; without the
// bound the uint8 kernel took 56 and fit 9). HIP reads the bound's second number differently.
#if defined(HIVE_GPU_HIP)
constexpr int kGsMinBlocks = 1;
#else
constexpr int kGsMinBlocks = 10;
#endif
constexpr int kHashProbes = 32;        // a full neighbourhood of the table counts as visited
constexpr int kIterationCap = 1024;    // max_iterations = 0: the list converges well before
constexpr uint64_t kExpanded = uint64_t(1) << 31;
constexpr uint32_t kNodeMask = 0x7fffffffu;

struct Layout {
  int itopk = 0, fresh_cap = 0, team = 0;
  int team32 = 0;      // the team size for the fp32 rows (re-scoring)
  uint32_t hash_mask = 0;
  bool vec = false;    // 16-byte loads of the traversal rows
  bool vec32 = false;  // 16-byte loads of the fp32 rows
  int rescore = 0;     // entries re-scored from the fp32 rows at the end (0: traversal is fp32)
};

// Inserts node into the visited hash; false when it was there already (or no slot was free
// within kHashProbes: treated as seen, so a crowded table only narrows the search).
__device__ __forceinline__ bool first_visit(uint32_t* table, uint32_t mask, uint32_t node) {
  uint32_t h = (node * 0x9e3779b1u) & mask;
  for (int p = 0; p < kHashProbes; ++p) {
    const uint32_t old = atomicCAS(table + h, kNoNode, node);
    if (old == kNoNode) return true;
    if (old == node) return false;
    h = (h + 1) & mask;
  }
  return false;
}

__device__ __forceinline__ uint64_t splitmix(uint64_t z) {
  z += 0x9e3779b97f4a7c15ull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// The encodings a search can traverse: the fp32 rows, their fp16 copy, or their uint8 codes.
enum class Rows { F32, F16, U8 };

// Scores the nodes cand[0 .. count) (kNoNode: an empty slot) into keys out[0 .. count), a team
// of T lanes per node, from rows stored as S (fp32 or the fp16 copy). Every lane of a wave runs
// the same number of rounds (the shuffles need the whole wave); invalid slots load nothing.
// vec: 16-byte loads (dim a multiple of the elements per load, rows aligned).
template <int W, Metric M, ScalarType S>
__device__ __forceinline__ void score(const HwWave<W>& wv, const GraphSearchArgs& a, int T, bool vec,
                                      const void* rows, const float* q, const uint32_t* cand, int count,
                                      uint64_t* out) {
  using E = Elem<S>;
  constexpr int V = E::kVec;
  const auto* base = static_cast<const typename E::T*>(rows);
  const int teams = kGsThreads / T;
  const int team = int(threadIdx.x) / T, tl = int(threadIdx.x) % T;
  for (int s0 = 0; s0 < count; s0 += teams) {
    const int s = s0 + team;
    const uint32_t node = s < count ? cand[s] : kNoNode;
    float acc = 0.0f;
    if (node != kNoNode) {
      const auto* x = base + std::size_t(node) * a.dim;
      if (vec) {
        // kLoadGroup loads in flight per lane before any is used.
        const int chunks = int(a.dim / V);
        for (int c0 = tl; c0 < chunks; c0 += kLoadGroup * T) {
          uint4 raw[kLoadGroup];
#pragma unroll
          for (int u = 0; u < kLoadGroup; ++u) {
            const int c = c0 + u * T;
            raw[u] = c < chunks ? __ldg(reinterpret_cast<const uint4*>(x + std::size_t(c) * V)) : make_uint4(0, 0, 0, 0);
          }
#pragma unroll
          for (int u = 0; u < kLoadGroup; ++u) {
            const int c = c0 + u * T;
            if (c < chunks) {
              float v[V];
              E::cvt16(raw[u], v);
              const float4* q4 = reinterpret_cast<const float4*>(q + std::size_t(c) * V);
#pragma unroll
              for (int i = 0; i < V / 4; ++i) {
                const float4 w = q4[i];
                acc = step<M>(acc, w.x, v[4 * i]);
                acc = step<M>(acc, w.y, v[4 * i + 1]);
                acc = step<M>(acc, w.z, v[4 * i + 2]);
                acc = step<M>(acc, w.w, v[4 * i + 3]);
              }
            }
          }
        }
      } else {
        for (std::size_t j = std::size_t(tl); j < a.dim; j += std::size_t(T)) acc = step<M>(acc, q[j], E::get(x[j]));
      }
    }
    for (int m = T / 2; m > 0; m >>= 1) acc = combine<M>(acc, wv.shfl_xor(acc, m));
    if (tl == 0 && s < count) {
      const float d = finish<M>(acc);
      out[s] = (node == kNoNode || isnan(d)) ? kEmptyKey : (uint64_t(float_order(d)) << 32) | uint64_t(node);
    }
  }
}

// Four-way byte dot products: c + sum a_i b_i over the bytes of a and b; a signed or unsigned,
// b unsigned (codes). dp4a on NVIDIA; plain integer arithmetic elsewhere.
__device__ __forceinline__ int dot4_su(uint32_t a, uint32_t b, int c) {
#if defined(HIVE_GPU_HIP)
#pragma unroll
  for (int i = 0; i < 4; ++i) c += int(int8_t(a >> (8 * i))) * int((b >> (8 * i)) & 0xffu);
  return c;
#else
  int d;
  asm("dp4a.s32.u32 %0, %1, %2, %3;" : "=r"(d) : "r"(a), "r"(b), "r"(c));
  return d;
#endif
}
__device__ __forceinline__ uint32_t dot4_uu(uint32_t a, uint32_t b, uint32_t c) {
#if defined(HIVE_GPU_HIP)
#pragma unroll
  for (int i = 0; i < 4; ++i) c += ((a >> (8 * i)) & 0xffu) * ((b >> (8 * i)) & 0xffu);
  return c;
#else
  return __dp4a(a, b, c);
#endif
}

// score() for uint8 codes (L2, InnerProduct, Cosine). The block turned its query into integer
// weights t_j = hi_j * 256 + lo_j (hi signed, lo unsigned bytes) with t_j ~ w_j / sigma, where
// w_j = 2 scale_j (q_j - lo_j) for L2 and scale_j q_j for the dot products, so that
//   L2:  |q - x|^2 = sum_j (q_j - lo_j)^2 - sum_j w_j c_j + code_norms[x]
//   dot: q . x     = sum_j q_j lo_j + sum_j w_j c_j
// and, dropping each query's constant, a row scores code_norms[x] - sigma * dot(t, c) (L2) or
// -sigma * dot(t, c): two dp4a per four values.
template <int W, Metric M>
__device__ __forceinline__ void score_codes(const HwWave<W>& wv, const GraphSearchArgs& a, int T, bool vec,
                                            const uint8_t* qhi, const uint8_t* qlo, float sigma,
                                            const uint32_t* cand, int count, uint64_t* out) {
  const int teams = kGsThreads / T;
  const int team = int(threadIdx.x) / T, tl = int(threadIdx.x) % T;
  // A lane reads chunks tl, tl + T, ... of every row, kLoadGroup loads in flight at a time.
  const int chunks = vec ? int(a.dim / 16) : 0, rounds = (chunks + T - 1) / T;
  const uint4* h4 = reinterpret_cast<const uint4*>(qhi);
  const uint4* l4 = reinterpret_cast<const uint4*>(qlo);
  auto dots = [&](const uint4& row, int c, int& hi, uint32_t& lo) {
    const uint4 h = h4[c], l = l4[c];
    hi = dot4_su(h.x, row.x, hi);
    hi = dot4_su(h.y, row.y, hi);
    hi = dot4_su(h.z, row.z, hi);
    hi = dot4_su(h.w, row.w, hi);
    lo = dot4_uu(l.x, row.x, lo);
    lo = dot4_uu(l.y, row.y, lo);
    lo = dot4_uu(l.z, row.z, lo);
    lo = dot4_uu(l.w, row.w, lo);
  };
  for (int s0 = 0; s0 < count; s0 += teams) {
    const int s = s0 + team;
    const uint32_t node = s < count ? cand[s] : kNoNode;
    int hi = 0;
    uint32_t lo = 0;
    float norm = 0.0f;
    const bool live = node != kNoNode;
    if constexpr (M == Metric::L2)
      if (tl == 0 && live) norm = __ldg(a.code_norms + node);
    const uint8_t* x = a.rows8 + std::size_t(live ? node : 0) * a.dim;
    if (vec) {
      // Branch-free for the team: a chunk past the row (or any chunk of an empty slot) loads as
      // zero codes, which add nothing to the dot products; the rounds are the same for every
      // team, so the only branches are uniform ones.
      const uint4* x4 = reinterpret_cast<const uint4*>(x);
      for (int r0 = 0; r0 < rounds; r0 += kLoadGroup) {
        uint4 raw[kLoadGroup];
        int c[kLoadGroup];
#pragma unroll
        for (int u = 0; u < kLoadGroup; ++u) {
          c[u] = tl + (r0 + u) * T;
          raw[u] = live && r0 + u < rounds && c[u] < chunks ? __ldg(x4 + c[u]) : make_uint4(0, 0, 0, 0);
          c[u] = min(c[u], chunks - 1);
        }
#pragma unroll
        for (int u = 0; u < kLoadGroup; ++u)
          if (r0 + u < rounds) dots(raw[u], c[u], hi, lo);  // uniform
      }
    } else if (live) {
      for (std::size_t j = std::size_t(tl); j < a.dim; j += std::size_t(T)) {
        hi += int(int8_t(qhi[j])) * int(x[j]);
        lo += uint32_t(qlo[j]) * uint32_t(x[j]);
      }
    }
    // Per lane the sums stay far inside 32 bits (a lane's share of the codes); the team's total
    // is formed in float.
    float acc = float(hi) * 256.0f + float(lo);
    for (int m = T / 2; m > 0; m >>= 1) acc += wv.shfl_xor(acc, m);
    if (tl == 0 && s < count) {
      const float d = norm - sigma * acc;
      out[s] = (node == kNoNode || isnan(d)) ? kEmptyKey : (uint64_t(float_order(d)) << 32) | uint64_t(node);
    }
  }
}

__device__ __forceinline__ int round_up(int x, int w) { return (x + w - 1) / w * w; }

// One wave: calls put(position, key) for the first `limit` live entries of the sorted list
// (non-empty, not deleted), in order, by ballots over W entries at a time. Returns the live
// entries counted, at least min(limit, live entries) (whole ballots, so it may pass limit).
template <int W, class Put>
__device__ __forceinline__ int first_live(const HwWave<W>& wv, const uint64_t* list, int len, int limit,
                                          const uint32_t* deleted, Put&& put) {
  int seen = 0;
  for (int b0 = 0; b0 < len && seen < limit; b0 += W) {
    const uint64_t key = b0 + wv.lane() < len ? list[b0 + wv.lane()] : kEmptyKey;
    const bool live = key != kEmptyKey && !is_deleted(deleted, uint32_t(key) & kNodeMask);
    const auto m = wv.ballot(live);
    const int pos = seen + __popcll(static_cast<unsigned long long>(m & wv.lanes_below()));
    if (live && pos < limit) put(pos, key);
    seen += __popcll(static_cast<unsigned long long>(m));
  }
  return seen;
}

// Ascending bitonic sort of one key per lane across the wave.
template <int W>
__device__ __forceinline__ uint64_t wave_sort(const HwWave<W>& wv, uint64_t x) {
  const int lane = wv.lane();
  for (int k = 2; k <= W; k <<= 1) {
    for (int j = k >> 1; j > 0; j >>= 1) {
      const uint64_t o = wv.shfl_xor(x, j);
      const bool up = (lane & k) == 0, lower = (lane & j) == 0;
      x = (lower == up) ? (x < o ? x : o) : (x < o ? o : x);
    }
  }
  return x;
}

// Keys of sorted[0 .. len) strictly below x.
__device__ __forceinline__ int count_below(const uint64_t* sorted, int len, uint64_t x) {
  int lo = 0, hi = len;
  while (lo < hi) {
    const int mid = (lo + hi) >> 1;
    if (sorted[mid] < x) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

template <int W, Metric M, Rows R>
__global__ void __launch_bounds__(kGsThreads, kGsMinBlocks) graph_search_kernel(const GraphSearchArgs a, const Layout L, int max_iter) {
  if constexpr (wave_compiled<W>()) {
    extern __shared__ uint64_t smem[];
    uint64_t* list = smem;                          // itopk, sorted
    uint64_t* next = list + L.itopk;                // itopk, the merge's output
    uint64_t* fresh = next + L.itopk;               // fresh_cap, W-key runs sorted
    uint32_t* cand = reinterpret_cast<uint32_t*>(fresh + L.fresh_cap);  // fresh_cap
    const std::size_t dim4 = (a.dim + 3) & ~std::size_t(3), dim16 = (a.dim + 15) & ~std::size_t(15);
    float* q = reinterpret_cast<float*>(cand + L.fresh_cap);           // dim (16-byte aligned)
    // uint8 traversal: the query's integer weights as two byte planes (see score_codes).
    uint8_t* qhi = reinterpret_cast<uint8_t*>(q + dim4);
    uint8_t* qlo = qhi + dim16;
    uint32_t* table = reinterpret_cast<uint32_t*>(R == Rows::U8 ? static_cast<void*>(qlo + dim16) : static_cast<void*>(q + dim4));
    __shared__ int parents[4];
    __shared__ int nparents, nfresh;
    __shared__ uint32_t wmax_bits;
    const HwWave<W> wv;
    const int tid = int(threadIdx.x);
    const std::size_t qi = blockIdx.x;
    if (R == Rows::U8 && tid == 0) wmax_bits = 0;
    if constexpr (R == Rows::U8) __syncthreads();
    // The weight of dimension j (uint8 traversal).
    auto weight = [&](std::size_t j, float v) {
      return M == Metric::L2 ? 2.0f * a.scale[j] * (v - a.lo[j]) : a.scale[j] * v;
    };
    for (std::size_t j = std::size_t(tid); j < a.dim; j += kGsThreads) {
      const float v = a.queries[qi * a.dim + j];
      q[j] = v;
      if constexpr (R == Rows::U8) atomicMax(&wmax_bits, __float_as_uint(fabsf(weight(j, v))));
    }
    float sigma = 1.0f;
    if constexpr (R == Rows::U8) {
      __syncthreads();
      const float wmax = __uint_as_float(wmax_bits);
      sigma = wmax > 0.0f && isfinite(wmax) ? wmax / 32767.0f : 1.0f;
      for (std::size_t j = std::size_t(tid); j < dim16; j += kGsThreads) {
        const int t = j < a.dim ? int(fminf(fmaxf(rintf(weight(j, q[j]) / sigma), -32767.0f), 32767.0f)) : 0;
        qhi[j] = uint8_t(t >> 8);  // floor(t / 256), as a signed byte
        qlo[j] = uint8_t(t & 0xff);
      }
    }
    for (uint32_t j = uint32_t(tid); j <= L.hash_mask; j += kGsThreads) table[j] = kNoNode;
    for (int j = tid; j < L.itopk; j += kGsThreads) list[j] = kEmptyKey;
    for (int j = tid; j < L.fresh_cap; j += kGsThreads) cand[j] = kNoNode;
    __syncthreads();
    // Score the fresh candidates, sort each wave's run, merge into the list (which swaps with
    // `next`). Every non-empty key is distinct (distinct nodes), so ranks by strict comparison
    // are unique and the non-empty keys land on a prefix.
    const void* trav = R == Rows::F32 ? static_cast<const void*>(a.base)
                       : R == Rows::F16 ? a.rows16
                                        : static_cast<const void*>(a.rows8);
    // count: the candidate slots in use this time (<= fresh_cap); they are scored, and the keys
    // up to the next multiple of W (the sorted runs) are empty.
    auto absorb = [&](bool exact, int count) {
      const int len = round_up(count, W), runs = len / W;
      if (exact)
        score<W, M, ScalarType::F32>(wv, a, L.team32, L.vec32, a.base, q, cand, count, fresh);
      else if constexpr (R == Rows::U8)
        score_codes<W, M>(wv, a, L.team, L.vec, qhi, qlo, sigma, cand, count, fresh);
      else
        score<W, M, R == Rows::F16 ? ScalarType::F16 : ScalarType::F32>(wv, a, L.team, L.vec, trav, q, cand,
                                                                          count, fresh);
      for (int j = count + tid; j < len; j += kGsThreads) fresh[j] = kEmptyKey;
      __syncthreads();
      for (int r = tid / W; r < runs; r += kGsThreads / W) {
        const uint64_t x = wave_sort(wv, fresh[r * W + wv.lane()]);
        fresh[r * W + wv.lane()] = x;
      }
      for (int j = tid; j < L.itopk; j += kGsThreads) next[j] = kEmptyKey;
      __syncthreads();
      for (int j = tid; j < L.itopk + len; j += kGsThreads) {
        const bool old = j < L.itopk;
        const uint64_t x = old ? list[j] : fresh[j - L.itopk];
        if (x == kEmptyKey) continue;
        int pos = old ? j : count_below(list, L.itopk, x);
        for (int r = 0; r < runs && pos < L.itopk; ++r) pos += count_below(fresh + r * W, W, x);
        if (pos < L.itopk) next[pos] = x;
      }
      __syncthreads();
      uint64_t* t = list;
      list = next;
      next = t;
    };
    if (a.n_entries > 0) {
      // Start from the entry points (spread over the data at build time): all of them scored,
      // a list-full of the nearest kept. They also reach regions the links do not connect.
      for (int c0 = 0; c0 < a.n_entries; c0 += L.fresh_cap) {
        const int count = min(L.fresh_cap, a.n_entries - c0);
        for (int j = tid; j < count; j += kGsThreads) {
          const uint32_t node = a.entries[c0 + j];
          cand[j] = (node < a.n && first_visit(table, L.hash_mask, node)) ? node : kNoNode;
        }
        __syncthreads();
        absorb(false, count);
      }
    }
    // Random start nodes too: fixed by (seed, query, i); a repeat counts once.
    int len = a.seeds;
    for (int i = tid; i < len; i += kGsThreads) {
      uint32_t node = uint32_t(splitmix(a.seed ^ (uint64_t(a.first_query + qi) << 20) ^ uint64_t(i)) % a.n);
      if (!first_visit(table, L.hash_mask, node)) node = kNoNode;
      cand[i] = node;
    }
    __syncthreads();
    for (int it = 0;; ++it) {
      absorb(false, len);
      if (it >= max_iter) break;
      // Wave 0 finds the first search_width entries not yet expanded (ballots over the list).
      if (tid < W) {
        int found = 0;
        for (int b0 = 0; b0 < L.itopk && found < a.search_width; b0 += W) {
          const uint64_t key = b0 + wv.lane() < L.itopk ? list[b0 + wv.lane()] : kEmptyKey;
          auto m = wv.ballot(key != kEmptyKey && (key & kExpanded) == 0);
          for (; m != 0 && found < a.search_width; ++found) {
            if (wv.lane() == 0) parents[found] = b0 + HwWave<W>::lowest(m);
            m &= m - 1;
          }
        }
        if (wv.lane() == 0) {
          nparents = found;
          nfresh = 0;
        }
      }
      __syncthreads();
      const int np = nparents;
      if (np == 0) break;  // every entry expanded: converged (uniform)
      // The parents' neighbours not seen before, packed at the front of cand (their order does
      // not matter: the keys are sorted), so the scoring and merging skip the seen ones.
      const int count = np * a.degree;
      for (int j = tid; j < count; j += kGsThreads) {
        const uint32_t parent = uint32_t(list[parents[j / a.degree]]) & kNodeMask;
        const uint32_t nb = a.graph[std::size_t(parent) * std::size_t(a.degree) + std::size_t(j % a.degree)];
        if (nb < a.n && first_visit(table, L.hash_mask, nb)) cand[atomicAdd(&nfresh, 1)] = nb;
      }
      __syncthreads();
      len = nfresh;
      if (tid < np) list[parents[tid]] |= kExpanded;
      __syncthreads();
    }
    if (L.rescore > 0) {
      // Traversal scores came from compact rows (fp16 or uint8 codes): the first `rescore` live
      // entries are scored again from the fp32 rows and re-ranked, so results carry exact
      // distances in exact order.
      if (tid < W) {
        const int taken = first_live(wv, list, L.itopk, L.rescore, a.deleted,
                                     [&](int pos, uint64_t key) { cand[pos] = uint32_t(key) & kNodeMask; });
        for (int j = min(taken, L.rescore) + wv.lane(); j < round_up(L.rescore, W); j += W) cand[j] = kNoNode;
      }
      __syncthreads();
      for (int j = tid; j < L.itopk; j += kGsThreads) list[j] = kEmptyKey;
      __syncthreads();
      absorb(true, round_up(L.rescore, W));
    }
    // Results: the first k live entries (wave 0, ballots keep the order).
    if (tid < W) {
      const int written = first_live(wv, list, L.itopk, a.k, a.deleted, [&](int pos, uint64_t key) {
        const std::size_t o = qi * std::size_t(a.k) + std::size_t(pos);
        a.nodes[o] = uint32_t(key) & kNodeMask;
        a.distances[o] = key_score(key & ~kExpanded);
      });
      for (int j = written + wv.lane(); j < a.k; j += W) {
        const std::size_t o = qi * std::size_t(a.k) + std::size_t(j);
        a.nodes[o] = kNoNode;
        a.distances[o] = __int_as_float(0x7f800000);
      }
    }
  }
}

template <int W, Metric M, Rows S>
void launch_as(const GraphSearchArgs& a, const Layout& L, std::size_t smem, int max_iter, cudaStream_t stream) {
  if (smem > 48 * 1024)
    check(cudaFuncSetAttribute(graph_search_kernel<W, M, S>, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)),
          "cudaFuncSetAttribute(graph search)");
  graph_search_kernel<W, M, S><<<unsigned(a.nq), kGsThreads, smem, stream>>>(a, L, max_iter);
}

template <int W, Metric M>
void launch_one(const GraphSearchArgs& a, const Layout& L, std::size_t smem, int max_iter, cudaStream_t stream) {
  if constexpr (M == Metric::L2 || M == Metric::InnerProduct || M == Metric::Cosine) {
    if (a.rows8 != nullptr) {
      launch_as<W, M, Rows::U8>(a, L, smem, max_iter, stream);
      return;
    }
  }
  if (a.rows16 != nullptr)
    launch_as<W, M, Rows::F16>(a, L, smem, max_iter, stream);
  else
    launch_as<W, M, Rows::F32>(a, L, smem, max_iter, stream);
}

}  // namespace

void launch_graph_search(const GraphSearchArgs& a, cudaStream_t stream) {
  auto bad = [](const std::string& why) { return Error(ErrorCode::InvalidArgument, "graph search: " + why); };
  if (a.nq == 0) return;
  if (a.n == 0 || a.n > std::size_t(kNodeMask)) throw bad("the graph must hold 1 .. 2^31 - 1 nodes");
  if (a.degree < 1 || a.degree > kGraphMaxDegree) throw bad("degree " + std::to_string(a.degree) + " out of 1..64");
  if (a.itopk < 16 || a.itopk > kGraphMaxItopk || (a.itopk & (a.itopk - 1)) != 0)
    throw bad("itopk " + std::to_string(a.itopk) + " is not a power of two in 16..1024");
  if (a.k < 1 || a.k > a.itopk) throw bad("k " + std::to_string(a.k) + " out of 1..itopk");
  if (a.seeds < 0 || a.seeds > a.itopk || (a.seeds == 0 && a.n_entries == 0))
    throw bad("seeds " + std::to_string(a.seeds) + " out of 1..itopk (0 only with entry points)");
  if (a.metric == Metric::Hamming) throw bad("Hamming graphs are not supported");
  if (a.search_width < 1 || a.search_width > 4 || a.search_width * a.degree > kGraphMaxFresh)
    throw bad("search_width " + std::to_string(a.search_width) + " out of 1..4 (and width x degree <= 256)");
  if (a.nq > 0x7fffffffu) throw bad("too many queries in one launch");
  if (a.n_entries < 0 || (a.n_entries > 0 && a.entries == nullptr)) throw bad("entries without a list");
  const int W = wave_size();
  Layout L;
  L.itopk = a.itopk;
  // fp16 traversal: the best min(itopk, max(2 k, 32)) live entries are re-scored in fp32.
  const bool coded = a.rows16 != nullptr || a.rows8 != nullptr;
  if (a.rows8 != nullptr && (a.lo == nullptr || a.scale == nullptr || (a.metric == Metric::L2 && a.code_norms == nullptr)))
    throw bad("uint8 rows without their offsets, scales or norms");
  if (a.rows8 != nullptr && a.metric != Metric::L2 && a.metric != Metric::InnerProduct && a.metric != Metric::Cosine)
    throw bad("uint8 traversal serves L2, InnerProduct and Cosine only");
  L.rescore = coded ? std::min(a.itopk, std::max(2 * a.k, 32)) : 0;
  const int fresh =
      std::max({a.search_width * a.degree, a.seeds, std::min(a.n_entries, kGraphMaxFresh), L.rescore});
  L.fresh_cap = (fresh + W - 1) / W * W;
  // Visited nodes: about 1.5 itopk expansions of `degree` neighbours; 48 slots per list entry
  // keeps the table under about two-thirds full at degree 32.
  uint32_t slots = 2048;
  while (slots < uint32_t(48 * a.itopk + 2 * a.n_entries) && slots < 32768) slots <<= 1;
  L.hash_mask = slots - 1;
  L.vec32 = a.dim % 4 == 0 && reinterpret_cast<uintptr_t>(a.base) % 16 == 0;
  const std::size_t per_load = a.rows8 != nullptr ? 16 : a.rows16 != nullptr ? 8 : 4;
  const void* trav = a.rows8 != nullptr ? static_cast<const void*>(a.rows8)
                     : a.rows16 != nullptr ? a.rows16
                                           : static_cast<const void*>(a.base);
  L.vec = a.dim % per_load == 0 && reinterpret_cast<uintptr_t>(trav) % 16 == 0;
  const std::size_t chunks = L.vec ? a.dim / per_load : a.dim;
  // Team size: the smallest (4 .. W lanes) with at most kLoadGroup 16-byte loads per lane.
  int team = 4;
  while (team < W && std::size_t(team) * kLoadGroup < chunks) team <<= 1;
  L.team = team;
  const std::size_t chunks32 = L.vec32 ? a.dim / 4 : a.dim;
  int team32 = 4;
  while (team32 < W && std::size_t(team32) * kLoadGroup < chunks32) team32 <<= 1;
  L.team32 = team32;
  // The query (fp32), then for uint8 traversal its two weight planes (bytes, padded to 16).
  const std::size_t query_bytes = ((a.dim + 3) & ~std::size_t(3)) * 4 + (a.rows8 != nullptr ? 2 * ((a.dim + 15) & ~std::size_t(15)) : 0);
  const std::size_t smem = std::size_t(2 * L.itopk + L.fresh_cap) * 8 + std::size_t(L.fresh_cap) * 4 + query_bytes +
                           std::size_t(slots) * 4;
  int optin = 0, dev = 0;
  check(cudaGetDevice(&dev), "cudaGetDevice");
  check(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev), "shared memory limit");
  if (smem > std::size_t(std::max(optin, 48 * 1024)))
    throw bad("dim " + std::to_string(a.dim) + " with itopk " + std::to_string(a.itopk) +
              " leaves no room in shared memory");
  const int max_iter = a.max_iterations > 0 ? a.max_iterations : std::max(kIterationCap, 4 * a.itopk);
  with_wave([&]<int WV>() {
    switch (a.metric) {
      case Metric::L2: launch_one<WV, Metric::L2>(a, L, smem, max_iter, stream); break;
      case Metric::InnerProduct: launch_one<WV, Metric::InnerProduct>(a, L, smem, max_iter, stream); break;
      case Metric::Cosine: launch_one<WV, Metric::Cosine>(a, L, smem, max_iter, stream); break;
      case Metric::L1: launch_one<WV, Metric::L1>(a, L, smem, max_iter, stream); break;
      case Metric::Linf: launch_one<WV, Metric::Linf>(a, L, smem, max_iter, stream); break;
      case Metric::Hamming: break;
    }
  });
  check(cudaGetLastError(), "graph search kernel launch");
}

}  // namespace hive::gpu::HIVE_GPU_DEVICE_NS
