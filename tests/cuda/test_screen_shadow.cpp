// fp32 stores screen large batches through an fp16 copy of their rows, scaled by one power of
// two (cuda_flat_store.cpp, ensure_shadow). Rows whose magnitudes span nine decades put the
// small ones among fp16's subnormals after that scaling, where the bound's |q| term must cover
// them. Results must still be exact: checked against float64 on every metric the screen
// serves, with ties allowed (a returned row must score within the k-th exact score).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "cuda_test_util.hpp"
#include "hive_gpu/hive_gpu.hpp"

namespace {

using namespace hive::gpu;

using hive::gpu::cuda::test::exact_score;

TEST(CudaScreenShadow, WideRangeRowsStayExact) {
  REQUIRE_DEVICE();
  const std::size_t n = 70000, dim = 64, nq = 256;
  const int k = 10;
  std::mt19937 rng(23);
  std::normal_distribution<float> g(0.0f, 1.0f);
  std::uniform_real_distribution<float> decade(-6.0f, 3.0f);
  std::vector<float> x(n * dim), q(nq * dim);
  for (std::size_t r = 0; r < n; ++r) {
    const float scale = std::pow(10.0f, decade(rng));
    for (std::size_t j = 0; j < dim; ++j) x[r * dim + j] = scale * g(rng);
  }
  for (std::size_t i = 0; i < nq; ++i) {
    const float scale = std::pow(10.0f, decade(rng));
    for (std::size_t j = 0; j < dim; ++j) q[i * dim + j] = scale * g(rng);
  }
  for (Metric m : {Metric::L2, Metric::InnerProduct, Metric::Cosine}) {
    SCOPED_TRACE(to_string(m));
    FlatIndex index(Context::open("cuda"), dim, m);
    index.add(n, x.data());
    const SearchResult res = index.search(nq, q.data(), k);
    std::vector<double> s(n);
    for (std::size_t i = 0; i < nq; ++i) {
      for (std::size_t r = 0; r < n; ++r) s[r] = exact_score(m, q.data() + i * dim, x.data() + r * dim, dim);
      std::vector<double> sorted = s;
      std::nth_element(sorted.begin(), sorted.begin() + (k - 1), sorted.end());
      const double kth = sorted[std::size_t(k - 1)];
      for (int j = 0; j < k; ++j) {
        const int64_t id = res.id(i, j);
        ASSERT_GE(id, 0);
        const double got = s[std::size_t(id)];
        EXPECT_LE(got, kth + 1e-5 * (1.0 + std::fabs(kth))) << "query " << i << " rank " << j;
        const double reported = m == Metric::InnerProduct ? -double(res.distance(i, j)) : double(res.distance(i, j));
        EXPECT_NEAR(reported, got, 1e-4 * (1.0 + std::fabs(got))) << "query " << i << " rank " << j;
      }
    }
  }
}

}  // namespace
