// CUDA backend: the tensor-core screen of a large query batch (see screen.hpp).
//
// A CTA keeps 128 queries in shared memory (rounded once to the mma operand type) for its whole
// life and streams a contiguous range of base rows in tiles of 256 rows; a tile arrives in
// 64-byte slices of every row (two mma k-steps) through a 4-stage cp.async pipeline. 8 warps
// (2 over queries x 4 over rows) each own a 64 x 64 block of scores in registers. After a tile's
// last slice, each thread tests its 128 scores against the per-query threshold and appends the
// rare survivors to a shared-memory queue, which is flushed to the global candidate lists (one
// warp-aggregated atomic per query and warp) when half full and at the end: so no warp waits on
// a global atomic's round trip in the middle of the stream.
//
// Operand layout: for tf32 m16n8k8 and f16 / bf16 m16n8k16 alike, a k-step covers 32 bytes of a
// row and fragment register w of a lane holds 32-bit word (t or t + 4) of row (g or g + 8), so one
// ldmatrix (b16 8x8 matrices) addressing scheme loads both; fp32 rows are rounded to tf32 after
// the load.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <atomic>

#include "backends/cuda/cuda_common.hpp"
#include "backends/cuda/device_util.cuh"
#include "backends/cuda/screen.hpp"
#include "hive_gpu/error.hpp"

namespace hive::gpu::HIVE_GPU_DEVICE_NS {
namespace {

using namespace dev;

// NVIDIA only (mma.sync, ldmatrix, cp.async): warps are 32 lanes here.
constexpr int kWarp = 32;
constexpr unsigned kFullMask = 0xffffffffu;

constexpr int kBM = 128;                 // queries per CTA
constexpr int kBN = 256;                 // rows per tile
constexpr int kThreads = 256;            // 8 warps: 2 (queries) x 4 (rows) of 64 x 64
constexpr int kWarpM = 64, kWarpN = 64;  // scores per warp: 4 m16 x 8 n8 mma tiles
constexpr int kSlice = 64;               // bytes of each row per pipeline step
constexpr int kPitch = kSlice + 16;      // odd multiple of 16 B: ldmatrix rows hit distinct banks
constexpr int kStages = 4;  // 6 measured no faster on an H200 (rows come from L2)
constexpr int kStageBytes = kBN * kPitch + kBN * 4;  // the rows' slice, then (first slice) their norms
constexpr int kQueue = 1024;                         // candidate queue entries per CTA
constexpr int kMaxRowBytes = 1024;                   // padded operand bytes per query / row
static_assert(kBN == kThreads && kBM <= kThreads, "one row (query) per thread in the per-tile set-ups");
static_assert(kBM == 2 * kWarpM && kBN == 4 * kWarpN, "warp grid");
static_assert(kBN * kSlice / 16 == 4 * kThreads, "4 cp.async of 16 bytes per thread and stage");

// Queue entries: row << 7 | local query; kEmptyKey marks a slot that holds nothing.
static_assert(kBM == 128, "queue entry packing");

struct Params {
  const void* base;
  const float* queries;
  const float* rn2;
  const float* qn2;
  const float* tau;
  const uint32_t* deleted;
  uint64_t* cand;
  uint32_t* count;
  std::size_t n, nq, dim, cap;
  std::size_t row_bytes;  // dim * element size
  int kp;                 // row_bytes rounded up to kSlice (the tail is zeros on both sides)
  int tiles_per_cta;
  int metric;  // 0 L2, 1 InnerProduct, 2 Cosine
  float a, b, c;
  float row_scale;  // the rows are stored times this power of two (1: as they are)
};

std::size_t smem_bytes(int kp) {
  return std::size_t(kBM) * std::size_t(kp + 16) + std::size_t(kStages) * kStageBytes + kBN * sizeof(float2) +
         kBM * sizeof(float4) + kQueue * sizeof(uint64_t) + 16;
}

std::size_t elem_bytes(ScalarType s) { return s == ScalarType::F32 ? 4 : 2; }

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

// The same rounding on raw bits: half an ulp added, the 13 low bits cleared (ptxas drops the
// AND, as the tf32 mma ignores those bits: one add per element, where cvt.rna costs 3 on sm_90).
// Equal to cvt.rna for every non-NaN input (the carry of the largest values correctly reaches
// infinity); a NaN may come out as another NaN or a zero, but a row holding a NaN has a NaN norm
// and is emitted anyway.
__device__ __forceinline__ uint32_t tf32_bits(uint32_t u) { return (u + 0x1000u) & 0xffffe000u; }

template <ScalarType S>
__device__ __forceinline__ void mma(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  if constexpr (S == ScalarType::F32) {
    asm("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  } else if constexpr (S == ScalarType::F16) {
    asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  } else {
    asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  }
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

// All threads of the CTA: emits the queued entries, then empties the queue. The deleted test
// happens here, off the epilogue's path.
__device__ void flush_queue(const Params& p, std::size_t q0, const uint64_t* queue, uint32_t* qcount, int tid,
                            int lane) {
  const uint32_t len = min(*qcount, uint32_t(kQueue));
#pragma unroll 1
  for (uint32_t w = uint32_t(tid - lane); w < len; w += kThreads) {  // warp-uniform trip count
    const uint32_t i = w + uint32_t(lane);
    const uint64_t e = i < len ? queue[i] : kEmptyKey;
    const std::size_t row = std::size_t(e >> 7);
    const bool ok = e != kEmptyKey && !is_deleted(p.deleted, row);
    emit_warp(p, q0, ok, uint32_t(e & 127u), row, lane);
  }
  __syncthreads();  // everyone has read the queue
  if (tid == 0) *qcount = 0;
  __syncthreads();
}

// ---- the kernel ----------------------------------------------------------------------------
template <ScalarType S>
__global__ void __launch_bounds__(kThreads, 1) screen_kernel(Params p) {
  extern __shared__ __align__(16) unsigned char smem[];
  const int tid = int(threadIdx.x), lane = tid & 31, warp = tid >> 5;
  const int wm = warp >> 2, wn = warp & 3;  // this warp's 64 queries / 64 rows of the tile
  const int g = lane >> 2, t = lane & 3;    // mma fragment coordinates
  const int qpitch = p.kp + 16;             // odd multiple of 16 B (kp is a multiple of 64)
  unsigned char* qtile = smem;              // kBM x kp operand bytes (+16 padding)
  unsigned char* stages = qtile + kBM * qpitch;
  float2* rowvals = reinterpret_cast<float2*>(stages + kStages * kStageBytes);  // per tile row: (rn, R)
  float4* qvals = reinterpret_cast<float4*>(rowvals + kBN);  // per query: (A', sc, T', -) (see the epilogue)
  uint64_t* queue = reinterpret_cast<uint64_t*>(qvals + kBM);
  uint32_t* qcount = reinterpret_cast<uint32_t*>(queue + kQueue);

  const std::size_t q0 = std::size_t(blockIdx.x) * kBM;
  const std::size_t row0 = std::size_t(blockIdx.y) * std::size_t(p.tiles_per_cta) * kBN;  // < n (grid)
  const std::size_t row_end = min(p.n, row0 + std::size_t(p.tiles_per_cta) * kBN);
  const int tiles = int((row_end - row0 + kBN - 1) / kBN);
  const int spt = p.kp / kSlice;  // pipeline steps per tile
  const int steps = tiles * spt;
  const auto* base = static_cast<const unsigned char*>(p.base);

  if (tid == 0) *qcount = 0;  // ordered before any use by the main loop's first barrier

  // A step: slice k of tile `tile` into stage `stage`; the first slice also brings the tile's
  // row norms. Rows past the end and the padded tail of each row read as zeros. The callers keep
  // (tile, k, stage) as counters: no division or modulo on the per-step path.
  const int lr = tid >> 2, lch = (tid & 3) * 16;  // this thread's row (+ 64 i) and 16-byte piece
  const uint32_t stages_u32 = smem_u32(stages);
  auto load_step = [&](int tile, int k, int stage) {
    const uint32_t buf = stages_u32 + uint32_t(stage * kStageBytes);
    const std::size_t tr0 = row0 + std::size_t(tile) * kBN;
    const int rows_left = int(min(row_end - tr0, std::size_t(kBN)));
    const int byte = k * kSlice + lch;
    const unsigned char* src = base + (tr0 + std::size_t(lr)) * p.row_bytes + std::size_t(byte);
    const std::size_t rstep = std::size_t(kBN / 4) * p.row_bytes;
    const bool kok = std::size_t(byte) < p.row_bytes;  // row_bytes % 16 == 0: whole pieces
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const bool ok = kok && lr + i * (kBN / 4) < rows_left;
      cp_async16(buf + uint32_t((lr + i * (kBN / 4)) * kPitch + lch), ok ? src + i * rstep : base, ok ? 16u : 0u);
    }
    if (k == 0) {
      const bool ok = tid < rows_left;
      cp_async4(buf + uint32_t(kBN * kPitch + tid * 4), p.rn2 + (ok ? tr0 + std::size_t(tid) : 0), ok ? 4u : 0u);
    }
  };
  int ld_tile = 0, ld_k = 0, ld_stage = 0;  // the next step to load
  auto advance = [&](int& tile, int& k, int& stage) {
    if (++k == spt) {
      k = 0;
      ++tile;
    }
    stage = stage + 1 == kStages ? 0 : stage + 1;
  };

  // Prologue: the first kStages - 1 steps in flight (one group each, empty ones too, so that
  // wait_group counts stay uniform) while the queries are staged.
#pragma unroll
  for (int s = 0; s < kStages - 1; ++s) {
    if (s < steps) {
      load_step(ld_tile, ld_k, ld_stage);
      advance(ld_tile, ld_k, ld_stage);
    }
    cp_async_commit();
  }

  // Per-query terms of the test (see the epilogue), one warp per query. fp16 queries are scaled
  // by a power of two sc (exact) that brings the largest component into [2^14, 2^15): no
  // component overflows fp16 and none that matters lands among its subnormals, so the rounding
  // error stays relative (2^-11) whatever the query's scale; the test divides sc back out
  // exactly. fp32 (tf32) and bf16 have fp32's exponent range: sc = 1. Queries past nq get
  // A' = 0, T' = +inf, so their (zero) scores never pass; the enqueue checks the bounds anyway.
  for (int qr = warp; qr < kBM; qr += kThreads / kWarp) {
    const std::size_t q = q0 + std::size_t(qr);
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
    if (lane == 0) {
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
      // The accumulator holds sc row_scale dot: the test's scale (both powers of two, exact);
      // .w keeps the query's own scale for its conversion below.
      const float st = sc * p.row_scale;
      qvals[qr] = make_float4(st * A, st, -(st * T), sc);
    }
  }
  if constexpr (S == ScalarType::F16) __syncthreads();  // the scales, for the conversion below

  // Queries, rounded once to the operand type: tf32 (round to nearest, ties away, as cvt.rna),
  // fp16 / bf16 (nearest even). Queries past nq and the padded tail are zeros.
  {
    const int chunks = p.kp / 16;
    const int per = S == ScalarType::F32 ? 4 : 8;  // elements per 16-byte piece
#pragma unroll 4
    for (int c = tid; c < kBM * chunks; c += kThreads) {
      const int qr = c / chunks, ch = c - qr * chunks;
      const std::size_t q = q0 + std::size_t(qr);
      const std::size_t e0 = std::size_t(ch) * std::size_t(per);
      uint4 v = make_uint4(0u, 0u, 0u, 0u);
      if (q < p.nq && e0 < p.dim) {
        const float4* src = reinterpret_cast<const float4*>(p.queries + q * p.dim + e0);
        const float4 x = __ldg(src);
        if constexpr (S == ScalarType::F32) {
          v = make_uint4(to_tf32(x.x), to_tf32(x.y), to_tf32(x.z), to_tf32(x.w));
        } else {
          const float4 y = __ldg(src + 1);
          const float sc = S == ScalarType::F16 ? qvals[qr].w : 1.0f;
          v = make_uint4(pack_half2<S>(sc * x.x, sc * x.y), pack_half2<S>(sc * x.z, sc * x.w),
                         pack_half2<S>(sc * y.x, sc * y.y), pack_half2<S>(sc * y.z, sc * y.w));
        }
      }
      *reinterpret_cast<uint4*>(qtile + qr * qpitch + ch * 16) = v;
    }
  }

  // ldmatrix lane addresses. A (queries, x4 = one m16 tile and k-step): matrices (rows 0-7,
  // bytes 0-15), (rows 8-15, 0-15), (rows 0-7, 16-31), (rows 8-15, 16-31) -> a0..a3.
  // B (rows, x4 = two n8 tiles and a k-step): (tile 0, 0-15), (tile 0, 16-31), (tile 1, 0-15),
  // (tile 1, 16-31) -> b0, b1 of tile 0, b0, b1 of tile 1.
  const uint32_t a_lane =
      smem_u32(qtile) + uint32_t((wm * kWarpM + (lane & 7) + ((lane >> 3) & 1) * 8) * qpitch + (lane >> 4) * 16);
  const uint32_t b_lane = uint32_t((wn * kWarpN + (lane & 7) + (lane >> 4) * 8) * kPitch + ((lane >> 3) & 1) * 16);

  float acc[4][8][4] = {};
  int tile = 0, k = 0, stage = 0;  // step s's
  for (int s = 0; s < steps; ++s) {
    cp_async_wait<kStages - 2>();  // this thread's pieces of step s have landed
    __syncthreads();               // everyone's have; everyone is done with step s - 1's stage

    const unsigned char* buf = stages + stage * kStageBytes;
    const std::size_t tr0 = row0 + std::size_t(tile) * kBN;
    if (k == 0) {
      // Uniform: every thread reads the count after the barrier, before any epilogue adds to it.
      if (tile > 0 && *qcount >= uint32_t(kQueue / 2)) flush_queue(p, q0, queue, qcount, tid, lane);
      // Per-row terms, once per tile (the previous tile's epilogue finished before the barrier).
      const float rn2 = reinterpret_cast<const float*>(buf + kBN * kPitch)[tid];
      float rn = 0.0f, R = INFINITY;  // rows past the end never pass (and are checked anyway)
      if (tr0 + std::size_t(tid) < row_end) {
        rn = sqrtf(rn2);
        R = p.metric == 0 ? 0.5f * ((1.0f - p.b) * rn2) : -(p.b * rn2);
      }
      rowvals[tid] = make_float2(rn, R);
#pragma unroll
      for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 8; ++j)
#pragma unroll
          for (int c = 0; c < 4; ++c) acc[i][j][c] = 0.0f;
    }

    const uint32_t a_addr = a_lane + uint32_t(k * kSlice);
    const uint32_t b_addr = smem_u32(buf) + b_lane;
#pragma unroll
    for (int kk = 0; kk < kSlice / 32; ++kk) {
      uint32_t af[4][4], bf[4][4];
#pragma unroll
      for (int i = 0; i < 4; ++i) ldmatrix_x4(af[i], a_addr + uint32_t(i * 16 * qpitch + kk * 32));
#pragma unroll
      for (int jp = 0; jp < 4; ++jp) {
        ldmatrix_x4(bf[jp], b_addr + uint32_t(jp * 16 * kPitch + kk * 32));
        if constexpr (S == ScalarType::F32) {
#pragma unroll
          for (int e = 0; e < 4; ++e) bf[jp][e] = tf32_bits(bf[jp][e]);
        }
      }
      if (kk == 0) {
        // Refill the stage step s - 1 used (no warp reads it after the barrier) here, after the
        // first fragments' loads: the address arithmetic overlaps their latency instead of
        // delaying every warp's first mma after the barrier.
        if (s + kStages - 1 < steps) {
          load_step(ld_tile, ld_k, ld_stage);
          advance(ld_tile, ld_k, ld_stage);
        }
        cp_async_commit();
      }
#pragma unroll
      for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 8; ++j) mma<S>(acc[i][j], af[i], bf[j >> 1][(j & 1) * 2], bf[j >> 1][(j & 1) * 2 + 1]);
    }

    if (k == spt - 1) {
      if (spt == 1) __syncthreads();  // rowvals were written in this step
      // The test, rearranged exactly (in real arithmetic) so that each score costs two FMAs and
      // a compare: emit iff NOT (R_r - T_q > A_q rn_r + dot) with
      //   L2:     A = a qn / 2, R = (1 - b) rn2 / 2, T = (tau - (1 - b) qn2) / 2
      //   IP:     A = a qn,     R = -b rn2,          T = tau + b qn2
      //   Cosine: A = a qn,     R = -b rn2,          T = tau - 1 + b qn2
      // (multiply out: NOT (s - a qn rn - b (qn2 + rn2) > tau)), both sides times the query's
      // scale sc (a power of two: exact), as the accumulator holds sc dot:
      //   NOT (fma(R_r, sc, T'_q) > fma(A'_q, rn_r, sc dot)), A' = sc A, T' = -sc T.
      // NaN anywhere emits.
      float qa[8], qs[8], qt[8];
#pragma unroll
      for (int h = 0; h < 8; ++h) {
        const float4 v = qvals[wm * kWarpM + (h >> 1) * 16 + (h & 1) * 8 + g];
        qa[h] = v.x;
        qs[h] = v.y;
        qt[h] = v.z;
      }
      uint32_t mask[4] = {0u, 0u, 0u, 0u};  // bit j * 4 + c of m-tile i: acc[i][j][c] passes
      const float4* rv = reinterpret_cast<const float4*>(rowvals);
#pragma unroll
      for (int j = 0; j < 8; ++j) {
        const float4 r = rv[(wn * kWarpN + j * 8 + 2 * t) >> 1];  // (rn, R) of rows 2t, 2t + 1
#pragma unroll
        for (int i = 0; i < 4; ++i)
#pragma unroll
          for (int c = 0; c < 4; ++c) {
            const int h = i * 2 + (c >> 1);
            const float x = fmaf(qa[h], (c & 1) ? r.z : r.x, acc[i][j][c]);
            const float y = fmaf((c & 1) ? r.w : r.y, qs[h], qt[h]);
            if (!(y > x)) mask[i] |= 1u << (j * 4 + c);
          }
      }
      if ((mask[0] | mask[1] | mask[2] | mask[3]) != 0u) {
        uint32_t slot =
            atomicAdd(qcount, uint32_t(__popc(mask[0]) + __popc(mask[1]) + __popc(mask[2]) + __popc(mask[3])));
#pragma unroll
        for (int i = 0; i < 4; ++i) {
          uint32_t m = mask[i];
          while (m != 0u) {
            const int bit = __ffs(int(m)) - 1;
            m &= m - 1u;
            const int j = bit >> 2, c = bit & 3;
            const uint32_t ql = uint32_t(wm * kWarpM + i * 16 + (c >> 1) * 8 + g);
            const std::size_t row = tr0 + std::size_t(wn * kWarpN + j * 8 + 2 * t + (c & 1));
            const bool ok = q0 + ql < p.nq && row < row_end;
            if (slot < uint32_t(kQueue))
              queue[slot] = ok ? (uint64_t(row) << 7) | uint64_t(ql) : kEmptyKey;
            else if (ok)
              emit_one(p, q0 + ql, row);
            ++slot;
          }
        }
      }
    }
    advance(tile, k, stage);
  }
  cp_async_wait<0>();
  __syncthreads();
  flush_queue(p, q0, queue, qcount, tid, lane);
}

template <ScalarType S>
void run_screen(const Params& prm, dim3 grid, std::size_t smem, cudaStream_t stream) {
  // The shared-memory opt-in is per device: set it (to the device's limit) once for each.
  static std::atomic<uint64_t> attr_done{0};
  int device = 0;
  check(cudaGetDevice(&device), "cudaGetDevice");
  const uint64_t bit = uint64_t(1) << (device & 63);
  if ((attr_done.load(std::memory_order_acquire) & bit) == 0) {
    int optin = 0;
    check(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device), "cudaDeviceGetAttribute");
    check(cudaFuncSetAttribute(screen_kernel<S>, cudaFuncAttributeMaxDynamicSharedMemorySize, optin),
          "cudaFuncSetAttribute(screen)");
    attr_done.fetch_or(bit, std::memory_order_acq_rel);
  }
  screen_kernel<S><<<grid, kThreads, smem, stream>>>(prm);
  check(cudaGetLastError(), "screen kernel launch");
}

int padded_row_bytes(ScalarType s, std::size_t dim) {
  return int((dim * elem_bytes(s) + kSlice - 1) / kSlice * kSlice);
}

}  // namespace

bool screen_supported(Metric m, ScalarType s, std::size_t dim) {
  if (m != Metric::L2 && m != Metric::InnerProduct && m != Metric::Cosine) return false;
  if (s != ScalarType::F32 && s != ScalarType::F16 && s != ScalarType::BF16) return false;
  if (dim == 0 || (dim * elem_bytes(s)) % 16 != 0 || dim * elem_bytes(s) > std::size_t(kMaxRowBytes)) return false;
  int device = 0, optin = 0;
  if (cudaGetDevice(&device) != cudaSuccess ||
      cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device) != cudaSuccess) {
    (void)cudaGetLastError();
    return false;
  }
  return smem_bytes(padded_row_bytes(s, dim)) <= std::size_t(optin);
}

void launch_screen(const ScreenArgs& a, cudaStream_t stream) {
  if (a.n == 0 || a.nq == 0) return;
  if (!screen_supported(a.metric, a.storage, a.dim)) throw Error(ErrorCode::Internal, "CUDA screen: unsupported");
  const std::size_t qtiles = (a.nq + kBM - 1) / kBM;
  const std::size_t rtiles = (a.n + kBN - 1) / kBN;
  if (qtiles > 0x7fffffffu) throw Error(ErrorCode::Internal, "CUDA screen: too many queries in one launch");
  std::size_t per = a.tiles_per_cta;
  if (per == 0) {
    // Long row ranges amortise the query staging and the pipeline fill (~1-2 us a CTA); enough
    // CTAs for ~8 waves at one CTA per SM keeps the last wave's idle share small.
    const int sms = sm_count();
    per = std::clamp<std::size_t>(rtiles * qtiles / (8 * std::size_t(sms)), 1, 32);
  }
  per = std::min(std::max(per, (rtiles + 65534) / 65535), rtiles);
  const dim3 grid{unsigned(qtiles), unsigned((rtiles + per - 1) / per), 1u};

  Params prm{};
  prm.base = a.base;
  prm.queries = a.queries;
  prm.rn2 = a.row_sq_norms;
  prm.c = a.c;
  prm.row_scale = a.row_scale;
  prm.qn2 = a.query_sq_norms;
  prm.tau = a.thresholds;
  prm.deleted = a.deleted;
  prm.cand = a.cand;
  prm.count = a.count;
  prm.n = a.n;
  prm.nq = a.nq;
  prm.dim = a.dim;
  prm.cap = a.cap;
  prm.row_bytes = a.dim * elem_bytes(a.storage);
  prm.kp = padded_row_bytes(a.storage, a.dim);
  prm.tiles_per_cta = int(per);
  prm.metric = a.metric == Metric::L2 ? 0 : a.metric == Metric::InnerProduct ? 1 : 2;
  prm.a = a.a;
  prm.b = a.b;
  const std::size_t smem = smem_bytes(prm.kp);
  switch (a.storage) {
    case ScalarType::F32:
      run_screen<ScalarType::F32>(prm, grid, smem, stream);
      return;
    case ScalarType::F16:
      run_screen<ScalarType::F16>(prm, grid, smem, stream);
      return;
    case ScalarType::BF16:
      run_screen<ScalarType::BF16>(prm, grid, smem, stream);
      return;
    case ScalarType::Bits:
      break;
  }
  throw Error(ErrorCode::Internal, "CUDA screen: unexpected storage");
}

}  // namespace hive::gpu::HIVE_GPU_DEVICE_NS
