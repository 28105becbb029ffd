// Conformance: every documented error, with its code and a message, and the guarantee that a
// throwing call leaves the index exactly as it was.
#include <sys/resource.h>
#include <unistd.h>

#include <climits>
#include <fstream>

#include "reference.hpp"

namespace conformance {
namespace {

using ErrorTest = IndexTest;
class FloatErrorTest : public IndexTest {};
class HammingErrorTest : public IndexTest {};

// An index with some history (adds, caller ids, a removal), a probe batch and its model.
struct Populated {
  FlatIndex idx;
  Model m;
  Vectors probe;
};

Populated populate(const IndexTest& t, std::size_t dim, std::size_t n) {
  Populated p{t.make(dim), t.model(dim), t.data(4, dim, 999)};
  t.add(p.idx, p.m, t.data(n, dim, 998));
  t.add_with_ids(p.idx, p.m, t.data(2, dim, 997), {-8, 1000});
  EXPECT_EQ(p.idx.remove(std::vector<int64_t>{5}), 1u);
  p.m.erase(5);
  return p;
}

// ---------------------------------------------------------------------------------------------
TEST_P(ErrorTest, ZeroDimension) {
  EXPECT_HIVE_ERROR(ErrorCode::InvalidArgument, FlatIndex(ctx(), 0, metric(), FlatOptions{storage()}));
}

TEST_P(ErrorTest, InvalidK) {
  const std::size_t dim = dim_for(8);
  auto idx = make(dim);
  auto m = model(dim);
  add(idx, m, data(10, dim, 1));
  const auto q = data(2, dim, 2);
  const auto before = Snapshot::of(idx, q, 3);
  std::vector<float> d(2 * std::size_t(kMaxK + 1));
  std::vector<int64_t> i(2 * std::size_t(kMaxK + 1));
  for (int k : {0, -1, -1000, kMaxK + 1, 1 << 20, INT_MIN}) {
    SCOPED_TRACE("k = " + std::to_string(k));
    EXPECT_HIVE_ERROR(ErrorCode::InvalidK, (void)do_search(idx, q, k));
    EXPECT_HIVE_ERROR(ErrorCode::InvalidK, do_search(idx, q, k, d.data(), i.data()));
  }
  EXPECT_HIVE_ERROR(ErrorCode::InvalidK, do_search(idx, q, INT_MAX, d.data(), i.data()));
  EXPECT_UNCHANGED(before, idx, q, 3);
  // The bounds themselves are valid.
  check_results(m, q, do_search(idx, q, 1), case_name("k=1"));
  check_results(m, q, do_search(idx, q, kMaxK), case_name("k=kMaxK"));
}

// An id already present: IdExists, and none of the batch is added.
TEST_P(ErrorTest, IdExists) {
  auto p = populate(*this, dim_for(8), 12);
  const auto before = Snapshot::of(p.idx, p.probe, 5);
  const std::size_t dim = p.idx.dim();
  EXPECT_HIVE_ERROR(ErrorCode::IdExists, do_add_with_ids(p.idx, data(2, dim, 3), {100, 3}));
  EXPECT_HIVE_ERROR(ErrorCode::IdExists, do_add_with_ids(p.idx, data(1, dim, 4), {-8}));
  EXPECT_HIVE_ERROR(ErrorCode::IdExists, do_add_with_ids(p.idx, data(3, dim, 5), {200, 201, 11}));
  EXPECT_UNCHANGED(before, p.idx, p.probe, 5);
  EXPECT_FALSE(p.idx.contains(100));
  EXPECT_FALSE(p.idx.contains(200));
  // A removed id is free again.
  do_add_with_ids(p.idx, data(1, dim, 6), {5});
  EXPECT_TRUE(p.idx.contains(5));
}

// The same id twice in one call: DuplicateId, nothing changes.
TEST_P(ErrorTest, DuplicateIds) {
  auto p = populate(*this, dim_for(8), 12);
  const auto before = Snapshot::of(p.idx, p.probe, 5);
  const std::size_t dim = p.idx.dim();
  EXPECT_HIVE_ERROR(ErrorCode::DuplicateId, do_add_with_ids(p.idx, data(3, dim, 7), {50, 51, 50}));
  EXPECT_HIVE_ERROR(ErrorCode::DuplicateId, do_add_with_ids(p.idx, data(2, dim, 8), {60, 60}));
  EXPECT_HIVE_ERROR(ErrorCode::DuplicateId, do_upsert(p.idx, data(3, dim, 9), {1, 2, 1}));    // present
  EXPECT_HIVE_ERROR(ErrorCode::DuplicateId, do_upsert(p.idx, data(3, dim, 10), {70, 2, 70}));  // new
  EXPECT_UNCHANGED(before, p.idx, p.probe, 5);
  EXPECT_FALSE(p.idx.contains(50));
  EXPECT_FALSE(p.idx.contains(70));
}

// -1 is kNoId, reserved for empty result slots: InvalidArgument.
TEST_P(ErrorTest, ReservedIdRejected) {
  auto p = populate(*this, dim_for(8), 12);
  const auto before = Snapshot::of(p.idx, p.probe, 5);
  const std::size_t dim = p.idx.dim();
  EXPECT_HIVE_ERROR(ErrorCode::InvalidArgument, do_add_with_ids(p.idx, data(1, dim, 11), {kNoId}));
  EXPECT_HIVE_ERROR(ErrorCode::InvalidArgument, do_add_with_ids(p.idx, data(3, dim, 12), {5000, 5001, kNoId}));
  EXPECT_HIVE_ERROR(ErrorCode::InvalidArgument, do_upsert(p.idx, data(1, dim, 13), {kNoId}));
  EXPECT_HIVE_ERROR(ErrorCode::InvalidArgument, do_upsert(p.idx, data(2, dim, 14), {2, kNoId}));
  EXPECT_UNCHANGED(before, p.idx, p.probe, 5);
  EXPECT_FALSE(p.idx.contains(kNoId));
  EXPECT_EQ(p.idx.remove(std::vector<int64_t>{kNoId}), 0u);
  EXPECT_UNCHANGED(before, p.idx, p.probe, 5);
}

TEST_P(ErrorTest, UnknownId) {
  auto p = populate(*this, dim_for(8), 12);
  for (int64_t id : {int64_t(12345), kNoId, int64_t(-5), int64_t(5) /* removed */, int64_t(12)}) {
    SCOPED_TRACE("id " + std::to_string(id));
    if (bits())
      EXPECT_HIVE_ERROR(ErrorCode::UnknownId, (void)p.idx.get_bits(id));
    else
      EXPECT_HIVE_ERROR(ErrorCode::UnknownId, (void)p.idx.get(id));
  }
  auto empty = make(dim_for(8));
  if (bits())
    EXPECT_HIVE_ERROR(ErrorCode::UnknownId, (void)empty.get_bits(0));
  else
    EXPECT_HIVE_ERROR(ErrorCode::UnknownId, (void)empty.get(0));
}

// Null pointers with n > 0: InvalidArgument, nothing changes.
TEST_P(ErrorTest, NullPointers) {
  auto p = populate(*this, dim_for(8), 12);
  const auto before = Snapshot::of(p.idx, p.probe, 5);
  const std::size_t dim = p.idx.dim();
  const auto x = data(3, dim, 15);
  const std::vector<int64_t> ids = {300, 301, 302};
  std::vector<float> d(3 * 5);
  std::vector<int64_t> out(3 * 5);
  auto& idx = p.idx;
  if (bits()) {
    const uint8_t* none = nullptr;
    EXPECT_HIVE_ERROR(ErrorCode::InvalidArgument, idx.add(3, none));
    EXPECT_HIVE_ERROR(ErrorCode::InvalidArgument, idx.add_with_ids(3, none, ids.data()));
    EXPECT_HIVE_ERROR(ErrorCode::InvalidArgument, idx.add_with_ids(3, x.b.data(), nullptr));
    EXPECT_HIVE_ERROR(ErrorCode::InvalidArgument, idx.upsert(3, none, ids.data()));
    EXPECT_HIVE_ERROR(ErrorCode::InvalidArgument, idx.upsert(3, x.b.data(), nullptr));
    EXPECT_HIVE_ERROR(ErrorCode::InvalidArgument, idx.search(3, none, 5, d.data(), out.data()));
    EXPECT_HIVE_ERROR(ErrorCode::InvalidArgument, (void)idx.search(3, none, 5));
    EXPECT_HIVE_ERROR(ErrorCode::InvalidArgument, idx.search(3, x.b.data(), 5, nullptr, out.data()));
    EXPECT_HIVE_ERROR(ErrorCode::InvalidArgument, idx.search(3, x.b.data(), 5, d.data(), nullptr));
  } else {
    const float* none = nullptr;
    EXPECT_HIVE_ERROR(ErrorCode::InvalidArgument, idx.add(3, none));
    EXPECT_HIVE_ERROR(ErrorCode::InvalidArgument, idx.add_with_ids(3, none, ids.data()));
    EXPECT_HIVE_ERROR(ErrorCode::InvalidArgument, idx.add_with_ids(3, x.f.data(), nullptr));
    EXPECT_HIVE_ERROR(ErrorCode::InvalidArgument, idx.upsert(3, none, ids.data()));
    EXPECT_HIVE_ERROR(ErrorCode::InvalidArgument, idx.upsert(3, x.f.data(), nullptr));
    EXPECT_HIVE_ERROR(ErrorCode::InvalidArgument, idx.search(3, none, 5, d.data(), out.data()));
    EXPECT_HIVE_ERROR(ErrorCode::InvalidArgument, (void)idx.search(3, none, 5));
    EXPECT_HIVE_ERROR(ErrorCode::InvalidArgument, idx.search(3, x.f.data(), 5, nullptr, out.data()));
    EXPECT_HIVE_ERROR(ErrorCode::InvalidArgument, idx.search(3, x.f.data(), 5, d.data(), nullptr));
  }
  EXPECT_HIVE_ERROR(ErrorCode::InvalidArgument, (void)idx.remove(2, nullptr));
  EXPECT_UNCHANGED(before, idx, p.probe, 5);
}

// ---------------------------------------------------------------------------------------------
// Float indexes.

// NaN or +-Inf anywhere in a batch: NonFiniteValue, and the whole batch is rejected.
TEST_P(FloatErrorTest, NonFiniteValuesRejected) {
  const std::size_t dim = 7;
  auto p = populate(*this, dim, 12);
  const auto before = Snapshot::of(p.idx, p.probe, 5);
  const float bad_values[] = {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity(),
                              -std::numeric_limits<float>::infinity(), -std::numeric_limits<float>::quiet_NaN()};
  const std::size_t n = 4;
  const std::size_t positions[] = {0, dim - 1, 2 * dim + 3, n * dim - 1};
  std::vector<float> d(n * 5);
  std::vector<int64_t> out(n * 5);
  for (float bad : bad_values) {
    for (std::size_t pos : positions) {
      SCOPED_TRACE("value " + std::to_string(bad) + " at element " + std::to_string(pos));
      auto x = data(n, dim, 16);
      x.f[pos] = bad;
      EXPECT_HIVE_ERROR(ErrorCode::NonFiniteValue, p.idx.add(n, x.f.data()));
      EXPECT_HIVE_ERROR(ErrorCode::NonFiniteValue, do_add_with_ids(p.idx, x, {400, 401, 402, 403}));
      EXPECT_HIVE_ERROR(ErrorCode::NonFiniteValue, do_upsert(p.idx, x, {0, 1, 402, 2}));  // present and new
      EXPECT_HIVE_ERROR(ErrorCode::NonFiniteValue, do_upsert(p.idx, x, {0, 1, 2, 3}));    // present only
      EXPECT_HIVE_ERROR(ErrorCode::NonFiniteValue, (void)p.idx.search(n, x.f.data(), 5));
      EXPECT_HIVE_ERROR(ErrorCode::NonFiniteValue, p.idx.search(n, x.f.data(), 5, d.data(), out.data()));
    }
  }
  EXPECT_UNCHANGED(before, p.idx, p.probe, 5);
}

// A value the storage cannot represent (1e6 > the float16 maximum): how F16 treats it is not
// specified, but if the call throws, nothing of the batch may have been added. F32 and BF16
// hold it.
TEST_P(FloatErrorTest, OutOfStorageRangeIsAllOrNothing) {
  const std::size_t dim = 5;
  auto p = populate(*this, dim, 12);
  auto x = data(4, dim, 17);
  x.frow(3)[2] = 1e6f;
  const std::vector<int64_t> ids = {600, 601, 602, 603};
  if (storage() != ScalarType::F16 || metric() == Metric::Cosine) {  // Cosine normalises it first
    add_with_ids(p.idx, p.m, x, ids);
    expect_matches(p.idx, p.m, p.probe, 5, case_name("1e6 stored"));
    return;
  }
  const auto before = Snapshot::of(p.idx, p.probe, 5);
  bool threw = false;
  try {
    do_add_with_ids(p.idx, x, ids);
  } catch (const Error&) {
    threw = true;
  }
  if (threw) {
    EXPECT_UNCHANGED(before, p.idx, p.probe, 5);
  } else {
    EXPECT_EQ(p.idx.size(), before.size + 4) << "the call returned normally, so all 4 rows were added";
  }
}

// Packed-bit overloads on a float index: Unsupported.
TEST_P(FloatErrorTest, BitOverloadsUnsupported) {
  auto p = populate(*this, 16, 12);
  const auto before = Snapshot::of(p.idx, p.probe, 5);
  const std::vector<uint8_t> b(2 * 2, 0x5a);
  const std::vector<int64_t> ids = {500, 501};
  std::vector<float> d(2 * 5);
  std::vector<int64_t> out(2 * 5);
  EXPECT_HIVE_ERROR(ErrorCode::Unsupported, p.idx.add(2, b.data()));
  EXPECT_HIVE_ERROR(ErrorCode::Unsupported, p.idx.add_with_ids(2, b.data(), ids.data()));
  EXPECT_HIVE_ERROR(ErrorCode::Unsupported, p.idx.upsert(2, b.data(), ids.data()));
  EXPECT_HIVE_ERROR(ErrorCode::Unsupported, p.idx.search(2, b.data(), 5, d.data(), out.data()));
  EXPECT_HIVE_ERROR(ErrorCode::Unsupported, (void)p.idx.search(2, b.data(), 5));
  EXPECT_HIVE_ERROR(ErrorCode::Unsupported, (void)p.idx.get_bits(0));
  EXPECT_UNCHANGED(before, p.idx, p.probe, 5);
}

// Bits storage belongs to Hamming indexes.
TEST_P(FloatErrorTest, BitsStorageRejected) {
  const ErrorCode code = error_code_of([&] { FlatIndex(ctx(), 16, metric(), FlatOptions{ScalarType::Bits}); },
                                       "float metric with Bits storage");
  EXPECT_TRUE(code == ErrorCode::InvalidArgument || code == ErrorCode::Unsupported)
      << "got " << hive::gpu::to_string(code);
}

// ---------------------------------------------------------------------------------------------
// Hamming indexes.

// dim is in bits and must be a positive multiple of 8.
TEST_P(HammingErrorTest, DimensionNotMultipleOf8) {
  for (std::size_t dim : {std::size_t(1), std::size_t(7), std::size_t(12), std::size_t(1000 + 4), std::size_t(1001)}) {
    SCOPED_TRACE("dim " + std::to_string(dim));
    EXPECT_HIVE_ERROR(ErrorCode::InvalidArgument, FlatIndex(ctx(), dim, Metric::Hamming));
  }
  // 1000 bits = 125 bytes is a multiple of 8 and valid.
  const FlatIndex ok(ctx(), 1000, Metric::Hamming);
  EXPECT_EQ(ok.dim(), 1000u);
  // Hamming indexes always store Bits, whatever the options say.
  for (ScalarType s : {ScalarType::F32, ScalarType::F16, ScalarType::BF16, ScalarType::Bits})
    EXPECT_EQ(FlatIndex(ctx(), 64, Metric::Hamming, FlatOptions{s}).storage(), ScalarType::Bits);
}

// Float overloads on a Hamming index: Unsupported.
TEST_P(HammingErrorTest, FloatOverloadsUnsupported) {
  auto p = populate(*this, 16, 12);
  const auto before = Snapshot::of(p.idx, p.probe, 5);
  const std::vector<float> x(2 * 16, 0.5f);
  const std::vector<int64_t> ids = {500, 501};
  std::vector<float> d(2 * 5);
  std::vector<int64_t> out(2 * 5);
  EXPECT_HIVE_ERROR(ErrorCode::Unsupported, p.idx.add(2, x.data()));
  EXPECT_HIVE_ERROR(ErrorCode::Unsupported, p.idx.add_with_ids(2, x.data(), ids.data()));
  EXPECT_HIVE_ERROR(ErrorCode::Unsupported, p.idx.upsert(2, x.data(), ids.data()));
  EXPECT_HIVE_ERROR(ErrorCode::Unsupported, p.idx.search(2, x.data(), 5, d.data(), out.data()));
  EXPECT_HIVE_ERROR(ErrorCode::Unsupported, (void)p.idx.search(2, x.data(), 5));
  EXPECT_UNCHANGED(before, p.idx, p.probe, 5);
}

// ---------------------------------------------------------------------------------------------
// Once per backend.
class BackendErrorTest : public testing::TestWithParam<std::string> {
 protected:
  void SetUp() override { CONFORMANCE_SKIP_IF_UNAVAILABLE(GetParam()); }
};

// k is validated before anything is allocated for it: the SearchResult form with k = INT_MAX
// must throw InvalidK, not try to allocate nq x 2^31 results. Run under an address-space
// limit, so a failing implementation fails fast (bad_alloc) instead of paging in gigabytes.
TEST_P(BackendErrorTest, HugeKRejectedBeforeAllocating) {
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  GTEST_SKIP() << "sanitizer runtimes cannot run under an address-space limit";
#else
  FlatIndex idx(Context::open(GetParam()), 8, Metric::L2);
  const auto x = random_floats(10, 8, 1);
  idx.add(10, x.f.data());
  const auto q = random_floats(1, 8, 2);
  long pages = 0;
  {
    std::ifstream statm("/proc/self/statm");
    statm >> pages;
  }
  if (pages <= 0) GTEST_SKIP() << "no /proc/self/statm";
  rlimit old{};
  ASSERT_EQ(::getrlimit(RLIMIT_AS, &old), 0);
  rlimit lim = old;
  const rlim_t want = rlim_t(pages) * rlim_t(::sysconf(_SC_PAGESIZE)) + (rlim_t(2) << 30);
  if (old.rlim_cur != RLIM_INFINITY && old.rlim_cur < want) GTEST_SKIP() << "address space already limited";
  lim.rlim_cur = want;
  ASSERT_EQ(::setrlimit(RLIMIT_AS, &lim), 0);
  std::string got;
  try {
    (void)idx.search(1, q.f.data(), INT_MAX);
    got = "no exception";
  } catch (const Error& e) {
    got = std::string(hive::gpu::to_string(e.code()));
  } catch (const std::bad_alloc&) {
    got = "std::bad_alloc";
  } catch (const std::exception& e) {
    got = std::string("std::exception: ") + e.what();
  }
  ::setrlimit(RLIMIT_AS, &old);
  EXPECT_EQ(got, std::string(hive::gpu::to_string(ErrorCode::InvalidK)))
      << "search(nq, q, INT_MAX) must throw InvalidK before allocating nq x k results";
#endif
}

INSTANTIATE_TEST_SUITE_P(Conformance, ErrorTest, testing::ValuesIn(all_params()), param_name);
INSTANTIATE_TEST_SUITE_P(Conformance, FloatErrorTest, testing::ValuesIn(float_params()), param_name);
INSTANTIATE_TEST_SUITE_P(Conformance, HammingErrorTest, testing::ValuesIn(hamming_params()), param_name);
INSTANTIATE_TEST_SUITE_P(Conformance, BackendErrorTest, testing::ValuesIn(compiled_backends()), backend_name);

}  // namespace
}  // namespace conformance
