// AVX2 + FMA + F16C kernels. Rows are scored 4 at a time (then 1 for the row tail) with one
// accumulator each, sharing every query load: with L2-resident rows the loads, not the FMAs,
// are the limit. The dimension tail (dim % 8) is done in scalar code, since AVX2 has
// no masked 16-bit load and a full-width load past the last row could fault.
//
// This translation unit is compiled with -mavx2 -mfma -mf16c. Anything with vague linkage
// (inline functions or templates from headers, e.g. std::fabs or std::max) may be kept by the
// linker for the whole program and then run on a CPU without AVX2, so only internal-linkage
// helpers, compiler builtins and intrinsics are used here.

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

template <ScalarType S>
inline __m256 load8(const typename Elem<S>::T* p) {
  if constexpr (S == ScalarType::F32) {
    return _mm256_loadu_ps(p);
  } else {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    if constexpr (S == ScalarType::F16) {
      return _mm256_cvtph_ps(h);
    } else {
      return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
    }
  }
}

inline float bits_to_float(uint32_t u) {
  float f;
  __builtin_memcpy(&f, &u, sizeof f);
  return f;
}

template <ScalarType S>
inline float load1(const typename Elem<S>::T* p) {
  if constexpr (S == ScalarType::F32) {
    return *p;
  } else if constexpr (S == ScalarType::F16) {
    return _cvtsh_ss(*p);
  } else {
    return bits_to_float(uint32_t(*p) << 16);
  }
}

inline __m256 abs_ps(__m256 v) { return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), v); }

template <Metric M>
inline __m256 step(__m256 acc, __m256 q, __m256 x) {
  if constexpr (M == Metric::L2) {
    const __m256 d = _mm256_sub_ps(q, x);
    return _mm256_fmadd_ps(d, d, acc);
  } else if constexpr (M == Metric::InnerProduct || M == Metric::Cosine) {
    return _mm256_fmadd_ps(q, x, acc);
  } else if constexpr (M == Metric::L1) {
    return _mm256_add_ps(acc, abs_ps(_mm256_sub_ps(q, x)));
  } else {
    return _mm256_max_ps(acc, abs_ps(_mm256_sub_ps(q, x)));
  }
}

template <Metric M>
inline float step1(float acc, float q, float x) {
  if constexpr (M == Metric::L2) {
    const float d = q - x;
    return acc + d * d;
  } else if constexpr (M == Metric::InnerProduct || M == Metric::Cosine) {
    return acc + q * x;
  } else if constexpr (M == Metric::L1) {
    return acc + __builtin_fabsf(q - x);
  } else {
    const float d = __builtin_fabsf(q - x);
    return d > acc ? d : acc;
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
inline float comb(float a, float b) {
  if constexpr (M == Metric::Linf) {
    return a > b ? a : b;
  } else {
    return a + b;
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

// Transposing reduction of four accumulators: within each 128-bit half, lane r holds row r's
// partial over that half's four elements. Cheaper than four separate horizontal reductions.
template <Metric M>
inline __m256 reduce4_halves(__m256 a, __m256 b, __m256 c, __m256 d) {
  const __m256 ab = comb<M>(_mm256_unpacklo_ps(a, b), _mm256_unpackhi_ps(a, b));
  const __m256 cd = comb<M>(_mm256_unpacklo_ps(c, d), _mm256_unpackhi_ps(c, d));
  return comb<M>(_mm256_shuffle_ps(ab, cd, _MM_SHUFFLE(1, 0, 1, 0)), _mm256_shuffle_ps(ab, cd, _MM_SHUFFLE(3, 2, 3, 2)));
}

// Four rows per block: measured on Zen 4, eight rows with one accumulator each were no faster
// on L2-resident blocks and streamed worse.
constexpr std::size_t kBlockRows = 4;

// The rows of a block are interleaved 32 bytes at a time, which the hardware prefetchers follow
// poorly when the row size is a power of two (dim 128 fp32 streamed at under half the
// bandwidth), so the block streams its own prefetches: `bytes` per step, in address order,
// kPrefetchAhead bytes past the position `done` bytes into the block. Prefetches never fault,
// so running past the end of the rows is harmless; the address is formed as an integer for
// that reason.
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
  __m256 acc[R];
  for (std::size_t r = 0; r < R; ++r) acc[r] = _mm256_setzero_ps();
  std::size_t j = 0;
  for (; j + 8 <= dim; j += 8) {
    const __m256 qv = _mm256_loadu_ps(q + j);
    for (std::size_t r = 0; r < R; ++r) acc[r] = step<M>(acc[r], qv, load8<S>(xs[r] + j));
    if constexpr (kStream && R == kBlockRows) prefetch_ahead(x, j * R * sizeof(*x), R * 8 * sizeof(*x));
  }
  float tail[R] = {};
  for (; j < dim; ++j) {
    for (std::size_t r = 0; r < R; ++r) tail[r] = step1<M>(tail[r], q[j], load1<S>(xs[r] + j));
  }

  if constexpr (R == 4) {
    const __m256 r0 = reduce4_halves<M>(acc[0], acc[1], acc[2], acc[3]);
    __m128 v = comb<M>(_mm256_castps256_ps128(r0), _mm256_extractf128_ps(r0, 1));
    v = comb<M>(v, _mm_loadu_ps(tail));
    _mm_storeu_ps(out, finish<M>(v));
  } else {
    static_assert(R == 1);
    __m128 v = comb<M>(_mm256_castps256_ps128(acc[0]), _mm256_extractf128_ps(acc[0], 1));
    v = comb<M>(v, _mm_movehl_ps(v, v));
    v = comb<M>(v, _mm_shuffle_ps(v, v, 1));
    out[0] = finish<M>(comb<M>(_mm_cvtss_f32(v), tail[0]));
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

inline uint64_t load_u64(const uint8_t* p) {
  uint64_t v;
  __builtin_memcpy(&v, p, sizeof v);
  return v;
}

// POPCNT is implied by -mavx2 here, and cpu_supports(AVX2) checks for it.
template <std::size_t R>
inline void hamming_block(const uint8_t* q, const uint8_t* x, std::size_t nbytes, float* out) {
  uint64_t count[R] = {};
  std::size_t j = 0;
  for (; j + 8 <= nbytes; j += 8) {
    const uint64_t a = load_u64(q + j);
    for (std::size_t r = 0; r < R; ++r) {
      count[r] += static_cast<uint64_t>(__builtin_popcountll(a ^ load_u64(x + r * nbytes + j)));
    }
  }
  for (; j < nbytes; ++j) {
    for (std::size_t r = 0; r < R; ++r) {
      count[r] += static_cast<uint64_t>(__builtin_popcount(unsigned(q[j] ^ x[r * nbytes + j])));
    }
  }
  for (std::size_t r = 0; r < R; ++r) out[r] = static_cast<float>(count[r]);
}

void hamming(const uint8_t* q, const uint8_t* rows, std::size_t n, std::size_t nbytes, float* out) {
  std::size_t i = 0;
  for (; i + 4 <= n; i += 4) hamming_block<4>(q, rows + i * nbytes, nbytes, out + i);
  for (; i < n; ++i) hamming_block<1>(q, rows + i * nbytes, nbytes, out + i);
}

void decode_f32(const void* src, float* dst, std::size_t n) {
  if (n != 0) __builtin_memcpy(dst, src, n * sizeof(float));
}

template <ScalarType S>
void decode(const void* src, float* dst, std::size_t n) {
  const auto* s = static_cast<const uint16_t*>(src);
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, load8<S>(s + i));
  for (; i < n; ++i) dst[i] = load1<S>(s + i);
}

using enum Metric;
using enum ScalarType;

// Aggregate-initialised so it is constant-initialised: no constructor code from this TU runs.
constexpr KernelTable kTable{
    SimdLevel::AVX2,
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
    &hamming,
    {&decode_f32, &decode<F16>, &decode<BF16>},
};

}  // namespace

const KernelTable& avx2_kernels() { return kTable; }

}  // namespace hive::gpu::cpu
