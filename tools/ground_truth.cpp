#include "ground_truth.hpp"

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>
#include <stdexcept>
#include <thread>
#include <unistd.h>
#include <utility>

#include "datasets.hpp"

#if defined(HIVE_GPU_TOOL_WITH_BLAS)
#include <cblas.h>
#endif

namespace hive::gpu::tool {

namespace {

using Cand = std::pair<double, int64_t>;  // (cost, id): smaller cost is nearer

// Cost: ascending for every metric (inner product negated).
double to_cost(Metric m, double dist) { return higher_is_better(m) ? -dist : dist; }
double worst_distance(Metric m) {
  return higher_is_better(m) ? -std::numeric_limits<double>::infinity() : std::numeric_limits<double>::infinity();
}

template <class F>
void parallel_for(std::size_t count, unsigned threads, F&& f) {
  if (count == 0) return;
  const std::size_t t = std::min<std::size_t>(threads == 0 ? 1 : threads, count);
  if (t <= 1) {
    f(std::size_t(0), count);
    return;
  }
  std::vector<std::thread> pool;
  pool.reserve(t - 1);
  const std::size_t per = (count + t - 1) / t;
  for (std::size_t i = 1; i < t; ++i) {
    const std::size_t b = i * per;
    const std::size_t e = std::min(count, b + per);
    if (b < e) pool.emplace_back([&f, b, e] { f(b, e); });
  }
  f(std::size_t(0), std::min(count, per));
  for (auto& th : pool) th.join();
}

// A bounded max-heap of the kc best candidates of one query.
struct TopK {
  Cand* h;
  std::size_t cap;
  std::size_t size = 0;
  void push(double cost, int64_t id) {
    const Cand c{cost, id};
    if (size < cap) {
      h[size++] = c;
      std::push_heap(h, h + size);
    } else if (c < h[0]) {
      std::pop_heap(h, h + size);
      h[size - 1] = c;
      std::push_heap(h, h + size);
    }
  }
};

double dot(const float* a, const float* b, std::size_t d) {
  double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  std::size_t j = 0;
  for (; j + 4 <= d; j += 4) {
    s0 += double(a[j]) * double(b[j]);
    s1 += double(a[j + 1]) * double(b[j + 1]);
    s2 += double(a[j + 2]) * double(b[j + 2]);
    s3 += double(a[j + 3]) * double(b[j + 3]);
  }
  for (; j < d; ++j) s0 += double(a[j]) * double(b[j]);
  return (s0 + s1) + (s2 + s3);
}

constexpr uint32_t kGtVersion = 1;
constexpr char kGtMagic[8] = {'H', 'G', 'G', 'T', 'R', 'U', 'T', 'H'};

struct GtHeader {
  char magic[8];
  uint32_t version;
  uint32_t metric;
  uint64_t seed, n, d, nq;
  uint32_t k;
  uint32_t name_len;
  uint64_t data_hash;
};

uint64_t payload_hash(const GroundTruth& gt) {
  uint64_t h = fingerprint(reinterpret_cast<const float*>(gt.ids.data()), gt.ids.size() * 2);
  return fingerprint(reinterpret_cast<const float*>(gt.distances.data()), gt.distances.size() * 2, h);
}

std::string sanitize(const std::string& s) {
  std::string out;
  for (char c : s) out += (std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '-' || c == '_') ? c : '_';
  return out;
}

}  // namespace

double exact_distance(Metric m, const float* a, const float* b, std::size_t d) {
  switch (m) {
    case Metric::L2: {
      double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
      std::size_t j = 0;
      for (; j + 4 <= d; j += 4) {
        const double t0 = double(a[j]) - double(b[j]), t1 = double(a[j + 1]) - double(b[j + 1]);
        const double t2 = double(a[j + 2]) - double(b[j + 2]), t3 = double(a[j + 3]) - double(b[j + 3]);
        s0 += t0 * t0;
        s1 += t1 * t1;
        s2 += t2 * t2;
        s3 += t3 * t3;
      }
      for (; j < d; ++j) {
        const double t = double(a[j]) - double(b[j]);
        s0 += t * t;
      }
      return (s0 + s1) + (s2 + s3);
    }
    case Metric::InnerProduct:
      return dot(a, b, d);
    case Metric::Cosine: {
      const double na = dot(a, a, d), nb = dot(b, b, d);
      if (na == 0 || nb == 0) return 1.0;
      return 1.0 - dot(a, b, d) / (std::sqrt(na) * std::sqrt(nb));
    }
    case Metric::L1: {
      double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
      std::size_t j = 0;
      for (; j + 4 <= d; j += 4) {
        s0 += std::fabs(double(a[j]) - double(b[j]));
        s1 += std::fabs(double(a[j + 1]) - double(b[j + 1]));
        s2 += std::fabs(double(a[j + 2]) - double(b[j + 2]));
        s3 += std::fabs(double(a[j + 3]) - double(b[j + 3]));
      }
      for (; j < d; ++j) s0 += std::fabs(double(a[j]) - double(b[j]));
      return (s0 + s1) + (s2 + s3);
    }
    case Metric::Linf: {
      double mx = 0;
      for (std::size_t j = 0; j < d; ++j) mx = std::max(mx, std::fabs(double(a[j]) - double(b[j])));
      return mx;
    }
    case Metric::Hamming:
      break;
  }
  throw std::invalid_argument("exact_distance: metric not supported by the benchmark");
}

bool within_kth(Metric m, double dist, double kth) {
  if (std::isnan(dist)) return false;
  if (std::isinf(kth)) return higher_is_better(m) ? kth < 0 : kth > 0;
  const double slack = 1e-6 * std::fabs(kth);
  return higher_is_better(m) ? dist >= kth - slack : dist <= kth + slack;
}

bool ground_truth_uses_blas() {
#if defined(HIVE_GPU_TOOL_WITH_BLAS)
  return true;
#else
  return false;
#endif
}

GroundTruth compute_ground_truth(const float* base, std::size_t n, const float* queries, std::size_t nq,
                                 std::size_t d, Metric m, int k, unsigned threads,
                                 const std::function<void(uint64_t, uint64_t)>& progress) {
  if (k <= 0) throw std::invalid_argument("compute_ground_truth: k must be positive");
  if (m == Metric::Hamming) throw std::invalid_argument("compute_ground_truth: Hamming is not supported");
  if (threads == 0) threads = std::max(1u, std::thread::hardware_concurrency());
  // Keep a few spare candidates: the BLAS expansion is not bit-exact, so the final order
  // is decided by exact distances recomputed below.
  const std::size_t kc = std::min<std::size_t>(n, std::size_t(k) + 16);
  std::vector<Cand> heaps(nq * kc);
  std::vector<TopK> tops(nq);
  for (std::size_t q = 0; q < nq; ++q) tops[q] = TopK{heaps.data() + q * kc, kc};

  const bool blas_metric = m == Metric::L2 || m == Metric::InnerProduct || m == Metric::Cosine;
#if defined(HIVE_GPU_TOOL_WITH_BLAS)
  const bool use_blas = blas_metric;
#else
  const bool use_blas = false;
  (void)blas_metric;
#endif
  if (use_blas) {
#if defined(HIVE_GPU_TOOL_WITH_BLAS)
    constexpr std::size_t kBaseBlock = 2048, kQueryBlock = 2048;
    // Queries in double, normalised for cosine; squared norms for L2.
    std::vector<double> qd(nq * d), qn(nq);
    for (std::size_t q = 0; q < nq; ++q) {
      double s = 0;
      for (std::size_t j = 0; j < d; ++j) {
        qd[q * d + j] = queries[q * d + j];
        s += qd[q * d + j] * qd[q * d + j];
      }
      if (m == Metric::Cosine && s > 0) {
        const double inv = 1.0 / std::sqrt(s);
        for (std::size_t j = 0; j < d; ++j) qd[q * d + j] *= inv;
      }
      qn[q] = s;
    }
    std::vector<double> bd(kBaseBlock * d), bn(kBaseBlock), c(kQueryBlock * kBaseBlock);
    for (std::size_t b0 = 0; b0 < n; b0 += kBaseBlock) {
      const std::size_t bb = std::min(kBaseBlock, n - b0);
      for (std::size_t i = 0; i < bb; ++i) {
        double s = 0;
        for (std::size_t j = 0; j < d; ++j) {
          bd[i * d + j] = base[(b0 + i) * d + j];
          s += bd[i * d + j] * bd[i * d + j];
        }
        if (m == Metric::Cosine && s > 0) {
          const double inv = 1.0 / std::sqrt(s);
          for (std::size_t j = 0; j < d; ++j) bd[i * d + j] *= inv;
        }
        bn[i] = s;
      }
      for (std::size_t q0 = 0; q0 < nq; q0 += kQueryBlock) {
        const std::size_t qb = std::min(kQueryBlock, nq - q0);
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<blasint>(qb), static_cast<blasint>(bb),
                    static_cast<blasint>(d), 1.0, qd.data() + q0 * d, static_cast<blasint>(d), bd.data(),
                    static_cast<blasint>(d), 0.0, c.data(), static_cast<blasint>(bb));
        parallel_for(qb, threads, [&](std::size_t lo, std::size_t hi) {
          for (std::size_t qi = lo; qi < hi; ++qi) {
            const double* row = c.data() + qi * bb;
            TopK& top = tops[q0 + qi];
            if (m == Metric::L2) {
              const double a = qn[q0 + qi];
              for (std::size_t i = 0; i < bb; ++i) top.push(a + bn[i] - 2.0 * row[i], int64_t(b0 + i));
            } else {
              for (std::size_t i = 0; i < bb; ++i) top.push(-row[i], int64_t(b0 + i));
            }
          }
        });
      }
      if (progress) progress(b0 + bb, n);
    }
#endif
  } else {
    // Plain loops: query ranges per thread, base in cache-sized blocks.
    constexpr std::size_t kBaseBlock = 1024;
    std::atomic<uint64_t> done{0};
    for (std::size_t b0 = 0; b0 < n; b0 += kBaseBlock) {
      const std::size_t bb = std::min(kBaseBlock, n - b0);
      parallel_for(nq, threads, [&](std::size_t lo, std::size_t hi) {
        for (std::size_t q = lo; q < hi; ++q) {
          for (std::size_t i = 0; i < bb; ++i) {
            const double dist = exact_distance(m, queries + q * d, base + (b0 + i) * d, d);
            tops[q].push(to_cost(m, dist), int64_t(b0 + i));
          }
        }
      });
      done += bb;
      if (progress) progress(done, n);
    }
  }

  GroundTruth gt;
  gt.nq = nq;
  gt.k = k;
  gt.ids.assign(nq * std::size_t(k), -1);
  gt.distances.assign(nq * std::size_t(k), worst_distance(m));
  parallel_for(nq, threads, [&](std::size_t lo, std::size_t hi) {
    std::vector<Cand> exact;
    for (std::size_t q = lo; q < hi; ++q) {
      exact.clear();
      const TopK& top = tops[q];
      for (std::size_t i = 0; i < top.size; ++i) {
        const int64_t id = top.h[i].second;
        exact.emplace_back(to_cost(m, exact_distance(m, queries + q * d, base + std::size_t(id) * d, d)), id);
      }
      std::sort(exact.begin(), exact.end());
      const std::size_t keep = std::min(exact.size(), std::size_t(k));
      for (std::size_t j = 0; j < keep; ++j) {
        gt.ids[q * std::size_t(k) + j] = exact[j].second;
        gt.distances[q * std::size_t(k) + j] = higher_is_better(m) ? -exact[j].first : exact[j].first;
      }
    }
  });
  return gt;
}

std::string ground_truth_cache_path(const std::string& data_dir, const GtKey& key) {
  return data_dir + "/gt/" + sanitize(key.dataset) + "-s" + std::to_string(key.seed) + "-n" + std::to_string(key.n) +
         "-q" + std::to_string(key.nq) + "-d" + std::to_string(key.d) + "-" + std::string(to_string(key.metric)) +
         "-k" + std::to_string(key.k) + ".gt";
}

std::optional<GroundTruth> load_ground_truth(const std::string& path, const GtKey& key) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) return std::nullopt;
  struct Closer {
    std::FILE* f;
    ~Closer() { std::fclose(f); }
  } closer{f};
  GtHeader h{};
  if (std::fread(&h, sizeof h, 1, f) != 1) return std::nullopt;
  if (std::memcmp(h.magic, kGtMagic, sizeof kGtMagic) != 0 || h.version != kGtVersion) return std::nullopt;
  if (h.metric != static_cast<uint32_t>(key.metric) || h.seed != key.seed || h.n != key.n || h.d != key.d ||
      h.nq != key.nq || h.k != static_cast<uint32_t>(key.k) || h.data_hash != key.data_hash ||
      h.name_len != key.dataset.size()) {
    return std::nullopt;
  }
  std::string name(h.name_len, '\0');
  if (h.name_len > 0 && std::fread(name.data(), 1, name.size(), f) != name.size()) return std::nullopt;
  if (name != key.dataset) return std::nullopt;
  GroundTruth gt;
  gt.nq = h.nq;
  gt.k = key.k;
  const std::size_t count = std::size_t(h.nq) * h.k;
  gt.ids.resize(count);
  gt.distances.resize(count);
  uint64_t stored_hash = 0;
  if (std::fread(gt.ids.data(), sizeof(int64_t), count, f) != count) return std::nullopt;
  if (std::fread(gt.distances.data(), sizeof(double), count, f) != count) return std::nullopt;
  if (std::fread(&stored_hash, sizeof stored_hash, 1, f) != 1) return std::nullopt;
  char extra;
  if (std::fread(&extra, 1, 1, f) != 0) return std::nullopt;  // trailing bytes: damaged
  if (stored_hash != payload_hash(gt)) return std::nullopt;
  return gt;
}

void save_ground_truth(const std::string& path, const GtKey& key, const GroundTruth& gt) {
  std::filesystem::path p(path);
  if (p.has_parent_path()) std::filesystem::create_directories(p.parent_path());
  GtHeader h{};
  std::memcpy(h.magic, kGtMagic, sizeof kGtMagic);
  h.version = kGtVersion;
  h.metric = static_cast<uint32_t>(key.metric);
  h.seed = key.seed;
  h.n = key.n;
  h.d = key.d;
  h.nq = key.nq;
  h.k = static_cast<uint32_t>(key.k);
  h.name_len = static_cast<uint32_t>(key.dataset.size());
  h.data_hash = key.data_hash;
  const uint64_t hash = payload_hash(gt);
  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  std::FILE* f = std::fopen(tmp.c_str(), "wb");
  if (f == nullptr) throw std::runtime_error("cannot write " + tmp + ": " + std::strerror(errno));
  bool ok = std::fwrite(&h, sizeof h, 1, f) == 1;
  ok = ok && std::fwrite(key.dataset.data(), 1, key.dataset.size(), f) == key.dataset.size();
  ok = ok && std::fwrite(gt.ids.data(), sizeof(int64_t), gt.ids.size(), f) == gt.ids.size();
  ok = ok && std::fwrite(gt.distances.data(), sizeof(double), gt.distances.size(), f) == gt.distances.size();
  ok = ok && std::fwrite(&hash, sizeof hash, 1, f) == 1;
  ok = (std::fclose(f) == 0) && ok;
  if (!ok) {
    std::remove(tmp.c_str());
    throw std::runtime_error("cannot write " + path);
  }
  std::filesystem::rename(tmp, path);
}

double query_recall(Metric m, int k, const int64_t* ids, const double* exact, double kth, int valid_gt) {
  const int denom = std::min(k, valid_gt);
  if (denom <= 0) return 1.0;
  int hits = 0;
  for (int j = 0; j < k; ++j) {
    if (ids[j] < 0) continue;
    bool repeated = false;
    for (int i = 0; i < j; ++i) repeated = repeated || ids[i] == ids[j];
    if (!repeated && within_kth(m, exact[j], kth)) ++hits;
  }
  return static_cast<double>(std::min(hits, denom)) / static_cast<double>(denom);
}

double recall_at_k(Metric m, int k, const float* base, std::size_t n, const float* queries, std::size_t d,
                   const GroundTruth& gt, std::size_t q_begin, std::size_t q_count, const int64_t* ids) {
  if (k > gt.k) throw std::invalid_argument("recall_at_k: k exceeds the ground truth's k");
  if (q_count == 0) return 0.0;
  std::vector<double> exact(static_cast<std::size_t>(k));
  double sum = 0;
  for (std::size_t qi = 0; qi < q_count; ++qi) {
    const std::size_t q = q_begin + qi;
    const int64_t* row = ids + qi * std::size_t(k);
    for (int j = 0; j < k; ++j) {
      const int64_t id = row[j];
      exact[std::size_t(j)] = (id >= 0 && std::size_t(id) < n)
                                  ? exact_distance(m, queries + q * d, base + std::size_t(id) * d, d)
                                  : std::numeric_limits<double>::quiet_NaN();
    }
    int valid = 0;
    while (valid < gt.k && gt.ids_of(q)[valid] >= 0) ++valid;
    const double kth = valid == 0 ? worst_distance(m) : gt.distances_of(q)[std::min(k, valid) - 1];
    sum += query_recall(m, k, row, exact.data(), kth, valid);
  }
  return sum / static_cast<double>(q_count);
}

}  // namespace hive::gpu::tool
