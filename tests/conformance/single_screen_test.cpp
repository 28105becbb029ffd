// Conformance: single queries on stores large enough for the GPU backends' single-query screen
// (CUDA and Vulkan read an fp16 copy of fp32 rows, re-score its best rows exactly and answer
// only where error bounds prove the result exact; otherwise they scan the fp32 rows). Every
// backend must give the float64 reference's answer here: on random data, on near-ties the copy
// cannot resolve, and after appends, removals and upserts that change the rows under the copy.
#include "reference.hpp"

namespace conformance {
namespace {

using SingleScreenTest = IndexTest;

constexpr std::size_t kRows = 20000;  // above the screens' 16 384-row threshold

// Each query of q searched alone (the single-query path), for every k the screens take and one
// above them, checked against the model.
void single_queries(const IndexTest& t, const FlatIndex& idx, const Model& m, const Vectors& q,
                    const std::string& what) {
  for (std::size_t i = 0; i < q.n; ++i)
    for (int k : {1, 10, 16, 17}) t.expect_matches(idx, m, q.slice(i, 1), k, t.case_name(what + " query " +
                                                                                          std::to_string(i) + " k=" +
                                                                                          std::to_string(k)));
}

TEST_P(SingleScreenTest, RandomRows) {
  for (std::size_t dim : {std::size_t(32), std::size_t(128)}) {
    auto idx = make(dim);
    auto m = model(dim);
    add(idx, m, data(kRows, dim, 400 + dim));
    single_queries(*this, idx, m, data(3, dim, 500 + dim), "d=" + std::to_string(dim));
  }
}

// Rows 1e-6 apart (relative) around one vector: below fp16's resolution, so the copy cannot rank
// them; the rows themselves as queries (each its own nearest under L2 and cosine).
TEST_P(SingleScreenTest, NearTies) {
  const std::size_t dim = 32;
  const Vectors v = near_ties(kRows, dim, 600);
  auto idx = make(dim);
  auto m = model(dim);
  add(idx, m, v);
  Vectors q = v.slice(7, 1);
  q.append(v.slice(12345, 1));
  single_queries(*this, idx, m, q, "near ties");
}

// Changes under the copy: appends within and far beyond the rows' range, removals, upserts.
TEST_P(SingleScreenTest, RowsChangeBetweenSearches) {
  const std::size_t dim = 32;
  auto idx = make(dim);
  auto m = model(dim);
  add(idx, m, data(kRows, dim, 700));
  const Vectors q = data(2, dim, 701);
  single_queries(*this, idx, m, q, "before");
  Vectors more = data(100, dim, 702);
  for (std::size_t j = 0; j < dim; ++j) more.frow(50)[j] = q.frow(0)[j];  // a row equal to query 0
  add(idx, m, more);
  single_queries(*this, idx, m, q, "appended");
  const int64_t gone[] = {int64_t(kRows) + 50, 3, 4};
  idx.remove(3, gone);
  for (int64_t id : gone) m.erase(id);
  single_queries(*this, idx, m, q, "removed");
  Vectors big = random_floats(3, dim, 703, -1000.0f, 1000.0f);  // past the copy's scale
  add(idx, m, big);
  single_queries(*this, idx, m, q, "large appended");
  const Vectors moved = data(2, dim, 704);
  upsert(idx, m, moved, {int64_t(10), int64_t(20)});
  single_queries(*this, idx, m, moved, "upserted");
}

INSTANTIATE_TEST_SUITE_P(Conformance, SingleScreenTest, testing::ValuesIn(screen_params()), param_name);

}  // namespace
}  // namespace conformance
