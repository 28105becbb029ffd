#include "timing.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <numeric>

#include "hive_gpu/index.hpp"

namespace hive::gpu::tool {

double percentile(std::vector<double> values, double p) {
  if (values.empty()) return 0.0;
  std::sort(values.begin(), values.end());
  const double rank = std::ceil(std::clamp(p, 0.0, 100.0) / 100.0 * static_cast<double>(values.size()));
  const std::size_t idx = rank < 1 ? 0 : static_cast<std::size_t>(rank) - 1;
  return values[std::min(idx, values.size() - 1)];
}

BatchTiming time_batches(const Index& index, const float* queries, std::size_t dim, int k, const BatchPlan& plan) {
  using clock = std::chrono::steady_clock;
  BatchTiming t;
  t.batch = std::max<std::size_t>(1, std::min(plan.batch, plan.queries));
  const std::size_t kk = static_cast<std::size_t>(k);
  t.ids.resize(plan.queries * kk);
  t.distances.resize(plan.queries * kk);
  if (plan.queries == 0) return t;
  if (plan.warmup) {
    // A small batch first; the full batch size too when that should take under two seconds
    // (a full warm-up of a very large batch would double the run for little gain).
    const std::size_t small = std::min<std::size_t>(t.batch, 100);
    const auto w0 = clock::now();
    index.search(small, queries, k, t.distances.data(), t.ids.data());
    const double per_query = std::chrono::duration<double>(clock::now() - w0).count() / static_cast<double>(small);
    if (t.batch > small && per_query * static_cast<double>(t.batch) < 2.0) {
      index.search(t.batch, queries, k, t.distances.data(), t.ids.data());
    }
  }

  auto one = [&](std::size_t start) {
    const std::size_t cnt = std::min(t.batch, plan.queries - start);
    const auto t0 = clock::now();
    index.search(cnt, queries + start * dim, k, t.distances.data() + start * kk, t.ids.data() + start * kk);
    const auto t1 = clock::now();
    const double ms = std::chrono::duration<double, std::milli>(t1 - t0).count();
    t.latencies_ms.push_back(ms);
    t.total_s += ms / 1000.0;
    return cnt;
  };

  // First pass: stops starting batches once the budget is spent.
  std::size_t searched = 0;
  for (std::size_t start = 0; start < plan.queries; start += t.batch) {
    searched += one(start);
    t.queries = start + std::min(t.batch, plan.queries - start);
    if (t.total_s >= plan.time_budget_s) break;
  }
  t.passes = 1;
  // Further passes over the covered queries, for --repeat / --min-time.
  while (t.passes < plan.repeat || t.total_s < plan.min_time_s) {
    for (std::size_t start = 0; start < t.queries; start += t.batch) searched += one(start);
    ++t.passes;
  }
  t.batches = t.latencies_ms.size();
  t.qps = t.total_s > 0 ? static_cast<double>(searched) / t.total_s : 0.0;
  t.p50_ms = percentile(t.latencies_ms, 50);
  t.p99_ms = percentile(t.latencies_ms, 99);
  t.mean_ms = std::accumulate(t.latencies_ms.begin(), t.latencies_ms.end(), 0.0) / static_cast<double>(t.batches);
  t.max_ms = *std::max_element(t.latencies_ms.begin(), t.latencies_ms.end());
  return t;
}

}  // namespace hive::gpu::tool
