// Test helpers of the approximate indexes (HnswIndex, GraphIndex): clustered random data and
// float64 exact references.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <set>
#include <utility>
#include <vector>

#include "hive_gpu/types.hpp"

namespace hive::gpu::test {

// Gaussian blobs: what graph indexes are built for (and harder than uniform noise for recall).
inline std::vector<float> clustered(std::size_t n, std::size_t d, uint32_t seed, std::size_t centers = 20) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> g(0.0f, 1.0f);
  std::vector<float> c(centers * d);
  for (auto& v : c) v = g(rng);
  std::uniform_int_distribution<std::size_t> pick(0, centers - 1);
  std::vector<float> x(n * d);
  for (std::size_t i = 0; i < n; ++i) {
    const std::size_t cc = pick(rng);
    for (std::size_t j = 0; j < d; ++j) x[i * d + j] = c[cc * d + j] + 0.3f * g(rng);
  }
  return x;
}

// The metric's value in float64, in the reported convention (IP: the dot product, larger is
// better; the others: smaller is better; cosine on normalised vectors).
inline double reference(Metric m, const float* q, const float* x, std::size_t d) {
  double s = 0, qq = 0, xx = 0;
  for (std::size_t j = 0; j < d; ++j) {
    const double a = q[j], b = x[j];
    switch (m) {
      case Metric::L2: s += (a - b) * (a - b); break;
      case Metric::InnerProduct: s += a * b; break;
      case Metric::Cosine: s += a * b; qq += a * a; xx += b * b; break;
      case Metric::L1: s += std::fabs(a - b); break;
      case Metric::Linf: s = std::max(s, std::fabs(a - b)); break;
      case Metric::Hamming: break;
    }
  }
  if (m == Metric::Cosine) return 1.0 - s / std::sqrt(qq * xx);
  return s;
}

// Exact top-k ids (float64), best first.
inline std::vector<int64_t> exact_topk(Metric m, const std::vector<float>& x, const float* q, std::size_t d, int k,
                                const std::set<int64_t>& skip = {}) {
  const std::size_t n = x.size() / d;
  std::vector<std::pair<double, int64_t>> all;
  for (std::size_t i = 0; i < n; ++i) {
    if (skip.count(int64_t(i))) continue;
    double v = reference(m, q, x.data() + i * d, d);
    if (m == Metric::InnerProduct) v = -v;
    all.emplace_back(v, int64_t(i));
  }
  std::partial_sort(all.begin(), all.begin() + k, all.end());
  std::vector<int64_t> out;
  for (int j = 0; j < k; ++j) out.push_back(all[std::size_t(j)].second);
  return out;
}

// Fraction of the exact top-k found (ids), over nq queries of k results each.
inline double recall_at(const std::vector<std::vector<int64_t>>& truth, const std::vector<int64_t>& got, int k) {
  std::size_t hit = 0;
  for (std::size_t i = 0; i < truth.size(); ++i) {
    const std::set<int64_t> t(truth[i].begin(), truth[i].end());
    for (int j = 0; j < k; ++j) hit += t.count(got[i * std::size_t(k) + std::size_t(j)]);
  }
  return double(hit) / double(truth.size() * std::size_t(k));
}

}  // namespace hive::gpu::test
