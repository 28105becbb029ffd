// FlatOptions::stream on the CUDA backend: an index runs on the caller's stream (work the caller
// queued there first is ordered before the index's), gives the same results as an index on its
// own stream, and leaves the stream alive when it is destroyed.
#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <random>
#include <vector>

#include "hive_gpu/hive_gpu.hpp"

namespace {

using namespace hive::gpu;

bool have_cuda() {
  int n = 0;
  return cudaGetDeviceCount(&n) == cudaSuccess && n > 0;
}

TEST(CudaUserStream, SameResultsAndStreamSurvives) {
  if (!have_cuda()) GTEST_SKIP() << "CUDA has no device";
  const std::size_t n = 20000, dim = 64, nq = 40;
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  std::vector<float> x(n * dim), q(nq * dim);
  for (auto& v : x) v = u(rng);
  for (auto& v : q) v = u(rng);
  cudaStream_t user = nullptr;
  ASSERT_EQ(cudaStreamCreate(&user), cudaSuccess);
  // Pending work on the user's stream that the index's calls must wait for.
  void* scratch = nullptr;
  ASSERT_EQ(cudaMalloc(&scratch, 64 << 20), cudaSuccess);
  ASSERT_EQ(cudaMemsetAsync(scratch, 1, 64 << 20, user), cudaSuccess);
  const Context ctx = Context::open("cuda");
  for (std::size_t batch : {std::size_t(1), nq}) {
    SearchResult mine, own;
    {
      FlatOptions opt;
      opt.stream = user;
      FlatIndex a(ctx, dim, Metric::L2, opt);
      a.add(n, x.data());
      mine = a.search(batch, q.data(), 10);
    }
    FlatIndex b(ctx, dim, Metric::L2);
    b.add(n, x.data());
    own = b.search(batch, q.data(), 10);
    for (std::size_t i = 0; i < batch; ++i)
      for (int j = 0; j < 10; ++j) {
        EXPECT_EQ(mine.id(i, j), own.id(i, j));
        EXPECT_EQ(mine.distance(i, j), own.distance(i, j));
      }
  }
  // The index did not destroy the caller's stream.
  EXPECT_EQ(cudaStreamQuery(user), cudaSuccess);
  EXPECT_EQ(cudaStreamSynchronize(user), cudaSuccess);
  EXPECT_EQ(cudaFree(scratch), cudaSuccess);
  EXPECT_EQ(cudaStreamDestroy(user), cudaSuccess);
}

}  // namespace
