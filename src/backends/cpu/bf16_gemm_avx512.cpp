// AVX512_BF16 screening GEMM (layout and semantics in bf16_gemm.hpp). Only entered after
// bf16_gemm_supported() (bf16_gemm.cpp) said yes.
//
// Micro-kernel: kMR queries x (kNB * 16) rows, kMR * kNB zmm accumulators. Per dim pair it loads
// kNB row lines (one zmm each: 16 rows x one bf16 pair) and, per query, broadcasts the query's
// pair (a dword) and issues kNB vdpbf16ps (24 independent accumulators cover its latency).
// Blocking: queries in chunks of kMC (their packed pairs stay in L2); per 32-row micro-panel, dim
// pairs in blocks of at most kKC (the micro-panel's lines for one block, <= 64 KiB, stay in L1/L2
// while every query panel of the chunk passes over them); later dim blocks add to out. The loads
// (2 lines + 12 dword broadcasts per 24 vdpbf16ps) are far below L1/L2 bandwidth: measured on
// Zen 4 the kernel runs at ~95% of vdpbf16ps peak (225-230 of ~233 GFLOP/s per core), and
// smaller dim blocks (K=128/256 pairs) or other tiles (8x48, 6x64, 14x32) were no faster.
// Row packing converts 16 rows x 32 dims at a time (vcvtne2ps2bf16) and transposes the 16 x 16
// dword pairs into lines.
//
// Anything with vague linkage (inline functions or templates from standard headers) may be kept
// by the linker for the whole program and then run on a CPU without AVX-512, so only
// internal-linkage helpers, compiler builtins and intrinsics are used here.

// GCC 12 warns inside its own headers about the deliberately uninitialised values behind
// _mm*_undefined_* (GCC bug 105593); the pragma covers only the header's lines.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>
#pragma GCC diagnostic pop

#include "backends/cpu/bf16_gemm.hpp"

namespace hive::gpu::cpu {
namespace {

constexpr int kMR = static_cast<int>(kBf16QueryPanel);
constexpr int kNB = 2;                             // row lines (16 rows each) per micro-tile
constexpr std::size_t kMC = 16 * kBf16QueryPanel;  // queries per chunk (their pairs stay in L2)
constexpr std::size_t kKC = 512;                   // dim pairs per block (dim <= 1024: one block)

static_assert(kBf16RowPanel == 16, "one row line is one zmm of 16 dword pairs");

// Packed operands are written as uint16_t (or by intrinsics); their dword pairs are read through
// this type so no strict-aliasing assumption applies.
typedef uint32_t u32_alias __attribute__((may_alias));

std::size_t min_size(std::size_t a, std::size_t b) { return a < b ? a : b; }

// The low k lanes (k >= 16: all).
__mmask16 lanes(std::size_t k) {
  return k >= 16 ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << k) - 1u);
}

using MicroFn = void (*)(const u32_alias* a, const u32_alias* b, std::size_t bstep, std::size_t kc, float* c,
                         std::size_t ldc, __mmask16 last, bool accumulate);

// c[i][0 .. NB*16) (+)= sum_k dp(a[k * MR + i], b[j * bstep + k * 16 ..]) for i < MR; the last
// 16-column group is stored under the mask `last`.
template <int MR, int NB>
void micro(const u32_alias* a, const u32_alias* b, std::size_t bstep, std::size_t kc, float* c, std::size_t ldc,
           __mmask16 last, bool accumulate) {
  __m512 acc[MR][NB];
#pragma GCC unroll 16
  for (int i = 0; i < MR; ++i) {
#pragma GCC unroll 4
    for (int j = 0; j < NB; ++j) acc[i][j] = _mm512_setzero_ps();
  }
  for (std::size_t k = 0; k < kc; ++k) {
    __m512bh bv[NB];
#pragma GCC unroll 4
    for (int j = 0; j < NB; ++j) bv[j] = (__m512bh)_mm512_loadu_si512(b + j * bstep);
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i) {
      const __m512bh av = (__m512bh)_mm512_set1_epi32(static_cast<int>(a[i]));
#pragma GCC unroll 4
      for (int j = 0; j < NB; ++j) acc[i][j] = _mm512_dpbf16_ps(acc[i][j], av, bv[j]);
    }
    a += MR;
    b += 16;
  }
#pragma GCC unroll 16
  for (int i = 0; i < MR; ++i) {
#pragma GCC unroll 4
    for (int j = 0; j < NB; ++j) {
      float* p = c + i * ldc + j * 16;
      const __mmask16 m = j == NB - 1 ? last : static_cast<__mmask16>(0xFFFF);
      __m512 v = acc[i][j];
      if (m == 0xFFFF) {
        if (accumulate) v = _mm512_add_ps(v, _mm512_loadu_ps(p));
        _mm512_storeu_ps(p, v);
      } else {
        if (accumulate) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(m, p));
        _mm512_mask_storeu_ps(p, m, v);
      }
    }
  }
}

template <int NB, int M>
MicroFn pick_mr(int mr) {
  if constexpr (M == 1) {
    return micro<1, NB>;
  } else {
    return mr == M ? micro<M, NB> : pick_mr<NB, M - 1>(mr);
  }
}

template <int NB>
MicroFn pick(int mr, int nb) {
  if constexpr (NB == 1) {
    return pick_mr<1, kMR>(mr);
  } else {
    return nb == NB ? pick_mr<NB, kMR>(mr) : pick<NB - 1>(mr, nb);
  }
}

// Converts the floats p[0, 16) under mlo and p[16, 32) under mhi (other lanes neither read nor
// nonzero) to 32 bf16 words; exact: every lane converts back to the same fp32 bits.
struct Converted {
  __m512i words;  // 32 bf16, word e = dim d0 + e
  bool exact;
};

Converted convert32(const float* p, __mmask16 mlo, __mmask16 mhi) {
  const __m512 lo = _mm512_maskz_loadu_ps(mlo, p);
  const __m512 hi = _mm512_maskz_loadu_ps(mhi, p + 16);
  const __m512i w = (__m512i)_mm512_cvtne2ps_pbh(hi, lo);
  const __m512i back_lo = _mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm512_castsi512_si256(w)), 16);
  const __m512i back_hi = _mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm512_extracti64x4_epi64(w, 1)), 16);
  const __mmask16 ok = static_cast<__mmask16>(_mm512_cmpeq_epi32_mask(back_lo, _mm512_castps_si512(lo)) &
                                              _mm512_cmpeq_epi32_mask(back_hi, _mm512_castps_si512(hi)));
  return {w, ok == 0xFFFF};
}

// r[t] dword k -> r[k] dword t.
void transpose16(__m512i r[16]) {
  __m512i t[16];
#pragma GCC unroll 8
  for (int i = 0; i < 8; ++i) {
    t[2 * i] = _mm512_unpacklo_epi32(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_epi32(r[2 * i], r[2 * i + 1]);
  }
  // Per 128-bit lane L, u[4g + e] holds rows 4g..4g+3 of column 4L + e.
  __m512i u[16];
#pragma GCC unroll 4
  for (int g = 0; g < 4; ++g) {
    u[4 * g + 0] = _mm512_unpacklo_epi64(t[4 * g + 0], t[4 * g + 2]);
    u[4 * g + 1] = _mm512_unpackhi_epi64(t[4 * g + 0], t[4 * g + 2]);
    u[4 * g + 2] = _mm512_unpacklo_epi64(t[4 * g + 1], t[4 * g + 3]);
    u[4 * g + 3] = _mm512_unpackhi_epi64(t[4 * g + 1], t[4 * g + 3]);
  }
  // Column 4L + e = lane L of u[e], u[4 + e], u[8 + e], u[12 + e].
#pragma GCC unroll 4
  for (int e = 0; e < 4; ++e) {
    const __m512i x0 = _mm512_shuffle_i32x4(u[e], u[4 + e], 0x44);
    const __m512i x1 = _mm512_shuffle_i32x4(u[e], u[4 + e], 0xEE);
    const __m512i y0 = _mm512_shuffle_i32x4(u[8 + e], u[12 + e], 0x44);
    const __m512i y1 = _mm512_shuffle_i32x4(u[8 + e], u[12 + e], 0xEE);
    r[0 + e] = _mm512_shuffle_i32x4(x0, y0, 0x88);
    r[4 + e] = _mm512_shuffle_i32x4(x0, y0, 0xDD);
    r[8 + e] = _mm512_shuffle_i32x4(x1, y1, 0x88);
    r[12 + e] = _mm512_shuffle_i32x4(x1, y1, 0xDD);
  }
}

}  // namespace

void bf16_pack_rows_avx512(const float* rows, std::size_t n, std::size_t dim, uint16_t* packed,
                           uint8_t* exact) {
  const std::size_t k2 = (dim + 1) / 2;
  for (std::size_t r0 = 0; r0 < n; r0 += 16) {
    const std::size_t nr = min_size(16, n - r0);
    bool ex[16];
#pragma GCC unroll 16
    for (int t = 0; t < 16; ++t) ex[t] = true;
    uint16_t* panel = packed + 2 * r0 * k2;
    for (std::size_t kc0 = 0; kc0 < k2; kc0 += 16) {
      const std::size_t d0 = 2 * kc0;  // < dim
      const std::size_t nd = min_size(32, dim - d0);
      const __mmask16 mlo = lanes(nd);
      const __mmask16 mhi = nd > 16 ? lanes(nd - 16) : static_cast<__mmask16>(0);
      __m512i v[16];
#pragma GCC unroll 16
      for (std::size_t t = 0; t < 16; ++t) {
        if (t < nr) {
          const Converted c = convert32(rows + (r0 + t) * dim + d0, mlo, mhi);
          v[t] = c.words;
          ex[t] = ex[t] && c.exact;
        } else {
          v[t] = _mm512_setzero_si512();
        }
      }
      transpose16(v);
      const std::size_t nk = min_size(16, k2 - kc0);
      uint16_t* line = panel + 2 * 16 * kc0;
      if (nk == 16) {
#pragma GCC unroll 16
        for (int k = 0; k < 16; ++k) _mm512_storeu_si512(line + 32 * k, v[k]);
      } else {
        for (std::size_t k = 0; k < nk; ++k) _mm512_storeu_si512(line + 32 * k, v[k]);
      }
    }
    if (exact != nullptr) {
      for (std::size_t t = 0; t < nr; ++t) exact[r0 + t] = ex[t] ? 1 : 0;
    }
  }
}

void bf16_pack_queries_avx512(const float* q, std::size_t nq, std::size_t dim, uint16_t* packed,
                              uint8_t* exact) {
  const std::size_t k2 = (dim + 1) / 2;
  auto* p32 = reinterpret_cast<u32_alias*>(packed);
  for (std::size_t i = 0; i < nq; ++i) {
    const std::size_t i0 = i / kBf16QueryPanel * kBf16QueryPanel;
    const std::size_t w = min_size(kBf16QueryPanel, nq - i0);
    u32_alias* dst = p32 + i0 * k2 + (i - i0);
    bool ex = true;
    for (std::size_t kc0 = 0; kc0 < k2; kc0 += 16) {
      const std::size_t d0 = 2 * kc0;
      const std::size_t nd = min_size(32, dim - d0);
      const Converted c =
          convert32(q + i * dim + d0, lanes(nd), nd > 16 ? lanes(nd - 16) : static_cast<__mmask16>(0));
      ex = ex && c.exact;
      // The pairs go w dwords apart.
      uint32_t tmp[16];
      _mm512_storeu_si512(tmp, c.words);
      const std::size_t nk = min_size(16, k2 - kc0);
      for (std::size_t k = 0; k < nk; ++k) dst[(kc0 + k) * w] = tmp[k];
    }
    if (exact != nullptr) exact[i] = ex ? 1 : 0;
  }
}

void bf16_gemm_avx512(const uint16_t* packed_queries, std::size_t nq, const uint16_t* packed_rows,
                      std::size_t n, std::size_t dim, float* out, std::size_t ld) {
  if (nq == 0 || n == 0 || dim == 0) return;
  const std::size_t k2 = (dim + 1) / 2;
  const std::size_t kblocks = (k2 + kKC - 1) / kKC;
  const std::size_t kc = (k2 + kblocks - 1) / kblocks;
  const auto* q32 = reinterpret_cast<const u32_alias*>(packed_queries);
  const auto* r32 = reinterpret_cast<const u32_alias*>(packed_rows);
  const std::size_t bstep = 16 * k2;
  constexpr std::size_t kNR = 16 * kNB;

  for (std::size_t i0 = 0; i0 < nq; i0 += kMC) {
    const std::size_t i1 = min_size(nq, i0 + kMC);
    for (std::size_t j0 = 0; j0 < n; j0 += kNR) {
      const std::size_t nj = min_size(kNR, n - j0);
      const int nb = static_cast<int>((nj + 15) / 16);
      const __mmask16 last = lanes(nj - 16 * static_cast<std::size_t>(nb - 1));
      const MicroFn full = pick<kNB>(kMR, nb);
      const MicroFn tail = pick<kNB>(static_cast<int>(nq % kBf16QueryPanel), nb);  // the last panel
      for (std::size_t kb = 0; kb < k2; kb += kc) {
        const std::size_t kcc = min_size(kc, k2 - kb);
        const u32_alias* b = r32 + j0 * k2 + kb * 16;
        for (std::size_t i = i0; i < i1; i += kBf16QueryPanel) {
          const std::size_t w = min_size(kBf16QueryPanel, nq - i);
          const MicroFn fn = w == kBf16QueryPanel ? full : tail;
          fn(q32 + i * k2 + kb * w, b, bstep, kcc, out + i * ld + j0, ld, last, kb != 0);
        }
      }
    }
  }
}

}  // namespace hive::gpu::cpu
