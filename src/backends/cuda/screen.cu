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
#include <limits>

#include "backends/cuda/cuda_common.hpp"
#include "backends/cuda/device_util.cuh"
#include "backends/cuda/screen.hpp"
#include "backends/cuda/screen_common.cuh"
#include "core/env.hpp"
#include "hive_gpu/error.hpp"

namespace hive::gpu::HIVE_GPU_DEVICE_NS {
namespace {

using namespace screen_detail;

// Tiles of this kernel: kBM queries (screen_common.cuh) x kBN rows.
constexpr int kBN = 256;                 // rows per tile
constexpr int kWarpM = 64, kWarpN = 64;  // scores per warp: 4 m16 x 8 n8 mma tiles (8 warps: 2 x 4)
constexpr int kSlice = 64;               // bytes of each row per pipeline step
constexpr int kPitch = kSlice + 16;      // odd multiple of 16 B: ldmatrix rows hit distinct banks
constexpr int kStages = 4;  // 6 measured no faster on an H200 (rows come from L2)
constexpr int kStageBytes = kBN * kPitch + kBN * 4;  // the rows' slice, then (first slice) their norms
constexpr int kMaxRowBytes = 1024;                   // padded operand bytes per query / row
static_assert(kBN == kThreads, "one row per thread in the per-tile set-ups");
static_assert(kBM == 2 * kWarpM && kBN == 4 * kWarpN, "warp grid");
static_assert(kBN * kSlice / 16 == 4 * kThreads, "4 cp.async of 16 bytes per thread and stage");

std::size_t smem_bytes(int kp) {
  return std::size_t(kBM) * std::size_t(kp + 16) + std::size_t(kStages) * kStageBytes + kBN * sizeof(float2) +
         kBM * sizeof(float4) + kQueue * sizeof(uint64_t) + 16;
}

std::size_t elem_bytes(ScalarType s) { return s == ScalarType::F32 ? 4 : 2; }

// Row tiles per CTA for a grid of qtiles x (row ranges) CTAs. Both kernels run one CTA an SM
// and their CTAs take about the same time, so a launch lasts about ceil(CTAs / SMs) rounds of
// (tiles a CTA + its start-up: barriers, the query tile, the pipeline's fill, counted as
// kStartTiles tiles). The old rule (~8 rounds, at most 64 tiles a CTA) left the last round
// partly idle: 27 x 123 CTAs on 132 SMs are 25.2 rounds, run as 26. This takes, for each number
// of rounds up to 32, the most row ranges that fit it (the shortest CTAs), and of those splits
// the one of fewest tile-times: for 27 query tiles x 7 813 row tiles, 44 ranges of 178 tiles,
// 9 full rounds. (32 candidates: a loop over every range count took ~30 us of host time for a
// batch of one query tile.)
std::size_t balanced_tiles_per_cta(std::size_t qtiles, std::size_t rtiles, std::size_t sms) {
  constexpr std::size_t kStartTiles = 2, kMostRounds = 32;
  sms = std::max<std::size_t>(sms, 1);
  std::size_t best = rtiles, best_cost = std::numeric_limits<std::size_t>::max();
  for (std::size_t rounds = 1; rounds <= kMostRounds; ++rounds) {
    const std::size_t fit = std::min<std::size_t>({rtiles, 65535, rounds * sms / qtiles});
    if (fit == 0) continue;
    const std::size_t per = (rtiles + fit - 1) / fit, ranges = (rtiles + per - 1) / per;
    const std::size_t cost = (qtiles * ranges + sms - 1) / sms * (per + kStartTiles);
    if (cost < best_cost) {
      best_cost = cost;
      best = per;
    }
  }
  return best;
}

// ---- tensor-core operands ----------------------------------------------------------------
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

  stage_queries<S>(p, q0, qtile, qpitch, qvals, tid, lane, warp);

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
      enqueue_passes(p, q0, row_end, mask, queue, qcount, [&](int i, int bit, uint32_t& ql, std::size_t& row) {
        const int j = bit >> 2, c = bit & 3;
        ql = uint32_t(wm * kWarpM + i * 16 + (c >> 1) * 8 + g);
        row = tr0 + std::size_t(wn * kWarpN + j * 8 + 2 * t + (c & 1));
      });
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

bool screen_wgmma_runs(ScalarType s, std::size_t dim) {
#if defined(HIVE_GPU_CUDA_WGMMA)
  return wgmma_screen_runs(s, dim);
#else
  (void)s;
  (void)dim;
  return false;  // built without the sm_90a kernel
#endif
}

std::size_t screen_scratch_bytes(std::size_t n, std::size_t nq, std::size_t dim) {
  // fp16 / bf16 operand rows of whole 128-byte spans (the kernel's kp).
  return wgmma_scratch_layout(n, nq, (dim * 2 + 127) / 128 * 128).bytes;
}

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
  const bool wgmma = a.kernel == ScreenArgs::Kernel::Wgmma ||
                     (a.kernel == ScreenArgs::Kernel::Auto && a.scratch != nullptr &&
                      !detail::env_flag("HIVE_GPU_CUDA_NO_WGMMA") && screen_wgmma_runs(a.storage, a.dim));
  if (wgmma && (!screen_wgmma_runs(a.storage, a.dim) || a.scratch == nullptr))
    throw Error(ErrorCode::Internal, "CUDA screen: the wgmma kernel does not serve this configuration");
  const std::size_t tile_rows = wgmma ? std::size_t(kWgmmaRows) : std::size_t(kBN);
  const std::size_t qtiles = (a.nq + kBM - 1) / kBM;
  const std::size_t rtiles = (a.n + tile_rows - 1) / tile_rows;
  if (qtiles > 0x7fffffffu) throw Error(ErrorCode::Internal, "CUDA screen: too many queries in one launch");
  std::size_t per = a.tiles_per_cta;
  if (per == 0) {
    if (detail::env_flag("HIVE_GPU_CUDA_SCREEN_LEGACY_GRID")) {  // (read per launch: A/B timing)
      const int sms = sm_count();
      per = std::clamp<std::size_t>(rtiles * qtiles / (8 * std::size_t(sms)), 1, 8192 / tile_rows);
    } else {
      per = balanced_tiles_per_cta(qtiles, rtiles, std::size_t(sm_count()));
    }
  }
  per = std::min(std::max(per, (rtiles + 65534) / 65535), rtiles);
  const dim3 grid{unsigned(qtiles), unsigned((rtiles + per - 1) / per), 1u};

  Params prm{};
  prm.base = a.base;
  prm.queries = a.queries;
  prm.rn2 = a.row_sq_norms;
  if (a.scratch != nullptr) {
    const WgmmaScratch w = wgmma_scratch(a.scratch, a.n, a.nq);
    prm.row_terms = w.row_terms;
    prm.tile_terms = w.tile_terms;
    prm.query_terms = w.query_terms;
    prm.query_ops = w.query_ops;
  }
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
  if (wgmma) {
#if defined(HIVE_GPU_CUDA_WGMMA)
    prm.kp = int((prm.row_bytes + 127) / 128 * 128);  // whole 64-element spans
    launch_wgmma_screen(prm, a.storage, grid, stream);
    return;
#endif
  }
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
