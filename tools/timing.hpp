// hive-gpu command: timing batched searches (per-batch wall time, QPS, percentiles).
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

namespace hive::gpu {
class Index;
}

namespace hive::gpu::tool {

struct BatchPlan {
  std::size_t batch = 1;        // queries per search call
  std::size_t queries = 0;      // queries available (a prefix of the query set)
  double time_budget_s = 20;    // stop starting new batches of the first pass after this
  int repeat = 1;               // passes over the queries covered by the first pass, at least
  double min_time_s = 0;        // keep adding passes until this much search time is measured
  bool warmup = true;           // untimed: min(batch, 100) queries, then a full batch if cheap
};

struct BatchTiming {
  std::size_t batch = 0;
  std::size_t queries = 0;      // queries covered (first pass); results are kept for these
  std::size_t batches = 0;      // timed search calls, all passes
  int passes = 0;
  double total_s = 0;           // sum of the timed calls
  double qps = 0;               // queries searched / total_s
  double p50_ms = 0, p99_ms = 0, mean_ms = 0, max_ms = 0;
  std::vector<double> latencies_ms;
  std::vector<int64_t> ids;     // queries x k, from the last pass
  std::vector<float> distances; // queries x k
};

// Nearest-rank percentile (p in [0, 100]) of unsorted values; 0 when empty.
double percentile(std::vector<double> values, double p);

// Runs plan against index with queries (row-major, plan.queries x dim) and k.
BatchTiming time_batches(const Index& index, const float* queries, std::size_t dim, int k, const BatchPlan& plan);

}  // namespace hive::gpu::tool
