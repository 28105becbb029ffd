// The CUDA large-batch path when the tensor-core screen cannot bound its candidates: a store of
// 70 000 rows holding only three distinct vectors ties every query with a third of the rows, so
// the screen's candidate lists overflow and the search must fall back (to the cuBLAS path) and
// still return the exact answer: the k smallest row ids among the rows equal to the nearest
// vector (ties go to the smaller row on every backend).
#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "hive_gpu/hive_gpu.hpp"

namespace {

using namespace hive::gpu;

TEST(CudaScreenFallback, TiedRowsOverflowTheScreen) {
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) GTEST_SKIP() << "CUDA has no device";
  const std::size_t n = 70000, dim = 64, nq = 48;
  const int k = 10;
  std::mt19937 rng(17);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  std::vector<float> distinct(3 * dim);
  for (auto& v : distinct) v = u(rng);
  std::vector<float> x(n * dim);
  for (std::size_t r = 0; r < n; ++r)
    for (std::size_t j = 0; j < dim; ++j) x[r * dim + j] = distinct[(r % 3) * dim + j];
  std::vector<float> q(nq * dim);
  for (auto& v : q) v = u(rng);
  for (Metric metric : {Metric::L2, Metric::InnerProduct}) {
    FlatIndex gpu(Context::open("cuda"), dim, metric);
    gpu.add(n, x.data());
    const SearchResult r = gpu.search(nq, q.data(), k);
    for (std::size_t qi = 0; qi < nq; ++qi) {
      // The nearest of the three vectors, in float64.
      int best = 0;
      double best_s = 0;
      for (int c = 0; c < 3; ++c) {
        double s = 0;
        for (std::size_t j = 0; j < dim; ++j) {
          const double a = q[qi * dim + j], b = distinct[std::size_t(c) * dim + j];
          s += metric == Metric::L2 ? (a - b) * (a - b) : -a * b;
        }
        if (c == 0 || s < best_s) {
          best = c;
          best_s = s;
        }
      }
      for (int j = 0; j < k; ++j) {
        EXPECT_EQ(r.id(qi, j), int64_t(best) + 3 * j) << "query " << qi << " slot " << j;
        const double reported = metric == Metric::L2 ? r.distance(qi, j) : -double(r.distance(qi, j));
        EXPECT_NEAR(reported, best_s, 1e-4 * (1.0 + std::fabs(best_s))) << "query " << qi << " slot " << j;
      }
    }
  }
}

}  // namespace
