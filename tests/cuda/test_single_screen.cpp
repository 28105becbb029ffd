// Single queries on fp32 stores read an fp16 copy of the rows, re-score the 32 best of it exactly
// and answer only where their error bounds prove no other row can enter the k best
// (cuda_flat_store.cpp, single_screen; scan.cu, screen_finish). Checked here: the answers equal
// those of the plain fp32 scan bitwise (k = 17 does not take the screen, and its first k rows
// are the plain scan's k best), and the float64 ranking (ties allowed); near-ties the copy cannot
// resolve fall back to the fp32 rows; appended rows extend the copy or, out of its range, drop
// it; removed rows stay out.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "backends/cuda/cuda_flat_store.hpp"
#include "cuda_test_util.hpp"
#include "hive_gpu/hive_gpu.hpp"

namespace {

using namespace hive::gpu;
using hive::gpu::cuda::single_screen_stats;

constexpr int kPlainK = 17;  // above the screen's largest k: the plain fp32 scan

using hive::gpu::cuda::test::exact_score;

// The k-row answer for q equals the plain scan's first k rows, ids and distances bitwise.
void expect_plain(FlatIndex& index, const float* q, int k) {
  const SearchResult got = index.search(1, q, k);
  const SearchResult plain = index.search(1, q, kPlainK);
  for (int j = 0; j < k; ++j) {
    EXPECT_EQ(got.id(0, j), plain.id(0, j)) << "k " << k << " rank " << j;
    EXPECT_EQ(got.distance(0, j), plain.distance(0, j)) << "k " << k << " rank " << j;
  }
}

// Every returned row scores within the k-th best float64 score (ties allowed).
void expect_exact(FlatIndex& index, Metric m, const std::vector<float>& x, std::size_t dim, const float* q, int k) {
  const std::size_t n = x.size() / dim;
  std::vector<double> s(n);
  for (std::size_t r = 0; r < n; ++r) s[r] = exact_score(m, q, x.data() + r * dim, dim);
  std::vector<double> sorted = s;
  std::nth_element(sorted.begin(), sorted.begin() + (k - 1), sorted.end());
  const double kth = sorted[std::size_t(k - 1)];
  const SearchResult res = index.search(1, q, k);
  for (int j = 0; j < k; ++j) {
    const int64_t id = res.id(0, j);
    ASSERT_GE(id, 0);
    EXPECT_LE(s[std::size_t(id)], kth + 1e-5 * (1.0 + std::fabs(kth))) << "rank " << j;
  }
}

TEST(CudaSingleScreen, AnswersEqualThePlainScan) {
  REQUIRE_DEVICE();
  const std::size_t n = 20000;
  std::mt19937 rng(5);
  for (std::size_t dim : {std::size_t(128), std::size_t(24)}) {
    for (int kind = 0; kind < 2; ++kind) {  // uniform [0, 1); normal around 3 (large norms, small gaps)
      std::uniform_real_distribution<float> uni(0.0f, 1.0f);
      std::normal_distribution<float> nor(3.0f, 1.0f);
      std::vector<float> x(n * dim), q(8 * dim);
      for (float& v : x) v = kind == 0 ? uni(rng) : nor(rng);
      for (float& v : q) v = kind == 0 ? uni(rng) : nor(rng);
      for (Metric m : {Metric::L2, Metric::InnerProduct, Metric::Cosine}) {
        SCOPED_TRACE(std::string(to_string(m)) + " d " + std::to_string(dim) + " kind " + std::to_string(kind));
        FlatIndex index(Context::open("cuda"), dim, m);
        index.add(n, x.data());
        const auto before = single_screen_stats();
        for (std::size_t i = 0; i < 8; ++i) {
          for (int k : {1, 10, 16}) expect_plain(index, q.data() + i * dim, k);
          expect_exact(index, m, x, dim, q.data() + i * dim, 10);
        }
        const auto after = single_screen_stats();
        // 8 queries x 4 screened searches (k = 17 is not screened), most answered by the copy.
        const uint64_t answered = after.answered - before.answered;
        EXPECT_EQ(answered + after.inconclusive - before.inconclusive, 32u);
        EXPECT_GT(answered, 0u);
        std::printf("  %s d %zu kind %d: %llu of 32 answered through the fp16 copy\n", std::string(to_string(m)).c_str(), dim, kind,
                    static_cast<unsigned long long>(answered));
      }
    }
  }
}

// The answer for q with the copy equals the one without it (HIVE_GPU_CUDA_NO_F16_SCREEN=1, read
// per search), ids and distances bitwise.
void expect_same_without_copy(FlatIndex& index, const float* q, int k) {
  const SearchResult got = index.search(1, q, k);
  setenv("HIVE_GPU_CUDA_NO_F16_SCREEN", "1", 1);
  const SearchResult plain = index.search(1, q, k);
  unsetenv("HIVE_GPU_CUDA_NO_F16_SCREEN");
  for (int j = 0; j < k; ++j) {
    ASSERT_EQ(got.id(0, j), plain.id(0, j)) << "k " << k << " rank " << j;
    ASSERT_EQ(got.distance(0, j), plain.distance(0, j)) << "k " << k << " rank " << j;
  }
}

// 32 < k <= 1024: the copy's scores, their 2k best re-scored, the same bound check.
TEST(CudaSingleScreen, LargeKEqualsThePlainScan) {
  REQUIRE_DEVICE();
  const std::size_t n = 20000, dim = 64;
  std::mt19937 rng(17);
  std::uniform_real_distribution<float> uni(0.0f, 1.0f);
  std::vector<float> x(n * dim), q(4 * dim);
  for (float& v : x) v = uni(rng);
  for (float& v : q) v = uni(rng);
  for (Metric m : {Metric::L2, Metric::InnerProduct, Metric::Cosine}) {
    SCOPED_TRACE(to_string(m));
    FlatIndex index(Context::open("cuda"), dim, m);
    index.add(n, x.data());
    const auto before = single_screen_stats();
    for (std::size_t i = 0; i < 4; ++i)
      for (int k : {33, 100, 1024}) expect_same_without_copy(index, q.data() + i * dim, k);
    for (int k : {33, 1024}) expect_exact(index, m, x, dim, q.data(), k);
    const auto after = single_screen_stats();
    EXPECT_GT(after.answered, before.answered);
  }
}

TEST(CudaSingleScreen, NearTiesFallBackToTheFp32Rows) {
  REQUIRE_DEVICE();
  // Rows a common vector apart by 1e-6 relative: below fp16's resolution (2^-11), so the copy
  // cannot rank them and the answer must come from the fp32 rows.
  const std::size_t n = 20000, dim = 64;
  std::mt19937 rng(9);
  std::normal_distribution<float> g(0.0f, 1.0f);
  std::vector<float> c(dim), x(n * dim);
  for (float& v : c) v = 1.0f + 0.1f * g(rng);
  for (std::size_t r = 0; r < n; ++r)
    for (std::size_t j = 0; j < dim; ++j) x[r * dim + j] = c[j] * (1.0f + 1e-6f * g(rng));
  for (Metric m : {Metric::L2, Metric::InnerProduct}) {
    SCOPED_TRACE(to_string(m));
    FlatIndex index(Context::open("cuda"), dim, m);
    index.add(n, x.data());
    const auto before = single_screen_stats();
    for (int i = 0; i < 4; ++i) {
      std::vector<float> q(x.begin() + std::ptrdiff_t(i * 997 * dim), x.begin() + std::ptrdiff_t((i * 997 + 1) * dim));
      expect_plain(index, q.data(), 10);
      expect_same_without_copy(index, q.data(), 100);
      if (m == Metric::L2) {
        const SearchResult r = index.search(1, q.data(), 1);
        EXPECT_EQ(r.id(0, 0), int64_t(i * 997));  // the row itself, at distance 0
        EXPECT_EQ(r.distance(0, 0), 0.0f);
      }
    }
    EXPECT_GT(single_screen_stats().inconclusive, before.inconclusive);
  }
}

TEST(CudaSingleScreen, AppendsAndRemovals) {
  REQUIRE_DEVICE();
  const std::size_t n = 20000, dim = 32;
  std::mt19937 rng(13);
  std::uniform_real_distribution<float> uni(-1.0f, 1.0f);
  std::vector<float> x(n * dim), q(dim);
  for (float& v : x) v = uni(rng);
  for (float& v : q) v = uni(rng);
  FlatIndex index(Context::open("cuda"), dim, Metric::L2);
  index.add(n, x.data());
  expect_plain(index, q.data(), 10);  // makes the copy
  // Within the copy's range: the copy is extended, and the new row equal to q comes first.
  std::vector<float> more(100 * dim);
  for (float& v : more) v = uni(rng);
  std::copy(q.begin(), q.end(), more.begin() + 50 * dim);
  index.add(100, more.data());
  x.insert(x.end(), more.begin(), more.end());
  SearchResult r = index.search(1, q.data(), 10);
  EXPECT_EQ(r.id(0, 0), int64_t(n + 50));
  EXPECT_EQ(r.distance(0, 0), 0.0f);
  expect_plain(index, q.data(), 10);
  expect_exact(index, Metric::L2, x, dim, q.data(), 10);
  // Removed: the row stays out of the answer.
  const int64_t gone = int64_t(n + 50);
  EXPECT_EQ(index.remove(1, &gone), 1u);
  r = index.search(1, q.data(), 10);
  for (int j = 0; j < 10; ++j) EXPECT_NE(r.id(0, j), int64_t(n + 50));
  expect_plain(index, q.data(), 10);
  // Far out of the copy's range (its scale put |values| <= 1 near 2^15): the copy is made anew.
  std::vector<float> big(dim);
  for (std::size_t j = 0; j < dim; ++j) big[j] = 1000.0f * q[j];
  index.add(1, big.data());
  x.insert(x.end(), big.begin(), big.end());
  r = index.search(1, big.data(), 1);
  EXPECT_EQ(r.id(0, 0), int64_t(n + 100));
  expect_plain(index, q.data(), 10);
  expect_plain(index, big.data(), 10);
}

}  // namespace
