// CUDA backend: the tensor-core screen through wgmma, for sm_90a (H100 / H200). Same contract
// as the mma.sync kernel of screen.cu (see screen.hpp): the same operands, the same fp32 test in
// the same arithmetic, the same candidate lists; launch_screen picks this one on compute
// capability 9.0 devices for fp16 / bf16 rows of at most 128 dimensions.
//
// Why a second kernel: the mma.sync screen reached ~150 TFLOP/s on an H100 (a quarter of what
// its tensor cores do through wgmma) because each warp alternates between feeding the tensor
// cores and testing its scores. wgmma runs a warpgroup's 64 x 128 x 16 product as one
// asynchronous instruction reading the rows straight from shared memory, so the tensor cores
// compute tile t + 1 while the same warps test tile t (two accumulator sets, alternating).
//
// Layout: a CTA is 2 consumer warpgroups of 64 queries (kBM = 128) and a producer warpgroup,
// and streams a contiguous range of rows in tiles of 128. One producer lane copies the row tiles
// into kStages stages through the tensor memory accelerator (the rows as a 2-D tensor map) and
// bulk copies, each stage guarded by a full and an empty mbarrier; setmaxnreg hands the
// producer warpgroup's registers to the consumers. Each consumer warpgroup takes two tiles per
// step: both products are issued, the first tile is tested while the tensor cores compute the
// second, then the second is tested (nothing stays in flight across the loop's back edge:
// ptxas serializes wgmma whose accumulators it cannot track there). The warpgroups wait on the
// stages' barriers, not on each other, so one's tests overlap the other's products. Both
// operands come from shared memory: the CTA's queries (made once per launch by query_ops_kernel,
// copied in once) and the row tiles. A stage holds NK spans (64 elements, 128 bytes, of every
// row), each 128 rows x 128 B in the 128-byte swizzle that the wgmma descriptor names (16-byte
// piece c of row r at r * 128 + ((c ^ (r & 7)) << 4), spans 1024-byte aligned), then the tile's
// per-row terms of the test; the queries' tile has the same layout.
#include <cuda.h>

#include <algorithm>
#include <atomic>

#include "backends/cuda/cuda_common.hpp"
#include "backends/cuda/screen_common.cuh"
#include "hive_gpu/error.hpp"

namespace hive::gpu::HIVE_GPU_DEVICE_NS::screen_detail {
namespace {

constexpr int kRows = kWgmmaRows;        // rows per tile
constexpr int kSpanBytes = kRows * 128;  // one 64-element span of a tile: 16 KiB
constexpr int kTermBytes = kRows * 8;    // the tile's (rn, R): 1 KiB, so stages stay 1024-aligned
constexpr int kAcc = kRows / 2;  // accumulators per thread: 64 x 128 fp32 over 128 threads
static_assert(kThreads == 2 * 128 && kBM == 2 * 64, "two warpgroups of 64 queries");
static_assert(kRows <= kThreads, "one row per thread in the per-tile set-up");
static_assert(kBM == kRows, "the queries' operand tile has a row tile's layout");

static_assert(kTermBytes % 1024 == 0, "stage alignment");

template <int NK>
constexpr int stage_bytes() {
  return NK * kSpanBytes + kTermBytes;
}
// Stages of the row pipeline (the most that fit beside the queries' tile and the two queues).
template <int NK>
constexpr int stages() {
  return NK == 1 ? 8 : 5;
}
// Two consumer warpgroups and a producer warpgroup, one lane of which issues the copies (a
// whole warpgroup, so that setmaxnreg can hand its registers to the consumers).
constexpr int kWsThreads = kThreads + 128;
template <int NK>
constexpr std::size_t smem_bytes() {
  return 1024 /* alignment slack */ + std::size_t(stages<NK>()) * stage_bytes<NK>() +
         std::size_t(NK) * kSpanBytes /* queries */ + kBM * sizeof(float4) + 2 * kQueue * sizeof(uint64_t) +
         2 * std::size_t(stages<NK>()) * sizeof(uint64_t) /* mbarriers */ + 2 * sizeof(uint32_t);
}
static_assert(smem_bytes<1>() <= 227 * 1024 && smem_bytes<2>() <= 227 * 1024, "shared memory of an sm_90 CTA");

// ---- wgmma wrappers (sm_90a) ---------------------------------------------------------------
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
__device__ __forceinline__ void wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void wgmma_commit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
template <int N>
__device__ __forceinline__ void wgmma_wait() {
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
}
// Generic-proxy writes (cp.async) before async-proxy reads (wgmma's shared-memory operands).
__device__ __forceinline__ void fence_proxy_async() { asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory"); }
// Keeps the compiler from moving accesses of in-flight accumulators across the waits.
__device__ __forceinline__ void fence_operands(float (&acc)[kAcc]) {
#pragma unroll
  for (int i = 0; i < kAcc; ++i) asm volatile("" : "+f"(acc[i])::"memory");
}

// mbarriers (shared::cta), the tensor memory accelerator's copies, named barriers.
__device__ __forceinline__ void mbar_init(uint32_t bar, uint32_t count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(bar), "r"(count) : "memory");
}
__device__ __forceinline__ void fence_mbar_init() { asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory"); }
__device__ __forceinline__ void mbar_arrive(uint32_t bar) {
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(bar) : "memory");
}
__device__ __forceinline__ void mbar_expect_tx(uint32_t bar, uint32_t bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(bar), "r"(bytes) : "memory");
}
// Until the phase of the given parity has completed.
__device__ __forceinline__ void mbar_wait(uint32_t bar, uint32_t parity) {
  asm volatile(
      "{\n.reg .pred p;\nWAIT:\n"
      "mbarrier.try_wait.parity.shared::cta.b64 p, [%0], %1;\n"
      "@!p bra WAIT;\n}\n" ::"r"(bar),
      "r"(parity)
      : "memory");
}
// Box (64 elements, 128 rows) at (c0, c1) of the tensor map into dst (128-byte swizzle).
__device__ __forceinline__ void tma_load_2d(uint32_t dst, const CUtensorMap* map, int c0, int c1, uint32_t bar) {
  asm volatile(
      "cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3}], [%4];\n" ::"r"(
          dst),
      "l"(reinterpret_cast<uint64_t>(map)), "r"(c0), "r"(c1), "r"(bar)
      : "memory");
}
__device__ __forceinline__ void bulk_load(uint32_t dst, const void* src, uint32_t bytes, uint32_t bar) {
  asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];\n" ::"r"(dst),
               "l"(src), "r"(bytes), "r"(bar)
               : "memory");
}
// Named barrier `id` of one warpgroup (128 threads); the _or form returns whether any thread's
// v was true.
__device__ __forceinline__ void wg_sync(int id) { asm volatile("bar.sync %0, 128;\n" ::"r"(id) : "memory"); }
__device__ __forceinline__ bool wg_sync_or(int id, bool v) {
  uint32_t r;
  asm volatile(
      "{\n.reg .pred p, q;\nsetp.ne.u32 q, %1, 0;\nbar.red.or.pred p, %2, 128, q;\nselp.u32 %0, 1, 0, p;\n}\n"
      : "=r"(r)
      : "r"(uint32_t(v)), "r"(id)
      : "memory");
  return r != 0u;
}

// Shared-memory matrix descriptor: K-major, 128-byte swizzle, 8-row groups 1024 bytes apart
// (the stride offset); the leading offset is unused for this layout.
__device__ __forceinline__ uint64_t sw128_desc(uint32_t saddr) {
  return uint64_t((saddr & 0x3ffffu) >> 4) | (uint64_t(1) << 16) | (uint64_t(1024 >> 4) << 32) | (uint64_t(1) << 62);
}

// acc (+)= A (registers: this warp's 16 queries x 16 elements) * B (shared memory: 128 rows x
// 16 elements, K-major); accumulate = 0 overwrites acc.
#define HIVE_WGMMA_ACC                                                                                       \
  "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, " \
  "%23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, "  \
  "%44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}"
#define HIVE_WGMMA_OUTS(a)                                                                                          \
  "+f"(a[0]), "+f"(a[1]), "+f"(a[2]), "+f"(a[3]), "+f"(a[4]), "+f"(a[5]), "+f"(a[6]), "+f"(a[7]), "+f"(a[8]),      \
      "+f"(a[9]), "+f"(a[10]), "+f"(a[11]), "+f"(a[12]), "+f"(a[13]), "+f"(a[14]), "+f"(a[15]), "+f"(a[16]),       \
      "+f"(a[17]), "+f"(a[18]), "+f"(a[19]), "+f"(a[20]), "+f"(a[21]), "+f"(a[22]), "+f"(a[23]), "+f"(a[24]),      \
      "+f"(a[25]), "+f"(a[26]), "+f"(a[27]), "+f"(a[28]), "+f"(a[29]), "+f"(a[30]), "+f"(a[31]), "+f"(a[32]),      \
      "+f"(a[33]), "+f"(a[34]), "+f"(a[35]), "+f"(a[36]), "+f"(a[37]), "+f"(a[38]), "+f"(a[39]), "+f"(a[40]),      \
      "+f"(a[41]), "+f"(a[42]), "+f"(a[43]), "+f"(a[44]), "+f"(a[45]), "+f"(a[46]), "+f"(a[47]), "+f"(a[48]),      \
      "+f"(a[49]), "+f"(a[50]), "+f"(a[51]), "+f"(a[52]), "+f"(a[53]), "+f"(a[54]), "+f"(a[55]), "+f"(a[56]),      \
      "+f"(a[57]), "+f"(a[58]), "+f"(a[59]), "+f"(a[60]), "+f"(a[61]), "+f"(a[62]), "+f"(a[63])

// acc (+)= A (shared memory: 64 queries x 16 elements) * B (shared memory: 128 rows x 16
// elements), both K-major in the 128-byte swizzle; accumulate = 0 overwrites acc.
template <ScalarType S>
__device__ __forceinline__ void wgmma_ss(float (&acc)[kAcc], uint64_t adesc, uint64_t bdesc, int accumulate) {
  static_assert(kAcc == 64, "the operand list below is written for n = 128");
  if constexpr (S == ScalarType::F16) {
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n128k16.f32.f16.f16 " HIVE_WGMMA_ACC ", %64, %65, p, 1, 1, 0, 0;\n}\n"
        : HIVE_WGMMA_OUTS(acc)
        : "l"(adesc), "l"(bdesc), "r"(accumulate));
  } else {
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 " HIVE_WGMMA_ACC ", %64, %65, p, 1, 1, 0, 0;\n}\n"
        : HIVE_WGMMA_OUTS(acc)
        : "l"(adesc), "l"(bdesc), "r"(accumulate));
  }
}
#undef HIVE_WGMMA_ACC
#undef HIVE_WGMMA_OUTS
#endif

// ---- the weak test ---------------------------------------------------------------------------
// The exact test emits a score acc of row r for a query iff NOT (y > x), with (fp32, one rounding
// each) x = fma(qa, rn_r, acc), y = fma(R_r, qs, qt), where qs > 0 and qa >= 0. Over a tile whose
// rows have R_r >= Rmin, rn_r <= rnmax and |R_r| <= Rabs (tt = (Rmin, rnmax, Rabs), made by
// row_terms_kernel), it never emits a score below
//   inner product / cosine: w = Rmin qs + qt - qa rnmax - m,
//   L2 (R_r varies too much across a tile): fma(R_r, qs, w') with w' = qt - qa rnmax - m,
// for a margin m = 2^-16 E + 2^-120, E = Rabs qs + |qt| + qa rnmax: in real arithmetic such a
// score gives x < y - m, and the roundings of x, y and of w itself move the comparison by a few
// units of 2^-24 E (a score far below -E gives x < -E <= y outright). 2^-16 E is ~2^-16 of the
// threshold's size, so the weak test lets through hardly more than the exact one. qt = +inf
// (no threshold can pass) and -inf (every row passes) give w = qt; a NaN gives w = NaN, which
// every score passes (the weak test is "NOT (acc < w)"), as the exact test emits NaNs.
template <bool kL2>
__device__ __forceinline__ float weak_threshold(const float4 tt, float qa, float qs, float qt) {
  const float e = fmaf(tt.z, qs, fabsf(qt)) + qa * tt.y;
  const float base = kL2 ? qt : fmaf(tt.x, qs, qt);
  const float w = base - fmaf(qa, tt.y, fmaf(0x1p-16f, e, 0x1p-120f));
  return fabsf(qt) == INFINITY ? qt : w;
}

// ---- the kernel ----------------------------------------------------------------------------
// Warp-specialized: a producer warp streams the row tiles into the stages through the tensor
// memory accelerator (one 2-D copy a span, in the 128-byte swizzle, rows past n zero-filled;
// one bulk copy of the tile's row terms), each stage guarded by a full and an empty mbarrier;
// the two warpgroups consume them independently (no CTA-wide barrier in the loop), so while
// one tests its second tile of a pair the other's products keep the tensor cores busy. Each
// warpgroup has its own candidate queue, flushed at its own named barrier.
template <ScalarType S, int NK, bool kL2>
__global__ void __launch_bounds__(kWsThreads, 1) wgmma_screen_kernel(const __grid_constant__ CUtensorMap rows_map,
                                                                     Params p) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  extern __shared__ __align__(1024) unsigned char smem_raw[];
  constexpr int kStages = stages<NK>();
  constexpr int kStage = stage_bytes<NK>();
  constexpr int kChunks = NK * 8;  // 16-byte pieces per (padded) row
  const int tid = int(threadIdx.x), lane = tid & 31, warp = tid >> 5;
  const int wg = warp >> 2, wq = warp & 3;  // warpgroup (64 queries; 2: the producer), warp within it
  const int g = lane >> 2, t = lane & 3;    // accumulator fragment coordinates
  unsigned char* const smem = smem_raw + ((1024u - (smem_u32(smem_raw) & 1023u)) & 1023u);
  unsigned char* const stages_p = smem;
  unsigned char* const qtile = stages_p + kStages * kStage;
  float4* const qvals = reinterpret_cast<float4*>(qtile + NK * kSpanBytes);
  uint64_t* const queues = reinterpret_cast<uint64_t*>(qvals + kBM);           // kQueue per warpgroup
  uint64_t* const bars = queues + 2 * kQueue;                                   // full[kStages], empty[kStages]
  uint32_t* const qcounts = reinterpret_cast<uint32_t*>(bars + 2 * kStages);  // one per warpgroup
  const uint32_t stages_u32 = smem_u32(stages_p);
  const uint32_t full0 = smem_u32(bars), empty0 = full0 + uint32_t(kStages * 8);

  const std::size_t q0 = std::size_t(blockIdx.x) * kBM;
  const std::size_t row0 = std::size_t(blockIdx.y) * std::size_t(p.tiles_per_cta) * kRows;  // < n (grid)
  const std::size_t row_end = min(p.n, row0 + std::size_t(p.tiles_per_cta) * kRows);
  const int tiles = int((row_end - row0 + kRows - 1) / kRows);
  const int tile0 = int(row0 / kRows), last_tile = int((p.n - 1) / kRows);  // global tile numbers

  // Set-up (every thread, the last CTA-wide barrier): the barriers, the queue counts, and the
  // CTA's queries (operands and terms, made once per launch by query_ops_kernel) copied in as a
  // tile of rows (the A operand's layout is the B operand's).
  if (tid < kStages) {
    mbar_init(full0 + uint32_t(tid * 8), 1);                        // the producer's arrival
    mbar_init(empty0 + uint32_t(tid * 8), kThreads / kWarp);        // one arrival per consumer warp
  }
  if (tid < 2) qcounts[tid] = 0;
  if (tid < kThreads) {
    const std::size_t kp = std::size_t(NK) * 128;
#pragma unroll 4
    for (int c = tid; c < kBM * kChunks; c += kThreads) {
      const int qr = c / kChunks, ch = c % kChunks;
      const bool ok = q0 + std::size_t(qr) < p.nq;
      cp_async16(smem_u32(qtile) + uint32_t((ch >> 3) * kSpanBytes + qr * 128 + (((ch & 7) ^ (qr & 7)) << 4)),
                 p.query_ops + (ok ? (q0 + std::size_t(qr)) * kp + std::size_t(ch) * 16 : 0), ok ? 16u : 0u);
    }
    if (tid < kBM) {
      if (q0 + std::size_t(tid) < p.nq)
        cp_async16(smem_u32(qvals + tid), p.query_terms + q0 + std::size_t(tid), 16u);
      else
        qvals[tid] = make_float4(0.0f, 1.0f, INFINITY, 1.0f);  // never passes (as query_terms past nq)
    }
    cp_async_commit();
    cp_async_wait<0>();
  }
  fence_mbar_init();
  fence_proxy_async();  // the query tile (generic writes) before wgmma reads it
  __syncthreads();

  // Tiles are consumed in pairs; a pair's second tile past the last is "filled" with nothing
  // (an arrival without bytes): its products are computed on whatever the stage holds and
  // emit nothing.
  const int tiles_even = (tiles + 1) & ~1;
  if (wg == 2) {  // the producer warpgroup: one lane issues every copy
    asm volatile("setmaxnreg.dec.sync.aligned.u32 40;\n" ::: "memory");
    if (tid == kThreads) {
      uint32_t empty_phase = 0u;
      int s = 0;
      for (int tl = 0; tl < tiles_even; ++tl) {
        const uint32_t full = full0 + uint32_t(s * 8);
        if (tl >= kStages) {  // the stage's previous tile released by all eight consumer warps
          mbar_wait(empty0 + uint32_t(s * 8), (empty_phase >> s) & 1u);
          empty_phase ^= 1u << s;
        }
        if (tl < tiles) {
          const uint32_t buf = stages_u32 + uint32_t(s * kStage);
          const int r = int(row0) + tl * kRows;
          mbar_expect_tx(full, uint32_t(NK * kSpanBytes + kTermBytes));
#pragma unroll
          for (int sp = 0; sp < NK; ++sp) tma_load_2d(buf + uint32_t(sp * kSpanBytes), &rows_map, sp * 64, r, full);
          bulk_load(buf + uint32_t(NK * kSpanBytes), p.row_terms + r, uint32_t(kTermBytes), full);
        } else {
          mbar_arrive(full);
        }
        s = s + 1 == kStages ? 0 : s + 1;
      }
    }
    return;
  }

  asm volatile("setmaxnreg.inc.sync.aligned.u32 232;\n" ::: "memory");  // 128 x 40 + 256 x 232 <= 64K
  uint64_t* const queue = queues + wg * kQueue;
  uint32_t* const qcount = qcounts + wg;
  const int wtid = tid & 127;  // thread within the warpgroup

  // The test's per-query terms of this thread's two queries (rows g and g + 8 of the warp's 16).
  float qa[2], qs[2], qt[2];
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const float4 v = qvals[wg * 64 + wq * 16 + h * 8 + g];
    qa[h] = v.x;
    qs[h] = v.y;
    qt[h] = v.z;
  }

  // Descriptors: the stages' base one, plus (offset >> 4) in its low word (the start-address
  // field, which no shared-memory offset here carries past).
  // This warpgroup's 64 queries are rows 64 wg .. 64 wg + 63 of the query tile (1024-aligned).
  const uint64_t desc0 = sw128_desc(stages_u32);
  const uint64_t adesc0 = sw128_desc(smem_u32(qtile) + uint32_t(wg * 64 * 128));
  auto issue = [&](float(&acc)[kAcc], int stage) {
    const uint32_t lo = uint32_t(desc0) + (uint32_t(stage * kStage) >> 4);
#pragma unroll
    for (int s = 0; s < NK; ++s)
#pragma unroll
      for (int kk = 0; kk < 4; ++kk) {
        const uint32_t off = uint32_t((s * kSpanBytes + kk * 32) >> 4);
        const uint64_t bdesc = (desc0 & ~uint64_t(0xffffffffu)) | uint64_t(lo + off);
        const uint64_t adesc = (adesc0 & ~uint64_t(0xffffffffu)) | uint64_t(uint32_t(adesc0) + off);
        wgmma_ss<S>(acc, adesc, bdesc, (s | kk) != 0);
      }
    wgmma_commit();
  };

  // The test (screen.cu's epilogue, same arithmetic): emit iff
  //   NOT (fma(R_r, sc, T'_q) > fma(A'_q, rn_r, sc dot)).
  // Accumulator i of this thread: query row g + 8 ((i >> 1) & 1), tile row 8 (i >> 2) + 2t + (i & 1).
  // A tile past the last one (the second of the last pair) emits nothing.
  //
  // First a weaker test that the exact one implies (see weak_threshold): one compare per score
  // for inner product and cosine, an FMA and a compare for L2, against ~5 instructions for the
  // exact test and its mask. Only row groups where some score passes it run the exact test, so the
  // emitted rows are the exact test's alone.
  auto epilogue = [&](const float(&acc)[kAcc], int tile, int stage, const float4 tt) {
    const std::size_t tr0 = row0 + std::size_t(tile) * kRows;
    if (tr0 >= row_end) return;  // (uniform)
    const float4* rv = reinterpret_cast<const float4*>(stages_p + stage * kStage + NK * kSpanBytes);
    float w[2];
#pragma unroll
    for (int h = 0; h < 2; ++h) w[h] = weak_threshold<kL2>(tt, qa[h], qs[h], qt[h]);
    // gm bit j: one of the four scores of rows 8 j + 2 t, 8 j + 2 t + 1 (queries g, g + 8) passes
    // the weak test (sixteen independent chains of four compares).
    uint32_t gm = 0u;
#pragma unroll
    for (int j = 0; j < kRows / 8; ++j) {
      bool a = false;
      if constexpr (kL2) {
        const float4 r = rv[(j * 8 + 2 * t) >> 1];
#pragma unroll
        for (int c = 0; c < 4; ++c) a |= !(acc[4 * j + c] < fmaf((c & 1) ? r.w : r.y, qs[c >> 1], w[c >> 1]));
      } else {
#pragma unroll
        for (int c = 0; c < 4; ++c) a |= !(acc[4 * j + c] < w[c >> 1]);
      }
      gm |= a ? 1u << j : 0u;
    }
    // The warp's groups where some lane passed (one reduction, not a vote per group: the test is
    // latency-bound with two warps a scheduler).
    const uint32_t gw = __reduce_or_sync(kFullMask, gm);
    if (gw == 0u) return;
    // The exact test, on the row groups where some lane of the warp passed the weak one (a
    // warp-uniform branch each: ~4% of groups at the default sample).
    uint32_t mask[2] = {0u, 0u};  // bit (j % 8) * 4 + c of mask[j / 8]: acc[4 j + c] passes
#pragma unroll
    for (int j = 0; j < kRows / 8; ++j) {
      if (((gw >> j) & 1u) == 0u) continue;
      const float4 r = rv[(j * 8 + 2 * t) >> 1];  // (rn, R) of rows 8j + 2t, 8j + 2t + 1
#pragma unroll
      for (int c = 0; c < 4; ++c) {
        const int h = c >> 1;
        const float x = fmaf(qa[h], (c & 1) ? r.z : r.x, acc[4 * j + c]);
        const float y = fmaf((c & 1) ? r.w : r.y, qs[h], qt[h]);
        if (!(y > x)) mask[j >> 3] |= 1u << ((j & 7) * 4 + c);
      }
    }
    enqueue_passes(p, q0, row_end, mask, queue, qcount, [&](int i, int bit, uint32_t& ql, std::size_t& row) {
      const int j = i * 8 + (bit >> 2), c = bit & 3;
      ql = uint32_t(wg * 64 + wq * 16 + (c >> 1) * 8 + g);
      row = tr0 + std::size_t(j * 8 + 2 * t + (c & 1));
    });
  };
  // The warp is done with a stage (its products completed, its tests read the row terms).
  auto release = [&](int stage) {
    __syncwarp();
    if (lane == 0) mbar_arrive(empty0 + uint32_t(stage * 8));
  };

  float acc0[kAcc], acc1[kAcc];
#pragma unroll
  for (int i = 0; i < kAcc; ++i) acc0[i] = acc1[i] = 0.0f;
  // Step: tiles tl and tl + 1 (stages sa, sb): both products issued, the first tile tested while
  // the tensor cores compute the second, then the second tested. No wgmma, wait or accumulator
  // access sits on a conditional path, and nothing stays in flight across the loop's back edge
  // (ptxas would serialize the wgmma otherwise).
  uint32_t full_phase = 0u;
  int sa = 0;
  for (int tl = 0; tl < tiles_even; tl += 2) {
    const int sb = sa + 1 == kStages ? 0 : sa + 1;
    // The two tiles' terms for the weak test (their latency hides behind the waits).
    const float4 tt0 = __ldg(p.tile_terms + min(tile0 + tl, last_tile));
    const float4 tt1 = __ldg(p.tile_terms + min(tile0 + tl + 1, last_tile));
    mbar_wait(full0 + uint32_t(sa * 8), (full_phase >> sa) & 1u);
    mbar_wait(full0 + uint32_t(sb * 8), (full_phase >> sb) & 1u);
    full_phase ^= (1u << sa) | (1u << sb);
    fence_operands(acc0);
    fence_operands(acc1);
    wgmma_fence();
    issue(acc0, sa);
    issue(acc1, sb);
    wgmma_wait<1>();  // tile tl's product
    fence_operands(acc0);
    epilogue(acc0, tl, sa, tt0);  // while the tensor cores compute tile tl + 1
    release(sa);
    wgmma_wait<0>();
    fence_operands(acc1);
    epilogue(acc1, tl + 1, sb, tt1);
    release(sb);
    // The warpgroup's queue: flushed once half full, looked at every fourth step (the decision
    // is a barrier of the warpgroup; between looks the queue's other half takes the entries,
    // and entries that find it full are emitted directly).
    if ((tl & 7) == 6 && wg_sync_or(1 + wg, *static_cast<volatile uint32_t*>(qcount) >= uint32_t(kQueue / 2)))
      flush_queue(p, q0, queue, qcount, wtid, lane, 128, [&] { wg_sync(1 + wg); });
    sa = sb + 1 == kStages ? 0 : sb + 1;
  }
  wg_sync(1 + wg);  // every warp's last entries are in the queue
  flush_queue(p, q0, queue, qcount, wtid, lane, 128, [&] { wg_sync(1 + wg); });
#else
  (void)rows_map;
  (void)p;
#endif
}

// The test's per-row terms (see the epilogue): (rn, R) = (sqrt(rn2), (1 - b) rn2 / 2) for L2,
// (sqrt(rn2), -b rn2) otherwise; the mma.sync kernel computes the same per tile. Then each
// 128-row tile's (min R, max rn, max |R|) for the weak test (a NaN anywhere in the tile makes
// them NaN: every score of the tile then passes the weak test). One block of 128 per tile.
__global__ void __launch_bounds__(kRows) row_terms_kernel(const float* rn2, std::size_t n, int metric, float b,
                                                         float2* out, float4* tiles) {
  __shared__ float4 part[kRows / 32];
  const std::size_t ntiles = (n + kRows - 1) / kRows;
  const int lane = int(threadIdx.x) & 31, warp = int(threadIdx.x) >> 5;
  for (std::size_t t = blockIdx.x; t < ntiles; t += gridDim.x) {
    const std::size_t r = t * kRows + threadIdx.x;
    float rmin = INFINITY, rnmax = 0.0f, rabs = 0.0f;
    bool bad = false;
    if (r < n) {
      const float x = rn2[r];
      const float rn = sqrtf(x), R = metric == 0 ? 0.5f * ((1.0f - b) * x) : -(b * x);
      out[r] = make_float2(rn, R);
      rmin = R;
      rnmax = rn;
      rabs = fabsf(R);
      bad = !(rn == rn) || !(R == R);
    } else {
      out[r] = make_float2(0.0f, 0.0f);  // the last tile's padding (the kernel copies whole tiles)
    }
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) {
      rmin = fminf(rmin, __shfl_xor_sync(kFullMask, rmin, off));
      rnmax = fmaxf(rnmax, __shfl_xor_sync(kFullMask, rnmax, off));
      rabs = fmaxf(rabs, __shfl_xor_sync(kFullMask, rabs, off));
    }
    bad = __syncthreads_or(bad);
    if (lane == 0) part[warp] = make_float4(rmin, rnmax, rabs, 0.0f);
    __syncthreads();
    if (threadIdx.x == 0) {
      float4 v = part[0];
#pragma unroll
      for (int w = 1; w < kRows / 32; ++w) {
        v.x = fminf(v.x, part[w].x);
        v.y = fmaxf(v.y, part[w].y);
        v.z = fmaxf(v.z, part[w].z);
      }
      tiles[t] = bad ? make_float4(NAN, NAN, NAN, 0.0f) : v;
    }
    __syncthreads();  // part is read before the next tile writes it
  }
}

// Each query's terms (query_terms) and operand row (kp = whole 128-byte spans, zero-padded),
// once per launch rather than in each of the ~n / (128 tiles_per_cta) CTAs that share the query.
// One warp per query.
template <ScalarType S>
__global__ void __launch_bounds__(kThreads) query_ops_kernel(Params p) {
  const int lane = int(threadIdx.x) & 31;
  const std::size_t q = std::size_t(blockIdx.x) * (kThreads / 32) + (threadIdx.x >> 5);
  if (q >= p.nq) return;
  const float sc = query_scale<S>(p, q, lane);
  if (lane == 0) const_cast<float4*>(p.query_terms)[q] = query_terms(p, q, sc);
  const int chunks = p.kp / 16;
  auto* out = reinterpret_cast<uint4*>(const_cast<unsigned char*>(p.query_ops) + q * std::size_t(p.kp));
  for (int ch = lane; ch < chunks; ch += 32) out[ch] = query_piece<S>(p, q, ch, sc);
}

// cuTensorMapEncodeTiled from the driver (through the runtime: no link to libcuda), or null.
using EncodeTiled = CUresult (*)(CUtensorMap*, CUtensorMapDataType, cuuint32_t, void*, const cuuint64_t*,
                                 const cuuint64_t*, const cuuint32_t*, const cuuint32_t*, CUtensorMapInterleave,
                                 CUtensorMapSwizzle, CUtensorMapL2promotion, CUtensorMapFloatOOBfill);
EncodeTiled encode_tiled() {
  static const EncodeTiled fn = [] {
    void* f = nullptr;
    cudaDriverEntryPointQueryResult q{};
    if (cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &f, 12000, cudaEnableDefault, &q) != cudaSuccess ||
        q != cudaDriverEntryPointSuccess) {
      (void)cudaGetLastError();
      f = nullptr;
    }
    return reinterpret_cast<EncodeTiled>(f);
  }();
  return fn;
}

// The rows as a tensor map: n rows of row_bytes (2-byte elements), read in boxes of 64 elements
// (one 128-byte span) x kRows rows in the 128-byte swizzle; elements past the row's end and
// rows past n read as zeros.
CUtensorMap rows_tensor_map(const Params& p) {
  const EncodeTiled encode = encode_tiled();
  if (encode == nullptr) throw Error(ErrorCode::Internal, "CUDA wgmma screen: no cuTensorMapEncodeTiled");
  if (p.n > 0x7fffffffu || reinterpret_cast<uintptr_t>(p.base) % 16 != 0 || p.row_bytes % 16 != 0)
    throw Error(ErrorCode::Internal, "CUDA wgmma screen: rows the tensor map cannot describe");
  CUtensorMap map;
  const cuuint64_t dims[2] = {cuuint64_t(p.row_bytes / 2), cuuint64_t(p.n)};
  const cuuint64_t strides[1] = {cuuint64_t(p.row_bytes)};
  const cuuint32_t box[2] = {64u, cuuint32_t(kRows)};
  const cuuint32_t elem_strides[2] = {1u, 1u};
  const CUresult r = encode(&map, CU_TENSOR_MAP_DATA_TYPE_UINT16, 2, const_cast<void*>(p.base), dims, strides, box,
                            elem_strides, CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B,
                            CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  if (r != CUDA_SUCCESS)
    throw Error(ErrorCode::Internal, "CUDA wgmma screen: cuTensorMapEncodeTiled failed (" + std::to_string(int(r)) + ")");
  return map;
}

template <ScalarType S, int NK, bool kL2>
void run(const Params& prm, dim3 grid, cudaStream_t stream) {
  // The shared-memory opt-in is per device: set it once for each.
  static std::atomic<uint64_t> attr_done{0};
  int device = 0;
  check(cudaGetDevice(&device), "cudaGetDevice");
  const uint64_t bit = uint64_t(1) << (device & 63);
  if ((attr_done.load(std::memory_order_acquire) & bit) == 0) {
    check(cudaFuncSetAttribute(wgmma_screen_kernel<S, NK, kL2>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                               int(smem_bytes<NK>())),
          "cudaFuncSetAttribute(wgmma screen)");
    attr_done.fetch_or(bit, std::memory_order_acq_rel);
  }
  wgmma_screen_kernel<S, NK, kL2><<<grid, kWsThreads, smem_bytes<NK>(), stream>>>(rows_tensor_map(prm), prm);
  check(cudaGetLastError(), "wgmma screen kernel launch");
}

// Whether the current device runs the sm_90a image (compute capability 9.0, the image loaded,
// the shared memory there): probed once per device.
bool device_runs_wgmma() {
  static std::atomic<uint8_t> state[64] = {};  // 0 unknown, 1 yes, 2 no
  int device = 0;
  if (cudaGetDevice(&device) != cudaSuccess) {
    (void)cudaGetLastError();
    return false;
  }
  std::atomic<uint8_t>& st = state[device & 63];
  uint8_t v = st.load(std::memory_order_acquire);
  if (v == 0) {
    int major = 0, minor = 0, optin = 0;
    cudaFuncAttributes attr{};
    const bool ok = cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device) == cudaSuccess &&
                    cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device) == cudaSuccess &&
                    cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device) == cudaSuccess &&
                    major == 9 && minor == 0 && encode_tiled() != nullptr &&
                    cudaFuncGetAttributes(&attr, wgmma_screen_kernel<ScalarType::F16, 2, false>) == cudaSuccess &&
                    std::size_t(optin) >= smem_bytes<2>();
    (void)cudaGetLastError();
    v = ok ? 1 : 2;
    st.store(v, std::memory_order_release);
  }
  return v == 1;
}

}  // namespace

bool wgmma_screen_runs(ScalarType s, std::size_t dim) {
  if (s != ScalarType::F16 && s != ScalarType::BF16) return false;
  if (dim == 0 || dim % 8 != 0 || dim > 128) return false;  // A fragments of at most 128 elements a query
  return device_runs_wgmma();
}

void launch_wgmma_screen(const Params& prm, ScalarType s, dim3 grid, cudaStream_t stream) {
  if (prm.row_terms == nullptr || prm.query_ops == nullptr)
    throw Error(ErrorCode::Internal, "CUDA wgmma screen: no scratch buffer");
  const std::size_t ntiles = (prm.n + kRows - 1) / kRows;
  row_terms_kernel<<<unsigned(std::min<std::size_t>(ntiles, 16384)), kRows, 0, stream>>>(
      prm.rn2, prm.n, prm.metric, prm.b, const_cast<float2*>(prm.row_terms), const_cast<float4*>(prm.tile_terms));
  check(cudaGetLastError(), "row terms kernel launch");
  const unsigned qblocks = unsigned((prm.nq + kThreads / 32 - 1) / (kThreads / 32));
  if (s == ScalarType::F16)
    query_ops_kernel<ScalarType::F16><<<qblocks, kThreads, 0, stream>>>(prm);
  else
    query_ops_kernel<ScalarType::BF16><<<qblocks, kThreads, 0, stream>>>(prm);
  check(cudaGetLastError(), "query operands kernel launch");
  const int nk = prm.kp / 128;
  if (prm.kp % 128 != 0 || (nk != 1 && nk != 2) || (s != ScalarType::F16 && s != ScalarType::BF16))
    throw Error(ErrorCode::Internal, "CUDA wgmma screen: unsupported");
  // (8 instantiations: operand type x spans x the weak test's form.)
  auto go = [&]<bool kL2>() {
    if (s == ScalarType::F16)
      nk == 1 ? run<ScalarType::F16, 1, kL2>(prm, grid, stream) : run<ScalarType::F16, 2, kL2>(prm, grid, stream);
    else
      nk == 1 ? run<ScalarType::BF16, 1, kL2>(prm, grid, stream) : run<ScalarType::BF16, 2, kL2>(prm, grid, stream);
  };
  if (prm.metric == 0)
    go.template operator()<true>();
  else
    go.template operator()<false>();
}

}  // namespace hive::gpu::HIVE_GPU_DEVICE_NS::screen_detail
