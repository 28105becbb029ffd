// The tiled matrix product (launch_dot_tile) against a float64 CPU reference: F32, F16 and BF16
// rows, shapes that are not multiples of the tiles (odd dim: the scalar load path; dim % 4 == 0:
// the vector path), ld > n with the padding left untouched, unaligned query and output pointers,
// and repeatable, launch-independent sums.
#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "backends/cuda/dot_tile.hpp"

#include "cuda_test_util.hpp"

namespace hive::gpu::cuda {
namespace {

using test::DeviceMem;

uint32_t bits_of(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}
float float_of(uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

// IEEE half, round to nearest even (finite inputs; overflow gives infinity).
uint16_t to_half(float f) {
  const uint32_t x = bits_of(f);
  const auto sign = static_cast<uint16_t>((x >> 16) & 0x8000u);
  const uint32_t a = x & 0x7fffffffu;
  if (a >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // >= 65520 rounds to infinity
  if (a < 0x38800000u) {  // below 2^-14: a multiple of 2^-24 (subnormal), exact scaling then rint
    const auto m = static_cast<uint32_t>(std::nearbyint(float_of(a) * 16777216.0f));
    return static_cast<uint16_t>(sign | m);  // m == 0x400 is the smallest normal, correctly
  }
  const uint32_t v = a - (112u << 23);  // exponent bias 127 -> 15
  return static_cast<uint16_t>(sign | ((v + 0xfffu + ((v >> 13) & 1u)) >> 13));
}
float from_half(uint16_t h) {
  const int e = (h >> 10) & 0x1f;
  const int m = h & 0x3ff;
  const float mag = e == 0 ? std::ldexp(static_cast<float>(m), -24)
                           : e == 31 ? HUGE_VALF : std::ldexp(static_cast<float>(m | 0x400), e - 25);
  return (h & 0x8000u) != 0 ? -mag : mag;
}
// bfloat16, round to nearest even (finite inputs).
uint16_t to_bf16(float f) {
  const uint32_t x = bits_of(f);
  return static_cast<uint16_t>((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);
}
float from_bf16(uint16_t b) { return float_of(static_cast<uint32_t>(b) << 16); }

// Rows in their storage encoding plus the fp32 values the device decodes them to.
struct Rows {
  std::vector<unsigned char> bytes;
  std::vector<float> decoded;
};

Rows encode(const std::vector<float>& v, ScalarType t) {
  Rows r;
  r.decoded.resize(v.size());
  if (t == ScalarType::F32) {
    r.decoded = v;
    r.bytes.resize(v.size() * sizeof(float));
    std::memcpy(r.bytes.data(), v.data(), r.bytes.size());
    return r;
  }
  std::vector<uint16_t> h(v.size());
  for (std::size_t i = 0; i < v.size(); ++i) {
    h[i] = t == ScalarType::F16 ? to_half(v[i]) : to_bf16(v[i]);
    r.decoded[i] = t == ScalarType::F16 ? from_half(h[i]) : from_bf16(h[i]);
  }
  r.bytes.resize(h.size() * sizeof(uint16_t));
  std::memcpy(r.bytes.data(), h.data(), r.bytes.size());
  return r;
}

std::vector<float> random_values(std::size_t count, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  std::vector<float> v(count);
  for (float& x : v) x = dist(rng);
  return v;
}

struct Shape {
  std::size_t n, nq, dim;
};

struct Options {
  std::size_t ld = 0;           // 0: n
  std::size_t query_shift = 0;  // floats the queries start past an aligned base
  std::size_t out_shift = 0;    // floats the output starts past an aligned base
};

constexpr float kSentinel = -12345.0f;

// Runs the kernel `repeats` times into the same output; returns out (nq x ld, sentinel-filled
// beforehand) as the last run left it, or an empty vector after a failure.
std::vector<float> run(const Rows& rows, std::size_t n, ScalarType t, const std::vector<float>& queries, std::size_t nq,
                       std::size_t dim, const Options& o, int repeats = 1) {
  const std::size_t ld = o.ld != 0 ? o.ld : n;
  DeviceMem d_rows(rows.bytes.size());
  DeviceMem d_q((queries.size() + o.query_shift) * sizeof(float));
  DeviceMem d_out((nq * ld + o.out_shift) * sizeof(float));
  std::vector<float> out(nq * ld, kSentinel);
  if (d_rows.p == nullptr || d_q.p == nullptr || d_out.p == nullptr) {
    ADD_FAILURE() << "cudaMalloc failed";
    return {};
  }
  float* q = d_q.as<float>() + o.query_shift;
  float* dout = d_out.as<float>() + o.out_shift;
  bool ok = cudaMemcpy(d_rows.p, rows.bytes.data(), rows.bytes.size(), cudaMemcpyHostToDevice) == cudaSuccess &&
            cudaMemcpy(q, queries.data(), queries.size() * sizeof(float), cudaMemcpyHostToDevice) == cudaSuccess &&
            cudaMemcpy(dout, out.data(), out.size() * sizeof(float), cudaMemcpyHostToDevice) == cudaSuccess;
  cudaStream_t stream = nullptr;
  ok = ok && cudaStreamCreate(&stream) == cudaSuccess;
  if (!ok) {
    ADD_FAILURE() << "upload failed";
    return {};
  }
  for (int i = 0; i < repeats; ++i) launch_dot_tile(d_rows.p, n, t, q, nq, dim, dout, ld, stream);
  const cudaError_t sync = cudaStreamSynchronize(stream);
  cudaStreamDestroy(stream);
  if (sync != cudaSuccess ||
      cudaMemcpy(out.data(), dout, out.size() * sizeof(float), cudaMemcpyDeviceToHost) != cudaSuccess) {
    ADD_FAILURE() << "kernel or download failed";
    return {};
  }
  return out;
}

// Every out[q * ld + r], r < n, within 1e-5 of sum_j |q_j x_j| of the float64 sum of the decoded
// values; every padding entry (r >= n) still the sentinel.
::testing::AssertionResult matches_reference(const std::vector<float>& out, const std::vector<float>& x,
                                             std::size_t n, const std::vector<float>& queries, std::size_t nq,
                                             std::size_t dim, std::size_t ld) {
  if (out.size() != nq * ld) return ::testing::AssertionFailure() << "no output";
  std::size_t bad = 0;
  ::testing::AssertionResult first = ::testing::AssertionSuccess();
  for (std::size_t q = 0; q < nq; ++q) {
    for (std::size_t r = 0; r < ld; ++r) {
      const float got = out[q * ld + r];
      if (r >= n) {
        if (bits_of(got) != bits_of(kSentinel) && bad++ == 0)
          first = ::testing::AssertionFailure() << "padding out[" << q << " * ld + " << r << "] = " << got << " written";
        continue;
      }
      double sum = 0.0, mag = 0.0;
      for (std::size_t j = 0; j < dim; ++j) {
        const double p = static_cast<double>(queries[q * dim + j]) * static_cast<double>(x[r * dim + j]);
        sum += p;
        mag += std::fabs(p);
      }
      const double tol = 1e-5 * mag + 1e-7;
      if (!(std::fabs(static_cast<double>(got) - sum) <= tol) && bad++ == 0)
        first = ::testing::AssertionFailure() << "query " << q << " row " << r << ": got " << got << ", want " << sum
                                              << " (tolerance " << tol << ")";
    }
  }
  if (bad == 0) return ::testing::AssertionSuccess();
  return first << " [" << bad << " bad entries]";
}

void check_shape(const Shape& s, ScalarType t, const Options& o = {}) {
  SCOPED_TRACE(::testing::Message() << "n " << s.n << " nq " << s.nq << " dim " << s.dim << " type "
                                    << static_cast<int>(t) << " ld " << o.ld << " shifts " << o.query_shift << "/"
                                    << o.out_shift);
  const unsigned seed = static_cast<unsigned>(s.n * 7919 + s.nq * 104729 + s.dim);
  const Rows rows = encode(random_values(s.n * s.dim, seed), t);
  const std::vector<float> queries = random_values(s.nq * s.dim, seed + 1);
  const std::vector<float> out = run(rows, s.n, t, queries, s.nq, s.dim, o);
  EXPECT_TRUE(matches_reference(out, rows.decoded, s.n, queries, s.nq, s.dim, o.ld != 0 ? o.ld : s.n));
}

const Shape kShapes[] = {
    {1, 1, 1},       {63, 31, 3},    {1000, 129, 17}, {257, 65, 130}, {2000, 300, 128},
    {513, 7, 784},   {129, 130, 12},  // dim % 4 == 0 but not % 8: the last panel is half empty
    {130, 257, 4},   {300, 128, 36},
};

const ScalarType kTypes[] = {ScalarType::F32, ScalarType::F16, ScalarType::BF16};

// The host encoders the references rely on.
TEST(DotTile, HostEncodersRoundToNearestEven) {
  EXPECT_EQ(to_half(1.0f), 0x3c00);
  EXPECT_EQ(to_half(-2.0f), 0xc000);
  EXPECT_EQ(to_half(65504.0f), 0x7bff);
  EXPECT_EQ(to_half(65520.0f), 0x7c00);
  EXPECT_EQ(to_half(1.0f + std::ldexp(1.0f, -11)), 0x3c00);      // tie to even (down)
  EXPECT_EQ(to_half(1.0f + 3 * std::ldexp(1.0f, -11)), 0x3c02);  // tie to even (up)
  EXPECT_EQ(to_half(std::ldexp(1.0f, -24)), 0x0001);
  EXPECT_EQ(to_half(std::ldexp(1.0f, -25)), 0x0000);  // tie to even (zero)
  EXPECT_EQ(to_half(std::ldexp(3.0f, -25)), 0x0002);
  EXPECT_EQ(from_half(0x3555), 0.333251953125f);
  EXPECT_EQ(from_half(0x0001), std::ldexp(1.0f, -24));
  EXPECT_EQ(to_bf16(1.0f), 0x3f80);
  EXPECT_EQ(to_bf16(1.0f + std::ldexp(1.0f, -8)), 0x3f80);      // tie to even (down)
  EXPECT_EQ(to_bf16(1.0f + 3 * std::ldexp(1.0f, -8)), 0x3f82);  // tie to even (up)
  EXPECT_EQ(to_bf16(-3.0f), 0xc040);
  EXPECT_EQ(from_bf16(0x3fc0), 1.5f);
}

TEST(DotTile, MatchesReference) {
  REQUIRE_DEVICE();
  for (const ScalarType t : kTypes)
    for (const Shape& s : kShapes) check_shape(s, t);
}

TEST(DotTile, LeadingDimensionPaddingUntouched) {
  REQUIRE_DEVICE();
  for (const ScalarType t : kTypes) {
    // ld % 4 == 0: vector stores, then 1, 2 or 3 rows left for the last group.
    for (const std::size_t n : {std::size_t(201), std::size_t(202), std::size_t(203)})
      check_shape({n, 70, 64}, t, {.ld = 204});
    check_shape({201, 70, 17}, t, {.ld = 203});   // scalar stores
    check_shape({128, 129, 8}, t, {.ld = 300});   // n a whole tile
  }
}

// Misaligned queries and output take the scalar load / store paths.
TEST(DotTile, UnalignedQueriesAndOutput) {
  REQUIRE_DEVICE();
  for (const ScalarType t : kTypes) {
    check_shape({300, 140, 32}, t, {.query_shift = 1});
    check_shape({300, 140, 32}, t, {.ld = 304, .out_shift = 1});
    check_shape({300, 140, 32}, t, {.ld = 304, .query_shift = 2, .out_shift = 3});
  }
}

// Two runs give the same bits, and each sum is the same whatever else is in the batch (a query
// alone or among others, rows on their own or as part of a larger set).
TEST(DotTile, RepeatableAndBatchIndependent) {
  REQUIRE_DEVICE();
  const std::size_t n = 1000, nq = 300;
  for (const std::size_t dim : {std::size_t(130), std::size_t(128)}) {
    for (const ScalarType t : kTypes) {
      SCOPED_TRACE(::testing::Message() << "dim " << dim << " type " << static_cast<int>(t));
      const Rows rows = encode(random_values(n * dim, 11), t);
      const std::vector<float> queries = random_values(nq * dim, 12);
      const std::vector<float> a = run(rows, n, t, queries, nq, dim, {});
      const std::vector<float> b = run(rows, n, t, queries, nq, dim, {}, 2);
      ASSERT_EQ(a.size(), nq * n);
      ASSERT_EQ(b.size(), nq * n);
      EXPECT_EQ(0, std::memcmp(a.data(), b.data(), a.size() * sizeof(float)));
      // Queries 0..4 alone, against the first 77 rows (77 x dim elements of the same storage).
      Rows head;
      const std::size_t elem = t == ScalarType::F32 ? sizeof(float) : sizeof(uint16_t);
      head.bytes.assign(rows.bytes.begin(), rows.bytes.begin() + static_cast<std::ptrdiff_t>(77 * dim * elem));
      const std::vector<float> q5(queries.begin(), queries.begin() + static_cast<std::ptrdiff_t>(5 * dim));
      const std::vector<float> c = run(head, 77, t, q5, 5, dim, {.ld = 80});
      ASSERT_EQ(c.size(), 5 * 80u);
      std::size_t differ = 0;
      for (std::size_t q = 0; q < 5; ++q)
        for (std::size_t r = 0; r < 77; ++r) differ += bits_of(c[q * 80 + r]) != bits_of(a[q * n + r]);
      EXPECT_EQ(differ, 0u);
    }
  }
}

}  // namespace
}  // namespace hive::gpu::cuda
