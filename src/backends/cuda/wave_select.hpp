// Wave-level building blocks of the select kernels, written once for any wave width W (32 on
// NVIDIA and RDNA, 64 on GCN/CDNA) and any implementation of the wave operations: the GPU's
// (HwWave in wave.cuh) or a CPU emulation that runs W threads in lock-step (the unit test
// tests/unit/test_wave_select.cpp), so the same source is checked with both widths on any CPU.
//
// A wave type Wv provides:
//   static constexpr int kWidth;            W, a power of two
//   using Mask;                             an unsigned integer of at least W bits
//   int lane() const;                       0 .. W - 1
//   T shfl(T v, int src) const;             v of lane src
//   T shfl_xor(T v, int m) const;           v of lane (lane ^ m)
//   T shfl_up(T v, int d) const;            v of lane - d (own v where lane < d)
//   Mask ballot(bool p) const;              bit i set where lane i's p is true
//   static int popc(Mask m), lowest(Mask m) population count, index of the lowest set bit
// and every lane of the wave must call each operation together (no divergence around them).
#pragma once
#include <cstdint>

#if defined(__CUDACC__) || defined(__HIPCC__)
#define HIVE_WAVE_FN __device__ __forceinline__
#define HIVE_WAVE_UNROLL _Pragma("unroll")
#else
#define HIVE_WAVE_FN inline
#define HIVE_WAVE_UNROLL
#endif

namespace hive::gpu::wave {

// Butterfly reduction with f (commutative): every lane ends with the same (bitwise) value,
// the partial sums combined in the same order on every lane.
template <class Wv, class T, class F>
HIVE_WAVE_FN T butterfly(const Wv& wv, T v, F f) {
HIVE_WAVE_UNROLL
  for (int off = Wv::kWidth / 2; off > 0; off >>= 1) v = f(v, wv.shfl_xor(v, off));
  return v;
}

// Inclusive prefix sum over the lanes.
template <class Wv>
HIVE_WAVE_FN uint32_t inclusive_scan(const Wv& wv, uint32_t x) {
HIVE_WAVE_UNROLL
  for (int off = 1; off < Wv::kWidth; off <<= 1) {
    const uint32_t y = wv.shfl_up(x, off);
    if (wv.lane() >= off) x += y;
  }
  return x;
}

// A wave-wide sorted list of W R keys (ascending, smaller is better): lane L holds entries
// L R .. L R + R - 1 in `list`. Only the first (last_lane + 1) R entries are kept exact, where
// `worst` (entry (last_lane + 1) R - 1, the same in every lane) is the entry threshold; the
// entries after them hold larger keys that were offered, still in order, so merging such lists
// keeps the best of the union. Every lane offers one key (~0 offers nothing); a key enters only
// when it beats `worst`, by a shift of the entries after its place. Keys are unique (the row
// is in the low half), so ties never arise.
template <int R, class Wv>
HIVE_WAVE_FN void list_offer(const Wv& wv, uint64_t key, uint64_t (&list)[R], uint64_t& worst, int last_lane) {
  const int lane = wv.lane();
  typename Wv::Mask m = wv.ballot(key < worst);
  while (m != 0) {
    const int src = Wv::lowest(m);
    m &= m - 1;
    const uint64_t nk = wv.shfl(key, src);
    if (nk < worst) {  // uniform: worst is the same in every lane
      int pos = 0;
HIVE_WAVE_UNROLL
      for (int j = 0; j < R; ++j) pos += Wv::popc(wv.ballot(list[j] < nk));
      const uint64_t carry = wv.shfl_up(list[R - 1], 1);
HIVE_WAVE_UNROLL
      for (int j = R - 1; j >= 0; --j) {
        const int g = lane * R + j;
        if (g > pos)
          list[j] = j > 0 ? list[j - 1] : carry;
        else if (g == pos)
          list[j] = nk;
      }
      worst = wv.shfl(list[R - 1], last_lane);
    }
  }
}

// The W best of two wave-wide sorted lists of W keys (lane i holds entry i of each), sorted:
// b reversed against a gives a bitonic sequence holding the W smallest, which the
// half-cleaners (strides W / 2 .. 1) sort. No serial insertion: the cost is data-independent.
template <class Wv>
HIVE_WAVE_FN uint64_t merge_lists(const Wv& wv, uint64_t a, uint64_t b) {
  const int lane = wv.lane();
  const uint64_t rb = wv.shfl(b, Wv::kWidth - 1 - lane);
  uint64_t m = a < rb ? a : rb;
HIVE_WAVE_UNROLL
  for (int off = Wv::kWidth / 2; off > 0; off >>= 1) {
    const uint64_t p = wv.shfl_xor(m, off);
    m = (lane & off) ? (m > p ? m : p) : (m < p ? m : p);
  }
  return m;
}

// The wave's W keys (one per lane, any order) sorted ascending, lane i ending with the i-th:
// a bitonic network, log2(W) (log2(W) + 1) / 2 compare-exchange steps whatever the keys.
template <class Wv>
HIVE_WAVE_FN uint64_t sort_lanes(const Wv& wv, uint64_t v) {
  const int lane = wv.lane();
HIVE_WAVE_UNROLL
  for (int size = 2; size <= Wv::kWidth; size <<= 1) {
HIVE_WAVE_UNROLL
    for (int stride = size / 2; stride > 0; stride >>= 1) {
      const uint64_t p = wv.shfl_xor(v, stride);
      const bool ascending = (lane & size) == 0, lower = (lane & stride) == 0;
      v = lower == ascending ? (v < p ? v : p) : (v > p ? v : p);
    }
  }
  return v;
}

// A batch of keys, one per lane (any order; ~0 offers nothing), into a wave-wide sorted list of
// W keys (list_offer's layout with R = 1, lane L holding entry L; the same exactness: the first
// last_lane + 1 entries are the best of all keys offered, the rest larger ones in order): the
// keys that beat `worst` are sorted across the lanes and merged with the list, then `worst` is
// entry last_lane again. Nothing happens when none beats it. A fixed log2(W) (log2(W) + 1) / 2 +
// log2(W) + 2 shuffles per batch, where list_offer takes ~5 wave operations for every key that
// enters: the fused scan gathers its keys into batches (while the lists fill, every key enters).
template <class Wv>
HIVE_WAVE_FN void list_merge_batch(const Wv& wv, uint64_t batch, uint64_t& list, uint64_t& worst, int last_lane) {
  const bool enters = batch < worst;
  if (wv.ballot(enters) == 0) return;
  list = merge_lists(wv, list, sort_lanes(wv, enters ? batch : ~uint64_t(0)));
  worst = wv.shfl(list, last_lane);
}

}  // namespace hive::gpu::wave
