// GPU benchmark of the public API: FlatIndex::search on the CUDA backend (query upload and
// result download included), median wall time over many calls after warm-up, next to the read
// floor n * d * 4 / copy bandwidth (issue 3's definition: the vectors read once at the measured
// device-to-device copy rate, bytes read + written; PyTorch's script uses the same), with recall@10
// against an exact float64 reference.
//   hive_gpu_bench_gpu [--n 100000,1000000,10000000] [--d 128] [--json FILE] [--quick]
// Single queries on fp32 rows read the store's fp16 copy by default ("f16 copy"); each n also
// times the same query on the fp32 rows ("fp32 rows", HIVE_GPU_CUDA_NO_F16_SCREEN=1).
// At n = 1M it also times inner product (fp32 and fp16 storage), L2 on fp16 storage, and the
// batch on the earlier cuBLAS path (exact, and with TF32 screening); those rows go to
// "extra_rows" in the JSON (scripts/gpu-check's table compares "rows" with torch's L2
// figures), each with the key of the matching torch figure ("torch_key").
#include <cuda_fp16.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <numeric>
#include <sstream>
#include <string>
#include <vector>

#include "backends/cuda/cuda_flat_store.hpp"
#include "hive_gpu/hive_gpu.hpp"
#include "random_data.hpp"

namespace {

using namespace hive::gpu;

struct Row {
  std::size_t n, d, nq;
  int k;
  double median_us, qps, floor_us, recall;
  int iters;
  std::string metric = "l2", storage = "f32", screen = "exact";
  std::string torch_key() const {
    return (metric == "ip" ? std::string("ip") : std::string("l2")) + (storage == "f16" ? "_fp16" : "") + "_b" +
           std::to_string(nq) + "_us";
  }
};

using bench::uniform_data;

double copy_bandwidth(std::size_t bytes) {
  void *a = nullptr, *b = nullptr;
  if (cudaMalloc(&a, bytes) != cudaSuccess || cudaMalloc(&b, bytes) != cudaSuccess) {
    std::fprintf(stderr, "bench: cudaMalloc for the bandwidth test failed\n");
    std::exit(2);
  }
  cudaMemset(a, 1, bytes);
  cudaEvent_t e0, e1;
  cudaEventCreate(&e0);
  cudaEventCreate(&e1);
  std::vector<float> ms;
  for (int i = 0; i < 13; ++i) {
    cudaEventRecord(e0);
    cudaMemcpy(b, a, bytes, cudaMemcpyDeviceToDevice);
    cudaEventRecord(e1);
    cudaEventSynchronize(e1);
    float t = 0;
    cudaEventElapsedTime(&t, e0, e1);
    if (i >= 3) ms.push_back(t);
  }
  std::sort(ms.begin(), ms.end());
  cudaFree(a);
  cudaFree(b);
  return 2.0 * double(bytes) / (double(ms[ms.size() / 2]) * 1e-3);  // bytes read + written per second
}

// Exact L2 (or inner-product, ranked by -dot) neighbours (float64) of query q.
std::vector<int64_t> exact_l2(const std::vector<float>& x, std::size_t n, std::size_t d, const float* q, int k,
                              bool ip = false) {
  std::vector<std::pair<double, int64_t>> all(n);
  for (std::size_t i = 0; i < n; ++i) {
    double s = 0;
    const float* r = x.data() + i * d;
    for (std::size_t j = 0; j < d; ++j) {
      if (ip) {
        s -= double(q[j]) * double(r[j]);
      } else {
        const double t = double(q[j]) - double(r[j]);
        s += t * t;
      }
    }
    all[i] = {s, int64_t(i)};
  }
  std::partial_sort(all.begin(), all.begin() + k, all.end());
  std::vector<int64_t> ids(std::size_t(k), 0);
  for (int j = 0; j < k; ++j) ids[std::size_t(j)] = all[std::size_t(j)].second;
  return ids;
}

double recall_at(const std::vector<float>& x, std::size_t n, std::size_t d, const std::vector<float>& q,
                 const std::vector<int64_t>& got, int k, std::size_t check_queries, bool ip = false) {
  const int kk = std::min(k, 10);
  double hit = 0;
  for (std::size_t qi = 0; qi < check_queries; ++qi) {
    const auto want = exact_l2(x, n, d, q.data() + qi * d, kk, ip);
    for (int j = 0; j < kk; ++j)
      for (int jj = 0; jj < kk; ++jj)
        if (got[qi * std::size_t(k) + std::size_t(jj)] == want[std::size_t(j)]) {
          hit += 1;
          break;
        }
  }
  return hit / double(check_queries * std::size_t(kk));
}

// x rounded to fp16 and back (what an fp16 index stores), for its exact reference.
std::vector<float> round_f16(const std::vector<float>& x) {
  std::vector<float> r(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) r[i] = __half2float(__float2half_rn(x[i]));
  return r;
}

// Median wall time of FlatIndex::search over `iters` calls after 3 warm-up calls.
Row time_case(FlatIndex& idx, const std::vector<float>& xref, std::size_t n, std::size_t d, std::size_t nq, int k,
              double floor_us, bool quick, bool ip) {
  const auto q = uniform_data(nq * d, 1000 + nq + std::size_t(k));
  std::vector<float> dist(nq * std::size_t(k));
  std::vector<int64_t> ids(nq * std::size_t(k));
  const double work = double(n) * double(nq);
  int iters = work <= 2e8 ? 200 : work <= 2e9 ? 50 : 7;
  if (quick) iters = std::max(3, iters / 10);
  const auto screen0 = hive::gpu::cuda::single_screen_stats();
  for (int w = 0; w < 3; ++w) idx.search(nq, q.data(), k, dist.data(), ids.data());
  std::vector<double> us;
  for (int it = 0; it < iters; ++it) {
    const auto t0 = std::chrono::steady_clock::now();
    idx.search(nq, q.data(), k, dist.data(), ids.data());
    const auto t1 = std::chrono::steady_clock::now();
    us.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
  }
  const auto screen1 = hive::gpu::cuda::single_screen_stats();
  if (screen1.inconclusive > screen0.inconclusive || screen1.answered > screen0.answered)
    std::printf("(single queries: %llu answered through the fp16 copy, %llu left to the fp32 rows)\n",
                static_cast<unsigned long long>(screen1.answered - screen0.answered),
                static_cast<unsigned long long>(screen1.inconclusive - screen0.inconclusive));
  std::sort(us.begin(), us.end());
  const double med = us[us.size() / 2];
  const std::size_t check = std::min<std::size_t>(nq, n >= 10000000 ? 2 : 8);
  const double rec = recall_at(xref, n, d, q, ids, k, check, ip);
  return Row{n, d, nq, k, med, double(nq) / (med * 1e-6), floor_us, rec, iters};
}

void print_row(const Row& r) {
  std::printf("{\"n\": %zu, \"d\": %zu, \"nq\": %zu, \"k\": %d, \"metric\": \"%s\", \"storage\": \"%s\", "
              "\"screen\": \"%s\", \"median_us\": %.2f, \"qps\": %.1f, \"floor_us\": %.2f, \"x_floor\": %.3f, "
              "\"recall10\": %.4f, \"iters\": %d}\n",
              r.n, r.d, r.nq, r.k, r.metric.c_str(), r.storage.c_str(), r.screen.c_str(), r.median_us, r.qps,
              r.floor_us, r.median_us / r.floor_us, r.recall, r.iters);
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::size_t> ns = {100000, 1000000, 10000000};
  std::size_t d = 128;
  std::string json_path;
  bool quick = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--n" && i + 1 < argc) {
      ns.clear();
      std::stringstream ss(argv[++i]);
      for (std::string t; std::getline(ss, t, ',');) ns.push_back(std::stoull(t));
    } else if (a == "--d" && i + 1 < argc) {
      d = std::stoull(argv[++i]);
    } else if (a == "--json" && i + 1 < argc) {
      json_path = argv[++i];
    } else if (a == "--quick") {
      quick = true;
    } else {
      std::fprintf(stderr, "usage: %s [--n N1,N2,..] [--d D] [--json FILE] [--quick]\n", argv[0]);
      return 2;
    }
  }
  try {
    const Context ctx = Context::open("cuda");
    const DeviceInfo& info = ctx.info();
    std::printf("device %s (%s, %d SMs, %.1f GiB), %s, %s\n", info.name.c_str(), info.architecture.c_str(),
                info.compute_units, double(info.total_memory) / double(1ull << 30), info.driver_version.c_str(),
                info.runtime_version.c_str());
    const double bw = copy_bandwidth(std::size_t(1) << 30);
    std::printf("device copy bandwidth %.3f TB/s (read + written)\n", bw / 1e12);
    std::vector<Row> rows, extra_rows;
    for (std::size_t n : ns) {
      std::printf("n = %zu: generating and adding...\n", n);
      std::fflush(stdout);
      const auto x = uniform_data(n * d, 1);
      FlatIndex idx(ctx, d, Metric::L2);
      idx.add(n, x.data());
      const double floor_us = double(n * d * 4) / bw * 1e6;
      struct Case {
        std::size_t nq;
        int k;
      };
      std::vector<Case> cases = {{1, 10}, {100, 10}};
      if (n == 1000000) {
        cases.push_back({1, 1024});
        cases.push_back({10000, 10});
      }
      for (const Case& c : cases) {
        Row r = time_case(idx, x, n, d, c.nq, c.k, floor_us, quick, false);
        // single_screen / single_query_large_k in cuda_flat_store.cpp
        if (c.nq == 1 && n >= 16384 && (c.k <= 16 || (c.k > 32 && c.k <= 1024)))
          r.screen = c.k <= 16 ? "f16 copy" : "f16 copy + radix";
        rows.push_back(r);
        print_row(r);
      }
      {
        // The same single query reading the fp32 rows (HIVE_GPU_CUDA_NO_F16_SCREEN=1, read per
        // search): the fused scan without the fp16 copy.
        setenv("HIVE_GPU_CUDA_NO_F16_SCREEN", "1", 1);
        Row r = time_case(idx, x, n, d, 1, 10, floor_us, quick, false);
        unsetenv("HIVE_GPU_CUDA_NO_F16_SCREEN");
        r.screen = "fp32 rows";
        extra_rows.push_back(r);
        print_row(r);
      }
      if (n == 1000000) {
        // Inner product and fp16 storage (PyTorch's ip / ip_fp16 figures). Batches take the
        // tensor-core screen by default (exact results); "cublas" rows force the earlier path
        // (HIVE_GPU_CUDA_NO_SCREEN=1: cuBLAS score tiles; with TF32 screening when "tf32").
        auto extra = [&](FlatIndex& index, const std::vector<float>& xref, const char* metric, const char* storage,
                         double fl, std::size_t nq, const char* path = "default") {
          const bool cublas = std::strncmp(path, "cublas", 6) == 0;
          const bool mma_sync = std::strcmp(path, "screen mma.sync") == 0;
          if (cublas) setenv("HIVE_GPU_CUDA_NO_SCREEN", "1", 1);
          if (mma_sync) setenv("HIVE_GPU_CUDA_NO_WGMMA", "1", 1);
          if (std::strcmp(path, "cublas-tf32") == 0) setenv("HIVE_GPU_CUDA_TF32", "1", 1);
          Row r = time_case(index, xref, n, d, nq, 10, fl, quick, std::strcmp(metric, "ip") == 0);
          unsetenv("HIVE_GPU_CUDA_NO_SCREEN");
          unsetenv("HIVE_GPU_CUDA_TF32");
          unsetenv("HIVE_GPU_CUDA_NO_WGMMA");
          r.metric = metric;
          r.storage = storage;
          r.screen = mma_sync                ? path
                     : nq >= 32 && !cublas ? "screen"
                     : nq == 1 && std::strcmp(storage, "f32") == 0 ? "f16 copy"
                                                                   : path;
          extra_rows.push_back(r);
          print_row(r);
        };
        // The batch screen on its mma.sync kernel (HIVE_GPU_CUDA_NO_WGMMA=1), beside the default
        // (wgmma on sm_90).
        extra(idx, x, "l2", "f32", floor_us, 10000, "screen mma.sync");
        extra(idx, x, "l2", "f32", floor_us, 10000, "cublas");
        extra(idx, x, "l2", "f32", floor_us, 10000, "cublas-tf32");
        {
          FlatIndex ip(ctx, d, Metric::InnerProduct);
          ip.add(n, x.data());
          extra(ip, x, "ip", "f32", floor_us, 1);
          extra(ip, x, "ip", "f32", floor_us, 10000);
          extra(ip, x, "ip", "f32", floor_us, 10000, "screen mma.sync");
        }
        {
          const auto xh = round_f16(x);
          FlatIndex h(ctx, d, Metric::InnerProduct, FlatOptions{ScalarType::F16});
          h.add(n, x.data());
          extra(h, xh, "ip", "f16", floor_us / 2, 1);
          extra(h, xh, "ip", "f16", floor_us / 2, 10000);
          extra(h, xh, "ip", "f16", floor_us / 2, 10000, "screen mma.sync");
          FlatIndex hl(ctx, d, Metric::L2, FlatOptions{ScalarType::F16});
          hl.add(n, x.data());
          extra(hl, xh, "l2", "f16", floor_us / 2, 1);
          extra(hl, xh, "l2", "f16", floor_us / 2, 10000);
        }
      }
    }
    auto json_rows = [](std::ofstream& out, const std::vector<Row>& rs) {
      for (std::size_t i = 0; i < rs.size(); ++i) {
        const Row& r = rs[i];
        out << "  {\"n\": " << r.n << ", \"d\": " << r.d << ", \"nq\": " << r.nq << ", \"k\": " << r.k
            << ", \"metric\": \"" << r.metric << "\", \"storage\": \"" << r.storage << "\", \"screen\": \""
            << r.screen << "\", \"torch_key\": \"" << r.torch_key() << "\", \"median_us\": " << r.median_us
            << ", \"qps\": " << r.qps << ", \"floor_us\": " << r.floor_us << ", \"recall10\": " << r.recall
            << ", \"iters\": " << r.iters << "}" << (i + 1 < rs.size() ? "," : "") << "\n";
      }
    };
    if (!json_path.empty()) {
      std::ofstream out(json_path);
      out << "{\"device\": \"" << info.name << "\", \"copy_TBps\": " << bw / 1e12 << ", \"rows\": [\n";
      json_rows(out, rows);
      out << "], \"extra_rows\": [\n";
      json_rows(out, extra_rows);
      out << "]}\n";
    }
    std::printf("\n| n | nq | k | metric | storage | screen | median us | QPS | floor us | x floor | recall@10 |\n"
                "|---:|---:|---:|---|---|---|---:|---:|---:|---:|---:|\n");
    for (const auto* rs : {&rows, &extra_rows})
      for (const Row& r : *rs)
        std::printf("| %zu | %zu | %d | %s | %s | %s | %.1f | %.0f | %.1f | %.2f | %.4f |\n", r.n, r.nq, r.k,
                    r.metric.c_str(), r.storage.c_str(), r.screen.c_str(), r.median_us, r.qps, r.floor_us,
                    r.median_us / r.floor_us, r.recall);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench: %s\n", e.what());
    return 1;
  }
  return 0;
}
