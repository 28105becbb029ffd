// CUDA backend: top-k selection on the device. Each block sorts one chunk of candidate keys
// (bitonic sort in shared memory) and keeps its best `cap`; rounds repeat over the survivors
// until one chunk per query is left. Three compile-time capacities (32, 256, 2048) serve
// every k up to kMaxK.
#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>

#include "backends/cuda/cuda_common.hpp"
#include "backends/cuda/device_util.cuh"
#include "backends/cuda/kernels.hpp"

namespace hive::gpu::cuda {
namespace {

using namespace dev;

template <int K>
struct Config;
template <>
struct Config<32> {
  static constexpr int kChunk = 2048, kThreads = 512;
};
template <>
struct Config<256> {
  static constexpr int kChunk = 4096, kThreads = 1024;
};
template <>
struct Config<2048> {
  static constexpr int kChunk = 8192, kThreads = 1024;
};

__device__ __forceinline__ float apply(Transform t, float s, const float* norms, std::size_t row) {
  switch (t) {
    case Transform::Raw: return s;
    case Transform::L2FromDot: s = norms[row] - 2.0f * s; break;
    case Transform::NegDot: s = -s; break;
    case Transform::OneMinusDot: s = 1.0f - s; break;
  }
  // An approximate score only screens candidates (they are re-scored exactly): keep a NaN
  // from overflowing terms in the race rather than dropping a live row.
  return isnan(s) ? __int_as_float(0x7f800000) : s;
}

template <int K, bool FROM_SCORES>
__global__ void __launch_bounds__(Config<K>::kThreads)
    select_kernel(const float* scores, const uint64_t* keys, std::size_t ld, std::size_t len, int64_t row0,
                  const uint32_t* deleted, Transform t, const float* norms, uint64_t* out, std::size_t out_ld) {
  constexpr int kChunk = Config<K>::kChunk, kThreads = Config<K>::kThreads;
  extern __shared__ uint64_t sh[];
  const std::size_t q = blockIdx.y;
  const std::size_t start = std::size_t(blockIdx.x) * kChunk;
  const std::size_t valid = len > start ? min(std::size_t(kChunk), len - start) : 0;
  // Only the first p entries (a power of two >= K and >= valid) need sorting: the rest are empty.
  int p = K;
  while (std::size_t(p) < valid) p <<= 1;
  for (int i = int(threadIdx.x); i < p; i += kThreads) {
    uint64_t key = kEmptyKey;
    if (std::size_t(i) < valid) {
      const std::size_t idx = start + std::size_t(i);
      if constexpr (FROM_SCORES) {
        const std::size_t row = std::size_t(row0) + idx;
        if (!is_deleted(deleted, row)) key = make_key(apply(t, scores[q * ld + idx], norms, row), uint32_t(row));
      } else {
        key = keys[q * ld + idx];
      }
    }
    sh[i] = key;
  }
  __syncthreads();
  for (int size = 2; size <= p; size <<= 1) {
    for (int stride = size >> 1; stride > 0; stride >>= 1) {
      for (int i = int(threadIdx.x); i < p / 2; i += kThreads) {
        const int lo = 2 * i - (i & (stride - 1));
        const int hi = lo + stride;
        const bool asc = (lo & size) == 0;
        const uint64_t a = sh[lo], b = sh[hi];
        if ((a > b) == asc) {
          sh[lo] = b;
          sh[hi] = a;
        }
      }
      __syncthreads();
    }
  }
  uint64_t* dst = out + q * out_ld + std::size_t(blockIdx.x) * K;
  for (int i = int(threadIdx.x); i < K; i += kThreads) dst[i] = sh[i];
}

// ---- warp select (capacity 32 R): one pass over the keys, each read once ----------------
// One warp per (query, chunk) keeps the 32 R best keys so far, sorted ascending, lane L
// holding entries L R .. L R + R - 1 in registers. A new key enters only when it beats the
// last entry (ballot filter), by a shift of the entries after its place. Keys are unique (row
// in the low half), so ties are exact. R = 1 serves capacity 32, R = 8 capacity 256.
constexpr int kWarpCap = 32;
constexpr int kWsThreads = 256;
constexpr int kWsUnroll = 8;  // loads in flight per lane

template <int R>
__device__ __forceinline__ void list_offer(uint64_t key, uint64_t (&list)[R], uint64_t& worst, int lane) {
  unsigned m = __ballot_sync(kFullMask, key < worst);
  while (m != 0) {
    const int src = __ffs(int(m)) - 1;
    m &= m - 1;
    const uint64_t nk = __shfl_sync(kFullMask, key, src);
    if (nk < worst) {  // uniform: worst is the same in every lane
      int pos = 0;
#pragma unroll
      for (int j = 0; j < R; ++j) pos += __popc(__ballot_sync(kFullMask, list[j] < nk));
      const uint64_t carry = __shfl_up_sync(kFullMask, list[R - 1], 1);
#pragma unroll
      for (int j = R - 1; j >= 0; --j) {
        const int g = lane * R + j;
        if (g > pos)
          list[j] = j > 0 ? list[j - 1] : carry;
        else if (g == pos)
          list[j] = nk;
      }
      worst = __shfl_sync(kFullMask, list[R - 1], kWarp - 1);
    }
  }
}

template <int R, bool FROM_SCORES>
__global__ void __launch_bounds__(kWsThreads)
    warp_select_kernel(const float* scores, const uint64_t* keys, std::size_t ld, std::size_t len, int64_t row0,
                       const uint32_t* deleted, Transform t, const float* norms, std::size_t chunk,
                       std::size_t chunks, std::size_t nq, uint64_t* out, std::size_t out_ld) {
  const int lane = int(threadIdx.x) & (kWarp - 1);
  const std::size_t w = (std::size_t(blockIdx.x) * blockDim.x + threadIdx.x) / kWarp;
  if (w >= nq * chunks) return;  // uniform across the warp
  const std::size_t q = w / chunks, c = w % chunks;
  const std::size_t start = c * chunk, end = min(len, start + chunk);
  uint64_t list[R];
#pragma unroll
  for (int j = 0; j < R; ++j) list[j] = kEmptyKey;
  uint64_t worst = kEmptyKey;
  for (std::size_t b = start; b < end; b += std::size_t(kWarp) * kWsUnroll) {
    uint64_t key[kWsUnroll];
#pragma unroll
    for (int u = 0; u < kWsUnroll; ++u) {
      const std::size_t idx = b + std::size_t(u) * kWarp + std::size_t(lane);
      key[u] = kEmptyKey;
      if (idx < end) {
        if constexpr (FROM_SCORES) {
          const std::size_t row = std::size_t(row0) + idx;
          if (!is_deleted(deleted, row)) key[u] = make_key(apply(t, __ldg(scores + q * ld + idx), norms, row), uint32_t(row));
        } else {
          key[u] = __ldg(reinterpret_cast<const unsigned long long*>(keys) + q * ld + idx);
        }
      }
    }
#pragma unroll
    for (int u = 0; u < kWsUnroll; ++u) list_offer<R>(key[u], list, worst, lane);
  }
  uint64_t* dst = out + q * out_ld + c * std::size_t(kWarpCap * R) + std::size_t(lane) * R;
#pragma unroll
  for (int j = 0; j < R; ++j) dst[j] = list[j];
}

// Smallest chunk of the warp select at capacity 32 R (each round reduces at least 32-fold at
// R = 1, 16-fold at R = 8).
constexpr std::size_t ws_min_chunk(int r) { return r == 1 ? 1024 : 4096; }

std::size_t warp_chunk(std::size_t nq, std::size_t len, int r) {
  // Enough warps to fill the GPU (about 16k).
  std::size_t chunk = (nq * len + 16383) / 16384;
  chunk = std::max((chunk + 31) / 32 * 32, ws_min_chunk(r));
  // A short list (a few chunks) is cheaper in one warp than in one more launch.
  if (len <= 2 * chunk) chunk = std::max<std::size_t>(len, 1);
  return chunk;
}

template <int R>
void run_warp_select(const float* scores, const uint64_t* keys, std::size_t ld, std::size_t nq, std::size_t len,
                     int64_t row0, const uint32_t* deleted, Transform t, const float* norms, uint64_t* out,
                     std::size_t out_ld, uint64_t* scratch_a, uint64_t* scratch_b, cudaStream_t stream) {
  constexpr std::size_t kCap = std::size_t(kWarpCap) * R;
  bool from_scores = scores != nullptr;
  uint64_t* bufs[2] = {scratch_a, scratch_b};
  int which = 0;
  for (;;) {
    const std::size_t chunk = warp_chunk(nq, len, R);
    const std::size_t chunks = std::max<std::size_t>(1, (len + chunk - 1) / chunk);
    const bool last = chunks == 1;
    uint64_t* dst = last ? out : bufs[which];
    const std::size_t dst_ld = last ? out_ld : chunks * kCap;
    const std::size_t threads = nq * chunks * kWarp;
    const unsigned grid = unsigned((threads + kWsThreads - 1) / kWsThreads);
    if (from_scores)
      warp_select_kernel<R, true><<<grid, kWsThreads, 0, stream>>>(scores, nullptr, ld, len, row0, deleted, t, norms,
                                                                   chunk, chunks, nq, dst, dst_ld);
    else
      warp_select_kernel<R, false><<<grid, kWsThreads, 0, stream>>>(nullptr, keys, ld, len, 0, nullptr, t, nullptr,
                                                                    chunk, chunks, nq, dst, dst_ld);
    check(cudaGetLastError(), "warp select kernel launch");
    if (last) return;
    from_scores = false;
    keys = dst;
    ld = dst_ld;
    len = chunks * kCap;
    which ^= 1;
  }
}

__global__ void finalize_kernel(const uint64_t* keys, std::size_t ld, std::size_t nq, int k, bool negate,
                                float* distances, int64_t* rows) {
  const std::size_t total = nq * std::size_t(k);
  for (std::size_t i = std::size_t(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += std::size_t(gridDim.x) * blockDim.x) {
    const std::size_t q = i / std::size_t(k), j = i % std::size_t(k);
    const uint64_t key = keys[q * ld + j];
    const float inf = __int_as_float(0x7f800000);
    if (key == kEmptyKey) {
      rows[i] = -1;
      distances[i] = negate ? -inf : inf;
    } else {
      rows[i] = int64_t(key_row(key));
      const float s = key_score(key);
      distances[i] = negate ? -s : s;
    }
  }
}

__global__ void kth_scores_kernel(const uint64_t* keys, std::size_t ld, std::size_t nq, int k, float* out) {
  const std::size_t q = std::size_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (q >= nq) return;
  const uint64_t key = keys[q * ld + std::size_t(k - 1)];
  // Raised by 2^-20 of its magnitude: the screen's fp32 test moves by up to 2^-23 |tau|.
  const float t = key == kEmptyKey ? __int_as_float(0x7f800000) : key_score(key);
  out[q] = t + fabsf(t) * 0x1p-20f;
}

template <int K>
void run_select(const float* scores, const uint64_t* keys, std::size_t ld, std::size_t nq, std::size_t len,
                int64_t row0, const uint32_t* deleted, Transform t, const float* norms, uint64_t* out,
                std::size_t out_ld, uint64_t* scratch_a, uint64_t* scratch_b, cudaStream_t stream) {
  constexpr int kChunk = Config<K>::kChunk, kThreads = Config<K>::kThreads;
  constexpr std::size_t kSmem = std::size_t(kChunk) * sizeof(uint64_t);
  // The shared-memory opt-in is per device: set it once for each device this process uses.
  static std::atomic<uint64_t> attr_done{0};
  int device = 0;
  check(cudaGetDevice(&device), "cudaGetDevice");
  const uint64_t bit = uint64_t(1) << (device & 63);
  if ((attr_done.load(std::memory_order_acquire) & bit) == 0) {
    check(cudaFuncSetAttribute(select_kernel<K, true>, cudaFuncAttributeMaxDynamicSharedMemorySize, int(kSmem)),
          "cudaFuncSetAttribute(select)");
    check(cudaFuncSetAttribute(select_kernel<K, false>, cudaFuncAttributeMaxDynamicSharedMemorySize, int(kSmem)),
          "cudaFuncSetAttribute(select)");
    attr_done.fetch_or(bit, std::memory_order_acq_rel);
  }
  if (nq > 65535) throw Error(ErrorCode::Internal, "CUDA select: too many queries in one launch");
  bool from_scores = scores != nullptr;
  uint64_t* bufs[2] = {scratch_a, scratch_b};
  int which = 0;
  for (;;) {
    const std::size_t chunks = std::max<std::size_t>(1, (len + kChunk - 1) / kChunk);
    const bool last = chunks == 1;
    uint64_t* dst = last ? out : bufs[which];
    const std::size_t dst_ld = last ? out_ld : chunks * K;
    const dim3 grid{unsigned(chunks), unsigned(nq), 1u};
    if (from_scores)
      select_kernel<K, true><<<grid, kThreads, kSmem, stream>>>(scores, nullptr, ld, len, row0, deleted, t, norms, dst,
                                                                 dst_ld);
    else
      select_kernel<K, false><<<grid, kThreads, kSmem, stream>>>(nullptr, keys, ld, len, 0, nullptr, t, nullptr, dst,
                                                                  dst_ld);
    check(cudaGetLastError(), "select kernel launch");
    if (last) return;
    from_scores = false;
    keys = dst;
    ld = dst_ld;
    len = chunks * K;
    which ^= 1;
  }
}

int chunk_of(int cap) { return cap == 32 ? Config<32>::kChunk : cap == 256 ? Config<256>::kChunk : Config<2048>::kChunk; }

void select_any(const float* scores, const uint64_t* keys, std::size_t ld, std::size_t nq, std::size_t len,
                int64_t row0, const uint32_t* deleted, Transform t, const float* norms, int cap, uint64_t* out,
                std::size_t out_ld, uint64_t* a, uint64_t* b, cudaStream_t s) {
  if (cap == kWarpCap && !legacy_select()) {
    run_warp_select<1>(scores, keys, ld, nq, len, row0, deleted, t, norms, out, out_ld, a, b, s);
    return;
  }
  if (cap == 8 * kWarpCap && !legacy_select()) {
    run_warp_select<8>(scores, keys, ld, nq, len, row0, deleted, t, norms, out, out_ld, a, b, s);
    return;
  }
  switch (cap) {
    case 32: run_select<32>(scores, keys, ld, nq, len, row0, deleted, t, norms, out, out_ld, a, b, s); return;
    case 256: run_select<256>(scores, keys, ld, nq, len, row0, deleted, t, norms, out, out_ld, a, b, s); return;
    case 2048: run_select<2048>(scores, keys, ld, nq, len, row0, deleted, t, norms, out, out_ld, a, b, s); return;
    default: throw Error(ErrorCode::Internal, "CUDA select: unsupported capacity " + std::to_string(cap));
  }
}

}  // namespace

bool legacy_select() {
  static const bool v = [] {
    const char* e = std::getenv("HIVE_GPU_CUDA_LEGACY_SELECT");
    return e != nullptr && *e != '\0' && std::strcmp(e, "0") != 0;
  }();
  return v;
}

int select_capacity(int k) { return k <= 32 ? 32 : k <= 256 ? 256 : 2048; }

std::size_t select_scratch_keys(std::size_t nq, std::size_t len, int cap) {
  // The warp select's chunks are never smaller than ws_min_chunk (capacities 32 and 256).
  const std::size_t chunk = cap == kWarpCap       ? std::min<std::size_t>(ws_min_chunk(1), chunk_of(cap))
                            : cap == 8 * kWarpCap ? std::min<std::size_t>(ws_min_chunk(8), chunk_of(cap))
                                                  : std::size_t(chunk_of(cap));
  const std::size_t chunks = std::max<std::size_t>(1, (len + chunk - 1) / chunk);
  return nq * chunks * std::size_t(cap);
}

void select_from_scores(const float* scores, std::size_t ld, std::size_t nq, std::size_t len, int64_t row0,
                        const uint32_t* deleted, Transform t, const float* norms, int cap, uint64_t* out,
                        std::size_t out_ld, uint64_t* scratch_a, uint64_t* scratch_b, cudaStream_t stream) {
  select_any(scores, nullptr, ld, nq, len, row0, deleted, t, norms, cap, out, out_ld, scratch_a, scratch_b, stream);
}

void select_from_keys(const uint64_t* keys, std::size_t ld, std::size_t nq, std::size_t len, int cap, uint64_t* out,
                      std::size_t out_ld, uint64_t* scratch_a, uint64_t* scratch_b, cudaStream_t stream) {
  select_any(nullptr, keys, ld, nq, len, 0, nullptr, Transform::Raw, nullptr, cap, out, out_ld, scratch_a, scratch_b,
             stream);
}

void launch_kth_scores(const uint64_t* keys, std::size_t ld, std::size_t nq, int k, float* thresholds,
                       cudaStream_t stream) {
  if (nq == 0) return;
  kth_scores_kernel<<<unsigned((nq + 255) / 256), 256, 0, stream>>>(keys, ld, nq, k, thresholds);
  check(cudaGetLastError(), "threshold kernel launch");
}

void launch_finalize(const uint64_t* keys, std::size_t ld, std::size_t nq, int k, bool negate, float* distances,
                     int64_t* rows, cudaStream_t stream) {
  const std::size_t total = nq * std::size_t(k);
  if (total == 0) return;
  const unsigned grid = unsigned(std::min<std::size_t>((total + 255) / 256, 4096));
  finalize_kernel<<<grid, 256, 0, stream>>>(keys, ld, nq, k, negate, distances, rows);
  check(cudaGetLastError(), "finalize kernel launch");
}

}  // namespace hive::gpu::cuda
