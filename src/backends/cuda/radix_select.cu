// CUDA backend: exact top-k by radix selection over the 64-bit keys (score order, row).
// Three histogram passes find the threshold score (11, 11, 10 bits from the top); each pass is
// one launch whose last block to finish scans the histogram and narrows the per-query state,
// and later passes return at once when the threshold is already known. A gather then collects
// the exactly min(k, live) keys at or below it, and a rank kernel writes them sorted. Ties on
// the threshold score (more rows than are left to fill) go to the smallest rows, found in the
// gather by a decoupled look-back scan over row-ordered tiles.
#include <algorithm>
#include <string>

#include "backends/cuda/cuda_common.hpp"
#include "backends/cuda/device_util.cuh"
#include "backends/cuda/kernels.hpp"
#include "backends/cuda/radix_select.hpp"

namespace hive::gpu::HIVE_GPU_DEVICE_NS {
namespace {

using namespace dev;

constexpr int kThreads = 512;  // pass and gather blocks
constexpr int kMaxWaves = kThreads / 32;  // waves per block at the narrowest wave
constexpr int kBins = 2048;                // widest digit: 11 bits
constexpr int kTieTile = kThreads * 4;     // rows per tile of the tie scan (4 per thread)
constexpr int kRankThreads = 256;
constexpr int kRankKeys = 32;                             // keys ranked per block
constexpr int kRankParts = kRankThreads / kRankKeys;      // threads sharing one key's comparisons
static_assert(kThreads * 4 == kBins, "the last block scans 4 bins per thread");

struct Digit {
  int lo, width;
};
constexpr Digit kDigits[3] = {{21, 11}, {10, 11}, {0, 10}};

enum : uint32_t { kSearching = 0, kDone = 1, kTies = 2 };

// Per-query state (zeroed by the memset that starts every call).
struct State {
  uint32_t prefix;     // resolved high bits of the threshold's score order
  uint32_t taken;      // live keys whose resolved high bits are below the prefix
  uint32_t mode;       // kSearching, kDone (order <= thr enters), kTies (order < thr, then ties by row)
  uint32_t thr;        // see mode
  uint32_t ticket;     // blocks of the current pass that have finished
  uint32_t count;      // keys gathered
  uint32_t next_tile;  // tile dispenser of the tie scan
  uint32_t pad;
};

// Look-back slot of a tie-scan tile: status in the high half, tied-row count in the low half,
// one 64-bit store so the pair is read consistently.
constexpr uint64_t kAggregate = uint64_t(1) << 32;
constexpr uint64_t kInclusive = uint64_t(2) << 32;

struct Layout {
  std::size_t hist, state, slots, keys, ctrl_bytes, total, tiles;
};

constexpr std::size_t align256(std::size_t b) { return (b + 255) / 256 * 256; }

Layout layout(std::size_t nq, std::size_t n, int k) {
  Layout l{};
  l.tiles = std::max<std::size_t>(1, (n + kTieTile - 1) / kTieTile);
  l.hist = 0;
  l.state = align256(nq * kBins * sizeof(uint32_t));
  l.slots = align256(l.state + nq * sizeof(State));
  l.ctrl_bytes = align256(l.slots + nq * l.tiles * sizeof(uint64_t));
  l.keys = l.ctrl_bytes;
  l.total = l.keys + nq * std::size_t(k) * sizeof(uint64_t);
  return l;
}

// One query's rows: `head` scalar rows until the row pointer is 16-byte aligned, then `groups`
// float4 groups, then the (< 4) rows after them.
struct Rows {
  const float* p;
  std::size_t n, head, groups;
};

__device__ __forceinline__ Rows rows_of(const float* scores, std::size_t ld, std::size_t q, std::size_t n) {
  Rows r;
  r.p = scores + q * ld;
  r.n = n;
  r.head = min(n, std::size_t((16 - (reinterpret_cast<uintptr_t>(r.p) & 15)) & 15) / sizeof(float));
  r.groups = (n - r.head) / 4;
  return r;
}

// The deleted bits of rows r0 .. r0 + 3 (all < n), in bits 0..3.
__device__ __forceinline__ uint32_t dead4(const uint32_t* deleted, std::size_t r0) {
  if (deleted == nullptr) return 0;
  const std::size_t w = r0 >> 5;
  const uint32_t s = uint32_t(r0 & 31);
  const uint32_t lo = __ldg(deleted + w);
  const uint32_t hi = s > 28 ? __ldg(deleted + w + 1) : 0u;  // the group crosses into the next word
  return __funnelshift_r(lo, hi, s) & 15u;
}

// The row of the head / tail scalar visited by thread x < 8 of block 0, or n (none).
__device__ __forceinline__ std::size_t edge_row(const Rows& r, unsigned x) {
  if (x < 4) return x < r.head ? x : r.n;
  const std::size_t row = r.head + 4 * r.groups + (x - 4);
  return row < r.n ? row : r.n;
}

// Exclusive prefix sum over a kThreads block; `total` gets the block's sum. sh holds
// kMaxWaves + 1.
template <int W>
__device__ __forceinline__ uint32_t block_excl_scan(const HwWave<W>& wv, uint32_t v, uint32_t* sh, uint32_t& total) {
  constexpr int kWaves = kThreads / W;
  static_assert(kWaves <= W, "one wave scans the wave totals");
  const int lane = wv.lane(), wave_id = int(threadIdx.x) / W;
  const uint32_t x = wave::inclusive_scan(wv, v);
  if (lane == W - 1) sh[wave_id] = x;
  __syncthreads();
  if (wave_id == 0) {
    const uint32_t w = lane < kWaves ? sh[lane] : 0u;
    const uint32_t s = wave::inclusive_scan(wv, w);
    if (lane < kWaves) sh[lane] = s - w;
    if (lane == W - 1) sh[kWaves] = s;
  }
  __syncthreads();
  total = sh[kWaves];
  const uint32_t r = sh[wave_id] + x - v;
  __syncthreads();  // sh is free again for the caller's next scan
  return r;
}

// ---- histogram pass ----------------------------------------------------------------------
// Counts, per bin of the digit (order >> lo) & (2^width - 1), the live rows whose higher bits
// match the resolved prefix; the last block to finish picks the bin where the running count
// reaches what is left to fill and narrows the state.
template <int W>
__device__ __forceinline__ void radix_pass(const float* scores, std::size_t ld, std::size_t n, const uint32_t* deleted,
                                           int k, int lo, int width, uint32_t* hist, State* states) {
  __shared__ uint32_t sh[kBins];
  __shared__ uint32_t sh_scan[kMaxWaves + 1];
  const HwWave<W> wv;
  __shared__ bool sh_last;
  const std::size_t q = blockIdx.y;
  State* st = states + q;
  // Read before any block can reach the last-block section below (it waits for all tickets).
  const uint32_t mode = st->mode;
  if (mode != kSearching) return;  // uniform over the query's blocks
  const uint32_t taken = st->taken;
  const int hi = lo + width;
  const uint32_t hi_mask = hi >= 32 ? 0u : ~0u << hi;
  const uint32_t prefix = st->prefix & hi_mask;
  const uint32_t bin_mask = (1u << width) - 1u;
  for (int i = int(threadIdx.x); i < kBins; i += kThreads) sh[i] = 0;
  __syncthreads();

  const Rows r = rows_of(scores, ld, q, n);
  auto counted = [&](float s, bool dead, uint32_t& bin) {
    const uint32_t o = float_order(s);
    bin = (o >> lo) & bin_mask;
    return !isnan(s) && !dead && ((o ^ prefix) & hi_mask) == 0;
  };
  // Consecutive rows often share a bin (pass 0 on data spanning a few exponents): one shared
  // atomic per run rather than per row.
  auto count4 = [&](float4 v, uint32_t dead) {
    const float s[4] = {v.x, v.y, v.z, v.w};
    uint32_t run_bin = 0, run = 0;
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      uint32_t b;
      if (counted(s[i], ((dead >> i) & 1u) != 0, b)) {
        if (run != 0 && b != run_bin) {
          atomicAdd(&sh[run_bin], run);
          run = 0;
        }
        run_bin = b;
        ++run;
      }
    }
    if (run != 0) atomicAdd(&sh[run_bin], run);
  };
  const std::size_t stride = std::size_t(gridDim.x) * kThreads;
  for (std::size_t g = std::size_t(blockIdx.x) * kThreads + threadIdx.x; g < r.groups; g += 2 * stride) {
    // Two groups in flight per thread before either is counted.
    const std::size_t g2 = g + stride;
    const bool has2 = g2 < r.groups;
    const std::size_t r1 = r.head + 4 * g, r2 = r.head + 4 * g2;
    const float4 a = __ldg(reinterpret_cast<const float4*>(r.p + r1));
    float4 b = make_float4(0.f, 0.f, 0.f, 0.f);
    if (has2) b = __ldg(reinterpret_cast<const float4*>(r.p + r2));
    const uint32_t da = dead4(deleted, r1);
    const uint32_t db = has2 ? dead4(deleted, r2) : 0u;
    count4(a, da);
    if (has2) count4(b, db);
  }
  if (blockIdx.x == 0 && threadIdx.x < 8) {
    const std::size_t row = edge_row(r, threadIdx.x);
    uint32_t b;
    if (row < n && counted(r.p[row], is_deleted(deleted, row), b)) atomicAdd(&sh[b], 1u);
  }
  __syncthreads();

  uint32_t* gh = hist + q * kBins;
  for (int i = int(threadIdx.x); i <= int(bin_mask); i += kThreads)
    if (sh[i] != 0) atomicAdd(&gh[i], sh[i]);
  __threadfence();  // this block's counts are visible before its ticket
  __syncthreads();
  if (threadIdx.x == 0) sh_last = atomicAdd(&st->ticket, 1u) == gridDim.x - 1;
  __syncthreads();
  if (!sh_last) return;
  __threadfence();  // every other block's counts are visible to the reads below

  // Last block: 4 bins per thread, read through volatile (L2, not a stale L1 line).
  volatile uint32_t* vh = gh;
  const int b0 = int(threadIdx.x) * 4;
  uint32_t h[4], sum = 0;
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    h[i] = vh[b0 + i];
    sum += h[i];
  }
  uint32_t total = 0;
  uint32_t c = block_excl_scan(wv, sum, sh_scan, total);
#pragma unroll
  for (int i = 0; i < 4; ++i) vh[b0 + i] = 0;  // cleared for the next pass
  const uint32_t need = uint32_t(k) - taken;    // >= 1: taken < k always
  if (total < need) {
    // Fewer live rows than k (only possible in the first pass): all of them enter.
    if (threadIdx.x == 0) {
      st->mode = kDone;
      st->thr = ~0u;
    }
  } else {
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      if (c < need && need <= c + h[i]) {  // exactly one thread, one bin
        const uint32_t pre = prefix | (uint32_t(b0 + i) << lo);
        st->prefix = pre;
        st->taken = taken + c;
        if (c + h[i] == need) {
          st->mode = kDone;  // the whole bin enters: the threshold is known
          st->thr = pre | ((1u << lo) - 1u);
        } else if (lo == 0) {
          st->mode = kTies;  // the exact score, with more rows than are left to fill
          st->thr = pre;
        }
      }
      c += h[i];
    }
  }
  if (threadIdx.x == 0) st->ticket = 0;
}

template <int W>
__global__ void __launch_bounds__(kThreads)
    radix_pass_kernel(const float* scores, std::size_t ld, std::size_t n, const uint32_t* deleted, int k, int lo,
                      int width, uint32_t* hist, State* states) {
  if constexpr (wave_compiled<W>()) radix_pass<W>(scores, ld, n, deleted, k, lo, width, hist, states);
}

// ---- gather ------------------------------------------------------------------------------
// Appends key to the query's list where e (wave-aggregated: one atomic per wave). All lanes
// must call it together.
template <int W>
__device__ __forceinline__ void emit(const HwWave<W>& wv, bool e, uint64_t key, uint32_t* count, uint64_t* dst,
                                     uint32_t k) {
  const auto m = wv.ballot(e);
  if (m == 0) return;
  const int leader = HwWave<W>::lowest(m);
  uint32_t base = 0;
  if (wv.lane() == leader) base = atomicAdd(count, uint32_t(HwWave<W>::popc(m)));
  base = wv.shfl(base, leader);
  if (e) {
    const uint32_t pos = base + uint32_t(HwWave<W>::popc(m & wv.lanes_below()));
    if (pos < k) dst[pos] = key;  // never false by construction; guards the buffer regardless
  }
}

__device__ __forceinline__ uint64_t ld_volatile(const uint64_t* p) {
  return *reinterpret_cast<const volatile unsigned long long*>(p);
}
__device__ __forceinline__ void st_volatile(uint64_t* p, uint64_t v) {
  *reinterpret_cast<volatile unsigned long long*>(p) = v;
}

// Tied rows in tiles before t (wave 0, all lanes): walks back W slots at a time, adding
// aggregates until the nearest inclusive prefix. Tiles are handed out in order to running
// blocks, so every slot waited on is owned by a block that will publish it.
template <int W>
__device__ uint32_t look_back(const HwWave<W>& wv, const uint64_t* slots, uint32_t t) {
  using Mask = typename HwWave<W>::Mask;
  const int lane = wv.lane();
  uint32_t before = 0;
  long long top = (long long)t - 1;
  for (;;) {
    const long long j = top - lane;
    uint64_t v;
    do {
      v = j >= 0 ? ld_volatile(slots + j) : kInclusive;  // before tile 0: nothing
    } while (wv.any((v >> 32) == 0));
    const Mask incl = wv.ballot((v & ~uint64_t(0xffffffffu)) == kInclusive);
    const Mask upto = incl != 0 ? Mask((incl & (Mask(0) - incl)) << 1) - Mask(1) : ~Mask(0);  // lanes up to the nearest
    before += wave_sum(wv, ((upto >> lane) & 1u) != 0 ? uint32_t(v) : 0u);
    if (incl != 0) return before;
    top -= W;
  }
}

template <int W>
__device__ __forceinline__ void radix_gather(const float* scores, std::size_t ld, std::size_t n,
                                             const uint32_t* deleted, int k, State* states, uint64_t* slots,
                                             std::size_t tiles, uint64_t* keys) {
  __shared__ uint32_t sh_scan[kMaxWaves + 1];
  __shared__ uint32_t sh_tile, sh_before;
  const std::size_t q = blockIdx.y;
  State* st = states + q;
  const uint32_t mode = st->mode, thr = st->thr;
  const HwWave<W> wv;
  const int lane = wv.lane();
  uint64_t* dst = keys + q * std::size_t(k);
  const Rows r = rows_of(scores, ld, q, n);
  auto key_of = [](uint32_t o, std::size_t row) { return (uint64_t(o) << 32) | uint64_t(uint32_t(row)); };

  if (mode != kTies) {
    // Every live key with order <= thr: exactly min(k, live) of them.
    auto emit4 = [&](bool valid, float4 v, uint32_t dead, std::size_t r0) {
      const float s[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const uint32_t o = float_order(s[i]);
        const bool e = valid && !isnan(s[i]) && ((dead >> i) & 1u) == 0 && o <= thr;
        emit(wv, e, key_of(o, r0 + i), &st->count, dst, uint32_t(k));
      }
    };
    // Wave-uniform trip count (emit's ballots need all lanes).
    const std::size_t stride = std::size_t(gridDim.x) * kThreads;
    for (std::size_t g0 = std::size_t(blockIdx.x) * kThreads + (threadIdx.x - lane); g0 < r.groups;
         g0 += 2 * stride) {
      const std::size_t g = g0 + lane, g2 = g + stride;
      const bool has1 = g < r.groups, has2 = g2 < r.groups;
      const std::size_t r1 = r.head + 4 * g, r2 = r.head + 4 * g2;
      float4 a = make_float4(0.f, 0.f, 0.f, 0.f), b = a;
      if (has1) a = __ldg(reinterpret_cast<const float4*>(r.p + r1));
      if (has2) b = __ldg(reinterpret_cast<const float4*>(r.p + r2));
      const uint32_t da = has1 ? dead4(deleted, r1) : 0u;
      const uint32_t db = has2 ? dead4(deleted, r2) : 0u;
      emit4(has1, a, da, r1);
      emit4(has2, b, db, r2);
    }
    if (blockIdx.x == 0 && threadIdx.x < unsigned(W)) {  // (edge_row: threads 0..7)
      const std::size_t row = edge_row(r, threadIdx.x);
      bool e = false;
      uint32_t o = 0;
      if (row < n) {
        const float s = r.p[row];
        o = float_order(s);
        e = !isnan(s) && !is_deleted(deleted, row) && o <= thr;
      }
      emit(wv, e, key_of(o, row), &st->count, dst, uint32_t(k));
    }
    return;
  }

  // Ties: every key below the threshold score, then the first `left` tied rows in row order.
  // Tiles of kTieTile rows are taken in order; each publishes its tied count and learns the
  // count before it by look-back.
  const uint32_t left = uint32_t(k) - st->taken;
  uint64_t* qslots = slots + q * tiles;
  for (;;) {
    if (threadIdx.x == 0) sh_tile = atomicAdd(&st->next_tile, 1u);
    __syncthreads();
    const uint32_t t = sh_tile;
    if (t >= tiles) break;  // uniform
    const std::size_t r0 = std::size_t(t) * kTieTile + std::size_t(threadIdx.x) * 4;
    uint32_t o[4], tied = 0;
    bool below[4], tie[4];
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const std::size_t row = r0 + i;
      o[i] = 0;
      bool live = false;
      if (row < n) {
        const float s = r.p[row];
        o[i] = float_order(s);
        live = !isnan(s) && !is_deleted(deleted, row);
      }
      below[i] = live && o[i] < thr;
      tie[i] = live && o[i] == thr;
      tied += tie[i] ? 1u : 0u;
    }
#pragma unroll
    for (int i = 0; i < 4; ++i) emit(wv, below[i], key_of(o[i], r0 + i), &st->count, dst, uint32_t(k));
    uint32_t tile_tied = 0;
    const uint32_t in_tile = block_excl_scan(wv, tied, sh_scan, tile_tied);
    if (threadIdx.x < unsigned(W)) {
      uint32_t before = 0;
      if (t == 0) {
        if (lane == 0) st_volatile(qslots, kInclusive | tile_tied);
      } else {
        if (lane == 0) st_volatile(qslots + t, kAggregate | tile_tied);
        before = look_back(wv, qslots, t);
        if (lane == 0) st_volatile(qslots + t, kInclusive | (before + tile_tied));
      }
      if (lane == 0) sh_before = before;
    }
    __syncthreads();
    uint32_t rank = sh_before + in_tile;
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      emit(wv, tie[i] && rank < left, key_of(o[i], r0 + i), &st->count, dst, uint32_t(k));
      rank += tie[i] ? 1u : 0u;
    }
    __syncthreads();  // sh_tile and sh_before are rewritten next tile
  }
}

template <int W>
__global__ void __launch_bounds__(kThreads)
    radix_gather_kernel(const float* scores, std::size_t ld, std::size_t n, const uint32_t* deleted, int k,
                        State* states, uint64_t* slots, std::size_t tiles, uint64_t* keys) {
  if constexpr (wave_compiled<W>()) radix_gather<W>(scores, ld, n, deleted, k, states, slots, tiles, keys);
}

// ---- sort by rank ------------------------------------------------------------------------
// Keys are distinct, so a key's place is the number of gathered keys below it. Each block
// ranks kRankKeys keys against the whole list (kRankParts threads per key) and pads the slots
// past the gathered count with kEmptyKey.
template <int W>
__global__ void __launch_bounds__(kRankThreads)
    radix_rank_kernel(const uint64_t* keys, const State* states, int k, uint64_t* out, std::size_t out_ld) {
  if constexpr (wave_compiled<W>()) {
  __shared__ uint64_t sh[kMaxK];
  const HwWave<W> wv;
  const std::size_t q = blockIdx.y;
  const uint32_t c = min(states[q].count, uint32_t(k));
  const uint64_t* src = keys + q * std::size_t(k);
  for (uint32_t j = threadIdx.x; j < c; j += kRankThreads) sh[j] = src[j];
  __syncthreads();
  const uint32_t i = blockIdx.x * kRankKeys + threadIdx.x / kRankParts;
  const uint32_t part = threadIdx.x % kRankParts;
  const uint64_t key = i < c ? sh[i] : 0;
  uint32_t rank = 0;
  for (uint32_t j = part; j < c; j += kRankParts) rank += sh[j] < key ? 1u : 0u;
#pragma unroll
  for (int off = 1; off < kRankParts; off <<= 1) rank += wv.shfl_xor(rank, off);
  uint64_t* row = out + q * out_ld;
  if (part == 0 && i < uint32_t(k)) {
    if (i < c)
      row[rank] = key;
    else
      row[i] = kEmptyKey;
  }
  }
}

}  // namespace

std::size_t radix_select_workspace_bytes(std::size_t nq, std::size_t n, int k) {
  return layout(nq, n, std::clamp(k, 1, kMaxK)).total;
}

void radix_select(const float* scores, std::size_t ld, std::size_t nq, std::size_t n, const uint32_t* deleted,
                  int k, uint64_t* out, std::size_t out_ld, void* workspace, cudaStream_t stream) {
  if (k < 1 || k > kMaxK) throw Error(ErrorCode::Internal, "CUDA radix select: k = " + std::to_string(k));
  if (nq == 0) return;
  if (nq > 65535) throw Error(ErrorCode::Internal, "CUDA radix select: too many queries in one launch");
  if (n > std::size_t(UINT32_MAX)) throw Error(ErrorCode::Internal, "CUDA radix select: too many rows");
  const Layout l = layout(nq, n, k);
  char* ws = static_cast<char*>(workspace);
  uint32_t* hist = reinterpret_cast<uint32_t*>(ws + l.hist);
  State* states = reinterpret_cast<State*>(ws + l.state);
  uint64_t* slots = reinterpret_cast<uint64_t*>(ws + l.slots);
  uint64_t* keys = reinterpret_cast<uint64_t*>(ws + l.keys);
  check(cudaMemsetAsync(ws, 0, l.ctrl_bytes, stream), "cudaMemsetAsync(radix select)");

  const int sms = sm_count();
  // About two blocks per SM in all, and no more than the float4 groups need.
  const std::size_t want = (2 * std::size_t(sms) + nq - 1) / nq;
  const std::size_t fill = std::max<std::size_t>(1, (n / 4 + kThreads - 1) / kThreads);
  const dim3 grid{unsigned(std::min(want, fill)), unsigned(nq), 1u};
  with_wave([&]<int W>() {
    for (const Digit& d : kDigits) {
      radix_pass_kernel<W><<<grid, kThreads, 0, stream>>>(scores, ld, n, deleted, k, d.lo, d.width, hist, states);
      check(cudaGetLastError(), "radix select pass launch");
    }
    radix_gather_kernel<W><<<grid, kThreads, 0, stream>>>(scores, ld, n, deleted, k, states, slots, l.tiles, keys);
    check(cudaGetLastError(), "radix select gather launch");
    const dim3 rank_grid{unsigned((k + kRankKeys - 1) / kRankKeys), unsigned(nq), 1u};
    radix_rank_kernel<W><<<rank_grid, kRankThreads, 0, stream>>>(keys, states, k, out, out_ld);
    check(cudaGetLastError(), "radix select rank launch");
  });
}

}  // namespace hive::gpu::HIVE_GPU_DEVICE_NS
