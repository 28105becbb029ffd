// Graph indexes side by side in one process: hnswlib (its header-only C++ library, Debian's
// libhnswlib-dev; not part of this repository) and our HnswIndex, same data, same M /
// ef_construction, same threads; and the best GPU flat index as the brute-force reference.
// For each: build seconds, then recall@k and QPS of one batch of every query per ef (the
// fastest of three timed runs after a warm-up). The exact
// ground truth comes from FlatIndex on the best device (exact on every backend).
//   hive_gpu_bench_graph [--dataset fashion-mnist|clustered:N:D|random:N:D] [--queries 10000]
//                        [--threads T] [--M 16] [--ef-construction 200] [--ef 10,20,...] [--k 10]
//                        [--skip hnswlib|hive-gpu|flat|graph] [--itopk 16,32,...] [--width 1,2,4] [--max-iter 0,10,12,14]
//                        [--rows u8,f16,f32]
// HIVE_GPU_NUM_THREADS must equal --threads for a fair build (gpu-check sets both).
#include <hnswlib/hnswlib.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "datasets.hpp"
#include "hive_gpu/hive_gpu.hpp"

namespace {

using namespace hive::gpu;
using clock_type = std::chrono::steady_clock;

double since(clock_type::time_point t0) { return std::chrono::duration<double>(clock_type::now() - t0).count(); }

// Runs f(i) for i < n on `threads` threads (an atomic counter hands out chunks of 16).
template <class F>
void parallel(std::size_t n, int threads, F&& f) {
  std::atomic<std::size_t> next{0};
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t)
    pool.emplace_back([&] {
      for (;;) {
        const std::size_t b = next.fetch_add(16);
        if (b >= n) return;
        for (std::size_t i = b; i < std::min(n, b + 16); ++i) f(i);
      }
    });
  for (auto& th : pool) th.join();
}

// Seconds of the fastest of three timed runs after one warm-up run (the results of the last
// run stay in the caller's buffers for the recall).
template <class F>
double best_of(F&& run) {
  run();
  double best = 1e30;
  for (int rep = 0; rep < 3; ++rep) {
    const auto t0 = clock_type::now();
    run();
    best = std::min(best, since(t0));
  }
  return best;
}

double recall(const std::vector<int64_t>& found, const std::vector<int64_t>& truth, std::size_t nq, int k) {
  std::size_t hits = 0;
  for (std::size_t q = 0; q < nq; ++q) {
    const std::set<int64_t> t(truth.begin() + std::ptrdiff_t(q * k), truth.begin() + std::ptrdiff_t((q + 1) * k));
    for (int j = 0; j < k; ++j) hits += t.count(found[q * std::size_t(k) + std::size_t(j)]);
  }
  return double(hits) / double(nq * std::size_t(k));
}

struct Point {
  int ef;
  double recall, qps;
};
struct Result {
  std::string name;
  double build_s = 0;
  std::vector<Point> curve;
};

// QPS at a recall on a curve (log QPS linear in recall between neighbouring points), or 0.
double qps_at(std::vector<Point> c, double target) {
  std::sort(c.begin(), c.end(), [](const Point& a, const Point& b) { return a.recall < b.recall; });
  if (!c.empty() && c.front().recall >= target) return c.front().qps;
  for (std::size_t i = 0; i + 1 < c.size(); ++i) {
    if (c[i].recall <= target && target <= c[i + 1].recall && c[i + 1].recall > c[i].recall) {
      const double t = (target - c[i].recall) / (c[i + 1].recall - c[i].recall);
      return std::exp(std::log(c[i].qps) + t * (std::log(c[i + 1].qps) - std::log(c[i].qps)));
    }
  }
  return 0;
}

std::vector<int> parse_list(const std::string& s) {
  std::vector<int> out;
  std::size_t p = 0;
  while (p < s.size()) {
    const std::size_t e = s.find(',', p);
    out.push_back(std::stoi(s.substr(p, e - p)));
    if (e == std::string::npos) break;
    p = e + 1;
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  std::string dataset = "fashion-mnist", skip, ef_list = "10,16,20,32,40,64,80,128,256", itopk_list = "16,32,64,128",
              width_list = "1,2,4", max_iter_list = "0,10,12,14", rows_list = "u8,f16,f32";
  std::size_t nq = 10000;
  int threads = int(std::thread::hardware_concurrency()), M = 16, efc = 200, k = 10;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i], v = argv[i + 1];
    if (a == "--dataset") dataset = v;
    else if (a == "--queries") nq = std::stoul(v);
    else if (a == "--threads") threads = std::stoi(v);
    else if (a == "--M") M = std::stoi(v);
    else if (a == "--ef-construction") efc = std::stoi(v);
    else if (a == "--ef") ef_list = v;
    else if (a == "--k") k = std::stoi(v);
    else if (a == "--skip") skip = v;
    else if (a == "--itopk") itopk_list = v;
    else if (a == "--width") width_list = v;
    else if (a == "--max-iter") max_iter_list = v;
    else if (a == "--rows") rows_list = v;
    else {
      std::fprintf(stderr, "unknown option %s\n", a.c_str());
      return 2;
    }
  }
  const std::vector<int> efs = parse_list(ef_list);
  const tool::Dataset ds =
      tool::load_dataset(tool::parse_dataset_spec(dataset), nq, 42, tool::fashion_mnist_dir());
  const std::size_t n = ds.n, d = ds.d;
  nq = ds.nq;
  const std::size_t kk = std::size_t(k);

  // Ground truth (and the brute-force reference) on the best device.
  const Context best = Context::open("auto");
  FlatIndex flat(best, d, Metric::L2);
  flat.add(n, ds.base.data());
  std::vector<float> dist(nq * kk);
  std::vector<int64_t> truth(nq * kk), found(nq * kk);
  flat.search(nq, ds.queries.data(), k, dist.data(), truth.data());
  std::vector<Result> results;
  if (skip.find("flat") == std::string::npos) {
    const double secs = best_of([&] { flat.search(nq, ds.queries.data(), k, dist.data(), found.data()); });
    results.push_back({"flat (" + best.info().id() + ", exact)", 0, {{0, recall(found, truth, nq, k), double(nq) / secs}}});
  }

  if (skip.find("hnswlib") == std::string::npos) {
    hnswlib::L2Space space(d);
    hnswlib::HierarchicalNSW<float> h(&space, n, std::size_t(M), std::size_t(efc), 100);
    auto t0 = clock_type::now();
    h.addPoint(ds.base.data(), 0);  // the first point alone, as hnswlib's own parallel add does
    parallel(n - 1, threads, [&](std::size_t i) { h.addPoint(ds.base.data() + (i + 1) * d, i + 1); });
    Result r{"hnswlib (Debian 0.6.2 header)", since(t0), {}};
    for (int ef : efs) {
      h.setEf(std::size_t(std::max(ef, k)));
      auto run = [&] {
        parallel(nq, threads, [&](std::size_t q) {
          auto pq = h.searchKnn(ds.queries.data() + q * d, kk);
          for (std::size_t j = kk; j-- > 0;) {
            found[q * kk + j] = pq.empty() ? -1 : int64_t(pq.top().second);
            if (!pq.empty()) pq.pop();
          }
        });
      };
      const double secs = best_of(run);
      r.curve.push_back({ef, recall(found, truth, nq, k), double(nq) / secs});
    }
    results.push_back(r);
  }

  if (skip.find("hive-gpu") == std::string::npos) {
    HnswOptions o;
    o.M = M;
    o.ef_construction = efc;
    HnswIndex g(d, Metric::L2, o);
    auto t0 = clock_type::now();
    g.add(n, ds.base.data());
    Result r{"hive-gpu HnswIndex (CPU)", since(t0), {}};
    for (int ef : efs) {
      const double secs = best_of([&] { g.search(nq, ds.queries.data(), k, dist.data(), found.data(), ef); });
      r.curve.push_back({ef, recall(found, truth, nq, k), double(nq) / secs});
    }
    results.push_back(r);
  }

  // The GPU-built graph (GraphIndex) where the best device has one. Its build is timed after a
  // small warm-up build, so the timing leaves out loading cuBLAS once per process.
  const std::string backend = best.info().backend;
  if (skip.find("graph") == std::string::npos && (backend == "cuda" || backend == "hip")) {
    {
      GraphIndex warm(best, d, Metric::L2);
      warm.add(std::min<std::size_t>(n, 10000), ds.base.data());
    }
    GraphIndex g(best, d, Metric::L2);
    auto t0 = clock_type::now();
    g.add(n, ds.base.data());
    const double build_s = since(t0);
    std::vector<std::string> encodings;
    for (std::size_t p = 0; p <= rows_list.size();) {
      const std::size_t e = std::min(rows_list.find(',', p), rows_list.size());
      encodings.push_back(rows_list.substr(p, e - p));
      p = e + 1;
    }
    for (const std::string& rows : encodings)
    for (int width : parse_list(width_list))
    for (int max_iter : parse_list(max_iter_list)) {
      // The traversal rows: uint8 codes or fp16 (the default), the best entries re-scored in
      // fp32; or fp32 throughout.
      setenv("HIVE_GPU_GRAPH_ROWS", rows.c_str(), 1);
      Result r{"hive-gpu GraphIndex (" + best.info().id() + ", " + rows + " traversal, width " + std::to_string(width) +
                   (max_iter > 0 ? ", max_iterations " + std::to_string(max_iter) : std::string()) + ")",
               build_s, {}};
      for (int itopk : parse_list(itopk_list)) {
        GraphSearchParams p;
        p.itopk = itopk;
        p.search_width = width;
        p.max_iterations = max_iter;
        const double secs = best_of([&] { g.search(nq, ds.queries.data(), k, dist.data(), found.data(), p); });
        r.curve.push_back({itopk, recall(found, truth, nq, k), double(nq) / secs});
      }
      results.push_back(r);
    }
  }

  std::printf("## %s: n %zu, d %zu, %zu queries, k %d, M %d, ef_construction %d, %d threads\n\n", ds.name.c_str(), n,
              d, nq, k, M, efc, threads);
  std::printf("| index | build s | QPS at recall 0.95 | QPS at recall 0.99 |\n|---|---:|---:|---:|\n");
  for (const auto& r : results)
    std::printf("| %s | %.2f | %.0f | %.0f |\n", r.name.c_str(), r.build_s, qps_at(r.curve, 0.95), qps_at(r.curve, 0.99));
  std::printf("\n| index | ef (GraphIndex: itopk) | recall@%d | QPS |\n|---|---:|---:|---:|\n", k);
  for (const auto& r : results)
    for (const auto& p : r.curve) std::printf("| %s | %d | %.4f | %.0f |\n", r.name.c_str(), p.ef, p.recall, p.qps);
  return 0;
}
