// CUDA backend: the distance scan (one wave per row, up to kQT queries per pass so each row
// read from memory serves several queries) and the exact re-score of candidate rows, which
// shares the scan's arithmetic so both report identical values.
#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "backends/cuda/cuda_common.hpp"
#include "backends/cuda/device_util.cuh"
#include "backends/cuda/kernels.hpp"

namespace hive::gpu::HIVE_GPU_DEVICE_NS {
namespace {

using namespace dev;

constexpr int kQT = 8;  // queries per wave pass
constexpr int kScanThreads = 256;

// Lane `lane` accumulates its share of row x against queries q[0..nqt) (stride dim floats).
// VEC: 16-byte loads (dim a multiple of Elem::kVec); otherwise one element per lane per step.
template <int W, Metric M, ScalarType S, bool VEC>
__device__ __forceinline__ void accumulate(const typename Elem<S>::T* x, const float* q, std::size_t dim, int nqt,
                                           int lane, float (&acc)[kQT]) {
  using E = Elem<S>;
  if constexpr (VEC) {
    constexpr int V = E::kVec;
    const std::size_t chunks = dim / V;
    for (std::size_t c = std::size_t(lane); c < chunks; c += W) {
      float xv[V];
      E::load16(x + c * V, xv);
#pragma unroll
      for (int qi = 0; qi < kQT; ++qi) {
        if (qi < nqt) {
          const float4* qp = reinterpret_cast<const float4*>(q + std::size_t(qi) * dim + c * V);
#pragma unroll
          for (int h = 0; h < V / 4; ++h) {
            const float4 qv = __ldg(qp + h);
            acc[qi] = step<M>(acc[qi], qv.x, xv[4 * h + 0]);
            acc[qi] = step<M>(acc[qi], qv.y, xv[4 * h + 1]);
            acc[qi] = step<M>(acc[qi], qv.z, xv[4 * h + 2]);
            acc[qi] = step<M>(acc[qi], qv.w, xv[4 * h + 3]);
          }
        }
      }
    }
  } else {
    for (std::size_t j = std::size_t(lane); j < dim; j += W) {
      const float xv = E::get(x[j]);
#pragma unroll
      for (int qi = 0; qi < kQT; ++qi)
        if (qi < nqt) acc[qi] = step<M>(acc[qi], __ldg(q + std::size_t(qi) * dim + j), xv);
    }
  }
}

template <int W, bool VEC>
__device__ __forceinline__ void accumulate_bits(const uint8_t* x, const uint8_t* q, std::size_t nbytes, int nqt,
                                                int lane, uint32_t (&acc)[kQT]) {
  if constexpr (VEC) {
    const std::size_t words = nbytes / 4;
    const uint32_t* xw = reinterpret_cast<const uint32_t*>(x);
    for (std::size_t w = std::size_t(lane); w < words; w += W) {
      const uint32_t xv = __ldg(xw + w);
#pragma unroll
      for (int qi = 0; qi < kQT; ++qi)
        if (qi < nqt)
          acc[qi] += uint32_t(__popc(xv ^ __ldg(reinterpret_cast<const uint32_t*>(q + std::size_t(qi) * nbytes) + w)));
    }
  } else {
    for (std::size_t j = std::size_t(lane); j < nbytes; j += W) {
      const uint32_t xv = __ldg(x + j);
#pragma unroll
      for (int qi = 0; qi < kQT; ++qi)
        if (qi < nqt) acc[qi] += uint32_t(__popc(xv ^ uint32_t(__ldg(q + std::size_t(qi) * nbytes + j))));
    }
  }
}

template <int W, Metric M, ScalarType S, bool VEC>
__global__ void __launch_bounds__(kScanThreads) scan_kernel(const void* base, std::size_t n, std::size_t dim,
                                                            const float* queries, int nq, float* scores,
                                                            std::size_t ld) {
  if constexpr (wave_compiled<W>()) {
    using T = typename Elem<S>::T;
    const HwWave<W> wv;
    const int lane = wv.lane();
    const int q0 = int(blockIdx.y) * kQT;
    const int nqt = min(kQT, nq - q0);
    const float* q = queries + std::size_t(q0) * dim;
    const std::size_t waves = std::size_t(gridDim.x) * (kScanThreads / W);
    for (std::size_t r = (std::size_t(blockIdx.x) * blockDim.x + threadIdx.x) / W; r < n; r += waves) {
      float acc[kQT];
#pragma unroll
      for (int i = 0; i < kQT; ++i) acc[i] = 0.0f;
      accumulate<W, M, S, VEC>(static_cast<const T*>(base) + r * dim, q, dim, nqt, lane, acc);
#pragma unroll
      for (int qi = 0; qi < kQT; ++qi) {
        if (qi < nqt) {
          const float v = wave_reduce<M>(wv, acc[qi]);
          if (lane == qi) scores[std::size_t(q0 + qi) * ld + r] = finish<M>(v);
        }
      }
    }
  }
}

template <int W, bool VEC>
__global__ void __launch_bounds__(kScanThreads) scan_bits_kernel(const void* base, std::size_t n, std::size_t nbytes,
                                                                 const uint8_t* queries, int nq, float* scores,
                                                                 std::size_t ld) {
  if constexpr (wave_compiled<W>()) {
    const HwWave<W> wv;
    const int lane = wv.lane();
    const int q0 = int(blockIdx.y) * kQT;
    const int nqt = min(kQT, nq - q0);
    const uint8_t* q = queries + std::size_t(q0) * nbytes;
    const std::size_t waves = std::size_t(gridDim.x) * (kScanThreads / W);
    for (std::size_t r = (std::size_t(blockIdx.x) * blockDim.x + threadIdx.x) / W; r < n; r += waves) {
      uint32_t acc[kQT];
#pragma unroll
      for (int i = 0; i < kQT; ++i) acc[i] = 0;
      accumulate_bits<W, VEC>(static_cast<const uint8_t*>(base) + r * nbytes, q, nbytes, nqt, lane, acc);
#pragma unroll
      for (int qi = 0; qi < kQT; ++qi) {
        if (qi < nqt) {
          const uint32_t v = wave_sum(wv, acc[qi]);
          if (lane == qi) scores[std::size_t(q0 + qi) * ld + r] = float(v);
        }
      }
    }
  }
}

// ---- fused scan + top-32 (single queries) ---------------------------------------------
// Each wave scores kFG consecutive rows per step (their loads issued together), with exactly
// the arithmetic of `accumulate` + wave_reduce (bitwise the same scores as scan_kernel), and
// keeps its W best keys in a wave list; the block's waves then merge into one list of W.
constexpr int kFG = 4;

// Split mode (VEC, dim / kVec <= 16 chunks, e.g. fp16 / bf16 at d <= 128): each 16-lane part
// of the wave takes its own kFG rows (lane & 15 reads chunk lane & 15), so all lanes load and
// a step covers W / 16 kFG rows. The whole-wave layout would leave lanes 16.. at +0 and its
// first butterfly steps (offsets W / 2 .. 16) add exactly that +0 (a partial sum is never -0),
// so reducing over offsets 8..1 within each part gives bitwise the same sums. `sublane` /
// `stride`: lane / W, or lane & 15 / 16.
template <Metric M, ScalarType S, bool VEC>
__device__ __forceinline__ void accumulate_rows(const typename Elem<S>::T* x, int nr, const float* q,
                                                std::size_t dim, int sublane, int stride, float (&acc)[kFG]) {
  using E = Elem<S>;
#pragma unroll
  for (int i = 0; i < kFG; ++i) acc[i] = 0.0f;
  if constexpr (VEC) {
    constexpr int V = E::kVec;
    const std::size_t chunks = dim / V;
    for (std::size_t c = std::size_t(sublane); c < chunks; c += std::size_t(stride)) {
      float xv[kFG][V];
#pragma unroll
      for (int i = 0; i < kFG; ++i) {
        if (i < nr) {
          E::load16(x + std::size_t(i) * dim + c * V, xv[i]);
        } else {
#pragma unroll
          for (int e = 0; e < V; ++e) xv[i][e] = 0.0f;
        }
      }
      const float4* qp = reinterpret_cast<const float4*>(q + c * V);
#pragma unroll
      for (int h = 0; h < V / 4; ++h) {
        const float4 qv = qp[h];
#pragma unroll
        for (int i = 0; i < kFG; ++i) {
          acc[i] = step<M>(acc[i], qv.x, xv[i][4 * h + 0]);
          acc[i] = step<M>(acc[i], qv.y, xv[i][4 * h + 1]);
          acc[i] = step<M>(acc[i], qv.z, xv[i][4 * h + 2]);
          acc[i] = step<M>(acc[i], qv.w, xv[i][4 * h + 3]);
        }
      }
    }
  } else {
    for (std::size_t j = std::size_t(sublane); j < dim; j += std::size_t(stride)) {
      const float qv = q[j];
#pragma unroll
      for (int i = 0; i < kFG; ++i)
        if (i < nr) acc[i] = step<M>(acc[i], qv, E::get(x[std::size_t(i) * dim + j]));
    }
  }
}

constexpr int kMergeLoads = 8;  // lists each wave loads (and merges as a tree) per round
// The fused kernel's last block looks at every block list's first key in rounds of a key per
// thread: at most this many rounds (blocks <= kHeadRounds kScanThreads).
constexpr int kHeadRounds = 4;

// The merge of the block's wave lists in sh (lane-major, sh[w * W + lane]; waves from `live` on
// hold empty lists), as a tree whose levels run on parallel waves: log2(kWaves) merges deep, not
// kWaves - 1 (the serial chain was most of a small search's tail). Every thread of the block
// calls it; the result is in wave 0 (lane i: the i-th best). Wave w's list must have been
// written to sh by its own lanes (each reads back only its own slot before the first barrier).
template <int W>
__device__ __forceinline__ uint64_t merge_shared_lists(const HwWave<W>& wv, uint64_t* sh, int wave_id, int live) {
  constexpr int kWaves = kScanThreads / W;
  const int lane = wv.lane();
  uint64_t mine = sh[wave_id * W + lane];
#pragma unroll
  for (int span = 1; span < kWaves; span *= 2) {
    __syncthreads();  // the partners' lists are in sh
    // Wave w (a multiple of 2 span) takes in wave w + span's list, and writes its own back when
    // it is the partner at the next level (no wave reads that slot at this level), merged or not.
    if (wave_id % (2 * span) == 0) {
      if (wave_id + span < live) mine = wave::merge_lists(wv, mine, sh[(wave_id + span) * W + lane]);
      if (wave_id % (4 * span) == 2 * span) sh[wave_id * W + lane] = mine;
    }
  }
  return mine;
}

// The whole block: the merge of `count` sorted W-key lists at src (written by other blocks, so
// read past the per-SM cache; list i at src + pick[i] W), each wave a share of them, up to
// kMergeLoads at a time as a tree (merges with lists past `count` skipped), then the waves'
// lists through sh. The result is in wave 0 (lane i: the i-th best).
template <int W>
__device__ __forceinline__ uint64_t merge_global_lists(const HwWave<W>& wv, const uint64_t* src, unsigned count,
                                                       const uint16_t* pick, uint64_t* sh, int wave_id) {
  constexpr int kWaves = kScanThreads / W;
  uint64_t list = kEmptyKey;
  for (unsigned b0 = unsigned(wave_id); b0 < count; b0 += kWaves * kMergeLoads) {
    // This wave's lists of the round: b0, b0 + kWaves, ... below count (nl of them, uniform).
    const int nl = int(min(unsigned(kMergeLoads), (count - b0 + kWaves - 1) / kWaves));
    uint64_t l[kMergeLoads];
#pragma unroll
    for (int u = 0; u < kMergeLoads; ++u) {
      const unsigned b = b0 + unsigned(u * kWaves);
      l[u] = u < nl ? load_cg(src + std::size_t(pick[b]) * W + std::size_t(wv.lane())) : kEmptyKey;
    }
#pragma unroll
    for (int span = 1; span < kMergeLoads; span *= 2)
#pragma unroll
      for (int u = 0; u + span < kMergeLoads; u += 2 * span)
        if (u + span < nl) l[u] = wave::merge_lists(wv, l[u], l[u + span]);
    list = b0 == unsigned(wave_id) ? l[0] : wave::merge_lists(wv, list, l[0]);
  }
  __syncthreads();  // sh may still be read by wave 0 of an earlier merge
  sh[threadIdx.x] = list;
  return merge_shared_lists(wv, sh, wave_id, int(min(count, unsigned(kWaves))));
}

// The whole block, after every block wrote its sorted W-key list to lists (nb of them, list b at
// lists + b W): the W best keys of all of them, in wave 0 (lane i: the i-th best). The block
// looks at the lists' first keys only, then merges W lists at most, in two steps of one load
// round each (a tree of merges through groups of lists took a global round trip, a fence and a
// ticket more per level, ~2.2 us each):
//  1. T = the W-th smallest first key. The W lists it comes from hold W keys <= T, so the W best
//     keys overall are <= T, and each lies in its own block's list (it is among that block's W
//     best), whose first key is then <= T as well.
//  2. The lists whose first key is <= T (keys are unique: exactly W of them, or every non-empty
//     list when fewer) are merged whole.
// Where a list keeps only its first k keys exact (list_k < W), its first key is exact and the
// rest are real keys of its block, in order: the k best overall are still <= T and among the
// merged lists, and the merge keeps the best of their union.
template <int W>
__device__ __forceinline__ uint64_t merge_block_lists(const HwWave<W>& wv, const uint64_t* lists, unsigned nb,
                                                      uint64_t* sh, uint16_t* pick, unsigned& picked, int wave_id) {
  __shared__ uint64_t bound;
  uint64_t head[kHeadRounds];
  uint64_t best = kEmptyKey;
#pragma unroll
  for (int r = 0; r < kHeadRounds; ++r) {
    const unsigned b = threadIdx.x + unsigned(r * kScanThreads);
    head[r] = b < nb ? load_cg(lists + std::size_t(b) * W) : kEmptyKey;
  }
#pragma unroll
  for (int r = 0; r < kHeadRounds; ++r)
    if (wv.any(head[r] != kEmptyKey)) best = wave::merge_lists(wv, best, wave::sort_lanes(wv, head[r]));
  __syncthreads();  // sh may still be read by wave 0 of an earlier merge
  sh[threadIdx.x] = best;
  best = merge_shared_lists(wv, sh, wave_id, kScanThreads / W);
  if (wave_id == 0 && wv.lane() == W - 1) {
    bound = best;  // the W-th smallest first key (empty: fewer than W non-empty lists)
    picked = 0;
  }
  __syncthreads();
  const uint64_t t = bound;
#pragma unroll
  for (int r = 0; r < kHeadRounds; ++r)
    if (head[r] != kEmptyKey && head[r] <= t) {
      const unsigned at = atomicAdd(&picked, 1u);
      if (at < unsigned(W)) pick[at] = uint16_t(threadIdx.x + unsigned(r * kScanThreads));
    }
  __syncthreads();
  return merge_global_lists(wv, lists, min(picked, unsigned(W)), pick, sh, wave_id);
}

// Resident blocks per SM the fused kernel is built for: 4 (64 registers) for fp32; the half
// types' next-step loads need more registers (at 64 they spilled under ptxas, sm_90): 3.
constexpr int fused_blocks_per_sm(ScalarType s) { return s == ScalarType::F32 ? 4 : 3; }

// Kernel arguments by value. A single query of up to kParamDims floats travels inside them
// (qv), so the search needs no upload before the launch.
constexpr int kParamDims = int(kFusedParamDims);
struct FusedArgs {
  const void* base;
  std::size_t n, dim;
  const float* queries;  // device queries (nq x dim), or null: the one query is in qv
  const uint32_t* deleted;
  uint64_t* out;  // per block 32 sorted keys: out[q * out_ld + block * 32 ...]
  std::size_t out_ld;
  int split, pipe;
  float* scores;       // non-null: write every row's score (scores[q * n + row]) instead of lists
  unsigned* tickets;   // per query kTicketsLd counters, zero between launches
  int k;               // results per query written by the last block
  int negate;          // report -score (inner product)
  int64_t* res_rows;   // q * k + j (device or mapped host memory)
  float* res_dist;
  int list_k;          // keys each wave list keeps exact: k, or W for the screen
  // The single-query screen (FusedOutput::exact_rows; see screen_finish): base is the fp16 copy
  // of these fp32 rows, the scan's query is qv * qscale (a power of two), a scanned score times
  // score_scale is the copy's score in true units, and bound_g / bound_e bound its distance from
  // the exact score (see CudaFlatStore::single_screen).
  const float* exact_rows;
  int exact_metric;    // int(Metric): L2, or InnerProduct / Cosine (both scanned as InnerProduct)
  float qscale;
  double score_scale, bound_g, bound_e;
  uint64_t* tagged;  // FusedOutput::tagged / seq
  unsigned seq;
  float qv[kParamDims];
};

// Result i of the launch: to res_rows / res_dist, or as two tagged words (FusedOutput::tagged;
// each an aligned 8-byte store, so the host never sees one half-written, and no fence is needed:
// the host waits for the words themselves, not for a flag written after them).
__device__ __forceinline__ void write_result(const FusedArgs& a, std::size_t i, int64_t row, float dist) {
  if (a.tagged != nullptr) {
    const uint64_t tag = uint64_t(a.seq) << 32;
    volatile unsigned long long* t = reinterpret_cast<volatile unsigned long long*>(a.tagged) + 2 * i;
    t[0] = tag | uint32_t(row);  // -1 and kScreenInconclusive as their low 32 bits
    t[1] = tag | __float_as_uint(dist);
  } else {
    a.res_rows[i] = row;
    a.res_dist[i] = dist;
  }
}

// The screen's exact scores of R fp32 rows (VEC layout, dim % 4 == 0; a null row scores
// nothing) against the fp32 query q in shared memory, their loads issued together: chunk c of a
// row on lane c % W, then the butterfly, exactly the fused fp32 scan's and launch_rescore's
// arithmetic, so the scores are bitwise theirs.
template <int W, Metric M, int R>
__device__ __forceinline__ void exact_scores(const HwWave<W>& wv, const float* const (&x)[R], const float* q,
                                             std::size_t dim, float (&out)[R]) {
  float acc[R];
#pragma unroll
  for (int r = 0; r < R; ++r) acc[r] = 0.0f;
  for (std::size_t c = std::size_t(wv.lane()); c < dim / 4; c += W) {
    float4 xv[R];
#pragma unroll
    for (int r = 0; r < R; ++r)
      xv[r] = x[r] != nullptr ? __ldg(reinterpret_cast<const float4*>(x[r]) + c) : make_float4(0.f, 0.f, 0.f, 0.f);
    const float4 qv = reinterpret_cast<const float4*>(q)[c];
#pragma unroll
    for (int r = 0; r < R; ++r) {
      acc[r] = step<M>(acc[r], qv.x, xv[r].x);
      acc[r] = step<M>(acc[r], qv.y, xv[r].y);
      acc[r] = step<M>(acc[r], qv.z, xv[r].z);
      acc[r] = step<M>(acc[r], qv.w, xv[r].w);
    }
  }
#pragma unroll
  for (int r = 0; r < R; ++r) out[r] = finish<M>(wave_reduce<M>(wv, acc[r]));
}

// The least exact score a row can have whose fp16-copy score (true units) is at least sw, under
// the host's bounds (CudaFlatStore::single_screen): L2 (1 - g) max(0, sqrt(sw / (1 + g)) - e)^2;
// inner product sw - e; cosine 1 + sw - e (sw being -dot).
__device__ __forceinline__ double screen_lower(bool l2, int exact_metric, double sw, double g, double e) {
  if (l2) {
    const double r = sqrt(fmax(sw, 0.0) / (1.0 + g)) - e;
    return r > 0.0 ? (1.0 - g) * r * r : 0.0;
  }
  return sw - e + (exact_metric == int(Metric::Cosine) ? 1.0 : 0.0);
}

// The large-k screen's verdict (one thread): `approx_last` is the copy's m-th best key (rows
// outside the m - 1 re-scored candidates score at least that), `exact` the k best exact keys of
// the candidates, sorted. Where the bound cannot prove them the k best of all rows, rows[0] =
// kScreenInconclusive (the results were written before, by launch_finalize).
__global__ void screen_check_kernel(const uint64_t* approx_last, const uint64_t* exact, int k, int l2,
                                    int exact_metric, double score_scale, double g, double e, int64_t* rows) {
  const uint64_t last = *approx_last, kth = exact[k - 1];
  bool sure = last == kEmptyKey;  // fewer than m live rows: every one was re-scored
  if (!sure && kth != kEmptyKey)
    sure = screen_lower(l2 != 0, exact_metric, double(key_score(last)) * score_scale, g, e) > double(key_score(kth));
  if (!sure) rows[0] = kScreenInconclusive;
}

// The end of a screened single query, in the last block: `best` (wave 0, lane i the i-th) holds
// the W best rows by their fp16 copy's scores. Each is re-scored from its fp32 row (q: the fp32
// query in shared memory); the k best of those are the exact answer when no row outside the list
// can beat the k-th of them. Every outside row's copy score is at least s_W, the list's last,
// so its exact score is at least
//   inner product: s_W - bound_e (cosine: 1 + s_W - bound_e, s_W being -dot);
//   L2: (1 - g) (max(0, sqrt(s_W / (1 + g)) - bound_e))^2, g = bound_g
// (the host's bounds, see CudaFlatStore::single_query), and the answer stands when that exceeds
// the k-th exact score. Otherwise the first result row is kScreenInconclusive and the caller
// scans the fp32 rows. Wave 0 writes the results; every thread of the block must call this.
template <int W, Metric M>
__device__ __forceinline__ void screen_finish(const HwWave<W>& wv, const FusedArgs& a, uint64_t best, uint64_t* sh,
                                              const float* q, int wave_id, unsigned* tk) {
  constexpr int kWaves = kScanThreads / W;
  const int lane = wv.lane();
  __syncthreads();  // sh may still be read by wave 0 of the last merge
  if (wave_id == 0) sh[lane] = best;
  __syncthreads();
  // Wave w re-scores list entries w, w + kWaves, ... (kPer of them, loads in flight together).
  constexpr int kPer = W / kWaves;
  const float* x[kPer];
  float sc[kPer];
#pragma unroll
  for (int r = 0; r < kPer; ++r) {
    const uint64_t key = sh[wave_id + r * kWaves];
    x[r] = key == kEmptyKey ? nullptr : a.exact_rows + std::size_t(key_row(key)) * a.dim;
  }
  if constexpr (M == Metric::L2)
    exact_scores<W, Metric::L2, kPer>(wv, x, q, a.dim, sc);
  else if (a.exact_metric == int(Metric::Cosine))
    exact_scores<W, Metric::Cosine, kPer>(wv, x, q, a.dim, sc);
  else
    exact_scores<W, Metric::InnerProduct, kPer>(wv, x, q, a.dim, sc);
  if (lane == 0) {
#pragma unroll
    for (int r = 0; r < kPer; ++r) {
      const int j = wave_id + r * kWaves;
      sh[W + j] = x[r] == nullptr ? kEmptyKey : make_key(sc[r], key_row(sh[j]));
    }
  }
  __syncthreads();
  if (wave_id != 0) return;
  const uint64_t mine = wave::sort_lanes(wv, sh[W + lane]);  // lane i: the i-th exact key
  const uint64_t kth = wv.shfl(mine, a.k - 1), last = sh[W - 1];
  bool sure = last == kEmptyKey;  // fewer than W rows scored: all of them are in the list
  if (!sure && kth != kEmptyKey)
    sure = screen_lower(M == Metric::L2, a.exact_metric, double(key_score(last)) * a.score_scale, a.bound_g,
                        a.bound_e) > double(key_score(kth));
  if (lane < a.k) {
    const float inf = __int_as_float(0x7f800000);
    const float sc = mine == kEmptyKey ? inf : key_score(mine);
    const int64_t row = mine == kEmptyKey ? -1 : int64_t(key_row(mine));
    write_result(a, std::size_t(lane), lane == 0 && !sure ? kScreenInconclusive : row, a.negate ? -sc : sc);
  }
  if (lane == 0) tk[0] = 0;
}

// The fused kernel's body for waves of W lanes (see scan_select_kernel).
template <int W, Metric M, ScalarType S, bool VEC>
__device__ __forceinline__ void scan_select_body(const FusedArgs& args) {
  using T = typename Elem<S>::T;
  extern __shared__ float4 q_shared[];  // the query, dim floats (the screen: then the fp32 query)
  __shared__ uint64_t lists[kScanThreads];
  __shared__ bool last_block;
  const void* const base = args.base;
  const std::size_t n = args.n, dim = args.dim;
  const int split = args.split, pipe = args.pipe;
  const HwWave<W> wv;
  constexpr int kWaves = kScanThreads / W;
  const int lane = wv.lane();
  const int wave_id = int(threadIdx.x) / W;
  float* const q = reinterpret_cast<float*>(q_shared);
  if (args.queries != nullptr) {
    const float* src = args.queries + std::size_t(blockIdx.y) * dim;
    for (std::size_t j = threadIdx.x; j < dim; j += kScanThreads) q[j] = __ldg(src + j);
  } else {
    for (std::size_t j = threadIdx.x; j < dim; j += kScanThreads) q[j] = args.qv[j] * args.qscale;  // exact
    if (args.exact_rows != nullptr)
      for (std::size_t j = threadIdx.x; j < dim; j += kScanThreads) q[dim + j] = args.qv[j];
  }
  __syncthreads();
  // split (uniform): 16-lane parts of the wave take separate rows (see accumulate_rows).
  const int half = split ? lane >> 4 : 0;
  const int sublane = split ? lane & 15 : lane;
  const int stride = split ? 16 : W;
  const std::size_t step_rows = std::size_t(split ? (W / 16) * kFG : kFG);
  const std::size_t groups = (n + step_rows - 1) / step_rows;
  const std::size_t waves = std::size_t(gridDim.x) * kWaves;
  uint64_t list = kEmptyKey, worst = kEmptyKey;
  // Only the k best are asked for: a key enters only when it beats the k-th (fewer insertions).
  const int last = min(max(args.list_k, 1), W) - 1;
  float* const scores = args.scores == nullptr ? nullptr : args.scores + std::size_t(blockIdx.y) * n;
  // Reduces the kFG partial sums of rows r0.. (nr of them) and offers their keys (or writes
  // their scores). A reduce-scatter: the first two butterfly levels each hand half of the
  // values to the partner lane (lanes keep rows {0,1} or {2,3}, then one row), the remaining
  // levels reduce the one value left. Every level combines the same two partial sums as the
  // plain butterfly of each row (over offsets W / 2..1, or 8..1 within a 16-lane part) and
  // combine is commutative, so the sums are bitwise those of wave_reduce: at W = 32, 6
  // shuffles for 4 rows, not 20.
  static_assert(kFG == 4, "the reduce-scatter below is written for 4 rows per step");
  const int off_a = split ? 8 : W / 2, off_b = off_a >> 1;
  const bool hi_a = (lane & off_a) != 0, hi_b = (lane & off_b) != 0;
  const int my_row = (hi_a ? 2 : 0) + (hi_b ? 1 : 0);
  const bool offers = (lane & (off_b - 1)) == 0;  // one lane per row offers its key
  // Keys wait in `pending` (one per lane) until a batch of W is gathered, which then enters the
  // list at once (wave::list_merge_batch): step s of a batch puts the offering lanes' keys (every
  // off_b-th lane) at lanes (lane & ~(off_b - 1)) + s.
  uint64_t pending = kEmptyKey;
  int fill = 0;
  const int gather_from = lane & ~(off_b - 1), gather_slot = lane & (off_b - 1);
  auto emit = [&](std::size_t r0, int nr, float (&acc)[kFG]) {
    const float s0 = hi_a ? acc[0] : acc[2], s1 = hi_a ? acc[1] : acc[3];
    const float k0 = hi_a ? acc[2] : acc[0], k1 = hi_a ? acc[3] : acc[1];
    const float b0 = combine<M>(k0, wv.shfl_xor(s0, off_a));
    const float b1 = combine<M>(k1, wv.shfl_xor(s1, off_a));
    float v = combine<M>(hi_b ? b1 : b0, wv.shfl_xor(hi_b ? b0 : b1, off_b));
#pragma unroll
    for (int off = W / 8; off > 0; off >>= 1)
      if (off < off_b) v = combine<M>(v, wv.shfl_xor(v, off));
    const std::size_t row = r0 + std::size_t(my_row);
    uint64_t key = kEmptyKey;
    if (offers && my_row < nr) {
      if (scores != nullptr)
        scores[row] = finish<M>(v);
      else if (!is_deleted(args.deleted, row))
        key = make_key(finish<M>(v), uint32_t(row));
    }
    if (scores == nullptr) {
      const uint64_t got = wv.shfl(key, gather_from);
      if (gather_slot == fill) pending = got;
      if (++fill == off_b) {
        wave::list_merge_batch(wv, pending, list, worst, last);
        pending = kEmptyKey;
        fill = 0;
      }
    }
  };
  const std::size_t g0 = std::size_t(blockIdx.x) * kWaves + std::size_t(wave_id);
  constexpr bool kPipe = VEC;
  if constexpr (kPipe) {
    constexpr int V = Elem<S>::kVec;
    const std::size_t chunks = dim / V;
    if (pipe && chunks <= std::size_t(stride)) {
      // At most one 16-byte chunk per lane and row: the next step's rows are loaded (raw)
      // before this step's are reduced, so each wave keeps a step of loads in flight. The
      // arithmetic per row is accumulate_rows' exactly (same elements, same order).
      const bool active = std::size_t(sublane) < chunks;
      float qf[V];
#pragma unroll
      for (int e = 0; e < V; ++e) qf[e] = active ? q[std::size_t(sublane) * V + std::size_t(e)] : 0.0f;
      auto load = [&](std::size_t g, uint4 (&raw)[kFG]) {
        const std::size_t r0 = g * step_rows + std::size_t(half) * kFG;
#pragma unroll
        for (int i = 0; i < kFG; ++i) {
          const std::size_t row = r0 + std::size_t(i);
          raw[i] = (g < groups && active && row < n)
                       ? __ldg(reinterpret_cast<const uint4*>(static_cast<const T*>(base) + row * dim +
                                                              std::size_t(sublane) * V))
                       : make_uint4(0u, 0u, 0u, 0u);
        }
      };
      uint4 cur[kFG];
      load(g0, cur);
      for (std::size_t g = g0; g < groups; g += waves) {
        uint4 nxt[kFG];
        load(g + waves, nxt);
        const std::size_t r0 = g * step_rows + std::size_t(half) * kFG;
        const int nr = r0 < n ? int(min(std::size_t(kFG), n - r0)) : 0;
        float acc[kFG];
#pragma unroll
        for (int i = 0; i < kFG; ++i) {
          acc[i] = 0.0f;
          if (active) {
            float xv[V];
            Elem<S>::cvt16(cur[i], xv);
#pragma unroll
            for (int e = 0; e < V; ++e) acc[i] = step<M>(acc[i], qf[e], xv[e]);
          }
        }
        emit(r0, nr, acc);
#pragma unroll
        for (int i = 0; i < kFG; ++i) cur[i] = nxt[i];
      }
    }
  }
  if (!(kPipe && pipe && dim / Elem<S>::kVec <= std::size_t(stride))) {
    for (std::size_t g = g0; g < groups; g += waves) {
      const std::size_t r0 = g * step_rows + std::size_t(half) * kFG;
      const int nr = r0 < n ? int(min(std::size_t(kFG), n - r0)) : 0;
      float acc[kFG];
      accumulate_rows<M, S, VEC>(static_cast<const T*>(base) + min(r0, n - 1) * dim, nr, q, dim, sublane, stride,
                                 acc);
      emit(r0, nr, acc);
    }
  }
  if (scores != nullptr) return;
  wave::list_merge_batch(wv, pending, list, worst, last);  // the last, partial batch
  // The block's wave lists, merged into wave 0.
  lists[threadIdx.x] = list;
  const uint64_t block_best = merge_shared_lists(wv, lists, wave_id, kWaves);
  uint64_t* const out = args.out + std::size_t(blockIdx.y) * args.out_ld;
  if (wave_id == 0) {
    out[std::size_t(blockIdx.x) * W + std::size_t(lane)] = block_best;
    __threadfence();  // the list is visible to every block before this block's ticket is
  }
  // The last block to finish (a ticket per query, left at zero for the next launch) merges the
  // block lists and writes the results.
  unsigned* const tk = args.tickets + std::size_t(blockIdx.y) * kTicketsLd;
  __syncthreads();
  if (threadIdx.x == 0) last_block = atomicAdd(tk, 1u) == gridDim.x - 1;
  __syncthreads();
  if (!last_block) return;
  // (No fence here: every list was fenced before its block's ticket, and this block reads them
  // past the per-SM cache.)
  __shared__ uint16_t pick[W];
  __shared__ unsigned picked;
  const uint64_t best = merge_block_lists(wv, out, gridDim.x, lists, pick, picked, wave_id);
  if constexpr (S == ScalarType::F16 && VEC && (M == Metric::L2 || M == Metric::InnerProduct)) {
    if (args.exact_rows != nullptr) {
      screen_finish<W, M>(wv, args, best, lists, q + dim, wave_id, tk);
      return;
    }
  }
  if (wave_id == 0) {
    if (lane < args.k) {
      const float inf = __int_as_float(0x7f800000);
      const float s = best == kEmptyKey ? inf : key_score(best);
      write_result(args, std::size_t(blockIdx.y) * std::size_t(args.k) + std::size_t(lane),
                   best == kEmptyKey ? -1 : int64_t(key_row(best)), args.negate ? -s : s);
    }
    if (lane == 0) tk[0] = 0;
  }
}

template <int W, Metric M, ScalarType S, bool VEC>
__global__ void __launch_bounds__(kScanThreads, fused_blocks_per_sm(S)) scan_select_kernel(const FusedArgs args) {
  if constexpr (wave_compiled<W>()) scan_select_body<W, M, S, VEC>(args);
}

// One wave per (query, candidate slot).
template <int W, Metric M, ScalarType S, bool VEC>
__global__ void __launch_bounds__(kScanThreads) rescore_kernel(const void* base, std::size_t dim, const float* queries,
                                                               std::size_t nq, uint64_t* keys, std::size_t len,
                                                               std::size_t ld) {
  if constexpr (wave_compiled<W>()) {
    using T = typename Elem<S>::T;
    const HwWave<W> wv;
    const int lane = wv.lane();
    const std::size_t waves = std::size_t(gridDim.x) * (kScanThreads / W);
    for (std::size_t w = (std::size_t(blockIdx.x) * blockDim.x + threadIdx.x) / W; w < nq * len; w += waves) {
      const std::size_t qi = w / len, j = w % len;
      uint64_t* slot = keys + qi * ld + j;
      const uint64_t key = *slot;
      if (key == kEmptyKey) continue;  // uniform across the wave
      const uint32_t row = key_row(key);
      float acc[kQT];
#pragma unroll
      for (int i = 0; i < kQT; ++i) acc[i] = 0.0f;
      accumulate<W, M, S, VEC>(static_cast<const T*>(base) + std::size_t(row) * dim, queries + qi * dim, dim, 1, lane,
                               acc);
      const float v = wave_reduce<M>(wv, acc[0]);
      wv.sync();  // every lane has read *slot before lane 0 rewrites it
      if (lane == 0) *slot = make_key(finish<M>(v), row);
    }
  }
}

// The screen's candidate lists re-scored (keys[q * ld + j] for j < min(counts[q], cap) hold
// rows; the slots after them up to cap are made empty, so the caller need not clear the lists
// before the screen fills them), bitwise as rescore_kernel: a row's 16-byte chunks (at most G of
// them) go one per lane of a G-lane group, and the group's butterfly first adds the zeros of the
// W - G lanes that rescore_kernel's W-lane butterfly would combine with (chunks <= G: those lanes
// hold none).
// rescore_kernel spends a wave and two dependent loads per slot up to the longest list; here a
// block takes a query, skips empty slots and keeps U rows per group in flight. L2, inner product,
// cosine (combine is an add), 16-byte loads.
template <int W, Metric M, ScalarType S>
__global__ void __launch_bounds__(kScanThreads)
    rescore_lists_kernel(const void* base, std::size_t dim, const float* queries, std::size_t nq, uint64_t* keys,
                         std::size_t ld, const uint32_t* counts, std::size_t cap, int G) {
  if constexpr (wave_compiled<W>()) {
    using E = Elem<S>;
    using T = typename E::T;
    constexpr int V = E::kVec, U = 4;
    const HwWave<W> wv;
    const int lane = wv.lane(), sub = lane & (G - 1);
    const int group = int(threadIdx.x) / G, groups = kScanThreads / G;
    const bool active = std::size_t(sub) < dim / V;
    for (std::size_t qi = blockIdx.x; qi < nq; qi += gridDim.x) {
      const std::size_t cnt = min(std::size_t(counts[qi]), cap);
      float qf[V];
#pragma unroll
      for (int e = 0; e < V; ++e) qf[e] = active ? __ldg(queries + qi * dim + std::size_t(sub) * V + e) : 0.0f;
      uint64_t* const slots = keys + qi * ld;
      for (std::size_t j0 = 0; j0 < cnt; j0 += std::size_t(groups) * U) {  // uniform across the block
        uint64_t key[U];
        uint4 raw[U];
#pragma unroll
        for (int u = 0; u < U; ++u) {
          const std::size_t j = j0 + std::size_t(u * groups + group);
          key[u] = j < cnt ? slots[j] : kEmptyKey;
        }
#pragma unroll
        for (int u = 0; u < U; ++u)
          raw[u] = key[u] != kEmptyKey && active
                       ? __ldg(reinterpret_cast<const uint4*>(static_cast<const T*>(base) +
                                                              std::size_t(key_row(key[u])) * dim + std::size_t(sub) * V))
                       : make_uint4(0u, 0u, 0u, 0u);
        wv.sync();  // every lane has read its slots before any is rewritten
#pragma unroll
        for (int u = 0; u < U; ++u) {
          float acc = 0.0f;
          if (active) {
            float xv[V];
            E::cvt16(raw[u], xv);
#pragma unroll
            for (int e = 0; e < V; ++e) acc = step<M>(acc, qf[e], xv[e]);
          }
          float v = acc;
#pragma unroll
          for (int off = W / 2; off > 0; off >>= 1) v = combine<M>(v, off >= G ? 0.0f : wv.shfl_xor(v, off));
          if (sub == 0 && key[u] != kEmptyKey)
            slots[j0 + std::size_t(u * groups + group)] = make_key(finish<M>(v), key_row(key[u]));
        }
      }
      for (std::size_t j = cnt + threadIdx.x; j < cap; j += kScanThreads) slots[j] = kEmptyKey;
    }
  }
}

template <int W, bool VEC>
__global__ void __launch_bounds__(kScanThreads) rescore_bits_kernel(const void* base, std::size_t nbytes,
                                                                    const uint8_t* queries, std::size_t nq,
                                                                    uint64_t* keys, std::size_t len, std::size_t ld) {
  if constexpr (wave_compiled<W>()) {
    const HwWave<W> wv;
    const int lane = wv.lane();
    const std::size_t waves = std::size_t(gridDim.x) * (kScanThreads / W);
    for (std::size_t w = (std::size_t(blockIdx.x) * blockDim.x + threadIdx.x) / W; w < nq * len; w += waves) {
      const std::size_t qi = w / len, j = w % len;
      uint64_t* slot = keys + qi * ld + j;
      const uint64_t key = *slot;
      if (key == kEmptyKey) continue;
      const uint32_t row = key_row(key);
      uint32_t acc[kQT] = {};
      accumulate_bits<W, VEC>(static_cast<const uint8_t*>(base) + std::size_t(row) * nbytes, queries + qi * nbytes,
                              nbytes, 1, lane, acc);
      const uint32_t v = wave_sum(wv, acc[0]);
      wv.sync();
      if (lane == 0) *slot = make_key(float(v), row);
    }
  }
}

// Blocks for `waves_of_work` waves of W lanes (at most 8192: the kernels loop).
unsigned grid_for(std::size_t waves_of_work, int w) {
  const std::size_t per_block = std::size_t(kScanThreads / w);
  const std::size_t blocks = (waves_of_work + per_block - 1) / per_block;
  return unsigned(blocks < 1 ? 1 : blocks > 8192 ? 8192 : blocks);
}

bool vec_ok(const ScanArgs& a) {
  switch (a.storage) {
    case ScalarType::F32: return a.dim % 4 == 0;
    case ScalarType::F16:
    case ScalarType::BF16: return a.dim % 8 == 0;
    case ScalarType::Bits: return (a.dim / 8) % 4 == 0;
  }
  return false;
}

// Calls f.template operator()<M, S, VEC>() for the configuration in a (bounded set of
// instantiations: 5 float metrics x 3 storages x 2).
template <class F>
void dispatch_float(const ScanArgs& a, F&& f) {
  const bool vec = vec_ok(a);
  auto by_storage = [&]<Metric M>() {
    switch (a.storage) {
      case ScalarType::F32:
        vec ? f.template operator()<M, ScalarType::F32, true>() : f.template operator()<M, ScalarType::F32, false>();
        return;
      case ScalarType::F16:
        vec ? f.template operator()<M, ScalarType::F16, true>() : f.template operator()<M, ScalarType::F16, false>();
        return;
      case ScalarType::BF16:
        vec ? f.template operator()<M, ScalarType::BF16, true>() : f.template operator()<M, ScalarType::BF16, false>();
        return;
      case ScalarType::Bits: break;
    }
    throw Error(ErrorCode::Internal, "CUDA scan: packed-bit storage with a float metric");
  };
  switch (a.metric) {
    case Metric::L2: by_storage.template operator()<Metric::L2>(); return;
    case Metric::InnerProduct: by_storage.template operator()<Metric::InnerProduct>(); return;
    case Metric::Cosine: by_storage.template operator()<Metric::Cosine>(); return;
    case Metric::L1: by_storage.template operator()<Metric::L1>(); return;
    case Metric::Linf: by_storage.template operator()<Metric::Linf>(); return;
    case Metric::Hamming: break;
  }
  throw Error(ErrorCode::Internal, "CUDA scan: unexpected metric");
}

}  // namespace

void launch_scan(const ScanArgs& a, cudaStream_t stream) {
  if (a.n == 0 || a.nq == 0) return;
  const std::size_t groups = (a.nq + kQT - 1) / kQT;
  if (groups > 65535) throw Error(ErrorCode::Internal, "CUDA scan: too many queries in one launch");
  with_wave([&]<int W>() {
    const dim3 grid{grid_for(a.n, W), unsigned(groups), 1u};
    if (a.metric == Metric::Hamming) {
      const auto* q = static_cast<const uint8_t*>(a.queries);
      if (vec_ok(a))
        scan_bits_kernel<W, true><<<grid, kScanThreads, 0, stream>>>(a.base, a.n, a.dim / 8, q, int(a.nq), a.scores,
                                                                     a.ld);
      else
        scan_bits_kernel<W, false><<<grid, kScanThreads, 0, stream>>>(a.base, a.n, a.dim / 8, q, int(a.nq), a.scores,
                                                                      a.ld);
    } else {
      dispatch_float(a, [&]<Metric M, ScalarType S, bool VEC>() {
        scan_kernel<W, M, S, VEC><<<grid, kScanThreads, 0, stream>>>(a.base, a.n, a.dim,
                                                                     static_cast<const float*>(a.queries), int(a.nq),
                                                                     a.scores, a.ld);
      });
    }
  });
  check(cudaGetLastError(), "scan kernel launch");
}

std::size_t scan_select_blocks(std::size_t n, ScalarType storage) {
  const int m = sm_count();
  // At least `steps` steps of kFG rows per wave (warp); at most one launch wave (the resident
  // blocks per SM of the kernel's launch bound). Below 65 536 rows 2 steps (more blocks, so each
  // wave waits on
  // fewer loads in turn; with the one-group merge, 1 000 rows went from 23 to 17 us on an H100),
  // above it 8 (fewer block lists to merge). HIVE_GPU_CUDA_FUSED_STEPS overrides both.
  static const long forced = [] {
    const char* v = std::getenv("HIVE_GPU_CUDA_FUSED_STEPS");
    return v != nullptr ? std::atol(v) : 0L;
  }();
  const std::size_t steps = forced > 0 ? std::size_t(forced) : n < 65536 ? 2 : 8;
  const std::size_t per_block = std::size_t(kScanThreads / wave_size()) * kFG * steps;
  const std::size_t resident = std::size_t(m) * std::size_t(fused_blocks_per_sm(storage));
  return std::clamp<std::size_t>((n + per_block - 1) / per_block, 1,
                                 std::min(resident, std::size_t(kHeadRounds) * kScanThreads));  // merge_block_lists
}

std::size_t fused_lists_ld(std::size_t blocks) { return blocks * std::size_t(wave_size()); }

void FusedGraph::reset() {
#if !defined(HIVE_GPU_HIP)
  if (exec != nullptr) cudaGraphExecDestroy(static_cast<cudaGraphExec_t>(exec));
  if (graph != nullptr) cudaGraphDestroy(static_cast<cudaGraph_t>(graph));
#endif
  func = nullptr;
  grid_x = grid_y = 0;
  smem = 0;
  graph = node = exec = nullptr;
}

namespace {
#if !defined(HIVE_GPU_HIP)
// The fused kernel `func` launched through g (see FusedGraph): the graph is made again when the
// kernel or its shape changed, else only its node's parameters are set.
void launch_through_graph(FusedGraph& g, const void* func, dim3 grid, std::size_t smem, FusedArgs& f,
                          cudaStream_t stream) {
  void* params[] = {&f};
  cudaKernelNodeParams kp{};
  kp.func = const_cast<void*>(func);
  kp.gridDim = grid;
  kp.blockDim = dim3(kScanThreads, 1, 1);
  kp.sharedMemBytes = unsigned(smem);
  kp.kernelParams = params;
  if (g.exec == nullptr || g.func != func || g.grid_x != grid.x || g.grid_y != grid.y || g.smem != smem) {
    g.reset();
    cudaGraph_t graph = nullptr;
    cudaGraphNode_t node = nullptr;
    cudaGraphExec_t exec = nullptr;
    check(cudaGraphCreate(&graph, 0), "cudaGraphCreate");
    g.graph = graph;
    check(cudaGraphAddKernelNode(&node, graph, nullptr, 0, &kp), "cudaGraphAddKernelNode");
    g.node = node;
    check(cudaGraphInstantiate(&exec, graph, 0), "cudaGraphInstantiate");
    g.exec = exec;
    g.func = func;
    g.grid_x = grid.x;
    g.grid_y = grid.y;
    g.smem = smem;
  } else {
    check(cudaGraphExecKernelNodeSetParams(static_cast<cudaGraphExec_t>(g.exec), static_cast<cudaGraphNode_t>(g.node),
                                           &kp),
          "cudaGraphExecKernelNodeSetParams");
  }
  check(cudaGraphLaunch(static_cast<cudaGraphExec_t>(g.exec), stream), "cudaGraphLaunch");
}
#endif
}  // namespace

bool fused_supported(const ScanArgs& a) {
  return a.metric != Metric::Hamming && a.storage != ScalarType::Bits && a.dim * sizeof(float) <= kFusedMaxQueryBytes;
}

void launch_scan_select(const ScanArgs& a, const FusedOutput& o, cudaStream_t stream) {
  if (a.n == 0 || a.nq == 0) return;
  if (!fused_supported(a)) throw Error(ErrorCode::Internal, "CUDA fused scan: unsupported configuration");
  if (a.nq > 65535) throw Error(ErrorCode::Internal, "CUDA fused scan: too many queries in one launch");
  if (o.scores == nullptr && (o.k < 1 || o.k > kFusedMaxK))
    throw Error(ErrorCode::Internal, "CUDA fused scan: k above 32 needs the score output");
  const dim3 grid{unsigned(o.blocks), unsigned(a.nq), 1u};
  // 16-lane split when a row is at most 16 16-byte chunks, and (fp32) loads of the next step
  // issued before the current one is reduced when a row is at most one chunk per lane;
  // HIVE_GPU_CUDA_LEGACY_FUSED=1 keeps the whole-wave-per-row layout without the prefetch.
  static const bool legacy_fused = [] {
    const char* v = std::getenv("HIVE_GPU_CUDA_LEGACY_FUSED");
    return v != nullptr && *v != '\0' && std::strcmp(v, "0") != 0;
  }();
  const std::size_t vec_elems = a.storage == ScalarType::F32 ? 4 : 8;
  FusedArgs f{};
  f.base = a.base;
  f.n = a.n;
  f.dim = a.dim;
  f.queries = static_cast<const float*>(a.queries);
  if (f.queries == nullptr) {
    if (o.host_query == nullptr || a.nq != 1 || a.dim > std::size_t(kParamDims))
      throw Error(ErrorCode::Internal, "CUDA fused scan: no query");
    std::memcpy(f.qv, o.host_query, a.dim * sizeof(float));
  }
  f.deleted = o.deleted;
  f.out = o.lists;
  f.out_ld = o.lists_ld;
  f.split = (!legacy_fused && vec_ok(a) && a.dim / vec_elems <= 16) ? 1 : 0;
  f.pipe = legacy_fused ? 0 : 1;
  f.scores = o.scores;
  f.tickets = o.tickets;
  f.k = o.k;
  f.negate = o.negate ? 1 : 0;
  f.res_rows = o.rows;
  f.res_dist = o.distances;
  f.tagged = o.scores == nullptr ? o.tagged : nullptr;
  if (f.tagged != nullptr && a.nq != 1) throw Error(ErrorCode::Internal, "CUDA fused scan: tagged results of one query only");
  f.seq = o.seq;
  f.list_k = o.k;
  f.qscale = o.qscale;
  std::size_t smem = a.dim * sizeof(float);
  if (o.exact_rows != nullptr) {
    if (a.storage != ScalarType::F16 || !vec_ok(a) || f.queries != nullptr || o.k > kFusedScreenMaxK ||
        (a.metric != Metric::L2 && a.metric != Metric::InnerProduct) || o.scores != nullptr)
      throw Error(ErrorCode::Internal, "CUDA fused scan: unsupported screen configuration");
    f.exact_rows = o.exact_rows;
    f.exact_metric = int(o.exact_metric);
    f.list_k = 1 << 16;  // every wave list keeps all its W keys exact
    f.score_scale = o.score_scale;
    f.bound_g = o.bound_g;
    f.bound_e = o.bound_e;
    smem *= 2;
  }
  with_wave([&]<int W>() {
    dispatch_float(a, [&]<Metric M, ScalarType S, bool VEC>() {
#if !defined(HIVE_GPU_HIP)
      if (o.graph != nullptr && f.tagged != nullptr) {
        launch_through_graph(*o.graph, reinterpret_cast<const void*>(scan_select_kernel<W, M, S, VEC>), grid, smem, f,
                             stream);
        return;
      }
#endif
      scan_select_kernel<W, M, S, VEC><<<grid, kScanThreads, smem, stream>>>(f);
    });
  });
  check(cudaGetLastError(), "fused scan kernel launch");
}

void launch_screen_check(const uint64_t* approx_last, const uint64_t* exact, int k, const FusedOutput& o,
                         Metric scanned, int64_t* rows, cudaStream_t stream) {
  screen_check_kernel<<<1, 1, 0, stream>>>(approx_last, exact, k, scanned == Metric::L2 ? 1 : 0, int(o.exact_metric),
                                           o.score_scale, o.bound_g, o.bound_e, rows);
  check(cudaGetLastError(), "screen check kernel launch");
}

void launch_rescore(const ScanArgs& a, uint64_t* keys, std::size_t len, std::size_t ld, cudaStream_t stream) {
  if (a.nq == 0 || len == 0) return;
  with_wave([&]<int W>() {
    const unsigned grid = grid_for(a.nq * len, W);
    if (a.metric == Metric::Hamming) {
      const auto* q = static_cast<const uint8_t*>(a.queries);
      if (vec_ok(a))
        rescore_bits_kernel<W, true><<<grid, kScanThreads, 0, stream>>>(a.base, a.dim / 8, q, a.nq, keys, len, ld);
      else
        rescore_bits_kernel<W, false><<<grid, kScanThreads, 0, stream>>>(a.base, a.dim / 8, q, a.nq, keys, len, ld);
    } else {
      dispatch_float(a, [&]<Metric M, ScalarType S, bool VEC>() {
        rescore_kernel<W, M, S, VEC><<<grid, kScanThreads, 0, stream>>>(a.base, a.dim,
                                                                        static_cast<const float*>(a.queries), a.nq,
                                                                        keys, len, ld);
      });
    }
  });
  check(cudaGetLastError(), "rescore kernel launch");
}

namespace {
// The lanes a row takes in rescore_lists_kernel, or 0 where that kernel does not apply.
int rescore_lists_group(const ScanArgs& a, int w) {
  const bool add_metric = a.metric == Metric::L2 || a.metric == Metric::InnerProduct || a.metric == Metric::Cosine;
  const std::size_t chunks = vec_ok(a) ? a.dim / (a.storage == ScalarType::F32 ? 4 : 8) : 0;
  if (!add_metric || a.storage == ScalarType::Bits || chunks == 0 || chunks > std::size_t(w)) return 0;
  const int G = chunks <= 16 ? 16 : 32 <= w ? 32 : w;
  return chunks > std::size_t(G) || G > w ? 0 : G;
}
}  // namespace

bool rescore_lists_clears(const ScanArgs& a) { return rescore_lists_group(a, wave_size()) != 0; }

void launch_rescore_lists(const ScanArgs& a, uint64_t* keys, std::size_t ld, const uint32_t* counts, std::size_t len,
                          cudaStream_t stream) {
  if (a.nq == 0 || len == 0) return;
  bool done = false;
  with_wave([&]<int W>() {
    const int G = rescore_lists_group(a, W);
    if (G == 0) return;
    const unsigned grid = unsigned(std::min<std::size_t>(a.nq, 65535));
    dispatch_float(a, [&]<Metric M, ScalarType S, bool VEC>() {
      if constexpr (VEC && (M == Metric::L2 || M == Metric::InnerProduct || M == Metric::Cosine)) {
        rescore_lists_kernel<W, M, S><<<grid, kScanThreads, 0, stream>>>(
            a.base, a.dim, static_cast<const float*>(a.queries), a.nq, keys, ld, counts, len, G);
        done = true;
      }
    });
  });
  if (done)
    check(cudaGetLastError(), "rescore lists kernel launch");
  else
    launch_rescore(a, keys, len, ld, stream);
}

}  // namespace hive::gpu::HIVE_GPU_DEVICE_NS
