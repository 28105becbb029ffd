// GPU graph search (src/backends/cuda/graph_search.cu) measured before the GPU graph build
// exists: the graph is the level-0 layer of our CPU HNSW (degree 2M, built on all cores), so
// this times the search kernel alone. Recall@k against the exact CUDA flat index; QPS of one
// batch of every query per itopk (upload of the queries and download of the results included).
//   hive_gpu_bench_graph_search [--n 1000000] [--d 128] [--queries 10000] [--M 16] [--k 10]
//                               [--itopk 32,64,128,256] [--width 1,2,4]
#include <cuda_runtime_api.h>

#include <chrono>
#include <cstdio>
#include <set>
#include <string>
#include <vector>

#include "backends/cpu/hnsw_graph.hpp"
#include "backends/cuda/graph_search.hpp"
#include "hive_gpu/hive_gpu.hpp"
#include "random_data.hpp"

using namespace hive::gpu;
using bench::clustered_data;

namespace {
double since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}
void ok(cudaError_t e, const char* what) {
  if (e != cudaSuccess) {
    std::fprintf(stderr, "%s: %s\n", what, cudaGetErrorString(e));
    std::exit(1);
  }
}
}  // namespace

int main(int argc, char** argv) {
  std::size_t n = 1000000, d = 128, nq = 10000;
  int M = 16, k = 10;
  std::string itopks = "32,64,128,256", widths = "1";
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i], v = argv[i + 1];
    if (a == "--n") n = std::stoul(v);
    else if (a == "--d") d = std::stoul(v);
    else if (a == "--queries") nq = std::stoul(v);
    else if (a == "--M") M = std::stoi(v);
    else if (a == "--k") k = std::stoi(v);
    else if (a == "--itopk") itopks = v;
    else if (a == "--width") widths = v;
  }
  const std::vector<float> base = clustered_data(n, d, 1), queries = clustered_data(nq, d, 2);
  FlatIndex flat(Context::open("cuda"), d, Metric::L2);
  flat.add(n, base.data());
  std::vector<float> dist(nq * std::size_t(k));
  std::vector<int64_t> truth(nq * std::size_t(k));
  flat.search(nq, queries.data(), k, dist.data(), truth.data());
  auto t0 = std::chrono::steady_clock::now();
  flat.search(nq, queries.data(), k, dist.data(), truth.data());
  const double flat_qps = double(nq) / since(t0);

  cpu::HnswGraph g(d, Metric::L2, ScalarType::F32, cpu::HnswParams{M, 200, 100});
  t0 = std::chrono::steady_clock::now();
  g.add(n, base.data());
  const double build_s = since(t0);
  const int degree = 2 * M;
  std::vector<uint32_t> adj(n * std::size_t(degree), cuda::kNoNode);
  for (std::size_t i = 0; i < n; ++i) {
    const uint32_t* l = g.level0(i);
    for (uint32_t j = 0; j < l[0]; ++j) adj[i * std::size_t(degree) + j] = l[1 + j];
  }
  auto dev = [](std::size_t bytes) {
    void* p = nullptr;
    ok(cudaMalloc(&p, bytes), "cudaMalloc");
    return p;
  };
  auto* dbase = static_cast<float*>(dev(base.size() * 4));
  auto* dq = static_cast<float*>(dev(queries.size() * 4));
  auto* dg = static_cast<uint32_t*>(dev(adj.size() * 4));
  auto* dd = static_cast<float*>(dev(nq * std::size_t(k) * 4));
  auto* dn = static_cast<uint32_t*>(dev(nq * std::size_t(k) * 4));
  ok(cudaMemcpy(dbase, base.data(), base.size() * 4, cudaMemcpyHostToDevice), "upload");
  ok(cudaMemcpy(dg, adj.data(), adj.size() * 4, cudaMemcpyHostToDevice), "upload");
  std::printf("## GPU graph search on clustered %zu x %zu (graph: our CPU HNSW's level 0, M %d, degree %d, "
              "built in %.1f s), %zu queries, k %d\n\n",
              n, d, M, degree, build_s, nq, k);
  std::printf("| search | itopk | width | recall@%d | QPS |\n|---|---:|---:|---:|---:|\n", k);
  std::printf("| CUDA flat (exact) | - | - | 1.0000 | %.0f |\n", flat_qps);
  std::vector<uint32_t> nodes(nq * std::size_t(k));
  auto list = [](const std::string& s) {
    std::vector<int> out;
    for (std::size_t p = 0; p < s.size();) {
      const std::size_t e = s.find(',', p);
      out.push_back(std::stoi(s.substr(p, e - p)));
      p = e == std::string::npos ? s.size() : e + 1;
    }
    return out;
  };
  for (const int width : list(widths))
  for (const int itopk : list(itopks)) {
    cuda::GraphSearchArgs a;
    a.base = dbase;
    a.n = n;
    a.dim = d;
    a.graph = dg;
    a.degree = degree;
    a.queries = dq;
    a.nq = nq;
    a.k = k;
    a.itopk = itopk;
    a.seeds = 32;
    a.search_width = width;
    a.distances = dd;
    a.nodes = dn;
    double best = 1e30;
    for (int rep = 0; rep < 3; ++rep) {
      t0 = std::chrono::steady_clock::now();
      ok(cudaMemcpy(dq, queries.data(), queries.size() * 4, cudaMemcpyHostToDevice), "upload queries");
      cuda::launch_graph_search(a, nullptr);
      ok(cudaMemcpy(nodes.data(), dn, nodes.size() * 4, cudaMemcpyDeviceToHost), "download");
      best = std::min(best, since(t0));
    }
    std::size_t hits = 0;
    for (std::size_t q = 0; q < nq; ++q) {
      const std::set<int64_t> t(truth.begin() + std::ptrdiff_t(q * k), truth.begin() + std::ptrdiff_t((q + 1) * k));
      for (int j = 0; j < k; ++j) hits += t.count(int64_t(nodes[q * std::size_t(k) + std::size_t(j)]));
    }
    std::printf("| GPU graph | %d | %d | %.4f | %.0f |\n", itopk, width, double(hits) / double(nq * std::size_t(k)),
                double(nq) / best);
  }
  return 0;
}
