// hive-gpu command: exact float64 ground truth (OpenBLAS dgemm for L2 / inner product /
// cosine, plain loops for L1 / Linf), its on-disk cache, and tie-aware recall@k.
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "hive_gpu/types.hpp"

namespace hive::gpu::tool {

// Row-major nq x k nearest neighbours, best first, with their exact float64 distances in
// the form the library reports them (squared L2, dot product, 1 - cosine, L1, Linf).
// Slots past the base size hold id -1 and the metric's worst value.
struct GroundTruth {
  std::size_t nq = 0;
  int k = 0;
  std::vector<int64_t> ids;
  std::vector<double> distances;
  const int64_t* ids_of(std::size_t q) const { return ids.data() + q * std::size_t(k); }
  const double* distances_of(std::size_t q) const { return distances.data() + q * std::size_t(k); }
};

// Everything the cached ground truth depends on.
struct GtKey {
  std::string dataset;  // canonical dataset name, e.g. "random:100000:128"
  uint64_t seed = 0;
  uint64_t n = 0;
  uint64_t d = 0;
  uint64_t nq = 0;
  Metric metric = Metric::L2;
  int k = 0;               // neighbours kept (k_gt)
  uint64_t data_hash = 0;  // fingerprint of base and queries
};

// Neighbours the benchmark keeps: max(k, 100).
inline int ground_truth_k(int k) { return k > 100 ? k : 100; }

// Exact distance in float64 from float32 inputs, as the library reports it.
// Cosine: 1 - a.b / (|a| |b|), and 1 when either vector is zero.
double exact_distance(Metric m, const float* a, const float* b, std::size_t d);

// True when `dist` is at least as near as `kth` allowing 1e-6 relative slack (ties count).
bool within_kth(Metric m, double dist, double kth);

// Exact k nearest neighbours of every query (ties broken by smaller id). threads == 0: all
// cores. progress(done, total) is called now and then from the calling thread.
GroundTruth compute_ground_truth(const float* base, std::size_t n, const float* queries, std::size_t nq,
                                 std::size_t d, Metric m, int k, unsigned threads = 0,
                                 const std::function<void(uint64_t, uint64_t)>& progress = {});

// True when this build computes L2 / IP / cosine ground truth through OpenBLAS.
bool ground_truth_uses_blas();

// <dir>/gt/<dataset>-s<seed>-n<n>-q<nq>-d<d>-<metric>-k<k>.gt
std::string ground_truth_cache_path(const std::string& data_dir, const GtKey& key);
// The cached ground truth if the file exists, is intact and its header matches key in every
// field; std::nullopt otherwise (the caller recomputes).
std::optional<GroundTruth> load_ground_truth(const std::string& path, const GtKey& key);
// Writes atomically (temporary file + rename), creating folders. Throws std::runtime_error.
void save_ground_truth(const std::string& path, const GtKey& key, const GroundTruth& gt);

// Fraction of one query's k returned ids that are true neighbours: an id counts when its
// exact distance is within the k-th ground-truth distance (ties count, each id once;
// ids < 0 never count). exact[j] is the exact distance of ids[j].
double query_recall(Metric m, int k, const int64_t* ids, const double* exact, double kth, int valid_gt);

// Mean tie-aware recall@k over queries [q_begin, q_begin + q_count). ids holds q_count x k
// results (row 0 is query q_begin); ids are base row numbers.
double recall_at_k(Metric m, int k, const float* base, std::size_t n, const float* queries, std::size_t d,
                   const GroundTruth& gt, std::size_t q_begin, std::size_t q_count, const int64_t* ids);

}  // namespace hive::gpu::tool
