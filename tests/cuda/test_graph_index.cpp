// GraphIndex on the CUDA backend: a graph built on the GPU and searched there, against float64
// exact references on clustered random data: recall and distances for every metric, small and
// degenerate sizes, k up to 1024, batch insertion, soft delete, upsert, compaction, the files
// (HnswIndex opens GraphIndex's on the CPU and the other way round) and the error paths. Every
// test skips where no GPU exists.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <cstdio>
#include <filesystem>
#include <limits>
#include <set>
#include <string>
#include <vector>

#include "cuda/cuda_test_util.hpp"
#include "hive_gpu/hive_gpu.hpp"
#include "unit/ann_reference.hpp"

namespace {

using namespace hive::gpu;
using namespace hive::gpu::test;

struct Results {
  std::vector<float> d;
  std::vector<int64_t> ids;
};

template <class Ix>
Results run(const Ix& index, const std::vector<float>& q, std::size_t dim, int k) {
  const std::size_t nq = q.size() / dim;
  Results r{std::vector<float>(nq * std::size_t(k)), std::vector<int64_t>(nq * std::size_t(k))};
  index.search(nq, q.data(), k, r.d.data(), r.ids.data());
  return r;
}

std::vector<std::vector<int64_t>> truth_of(Metric m, const std::vector<float>& x, const std::vector<float>& q,
                                           std::size_t dim, int k, const std::set<int64_t>& skip = {}) {
  std::vector<std::vector<int64_t>> t;
  for (std::size_t i = 0; i < q.size() / dim; ++i) t.push_back(exact_topk(m, x, q.data() + i * dim, dim, k, skip));
  return t;
}

// Every returned id is valid, its distance matches float64 within 1e-4 relative, results are
// sorted best first and hold no repeats.
void check_results(Metric m, const std::vector<float>& x, const std::vector<float>& q, std::size_t dim, int k,
                   const Results& r) {
  const std::size_t n = x.size() / dim, nq = q.size() / dim;
  for (std::size_t i = 0; i < nq; ++i) {
    std::set<int64_t> seen;
    for (int j = 0; j < k; ++j) {
      const std::size_t o = i * std::size_t(k) + std::size_t(j);
      const int64_t id = r.ids[o];
      if (id == kNoId) continue;
      ASSERT_GE(id, 0);
      ASSERT_LT(std::size_t(id), n);
      ASSERT_TRUE(seen.insert(id).second) << "query " << i << " repeats id " << id;
      const double want = reference(m, q.data() + i * dim, x.data() + std::size_t(id) * dim, dim);
      EXPECT_NEAR(r.d[o], want, 1e-4 * std::max(1.0, std::fabs(want))) << "query " << i << " rank " << j;
      if (j > 0 && r.ids[o - 1] != kNoId) {
        if (m == Metric::InnerProduct)
          EXPECT_GE(r.d[o - 1], r.d[o]);
        else
          EXPECT_LE(r.d[o - 1], r.d[o]);
      }
    }
  }
}

Context gpu() { return Context::open("cuda"); }

TEST(GraphIndex, RecallAndDistancesL2) {
  REQUIRE_DEVICE();
  const std::size_t n = 20000, d = 32;
  const auto x = clustered(n, d, 1);
  const auto q = clustered(300, d, 2);
  GraphIndex index(gpu(), d, Metric::L2);
  index.add(n, x.data());
  EXPECT_EQ(index.size(), n);
  // Every traversal encoding (uint8 codes, fp16, fp32): exact distances, the same recall.
  for (const char* rows : {"f32", "f16", "u8"}) {
    SCOPED_TRACE(rows);
    setenv("HIVE_GPU_GRAPH_ROWS", rows, 1);
    const auto r = run(index, q, d, 10);
    check_results(Metric::L2, x, q, d, 10, r);
    EXPECT_GE(recall_at(truth_of(Metric::L2, x, q, d, 10), r.ids, 10), 0.95);
  }
  unsetenv("HIVE_GPU_GRAPH_ROWS");
  const auto r = run(index, q, d, 10);
  const double recall = recall_at(truth_of(Metric::L2, x, q, d, 10), r.ids, 10);
  // A longer list and a wider step find more.
  GraphSearchParams p;
  p.itopk = 256;
  p.search_width = 2;
  Results wide{std::vector<float>(300 * 10), std::vector<int64_t>(300 * 10)};
  index.search(300, q.data(), 10, wide.d.data(), wide.ids.data(), p);
  EXPECT_GE(recall_at(truth_of(Metric::L2, x, q, d, 10), wide.ids, 10), std::max(0.99, recall - 0.001));
}

TEST(GraphIndex, GraphIsWellFormed) {
  REQUIRE_DEVICE();
  const std::size_t n = 6000, d = 16;
  const auto x = clustered(n, d, 3);
  GraphIndex index(gpu(), d, Metric::L2);
  index.add(n, x.data());
  std::size_t total = 0;
  for (int64_t id = 0; id < int64_t(n); id += 37) {
    const auto nb = index.neighbors(id);
    EXPECT_LE(nb.size(), 32u);
    EXPECT_GE(nb.size(), 16u) << "id " << id;
    std::set<int64_t> s(nb.begin(), nb.end());
    EXPECT_EQ(s.size(), nb.size()) << "repeated link at id " << id;
    EXPECT_EQ(s.count(id), 0u) << "self link at id " << id;
    total += nb.size();
    // The nearest neighbour is always kept (no detour can precede rank 0).
    const auto nn = exact_topk(Metric::L2, x, x.data() + std::size_t(id) * d, d, 2);
    EXPECT_TRUE(s.count(nn[1]) || s.count(nn[0]) != 0) << "id " << id;
  }
  EXPECT_GT(total, 0u);
}

TEST(GraphIndex, EveryMetric) {
  REQUIRE_DEVICE();
  const std::size_t n = 5000, d = 24;
  const auto x = clustered(n, d, 4);
  const auto q = clustered(100, d, 5);
  for (Metric m : {Metric::L2, Metric::InnerProduct, Metric::Cosine, Metric::L1, Metric::Linf}) {
    SCOPED_TRACE(to_string(m));
    GraphIndex index(gpu(), d, m);
    index.add(n, x.data());
    GraphSearchParams p;
    p.itopk = 128;
    // Every traversal encoding (uint8 codes serve L2 and the dot products; L1 and Linf take
    // fp16 when asked for them). d = 24: the codes' scalar path.
    for (const char* rows : {"f16", "u8", "f32"}) {
      SCOPED_TRACE(rows);
      setenv("HIVE_GPU_GRAPH_ROWS", rows, 1);
      Results r{std::vector<float>(100 * 10), std::vector<int64_t>(100 * 10)};
      index.search(100, q.data(), 10, r.d.data(), r.ids.data(), p);
      check_results(m, x, q, d, 10, r);
      // Inner product is not a metric: a proximity graph serves it less well.
      EXPECT_GE(recall_at(truth_of(m, x, q, d, 10), r.ids, 10), m == Metric::InnerProduct ? 0.8 : 0.93);
    }
    unsetenv("HIVE_GPU_GRAPH_ROWS");
  }
}

TEST(GraphIndex, SmallSizesAndLargeK) {
  REQUIRE_DEVICE();
  const std::size_t d = 8;
  for (std::size_t n : {1u, 2u, 5u, 40u, 300u}) {
    SCOPED_TRACE("n " + std::to_string(n));
    const auto x = clustered(n, d, 6);
    const auto q = clustered(7, d, 7);
    GraphIndex index(gpu(), d, Metric::L2);
    index.add(n, x.data());
    const int k = 10;
    const auto r = run(index, q, d, k);
    check_results(Metric::L2, x, q, d, k, r);
    for (std::size_t i = 0; i < 7; ++i) {
      std::size_t filled = 0;
      for (int j = 0; j < k; ++j) filled += r.ids[i * k + std::size_t(j)] != kNoId;
      EXPECT_EQ(filled, std::min<std::size_t>(n, std::size_t(k)));
    }
    if (n >= 40) {
      EXPECT_GE(recall_at(truth_of(Metric::L2, x, q, d, k), r.ids, k), 0.97);
    }
  }
  // k = 1024 (itopk raised to cover it) on 4000 vectors.
  const std::size_t n = 4000;
  const auto x = clustered(n, d, 8);
  const auto q = clustered(5, d, 9);
  GraphIndex index(gpu(), d, Metric::L2);
  index.add(n, x.data());
  const auto r = run(index, q, d, 1024);
  check_results(Metric::L2, x, q, d, 1024, r);
  EXPECT_GE(recall_at(truth_of(Metric::L2, x, q, d, 1024), r.ids, 1024), 0.9);
}

TEST(GraphIndex, BatchInsertion) {
  REQUIRE_DEVICE();
  const std::size_t d = 24;
  const auto x = clustered(16000, d, 10);
  const auto q = clustered(200, d, 11);
  GraphIndex index(gpu(), d, Metric::L2);
  index.add(8000, x.data());                 // the build
  index.add(3000, x.data() + 8000 * d);      // insertions, no rebuild
  index.add(5000, x.data() + 11000 * d);     // a batch larger than half the graph: two chunks
  EXPECT_EQ(index.size(), 16000u);
  const auto r = run(index, q, d, 10);
  check_results(Metric::L2, x, q, d, 10, r);
  EXPECT_GE(recall_at(truth_of(Metric::L2, x, q, d, 10), r.ids, 10), 0.93);
  // Every inserted vector is reachable: it finds itself.
  std::vector<float> self(x.begin() + 8000 * d, x.end());
  const auto s = run(index, self, d, 1);
  std::size_t found = 0;
  for (std::size_t i = 0; i < 8000; ++i) found += s.ids[i] == int64_t(8000 + i);
  EXPECT_GE(double(found) / 8000.0, 0.98);
}

TEST(GraphIndex, DeleteUpsertCompact) {
  REQUIRE_DEVICE();
  const std::size_t n = 6000, d = 16;
  auto x = clustered(n, d, 12);
  const auto q = clustered(100, d, 13);
  GraphIndex index(gpu(), d, Metric::L2);
  index.add(n, x.data());
  std::set<int64_t> gone;
  for (int64_t id = 0; id < int64_t(n); id += 3) gone.insert(id);
  const std::vector<int64_t> del(gone.begin(), gone.end());
  EXPECT_EQ(index.remove(del.size(), del.data()), del.size());
  EXPECT_EQ(index.remove(1, del.data()), 0u);  // already gone
  EXPECT_EQ(index.size(), n - del.size());
  auto r = run(index, q, d, 10);
  for (int64_t id : r.ids) EXPECT_EQ(gone.count(id), 0u) << "deleted id " << id << " returned";
  EXPECT_GE(recall_at(truth_of(Metric::L2, x, q, d, 10, gone), r.ids, 10), 0.9);
  // Upsert moves id 1 onto query 0's position: it must come back first for that query.
  index.upsert(1, q.data(), std::vector<int64_t>{1}.data());
  std::copy_n(q.begin(), d, x.begin() + d);
  r = run(index, q, d, 1);
  EXPECT_EQ(r.ids[0], 1);
  EXPECT_NEAR(r.d[0], 0.0f, 1e-5f);
  EXPECT_EQ(index.get(1), std::vector<float>(q.begin(), q.begin() + std::ptrdiff_t(d)));
  // Compaction: the deleted rows go, the ids stay.
  const std::size_t live = index.size();
  index.compact();
  EXPECT_EQ(index.stored_rows(), live);
  EXPECT_EQ(index.size(), live);
  r = run(index, q, d, 10);
  for (int64_t id : r.ids) EXPECT_EQ(gone.count(id), 0u);
  check_results(Metric::L2, x, q, d, 10, r);
  EXPECT_GE(recall_at(truth_of(Metric::L2, x, q, d, 10, gone), r.ids, 10), 0.93);
}

TEST(GraphIndex, FilesOpenOnEitherBackend) {
  REQUIRE_DEVICE();
  const std::size_t n = 8000, d = 20;
  const auto x = clustered(n, d, 14);
  const auto q = clustered(100, d, 15);
  const auto truth = truth_of(Metric::Cosine, x, q, d, 10);
  const std::string path = (std::filesystem::temp_directory_path() / "hive_graph_index_test.hvg").string();
  GraphIndex index(gpu(), d, Metric::Cosine);
  index.add(n, x.data());
  const int64_t dropped = 17;
  index.remove(1, &dropped);
  index.save(path);
  // The CPU's HNSW opens it (one level) and searches it.
  HnswIndex cpu = HnswIndex::load(path);
  EXPECT_EQ(cpu.size(), n - 1);
  EXPECT_EQ(cpu.max_level(), 1);  // the entry points
  EXPECT_FALSE(cpu.contains(dropped));
  // The CPU descends from one entry point (the GPU scores all of them), so on these separated
  // clusters it needs a wider list than the GPU's default.
  Results rc{std::vector<float>(100 * 10), std::vector<int64_t>(100 * 10)};
  cpu.search(100, q.data(), 10, rc.d.data(), rc.ids.data(), 200);
  check_results(Metric::Cosine, x, q, d, 10, rc);
  EXPECT_GE(recall_at(truth, rc.ids, 10), 0.93);
  // And the GPU opens it back: the same graph, the same results.
  GraphIndex back = GraphIndex::load(path, gpu());
  EXPECT_EQ(back.size(), n - 1);
  EXPECT_EQ(back.next_id(), index.next_id());
  EXPECT_EQ(back.neighbors(5), index.neighbors(5));
  const auto a = run(index, q, d, 10), b = run(back, q, d, 10);
  EXPECT_EQ(a.ids, b.ids);
  // A CPU-built HNSW file opens on the GPU (its level 0).
  HnswIndex h(d, Metric::Cosine);
  h.add(n, x.data());
  h.save(path);
  GraphIndex from_cpu = GraphIndex::load(path, gpu());
  EXPECT_EQ(from_cpu.options().graph_degree, 32);
  const auto rg = run(from_cpu, q, d, 10);
  check_results(Metric::Cosine, x, q, d, 10, rg);
  EXPECT_GE(recall_at(truth, rg.ids, 10), 0.93);
  std::filesystem::remove(path);
}

TEST(GraphIndex, ErrorsLeaveTheIndexAsItWas) {
  REQUIRE_DEVICE();
  const std::size_t d = 8;
  const auto x = clustered(500, d, 16);
  GraphIndex index(gpu(), d, Metric::L2);
  index.add(500, x.data());
  auto code = [](auto&& f) {
    try {
      f();
    } catch (const Error& e) {
      return e.code();
    }
    return ErrorCode::Internal;  // nothing thrown
  };
  std::vector<float> bad(x.begin(), x.begin() + 2 * d);
  bad[d + 3] = std::numeric_limits<float>::quiet_NaN();
  EXPECT_EQ(code([&] { index.add(2, bad.data()); }), ErrorCode::NonFiniteValue);
  std::vector<float> dist(2048);
  std::vector<int64_t> ids(2048);
  EXPECT_EQ(code([&] { index.search(1, x.data(), 0, dist.data(), ids.data()); }), ErrorCode::InvalidK);
  EXPECT_EQ(code([&] { index.search(1, x.data(), 1025, dist.data(), ids.data()); }), ErrorCode::InvalidK);
  GraphSearchParams p;
  p.itopk = 48;
  EXPECT_EQ(code([&] { index.search(1, x.data(), 5, dist.data(), ids.data(), p); }), ErrorCode::InvalidArgument);
  p.itopk = 64;
  p.search_width = 5;
  EXPECT_EQ(code([&] { index.set_search_params(p); }), ErrorCode::InvalidArgument);
  EXPECT_EQ(code([&] { (void)index.get(12345); }), ErrorCode::UnknownId);
  EXPECT_EQ(code([&] { index.add_with_ids(1, x.data(), std::vector<int64_t>{3}.data()); }), ErrorCode::IdExists);
  EXPECT_EQ(index.size(), 500u);
  EXPECT_EQ(index.stored_rows(), 500u);
  const auto r = run(index, x, d, 1);
  std::size_t self = 0;
  for (std::size_t i = 0; i < 500; ++i) self += r.ids[i] == int64_t(i);
  EXPECT_GE(self, 495u);
  // Options.
  GraphOptions o;
  o.graph_degree = 7;
  EXPECT_EQ(code([&] { GraphIndex(gpu(), d, Metric::L2, o); }), ErrorCode::InvalidArgument);
  o.graph_degree = 32;
  o.intermediate_degree = 16;
  EXPECT_EQ(code([&] { GraphIndex(gpu(), d, Metric::L2, o); }), ErrorCode::InvalidArgument);
  EXPECT_EQ(code([&] { GraphIndex(gpu(), d, Metric::Hamming); }), ErrorCode::Unsupported);
  EXPECT_EQ(code([&] { GraphIndex(gpu(), 0, Metric::L2); }), ErrorCode::InvalidArgument);
  // A flat file is not a graph.
  const std::string path = (std::filesystem::temp_directory_path() / "hive_graph_index_flat.hvg").string();
  FlatIndex flat(Context::open("cpu"), d, Metric::L2);
  flat.add(10, x.data());
  flat.save(path);
  EXPECT_EQ(code([&] { (void)GraphIndex::load(path, gpu()); }), ErrorCode::Unsupported);
  std::filesystem::remove(path);
}

}  // namespace
