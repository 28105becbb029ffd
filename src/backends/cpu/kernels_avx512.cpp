// AVX-512 (F/BW/DQ/VL) kernels. Rows are scored 4 at a time (then 1 for the row tail) with
// one accumulator each, sharing every query load; the dimension tail is a masked load, so
// no lane outside a row is ever read and masked-off lanes contribute 0 to every metric.
// bf16 rows are widened by a shift, which needs no AVX512_BF16 instruction.
//
// This translation unit is compiled with -mavx512vpopcntdq and -mavx512bf16 as well, but the
// CPUs it must run on (e.g. Skylake-X) may lack both: VPOPCNTDQ is only used by
// hamming<true>, which avx512_kernels() selects after a run-time check, and no bf16
// instruction is used at all.
//
// Anything with vague linkage (inline functions or templates from headers, e.g. std::fabs or
// std::max) may be kept by the linker for the whole program and then run on a CPU without
// AVX-512, so only internal-linkage helpers, compiler builtins and intrinsics are used here.

// GCC 12 warns inside its own headers about the deliberately uninitialised values behind
// _mm*_undefined_* (GCC bug 105593); the pragma covers only the header's lines.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>
#pragma GCC diagnostic pop

#include "backends/cpu/kernels.hpp"

namespace hive::gpu::cpu {
namespace {

template <ScalarType S>
struct Elem {
  using T = uint16_t;
};
template <>
struct Elem<ScalarType::F32> {
  using T = float;
};

inline __m512 widen(__m256i h, ScalarType s) {
  return s == ScalarType::F16 ? _mm512_cvtph_ps(h)
                              : _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

template <ScalarType S>
inline __m512 load16(const typename Elem<S>::T* p) {
  if constexpr (S == ScalarType::F32) {
    return _mm512_loadu_ps(p);
  } else {
    return widen(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)), S);
  }
}

// Lanes outside m are neither read nor nonzero.
template <ScalarType S>
inline __m512 load16(const typename Elem<S>::T* p, __mmask16 m) {
  if constexpr (S == ScalarType::F32) {
    return _mm512_maskz_loadu_ps(m, p);
  } else {
    return widen(_mm256_maskz_loadu_epi16(m, p), S);
  }
}

inline __mmask16 low_mask16(std::size_t count) { return static_cast<__mmask16>((1u << count) - 1u); }

inline __m512 abs_ps(__m512 v) {
  return _mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(v), _mm512_set1_epi32(0x7fffffff)));
}

template <Metric M>
inline __m512 step(__m512 acc, __m512 q, __m512 x) {
  if constexpr (M == Metric::L2) {
    const __m512 d = _mm512_sub_ps(q, x);
    return _mm512_fmadd_ps(d, d, acc);
  } else if constexpr (M == Metric::InnerProduct || M == Metric::Cosine) {
    return _mm512_fmadd_ps(q, x, acc);
  } else if constexpr (M == Metric::L1) {
    return _mm512_add_ps(acc, abs_ps(_mm512_sub_ps(q, x)));
  } else {
    return _mm512_max_ps(acc, abs_ps(_mm512_sub_ps(q, x)));
  }
}

// How partial results merge: summed, or for Linf the maximum.
template <Metric M>
inline __m256 comb(__m256 a, __m256 b) {
  if constexpr (M == Metric::Linf) {
    return _mm256_max_ps(a, b);
  } else {
    return _mm256_add_ps(a, b);
  }
}
template <Metric M>
inline __m128 comb(__m128 a, __m128 b) {
  if constexpr (M == Metric::Linf) {
    return _mm_max_ps(a, b);
  } else {
    return _mm_add_ps(a, b);
  }
}

template <Metric M>
inline __m128 finish(__m128 v) {
  if constexpr (M == Metric::InnerProduct) {
    return _mm_xor_ps(v, _mm_set1_ps(-0.0f));
  } else if constexpr (M == Metric::Cosine) {
    return _mm_sub_ps(_mm_set1_ps(1.0f), v);
  } else {
    return v;
  }
}
template <Metric M>
inline float finish(float v) {
  if constexpr (M == Metric::InnerProduct) {
    return -v;
  } else if constexpr (M == Metric::Cosine) {
    return 1.0f - v;
  } else {
    return v;
  }
}

// Four-way transposing reduction inside each 128-bit half: half element r becomes vector r's
// partial over that half's four elements.
template <Metric M>
inline __m256 transpose4(__m256 a, __m256 b, __m256 c, __m256 d) {
  const __m256 ab = comb<M>(_mm256_unpacklo_ps(a, b), _mm256_unpackhi_ps(a, b));
  const __m256 cd = comb<M>(_mm256_unpacklo_ps(c, d), _mm256_unpackhi_ps(c, d));
  return comb<M>(_mm256_shuffle_ps(ab, cd, _MM_SHUFFLE(1, 0, 1, 0)), _mm256_shuffle_ps(ab, cd, _MM_SHUFFLE(3, 2, 3, 2)));
}

template <Metric M>
inline __m256 fold256(__m512 v) {
  return comb<M>(_mm512_castps512_ps256(v), _mm512_extractf32x8_ps(v, 1));
}

template <Metric M>
inline __m128 reduce4(const __m512* acc) {
  const __m256 r = transpose4<M>(fold256<M>(acc[0]), fold256<M>(acc[1]), fold256<M>(acc[2]), fold256<M>(acc[3]));
  return comb<M>(_mm256_castps256_ps128(r), _mm256_extractf128_ps(r, 1));
}

// Four rows per block: measured on Zen 4, eight rows with one accumulator each ran L2-resident
// blocks about a third slower (the loads, not the FMAs, are the limit there).
constexpr std::size_t kBlockRows = 4;

// The rows of a block are interleaved 64 bytes at a time, which the hardware prefetchers follow
// poorly when the row size is a power of two (dim 128 fp32 streamed at half the bandwidth), so
// the block streams its own prefetches: `bytes` per step, in address order, kPrefetchAhead
// bytes past the position `done` bytes into the block. Prefetches never fault, so running past
// the end of the rows is harmless; the address is formed as an integer for that reason.
constexpr std::size_t kPrefetchAhead = 4096;

inline void prefetch_ahead(const void* block_start, std::size_t done, std::size_t bytes) {
  const uintptr_t p = reinterpret_cast<uintptr_t>(block_start) + kPrefetchAhead + done;
  for (std::size_t off = 0; off < bytes; off += 64) {
    _mm_prefetch(reinterpret_cast<const char*>(p + off), _MM_HINT_T0);
  }
}

// Scores R (kBlockRows or 1) rows, row r at xs[r]; writes R results to out. kStream: the rows
// are consecutive (xs[r] = xs[0] + r dim) and the block streams its own prefetches; otherwise
// (rows gathered from anywhere, a graph search) each row's own sequential stream is left to the
// hardware prefetchers.
template <Metric M, ScalarType S, std::size_t R, bool kStream>
inline void block(const float* q, const typename Elem<S>::T* const* xs, std::size_t dim, float* out) {
  const auto* x = xs[0];
  __m512 acc[R];
  for (std::size_t r = 0; r < R; ++r) acc[r] = _mm512_setzero_ps();
  std::size_t j = 0;
  for (; j + 16 <= dim; j += 16) {
    const __m512 qv = _mm512_loadu_ps(q + j);
    for (std::size_t r = 0; r < R; ++r) acc[r] = step<M>(acc[r], qv, load16<S>(xs[r] + j));
    if constexpr (kStream && R == kBlockRows) prefetch_ahead(x, j * R * sizeof(*x), R * 16 * sizeof(*x));
  }
  if (j < dim) {
    const __mmask16 m = low_mask16(dim - j);
    const __m512 qv = _mm512_maskz_loadu_ps(m, q + j);
    for (std::size_t r = 0; r < R; ++r) acc[r] = step<M>(acc[r], qv, load16<S>(xs[r] + j, m));
  }

  if constexpr (R == 4) {
    static_assert(kBlockRows == 4);
    _mm_storeu_ps(out, finish<M>(reduce4<M>(acc)));
  } else {
    static_assert(R == 1);
    if constexpr (M == Metric::Linf) {
      out[0] = _mm512_reduce_max_ps(acc[0]);
    } else {
      out[0] = finish<M>(_mm512_reduce_add_ps(acc[0]));
    }
  }
}

template <Metric M, ScalarType S>
void scan(const float* q, const void* rows, std::size_t n, std::size_t dim, float* out) {
  using T = typename Elem<S>::T;
  const auto* x = static_cast<const T*>(rows);
  std::size_t i = 0;
  for (; i + kBlockRows <= n; i += kBlockRows) {
    const T* xs[kBlockRows] = {x + i * dim, x + (i + 1) * dim, x + (i + 2) * dim, x + (i + 3) * dim};
    block<M, S, kBlockRows, true>(q, xs, dim, out + i);
  }
  for (; i < n; ++i) {
    const T* xs[1] = {x + i * dim};
    block<M, S, 1, false>(q, xs, dim, out + i);
  }
}

// Rows anywhere (rows[i] points at row i): four at a time, so four independent accumulator
// chains and four memory streams are in flight (a graph search's neighbours). A short tail is
// padded with the last row and its extra results dropped.
template <Metric M, ScalarType S>
void gather(const float* q, const void* const* rows, std::size_t n, std::size_t dim, float* out) {
  using T = typename Elem<S>::T;
  const auto* xs = reinterpret_cast<const T* const*>(rows);
  std::size_t i = 0;
  for (; i + kBlockRows <= n; i += kBlockRows) block<M, S, kBlockRows, false>(q, xs + i, dim, out + i);
  if (i < n) {
    const T* pad[kBlockRows];
    float res[kBlockRows];
    for (std::size_t r = 0; r < kBlockRows; ++r) pad[r] = xs[i + r < n ? i + r : n - 1];
    block<M, S, kBlockRows, false>(q, pad, dim, res);
    for (std::size_t r = 0; i + r < n; ++r) out[i + r] = res[r];
  }
}

// Per-64-bit-lane popcount of v, with VPOPCNTDQ or with a nibble lookup (AVX512BW only).
template <bool kVpopcnt>
inline __m512i popcount_lanes(__m512i v) {
  if constexpr (kVpopcnt) {
    return _mm512_popcnt_epi64(v);
  } else {
    const __m512i lut = _mm512_broadcast_i32x4(_mm_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4));
    const __m512i nib = _mm512_set1_epi8(0x0f);
    const __m512i lo = _mm512_shuffle_epi8(lut, _mm512_and_si512(v, nib));
    const __m512i hi = _mm512_shuffle_epi8(lut, _mm512_and_si512(_mm512_srli_epi16(v, 4), nib));
    return _mm512_sad_epu8(_mm512_add_epi8(lo, hi), _mm512_setzero_si512());
  }
}

template <bool kVpopcnt, std::size_t R>
inline void hamming_block(const uint8_t* q, const uint8_t* x, std::size_t nbytes, float* out) {
  __m512i acc[R];
  for (std::size_t r = 0; r < R; ++r) acc[r] = _mm512_setzero_si512();
  std::size_t j = 0;
  for (; j + 64 <= nbytes; j += 64) {
    const __m512i qv = _mm512_loadu_si512(q + j);
    for (std::size_t r = 0; r < R; ++r) {
      const __m512i d = _mm512_xor_si512(qv, _mm512_loadu_si512(x + r * nbytes + j));
      acc[r] = _mm512_add_epi64(acc[r], popcount_lanes<kVpopcnt>(d));
    }
  }
  if (j < nbytes) {
    const __mmask64 m = static_cast<__mmask64>((uint64_t{1} << (nbytes - j)) - 1u);
    const __m512i qv = _mm512_maskz_loadu_epi8(m, q + j);
    for (std::size_t r = 0; r < R; ++r) {
      const __m512i d = _mm512_xor_si512(qv, _mm512_maskz_loadu_epi8(m, x + r * nbytes + j));
      acc[r] = _mm512_add_epi64(acc[r], popcount_lanes<kVpopcnt>(d));
    }
  }
  if constexpr (R == 4) {
    // Short codes (e.g. 256 bits) make the reduction a large share of the work: transpose-add
    // the four accumulators into [row0 .. row3] instead of four full reductions.
    const __m512i t0 = _mm512_add_epi64(_mm512_unpacklo_epi64(acc[0], acc[1]), _mm512_unpackhi_epi64(acc[0], acc[1]));
    const __m512i t1 = _mm512_add_epi64(_mm512_unpacklo_epi64(acc[2], acc[3]), _mm512_unpackhi_epi64(acc[2], acc[3]));
    // 128-bit lanes: [rows 0-1, rows 0-1, rows 2-3, rows 2-3]
    const __m512i s = _mm512_add_epi64(_mm512_shuffle_i64x2(t0, t1, _MM_SHUFFLE(1, 0, 1, 0)),
                                       _mm512_shuffle_i64x2(t0, t1, _MM_SHUFFLE(3, 2, 3, 2)));
    const __m512i u = _mm512_shuffle_i64x2(s, s, _MM_SHUFFLE(3, 1, 2, 0));
    const __m256i sums = _mm256_add_epi64(_mm512_castsi512_si256(u), _mm512_extracti64x4_epi64(u, 1));
    _mm_storeu_ps(out, _mm256_cvtepi64_ps(sums));
  } else {
    static_assert(R == 1);
    out[0] = static_cast<float>(_mm512_reduce_add_epi64(acc[0]));
  }
}

template <bool kVpopcnt>
void hamming(const uint8_t* q, const uint8_t* rows, std::size_t n, std::size_t nbytes, float* out) {
  std::size_t i = 0;
  for (; i + 4 <= n; i += 4) hamming_block<kVpopcnt, 4>(q, rows + i * nbytes, nbytes, out + i);
  for (; i < n; ++i) hamming_block<kVpopcnt, 1>(q, rows + i * nbytes, nbytes, out + i);
}

void decode_f32(const void* src, float* dst, std::size_t n) {
  if (n != 0) __builtin_memcpy(dst, src, n * sizeof(float));
}

template <ScalarType S>
void decode(const void* src, float* dst, std::size_t n) {
  const auto* s = static_cast<const uint16_t*>(src);
  std::size_t i = 0;
  for (; i + 16 <= n; i += 16) _mm512_storeu_ps(dst + i, load16<S>(s + i));
  if (i < n) {
    const __mmask16 m = low_mask16(n - i);
    _mm512_mask_storeu_ps(dst + i, m, load16<S>(s + i, m));
  }
}

using enum Metric;
using enum ScalarType;

// Aggregate-initialised and only used in constant expressions, so both tables are
// constant-initialised: no code from this TU runs before the dispatcher has checked the CPU.
template <bool kVpopcnt>
constexpr KernelTable make_table() {
  return KernelTable{
      SimdLevel::AVX512,
      {{&scan<L2, F32>, &scan<L2, F16>, &scan<L2, BF16>},
       {&scan<InnerProduct, F32>, &scan<InnerProduct, F16>, &scan<InnerProduct, BF16>},
       {&scan<Cosine, F32>, &scan<Cosine, F16>, &scan<Cosine, BF16>},
       {&scan<L1, F32>, &scan<L1, F16>, &scan<L1, BF16>},
       {&scan<Linf, F32>, &scan<Linf, F16>, &scan<Linf, BF16>}},
      {{&gather<L2, F32>, &gather<L2, F16>, &gather<L2, BF16>},
       {&gather<InnerProduct, F32>, &gather<InnerProduct, F16>, &gather<InnerProduct, BF16>},
       {&gather<Cosine, F32>, &gather<Cosine, F16>, &gather<Cosine, BF16>},
       {&gather<L1, F32>, &gather<L1, F16>, &gather<L1, BF16>},
       {&gather<Linf, F32>, &gather<Linf, F16>, &gather<Linf, BF16>}},
      &hamming<kVpopcnt>,
      {&decode_f32, &decode<F16>, &decode<BF16>},
  };
}
constexpr KernelTable kTableVpopcnt = make_table<true>();
constexpr KernelTable kTableNoVpopcnt = make_table<false>();

}  // namespace

const KernelTable& avx512_kernels() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512vpopcntdq") ? kTableVpopcnt : kTableNoVpopcnt;
}

ScanBitsFn avx512_hamming_no_vpopcnt() { return &hamming<false>; }

}  // namespace hive::gpu::cpu
