// CUDA backend: what the two tensor-core screen kernels share (screen.cu: mma.sync on sm_80+,
// screen_wgmma.cu: wgmma on sm_90a): their parameters, the PTX wrappers, the query set-up and the
// candidate emitting. NVIDIA only; included by those two sources alone.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstddef>
#include <cstdint>

#include "backends/cuda/device_util.cuh"
#include "hive_gpu/types.hpp"

namespace hive::gpu::HIVE_GPU_DEVICE_NS::screen_detail {

using namespace dev;

// NVIDIA only (mma, ldmatrix, cp.async): warps are 32 lanes here.
constexpr int kWarp = 32;
constexpr unsigned kFullMask = 0xffffffffu;
constexpr int kBM = 128;       // queries per CTA (both kernels)
constexpr int kThreads = 256;  // threads per CTA (both kernels)
constexpr int kQueue = 1024;   // candidate queue entries per CTA
// Queue entries: row << 7 | local query; kEmptyKey marks a slot that holds nothing.
static_assert(kBM == 128, "queue entry packing");
static_assert(kBM <= kThreads, "one query per thread in the set-ups");

struct Params {
  const void* base;
  const float* queries;
  const float* rn2;
  const float2* row_terms;  // the wgmma kernel: n entries it fills with (rn, R) before the screen,
  const float4* tile_terms; // then (min R, max rn, max |R|) of each 128-row tile (see screen_wgmma.cu)
  const float4* query_terms;         // the wgmma kernel: each query's query_terms, made once a launch
  const unsigned char* query_ops;    // and its operand row (kp bytes), in the scratch after the rows'
  const float* qn2;
  const float* tau;
  const uint32_t* deleted;
  uint64_t* cand;
  uint32_t* count;
  std::size_t n, nq, dim, cap;
  std::size_t row_bytes;  // dim * element size
  int kp;                 // row_bytes rounded up to the kernel's slice (the tail is zeros on both sides)
  int tiles_per_cta;
  int metric;  // 0 L2, 1 InnerProduct, 2 Cosine
  float a, b, c;
  float row_scale;  // the rows are stored times this power of two (1: as they are)
};


// ---- PTX wrappers ------------------------------------------------------------------------
__device__ __forceinline__ uint32_t smem_u32(const void* p) { return uint32_t(__cvta_generic_to_shared(p)); }

// src_bytes 0 reads nothing and zero-fills (rows past the end, the padded tail of a row).
__device__ __forceinline__ void cp_async16(uint32_t dst, const void* src, uint32_t src_bytes) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(src_bytes) : "memory");
}
__device__ __forceinline__ void cp_async4(uint32_t dst, const void* src, uint32_t src_bytes) {
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(dst), "l"(src), "r"(src_bytes) : "memory");
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], uint32_t addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}


__device__ __forceinline__ uint32_t to_tf32(float x) {
  uint32_t u;
  asm("cvt.rna.tf32.f32 %0, %1;\n" : "=r"(u) : "f"(x));
  return u;
}

// Two fp32 values as the low / high halves of an fp16 or bf16 pair (round to nearest even).
template <ScalarType S>
__device__ __forceinline__ uint32_t pack_half2(float lo, float hi) {
  if constexpr (S == ScalarType::F16) {
    return uint32_t(__half_as_ushort(__float2half_rn(lo))) | (uint32_t(__half_as_ushort(__float2half_rn(hi))) << 16);
  } else {
    return uint32_t(__bfloat16_as_ushort(__float2bfloat16_rn(lo))) |
           (uint32_t(__bfloat16_as_ushort(__float2bfloat16_rn(hi))) << 16);
  }
}

// ---- emitting ----------------------------------------------------------------------------
// Every lane of the warp calls it; lanes with ok emit row for query q0 + ql. Lanes of the same
// query share one atomicAdd.
__device__ __forceinline__ void emit_warp(const Params& p, std::size_t q0, bool ok, uint32_t ql, std::size_t row,
                                          int lane) {
  const unsigned peers = __match_any_sync(kFullMask, ok ? ql : 0xffffffffu);
  const int leader = __ffs(int(peers)) - 1;
  const std::size_t q = q0 + ql;
  uint32_t first = 0;
  if (ok && lane == leader) first = atomicAdd(p.count + q, uint32_t(__popc(peers)));
  first = __shfl_sync(kFullMask, first, leader);
  if (ok) {
    const std::size_t pos = std::size_t(first) + std::size_t(__popc(peers & ((1u << lane) - 1u)));
    if (pos < p.cap) p.cand[q * p.cap + pos] = uint64_t(row);
  }
}

// One thread's emit, for entries that found the queue full (rare: thresholds that let most of a
// tile through).
__device__ __forceinline__ void emit_one(const Params& p, std::size_t q, std::size_t row) {
  if (is_deleted(p.deleted, row)) return;
  const uint32_t pos = atomicAdd(p.count + q, 1u);
  if (pos < p.cap) p.cand[q * p.cap + pos] = uint64_t(row);
}

// The `count` threads of a group (tid: the thread's place in it; sync: the group's barrier) emit
// the queued entries, then empty the queue. The deleted test happens here, off the epilogue's
// path.
template <class Sync>
__device__ __forceinline__ void flush_queue(const Params& p, std::size_t q0, const uint64_t* queue, uint32_t* qcount,
                                            int tid, int lane, int count, Sync sync) {
  const uint32_t len = min(*qcount, uint32_t(kQueue));
#pragma unroll 1
  for (uint32_t w = uint32_t(tid - lane); w < len; w += uint32_t(count)) {  // warp-uniform trip count
    const uint32_t i = w + uint32_t(lane);
    const uint64_t e = i < len ? queue[i] : kEmptyKey;
    const std::size_t row = std::size_t(e >> 7);
    const bool ok = e != kEmptyKey && !is_deleted(p.deleted, row);
    emit_warp(p, q0, ok, uint32_t(e & 127u), row, lane);
  }
  sync();  // everyone has read the queue
  if (tid == 0) *qcount = 0;
  sync();
}
// All threads of the CTA.
__device__ inline void flush_queue(const Params& p, std::size_t q0, const uint64_t* queue, uint32_t* qcount, int tid,
                                   int lane) {
  flush_queue(p, q0, queue, qcount, tid, lane, kThreads, [] { __syncthreads(); });
}

// The passing scores of one thread's tile into the CTA's queue (entries row << 7 | local query),
// or emitted directly where the queue is full. mask[i] bit b marks a passing score; where(i, b)
// gives its (local query, row). Entries outside the queries or the CTA's rows go in as empty
// slots (the slot was counted).
template <int N, class Where>
__device__ __forceinline__ void enqueue_passes(const Params& p, std::size_t q0, std::size_t row_end,
                                               const uint32_t (&mask)[N], uint64_t* queue, uint32_t* qcount,
                                               Where where) {
  uint32_t total = 0;
#pragma unroll
  for (int i = 0; i < N; ++i) total += uint32_t(__popc(mask[i]));
  if (total == 0u) return;
  uint32_t slot = atomicAdd(qcount, total);
#pragma unroll
  for (int i = 0; i < N; ++i) {
    uint32_t m = mask[i];
    while (m != 0u) {
      const int bit = __ffs(int(m)) - 1;
      m &= m - 1u;
      uint32_t ql = 0;
      std::size_t row = 0;
      where(i, bit, ql, row);
      const bool ok = q0 + ql < p.nq && row < row_end;
      if (slot < uint32_t(kQueue))
        queue[slot] = ok ? (uint64_t(row) << 7) | uint64_t(ql) : kEmptyKey;
      else if (ok)
        emit_one(p, q0 + ql, row);
      ++slot;
    }
  }
}

// The power of two sc a query is scaled by before its fp16 rounding, and its terms of the test
// (see the kernels' epilogues). fp16 queries are scaled by a power of two sc (exact) that brings
// the largest component into [2^14, 2^15): no component overflows fp16 and none that matters
// lands among its subnormals, so the rounding error stays relative (2^-11) whatever the query's
// scale; the test divides sc back out exactly. fp32 (tf32) and bf16 have fp32's exponent range:
// sc = 1. Queries past nq get A' = 0, T' = +inf, so their (zero) scores never pass; the enqueue
// checks the bounds anyway.
// query_scale: every lane of a warp calls it for the same query q (all lanes get sc).
template <ScalarType S>
__device__ __forceinline__ float query_scale(const Params& p, std::size_t q, int lane) {
  float sc = 1.0f;
  if constexpr (S == ScalarType::F16) {
    float mx = 0.0f;
    if (q < p.nq)
      for (std::size_t e = std::size_t(lane) * 4; e < p.dim; e += kWarp * 4) {
        const float4 x = __ldg(reinterpret_cast<const float4*>(p.queries + q * p.dim + e));
        mx = fmaxf(mx, fmaxf(fmaxf(fabsf(x.x), fabsf(x.y)), fmaxf(fabsf(x.z), fabsf(x.w))));
      }
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) mx = fmaxf(mx, __shfl_xor_sync(kFullMask, mx, off));
    if (mx > 0.0f && mx <= 3.0e38f) {
      int ex = 0;
      (void)frexpf(mx, &ex);  // mx = m 2^ex, m in [0.5, 1)
      sc = __int_as_float((min(max(15 - ex, -100), 40) + 127) << 23);
    }
  }
  return sc;
}
// (st A', st, -(st T'), sc) with st = sc row_scale: the accumulator holds sc row_scale dot, the
// test's scale (both powers of two, exact); .w keeps the query's own scale for its conversion.
__device__ __forceinline__ float4 query_terms(const Params& p, std::size_t q, float sc) {
  float A = 0.0f, T = -INFINITY;
  if (q < p.nq) {
    const float qn2 = p.qn2[q];
    const float qn = sqrtf(qn2);
    const float tau = p.tau[q] + p.c * qn;  // the bound's term in |q| alone
    if (p.metric == 0) {
      A = 0.5f * (p.a * qn);
      T = 0.5f * (tau - (1.0f - p.b) * qn2);
    } else {
      A = p.a * qn;
      T = (p.metric == 2 ? tau - 1.0f : tau) + p.b * qn2;
    }
  }
  const float st = sc * p.row_scale;
  return make_float4(st * A, st, -(st * T), sc);
}
// 16-byte piece ch (elements 8 ch .. 8 ch + 7; 4 ch .. for fp32) of query q rounded once to the
// operand type: tf32 (round to nearest, ties away, as cvt.rna), fp16 / bf16 (nearest even) after
// the scale sc. Queries past nq and the padded tail are zeros.
template <ScalarType S>
__device__ __forceinline__ uint4 query_piece(const Params& p, std::size_t q, int ch, float sc) {
  const int per = S == ScalarType::F32 ? 4 : 8;  // elements per 16-byte piece
  const std::size_t e0 = std::size_t(ch) * std::size_t(per);
  uint4 v = make_uint4(0u, 0u, 0u, 0u);
  if (q < p.nq && e0 < p.dim) {
    const float4* src = reinterpret_cast<const float4*>(p.queries + q * p.dim + e0);
    const float4 x = __ldg(src);
    if constexpr (S == ScalarType::F32) {
      v = make_uint4(to_tf32(x.x), to_tf32(x.y), to_tf32(x.z), to_tf32(x.w));
    } else {
      const float4 y = __ldg(src + 1);
      v = make_uint4(pack_half2<S>(sc * x.x, sc * x.y), pack_half2<S>(sc * x.z, sc * x.w),
                     pack_half2<S>(sc * y.x, sc * y.y), pack_half2<S>(sc * y.z, sc * y.w));
    }
  }
  return v;
}

// Per-query terms of the test into qvals[0, kBM) and the queries, rounded once to the operand
// type, into qtile (kBM rows of p.kp bytes at qpitch, zero-padded). Every thread of the CTA calls
// it; qvals and qtile are complete after the caller's next barrier.
template <ScalarType S>
__device__ void stage_queries(const Params& p, std::size_t q0, unsigned char* qtile, int qpitch, float4* qvals,
                              int tid, int lane, int warp) {
  for (int qr = warp; qr < kBM; qr += kThreads / kWarp) {  // one warp per query
    const std::size_t q = q0 + std::size_t(qr);
    const float sc = query_scale<S>(p, q, lane);
    if (lane == 0) qvals[qr] = query_terms(p, q, sc);
  }
  if constexpr (S == ScalarType::F16) __syncthreads();  // the scales, for the conversion below
  const int chunks = p.kp / 16;
#pragma unroll 4
  for (int c = tid; c < kBM * chunks; c += kThreads) {
    const int qr = c / chunks, ch = c - qr * chunks;
    const float sc = S == ScalarType::F16 ? qvals[qr].w : 1.0f;
    *reinterpret_cast<uint4*>(qtile + qr * qpitch + ch * 16) = query_piece<S>(p, q0 + std::size_t(qr), ch, sc);
  }
}

// The wgmma kernel (screen_wgmma.cu): whether this build and the current device run it for these
// parameters, and its launch (grid as the caller computed it for kWgmmaRows-row tiles).
constexpr int kWgmmaRows = 128;  // rows per tile of the wgmma kernel
// The wgmma kernel's scratch (ScreenArgs::scratch, screen_scratch_bytes): per row (rn, R), n
// float2 padded to whole 128-row tiles (the kernel copies whole tiles); per 128-row tile a
// float4; per query a float4 of terms; per query its operand row of kp bytes (kp: row bytes
// rounded up to 128). Every part 16-byte aligned.
struct WgmmaScratch {
  float2* row_terms;
  float4* tile_terms;
  float4* query_terms;
  unsigned char* query_ops;
};
// Byte offsets of the parts after the row terms, and the total for operand rows of kp bytes.
struct WgmmaScratchLayout {
  std::size_t tile_terms, query_terms, query_ops, bytes;
};
inline WgmmaScratchLayout wgmma_scratch_layout(std::size_t n, std::size_t nq, std::size_t kp) {
  const std::size_t tiles = (n + kWgmmaRows - 1) / kWgmmaRows;
  WgmmaScratchLayout l;
  l.tile_terms = tiles * kWgmmaRows * sizeof(float2);
  l.query_terms = l.tile_terms + tiles * sizeof(float4);
  l.query_ops = l.query_terms + nq * sizeof(float4);
  l.bytes = l.query_ops + nq * kp;
  return l;
}
inline WgmmaScratch wgmma_scratch(void* base, std::size_t n, std::size_t nq) {
  const WgmmaScratchLayout l = wgmma_scratch_layout(n, nq, 0);
  auto* b = static_cast<unsigned char*>(base);
  return WgmmaScratch{reinterpret_cast<float2*>(b), reinterpret_cast<float4*>(b + l.tile_terms),
                      reinterpret_cast<float4*>(b + l.query_terms), b + l.query_ops};
}
bool wgmma_screen_runs(ScalarType s, std::size_t dim);
void launch_wgmma_screen(const Params& p, ScalarType s, dim3 grid, cudaStream_t stream);

}  // namespace hive::gpu::HIVE_GPU_DEVICE_NS::screen_detail
