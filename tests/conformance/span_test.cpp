// The length-checked std::span forms of add / add_with_ids / upsert / search: they must behave
// as the pointer forms and reject lengths that are not whole vectors (DimensionMismatch) or
// id lists of the wrong length (InvalidArgument), leaving the index unchanged.
#include <span>

#include "params.hpp"
#include "reference.hpp"

namespace conformance {
namespace {

class SpanTest : public IndexTest {};

TEST_P(SpanTest, SpanFormsMatchReference) {
  const std::size_t dim = 17;
  FlatIndex idx = make(dim);
  Model m = model(dim);
  const Vectors a = data(40, dim, 1), b = data(30, dim, 2), c = data(10, dim, 3), q = data(5, dim, 4);
  idx.add(std::span<const float>(a.f));
  for (std::size_t i = 0; i < a.n; ++i) m.put(idx, a, i, int64_t(i));
  std::vector<int64_t> ids_b(b.n);
  for (std::size_t i = 0; i < b.n; ++i) ids_b[i] = 1000 + int64_t(i);
  idx.add_with_ids(std::span<const float>(b.f), std::span<const int64_t>(ids_b));
  for (std::size_t i = 0; i < b.n; ++i) m.put(idx, b, i, ids_b[i]);
  // Replace five old ids and add five new ones.
  std::vector<int64_t> ids_c = {0, 1, 1000, 1001, 39, 5000, 5001, 5002, 5003, 5004};
  idx.upsert(std::span<const float>(c.f), std::span<const int64_t>(ids_c));
  for (std::size_t i = 0; i < c.n; ++i) m.put(idx, c, i, ids_c[i]);
  const SearchResult r = idx.search(std::span<const float>(q.f), 7);
  EXPECT_EQ(r.nq, q.n);
  check_results(m, q, r, case_name("span search"));
}

TEST_P(SpanTest, WrongLengthsRejectedWithoutChange) {
  const std::size_t dim = 8;
  FlatIndex idx = make(dim);
  const Vectors a = data(20, dim, 5), probe = data(3, dim, 6);
  idx.add(std::span<const float>(a.f));
  const auto before = Snapshot::of(idx, probe, 5);
  const std::vector<float> ragged(dim * 3 + 1, 0.5f);
  const std::vector<int64_t> two_ids = {100, 101};
  EXPECT_HIVE_ERROR(hive::gpu::ErrorCode::DimensionMismatch, idx.add(std::span<const float>(ragged)));
  EXPECT_HIVE_ERROR(hive::gpu::ErrorCode::DimensionMismatch,
                    idx.add_with_ids(std::span<const float>(ragged), std::span<const int64_t>(two_ids)));
  EXPECT_HIVE_ERROR(hive::gpu::ErrorCode::DimensionMismatch,
                    idx.upsert(std::span<const float>(ragged), std::span<const int64_t>(two_ids)));
  EXPECT_HIVE_ERROR(hive::gpu::ErrorCode::DimensionMismatch, (void)idx.search(std::span<const float>(ragged), 3));
  // Three whole vectors but two ids.
  const std::vector<float> three(dim * 3, 0.25f);
  EXPECT_HIVE_ERROR(hive::gpu::ErrorCode::InvalidArgument,
                    idx.add_with_ids(std::span<const float>(three), std::span<const int64_t>(two_ids)));
  EXPECT_HIVE_ERROR(hive::gpu::ErrorCode::InvalidArgument,
                    idx.upsert(std::span<const float>(three), std::span<const int64_t>(two_ids)));
  EXPECT_UNCHANGED(before, idx, probe, 5);
}

INSTANTIATE_TEST_SUITE_P(Conformance, SpanTest, testing::ValuesIn(float_params()), param_name);

}  // namespace
}  // namespace conformance
