// CUDA backend: dot products of a batch of queries with the stored rows, as a register-blocked
// SGEMM in portable CUDA C++ (plain loads, shared memory, __syncthreads only), so hipcc builds
// it unchanged for AMD GPUs, where no BLAS is linked.
//
// A block computes a 128-row x 128-query tile of `out` with 256 threads (16 x 16), each an
// 8 x 8 micro-tile held in registers. The reduction runs in panels of kBK = 8: every thread
// loads 4 elements of the row panel (decoded to fp32) and 4 of the query panel, and stores them
// k-major in shared memory, so the inner loop reads 8 consecutive rows and 8 consecutive queries
// per k with four 16-byte shared loads. The next panel's global loads are issued before the
// current panel is multiplied and land in the other half of a double-buffered shared tile, so
// their latency hides behind 512 FMAs per thread and one __syncthreads per panel suffices.
#include <algorithm>
#include <cstdint>
#include <limits>

#include "backends/cuda/cuda_common.hpp"
#include "backends/cuda/device_util.cuh"
#include "backends/cuda/dot_tile.hpp"
#include "hive_gpu/error.hpp"

namespace hive::gpu::HIVE_GPU_DEVICE_NS {
namespace {

constexpr int kBM = 128;        // rows per block tile
constexpr int kBN = 128;        // queries per block tile
constexpr int kBK = 8;          // reduction panel depth
constexpr int kThreads = 256;   // kTx x kTy threads
constexpr int kTx = 16;         // threads along the rows (consecutive in a warp: coalesced stores)
constexpr int kTy = kThreads / kTx;
constexpr int kHalf = kBM / 2;  // a thread's 8 rows (queries) are 2 runs of 4, kHalf apart
// Shared panel rows padded by 4 floats: still 16-byte aligned for the float4 reads, and the
// transposed stores of the loaders then spread over all 32 banks.
constexpr int kLds = kBM + 4;

static_assert(kBM == kBN, "one loader layout serves both operands");
static_assert(kBM * kBK == kThreads * 4 && kBK == 8, "each thread loads 4 columns of one panel row");
static_assert(kTx * 8 == kBM && kTy * 8 == kBN, "8 x 8 outputs per thread cover the tile");

using Panel = float[kBK][kLds];

// One thread's share of a 128 x kBK panel of a row-major count x dim matrix stored as S:
// 4 consecutive columns of one row, decoded to fp32, zero past the matrix (zeros add nothing
// to the sums). kVec (dim % 4 == 0, aligned base): one 16- or 8-byte load, as every row then
// starts aligned and panel columns are multiples of 4; otherwise 4 scalar loads (a row may
// start anywhere). The pointer walks along the row panel by panel, so the per-thread state
// stays small: the 64 accumulators need most of the register budget.
template <ScalarType S, bool kVec>
struct Loader {
  using E = dev::Elem<S>;
  using T = typename E::T;

  const T* p;   // this thread's row, at its first column of the current panel
  bool live;    // the row exists
  int k_left;   // columns of the row from p on (<= 0: past its end)
  int row;      // this thread's row within the panel
  int col;      // this thread's first column within the panel

  __device__ Loader(const T* src, std::size_t count, std::size_t dim, std::size_t tile0, int tid) {
    row = tid / 2;
    col = (tid % 2) * 4;
    const std::size_t r = tile0 + std::size_t(row);
    live = r < count;
    k_left = int(dim) - col;
    p = src + (live ? r : 0) * dim + col;  // a missing row is never read: keep p near the matrix
  }

  __device__ void advance() {
    p += kBK;
    k_left -= kBK;
  }

  __device__ void load(float (&v)[4]) const {
    if constexpr (kVec) {
      v[0] = v[1] = v[2] = v[3] = 0.0f;
      if (!live || k_left <= 0) return;  // dim % 4 == 0: all 4 columns in range or none
      if constexpr (S == ScalarType::F32) {
        const float4 x = *reinterpret_cast<const float4*>(p);
        v[0] = x.x;
        v[1] = x.y;
        v[2] = x.z;
        v[3] = x.w;
      } else {
        const uint2 x = *reinterpret_cast<const uint2*>(p);  // little-endian: low half first
        v[0] = E::get(T(x.x & 0xffffu));
        v[1] = E::get(T(x.x >> 16));
        v[2] = E::get(T(x.y & 0xffffu));
        v[3] = E::get(T(x.y >> 16));
      }
    } else {
#pragma unroll
      for (int i = 0; i < 4; ++i) v[i] = live && i < k_left ? E::get(p[i]) : 0.0f;
    }
  }

  // Transposed (k-major), as the inner loop reads it.
  __device__ void store(Panel& s, const float (&v)[4]) const {
#pragma unroll
    for (int i = 0; i < 4; ++i) s[col + i][row] = v[i];
  }
};

// A thread's 8 panel entries at one k: runs of 4 at 4t and kHalf + 4t.
__device__ __forceinline__ void read8(const float* s, int t, float (&v)[8]) {
  const float4 a = *reinterpret_cast<const float4*>(s + 4 * t);
  const float4 b = *reinterpret_cast<const float4*>(s + kHalf + 4 * t);
  v[0] = a.x;
  v[1] = a.y;
  v[2] = a.z;
  v[3] = a.w;
  v[4] = b.x;
  v[5] = b.y;
  v[6] = b.z;
  v[7] = b.w;
}

// Two blocks per SM caps registers at 128 per thread (64 accumulators + fragments + prefetch);
// under HIP the second bound means 2 waves per SIMD, which leaves 256 VGPRs.
template <ScalarType S, bool kVec>
__global__ void __launch_bounds__(kThreads, 2)
    dot_tile_kernel(const typename dev::Elem<S>::T* rows, std::size_t n, const float* queries, std::size_t nq,
                    std::size_t dim, float* out, std::size_t ld, bool vec_out) {
  alignas(16) __shared__ Panel rs[2];  // row panels, double-buffered
  alignas(16) __shared__ Panel qs[2];  // query panels

  const int tid = int(threadIdx.x);
  const std::size_t r0 = std::size_t(blockIdx.x) * kBM;
  const std::size_t q0 = std::size_t(blockIdx.y) * kBN;
  Loader<S, kVec> rl(rows, n, dim, r0, tid);
  Loader<ScalarType::F32, kVec> ql(queries, nq, dim, q0, tid);

  float rv[4], qv[4];
  rl.load(rv);
  ql.load(qv);
  rl.store(rs[0], rv);
  ql.store(qs[0], qv);
  __syncthreads();

  const int tx = tid % kTx;
  const int ty = tid / kTx;
  float acc[8][8] = {};  // [row][query]
  int buf = 0;
  for (std::size_t kt = 0; kt < dim; kt += kBK) {
    const bool more = kt + kBK < dim;  // uniform over the block
    if (more) {                        // in flight during the FMAs below
      rl.advance();
      ql.advance();
      rl.load(rv);
      ql.load(qv);
    }
#pragma unroll
    for (int k = 0; k < kBK; ++k) {
      float a[8], b[8];
      read8(rs[buf][k], tx, a);
      read8(qs[buf][k], ty, b);
#pragma unroll
      for (int i = 0; i < 8; ++i)
#pragma unroll
        for (int j = 0; j < 8; ++j) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
    }
    if (more) {
      // The other buffer was last read before the previous barrier, so it is free.
      rl.store(rs[buf ^ 1], rv);
      ql.store(qs[buf ^ 1], qv);
      __syncthreads();
      buf ^= 1;
    }
  }

  // Row r0 + h * kHalf + 4 * tx + i holds acc[4 * h + i][.], query q0 + g * kHalf + 4 * ty + c holds
  // acc[.][4 * g + c]; 16 threads of a warp write 64 consecutive floats of one query's row.
#pragma unroll
  for (int j = 0; j < 8; ++j) {
    const std::size_t q = q0 + std::size_t((j / 4) * kHalf + 4 * ty + j % 4);
    if (q >= nq) continue;
    float* o = out + q * ld;
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const std::size_t r = r0 + std::size_t(h * kHalf + 4 * tx);
      if (vec_out && r + 4 <= n) {
        *reinterpret_cast<float4*>(o + r) =
            make_float4(acc[4 * h][j], acc[4 * h + 1][j], acc[4 * h + 2][j], acc[4 * h + 3][j]);
      } else {
#pragma unroll
        for (int i = 0; i < 4; ++i)
          if (r + i < n) o[r + i] = acc[4 * h + i][j];
      }
    }
  }
}

bool aligned(const void* p, std::size_t bytes) { return reinterpret_cast<std::uintptr_t>(p) % bytes == 0; }

template <ScalarType S>
void launch_typed(const void* rows, std::size_t n, const float* queries, std::size_t nq, std::size_t dim, float* out,
                  std::size_t ld, cudaStream_t stream) {
  using T = typename dev::Elem<S>::T;
  const T* base = static_cast<const T*>(rows);
  // 4-element loads need every row start aligned: dim % 4 == 0 and an aligned base.
  const bool vec_in = dim % 4 == 0 && aligned(rows, 4 * sizeof(T)) && aligned(queries, 16);
  const bool vec_out = ld % 4 == 0 && aligned(out, 16);
  const std::size_t row_tiles = (n + kBM - 1) / kBM;
  if (row_tiles > 0x7fffffffu) throw Error(ErrorCode::Internal, "dot tile: too many rows for one grid");
  // gridDim.y is limited to 65535, so larger batches take several launches.
  constexpr std::size_t kMaxQueries = std::size_t(65535) * kBN;
  for (std::size_t q = 0; q < nq; q += kMaxQueries) {
    const std::size_t m = std::min(kMaxQueries, nq - q);
    const dim3 grid(unsigned(row_tiles), unsigned((m + kBN - 1) / kBN));
    if (vec_in)
      dot_tile_kernel<S, true><<<grid, kThreads, 0, stream>>>(base, n, queries + q * dim, m, dim, out + q * ld, ld,
                                                              vec_out);
    else
      dot_tile_kernel<S, false><<<grid, kThreads, 0, stream>>>(base, n, queries + q * dim, m, dim, out + q * ld, ld,
                                                               vec_out);
    check(cudaGetLastError(), "dot tile kernel launch");
  }
}

}  // namespace

void launch_dot_tile(const void* rows, std::size_t n, ScalarType storage, const float* queries, std::size_t nq,
                     std::size_t dim, float* out, std::size_t ld, cudaStream_t stream) {
  if (ld < n) throw Error(ErrorCode::InvalidArgument, "dot tile: ld < n");
  // Column counts are kept in int on the device.
  if (dim > std::size_t(std::numeric_limits<int>::max()) - kBK)
    throw Error(ErrorCode::InvalidArgument, "dot tile: dim too large");
  if (n == 0 || nq == 0) return;
  switch (storage) {
    case ScalarType::F32: launch_typed<ScalarType::F32>(rows, n, queries, nq, dim, out, ld, stream); break;
    case ScalarType::F16: launch_typed<ScalarType::F16>(rows, n, queries, nq, dim, out, ld, stream); break;
    case ScalarType::BF16: launch_typed<ScalarType::BF16>(rows, n, queries, nq, dim, out, ld, stream); break;
    default: throw Error(ErrorCode::Unsupported, "dot tile: storage must be F32, F16 or BF16");
  }
}

}  // namespace hive::gpu::HIVE_GPU_DEVICE_NS
