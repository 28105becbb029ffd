// CUDA backend: top-k selection on the device. Capacities 32 and 256: the wave select (one pass,
// wave-register lists). Otherwise each block sorts one chunk of candidate keys (bitonic sort in
// shared memory) and keeps its best `cap`; rounds repeat over the survivors until one chunk per
// query is left. Three compile-time capacities (32, 256, 2048) serve every k up to kMaxK.
#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>

#include "backends/cuda/cuda_common.hpp"
#include "backends/cuda/device_util.cuh"
#include "backends/cuda/kernels.hpp"

namespace hive::gpu::HIVE_GPU_DEVICE_NS {
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

// ---- wave select (capacities 32 and 256): one pass over the keys, each read once ----------
// One wave of W lanes per (query, chunk) keeps the best keys so far in a wave list of W R
// entries (wave::list_offer: sorted ascending, lane L holding entries L R .. L R + R - 1 in
// registers); a new key enters only when it beats the cap-th entry (ballot filter). Keys are
// unique (row in the low half), so ties are exact. R = max(1, cap / W): capacity 32 is R = 1
// (on 64-lane waves only the first 32 entries are kept exact), capacity 256 is R = 8 on 32-lane
// waves and R = 4 on 64-lane ones.
constexpr int kWsThreads = 256;
constexpr int kWsUnroll = 8;  // loads in flight per lane

template <int W, int CAP>
constexpr int ws_entries() {
  return CAP > W ? CAP / W : 1;
}

template <int W, int CAP, bool FROM_SCORES>
__global__ void __launch_bounds__(kWsThreads)
    wave_select_kernel(const float* scores, const uint64_t* keys, std::size_t ld, std::size_t len, int64_t row0,
                       const uint32_t* deleted, Transform t, const float* norms, std::size_t chunk,
                       std::size_t chunks, std::size_t nq, uint64_t* out, std::size_t out_ld) {
  if constexpr (wave_compiled<W>()) {
    constexpr int R = ws_entries<W, CAP>();
    constexpr int kLastLane = CAP / R - 1;  // the lane holding entry CAP - 1
    const HwWave<W> wv;
    const int lane = wv.lane();
    const std::size_t w = (std::size_t(blockIdx.x) * blockDim.x + threadIdx.x) / W;
    if (w >= nq * chunks) return;  // uniform across the wave
    const std::size_t q = w / chunks, c = w % chunks;
    const std::size_t start = c * chunk, end = min(len, start + chunk);
    uint64_t list[R];
#pragma unroll
    for (int j = 0; j < R; ++j) list[j] = kEmptyKey;
    uint64_t worst = kEmptyKey;
    for (std::size_t b = start; b < end; b += std::size_t(W) * kWsUnroll) {
      uint64_t key[kWsUnroll];
#pragma unroll
      for (int u = 0; u < kWsUnroll; ++u) {
        const std::size_t idx = b + std::size_t(u) * W + std::size_t(lane);
        key[u] = kEmptyKey;
        if (idx < end) {
          if constexpr (FROM_SCORES) {
            const std::size_t row = std::size_t(row0) + idx;
            if (!is_deleted(deleted, row))
              key[u] = make_key(apply(t, __ldg(scores + q * ld + idx), norms, row), uint32_t(row));
          } else {
            key[u] = __ldg(reinterpret_cast<const unsigned long long*>(keys) + q * ld + idx);
          }
        }
      }
#pragma unroll
      for (int u = 0; u < kWsUnroll; ++u) wave::list_offer<R>(wv, key[u], list, worst, kLastLane);
    }
    if (lane <= kLastLane) {
      uint64_t* dst = out + q * out_ld + c * std::size_t(CAP) + std::size_t(lane) * R;
#pragma unroll
      for (int j = 0; j < R; ++j) dst[j] = list[j];
    }
  }
}

// Smallest chunk of the wave select at capacity `cap` (each round reduces at least 32-fold at
// capacity 32, 16-fold at 256).
constexpr std::size_t ws_min_chunk(int cap) { return cap <= 32 ? 1024 : 4096; }

std::size_t wave_chunk(std::size_t nq, std::size_t len, int cap, int w) {
  // Enough waves to fill the GPU (about 16k).
  std::size_t chunk = (nq * len + 16383) / 16384;
  chunk = std::max((chunk + std::size_t(w) - 1) / std::size_t(w) * std::size_t(w), ws_min_chunk(cap));
  // A short list (a few chunks) is cheaper in one wave than in one more launch.
  if (len <= 2 * chunk) chunk = std::max<std::size_t>(len, 1);
  return chunk;
}

template <int W, int CAP>
void run_wave_select(const float* scores, const uint64_t* keys, std::size_t ld, std::size_t nq, std::size_t len,
                     int64_t row0, const uint32_t* deleted, Transform t, const float* norms, uint64_t* out,
                     std::size_t out_ld, uint64_t* scratch_a, uint64_t* scratch_b, cudaStream_t stream) {
  bool from_scores = scores != nullptr;
  uint64_t* bufs[2] = {scratch_a, scratch_b};
  int which = 0;
  for (;;) {
    const std::size_t chunk = wave_chunk(nq, len, CAP, W);
    const std::size_t chunks = std::max<std::size_t>(1, (len + chunk - 1) / chunk);
    const bool last = chunks == 1;
    uint64_t* dst = last ? out : bufs[which];
    const std::size_t dst_ld = last ? out_ld : chunks * CAP;
    const std::size_t threads = nq * chunks * W;
    const unsigned grid = unsigned((threads + kWsThreads - 1) / kWsThreads);
    if (from_scores)
      wave_select_kernel<W, CAP, true><<<grid, kWsThreads, 0, stream>>>(scores, nullptr, ld, len, row0, deleted, t,
                                                                        norms, chunk, chunks, nq, dst, dst_ld);
    else
      wave_select_kernel<W, CAP, false><<<grid, kWsThreads, 0, stream>>>(nullptr, keys, ld, len, 0, nullptr, t,
                                                                         nullptr, chunk, chunks, nq, dst, dst_ld);
    check(cudaGetLastError(), "wave select kernel launch");
    if (last) return;
    from_scores = false;
    keys = dst;
    ld = dst_ld;
    len = chunks * CAP;
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
  if ((cap == 32 || cap == 256) && !legacy_select()) {
    with_wave([&]<int W>() {
      if (cap == 32)
        run_wave_select<W, 32>(scores, keys, ld, nq, len, row0, deleted, t, norms, out, out_ld, a, b, s);
      else
        run_wave_select<W, 256>(scores, keys, ld, nq, len, row0, deleted, t, norms, out, out_ld, a, b, s);
    });
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
  // The wave select's chunks are never smaller than ws_min_chunk (capacities 32 and 256).
  const std::size_t chunk = cap == 32 || cap == 256 ? std::min<std::size_t>(ws_min_chunk(cap), chunk_of(cap))
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

}  // namespace hive::gpu::HIVE_GPU_DEVICE_NS
