// bf16 screening GEMM: run-time check, layout arithmetic, portable reference implementations
// and the dispatch to the AVX512_BF16 kernels (bf16_gemm_avx512.cpp). Compiled with baseline
// flags: this file decides whether the AVX-512 translation unit may be entered.
#include "backends/cpu/bf16_gemm.hpp"

#include <algorithm>
#include <cstring>

namespace hive::gpu::cpu {
namespace {

#if defined(__x86_64__) || defined(__i386__)
// __builtin_cpu_supports also checks that the OS saves the ZMM state (XCR0).
bool detect_bf16() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl") &&
         __builtin_cpu_supports("avx512bf16") && __builtin_cpu_supports("avx2") &&
         __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
}
#else
bool detect_bf16() { return false; }
#endif

std::size_t pairs(std::size_t dim) { return (dim + 1) / 2; }

uint32_t float_bits(float v) {
  uint32_t b;
  std::memcpy(&b, &v, sizeof b);
  return b;
}

float bits_float(uint32_t b) {
  float v;
  std::memcpy(&v, &b, sizeof v);
  return v;
}

// bf16 bits -> fp32 value as vdpbf16ps sees it (bf16 denormals are zero).
float bf16_value(uint16_t h) {
  if ((h & 0x7F80u) == 0) h = static_cast<uint16_t>(h & 0x8000u);
  return bits_float(static_cast<uint32_t>(h) << 16);
}

// Writes the rounded vector v (dim floats) as K2 pairs, pair k at dst[2 * k * stride] (the pad
// element of an odd dim is zero).
bool pack_vector(const float* v, std::size_t dim, uint16_t* dst, std::size_t stride) {
  bool exact = true;
  for (std::size_t k = 0; k < pairs(dim); ++k) {
    for (std::size_t h = 0; h < 2; ++h) {
      const std::size_t p = 2 * k + h;
      uint16_t b = 0;
      if (p < dim) {
        b = bf16_round(v[p]);
        exact = exact && (static_cast<uint32_t>(b) << 16) == float_bits(v[p]);
      }
      dst[2 * k * stride + h] = b;
    }
  }
  return exact;
}

}  // namespace

bool bf16_gemm_supported() {
  static const bool supported = detect_bf16();
  return supported;
}

std::size_t bf16_packed_rows_size(std::size_t n, std::size_t dim) {
  const std::size_t padded = (n + kBf16RowPanel - 1) / kBf16RowPanel * kBf16RowPanel;
  return padded * pairs(dim) * 2;
}

std::size_t bf16_packed_queries_size(std::size_t nq, std::size_t dim) { return nq * pairs(dim) * 2; }

std::size_t bf16_packed_row_offset(std::size_t /*n*/, std::size_t dim, std::size_t j, std::size_t p) {
  const std::size_t t = j % kBf16RowPanel;
  return 2 * ((j - t) * pairs(dim) + (p / 2) * kBf16RowPanel + t) + p % 2;
}

std::size_t bf16_packed_query_offset(std::size_t nq, std::size_t dim, std::size_t i, std::size_t p) {
  const std::size_t i0 = i / kBf16QueryPanel * kBf16QueryPanel;
  const std::size_t w = std::min(kBf16QueryPanel, nq - i0);
  return 2 * (i0 * pairs(dim) + (p / 2) * w + (i - i0)) + p % 2;
}

// vcvtneps2bf16: NaN -> quiet NaN (payload truncated), denormal -> signed zero, else RNE.
uint16_t bf16_round(float v) {
  const uint32_t b = float_bits(v);
  if ((b & 0x7FFFFFFFu) > 0x7F800000u) return static_cast<uint16_t>((b >> 16) | 0x40u);
  if ((b & 0x7F800000u) == 0) return static_cast<uint16_t>((b >> 16) & 0x8000u);
  return static_cast<uint16_t>((b + 0x7FFFu + ((b >> 16) & 1u)) >> 16);
}

void bf16_pack_rows_portable(const float* rows, std::size_t n, std::size_t dim, uint16_t* packed,
                             uint8_t* exact) {
  const std::size_t k2 = pairs(dim);
  std::memset(packed, 0, bf16_packed_rows_size(n, dim) * sizeof(uint16_t));
  for (std::size_t j = 0; j < n; ++j) {
    const std::size_t t = j % kBf16RowPanel;
    const bool ex = pack_vector(rows + j * dim, dim, packed + 2 * ((j - t) * k2 + t), kBf16RowPanel);
    if (exact != nullptr) exact[j] = ex ? 1 : 0;
  }
}

void bf16_pack_queries_portable(const float* q, std::size_t nq, std::size_t dim, uint16_t* packed,
                                uint8_t* exact) {
  const std::size_t k2 = pairs(dim);
  for (std::size_t i = 0; i < nq; ++i) {
    const std::size_t i0 = i / kBf16QueryPanel * kBf16QueryPanel;
    const std::size_t w = std::min(kBf16QueryPanel, nq - i0);
    const bool ex = pack_vector(q + i * dim, dim, packed + 2 * (i0 * k2 + (i - i0)), w);
    if (exact != nullptr) exact[i] = ex ? 1 : 0;
  }
}

void bf16_gemm_portable(const uint16_t* packed_queries, std::size_t nq, const uint16_t* packed_rows,
                        std::size_t n, std::size_t dim, float* out, std::size_t ld) {
  for (std::size_t i = 0; i < nq; ++i) {
    for (std::size_t j = 0; j < n; ++j) {
      float acc = 0.0f;
      for (std::size_t p = 0; p < dim; ++p) {
        acc += bf16_value(packed_queries[bf16_packed_query_offset(nq, dim, i, p)]) *
               bf16_value(packed_rows[bf16_packed_row_offset(n, dim, j, p)]);
      }
      out[i * ld + j] = acc;
    }
  }
}

void bf16_pack_rows(const float* rows, std::size_t n, std::size_t dim, uint16_t* packed, uint8_t* exact) {
  if (bf16_gemm_supported()) {
    bf16_pack_rows_avx512(rows, n, dim, packed, exact);
  } else {
    bf16_pack_rows_portable(rows, n, dim, packed, exact);
  }
}

void bf16_pack_queries(const float* q, std::size_t nq, std::size_t dim, uint16_t* packed, uint8_t* exact) {
  if (bf16_gemm_supported()) {
    bf16_pack_queries_avx512(q, nq, dim, packed, exact);
  } else {
    bf16_pack_queries_portable(q, nq, dim, packed, exact);
  }
}

void bf16_gemm(const uint16_t* packed_queries, std::size_t nq, const uint16_t* packed_rows, std::size_t n,
               std::size_t dim, float* out, std::size_t ld) {
  if (nq == 0 || n == 0 || dim == 0) return;
  if (bf16_gemm_supported()) {
    bf16_gemm_avx512(packed_queries, nq, packed_rows, n, dim, out, ld);
  } else {
    bf16_gemm_portable(packed_queries, nq, packed_rows, n, dim, out, ld);
  }
}

}  // namespace hive::gpu::cpu
