// Unit tests of backend-neutral internals: fp16/bf16 codecs, CRC-32C, top-k, thread pool.
#include <gtest/gtest.h>

#include <atomic>
#include <bit>
#include <cmath>
#include <random>
#include <stdexcept>

#include "backends/cpu/thread_pool.hpp"
#include "core/copy_screen.hpp"
#include "core/file_format.hpp"
#include "core/scalar_codec.hpp"
#include "core/topk.hpp"

namespace hd = hive::gpu::detail;

namespace {

// Reference: the nearest half to f by exhaustive search over all finite halves, ties to even.
uint16_t nearest_half(float f) {
  double best_err = INFINITY;
  uint16_t best = 0;
  for (uint32_t h = 0; h < 0x10000u; ++h) {
    if ((h & 0x7c00u) == 0x7c00u) continue;  // inf / nan
    const double v = hd::f16_to_f32(uint16_t(h));
    const double err = std::fabs(v - double(f));
    if (err < best_err || (err == best_err && (h & 1u) == 0 && (std::signbit(v) == std::signbit(f)))) {
      best_err = err;
      best = uint16_t(h);
    }
  }
  return best;
}

}  // namespace

TEST(Codec, HalfDecodeMatchesFormula) {
  for (uint32_t h = 0; h < 0x10000u; ++h) {
    const uint32_t exp = (h >> 10) & 0x1fu, mant = h & 0x3ffu;
    const double sign = (h & 0x8000u) ? -1.0 : 1.0;
    const float got = hd::f16_to_f32(uint16_t(h));
    if (exp == 31) {
      if (mant) EXPECT_TRUE(std::isnan(got)) << h;
      else EXPECT_EQ(got, float(sign * INFINITY)) << h;
      continue;
    }
    const double want = exp == 0 ? sign * std::ldexp(double(mant), -24)
                                 : sign * std::ldexp(1.0 + double(mant) / 1024.0, int(exp) - 15);
    ASSERT_EQ(double(got), want) << "half bits " << h;
  }
}

TEST(Codec, HalfEncodeRoundsToNearestEven) {
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> mag(-30.0f, 16.0f);
  for (int i = 0; i < 300; ++i) {
    const float f = std::ldexp(1.0f, int(mag(rng))) * std::uniform_real_distribution<float>(-2.0f, 2.0f)(rng);
    if (std::fabs(f) > hd::kHalfMax) continue;
    const uint16_t want = nearest_half(f);
    const uint16_t got = hd::f32_to_f16(f);
    // +0 and -0 are both nearest to tiny values; compare values then.
    ASSERT_EQ(double(hd::f16_to_f32(got)), double(hd::f16_to_f32(want))) << "f = " << f;
  }
  // Exact halfway cases go to the even neighbour.
  EXPECT_EQ(hd::f32_to_f16(1.0f + 1.0f / 2048.0f), 0x3c00u);
  EXPECT_EQ(hd::f32_to_f16(1.0f + 3.0f / 2048.0f), 0x3c02u);
  EXPECT_EQ(hd::f32_to_f16(65520.0f), 0x7c00u);  // rounds past the largest half
  EXPECT_EQ(hd::f32_to_f16(65504.0f), 0x7bffu);
  EXPECT_EQ(hd::f32_to_f16(std::ldexp(1.0f, -25)), 0x0000u);  // halfway to the smallest subnormal: even
  EXPECT_EQ(hd::f32_to_f16(std::ldexp(1.5f, -25)), 0x0001u);
}

TEST(Codec, Bfloat16RoundTripAndRounding) {
  std::mt19937 rng(3);
  std::normal_distribution<float> nd(0.0f, 100.0f);
  for (int i = 0; i < 10000; ++i) {
    const float f = nd(rng);
    const float back = hd::bf16_to_f32(hd::f32_to_bf16(f));
    ASSERT_LE(std::fabs(double(back) - double(f)), std::fabs(double(f)) * std::ldexp(1.0, -8)) << f;
    // bf16 values themselves round-trip exactly.
    ASSERT_EQ(hd::bf16_to_f32(hd::f32_to_bf16(back)), back);
  }
  EXPECT_EQ(hd::f32_to_bf16(std::bit_cast<float>(0x3f808000u)), 0x3f80u);  // tie to even (down)
  EXPECT_EQ(hd::f32_to_bf16(std::bit_cast<float>(0x3f818000u)), 0x3f82u);  // tie to even (up)
  EXPECT_TRUE(std::isnan(hd::bf16_to_f32(hd::f32_to_bf16(NAN))));
}

TEST(Crc32c, KnownVectorsAndChaining) {
  // RFC 3720 test vectors.
  std::vector<uint8_t> zeros(32, 0), ones(32, 0xff), inc(32);
  for (int i = 0; i < 32; ++i) inc[i] = uint8_t(i);
  EXPECT_EQ(hd::crc32c(0, zeros.data(), 32), 0x8a9136aau);
  EXPECT_EQ(hd::crc32c(0, ones.data(), 32), 0x62a8ab43u);
  EXPECT_EQ(hd::crc32c(0, inc.data(), 32), 0x46dd794eu);
  EXPECT_EQ(hd::crc32c(0, "123456789", 9), 0xe3069283u);
  // Feeding in pieces gives the same value as in one call.
  const uint32_t part = hd::crc32c(hd::crc32c(0, inc.data(), 13), inc.data() + 13, 19);
  EXPECT_EQ(part, 0x46dd794eu);
}

TEST(TopK, MatchesFullSortWithTies) {
  std::mt19937 rng(11);
  for (int k : {1, 5, 64, 300}) {
    std::vector<float> s(1000);
    for (auto& v : s) v = float(rng() % 50);  // many ties
    hd::TopK top(k);
    top.push_block(s.data(), s.size(), 100);
    auto got = top.take_sorted();
    std::vector<hd::Candidate> all;
    for (std::size_t i = 0; i < s.size(); ++i) all.push_back({s[i], int64_t(100 + i)});
    std::sort(all.begin(), all.end(), hd::better);
    ASSERT_EQ(got.size(), std::size_t(k));
    for (int j = 0; j < k; ++j) {
      EXPECT_EQ(got[j].score, all[j].score);
      EXPECT_EQ(got[j].row, all[j].row);
    }
  }
}

TEST(TopK, WriteBestPadsMissingSlots) {
  std::vector<hd::Candidate> c = {{3.0f, 7}, {1.0f, 9}};
  float d[4];
  int64_t r[4];
  hd::write_best(c, 4, d, r);
  EXPECT_EQ(r[0], 9);
  EXPECT_EQ(r[1], 7);
  EXPECT_EQ(r[2], -1);
  EXPECT_EQ(r[3], -1);
  EXPECT_TRUE(std::isinf(d[3]) && d[3] > 0);
}

// The batch screens' sample: the first live row of each stride [i n / m, (i + 1) n / m), against
// the same strides computed with a division per row, on random sizes and deletions (none, some,
// nearly all).
TEST(SpreadSample, FirstLiveRowOfEachStride) {
  std::mt19937_64 rng(91);
  for (int trial = 0; trial < 300; ++trial) {
    const std::size_t n = 1 + rng() % 5000, m = 1 + rng() % n;
    const double p = trial % 3 == 0 ? 0.0 : trial % 3 == 1 ? 0.3 : 0.97;
    std::vector<bool> dead(n);
    for (std::size_t r = 0; r < n; ++r) dead[r] = std::uniform_real_distribution<double>(0, 1)(rng) < p;
    std::vector<uint32_t> want;
    for (std::size_t i = 0; i < m; ++i) {
      const std::size_t lo = i * n / m, hi = (i + 1) * n / m;
      for (std::size_t r = lo; r < hi; ++r) {
        if (!dead[r]) {
          want.push_back(uint32_t(r));
          break;
        }
      }
    }
    const auto got = hive::gpu::detail::spread_sample(n, m, [&](std::size_t r) { return bool(dead[r]); });
    ASSERT_EQ(got, want) << "n=" << n << " m=" << m << " p=" << p;
    if (p == 0.0) {
      EXPECT_EQ(got.size(), m);
    }
  }
}

TEST(ThreadPool, RunsEveryTaskOnceAndPropagatesErrors) {
  auto& pool = hive::gpu::cpu::ThreadPool::instance();
  std::vector<std::atomic<int>> hits(1000);
  pool.parallel_for(hits.size(), [&](std::size_t i) { hits[i]++; });
  for (auto& h : hits) EXPECT_EQ(h.load(), 1);
  EXPECT_THROW(pool.parallel_for(50, [](std::size_t i) {
    if (i == 17) throw std::runtime_error("boom");
  }), std::runtime_error);
  // Concurrent callers share the pool.
  std::atomic<long> sum{0};
  std::vector<std::thread> callers;
  for (int t = 0; t < 4; ++t)
    callers.emplace_back([&] { pool.parallel_for(100, [&](std::size_t i) { sum += long(i); }); });
  for (auto& t : callers) t.join();
  EXPECT_EQ(sum.load(), 4 * 4950);
}
