// The GPU graph search (launch_graph_search) on an exact k-NN graph built here on the host:
// recall against exact float64 neighbours, reported distances against float64, sorted unique
// results, repeatability, every itopk size, and the argument checks.
#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <set>
#include <vector>

#include "backends/cuda/graph_search.hpp"
#include "cuda_test_util.hpp"
#include "hive_gpu/error.hpp"

namespace hive::gpu::cuda {
namespace {

using test::DeviceMem;

struct Problem {
  std::size_t n, dim, nq;
  std::vector<float> base, queries;
};

Problem clustered(std::size_t n, std::size_t dim, std::size_t nq, uint32_t seed, bool normalise) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> g(0.0f, 1.0f);
  const std::size_t centers = 16;
  std::vector<float> c(centers * dim);
  for (auto& v : c) v = g(rng);
  auto draw = [&](std::size_t count) {
    std::vector<float> x(count * dim);
    for (std::size_t i = 0; i < count; ++i) {
      const std::size_t cc = rng() % centers;
      double s = 0;
      for (std::size_t j = 0; j < dim; ++j) {
        x[i * dim + j] = c[cc * dim + j] + 0.3f * g(rng);
        s += double(x[i * dim + j]) * x[i * dim + j];
      }
      if (normalise)
        for (std::size_t j = 0; j < dim; ++j) x[i * dim + j] = float(x[i * dim + j] / std::sqrt(s));
    }
    return x;
  };
  Problem p{n, dim, nq, {}, {}};
  p.base = draw(n);
  p.queries = draw(nq);
  return p;
}

// The kernels' convention: L2 squared distance; Cosine (normalised rows) 1 - dot.
double score(Metric m, const float* a, const float* b, std::size_t dim) {
  double s = 0;
  for (std::size_t j = 0; j < dim; ++j) s += m == Metric::L2 ? (double(a[j]) - b[j]) * (double(a[j]) - b[j]) : double(a[j]) * b[j];
  return m == Metric::L2 ? s : 1.0 - s;
}

std::vector<uint32_t> topk(Metric m, const std::vector<float>& x, std::size_t dim, const float* q, std::size_t k,
                           std::size_t skip = ~std::size_t(0)) {
  const std::size_t n = x.size() / dim;
  std::vector<std::pair<double, uint32_t>> all;
  for (std::size_t i = 0; i < n; ++i)
    if (i != skip) all.emplace_back(score(m, q, x.data() + i * dim, dim), uint32_t(i));
  std::partial_sort(all.begin(), all.begin() + std::ptrdiff_t(k), all.end());
  std::vector<uint32_t> out;
  for (std::size_t j = 0; j < k; ++j) out.push_back(all[j].second);
  return out;
}

// Each node's degree - 4 nearest other nodes (exact), then 4 random ones. The clusters are well
// apart, so a pure k-NN graph would fall into one component per cluster and a query whose
// cluster holds no start node could not be answered; the random links (a navigable small
// world's long edges) join them, as the pruned graphs of a real build do.
std::vector<uint32_t> knn_graph(Metric m, const Problem& p, int degree) {
  std::mt19937 rng(99);
  std::vector<uint32_t> g;
  g.reserve(p.n * std::size_t(degree));
  for (std::size_t i = 0; i < p.n; ++i) {
    const auto nb = topk(m, p.base, p.dim, p.base.data() + i * p.dim, std::size_t(degree - 4), i);
    g.insert(g.end(), nb.begin(), nb.end());
    for (int j = 0; j < 4; ++j) g.push_back(uint32_t(rng() % p.n));
  }
  return g;
}

struct Result {
  std::vector<float> dist;
  std::vector<uint32_t> nodes;
};

Result search(const Problem& p, Metric m, const std::vector<uint32_t>& graph, int degree, int k, int itopk,
              int max_iterations = 0, int width = 1) {
  DeviceMem base(p.base.size() * 4), queries(p.queries.size() * 4), g(graph.size() * 4), d(p.nq * k * 4),
      nodes(p.nq * k * 4);
  EXPECT_EQ(cudaMemcpy(base.p, p.base.data(), p.base.size() * 4, cudaMemcpyHostToDevice), cudaSuccess);
  EXPECT_EQ(cudaMemcpy(queries.p, p.queries.data(), p.queries.size() * 4, cudaMemcpyHostToDevice), cudaSuccess);
  EXPECT_EQ(cudaMemcpy(g.p, graph.data(), graph.size() * 4, cudaMemcpyHostToDevice), cudaSuccess);
  GraphSearchArgs a;
  a.base = base.as<float>();
  a.n = p.n;
  a.dim = p.dim;
  a.metric = m;
  a.graph = g.as<uint32_t>();
  a.degree = degree;
  a.queries = queries.as<float>();
  a.nq = p.nq;
  a.k = k;
  a.itopk = itopk;
  a.seeds = std::min(32, itopk);
  a.max_iterations = max_iterations;
  a.search_width = width;
  a.distances = d.as<float>();
  a.nodes = nodes.as<uint32_t>();
  launch_graph_search(a, nullptr);
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  Result r{std::vector<float>(p.nq * k), std::vector<uint32_t>(p.nq * k)};
  EXPECT_EQ(cudaMemcpy(r.dist.data(), d.p, r.dist.size() * 4, cudaMemcpyDeviceToHost), cudaSuccess);
  EXPECT_EQ(cudaMemcpy(r.nodes.data(), nodes.p, r.nodes.size() * 4, cudaMemcpyDeviceToHost), cudaSuccess);
  return r;
}

void check(const Problem& p, Metric m, const Result& r, int k, double min_recall) {
  std::size_t hits = 0;
  for (std::size_t q = 0; q < p.nq; ++q) {
    const float* qv = p.queries.data() + q * p.dim;
    const auto truth = topk(m, p.base, p.dim, qv, std::size_t(k));
    const std::set<uint32_t> t(truth.begin(), truth.end());
    std::set<uint32_t> seen;
    for (int j = 0; j < k; ++j) {
      const uint32_t node = r.nodes[q * std::size_t(k) + std::size_t(j)];
      ASSERT_LT(node, p.n) << "query " << q << " rank " << j;
      EXPECT_TRUE(seen.insert(node).second) << "node " << node << " twice for query " << q;
      const double want = score(m, qv, p.base.data() + std::size_t(node) * p.dim, p.dim);
      const float got = r.dist[q * std::size_t(k) + std::size_t(j)];
      EXPECT_NEAR(got, want, 1e-4 * std::max(1.0, std::fabs(want))) << "query " << q << " rank " << j;
      if (j > 0) {
        EXPECT_LE(r.dist[q * std::size_t(k) + std::size_t(j) - 1], got);
      }
      hits += t.count(node);
    }
  }
  EXPECT_GE(double(hits) / double(p.nq * std::size_t(k)), min_recall);
}

TEST(GraphSearch, L2RecallOnKnnGraph) {
  REQUIRE_DEVICE();
  const Problem p = clustered(4000, 32, 64, 1, false);
  const auto graph = knn_graph(Metric::L2, p, 24);
  const Result r = search(p, Metric::L2, graph, 24, 10, 64);
  check(p, Metric::L2, r, 10, 0.95);
  // The same seed, the same results.
  const Result again = search(p, Metric::L2, graph, 24, 10, 64);
  EXPECT_EQ(again.nodes, r.nodes);
  EXPECT_EQ(again.dist, r.dist);
  // Several entries expanded per iteration: the same quality.
  for (int width : {2, 4}) {
    SCOPED_TRACE("search_width " + std::to_string(width));
    check(p, Metric::L2, search(p, Metric::L2, graph, 24, 10, 64, 0, width), 10, 0.95);
  }
}

TEST(GraphSearch, CosineAndEveryItopk) {
  REQUIRE_DEVICE();
  const Problem p = clustered(3000, 20, 40, 2, true);
  const auto graph = knn_graph(Metric::Cosine, p, 32);
  for (int itopk : {32, 64, 128, 256}) {
    SCOPED_TRACE("itopk " + std::to_string(itopk));
    const int k = std::min(itopk, 16);
    check(p, Metric::Cosine, search(p, Metric::Cosine, graph, 32, k, itopk), k, itopk >= 64 ? 0.95 : 0.85);
  }
  // k = itopk: the whole list comes back, still valid and sorted.
  check(p, Metric::Cosine, search(p, Metric::Cosine, graph, 32, 32, 32), 32, 0.5);
}

TEST(GraphSearch, ShortListsAndFewIterations) {
  REQUIRE_DEVICE();
  const Problem p = clustered(2000, 16, 30, 3, false);
  auto graph = knn_graph(Metric::L2, p, 20);
  // Holes in every list (slots 8..15 of the nearest ones; the random links stay): kNoNode
  // entries must be skipped, not followed.
  for (std::size_t i = 0; i < p.n; ++i)
    for (int j = 8; j < 16; ++j) graph[i * 20 + std::size_t(j)] = kNoNode;
  check(p, Metric::L2, search(p, Metric::L2, graph, 20, 10, 64), 10, 0.9);
  // One expansion only: the results are still valid nodes with their true distances.
  check(p, Metric::L2, search(p, Metric::L2, graph, 20, 10, 64, 1), 10, 0.0);
}

TEST(GraphSearch, RejectsBadArguments) {
  GraphSearchArgs a;
  a.n = 10;
  a.nq = 1;
  a.dim = 4;
  a.degree = 8;
  a.k = 5;
  a.itopk = 64;
  // Each case changes one valid argument set; every one must be refused before any launch.
  const std::vector<std::pair<const char*, void (*)(GraphSearchArgs&)>> cases = {
      {"degree 0", [](GraphSearchArgs& b) { b.degree = 0; }},
      {"degree 65", [](GraphSearchArgs& b) { b.degree = 65; }},
      {"itopk 48", [](GraphSearchArgs& b) { b.itopk = 48; }},
      {"itopk 8", [](GraphSearchArgs& b) { b.itopk = 8; }},
      {"itopk 2048", [](GraphSearchArgs& b) { b.itopk = 2048; }},
      {"k above itopk", [](GraphSearchArgs& b) { b.k = 65; }},
      {"Hamming", [](GraphSearchArgs& b) { b.metric = Metric::Hamming; }},
      {"search_width 5", [](GraphSearchArgs& b) { b.search_width = 5; }},
  };
  auto all = cases;
  // Shared memory is the device's to say (cudaDevAttrMaxSharedMemoryPerBlockOptin).
  if (test::has_device())
    all.push_back({"dim too large for shared memory", [](GraphSearchArgs& b) {
                     b.itopk = 1024;
                     b.dim = 40000;
                   }});
  for (const auto& [what, change] : all) {
    GraphSearchArgs b = a;
    change(b);
    ErrorCode got = ErrorCode::Internal;  // nothing thrown
    try {
      launch_graph_search(b, nullptr);
    } catch (const Error& e) {
      got = e.code();
    }
    EXPECT_EQ(got, ErrorCode::InvalidArgument) << what;
  }
}

}  // namespace
}  // namespace hive::gpu::cuda
