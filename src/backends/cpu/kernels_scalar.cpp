// Portable reference kernels: plain C++ with no intrinsics. They are the fallback on CPUs
// without AVX2 and the level that HIVE_GPU_SIMD=scalar forces, so they stay simple but are
// written so the compiler can vectorise them with the baseline instruction set.
#include <bit>
#include <cmath>
#include <cstring>

#include "backends/cpu/kernels.hpp"

namespace hive::gpu::cpu {
namespace {

// IEEE binary16 -> binary32. Branch-free on the data (selects only) so decode loops vectorise.
inline float half_to_float(uint16_t h) {
  const uint32_t sign = uint32_t(h & 0x8000u) << 16;
  const uint32_t exp = h & 0x7c00u;
  const uint32_t mant = h & 0x03ffu;
  // Normal numbers: moving the fields into place and rebiasing the exponent (15 -> 127) is exact.
  uint32_t bits = (uint32_t(h & 0x7fffu) << 13) + (112u << 23);
  // Inf/NaN: a second rebias takes exponent 31 + 112 to 255, keeping the NaN payload.
  bits = exp == 0x7c00u ? bits + (112u << 23) : bits;
  // Zero and subnormals are mant * 2^-24, exact in fp32; computed arithmetically so that no
  // fp32 denormal is ever an operand (DAZ would flush it).
  const uint32_t sub = std::bit_cast<uint32_t>(static_cast<float>(mant) * 0x1p-24f);
  return std::bit_cast<float>(sign | (exp == 0 ? sub : bits));
}

inline float bf16_to_float(uint16_t b) { return std::bit_cast<float>(uint32_t(b) << 16); }

template <ScalarType S>
struct Storage;
template <>
struct Storage<ScalarType::F32> {
  using T = float;
  static float get(float v) { return v; }
};
template <>
struct Storage<ScalarType::F16> {
  using T = uint16_t;
  static float get(uint16_t v) { return half_to_float(v); }
};
template <>
struct Storage<ScalarType::BF16> {
  using T = uint16_t;
  static float get(uint16_t v) { return bf16_to_float(v); }
};

template <Metric M>
inline float step(float acc, float q, float x) {
  if constexpr (M == Metric::L2) {
    const float d = q - x;
    return acc + d * d;
  } else if constexpr (M == Metric::InnerProduct || M == Metric::Cosine) {
    return acc + q * x;
  } else if constexpr (M == Metric::L1) {
    return acc + std::fabs(q - x);
  } else {
    const float d = std::fabs(q - x);
    return d > acc ? d : acc;
  }
}

template <Metric M>
inline float combine(float a, float b) {
  if constexpr (M == Metric::Linf) {
    return a > b ? a : b;
  } else {
    return a + b;
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

// Independent partial sums: shorter rounding chains, and a shape the vectoriser recognises.
constexpr std::size_t kLanes = 8;

template <Metric M, ScalarType S>
void scan(const float* q, const void* rows, std::size_t n, std::size_t dim, float* out) {
  using St = Storage<S>;
  const auto* x = static_cast<const typename St::T*>(rows);
  for (std::size_t i = 0; i < n; ++i, x += dim) {
    float acc[kLanes] = {};
    std::size_t j = 0;
    for (; j + kLanes <= dim; j += kLanes) {
      for (std::size_t l = 0; l < kLanes; ++l) acc[l] = step<M>(acc[l], q[j + l], St::get(x[j + l]));
    }
    for (; j < dim; ++j) acc[0] = step<M>(acc[0], q[j], St::get(x[j]));
    float total = acc[0];
    for (std::size_t l = 1; l < kLanes; ++l) total = combine<M>(total, acc[l]);
    out[i] = finish<M>(total);
  }
}

template <Metric M, ScalarType S>
void gather(const float* q, const void* const* rows, std::size_t n, std::size_t dim, float* out) {
  for (std::size_t i = 0; i < n; ++i) scan<M, S>(q, rows[i], 1, dim, out + i);
}

void hamming(const uint8_t* q, const uint8_t* rows, std::size_t n, std::size_t nbytes, float* out) {
  for (std::size_t i = 0; i < n; ++i, rows += nbytes) {
    uint64_t count = 0;
    std::size_t j = 0;
    for (; j + 8 <= nbytes; j += 8) {
      uint64_t a;
      uint64_t b;
      std::memcpy(&a, q + j, 8);
      std::memcpy(&b, rows + j, 8);
      count += static_cast<uint64_t>(__builtin_popcountll(a ^ b));
    }
    for (; j < nbytes; ++j) count += static_cast<uint64_t>(__builtin_popcount(unsigned(q[j] ^ rows[j])));
    out[i] = static_cast<float>(count);
  }
}

void decode_f32(const void* src, float* dst, std::size_t n) {
  if (n != 0) std::memcpy(dst, src, n * sizeof(float));
}

void decode_f16(const void* src, float* dst, std::size_t n) {
  const auto* s = static_cast<const uint16_t*>(src);
  for (std::size_t i = 0; i < n; ++i) dst[i] = half_to_float(s[i]);
}

void decode_bf16(const void* src, float* dst, std::size_t n) {
  const auto* s = static_cast<const uint16_t*>(src);
  for (std::size_t i = 0; i < n; ++i) dst[i] = bf16_to_float(s[i]);
}

template <Metric M>
constexpr void fill_metric(KernelTable& t) {
  t.scan[int(M)][int(ScalarType::F32)] = &scan<M, ScalarType::F32>;
  t.scan[int(M)][int(ScalarType::F16)] = &scan<M, ScalarType::F16>;
  t.scan[int(M)][int(ScalarType::BF16)] = &scan<M, ScalarType::BF16>;
  t.gather[int(M)][int(ScalarType::F32)] = &gather<M, ScalarType::F32>;
  t.gather[int(M)][int(ScalarType::F16)] = &gather<M, ScalarType::F16>;
  t.gather[int(M)][int(ScalarType::BF16)] = &gather<M, ScalarType::BF16>;
}

constexpr KernelTable make_table() {
  KernelTable t;
  t.level = SimdLevel::Scalar;
  fill_metric<Metric::L2>(t);
  fill_metric<Metric::InnerProduct>(t);
  fill_metric<Metric::Cosine>(t);
  fill_metric<Metric::L1>(t);
  fill_metric<Metric::Linf>(t);
  t.hamming = &hamming;
  t.decode[int(ScalarType::F32)] = &decode_f32;
  t.decode[int(ScalarType::F16)] = &decode_f16;
  t.decode[int(ScalarType::BF16)] = &decode_bf16;
  return t;
}

constexpr KernelTable kTable = make_table();

}  // namespace

const KernelTable& scalar_kernels() { return kTable; }

}  // namespace hive::gpu::cpu
