// Large batches on stores big enough that the batch screen's thresholds come from screening its
// sample (a sub-sample's thresholds, the screen over the sample, exact re-score; see
// CudaFlatStore::screen_tile) rather than cuBLAS scores of the whole sample. Results must be
// exact (float64 reference, ties allowed) and bitwise the same as with the cuBLAS thresholds
// (HIVE_GPU_CUDA_NO_SAMPLE_SCREEN=1): both give each query the exact k-th best score of the same
// sample, so the screens that follow see the same thresholds. fp32 rows (screened through their
// fp16 copy) and fp16 rows; L2, inner product, cosine; rows removed before the search.
#include <cuda_fp16.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "backends/cuda/cuda_flat_store.hpp"
#include "cuda_test_util.hpp"
#include "hive_gpu/hive_gpu.hpp"

namespace {

using namespace hive::gpu;

using hive::gpu::cuda::test::exact_score;

TEST(CudaSampleScreen, LargeStoreExactAndSameAsCublasThresholds) {
  REQUIRE_DEVICE();
  // 400 000 rows: a sample of 12 500 rows and a sub-sample of 640 (64 k), past the 16x the
  // sub-sample screen asks for.
  const std::size_t n = 400000, dim = 32, nq = 300, checked = 40;
  const int k = 10;
  std::mt19937 rng(31);
  std::normal_distribution<float> g(0.0f, 1.0f);
  std::vector<float> x(n * dim), q(nq * dim);
  for (auto& v : x) v = g(rng);
  for (auto& v : q) v = g(rng);
  std::vector<int64_t> removed;
  for (int64_t id = 5; id < int64_t(n); id += 997) removed.push_back(id);
  for (ScalarType st : {ScalarType::F32, ScalarType::F16}) {
    // The reference reads the rows as stored.
    std::vector<float> xs = x;
    if (st == ScalarType::F16)
      for (auto& v : xs) v = __half2float(__float2half_rn(v));
    for (Metric m : {Metric::L2, Metric::InnerProduct, Metric::Cosine}) {
      SCOPED_TRACE(std::string(to_string(st)) + " " + std::string(to_string(m)));
      FlatOptions opts;
      opts.storage = st;
      FlatIndex index(Context::open("cuda"), dim, m, opts);
      index.add(n, x.data());
      ASSERT_EQ(index.remove(removed), removed.size());
      const auto before = cuda::batch_screen_stats();
      const SearchResult res = index.search(nq, q.data(), k);
      const auto after = cuda::batch_screen_stats();
      EXPECT_GT(after.sample_screened, before.sample_screened) << "the sample was not screened";
      ASSERT_EQ(setenv("HIVE_GPU_CUDA_NO_SAMPLE_SCREEN", "1", 1), 0);
      const SearchResult ref = index.search(nq, q.data(), k);
      ASSERT_EQ(unsetenv("HIVE_GPU_CUDA_NO_SAMPLE_SCREEN"), 0);
      EXPECT_EQ(cuda::batch_screen_stats().screened, after.screened + (after.screened - before.screened))
          << "the cuBLAS-threshold search did not take the screen";
      for (std::size_t i = 0; i < nq; ++i)
        for (int j = 0; j < k; ++j) {
          ASSERT_EQ(res.id(i, j), ref.id(i, j)) << "query " << i << " rank " << j;
          ASSERT_EQ(res.distance(i, j), ref.distance(i, j)) << "query " << i << " rank " << j;
        }
      // Cosine normalises on add and search: the reference does the same on the raw vectors.
      std::vector<double> s(n);
      for (std::size_t i = 0; i < checked; ++i) {
        for (std::size_t r = 0; r < n; ++r) s[r] = exact_score(m, q.data() + i * dim, xs.data() + r * dim, dim);
        for (int64_t id : removed) s[std::size_t(id)] = INFINITY;
        std::vector<double> sorted = s;
        std::nth_element(sorted.begin(), sorted.begin() + (k - 1), sorted.end());
        const double kth = sorted[std::size_t(k - 1)];
        const double tol = (st == ScalarType::F16 && m == Metric::Cosine ? 2e-3 : 1e-5) * (1.0 + std::fabs(kth));
        for (int j = 0; j < k; ++j) {
          const int64_t id = res.id(i, j);
          ASSERT_GE(id, 0);
          EXPECT_LE(s[std::size_t(id)], kth + tol) << "query " << i << " rank " << j;
        }
      }
    }
  }
}

// The sample (its sub-sample, its fp16 rows) is kept across searches while the store is unchanged
// (CudaFlatStore::sample_); any change must renew it. Rows [0, 4096) all equal the queries' vector
// v, so the sample holds many of them and every threshold is 0; the other rows lie far away.
// Once those rows are removed, a stale sample would keep the thresholds at 0 and screen out every
// live row. Then an upsert and an append of rows equal to v: they must be found (distance 0).
TEST(CudaSampleScreen, SampleFollowsChanges) {
  REQUIRE_DEVICE();
  const std::size_t n = 400000, dim = 32, nq = 48, near = 4096, checked = 6;
  const int k = 10;
  std::mt19937 rng(37);
  std::normal_distribution<float> g(0.0f, 1.0f);
  std::vector<float> v(dim), x(n * dim), q(nq * dim);
  for (auto& e : v) e = __half2float(__float2half_rn(g(rng)));  // (exact in fp16 storage too: distance 0)
  for (std::size_t r = 0; r < n; ++r)
    for (std::size_t j = 0; j < dim; ++j) x[r * dim + j] = r < near ? v[j] : 4.0f + g(rng);
  for (std::size_t i = 0; i < nq; ++i) std::copy(v.begin(), v.end(), q.begin() + long(i * dim));
  std::vector<int64_t> removed(near);
  for (std::size_t r = 0; r < near; ++r) removed[r] = int64_t(r);
  for (ScalarType st : {ScalarType::F32, ScalarType::F16}) {
    SCOPED_TRACE(std::string(to_string(st)));
    FlatOptions opts;
    opts.storage = st;
    FlatIndex index(Context::open("cuda"), dim, Metric::L2, opts);
    index.add(n, x.data());
    const auto s0 = cuda::batch_screen_stats();
    SearchResult res = index.search(nq, q.data(), k);
    EXPECT_GT(cuda::batch_screen_stats().sample_screened, s0.sample_screened) << "the sample was not screened";
    for (std::size_t i = 0; i < nq; ++i)
      for (int j = 0; j < k; ++j) {
        ASSERT_LT(res.id(i, j), int64_t(near)) << "query " << i << " rank " << j;
        ASSERT_EQ(res.distance(i, j), 0.0f);
      }
    // Removed: the float64 reference over the live rows (the stored values: fp16 rounds them).
    ASSERT_EQ(index.remove(removed), removed.size());
    const auto s1 = cuda::batch_screen_stats();
    res = index.search(nq, q.data(), k);
    EXPECT_GT(cuda::batch_screen_stats().screened, s1.screened) << "the search after the removal was not screened";
    std::vector<float> xs(x.begin() + long(near * dim), x.end());
    if (st == ScalarType::F16)
      for (auto& e : xs) e = __half2float(__float2half_rn(e));
    std::vector<double> sc(n - near);
    for (std::size_t i = 0; i < checked; ++i) {
      for (std::size_t r = 0; r < n - near; ++r) sc[r] = exact_score(Metric::L2, q.data() + i * dim, xs.data() + r * dim, dim);
      std::vector<double> sorted = sc;
      std::nth_element(sorted.begin(), sorted.begin() + (k - 1), sorted.end());
      const double kth = sorted[std::size_t(k - 1)];
      for (int j = 0; j < k; ++j) {
        const int64_t id = res.id(i, j);
        ASSERT_GE(id, int64_t(near)) << "query " << i << " rank " << j << ": a removed row, or none";
        EXPECT_LE(sc[std::size_t(id) - near], kth * (1 + 1e-5)) << "query " << i << " rank " << j;
      }
    }
    // An upserted row equal to v, then appended ones: the nearest, at distance 0.
    const int64_t up = 200000;
    index.upsert(1, v.data(), &up);
    res = index.search(nq, q.data(), k);
    for (std::size_t i = 0; i < nq; ++i) {
      ASSERT_EQ(res.id(i, 0), up) << "query " << i;
      ASSERT_EQ(res.distance(i, 0), 0.0f);
    }
    std::vector<float> more(3 * dim);
    for (int r = 0; r < 3; ++r) std::copy(v.begin(), v.end(), more.begin() + long(r * dim));
    index.add(3, more.data());
    res = index.search(nq, q.data(), k);
    for (std::size_t i = 0; i < nq; ++i)
      for (int j = 0; j < 4; ++j) {
        ASSERT_TRUE(res.id(i, j) == up || res.id(i, j) >= int64_t(n)) << "query " << i << " rank " << j;
        ASSERT_EQ(res.distance(i, j), 0.0f);
      }
  }
}

}  // namespace
