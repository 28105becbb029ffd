// bf16 screening GEMM: rounding, packing layout, exactness flags and the GEMM against a float64
// reference computed from the bf16-rounded inputs.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "backends/cpu/bf16_gemm.hpp"

namespace hive::gpu::cpu {
namespace {

uint32_t bits_of(float v) {
  uint32_t b;
  std::memcpy(&b, &v, sizeof b);
  return b;
}

float float_of(uint32_t b) {
  float v;
  std::memcpy(&v, &b, sizeof v);
  return v;
}

// bf16 bits -> value as the kernel sees it (bf16 denormals are zero).
double bf16_to_double(uint16_t h) {
  if ((h & 0x7F80u) == 0) return 0.0;
  return static_cast<double>(float_of(static_cast<uint32_t>(h) << 16));
}

// Independent reference for fp32 -> bf16: pick the nearer of the two neighbouring bf16 values by
// exact distance (double holds every fp32 and bf16 value and their differences exactly), ties to
// the even one; NaN -> quiet NaN of the top bits, fp32 denormals -> signed zero.
uint16_t reference_round(float v) {
  const uint32_t b = bits_of(v);
  const auto top = static_cast<uint16_t>(b >> 16);
  if (std::isnan(v)) return static_cast<uint16_t>(top | 0x40u);
  if ((b & 0x7F800000u) == 0) return static_cast<uint16_t>(top & 0x8000u);
  if (std::isinf(v) || (b & 0xFFFFu) == 0) return top;
  const auto up = static_cast<uint16_t>(top + 1);  // next magnitude (may become infinity)
  const double lo = std::fabs(static_cast<double>(float_of(static_cast<uint32_t>(top) << 16)));
  double hi;
  if ((up & 0x7F80u) == 0x7F80u) {
    hi = std::ldexp(1.0, 128);  // rounding to infinity: the "next value" of the bf16 grid is 2^128
  } else {
    hi = std::fabs(static_cast<double>(float_of(static_cast<uint32_t>(up) << 16)));
  }
  const double a = std::fabs(static_cast<double>(v));
  if (a - lo < hi - a) return top;
  if (a - lo > hi - a) return up;
  return (top & 1u) == 0 ? top : up;
}

std::vector<float> normals(std::size_t count, uint32_t seed, float scale = 1.0f) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<float> v(count);
  for (float& x : v) x = dist(gen);
  return v;
}

// Values with every rounding situation: random bit patterns (incl. NaN, infinity, denormals),
// ties, near-ties and signed zeros.
std::vector<float> special_values(std::size_t count, uint32_t seed) {
  std::mt19937 gen(seed);
  std::vector<float> v(count);
  for (std::size_t i = 0; i < count; ++i) {
    auto b = static_cast<uint32_t>(gen());
    switch (i % 8) {
      case 0: b = (b & 0xFFFF0000u) | 0x8000u; break;       // exact tie
      case 1: b = (b & 0xFFFF0000u) | 0x7FFFu; break;       // just below a tie
      case 2: b = (b & 0xFFFF0000u) | 0x8001u; break;       // just above a tie
      case 3: b = (b & 0x807FFFFFu); break;                 // denormal or zero
      case 4: b = (b & 0x80000000u) | 0x7F7F8000u | (b & 0x10000u); break;  // near FLT_MAX
      case 5: b = b & 0xFFFF0000u; break;                   // exact (or NaN/inf)
      default: break;                                       // anything
    }
    v[i] = float_of(b);
  }
  return v;
}

bool kernel_available() { return bf16_gemm_supported(); }

// out = Q X^T in double from the bf16-rounded packed operands; bound = dim * 2^-23 * sum |q x|.
void reference_gemm(const std::vector<uint16_t>& pq, std::size_t nq, const std::vector<uint16_t>& px,
                    std::size_t n, std::size_t dim, std::vector<double>& ref, std::vector<double>& bound) {
  std::vector<double> qd(nq * dim), xd(n * dim);
  for (std::size_t i = 0; i < nq; ++i) {
    for (std::size_t p = 0; p < dim; ++p) qd[i * dim + p] = bf16_to_double(pq[bf16_packed_query_offset(nq, dim, i, p)]);
  }
  for (std::size_t j = 0; j < n; ++j) {
    for (std::size_t p = 0; p < dim; ++p) xd[j * dim + p] = bf16_to_double(px[bf16_packed_row_offset(n, dim, j, p)]);
  }
  ref.assign(nq * n, 0.0);
  bound.assign(nq * n, 0.0);
  for (std::size_t i = 0; i < nq; ++i) {
    for (std::size_t j = 0; j < n; ++j) {
      double s = 0.0, a = 0.0;
      for (std::size_t p = 0; p < dim; ++p) {
        const double t = qd[i * dim + p] * xd[j * dim + p];
        s += t;
        a += std::fabs(t);
      }
      ref[i * n + j] = s;
      bound[i * n + j] = static_cast<double>(dim) * std::ldexp(1.0, -23) * a;
    }
  }
}

struct Shape {
  std::size_t nq, n, dim;
};

// Shapes around the micro-tile (12 queries x 32 rows), row panels (16), the query chunk (192),
// dim pairs (odd dims) and dim blocks (512 pairs).
const Shape kShapes[] = {{1, 1, 1},     {1, 1, 3},     {2, 5, 2},    {3, 17, 17},   {12, 32, 16},
                         {13, 33, 31},  {11, 15, 33},  {24, 64, 64}, {25, 47, 129}, {7, 100, 784},
                         {37, 50, 785}, {193, 40, 20}, {30, 20, 1100}, {12, 16, 2050}};

using GemmFn = void (*)(const uint16_t*, std::size_t, const uint16_t*, std::size_t, std::size_t, float*,
                        std::size_t);

void check_gemm(GemmFn gemm, const Shape& s, uint32_t seed) {
  SCOPED_TRACE(testing::Message() << "nq=" << s.nq << " n=" << s.n << " dim=" << s.dim << " seed=" << seed);
  const std::vector<float> q = normals(s.nq * s.dim, seed);
  const std::vector<float> x = normals(s.n * s.dim, seed + 1000, 3.0f);
  std::vector<uint16_t> pq(bf16_packed_queries_size(s.nq, s.dim)), px(bf16_packed_rows_size(s.n, s.dim));
  bf16_pack_queries(q.data(), s.nq, s.dim, pq.data(), nullptr);
  bf16_pack_rows(x.data(), s.n, s.dim, px.data(), nullptr);
  std::vector<double> ref, bound;
  reference_gemm(pq, s.nq, px, s.n, s.dim, ref, bound);

  // ld > n, with sentinels everywhere: nothing outside [nq x n] may change.
  const std::size_t ld = s.n + 5;
  const float sentinel = -12345.678f;
  std::vector<float> out(s.nq * ld + 7, sentinel);
  gemm(pq.data(), s.nq, px.data(), s.n, s.dim, out.data(), ld);
  std::size_t bad = 0;
  for (std::size_t i = 0; i < s.nq; ++i) {
    for (std::size_t j = 0; j < ld; ++j) {
      const float v = out[i * ld + j];
      if (j >= s.n) {
        if (bits_of(v) != bits_of(sentinel) && bad++ < 5) ADD_FAILURE() << "wrote out[" << i << "][" << j << "]";
        continue;
      }
      const double err = std::fabs(static_cast<double>(v) - ref[i * s.n + j]);
      if (!(err <= bound[i * s.n + j]) && bad++ < 5) {
        ADD_FAILURE() << "out[" << i << "][" << j << "] = " << v << " ref " << ref[i * s.n + j] << " bound "
                      << bound[i * s.n + j];
      }
    }
  }
  for (std::size_t k = s.nq * ld; k < out.size(); ++k) EXPECT_EQ(bits_of(out[k]), bits_of(sentinel));
  EXPECT_EQ(bad, 0u);
}

TEST(Bf16Gemm, RoundMatchesReference) {
  const float cases[] = {0.0f,
                         -0.0f,
                         1.0f,
                         float_of(0x3F808000u),  // 1 + 2^-8: tie, rounds to even (1.0)
                         float_of(0x3F818000u),  // tie, rounds up to even
                         float_of(0x3F808001u),
                         float_of(0x3F807FFFu),
                         -3.14159f,
                         std::numeric_limits<float>::max(),
                         -std::numeric_limits<float>::max(),
                         std::numeric_limits<float>::infinity(),
                         -std::numeric_limits<float>::infinity(),
                         std::numeric_limits<float>::quiet_NaN(),
                         float_of(0x7F800001u),  // signalling NaN
                         std::numeric_limits<float>::denorm_min(),
                         -std::numeric_limits<float>::denorm_min(),
                         std::numeric_limits<float>::min(),
                         float_of(0x7F7F8000u)};  // tie between the largest bf16 and infinity
  for (const float v : cases) EXPECT_EQ(bf16_round(v), reference_round(v)) << std::hex << bits_of(v);
  EXPECT_EQ(bf16_round(float_of(0x3F808000u)), 0x3F80u);
  EXPECT_EQ(bf16_round(float_of(0x3F818000u)), 0x3F82u);
  EXPECT_EQ(bf16_round(std::numeric_limits<float>::max()), 0x7F80u);
  EXPECT_EQ(bf16_round(-std::numeric_limits<float>::denorm_min()), 0x8000u);
  for (const float v : special_values(200000, 7)) {
    ASSERT_EQ(bf16_round(v), reference_round(v)) << std::hex << bits_of(v);
  }
}

// Every element of the packed operand is either at the documented offset of an input element
// (and equals its rounded value) or padding (and is zero), even when the buffer held garbage.
TEST(Bf16Gemm, PackLayoutAndRounding) {
  const Shape shapes[] = {{1, 1, 1}, {3, 17, 3}, {12, 16, 32}, {13, 33, 33}, {25, 47, 64}, {40, 50, 131}};
  for (const Shape& s : shapes) {
    SCOPED_TRACE(testing::Message() << "nq=" << s.nq << " n=" << s.n << " dim=" << s.dim);
    const std::vector<float> x = special_values(s.n * s.dim, 11);
    const std::vector<float> q = special_values(s.nq * s.dim, 12);
    std::vector<uint16_t> px(bf16_packed_rows_size(s.n, s.dim), 0xBEEF);
    std::vector<uint16_t> pq(bf16_packed_queries_size(s.nq, s.dim), 0xBEEF);
    bf16_pack_rows(x.data(), s.n, s.dim, px.data(), nullptr);
    bf16_pack_queries(q.data(), s.nq, s.dim, pq.data(), nullptr);
    EXPECT_EQ(px.size(), (s.n + 15) / 16 * 16 * ((s.dim + 1) / 2 * 2));
    EXPECT_EQ(pq.size(), s.nq * ((s.dim + 1) / 2 * 2));

    std::vector<char> covered(px.size(), 0);
    for (std::size_t j = 0; j < s.n; ++j) {
      for (std::size_t p = 0; p < s.dim; ++p) {
        const std::size_t o = bf16_packed_row_offset(s.n, s.dim, j, p);
        ASSERT_LT(o, px.size());
        EXPECT_EQ(covered[o], 0);
        covered[o] = 1;
        ASSERT_EQ(px[o], reference_round(x[j * s.dim + p])) << "row " << j << " dim " << p;
      }
    }
    for (std::size_t o = 0; o < px.size(); ++o) {
      if (covered[o] == 0) {
        ASSERT_EQ(px[o], 0u) << "row padding at " << o;
      }
    }

    covered.assign(pq.size(), 0);
    for (std::size_t i = 0; i < s.nq; ++i) {
      for (std::size_t p = 0; p < s.dim; ++p) {
        const std::size_t o = bf16_packed_query_offset(s.nq, s.dim, i, p);
        ASSERT_LT(o, pq.size());
        EXPECT_EQ(covered[o], 0);
        covered[o] = 1;
        ASSERT_EQ(pq[o], reference_round(q[i * s.dim + p])) << "query " << i << " dim " << p;
      }
    }
    for (std::size_t o = 0; o < pq.size(); ++o) {
      if (covered[o] == 0) {
        ASSERT_EQ(pq[o], 0u) << "query padding at " << o;
      }
    }
  }
}

// The AVX-512 packers write exactly what the portable ones do, exact flags included.
TEST(Bf16Gemm, Avx512PackMatchesPortable) {
  if (!kernel_available()) GTEST_SKIP() << "CPU lacks AVX512_BF16";
  const Shape shapes[] = {{1, 1, 1}, {2, 3, 2}, {5, 17, 17}, {12, 16, 32}, {13, 31, 33},
                          {25, 47, 63}, {24, 64, 784}, {3, 20, 785}};
  for (const Shape& s : shapes) {
    SCOPED_TRACE(testing::Message() << "nq=" << s.nq << " n=" << s.n << " dim=" << s.dim);
    for (int kind = 0; kind < 3; ++kind) {
      std::vector<float> x = kind == 0 ? special_values(s.n * s.dim, 21) : normals(s.n * s.dim, 22);
      std::vector<float> q = kind == 0 ? special_values(s.nq * s.dim, 23) : normals(s.nq * s.dim, 24);
      if (kind == 2) {  // mostly exact vectors
        for (float& v : x) v = std::round(v * 20.0f);
        for (float& v : q) v = std::round(v * 20.0f);
      }
      std::vector<uint16_t> a(bf16_packed_rows_size(s.n, s.dim), 0x1234), b(a.size(), 0x4321);
      std::vector<uint8_t> ea(s.n, 7), eb(s.n, 9);
      bf16_pack_rows_avx512(x.data(), s.n, s.dim, a.data(), ea.data());
      bf16_pack_rows_portable(x.data(), s.n, s.dim, b.data(), eb.data());
      EXPECT_EQ(a, b);
      EXPECT_EQ(ea, eb);
      std::vector<uint16_t> c(bf16_packed_queries_size(s.nq, s.dim), 0x1234), d(c.size(), 0x4321);
      std::vector<uint8_t> ec(s.nq, 7), ed(s.nq, 9);
      bf16_pack_queries_avx512(q.data(), s.nq, s.dim, c.data(), ec.data());
      bf16_pack_queries_portable(q.data(), s.nq, s.dim, d.data(), ed.data());
      EXPECT_EQ(c, d);
      EXPECT_EQ(ec, ed);
      // exact may be null.
      bf16_pack_rows_avx512(x.data(), s.n, s.dim, a.data(), nullptr);
      bf16_pack_queries_avx512(q.data(), s.nq, s.dim, c.data(), nullptr);
      EXPECT_EQ(a, b);
      EXPECT_EQ(c, d);
    }
  }
}

TEST(Bf16Gemm, ExactFlags) {
  for (const std::size_t dim : {std::size_t{1}, std::size_t{7}, std::size_t{32}, std::size_t{100}}) {
    SCOPED_TRACE(testing::Message() << "dim=" << dim);
    const std::size_t n = 40;
    std::vector<float> v(n * dim);
    std::vector<uint8_t> expect(n);
    std::mt19937 gen(static_cast<uint32_t>(dim));
    const std::vector<float> noise = normals(n * dim, 5);
    for (std::size_t i = 0; i < n; ++i) {
      const std::size_t kind = i % 5;
      for (std::size_t p = 0; p < dim; ++p) {
        float& e = v[i * dim + p];
        e = static_cast<float>(gen() % 256);                 // integers 0..255: exact
        if (kind == 1 && (p % 2) == 1) e = -e;               // negative integers: exact
        if (kind == 2) e = noise[i * dim + p];               // random normals: not exact
      }
      if (kind == 3) v[i * dim + (i % dim)] = 257.0f;        // one element needs 9 bits
      if (kind == 4) v[i * dim + (i % dim)] = std::numeric_limits<float>::denorm_min();  // flushed
      expect[i] = kind <= 1 ? 1 : 0;
    }
    std::vector<uint8_t> ex_rows(n, 9), ex_queries(n, 9);
    std::vector<uint16_t> pr(bf16_packed_rows_size(n, dim)), pq(bf16_packed_queries_size(n, dim));
    bf16_pack_rows(v.data(), n, dim, pr.data(), ex_rows.data());
    bf16_pack_queries(v.data(), n, dim, pq.data(), ex_queries.data());
    EXPECT_EQ(ex_rows, expect);
    EXPECT_EQ(ex_queries, expect);
  }
}

TEST(Bf16Gemm, GemmWithinFp32AccumulationBound) {
  for (const Shape& s : kShapes) {
    for (uint32_t seed = 1; seed <= 3; ++seed) check_gemm(bf16_gemm, s, seed);
  }
}

TEST(Bf16Gemm, Avx512GemmWithinFp32AccumulationBound) {
  if (!kernel_available()) GTEST_SKIP() << "CPU lacks AVX512_BF16";
  for (const Shape& s : kShapes) check_gemm(bf16_gemm_avx512, s, 40);
  // Larger than one query chunk and several row micro-panels.
  check_gemm(bf16_gemm_avx512, {400, 130, 96}, 41);
}

TEST(Bf16Gemm, PortableGemmWithinFp32AccumulationBound) {
  for (const Shape& s : {Shape{1, 1, 1}, Shape{13, 33, 31}, Shape{25, 47, 129}}) {
    check_gemm(bf16_gemm_portable, s, 50);
  }
}

// Small integers: every product and partial sum is exact in fp32, so the result is exact.
TEST(Bf16Gemm, SmallIntegersExact) {
  if (!kernel_available()) GTEST_SKIP() << "CPU lacks AVX512_BF16";
  const std::size_t nq = 29, n = 53, dim = 77;
  std::mt19937 gen(3);
  std::vector<float> q(nq * dim), x(n * dim);
  for (float& v : q) v = static_cast<float>(static_cast<int>(gen() % 31) - 15);
  for (float& v : x) v = static_cast<float>(static_cast<int>(gen() % 31) - 15);
  std::vector<uint16_t> pq(bf16_packed_queries_size(nq, dim)), px(bf16_packed_rows_size(n, dim));
  bf16_pack_queries(q.data(), nq, dim, pq.data(), nullptr);
  bf16_pack_rows(x.data(), n, dim, px.data(), nullptr);
  std::vector<float> out(nq * n);
  bf16_gemm(pq.data(), nq, px.data(), n, dim, out.data(), n);
  for (std::size_t i = 0; i < nq; ++i) {
    for (std::size_t j = 0; j < n; ++j) {
      double s = 0.0;
      for (std::size_t p = 0; p < dim; ++p) s += double(q[i * dim + p]) * double(x[j * dim + p]);
      ASSERT_EQ(double(out[i * n + j]), s) << i << "," << j;
    }
  }
}

// A run of whole row panels (from a multiple of 16) and of whole query panels (from a multiple of
// kBf16QueryPanel) is itself a packed operand.
TEST(Bf16Gemm, SubrangesOfPackedOperands) {
  const std::size_t nq = 3 * kBf16QueryPanel + 5, n = 70, dim = 45;
  const std::vector<float> q = normals(nq * dim, 60), x = normals(n * dim, 61);
  std::vector<uint16_t> pq(bf16_packed_queries_size(nq, dim)), px(bf16_packed_rows_size(n, dim));
  bf16_pack_queries(q.data(), nq, dim, pq.data(), nullptr);
  bf16_pack_rows(x.data(), n, dim, px.data(), nullptr);
  std::vector<float> full(nq * n);
  bf16_gemm(pq.data(), nq, px.data(), n, dim, full.data(), n);
  const std::size_t i0 = kBf16QueryPanel, j0 = 32;
  const std::size_t sub_nq = nq - i0, sub_n = n - j0;
  std::vector<float> sub(sub_nq * sub_n);
  bf16_gemm(pq.data() + bf16_packed_query_offset(nq, dim, i0, 0), sub_nq,
            px.data() + bf16_packed_row_offset(n, dim, j0, 0), sub_n, dim, sub.data(), sub_n);
  for (std::size_t i = 0; i < sub_nq; ++i) {
    for (std::size_t j = 0; j < sub_n; ++j) {
      ASSERT_EQ(bits_of(sub[i * sub_n + j]), bits_of(full[(i0 + i) * n + j0 + j])) << i << "," << j;
    }
  }
}

TEST(Bf16Gemm, EmptyIsNoOp) {
  float out[4] = {1, 2, 3, 4};
  const uint16_t dummy[32] = {};
  bf16_gemm(dummy, 0, dummy, 2, 2, out, 2);
  bf16_gemm(dummy, 2, dummy, 0, 2, out, 2);
  bf16_gemm(dummy, 2, dummy, 2, 0, out, 2);
  EXPECT_EQ(out[0], 1.0f);
  EXPECT_EQ(out[3], 4.0f);
}

}  // namespace
}  // namespace hive::gpu::cpu
