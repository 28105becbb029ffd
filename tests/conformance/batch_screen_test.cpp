// Conformance: query batches on stores large enough for the GPU backends' batch screens (CUDA:
// tensor-core products and exact re-scoring; Vulkan: batch_screen.comp on an fp16 copy of fp32
// rows, thresholds from a sample of rows, exact re-scoring of the candidates, and the tiled
// search where some query has too many). Every backend must give the float64 reference's
// answer: on random data, on near-ties the copy cannot resolve (the Vulkan screen then
// overflows its candidate lists and falls back), and after appends, removals and upserts.
//
// Vulkan screens stores of 65 536 rows and more, on devices with cooperative matrices; this suite
// lowers that to 4 096 rows (HIVE_GPU_VULKAN_BATCH_SCREEN_MIN_ROWS, read per search) and allows
// the fp32-FMA variant elsewhere (HIVE_GPU_VULKAN_BATCH_SCREEN_FMA=1), so that CI's lavapipe runs
// it in seconds. ctest's `vulkan.batch_screen` entry checks that the screen did answer.
#include <cstdlib>

#include "reference.hpp"

namespace conformance {
namespace {

class BatchScreenTest : public IndexTest {
 protected:
  void SetUp() override {
    IndexTest::SetUp();
    setenv("HIVE_GPU_VULKAN_BATCH_SCREEN_MIN_ROWS", "4096", 1);
    setenv("HIVE_GPU_VULKAN_BATCH_SCREEN_FMA", "1", 1);
  }
  void TearDown() override {
    unsetenv("HIVE_GPU_VULKAN_BATCH_SCREEN_MIN_ROWS");
    unsetenv("HIVE_GPU_VULKAN_BATCH_SCREEN_FMA");
  }

  // The batch q for several k: within the screens' limits and above Vulkan's (64).
  void batches(const FlatIndex& idx, const Model& m, const Vectors& q, const std::string& what) const {
    for (int k : {1, 10, 33, 64, 65}) expect_matches(idx, m, q, k, case_name(what + " k=" + std::to_string(k)));
  }
};

constexpr std::size_t kRows = 6000;
constexpr std::size_t kQueries = 150;  // two workgroups of 128 queries, the second partial

TEST_P(BatchScreenTest, RandomRows) {
  for (std::size_t dim : {std::size_t(32), std::size_t(128)}) {
    auto idx = make(dim);
    auto m = model(dim);
    add(idx, m, data(kRows, dim, 800 + dim));
    batches(idx, m, data(kQueries, dim, 900 + dim), "d=" + std::to_string(dim));
  }
}

// More queries than one block takes (4 096 on Vulkan): the sample is gathered once for all
// blocks, and the blocks are of equal size.
TEST_P(BatchScreenTest, SeveralBlocks) {
  const std::size_t dim = 32;
  auto idx = make(dim);
  auto m = model(dim);
  add(idx, m, data(kRows, dim, 840));
  expect_matches(idx, m, data(4500, dim, 841), 10, case_name("4 500 queries k=10"));
}

// Queries at rows' own positions and at scales far from the rows' (1e-3 and 1e3 times).
TEST_P(BatchScreenTest, QueryScales) {
  const std::size_t dim = 64;
  auto idx = make(dim);
  auto m = model(dim);
  const Vectors rows = data(kRows, dim, 810);
  add(idx, m, rows);
  Vectors q = rows.slice(100, 40);
  for (float s : {1e-3f, 1e3f}) {
    Vectors scaled = data(40, dim, 811);
    for (float& x : scaled.f) x *= s;
    q.append(scaled);
  }
  batches(idx, m, q, "scales");
}

// Rows 1e-6 apart (relative) around one vector: below fp16's resolution.
TEST_P(BatchScreenTest, NearTies) {
  const std::size_t dim = 32;
  const Vectors v = near_ties(kRows, dim, 820);
  auto idx = make(dim);
  auto m = model(dim);
  add(idx, m, v);
  for (int k : {1, 10}) expect_matches(idx, m, v.slice(7, 40), k, case_name("near ties k=" + std::to_string(k)));
}

// Changes under the copy and the sample: appends within and beyond the rows' range, removals
// (some of them the queries' nearest rows), upserts.
TEST_P(BatchScreenTest, RowsChangeBetweenSearches) {
  const std::size_t dim = 32;
  auto idx = make(dim);
  auto m = model(dim);
  add(idx, m, data(kRows, dim, 830));
  const Vectors q = data(kQueries, dim, 831);
  auto check = [&](const std::string& what) {
    for (int k : {1, 10}) expect_matches(idx, m, q, k, case_name(what + " k=" + std::to_string(k)));
  };
  check("before");
  Vectors more = data(100, dim, 832);
  for (std::size_t j = 0; j < dim; ++j) more.frow(50)[j] = q.frow(0)[j];  // a row equal to query 0
  add(idx, m, more);
  check("appended");
  std::vector<int64_t> gone = {int64_t(kRows) + 50};
  for (int64_t id = 0; id < 2000; id += 3) gone.push_back(id);
  idx.remove(gone.size(), gone.data());
  for (int64_t id : gone) m.erase(id);
  check("removed");
  add(idx, m, random_floats(3, dim, 833, -1000.0f, 1000.0f));  // past the copy's scale
  check("large appended");
  upsert(idx, m, data(2, dim, 834), {int64_t(10), int64_t(20)});
  check("upserted");
}

INSTANTIATE_TEST_SUITE_P(Conformance, BatchScreenTest, testing::ValuesIn(screen_params()), param_name);

}  // namespace
}  // namespace conformance
