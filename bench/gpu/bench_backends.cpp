// Side-by-side benchmark of GPU backends through the public API: the same random data set is
// loaded into a FlatIndex on each backend named, then single queries (median of many calls)
// and one large batch (median of a few) are timed, query upload and result download included.
// Each backend's ids are checked against the first backend's (exact search: they must agree
// but for ties), so a faster but wrong path cannot pass unnoticed. A backend may carry one
// environment setting for its run, "name+VAR=value": cuda+HIVE_GPU_CUDA_PORTABLE=1 times the
// CUDA backend on the paths a HIP build takes.
//   hive_gpu_bench_backends [--backends cuda,vulkan] [--n 1000000] [--d 128] [--k 10]
//                           [--batch 10000] [--single-iters 200] [--json FILE]
//                           [--metric l2|ip|cosine|l1|linf] [--storage f32|f16|bf16]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "hive_gpu/hive_gpu.hpp"
#include "random_data.hpp"

namespace {

using namespace hive::gpu;

using bench::uniform_data;

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  std::size_t a = 0;
  while (a <= s.size()) {
    const std::size_t b = s.find(',', a);
    out.push_back(s.substr(a, b == std::string::npos ? std::string::npos : b - a));
    if (b == std::string::npos) break;
    a = b + 1;
  }
  return out;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// Fraction of reference ids (per query, as sets) found in `got`.
double agreement(const std::vector<int64_t>& ref, const std::vector<int64_t>& got, std::size_t nq, int k) {
  std::size_t hit = 0;
  for (std::size_t q = 0; q < nq; ++q) {
    std::vector<int64_t> a(ref.begin() + long(q * k), ref.begin() + long((q + 1) * k));
    std::vector<int64_t> b(got.begin() + long(q * k), got.begin() + long((q + 1) * k));
    std::sort(a.begin(), a.end());
    std::sort(b.begin(), b.end());
    std::vector<int64_t> both;
    std::set_intersection(a.begin(), a.end(), b.begin(), b.end(), std::back_inserter(both));
    hit += both.size();
  }
  return double(hit) / double(nq * std::size_t(k));
}

struct Result {
  std::string backend, device, what;
  std::size_t nq;
  double us, agree;
};

}  // namespace

int main(int argc, char** argv) {
  std::string backends = "cuda,vulkan", json;
  std::size_t n = 1000000, d = 128, batch = 10000;
  int k = 10, iters = 200;
  Metric metric = Metric::L2;
  ScalarType storage = ScalarType::F32;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i], v = argv[i + 1];
    if (a == "--backends") backends = v;
    else if (a == "--n") n = std::stoul(v);
    else if (a == "--d") d = std::stoul(v);
    else if (a == "--k") k = std::stoi(v);
    else if (a == "--batch") batch = std::stoul(v);
    else if (a == "--single-iters") iters = std::stoi(v);
    else if (a == "--json") json = v;
    else if (a == "--metric") metric = parse_metric(v);
    else if (a == "--storage") storage = parse_scalar_type(v);
    else {
      std::fprintf(stderr, "unknown option %s\n", a.c_str());
      return 2;
    }
  }
  const std::vector<float> base = uniform_data(n * d, 1);
  const std::vector<float> queries = uniform_data(batch * d, 2);
  std::vector<Result> results;
  std::vector<std::pair<std::string, double>> adds;  // backend, ms for add() of the whole base
  std::vector<int64_t> ref_single, ref_batch;
  using clock = std::chrono::steady_clock;
  for (const std::string& be : split(backends)) {
    // "name+VAR=value": the setting holds while this backend is timed.
    const std::size_t plus = be.find('+');
    std::string env_var;
    if (plus != std::string::npos) {
      const std::string setting = be.substr(plus + 1);
      const std::size_t eq = setting.find('=');
      env_var = setting.substr(0, eq);
      setenv(env_var.c_str(), eq == std::string::npos ? "1" : setting.substr(eq + 1).c_str(), 1);
    }
    Context ctx = Context::open(be.substr(0, plus));
    FlatOptions opts;
    opts.storage = storage;
    FlatIndex idx(ctx, d, metric, opts);
    const auto t_add = clock::now();
    idx.add(n, base.data());  // host to device: encoding, staging and copies
    adds.push_back({be, std::chrono::duration<double, std::milli>(clock::now() - t_add).count()});
    const std::string dev = ctx.info().id() + " " + ctx.info().name;
    std::vector<float> dist(batch * std::size_t(k));
    std::vector<int64_t> ids(batch * std::size_t(k));
    // Single queries: warm-up (50 calls: with 10, the first Vulkan backend of a run measured up to
    // ~18% slower than the same backend later in the run on the H100), then `iters` timed calls
    // cycling through the query set.
    std::vector<int64_t> single(std::size_t(iters) * std::size_t(k));
    for (int w = 0; w < 50; ++w) idx.search(1, queries.data() + std::size_t(w) % batch * d, k, dist.data(), ids.data());
    std::vector<double> t;
    for (int i = 0; i < iters; ++i) {
      const std::size_t q = std::size_t(i) % batch;
      const auto t0 = clock::now();
      idx.search(1, queries.data() + q * d, k, dist.data(), single.data() + std::size_t(i) * std::size_t(k));
      t.push_back(std::chrono::duration<double, std::micro>(clock::now() - t0).count());
    }
    if (ref_single.empty()) ref_single = single;
    results.push_back({be, dev, "single", 1, median(t), agreement(ref_single, single, std::size_t(iters), k)});
    // The batch: one warm-up, then three timed calls.
    idx.search(batch, queries.data(), k, dist.data(), ids.data());
    t.clear();
    for (int i = 0; i < 3; ++i) {
      const auto t0 = clock::now();
      idx.search(batch, queries.data(), k, dist.data(), ids.data());
      t.push_back(std::chrono::duration<double, std::micro>(clock::now() - t0).count());
    }
    if (ref_batch.empty()) ref_batch = ids;
    results.push_back({be, dev, "batch", batch, median(t), agreement(ref_batch, ids, batch, k)});
    std::fprintf(stderr, "%s done\n", be.c_str());
    if (!env_var.empty()) unsetenv(env_var.c_str());
  }
  std::printf("metric %s, storage %s\n\n", std::string(to_string(metric)).c_str(), std::string(to_string(storage)).c_str());
  std::printf("| backend | device | n | d | k | queries | median us | vs first backend | ids agree |\n");
  std::printf("|---|---|---:|---:|---:|---:|---:|---:|---:|\n");
  for (const auto& r : results) {
    double first = 0;
    for (const auto& o : results)
      if (o.what == r.what) {
        first = o.us;
        break;
      }
    std::printf("| %s | %s | %zu | %zu | %d | %zu | %.1f | %.2fx | %.4f |\n", r.backend.c_str(), r.device.c_str(), n,
                d, k, r.nq, r.us, r.us / first, r.agree);
  }
  std::printf("\n| backend | add() of %zu x %zu fp32 vectors, ms | GB/s of rows |\n|---|---:|---:|\n", n, d);
  for (const auto& [be, ms] : adds)
    std::printf("| %s | %.1f | %.2f |\n", be.c_str(), ms, double(n * d * sizeof(float)) / (ms * 1e6));
  if (!json.empty()) {
    std::ofstream f(json);
    f << "[\n";
    for (std::size_t i = 0; i < results.size(); ++i) {
      const auto& r = results[i];
      f << "  {\"backend\": \"" << r.backend << "\", \"what\": \"" << r.what << "\", \"n\": " << n << ", \"d\": " << d
        << ", \"k\": " << k << ", \"nq\": " << r.nq << ", \"median_us\": " << r.us << ", \"agree\": " << r.agree
        << "}" << (i + 1 < results.size() ? ",\n" : "\n");
    }
    f << "]\n";
  }
  return 0;
}
