// Conformance: exact k-NN search results against the float64 reference, for every backend x
// metric x storage.
#include <thread>

#include "reference.hpp"

namespace conformance {
namespace {

using SearchTest = IndexTest;

// Every k up to kMaxK, on enough vectors to fill every slot.
TEST_P(SearchTest, EveryKUpToMax) {
  const std::size_t dim = dim_for(17);
  auto idx = make(dim);
  auto m = model(dim);
  add(idx, m, data(2100, dim, 101));
  ASSERT_EQ(idx.size(), 2100u);
  const auto q = data(3, dim, 102);
  for (int k : {1, 10, 100, 1024, kMaxK}) expect_matches(idx, m, q, k, case_name("k=" + std::to_string(k)));
}

// Fewer live vectors than k: the tail slots hold kNoId and the worst value.
TEST_P(SearchTest, FewerVectorsThanK) {
  const std::size_t dim = dim_for(9);
  for (std::size_t n : {std::size_t(1), std::size_t(5), std::size_t(50), std::size_t(1000)}) {
    auto idx = make(dim);
    auto m = model(dim);
    add(idx, m, data(n, dim, 200 + n));
    const auto q = data(4, dim, 300 + n);
    for (int k : {int(n) + 1, 100, kMaxK})
      if (std::size_t(k) > n)
        expect_matches(idx, m, q, k, case_name("n=" + std::to_string(n) + " k=" + std::to_string(k)));
  }
}

// Searching an empty index fills every slot with kNoId and the worst value.
TEST_P(SearchTest, EmptyIndex) {
  const std::size_t dim = dim_for(12);
  const auto idx = make(dim);
  const auto m = model(dim);
  EXPECT_EQ(idx.size(), 0u);
  const auto q = data(5, dim, 7);
  for (int k : {1, 10, kMaxK}) {
    const auto r = do_search(idx, q, k);
    ASSERT_EQ(r.ids.size(), q.n * std::size_t(k));
    for (std::size_t i = 0; i < r.ids.size(); ++i) {
      ASSERT_EQ(r.ids[i], kNoId) << "slot " << i;
      ASSERT_EQ(r.distances[i], worst_value(metric())) << "slot " << i;
    }
    check_results(m, q, r, case_name("empty k=" + std::to_string(k)));
  }
}

// Dimensions with every remainder a vector kernel may have to handle.
TEST_P(SearchTest, Dimensions) {
  const std::vector<std::size_t> dims =
      bits() ? std::vector<std::size_t>{8, 24, 64, 256, 1000, 1032} : std::vector<std::size_t>{1, 3, 17, 128, 784};
  for (std::size_t dim : dims) {
    for (uint64_t seed : {1u, 2u}) {
      const std::size_t n = dim >= 700 ? 120 : 300;
      auto idx = make(dim);
      auto m = model(dim);
      add(idx, m, data(n, dim, 1000 * dim + seed));
      const auto q = data(7, dim, 1000 * dim + seed + 500);
      expect_matches(idx, m, q, 10, case_name("dim=" + std::to_string(dim) + " seed=" + std::to_string(seed)));
      expect_matches(idx, m, q, 1, case_name("dim=" + std::to_string(dim) + " k=1"));
    }
  }
}

// Batches of several sizes (a backend may take another code path for larger batches).
TEST_P(SearchTest, BatchSizes) {
  const std::size_t dim = dim_for(32);
  auto idx = make(dim);
  auto m = model(dim);
  add(idx, m, data(500, dim, 41));
  for (std::size_t nq : {std::size_t(1), std::size_t(7), std::size_t(100), std::size_t(300)}) {
    const auto q = data(nq, dim, 42 + nq);
    expect_matches(idx, m, q, 10, case_name("nq=" + std::to_string(nq)));
  }
}

// A large batch on many rows: the BLAS / tiled path on the CPU, big grids on GPUs; then the
// same after removing a quarter of the rows (deleted rows must be masked on that path too).
TEST_P(SearchTest, LargeBatchManyRows) {
  const std::size_t dim = dim_for(64);
  auto idx = make(dim);
  auto m = model(dim);
  add(idx, m, data(2100, dim, 51));
  const auto q = data(300, dim, 52);
  expect_matches(idx, m, q, 16, case_name("nq=300 n=2100 k=16"));
  expect_matches(idx, m, q, 1, case_name("nq=300 n=2100 k=1"));
  std::vector<int64_t> gone;
  for (int64_t id = 0; id < 2100; id += 4) gone.push_back(id);
  ASSERT_EQ(idx.remove(gone), gone.size());
  for (int64_t id : gone) m.erase(id);
  expect_matches(idx, m, q, 16, case_name("nq=300 n=2100 k=16, a quarter removed"));
  // Queries equal to removed vectors (the removed rows would be their nearest).
  Vectors qr;
  qr.dim = dim;
  qr.bits = bits();
  const auto x = data(2100, dim, 51);
  for (std::size_t i = 0; i < 64; ++i) qr.append(x.slice(std::size_t(gone[i]), 1));
  expect_matches(idx, m, qr, 4, case_name("nq=64 removed vectors as queries"));
}

// Every stored row must be reachable however a backend splits the rows among threads or
// blocks: each of several indexes keeps one residue class of ids live (the others removed,
// so they still occupy storage) and is searched with k >= its live count by 1-3 queries.
TEST_P(SearchTest, EveryRowReachable) {
  const std::size_t dim = dim_for(4);
  constexpr std::size_t kRows = 9000, kClasses = 5;  // 1800 live per index, k = kMaxK
  const auto x = data(kRows, dim, 121);
  for (std::size_t c = 0; c < kClasses; ++c) {
    auto idx = make(dim);
    auto m = model(dim);
    add(idx, m, x);
    std::vector<int64_t> gone;
    for (std::size_t i = 0; i < kRows; ++i)
      if (i % kClasses != c) gone.push_back(int64_t(i));
    ASSERT_EQ(idx.remove(gone), gone.size());
    for (int64_t id : gone) m.erase(id);
    ASSERT_EQ(idx.stored_rows(), kRows);
    for (std::size_t nq : {std::size_t(1), std::size_t(3)}) {
      const auto q = data(nq, dim, 122 + c);
      expect_matches(idx, m, q, kMaxK, case_name("class " + std::to_string(c) + " nq=" + std::to_string(nq)));
    }
  }
}

// Random shapes: dim, n, nq and k drawn per seed (n may be 0 or below k).
TEST_P(SearchTest, RandomShapes) {
  Rng rng(4242);
  for (uint64_t seed = 0; seed < 12; ++seed) {
    const std::size_t dim = dim_for(1 + rng.below(bits() ? 600 : 200));
    const std::size_t n = seed == 0 ? 0 : rng.below(std::min<std::size_t>(3000, 200000 / dim));
    const std::size_t nq = 1 + rng.below(40);
    const int k = 1 + int(rng.below(seed % 3 == 0 ? std::size_t(kMaxK) : 64));
    const std::string what = "seed " + std::to_string(seed) + ": dim " + std::to_string(dim) + " n " +
                              std::to_string(n) + " nq " + std::to_string(nq) + " k " + std::to_string(k);
    auto idx = make(dim);
    auto m = model(dim);
    add(idx, m, data(n, dim, 7000 + seed));
    expect_matches(idx, m, data(nq, dim, 8000 + seed), k, case_name(what));
    if (HasFailure()) return;
  }
}

// Larger magnitudes: tolerances scale with the data, results must still be exact.
TEST_P(SearchTest, LargeMagnitudes) {
  const std::size_t dim = dim_for(33);
  auto idx = make(dim);
  auto m = model(dim);
  const auto x = bits() ? data(300, dim, 61) : random_floats(300, dim, 61, -100.0f, 100.0f);
  add(idx, m, x);
  const auto q = bits() ? data(5, dim, 62) : random_floats(5, dim, 62, -100.0f, 100.0f);
  expect_matches(idx, m, q, 20, case_name("values in [-100, 100]"));
}

// Stored vectors searched for themselves: the nearest is at distance 0 (the vector itself or
// an exact duplicate), and distances are never negative.
// (Not for InnerProduct: a vector is not its own best inner product.)
class SelfQueryTest : public IndexTest {};
TEST_P(SelfQueryTest, SelfQueries) {
  const std::size_t dim = dim_for(32);
  auto idx = make(dim);
  auto m = model(dim);
  add(idx, m, data(400, dim, 71));
  // Queries: the stored (decoded) vectors of ids 0, 10, 20, ..., exactly representable.
  Vectors q;
  q.dim = dim;
  q.bits = bits();
  std::vector<int64_t> qids;
  for (int64_t id = 0; id < 400; id += 10) {
    qids.push_back(id);
    if (bits()) {
      const auto b = idx.get_bits(id);
      q.b.insert(q.b.end(), b.begin(), b.end());
    } else {
      const auto f = idx.get(id);
      q.f.insert(q.f.end(), f.begin(), f.end());
    }
    ++q.n;
  }
  const auto r = do_search(idx, q, 5);
  check_results(m, q, r, case_name("self queries"));
  // Cosine on F16/BF16: a stored unit vector rounded to 16 bits is no longer exactly unit
  // length, so its distance to itself may be slightly negative; check_results covers it.
  const bool check_sign = metric() != Metric::Cosine || storage() == ScalarType::F32;
  for (std::size_t i = 0; i < q.n; ++i) {
    if (!m.contains(r.id(i, 0))) {
      ADD_FAILURE() << "nearest to id " << qids[i] << " is id " << r.id(i, 0) << ", not a live id";
    } else if (r.id(i, 0) != qids[i]) {
      // Only an exact duplicate may take its place.
      if (bits())
        EXPECT_EQ(m.brow(r.id(i, 0)), m.brow(qids[i])) << "nearest to id " << qids[i] << " is id " << r.id(i, 0);
      else
        EXPECT_EQ(m.frow(r.id(i, 0)), m.frow(qids[i])) << "nearest to id " << qids[i] << " is id " << r.id(i, 0);
    }
    for (int j = 0; j < 5 && check_sign; ++j) {
      if (metric() == Metric::Cosine)
        EXPECT_GE(r.distance(i, j), -1e-5f) << "query " << i << " slot " << j;
      else
        EXPECT_GE(r.distance(i, j), 0.0f) << "negative distance, query " << i << " slot " << j;
    }
  }
}

// Many exact duplicates (ties): every tied id is acceptable, but each only once.
TEST_P(SearchTest, ExactTies) {
  const std::size_t dim = dim_for(6);
  const auto distinct = data(10, dim, 81);
  Vectors x;
  x.dim = dim;
  x.bits = bits();
  for (int rep = 0; rep < 10; ++rep) x.append(distinct);
  auto idx = make(dim);
  auto m = model(dim);
  add(idx, m, x);
  const auto q = data(6, dim, 82);
  for (int k : {1, 9, 10, 25, 100}) expect_matches(idx, m, q, k, case_name("ties k=" + std::to_string(k)));
}

// The caller-buffer form fills exactly the same values as the SearchResult form, overwriting
// whatever the buffers held.
TEST_P(SearchTest, CallerBuffersMatchSearchResult) {
  const std::size_t dim = dim_for(20);
  auto idx = make(dim);
  auto m = model(dim);
  add(idx, m, data(30, dim, 91));
  const auto q = data(4, dim, 92);
  for (int k : {3, 50}) {
    const auto r = do_search(idx, q, k);
    EXPECT_EQ(r.nq, q.n);
    EXPECT_EQ(r.k, k);
    std::vector<float> d(q.n * std::size_t(k), 12345.0f);
    std::vector<int64_t> i(q.n * std::size_t(k), 777);
    do_search(idx, q, k, d.data(), i.data());
    EXPECT_EQ(d, r.distances) << "k=" << k;
    EXPECT_EQ(i, r.ids) << "k=" << k;
    check_results(m, q, k, d.data(), i.data(), case_name("caller buffers k=" + std::to_string(k)));
  }
}

// Several threads searching one const index at once see what serial searches see.
TEST_P(SearchTest, ConcurrentSearches) {
  const std::size_t dim = dim_for(24);
  auto idx = make(dim);
  auto m = model(dim);
  add(idx, m, data(1500, dim, 111));
  constexpr int kThreads = 4;
  std::vector<Vectors> queries;
  std::vector<SearchResult> serial;
  for (int t = 0; t < kThreads; ++t) {
    queries.push_back(data(t == 0 ? 1 : 40 * std::size_t(t), dim, 112 + uint64_t(t)));
    serial.push_back(do_search(idx, queries.back(), 10));
    check_results(m, queries.back(), serial.back(), case_name("serial " + std::to_string(t)));
  }
  const FlatIndex& shared = idx;
  std::vector<int> mismatches(kThreads, 0);
  std::vector<std::string> errors(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      try {
        for (int rep = 0; rep < 6; ++rep) {
          const auto r = do_search(shared, queries[std::size_t(t)], 10);
          if (r.ids != serial[std::size_t(t)].ids || r.distances != serial[std::size_t(t)].distances)
            ++mismatches[std::size_t(t)];
        }
      } catch (const std::exception& e) {
        errors[std::size_t(t)] = e.what();
      }
    });
  }
  for (auto& th : threads) th.join();
  for (int t = 0; t < kThreads; ++t) {
    EXPECT_EQ(mismatches[std::size_t(t)], 0) << "thread " << t << " saw results differing from the serial search";
    EXPECT_EQ(errors[std::size_t(t)], "") << "thread " << t << " threw";
  }
}

// ---------------------------------------------------------------------------------------------
class FloatSearchTest : public IndexTest {};

// Finite inputs whose distances overflow float: (q0 - x0)^2 and q0 * x0 reach +-inf (one
// huge coordinate per vector, so honest float arithmetic gives +-inf, never NaN). Every live
// vector still fills a slot (only slots no vector filled hold kNoId), best first.
TEST_P(FloatSearchTest, OverflowingDistances) {
  const std::size_t dim = 4;
  Vectors x = random_floats(7, dim, 131);
  for (std::size_t i = 0; i < x.n; ++i) x.frow(i)[0] *= 3e19f;
  auto idx = make(dim);
  auto m = model(dim);
  add(idx, m, x);
  EXPECT_EQ(idx.remove(std::vector<int64_t>{2}), 1u);
  m.erase(2);
  Vectors q = random_floats(3, dim, 132);
  for (std::size_t i = 0; i < q.n; ++i) q.frow(i)[0] *= 3e19f;
  const int k = 9;
  const auto r = do_search(idx, q, k);
  const bool asc = ascending(metric());
  for (std::size_t qi = 0; qi < q.n; ++qi) {
    SCOPED_TRACE("query " + std::to_string(qi));
    std::vector<int64_t> got;
    for (int j = 0; j < k; ++j) {
      if (j < 6) {
        got.push_back(r.id(qi, j));
        if (j > 0) {
          if (asc)
            EXPECT_LE(r.distance(qi, j - 1), r.distance(qi, j)) << "slot " << j;
          else
            EXPECT_GE(r.distance(qi, j - 1), r.distance(qi, j)) << "slot " << j;
        }
        if (m.contains(r.id(qi, j))) {
          // The value, where float can hold it; its sign and size where it overflows.
          std::vector<double> qd = metric() == Metric::Cosine ? normalised(q.frow(qi), dim)
                                                               : std::vector<double>(q.frow(qi), q.frow(qi) + dim);
          const RefDistance want = ref_distance(metric(), qd.data(), m.frow(r.id(qi, j)).data(), dim);
          const double gd = double(r.distance(qi, j));
          EXPECT_FALSE(std::isnan(gd)) << "slot " << j;
          if (std::fabs(want.d) < 1e38)
            EXPECT_NEAR(gd, want.d, want.tol) << "slot " << j;
          else
            EXPECT_TRUE(gd * want.d > 0 && std::fabs(gd) >= 1e38) << "slot " << j << ": got " << gd << ", want " << want.d;
        }
      } else {
        EXPECT_EQ(r.id(qi, j), kNoId) << "slot " << j;
        EXPECT_EQ(r.distance(qi, j), worst_value(metric())) << "slot " << j;
      }
    }
    std::sort(got.begin(), got.end());
    EXPECT_EQ(got, m.sorted_ids()) << "every live vector fills a slot";
  }
}

std::vector<Param> self_query_params() {
  std::vector<Param> out;
  for (const auto& p : all_params())
    if (p.metric != Metric::InnerProduct) out.push_back(p);
  return out;
}
INSTANTIATE_TEST_SUITE_P(Conformance, SelfQueryTest, testing::ValuesIn(self_query_params()), param_name);
// F16 cannot hold values near 3e19.
std::vector<Param> wide_range_params() {
  std::vector<Param> out;
  for (const auto& p : float_params())
    if (p.storage != ScalarType::F16) out.push_back(p);
  return out;
}
INSTANTIATE_TEST_SUITE_P(Conformance, FloatSearchTest, testing::ValuesIn(wide_range_params()), param_name);

INSTANTIATE_TEST_SUITE_P(Conformance, SearchTest, testing::ValuesIn(all_params()), param_name);

}  // namespace
}  // namespace conformance
