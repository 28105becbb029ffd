// Conformance suite: data generation, an independent float64 reference for every metric, the
// result checker, the shared fixture and small helpers. Nothing here uses library internals:
// the reference is written from the contract in include/hive_gpu/*.hpp.
#pragma once
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include <unistd.h>

#include "hive_gpu/hive_gpu.hpp"
#include "params.hpp"

namespace conformance {

using hive::gpu::Error;
using hive::gpu::ErrorCode;
using hive::gpu::FlatIndex;
using hive::gpu::FlatOptions;
using hive::gpu::kMaxK;
using hive::gpu::kNoId;
using hive::gpu::SearchResult;

// ---------------------------------------------------------------------------------------------
// Random data (deterministic for a seed, identical on every platform).
class Rng {
 public:
  explicit Rng(uint64_t seed) : g_(seed * 0x9E3779B97F4A7C15ull + 12345) {}
  // Uniform in [lo, hi).
  float uniform(float lo, float hi) {
    const double u = double(g_() >> 11) * (1.0 / 9007199254740992.0);
    return float(double(lo) + (double(hi) - double(lo)) * u);
  }
  uint8_t byte() { return uint8_t(g_() >> 56); }
  uint64_t next() { return g_(); }
  std::size_t below(std::size_t n) { return std::size_t(g_() % n); }

 private:
  std::mt19937_64 g_;
};

// ---------------------------------------------------------------------------------------------
// IEEE binary16 and bfloat16 rounding (round to nearest, ties to even), done in float64 from
// first principles so it shares nothing with the library's codec. Inputs are finite floats.
namespace detail_round {
// Rounds x to `mant_bits` significant bits below the leading one, with exponent floor `emin`
// (the smallest normal exponent; below it the quantum stays 2^(emin - mant_bits)).
inline double round_to_format(double x, int mant_bits, int emin, double max_finite) {
  if (x == 0.0) return x;
  int e = 0;
  (void)std::frexp(x, &e);  // x = m * 2^e, 0.5 <= |m| < 1: leading bit at 2^(e-1)
  int lead = e - 1;
  if (lead < emin) lead = emin;
  const double quantum = std::ldexp(1.0, lead - mant_bits);
  const double r = std::nearbyint(x / quantum) * quantum;  // default mode: ties to even
  if (std::fabs(r) > max_finite) return std::copysign(std::numeric_limits<double>::infinity(), x);
  return r;
}
}  // namespace detail_round

inline float round_f16(float x) {
  return float(detail_round::round_to_format(double(x), 10, -14, 65504.0));
}
inline float round_bf16(float x) {
  return float(detail_round::round_to_format(double(x), 7, -126, double(std::numeric_limits<float>::max())));
}
inline float round_storage(ScalarType s, float x) {
  switch (s) {
    case ScalarType::F16: return round_f16(x);
    case ScalarType::BF16: return round_bf16(x);
    default: return x;
  }
}
// Relative precision of a storage format (one quantum relative to the value, upper bound).
inline double storage_rel_eps(ScalarType s) {
  switch (s) {
    case ScalarType::F16: return std::ldexp(1.0, -10);
    case ScalarType::BF16: return std::ldexp(1.0, -7);
    default: return std::ldexp(1.0, -22);
  }
}

// ---------------------------------------------------------------------------------------------
// A batch of vectors: n x dim floats, or n x dim/8 packed bytes for Hamming.
struct Vectors {
  std::size_t n = 0;
  std::size_t dim = 0;  // elements, or bits for Hamming
  bool bits = false;
  std::vector<float> f;
  std::vector<uint8_t> b;

  std::size_t row_len() const { return bits ? dim / 8 : dim; }
  const float* frow(std::size_t i) const { return f.data() + i * dim; }
  const uint8_t* brow(std::size_t i) const { return b.data() + i * (dim / 8); }
  float* frow(std::size_t i) { return f.data() + i * dim; }
  uint8_t* brow(std::size_t i) { return b.data() + i * (dim / 8); }
  // Rows [first, first + count).
  Vectors slice(std::size_t first, std::size_t count) const {
    Vectors v;
    v.n = count;
    v.dim = dim;
    v.bits = bits;
    if (bits)
      v.b.assign(b.begin() + std::ptrdiff_t(first * row_len()), b.begin() + std::ptrdiff_t((first + count) * row_len()));
    else
      v.f.assign(f.begin() + std::ptrdiff_t(first * dim), f.begin() + std::ptrdiff_t((first + count) * dim));
    return v;
  }
  void append(const Vectors& o) {
    n += o.n;
    f.insert(f.end(), o.f.begin(), o.f.end());
    b.insert(b.end(), o.b.begin(), o.b.end());
  }
};

inline Vectors random_floats(std::size_t n, std::size_t dim, uint64_t seed, float lo = -1.0f, float hi = 1.0f) {
  Rng rng(seed);
  Vectors v;
  v.n = n;
  v.dim = dim;
  v.f.resize(n * dim);
  for (auto& x : v.f) x = rng.uniform(lo, hi);
  return v;
}

// n rows within 1e-6 (relative, per component) of one random vector in [0.5, 1.5)^dim: closer
// than fp16 can resolve, so the GPU screens' copies cannot rank them (seeds `seed`, `seed` + 1).
inline Vectors near_ties(std::size_t n, std::size_t dim, uint64_t seed) {
  const Vectors base = random_floats(1, dim, seed, 0.5f, 1.5f);
  Vectors v = random_floats(n, dim, seed + 1, -1e-6f, 1e-6f);
  for (std::size_t r = 0; r < n; ++r)
    for (std::size_t j = 0; j < dim; ++j) v.frow(r)[j] = base.f[j] * (1.0f + v.frow(r)[j]);
  return v;
}

inline Vectors random_bits(std::size_t n, std::size_t dim_bits, uint64_t seed) {
  Rng rng(seed);
  Vectors v;
  v.n = n;
  v.dim = dim_bits;
  v.bits = true;
  v.b.resize(n * (dim_bits / 8));
  for (auto& x : v.b) x = rng.byte();
  return v;
}

inline Vectors random_vectors(bool bits, std::size_t n, std::size_t dim, uint64_t seed) {
  return bits ? random_bits(n, dim, seed) : random_floats(n, dim, seed);
}

// ---------------------------------------------------------------------------------------------
// The reference: float64 distances on the vectors as stored.
inline bool ascending(Metric m) { return m != Metric::InnerProduct; }
inline float worst_value(Metric m) {
  return m == Metric::InnerProduct ? -std::numeric_limits<float>::infinity()
                                   : std::numeric_limits<float>::infinity();
}

// Relative tolerance of reported distances, scaled by the magnitude of the summed terms.
inline constexpr double kRelTol = 1e-4;

struct RefDistance {
  double d = 0;    // the exact (float64) distance
  double tol = 0;  // how far a correct float implementation may be from it
};

inline RefDistance ref_distance(Metric m, const double* q, const double* x, std::size_t dim) {
  double d = 0, scale = 0;
  switch (m) {
    case Metric::L2:
      for (std::size_t i = 0; i < dim; ++i) {
        const double t = q[i] - x[i];
        d += t * t;
        scale += q[i] * q[i] + x[i] * x[i];
      }
      break;
    case Metric::InnerProduct:
      for (std::size_t i = 0; i < dim; ++i) {
        d += q[i] * x[i];
        scale += std::fabs(q[i] * x[i]);
      }
      break;
    case Metric::Cosine:  // q and x are already unit vectors (or zero)
      for (std::size_t i = 0; i < dim; ++i) {
        d += q[i] * x[i];
        scale += std::fabs(q[i] * x[i]);
      }
      d = 1.0 - d;
      scale += 1.0;
      break;
    case Metric::L1:
      for (std::size_t i = 0; i < dim; ++i) {
        d += std::fabs(q[i] - x[i]);
        scale += std::fabs(q[i]) + std::fabs(x[i]);
      }
      break;
    case Metric::Linf:
      for (std::size_t i = 0; i < dim; ++i) {
        d = std::max(d, std::fabs(q[i] - x[i]));
        scale = std::max(scale, std::fabs(q[i]) + std::fabs(x[i]));
      }
      break;
    case Metric::Hamming:
      break;
  }
  return {d, kRelTol * scale + 1e-9};
}

inline RefDistance ref_hamming(const uint8_t* q, const uint8_t* x, std::size_t nbytes) {
  int d = 0;
  for (std::size_t i = 0; i < nbytes; ++i) d += std::popcount(unsigned(q[i] ^ x[i]));
  return {double(d), 0.0};
}

// float64 unit vector (a zero vector stays zero).
inline std::vector<double> normalised(const float* x, std::size_t dim) {
  double s = 0;
  for (std::size_t i = 0; i < dim; ++i) s += double(x[i]) * double(x[i]);
  std::vector<double> out(dim);
  const double inv = s > 0 ? 1.0 / std::sqrt(s) : 0.0;
  for (std::size_t i = 0; i < dim; ++i) out[i] = double(x[i]) * inv;
  return out;
}

// What the index should hold: id -> stored vector, in storage order.
class Model {
 public:
  Model() = default;
  Model(std::size_t dim, Metric metric, ScalarType storage) : dim_(dim), metric_(metric), storage_(storage) {}

  std::size_t dim() const { return dim_; }
  Metric metric() const { return metric_; }
  ScalarType storage() const { return storage_; }
  bool bits() const { return metric_ == Metric::Hamming; }
  std::size_t size() const { return rows_.size(); }
  bool contains(int64_t id) const { return rows_.count(id) != 0; }
  const std::vector<int64_t>& order() const { return order_; }
  std::vector<int64_t> sorted_ids() const {
    std::vector<int64_t> v = order_;
    std::sort(v.begin(), v.end());
    return v;
  }
  int64_t next_id() const { return next_id_; }

  // The row the index must hold for input row i of v (Cosine rows come from the index itself:
  // see stored_cosine_row). Returns float64 values for float metrics.
  std::vector<double> expected_row(const Vectors& v, std::size_t i) const {
    std::vector<double> out(dim_);
    if (metric_ == Metric::Cosine) {
      const auto u = normalised(v.frow(i), dim_);
      for (std::size_t j = 0; j < dim_; ++j) out[j] = double(round_storage(storage_, float(u[j])));
    } else {
      for (std::size_t j = 0; j < dim_; ++j) out[j] = double(round_storage(storage_, v.frow(i)[j]));
    }
    return out;
  }

  // Records (id, row i of v) as added or replaced. For Cosine the stored row is read back from
  // the index with get() (the library normalises in float, so its rounding to F16/BF16 may
  // differ from ours by one quantum); it is checked to be the normalised input within that.
  void put(const FlatIndex& index, const Vectors& v, std::size_t i, int64_t id) {
    Row r;
    if (bits()) {
      r.bits.assign(v.brow(i), v.brow(i) + dim_ / 8);
    } else if (metric_ == Metric::Cosine) {
      const auto want = expected_row(v, i);
      std::vector<float> got;
      try {
        got = index.get(id);
      } catch (const std::exception& e) {
        ADD_FAILURE() << "get(" << id << ") threw: " << e.what();
        got.assign(dim_, 0.0f);
      }
      if (got.size() != dim_) {
        ADD_FAILURE() << "get(" << id << ") returned " << got.size() << " values, dim is " << dim_;
        got.resize(dim_);
      }
      r.f.resize(dim_);
      int bad = 0;
      for (std::size_t j = 0; j < dim_; ++j) {
        r.f[j] = double(got[j]);
        const double tol = std::fabs(want[j]) * 2 * storage_rel_eps(storage_) + 1e-6;
        if (!(std::fabs(r.f[j] - want[j]) <= tol) && bad++ < 3)
          ADD_FAILURE() << "Cosine get(" << id << ")[" << j << "] = " << got[j] << ", the normalised input is "
                        << want[j];
      }
    } else {
      r.f = expected_row(v, i);
    }
    if (!rows_.count(id)) order_.push_back(id);
    rows_[id] = std::move(r);
    if (id >= next_id_) next_id_ = id + 1;
  }

  void erase(int64_t id) {
    if (rows_.erase(id)) order_.erase(std::find(order_.begin(), order_.end(), id));
  }
  void clear() {
    rows_.clear();
    order_.clear();
  }

  const std::vector<double>& frow(int64_t id) const { return rows_.at(id).f; }
  const std::vector<uint8_t>& brow(int64_t id) const { return rows_.at(id).bits; }

 private:
  struct Row {
    std::vector<double> f;
    std::vector<uint8_t> bits;
  };
  std::size_t dim_ = 0;
  Metric metric_ = Metric::L2;
  ScalarType storage_ = ScalarType::F32;
  std::unordered_map<int64_t, Row> rows_;
  std::vector<int64_t> order_;
  int64_t next_id_ = 0;
};

// Checks nq x k results against the model. Returns true when everything matched; reports at
// most a few failures per call (with `what` naming the case).
inline bool check_results(const Model& model, const Vectors& q, int k, const float* dist, const int64_t* ids,
                          const std::string& what) {
  const Metric m = model.metric();
  const std::size_t dim = model.dim();
  const bool asc = ascending(m);
  const std::vector<int64_t>& live = model.order();
  std::unordered_map<int64_t, std::size_t> pos;
  for (std::size_t i = 0; i < live.size(); ++i) pos[live[i]] = i;

  int failures = 0;

  std::vector<RefDistance> refd(live.size());
  std::vector<std::size_t> order(live.size());
  for (std::size_t qi = 0; qi < q.n && failures < 5; ++qi) {
    std::vector<double> qd;
    if (!model.bits()) {
      if (m == Metric::Cosine) {
        qd = normalised(q.frow(qi), dim);
      } else {
        qd.assign(q.frow(qi), q.frow(qi) + dim);
      }
    }
    double maxtol = 0;
    for (std::size_t i = 0; i < live.size(); ++i) {
      refd[i] = model.bits() ? ref_hamming(q.brow(qi), model.brow(live[i]).data(), dim / 8)
                             : ref_distance(m, qd.data(), model.frow(live[i]).data(), dim);
      maxtol = std::max(maxtol, refd[i].tol);
    }
    const std::size_t filled = std::min<std::size_t>(std::size_t(k), live.size());
    for (std::size_t i = 0; i < live.size(); ++i) order[i] = i;
    std::partial_sort(order.begin(), order.begin() + std::ptrdiff_t(filled), order.end(),
                      [&](std::size_t a, std::size_t b) {
                        if (refd[a].d != refd[b].d) return asc ? refd[a].d < refd[b].d : refd[a].d > refd[b].d;
                        return a < b;
                      });
    const float* dq = dist + qi * std::size_t(k);
    const int64_t* iq = ids + qi * std::size_t(k);
    std::unordered_set<int64_t> seen;
    for (std::size_t j = 0; j < std::size_t(k) && failures < 5; ++j) {
      const double gd = double(dq[j]);
      const int64_t gid = iq[j];
      if (j >= filled) {
        if (gid != kNoId || dq[j] != worst_value(m)) {
          ++failures;
          ADD_FAILURE() << what << ": query " << qi << " slot " << j << " (only " << live.size()
                        << " live vectors): got id " << gid << " distance " << dq[j] << ", expected id -1 distance "
                        << worst_value(m);
        }
        continue;
      }
      const RefDistance& want = refd[order[j]];
      auto it = pos.find(gid);
      if (it == pos.end()) {
        ++failures;
        ADD_FAILURE() << what << ": query " << qi << " slot " << j << ": id " << gid
                      << " is not a live id (expected id " << live[order[j]] << " at distance " << want.d << ")";
        continue;
      }
      if (!seen.insert(gid).second) {
        ++failures;
        ADD_FAILURE() << what << ": query " << qi << " slot " << j << ": id " << gid << " reported twice";
        continue;
      }
      const RefDistance& mine = refd[it->second];
      if (!(std::fabs(gd - mine.d) <= mine.tol)) {
        ++failures;
        ADD_FAILURE() << what << ": query " << qi << " slot " << j << ": id " << gid << " reported at distance "
                      << dq[j] << ", its reference distance is " << mine.d << " (tolerance " << mine.tol << ")";
        continue;
      }
      if (!(std::fabs(mine.d - want.d) <= 2 * maxtol)) {
        ++failures;
        ADD_FAILURE() << what << ": query " << qi << " slot " << j << ": id " << gid << " (reference distance "
                      << mine.d << ") is not the " << j << "-th nearest: expected id " << live[order[j]]
                      << " at reference distance " << want.d;
        continue;
      }
      if (j > 0 && (asc ? dq[j] < dq[j - 1] : dq[j] > dq[j - 1])) {
        ++failures;
        ADD_FAILURE() << what << ": query " << qi << " slot " << j << ": distances not best-first: " << dq[j - 1]
                      << " then " << dq[j];
      }
    }
  }
  return failures == 0;
}

inline bool check_results(const Model& model, const Vectors& q, const SearchResult& r, const std::string& what) {
  if (r.nq != q.n || r.distances.size() != q.n * std::size_t(r.k) || r.ids.size() != q.n * std::size_t(r.k)) {
    ADD_FAILURE() << what << ": SearchResult has nq " << r.nq << " k " << r.k << " and " << r.distances.size()
                  << " distances / " << r.ids.size() << " ids for " << q.n << " queries";
    return false;
  }
  return check_results(model, q, r.k, r.distances.data(), r.ids.data(), what);
}

// ---------------------------------------------------------------------------------------------
// Calls through the right overload (floats, or packed bits for Hamming).
inline void do_add(FlatIndex& idx, const Vectors& v) {
  if (v.bits)
    idx.add(v.n, v.b.data());
  else
    idx.add(v.n, v.f.data());
}
inline void do_add_with_ids(FlatIndex& idx, const Vectors& v, const std::vector<int64_t>& ids) {
  if (v.bits)
    idx.add_with_ids(v.n, v.b.data(), ids.data());
  else
    idx.add_with_ids(v.n, v.f.data(), ids.data());
}
inline void do_upsert(FlatIndex& idx, const Vectors& v, const std::vector<int64_t>& ids) {
  if (v.bits)
    idx.upsert(v.n, v.b.data(), ids.data());
  else
    idx.upsert(v.n, v.f.data(), ids.data());
}
inline SearchResult do_search(const FlatIndex& idx, const Vectors& q, int k) {
  return q.bits ? idx.search(q.n, q.b.data(), k) : idx.search(q.n, q.f.data(), k);
}
inline void do_search(const FlatIndex& idx, const Vectors& q, int k, float* d, int64_t* i) {
  if (q.bits)
    idx.search(q.n, q.b.data(), k, d, i);
  else
    idx.search(q.n, q.f.data(), k, d, i);
}

// Everything observable about an index, to prove a failed call changed nothing.
struct Snapshot {
  std::size_t size = 0, stored_rows = 0;
  int64_t next_id = 0;
  std::vector<int64_t> ids;
  std::vector<std::vector<float>> rows;
  std::vector<std::vector<uint8_t>> bit_rows;
  std::vector<float> dist;
  std::vector<int64_t> found;

  static Snapshot of(const FlatIndex& idx, const Vectors& probe, int k) {
    Snapshot s;
    s.size = idx.size();
    s.stored_rows = idx.stored_rows();
    s.next_id = idx.next_id();
    s.ids = idx.ids();
    for (int64_t id : s.ids) {
      if (idx.metric() == Metric::Hamming)
        s.bit_rows.push_back(idx.get_bits(id));
      else
        s.rows.push_back(idx.get(id));
    }
    auto r = do_search(idx, probe, k);
    s.dist = std::move(r.distances);
    s.found = std::move(r.ids);
    return s;
  }
  bool operator==(const Snapshot&) const = default;
};

#define EXPECT_UNCHANGED(before, index, probe, k)                                                  \
  do {                                                                                             \
    const auto after_ = ::conformance::Snapshot::of(index, probe, k);                              \
    EXPECT_EQ((before).size, after_.size) << "size changed by a failed call";                     \
    EXPECT_EQ((before).stored_rows, after_.stored_rows) << "stored_rows changed by a failed call"; \
    EXPECT_EQ((before).next_id, after_.next_id) << "next_id changed by a failed call";            \
    EXPECT_EQ((before).ids, after_.ids) << "ids() changed by a failed call";                      \
    EXPECT_TRUE((before).rows == after_.rows && (before).bit_rows == after_.bit_rows)              \
        << "stored vectors changed by a failed call";                                              \
    EXPECT_TRUE((before).dist == after_.dist && (before).found == after_.found)                    \
        << "search results changed by a failed call";                                              \
  } while (0)

// Expects `statement` to throw hive::gpu::Error with `expected_code` and a non-empty message.
#define EXPECT_HIVE_ERROR(expected_code, statement)                                                      \
  do {                                                                                                   \
    bool thrown_ = false;                                                                                \
    try {                                                                                                \
      statement;                                                                                         \
    } catch (const ::hive::gpu::Error& e_) {                                                             \
      thrown_ = true;                                                                                    \
      EXPECT_EQ(::hive::gpu::to_string(e_.code()), ::hive::gpu::to_string(expected_code))                \
          << #statement << " threw: " << e_.what();                                                      \
      EXPECT_GT(std::string(e_.what()).size(), ::hive::gpu::to_string(e_.code()).size() + 2)             \
          << #statement << ": empty error message";                                                      \
    } catch (const std::exception& e_) {                                                                 \
      thrown_ = true;                                                                                    \
      ADD_FAILURE() << #statement << " threw a non-hive exception: " << e_.what();                       \
    }                                                                                                    \
    if (!thrown_) ADD_FAILURE() << #statement << " did not throw (expected "                             \
                                << ::hive::gpu::to_string(expected_code) << ")";                         \
  } while (0)

// The code of the Error `statement` throws; fails (and returns Internal) if it does not throw one.
template <class F>
ErrorCode error_code_of(F&& f, const std::string& what) {
  try {
    f();
  } catch (const Error& e) {
    EXPECT_GT(std::string(e.what()).size(), hive::gpu::to_string(e.code()).size() + 2) << what << ": empty message";
    return e.code();
  } catch (const std::exception& e) {
    ADD_FAILURE() << what << ": threw a non-hive exception: " << e.what();
    return ErrorCode::Internal;
  }
  ADD_FAILURE() << what << ": did not throw";
  return ErrorCode::Internal;
}

// ---------------------------------------------------------------------------------------------
// The shared fixture: one (backend, metric, storage) configuration.
// Its helpers are public so free helper functions in the test files can use them.
class IndexTest : public testing::TestWithParam<Param> {
 public:
  void SetUp() override {
    CONFORMANCE_SKIP_IF_UNAVAILABLE(GetParam().backend);
    ctx_ = std::make_unique<Context>(Context::open(GetParam().backend));
  }

  const Context& ctx() const { return *ctx_; }
  Metric metric() const { return GetParam().metric; }
  ScalarType storage() const { return GetParam().storage; }
  bool bits() const { return metric() == Metric::Hamming; }
  // A valid dimension near `want` (Hamming: a multiple of 8 bits).
  std::size_t dim_for(std::size_t want) const { return bits() ? std::max<std::size_t>(8, (want + 7) / 8 * 8) : want; }

  FlatIndex make(std::size_t dim) const { return FlatIndex(ctx(), dim, metric(), FlatOptions{storage()}); }
  Model model(std::size_t dim) const { return Model(dim, metric(), bits() ? ScalarType::Bits : storage()); }
  Vectors data(std::size_t n, std::size_t dim, uint64_t seed) const { return random_vectors(bits(), n, dim, seed); }

  // add / add_with_ids / upsert on both the index and the model.
  void add(FlatIndex& idx, Model& m, const Vectors& v) const {
    const int64_t first = idx.next_id();
    do_add(idx, v);
    for (std::size_t i = 0; i < v.n; ++i) m.put(idx, v, i, first + int64_t(i));
  }
  void add_with_ids(FlatIndex& idx, Model& m, const Vectors& v, const std::vector<int64_t>& ids) const {
    do_add_with_ids(idx, v, ids);
    for (std::size_t i = 0; i < v.n; ++i) m.put(idx, v, i, ids[i]);
  }
  void upsert(FlatIndex& idx, Model& m, const Vectors& v, const std::vector<int64_t>& ids) const {
    do_upsert(idx, v, ids);
    for (std::size_t i = 0; i < v.n; ++i) m.put(idx, v, i, ids[i]);
  }

  // Searches and checks against the model; also checks size(), ids() and contains().
  void expect_matches(const FlatIndex& idx, const Model& m, const Vectors& q, int k, const std::string& what) const {
    EXPECT_EQ(idx.size(), m.size()) << what;
    auto got = idx.ids();
    std::sort(got.begin(), got.end());
    EXPECT_EQ(got, m.sorted_ids()) << what << ": ids()";
    check_results(m, q, do_search(idx, q, k), what);
  }

  std::string case_name(const std::string& s) const {
    return std::string(metric_tag(metric())) + "/" + storage_tag(storage()) + " " + s;
  }

  std::unique_ptr<Context> ctx_;
};

// ---------------------------------------------------------------------------------------------
// A fresh temporary directory, removed with its contents at scope exit.
class TempDir {
 public:
  TempDir() {
    static std::atomic<unsigned> counter{0};
    path_ = std::filesystem::temp_directory_path() /
            ("hive_gpu_conformance_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::permissions(path_, std::filesystem::perms::owner_all, std::filesystem::perm_options::add, ec);
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  std::string file(const std::string& name) const { return (path_ / name).string(); }
  const std::filesystem::path& path() const { return path_; }
  // Names of the entries in the directory, sorted.
  std::vector<std::string> entries() const {
    std::vector<std::string> out;
    for (const auto& e : std::filesystem::directory_iterator(path_)) out.push_back(e.path().filename().string());
    std::sort(out.begin(), out.end());
    return out;
  }

 private:
  std::filesystem::path path_;
};

inline std::vector<uint8_t> read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

inline void write_bytes(const std::string& path, const std::vector<uint8_t>& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(bytes.size()));
}

}  // namespace conformance
