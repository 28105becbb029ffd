// Conformance: add, add_with_ids, upsert, remove, compact, reset, reserve and the
// bookkeeping around them (size, ids, next_id, contains, get, stored_rows).
#include "reference.hpp"

namespace conformance {
namespace {

using MutationTest = IndexTest;

std::vector<int64_t> iota_ids(int64_t first, std::size_t n) {
  std::vector<int64_t> v(n);
  for (std::size_t i = 0; i < n; ++i) v[i] = first + int64_t(i);
  return v;
}

TEST_P(MutationTest, NewIndexIsEmpty) {
  const std::size_t dim = dim_for(16);
  const auto idx = make(dim);
  EXPECT_EQ(idx.dim(), dim);
  EXPECT_EQ(idx.metric(), metric());
  EXPECT_EQ(idx.storage(), bits() ? ScalarType::Bits : storage());
  EXPECT_EQ(idx.context().info().backend, GetParam().backend);
  EXPECT_EQ(idx.size(), 0u);
  EXPECT_EQ(idx.stored_rows(), 0u);
  EXPECT_EQ(idx.next_id(), 0);
  EXPECT_TRUE(idx.ids().empty());
  EXPECT_FALSE(idx.contains(0));
  EXPECT_FALSE(idx.contains(kNoId));
}

// add() numbers vectors next_id(), next_id() + 1, ...; ids() lists them in storage order.
TEST_P(MutationTest, AddAssignsSequentialIds) {
  const std::size_t dim = dim_for(16);
  auto idx = make(dim);
  auto m = model(dim);
  add(idx, m, data(5, dim, 1));
  EXPECT_EQ(idx.ids(), iota_ids(0, 5));
  EXPECT_EQ(idx.next_id(), 5);
  EXPECT_EQ(idx.size(), 5u);
  EXPECT_EQ(idx.stored_rows(), 5u);
  for (int64_t id = 0; id < 5; ++id) EXPECT_TRUE(idx.contains(id)) << id;
  EXPECT_FALSE(idx.contains(5));
  EXPECT_FALSE(idx.contains(kNoId));
  add(idx, m, data(3, dim, 2));
  EXPECT_EQ(idx.ids(), iota_ids(0, 8));
  EXPECT_EQ(idx.next_id(), 8);
  expect_matches(idx, m, data(4, dim, 3), 8, case_name("sequential adds"));
}

// Caller ids: any int64 but -1, including negative and beyond 32 bits; next_id() follows
// the largest id ever held.
TEST_P(MutationTest, AddWithIds) {
  const std::size_t dim = dim_for(16);
  auto idx = make(dim);
  auto m = model(dim);
  add(idx, m, data(3, dim, 11));  // ids 0, 1, 2
  const int64_t big = int64_t(1) << 40;
  const std::vector<int64_t> ids = {100, 7, -5, big, -big, -2};
  add_with_ids(idx, m, data(ids.size(), dim, 12), ids);
  EXPECT_EQ(idx.size(), 9u);
  EXPECT_EQ(idx.next_id(), big + 1);
  for (int64_t id : ids) EXPECT_TRUE(idx.contains(id)) << id;
  add(idx, m, data(2, dim, 13));  // big + 1, big + 2
  EXPECT_TRUE(idx.contains(big + 1));
  EXPECT_TRUE(idx.contains(big + 2));
  EXPECT_EQ(idx.next_id(), big + 3);
  EXPECT_EQ(idx.ids(), (std::vector<int64_t>{0, 1, 2, 100, 7, -5, big, -big, -2, big + 1, big + 2}));
  expect_matches(idx, m, data(5, dim, 14), 11, case_name("caller ids"));
  // add_with_ids on an empty index, ids in descending order.
  auto idx2 = make(dim);
  auto m2 = model(dim);
  add_with_ids(idx2, m2, data(4, dim, 15), {40, 30, 20, 10});
  EXPECT_EQ(idx2.ids(), (std::vector<int64_t>{40, 30, 20, 10}));
  EXPECT_EQ(idx2.next_id(), 41);
  expect_matches(idx2, m2, data(3, dim, 16), 4, case_name("descending ids"));
}

// get() returns the stored vector decoded to float: exactly the input for F32, the input
// rounded to nearest even for F16 / BF16, the normalised input for Cosine; get_bits() the bits.
TEST_P(MutationTest, GetReturnsStoredVectors) {
  if (bits()) {
    const std::size_t dim = 72;
    auto idx = make(dim);
    const auto x = data(20, dim, 21);
    do_add(idx, x);
    for (std::size_t i = 0; i < x.n; ++i)
      EXPECT_EQ(idx.get_bits(int64_t(i)), std::vector<uint8_t>(x.brow(i), x.brow(i) + dim / 8)) << "id " << i;
    return;
  }
  // Values probing the rounding: ties to even, subnormal halves, underflow, large values.
  const float h = std::ldexp(1.0f, -24);  // smallest half subnormal
  const std::vector<float> special = {1.0f + std::ldexp(1.0f, -11), 1.0f + 3 * std::ldexp(1.0f, -11),
                                      -(1.0f + std::ldexp(1.0f, -11)), 1.0f + std::ldexp(1.0f, -8),
                                      1.0f + 3 * std::ldexp(1.0f, -8), 3e-6f, 1e-8f, 1.5f * h, 2.5f * h, h,
                                      0.1f, -0.3333333f, 60000.0f, -1234.567f, 0.0f, 7.0f};
  const std::size_t dim = special.size();
  Vectors x = random_floats(30, dim, 22, -2.0f, 2.0f);
  std::copy(special.begin(), special.end(), x.frow(0));
  auto idx = make(dim);
  auto m = model(dim);
  add(idx, m, x);  // Cosine: checks get() against the normalised input
  for (std::size_t i = 0; i < x.n; ++i) {
    const auto got = idx.get(int64_t(i));
    ASSERT_EQ(got.size(), dim);
    if (metric() == Metric::Cosine) {
      double norm = 0;
      for (float v : got) norm += double(v) * double(v);
      EXPECT_NEAR(std::sqrt(norm), 1.0, 4 * storage_rel_eps(storage())) << "get(" << i << ") is not unit length";
    } else {
      for (std::size_t j = 0; j < dim; ++j)
        EXPECT_EQ(got[j], round_storage(storage(), x.frow(i)[j]))
            << "get(" << i << ")[" << j << "], input " << x.frow(i)[j] << " stored as " << storage_tag(storage());
    }
  }
  expect_matches(idx, m, random_floats(3, dim, 23, -2.0f, 2.0f), 10, case_name("special values"));
}

// upsert replaces the vectors of present ids (searches see the new vector, never the old)
// and appends the others, in one call.
TEST_P(MutationTest, UpsertReplacesAndAppends) {
  const std::size_t dim = dim_for(12);
  auto idx = make(dim);
  auto m = model(dim);
  const auto base = data(20, dim, 31);
  add(idx, m, base);
  const std::vector<int64_t> ids = {3, 25, 7, 19, 20};
  const auto fresh = data(ids.size(), dim, 32);
  upsert(idx, m, fresh, ids);
  EXPECT_EQ(idx.size(), 22u);
  EXPECT_EQ(idx.next_id(), 26);
  for (int64_t id : {3, 7, 19, 20, 25}) EXPECT_TRUE(idx.contains(id)) << id;
  EXPECT_FALSE(idx.contains(21));
  if (bits()) {
    EXPECT_EQ(idx.get_bits(3), std::vector<uint8_t>(fresh.brow(0), fresh.brow(0) + dim / 8));
  }
  // Queries: the old vectors of the replaced ids, the new ones, and random ones.
  Vectors q = base.slice(3, 1);
  q.append(base.slice(7, 1));
  q.append(base.slice(19, 1));
  q.append(fresh);
  q.append(data(3, dim, 33));
  expect_matches(idx, m, q, 5, case_name("after upsert"));
  expect_matches(idx, m, q, 30, case_name("after upsert, k > n"));
  // Only present ids: nothing appended.
  upsert(idx, m, data(3, dim, 34), {0, 25, 3});
  EXPECT_EQ(idx.size(), 22u);
  expect_matches(idx, m, q, 5, case_name("upsert of present ids"));
  // Only new ids, on an empty index.
  auto idx2 = make(dim);
  auto m2 = model(dim);
  upsert(idx2, m2, data(4, dim, 35), {9, 4, -3, 2});
  EXPECT_EQ(idx2.size(), 4u);
  EXPECT_EQ(idx2.next_id(), 10);
  expect_matches(idx2, m2, data(3, dim, 36), 4, case_name("upsert into empty"));
}

// remove: soft delete; counts what it removed, ignores unknown ids; removed vectors vanish
// from results, contains() and get() at once; their storage stays until compact().
TEST_P(MutationTest, RemoveSoftDeletes) {
  const std::size_t dim = dim_for(10);
  auto idx = make(dim);
  auto m = model(dim);
  const auto x = data(40, dim, 41);
  add(idx, m, x);
  const std::vector<int64_t> gone = {1, 5, 39, 1000, -7, 0};
  EXPECT_EQ(idx.remove(gone), 4u);
  for (int64_t id : {1, 5, 39, 0}) m.erase(id);
  EXPECT_EQ(idx.size(), 36u);
  EXPECT_EQ(idx.stored_rows(), 40u);
  EXPECT_EQ(idx.next_id(), 40) << "next_id is one past the largest id ever held, removed or not";
  EXPECT_EQ(idx.ids(), m.order());
  for (int64_t id : {0, 1, 5, 39}) {
    EXPECT_FALSE(idx.contains(id)) << id;
    if (bits())
      EXPECT_HIVE_ERROR(ErrorCode::UnknownId, (void)idx.get_bits(id));
    else
      EXPECT_HIVE_ERROR(ErrorCode::UnknownId, (void)idx.get(id));
  }
  // Query with the removed vectors themselves: they must not come back.
  Vectors q = x.slice(0, 2);
  q.append(x.slice(5, 1));
  q.append(x.slice(39, 1));
  expect_matches(idx, m, q, 3, case_name("after remove"));
  expect_matches(idx, m, q, 40, case_name("after remove, k > size"));
  // Removing again removes nothing.
  EXPECT_EQ(idx.remove(gone), 0u);
  EXPECT_EQ(idx.size(), 36u);
  // Remove everything: every slot is empty.
  EXPECT_EQ(idx.remove(idx.ids()), 36u);
  m.clear();
  EXPECT_EQ(idx.size(), 0u);
  EXPECT_TRUE(idx.ids().empty());
  expect_matches(idx, m, q, 5, case_name("all removed"));
}

// A removed id may be added again; add() never reuses ids.
TEST_P(MutationTest, RemoveThenAddAgain) {
  const std::size_t dim = dim_for(10);
  auto idx = make(dim);
  auto m = model(dim);
  add(idx, m, data(10, dim, 51));
  EXPECT_EQ(idx.remove(std::vector<int64_t>{9, 4}), 2u);
  m.erase(9);
  m.erase(4);
  add(idx, m, data(2, dim, 52));  // 10, 11: not 9 again
  EXPECT_TRUE(idx.contains(10));
  EXPECT_TRUE(idx.contains(11));
  EXPECT_FALSE(idx.contains(9));
  add_with_ids(idx, m, data(1, dim, 53), {4});
  upsert(idx, m, data(1, dim, 54), {9});
  EXPECT_EQ(idx.size(), 12u);
  EXPECT_EQ(idx.next_id(), 12);
  expect_matches(idx, m, data(4, dim, 55), 12, case_name("re-added"));
}

// compact drops deleted rows; results, ids and next_id are unchanged.
TEST_P(MutationTest, CompactKeepsResults) {
  const std::size_t dim = dim_for(14);
  auto idx = make(dim);
  auto m = model(dim);
  add(idx, m, data(300, dim, 61));
  std::vector<int64_t> gone;
  for (int64_t id = 0; id < 300; id += 3) gone.push_back(id);
  gone.push_back(299);
  gone.push_back(1);
  EXPECT_EQ(idx.remove(gone), gone.size());
  for (int64_t id : gone) m.erase(id);
  const auto q = data(6, dim, 62);
  expect_matches(idx, m, q, 15, case_name("before compact"));
  const auto ids_before = idx.ids();
  std::vector<std::vector<float>> rows_before;
  std::vector<std::vector<uint8_t>> bits_before;
  for (int64_t id : ids_before) {
    if (bits())
      bits_before.push_back(idx.get_bits(id));
    else
      rows_before.push_back(idx.get(id));
  }
  EXPECT_EQ(idx.stored_rows(), 300u);
  idx.compact();
  EXPECT_EQ(idx.stored_rows(), idx.size());
  EXPECT_EQ(idx.size(), 300u - gone.size());
  EXPECT_EQ(idx.ids(), ids_before) << "compact must keep ids and their order";
  EXPECT_EQ(idx.next_id(), 300);
  for (std::size_t i = 0; i < ids_before.size(); ++i) {
    if (bits())
      EXPECT_EQ(idx.get_bits(ids_before[i]), bits_before[i]) << "id " << ids_before[i];
    else
      EXPECT_EQ(idx.get(ids_before[i]), rows_before[i]) << "id " << ids_before[i];
  }
  for (int64_t id : gone) EXPECT_FALSE(idx.contains(id)) << id;
  expect_matches(idx, m, q, 15, case_name("after compact"));
  expect_matches(idx, m, q, 250, case_name("after compact, k > size"));
  // Mutations keep working after compaction.
  add(idx, m, data(5, dim, 63));
  EXPECT_EQ(idx.ids().back(), 304);
  EXPECT_EQ(idx.remove(std::vector<int64_t>{2, 302}), 2u);
  m.erase(2);
  m.erase(302);
  upsert(idx, m, data(2, dim, 64), {4, 3});
  expect_matches(idx, m, q, 15, case_name("mutated after compact"));
  // Compacting with nothing deleted, twice, and an empty index.
  idx.compact();
  idx.compact();
  EXPECT_EQ(idx.stored_rows(), idx.size());
  expect_matches(idx, m, q, 15, case_name("compacted again"));
  auto empty = make(dim);
  empty.compact();
  EXPECT_EQ(empty.size(), 0u);
  EXPECT_EQ(empty.stored_rows(), 0u);
}

// reset removes every vector. next_id() is "one past the largest id ever held", so it keeps
// counting from where it was.
TEST_P(MutationTest, ResetRemovesEverything) {
  const std::size_t dim = dim_for(8);
  auto idx = make(dim);
  auto m = model(dim);
  add(idx, m, data(50, dim, 71));
  EXPECT_EQ(idx.remove(std::vector<int64_t>{3}), 1u);
  idx.reset();
  m.clear();
  EXPECT_EQ(idx.size(), 0u);
  EXPECT_EQ(idx.stored_rows(), 0u);
  EXPECT_TRUE(idx.ids().empty());
  EXPECT_FALSE(idx.contains(0));
  EXPECT_FALSE(idx.contains(49));
  EXPECT_EQ(idx.dim(), dim);
  EXPECT_EQ(idx.metric(), metric());
  EXPECT_EQ(idx.next_id(), 50);
  const auto q = data(3, dim, 72);
  expect_matches(idx, m, q, 5, case_name("after reset"));
  add(idx, m, data(4, dim, 73));
  EXPECT_EQ(idx.ids(), iota_ids(50, 4));
  add_with_ids(idx, m, data(1, dim, 74), {0});  // an id from before the reset is free again
  expect_matches(idx, m, q, 5, case_name("refilled after reset"));
}

// reserve changes capacity only.
TEST_P(MutationTest, ReserveKeepsContents) {
  const std::size_t dim = dim_for(8);
  auto idx = make(dim);
  auto m = model(dim);
  idx.reserve(1000);
  EXPECT_EQ(idx.size(), 0u);
  EXPECT_EQ(idx.stored_rows(), 0u);
  EXPECT_EQ(idx.next_id(), 0);
  add(idx, m, data(60, dim, 81));
  idx.reserve(10);  // below the size: no effect
  idx.reserve(0);
  EXPECT_EQ(idx.size(), 60u);
  idx.reserve(5000);
  EXPECT_EQ(idx.size(), 60u);
  EXPECT_EQ(idx.stored_rows(), 60u);
  EXPECT_EQ(idx.ids(), iota_ids(0, 60));
  const auto q = data(3, dim, 82);
  expect_matches(idx, m, q, 10, case_name("after reserve"));
  add(idx, m, data(1500, dim, 83));  // past the first reservation
  expect_matches(idx, m, q, 10, case_name("grown past reserve"));
}

// Calls with n == 0 do nothing, whatever the pointers.
TEST_P(MutationTest, ZeroCountCallsAreNoOps) {
  const std::size_t dim = dim_for(8);
  auto idx = make(dim);
  auto m = model(dim);
  add(idx, m, data(7, dim, 91));
  const auto probe = data(2, dim, 92);
  const auto before = Snapshot::of(idx, probe, 7);
  const auto one = data(1, dim, 93);
  const int64_t id = 3;
  if (bits()) {
    idx.add(0, static_cast<const uint8_t*>(nullptr));
    idx.add(0, one.b.data());
    idx.add_with_ids(0, static_cast<const uint8_t*>(nullptr), nullptr);
    idx.add_with_ids(0, one.b.data(), &id);
    idx.upsert(0, static_cast<const uint8_t*>(nullptr), nullptr);
    idx.upsert(0, one.b.data(), &id);
    idx.search(0, static_cast<const uint8_t*>(nullptr), 5, nullptr, nullptr);
    const auto r = idx.search(0, static_cast<const uint8_t*>(nullptr), 5);
    EXPECT_EQ(r.nq, 0u);
    EXPECT_TRUE(r.ids.empty() && r.distances.empty());
  } else {
    idx.add(0, static_cast<const float*>(nullptr));
    idx.add(0, one.f.data());
    idx.add_with_ids(0, static_cast<const float*>(nullptr), nullptr);
    idx.add_with_ids(0, one.f.data(), &id);
    idx.upsert(0, static_cast<const float*>(nullptr), nullptr);
    idx.upsert(0, one.f.data(), &id);
    idx.search(0, static_cast<const float*>(nullptr), 5, nullptr, nullptr);
    const auto r = idx.search(0, static_cast<const float*>(nullptr), 5);
    EXPECT_EQ(r.nq, 0u);
    EXPECT_TRUE(r.ids.empty() && r.distances.empty());
  }
  EXPECT_EQ(idx.remove(0, nullptr), 0u);
  EXPECT_EQ(idx.remove(0, &id), 0u);
  EXPECT_EQ(idx.remove(std::vector<int64_t>{}), 0u);
  EXPECT_UNCHANGED(before, idx, probe, 7);
}

// FlatIndex is movable; the moved-to index has everything.
TEST_P(MutationTest, MoveKeepsContents) {
  const std::size_t dim = dim_for(8);
  auto idx = make(dim);
  auto m = model(dim);
  add(idx, m, data(30, dim, 101));
  EXPECT_EQ(idx.remove(std::vector<int64_t>{4}), 1u);
  m.erase(4);
  const auto q = data(3, dim, 102);
  FlatIndex moved(std::move(idx));
  EXPECT_EQ(moved.next_id(), 30);
  expect_matches(moved, m, q, 10, case_name("move-constructed"));
  auto other = make(dim_for(16));
  do_add(other, data(5, dim_for(16), 103));
  other = std::move(moved);
  EXPECT_EQ(other.dim(), dim);
  EXPECT_EQ(other.next_id(), 30);
  expect_matches(other, m, q, 10, case_name("move-assigned"));
  add(other, m, data(2, dim, 104));
  expect_matches(other, m, q, 10, case_name("mutated after move"));
}

// A random mix of every mutation, checked against the model as it goes.
TEST_P(MutationTest, RandomMutationSequence) {
  const std::size_t dim = dim_for(9);
  auto idx = make(dim);
  auto m = model(dim);
  Rng rng(1234);
  const auto q = data(3, dim, 1235);
  add(idx, m, data(20, dim, 1236));
  for (int step = 0; step < 80; ++step) {
    const std::size_t op = rng.below(6);
    const std::size_t n = 1 + rng.below(8);
    const uint64_t seed = 5000 + uint64_t(step);
    if (op == 0) {
      add(idx, m, data(n, dim, seed));
    } else if (op == 1) {  // fresh caller ids, some negative
      std::vector<int64_t> ids;
      while (ids.size() < n) {
        const int64_t id = int64_t(rng.below(3000)) - 1000;
        if (id != kNoId && !m.contains(id) && std::find(ids.begin(), ids.end(), id) == ids.end()) ids.push_back(id);
      }
      add_with_ids(idx, m, data(n, dim, seed), ids);
    } else if (op == 2 && m.size() > 0) {  // upsert: a mix of present and new ids
      std::vector<int64_t> ids;
      while (ids.size() < n) {
        const int64_t id = rng.below(2) ? m.order()[rng.below(m.size())] : int64_t(rng.below(3000)) - 1000;
        if (id != kNoId && std::find(ids.begin(), ids.end(), id) == ids.end()) ids.push_back(id);
      }
      upsert(idx, m, data(n, dim, seed), ids);
    } else if (op == 3 && m.size() > 0) {  // remove: present ids and unknown ones
      std::vector<int64_t> ids;
      std::size_t expected = 0;
      for (std::size_t i = 0; i < n; ++i) {
        const int64_t id = rng.below(4) ? m.order()[rng.below(m.size())] : int64_t(rng.below(3000)) + 100000;
        if (std::find(ids.begin(), ids.end(), id) != ids.end()) continue;
        ids.push_back(id);
        if (m.contains(id)) ++expected;
      }
      EXPECT_EQ(idx.remove(ids), expected) << "step " << step;
      for (int64_t id : ids) m.erase(id);
    } else if (op == 4) {
      idx.compact();
      EXPECT_EQ(idx.stored_rows(), idx.size()) << "step " << step;
    } else {
      EXPECT_GE(idx.stored_rows(), idx.size()) << "step " << step;
    }
    EXPECT_EQ(idx.next_id(), m.next_id()) << "step " << step;
    if (step % 4 == 3) {
      expect_matches(idx, m, q, 6, case_name("step " + std::to_string(step)));
      if (HasFailure()) return;
    }
  }
  expect_matches(idx, m, q, 200, case_name("final, k > size"));
}

INSTANTIATE_TEST_SUITE_P(Conformance, MutationTest, testing::ValuesIn(all_params()), param_name);

}  // namespace
}  // namespace conformance
