// Tensor-core screen (src/backends/cuda/screen.cu, and screen_wgmma.cu where the device runs
// it: every case below runs on each kernel that serves it) against a float64 reference on the
// decoded rows: completeness (every live row at or below tau_q is emitted), soundness (every emitted row
// is within twice the error bound of tau_q), no duplicates, count semantics, overflow of a small
// cap, deleted rows, and tau = +inf / NaN emitting every live row.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <iterator>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "backends/cuda/cuda_common.hpp"
#include "backends/cuda/kernels.hpp"
#include "backends/cuda/screen.hpp"
#include "hive_gpu/error.hpp"

namespace hive::gpu::cuda {
namespace {

bool has_device() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    (void)cudaGetLastError();
    return false;
  }
  return count > 0;
}

#define SKIP_WITHOUT_DEVICE() \
  if (!has_device()) GTEST_SKIP() << "CUDA has no device"

// ---- host encodings (round to nearest even) ----------------------------------------------
uint16_t f16_bits(float f) {  // finite |f| < 65504
  const uint16_t sign = std::signbit(f) ? uint16_t(0x8000u) : uint16_t(0);
  const double x = std::fabs(double(f));
  if (x == 0.0) return sign;
  int e = 0;
  (void)std::frexp(x, &e);                            // x = m 2^e, m in [0.5, 1)
  int ex = std::max(e - 1, -14);                      // binade (subnormals share the lowest spacing)
  double m = std::nearbyint(std::ldexp(x, 10 - ex));  // exact scaling; ties to even
  if (m >= 2048.0) {
    m /= 2.0;
    ++ex;
  }
  const auto mi = static_cast<uint32_t>(m);
  if (mi < 1024u) return static_cast<uint16_t>(sign | mi);  // subnormal (or the smallest normal)
  return static_cast<uint16_t>(sign | (uint32_t(ex + 15) << 10) | (mi - 1024u));
}
double f16_value(uint16_t h) {
  const int ex = (h >> 10) & 0x1f;
  const int mant = h & 0x3ff;
  const double v = ex == 0 ? std::ldexp(double(mant), -24) : std::ldexp(double(1024 + mant), ex - 25);
  return (h & 0x8000u) ? -v : v;
}
uint16_t bf16_bits(float f) {  // finite f
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}
double bf16_value(uint16_t h) {
  const uint32_t u = uint32_t(h) << 16;
  float f;
  std::memcpy(&f, &u, sizeof f);
  return double(f);
}

const char* name_of(ScalarType s) { return s == ScalarType::F32 ? "f32" : s == ScalarType::F16 ? "f16" : "bf16"; }
const char* name_of(Metric m) { return m == Metric::L2 ? "l2" : m == Metric::InnerProduct ? "ip" : "cosine"; }

// ---- a data set on host and device ---------------------------------------------------------
struct Data {
  std::size_t n = 0, nq = 0, dim = 0;
  ScalarType storage = ScalarType::F32;
  Metric metric = Metric::L2;
  std::vector<double> rows, queries;  // decoded rows, fp32 queries (as double)
  std::vector<float> rn2, qn2;
  std::vector<uint32_t> deleted;  // empty: none
  DeviceBuffer d_base, d_queries, d_rn2, d_qn2, d_deleted;

  bool is_deleted(std::size_t r) const { return !deleted.empty() && ((deleted[r >> 5] >> (r & 31)) & 1u) != 0; }
  double exact(std::size_t q, std::size_t r) const {
    const double* x = &queries[q * dim];
    const double* y = &rows[r * dim];
    double acc = 0.0;
    if (metric == Metric::L2) {
      for (std::size_t i = 0; i < dim; ++i) acc += (x[i] - y[i]) * (x[i] - y[i]);
      return acc;
    }
    for (std::size_t i = 0; i < dim; ++i) acc += x[i] * y[i];
    return metric == Metric::InnerProduct ? -acc : 1.0 - acc;
  }
};

template <class T>
void upload(DeviceBuffer& buf, const std::vector<T>& v) {
  buf.ensure(std::max<std::size_t>(v.size() * sizeof(T), 16));
  if (!v.empty()) check(cudaMemcpy(buf.get(), v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice), "upload");
}

void normalize(std::vector<float>& v, std::size_t count, std::size_t dim) {
  for (std::size_t i = 0; i < count; ++i) {
    double s = 0.0;
    for (std::size_t j = 0; j < dim; ++j) s += double(v[i * dim + j]) * double(v[i * dim + j]);
    const double inv = s > 0.0 ? 1.0 / std::sqrt(s) : 0.0;
    for (std::size_t j = 0; j < dim; ++j) v[i * dim + j] = static_cast<float>(double(v[i * dim + j]) * inv);
  }
}

Data make_data(std::size_t n, std::size_t nq, std::size_t dim, ScalarType st, Metric m, bool with_deleted,
               uint32_t seed) {
  Data d;
  d.n = n;
  d.nq = nq;
  d.dim = dim;
  d.storage = st;
  d.metric = m;
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> uni(-1.0f, 1.0f);
  std::vector<float> rows(n * dim), queries(nq * dim);
  for (float& x : rows) x = uni(gen);
  for (float& x : queries) x = uni(gen);
  if (m == Metric::Cosine) {  // the library stores and searches normalised vectors
    normalize(rows, n, dim);
    normalize(queries, nq, dim);
  }
  d.rows.resize(n * dim);
  if (st == ScalarType::F32) {
    for (std::size_t i = 0; i < rows.size(); ++i) d.rows[i] = double(rows[i]);
    upload(d.d_base, rows);
  } else {
    std::vector<uint16_t> enc(rows.size());
    for (std::size_t i = 0; i < rows.size(); ++i) {
      enc[i] = st == ScalarType::F16 ? f16_bits(rows[i]) : bf16_bits(rows[i]);
      d.rows[i] = st == ScalarType::F16 ? f16_value(enc[i]) : bf16_value(enc[i]);
    }
    upload(d.d_base, enc);
  }
  d.queries.assign(queries.begin(), queries.end());
  d.rn2.resize(n);
  for (std::size_t r = 0; r < n; ++r) {
    double s = 0.0;
    for (std::size_t j = 0; j < dim; ++j) s += d.rows[r * dim + j] * d.rows[r * dim + j];
    d.rn2[r] = static_cast<float>(s);
  }
  d.qn2.resize(nq);
  for (std::size_t q = 0; q < nq; ++q) {
    double s = 0.0;
    for (std::size_t j = 0; j < dim; ++j) s += d.queries[q * dim + j] * d.queries[q * dim + j];
    d.qn2[q] = static_cast<float>(s);
  }
  if (with_deleted) {
    d.deleted.assign((n + 31) / 32, 0u);
    for (std::size_t r = 0; r < n; ++r)
      if (r % 7 == 3 || r == n - 1) d.deleted[r >> 5] |= 1u << (r & 31);
    upload(d.d_deleted, d.deleted);
  }
  upload(d.d_queries, queries);
  upload(d.d_rn2, d.rn2);
  upload(d.d_qn2, d.qn2);
  return d;
}

// tau_q: the exact score of the query's rank-th best live row (or its worst, with fewer rows),
// rounded up to fp32 so that the float tau really is >= that row's score.
std::vector<float> thresholds_at_rank(const Data& d, std::size_t rank) {
  std::vector<float> tau(d.nq);
  std::vector<double> s;
  for (std::size_t q = 0; q < d.nq; ++q) {
    s.clear();
    for (std::size_t r = 0; r < d.n; ++r)
      if (!d.is_deleted(r)) s.push_back(d.exact(q, r));
    const std::size_t k = std::min(rank, s.size()) - 1;
    std::nth_element(s.begin(), s.begin() + std::ptrdiff_t(k), s.end());
    float t = static_cast<float>(s[k]);
    if (double(t) < s[k]) t = std::nextafter(t, std::numeric_limits<float>::infinity());
    tau[q] = t;
  }
  return tau;
}

struct Output {
  std::vector<uint32_t> count;
  std::vector<uint64_t> cand;  // nq * cap slots, then `guard` slots nobody may write
};

using Kernel = ScreenArgs::Kernel;

// The kernels that serve these operands on this device: mma.sync always, wgmma on sm_90.
std::vector<Kernel> kernels_for(ScalarType st, std::size_t dim) {
  std::vector<Kernel> k{Kernel::MmaSync};
  if (screen_wgmma_runs(st, dim)) k.push_back(Kernel::Wgmma);
  return k;
}
const char* name_of(Kernel k) { return k == Kernel::Wgmma ? "wgmma" : "mma.sync"; }

Output run(const Data& d, const std::vector<float>& tau, float a, float b, std::size_t cap, unsigned tiles_per_cta,
           Kernel kernel, std::size_t guard = 64) {
  DeviceBuffer d_tau, d_cand, d_count, d_terms;
  upload(d_tau, tau);
  const std::size_t slots = d.nq * cap + guard;
  d_cand.ensure(slots * sizeof(uint64_t));
  d_count.ensure(d.nq * sizeof(uint32_t));
  check(cudaMemset(d_cand.get(), 0xff, slots * sizeof(uint64_t)), "cudaMemset");  // kEmptyKey
  check(cudaMemset(d_count.get(), 0, d.nq * sizeof(uint32_t)), "cudaMemset");
  ScreenArgs args;
  args.base = d.d_base.get();
  args.n = d.n;
  args.dim = d.dim;
  args.storage = d.storage;
  args.metric = d.metric;
  args.queries = d.d_queries.as<float>();
  args.nq = d.nq;
  args.row_sq_norms = d.d_rn2.as<float>();
  args.query_sq_norms = d.d_qn2.as<float>();
  args.thresholds = d_tau.as<float>();
  args.a = a;
  args.b = b;
  args.deleted = d.deleted.empty() ? nullptr : d.d_deleted.as<uint32_t>();
  args.cand = d_cand.as<uint64_t>();
  args.count = d_count.as<uint32_t>();
  args.cap = cap;
  args.tiles_per_cta = tiles_per_cta;
  args.kernel = kernel;
  d_terms.ensure(screen_scratch_bytes(d.n, d.nq, d.dim));
  args.scratch = d_terms.get();
  launch_screen(args, nullptr);
  check(cudaDeviceSynchronize(), "screen");
  Output out;
  out.count.resize(d.nq);
  out.cand.resize(slots);
  check(cudaMemcpy(out.count.data(), d_count.get(), d.nq * sizeof(uint32_t), cudaMemcpyDeviceToHost), "download");
  check(cudaMemcpy(out.cand.data(), d_cand.get(), slots * sizeof(uint64_t), cudaMemcpyDeviceToHost), "download");
  return out;
}

// Error-bound coefficients generous for each operand precision (the test's, not the lead's).
float a_for(ScalarType s) { return s == ScalarType::BF16 ? std::ldexp(1.0f, -5) : std::ldexp(1.0f, -8); }
constexpr float kB = 0x1p-20f;

// Checks every property on `out`; returns "" or the first few problems. `expect_fit`: counts
// must not exceed cap (then completeness is checked too).
std::string verify(const Data& d, const std::vector<float>& tau, float a, float b, std::size_t cap, const Output& out,
                   bool expect_fit, std::size_t guard = 64) {
  std::string err;
  int problems = 0;
  auto fail = [&](const std::string& s) {
    if (problems++ < 8) err += s + "\n";
  };
  for (std::size_t i = d.nq * cap; i < d.nq * cap + guard; ++i)
    if (out.cand[i] != kEmptyKey) fail("guard slot " + std::to_string(i) + " written");
  std::vector<char> seen(d.n);
  for (std::size_t q = 0; q < d.nq; ++q) {
    const std::size_t cnt = out.count[q];
    if (expect_fit && cnt > cap) {
      fail("q " + std::to_string(q) + ": count " + std::to_string(cnt) + " > cap " + std::to_string(cap));
      continue;
    }
    const std::size_t used = std::min(cnt, cap);
    std::fill(seen.begin(), seen.end(), char(0));
    const double qn2 = double(d.qn2[q]);
    const double t = double(tau[q]);
    for (std::size_t j = 0; j < cap; ++j) {
      const uint64_t c = out.cand[q * cap + j];
      if (j >= used) {
        if (c != kEmptyKey) fail("q " + std::to_string(q) + ": slot " + std::to_string(j) + " past count written");
        continue;
      }
      if (c >= d.n) {
        fail("q " + std::to_string(q) + ": slot " + std::to_string(j) + " holds " + std::to_string(c));
        continue;
      }
      const std::size_t r = std::size_t(c);
      if (seen[r]) fail("q " + std::to_string(q) + ": row " + std::to_string(r) + " emitted twice");
      seen[r] = 1;
      if (d.is_deleted(r)) fail("q " + std::to_string(q) + ": deleted row " + std::to_string(r) + " emitted");
      if (!std::isinf(t) && !std::isnan(t)) {
        const double rn2 = double(d.rn2[r]);
        const double bound = a * std::sqrt(qn2) * std::sqrt(rn2) + b * (qn2 + rn2);
        const double s = d.exact(q, r);
        if (s > t + 2.0 * bound + 1e-5 * (1.0 + std::fabs(t) + qn2 + rn2))
          fail("q " + std::to_string(q) + ": row " + std::to_string(r) + " score " + std::to_string(s) +
               " beyond tau " + std::to_string(t) + " + 2 bound " + std::to_string(2.0 * bound));
      }
    }
    if (cnt > cap) continue;
    for (std::size_t r = 0; r < d.n; ++r) {
      if (seen[r] || d.is_deleted(r)) continue;
      if (std::isnan(t) || d.exact(q, r) <= t)
        fail("q " + std::to_string(q) + ": row " + std::to_string(r) + " score " + std::to_string(d.exact(q, r)) +
             " <= tau " + std::to_string(t) + " missing");
    }
  }
  if (problems > 8) err += "... " + std::to_string(problems) + " problems in all\n";
  return err;
}

struct Case {
  std::size_t n, nq, dim;
  ScalarType st;
  Metric m;
  bool del;
  unsigned tiles;
};

void run_case(const Case& c, uint32_t seed) {
  SCOPED_TRACE(std::string("n ") + std::to_string(c.n) + " nq " + std::to_string(c.nq) + " dim " +
               std::to_string(c.dim) + " " + name_of(c.st) + " " + name_of(c.m) + (c.del ? " deleted" : "") +
               " tiles/cta " + std::to_string(c.tiles));
  ASSERT_TRUE(screen_supported(c.m, c.st, c.dim));
  const Data d = make_data(c.n, c.nq, c.dim, c.st, c.m, c.del, seed);
  const std::vector<float> tau = thresholds_at_rank(d, 50);
  const float a = a_for(c.st);
  const std::size_t cap = 2048;
  for (Kernel kernel : kernels_for(c.st, c.dim)) {
    SCOPED_TRACE(name_of(kernel));
    const Output out = run(d, tau, a, kB, cap, c.tiles, kernel);
    EXPECT_EQ(verify(d, tau, a, kB, cap, out, true), "");
  }
}

const ScalarType kStorages[] = {ScalarType::F32, ScalarType::F16, ScalarType::BF16};
const Metric kMetrics[] = {Metric::L2, Metric::InnerProduct, Metric::Cosine};

TEST(CudaScreen, RandomSmall) {
  SKIP_WITHOUT_DEVICE();
  uint32_t seed = 1;
  for (std::size_t nq : {std::size_t(1), std::size_t(37), std::size_t(300)})
    for (std::size_t dim : {std::size_t(64), std::size_t(128)})
      for (ScalarType st : kStorages)
        for (Metric m : kMetrics) {
          run_case({1000, nq, dim, st, m, seed % 2 == 0, 0}, seed);
          ++seed;
        }
}

// Many CTAs along the rows, with automatic and forced (several tiles, a partial last range)
// row ranges per CTA.
TEST(CudaScreen, RandomLarge) {
  SKIP_WITHOUT_DEVICE();
  uint32_t seed = 100;
  for (ScalarType st : kStorages)
    for (Metric m : kMetrics) {
      run_case({100003, 37, 128, st, m, seed % 2 == 1, seed % 2 == 0 ? 0u : 7u}, seed);
      ++seed;
    }
  run_case({100003, 300, 64, ScalarType::F16, Metric::L2, true, 0}, seed++);
  run_case({100003, 300, 64, ScalarType::BF16, Metric::Cosine, false, 3}, seed++);
  run_case({100003, 1, 64, ScalarType::F32, Metric::InnerProduct, false, 0}, seed++);
}

// Rows whose operand bytes are not a multiple of the 64-byte pipeline slice (zero-padded), and
// the largest supported rows where the device has the shared memory for them.
TEST(CudaScreen, OtherDims) {
  SKIP_WITHOUT_DEVICE();
  uint32_t seed = 200;
  const Case cases[] = {
      {1000, 37, 40, ScalarType::F32, Metric::L2, false, 0},
      {1000, 37, 40, ScalarType::F16, Metric::L2, true, 0},
      {1000, 37, 96, ScalarType::BF16, Metric::Cosine, false, 0},
      {1000, 37, 200, ScalarType::F32, Metric::InnerProduct, true, 0},
      {1000, 130, 256, ScalarType::F32, Metric::L2, false, 2},
      {1000, 130, 256, ScalarType::F16, Metric::InnerProduct, false, 0},
      {1000, 37, 512, ScalarType::F16, Metric::L2, true, 0},
      {1000, 37, 24, ScalarType::BF16, Metric::L2, false, 0},
  };
  for (const Case& c : cases) {
    if (!screen_supported(c.m, c.st, c.dim)) continue;  // shared memory of this device
    run_case(c, seed++);
  }
}

TEST(CudaScreen, Supported) {
  SKIP_WITHOUT_DEVICE();
  EXPECT_TRUE(screen_supported(Metric::L2, ScalarType::F32, 128));
  EXPECT_TRUE(screen_supported(Metric::Cosine, ScalarType::BF16, 64));
  EXPECT_FALSE(screen_supported(Metric::L1, ScalarType::F32, 128));
  EXPECT_FALSE(screen_supported(Metric::Hamming, ScalarType::Bits, 128));
  EXPECT_FALSE(screen_supported(Metric::L2, ScalarType::F16, 12));   // not whole 16-byte pieces
  EXPECT_FALSE(screen_supported(Metric::L2, ScalarType::F32, 260));  // query tile too large
  EXPECT_FALSE(screen_supported(Metric::L2, ScalarType::F32, 0));
}

// Queries far from unit scale: fp16 would flush most components of a 1e-6-scaled query to
// subnormals (relative error ~1e-2) and overflow those of a 1e5-scaled one; the kernel's
// power-of-two query scale keeps the rounding relative, so the same bound still holds.
TEST(CudaScreen, QueryScale) {
  SKIP_WITHOUT_DEVICE();
  for (ScalarType st : kStorages)
    for (double scale : {1e-6, 1e5}) {
      SCOPED_TRACE(std::string(name_of(st)) + " query scale " + std::to_string(scale));
      Data d = make_data(3000, 37, 64, st, Metric::InnerProduct, false, 600);
      std::vector<float> q(d.nq * d.dim);
      for (std::size_t i = 0; i < q.size(); ++i) {
        q[i] = static_cast<float>(d.queries[i] * scale);
        d.queries[i] = double(q[i]);
      }
      for (std::size_t qi = 0; qi < d.nq; ++qi) {
        double s2 = 0.0;
        for (std::size_t j = 0; j < d.dim; ++j) s2 += d.queries[qi * d.dim + j] * d.queries[qi * d.dim + j];
        d.qn2[qi] = static_cast<float>(s2);
      }
      upload(d.d_queries, q);
      upload(d.d_qn2, d.qn2);
      const std::vector<float> tau = thresholds_at_rank(d, 50);
      // b = 0: with inner products the error is relative to |q||r| alone, and b (qn2 + rn2) would
      // swamp the spread of the scores at these scales (every row would pass).
      const float a = a_for(st);
      for (Kernel kernel : kernels_for(st, d.dim)) {
        SCOPED_TRACE(name_of(kernel));
        const Output out = run(d, tau, a, 0.0f, 2048, 0, kernel);
        EXPECT_EQ(verify(d, tau, a, 0.0f, 2048, out, true), "");
      }
    }
}

// A cap of 8 with ~50 qualifying rows: count goes past cap, the 8 slots hold distinct sound
// rows and nothing beyond them is written.
TEST(CudaScreen, SmallCapOverflows) {
  SKIP_WITHOUT_DEVICE();
  for (ScalarType st : kStorages) {
    SCOPED_TRACE(name_of(st));
    const Data d = make_data(1000, 37, 64, st, Metric::L2, true, 300);
    const std::vector<float> tau = thresholds_at_rank(d, 50);
    const float a = a_for(st);
    const std::size_t cap = 8;
    for (Kernel kernel : kernels_for(st, d.dim)) {
      SCOPED_TRACE(name_of(kernel));
      const Output out = run(d, tau, a, kB, cap, 0, kernel);
      for (std::size_t q = 0; q < d.nq; ++q) EXPECT_GT(out.count[q], cap) << "q " << q;
      EXPECT_EQ(verify(d, tau, a, kB, cap, out, false), "");
      for (std::size_t i = 0; i < d.nq * cap; ++i) EXPECT_NE(out.cand[i], kEmptyKey) << "slot " << i;
    }
  }
}

// tau = +inf (and NaN, which must emit too) lets every live row through, once.
TEST(CudaScreen, InfiniteThresholdEmitsAll) {
  SKIP_WITHOUT_DEVICE();
  for (Metric m : kMetrics) {
    SCOPED_TRACE(name_of(m));
    const Data d = make_data(1000, 37, 64, ScalarType::F16, m, true, 400);
    std::vector<float> tau(d.nq, std::numeric_limits<float>::infinity());
    tau[5] = std::numeric_limits<float>::quiet_NaN();
    std::size_t live = 0;
    for (std::size_t r = 0; r < d.n; ++r) live += d.is_deleted(r) ? 0 : 1;
    for (Kernel kernel : kernels_for(d.storage, d.dim)) {
      SCOPED_TRACE(name_of(kernel));
      const Output out = run(d, tau, a_for(d.storage), kB, d.n, 0, kernel);
      for (std::size_t q = 0; q < d.nq; ++q) EXPECT_EQ(out.count[q], live) << "q " << q;
      EXPECT_EQ(verify(d, tau, a_for(d.storage), kB, d.n, out, true), "");
    }
  }
}

// Several tiles per CTA with most queries at +inf: the CTA's candidate queue fills, is flushed
// between tiles and overflows into direct emits, while the finite queries still get exactly
// their rows.
TEST(CudaScreen, QueueFlushAcrossTiles) {
  SKIP_WITHOUT_DEVICE();
  for (ScalarType st : kStorages) {
    SCOPED_TRACE(name_of(st));
    const Data d = make_data(20000, 37, 64, st, Metric::InnerProduct, true, 500 + uint32_t(st));
    std::vector<float> tau = thresholds_at_rank(d, 50);
    for (std::size_t q = 0; q < d.nq; q += 2) tau[q] = std::numeric_limits<float>::infinity();
    const float a = a_for(st);
    for (Kernel kernel : kernels_for(st, d.dim)) {
      SCOPED_TRACE(name_of(kernel));
      const Output out = run(d, tau, a, kB, d.n, 5, kernel);
      EXPECT_EQ(verify(d, tau, a, kB, d.n, out, true), "");
    }
  }
}

// The wgmma kernel serves fp16 / bf16 rows of dim % 8 == 0 up to 128 on compute capability 9.0
// devices (in builds with HIVE_GPU_CUDA_WGMMA), and a forced launch elsewhere is an error.
TEST(CudaScreen, WgmmaAvailability) {
  SKIP_WITHOUT_DEVICE();
  int device = 0, major = 0, minor = 0;
  ASSERT_EQ(cudaGetDevice(&device), cudaSuccess);
  ASSERT_EQ(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device), cudaSuccess);
  ASSERT_EQ(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device), cudaSuccess);
  EXPECT_FALSE(screen_wgmma_runs(ScalarType::F32, 128));
  EXPECT_FALSE(screen_wgmma_runs(ScalarType::F16, 136));
  EXPECT_FALSE(screen_wgmma_runs(ScalarType::F16, 12));
#if defined(HIVE_GPU_CUDA_WGMMA)
  if (major == 9 && minor == 0) {
    EXPECT_TRUE(screen_wgmma_runs(ScalarType::F16, 128));
    EXPECT_TRUE(screen_wgmma_runs(ScalarType::BF16, 8));
  }
#endif
  if (!screen_wgmma_runs(ScalarType::F16, 64)) {
    const Data d = make_data(100, 3, 64, ScalarType::F16, Metric::L2, false, 700);
    EXPECT_THROW(run(d, thresholds_at_rank(d, 5), a_for(d.storage), kB, 64, 0, Kernel::Wgmma), Error);
  }
}

// The two kernels on the same inputs: the same candidate set for every query (both compute the
// same fp32 test from tensor-core dot products; a row on the very edge of the test may differ
// only by the order of the accumulation, so the sets are compared up to rows within 1e-6 of it).
TEST(CudaScreen, KernelsAgree) {
  SKIP_WITHOUT_DEVICE();
  if (!screen_wgmma_runs(ScalarType::F16, 128)) GTEST_SKIP() << "no wgmma kernel on this device";
  for (ScalarType st : {ScalarType::F16, ScalarType::BF16}) {
    SCOPED_TRACE(name_of(st));
    const Data d = make_data(50001, 300, 128, st, Metric::L2, true, 800 + uint32_t(st));
    const std::vector<float> tau = thresholds_at_rank(d, 50);
    const float a = a_for(st);
    const std::size_t cap = 4096;
    const Output x = run(d, tau, a, kB, cap, 0, Kernel::MmaSync);
    const Output y = run(d, tau, a, kB, cap, 0, Kernel::Wgmma);
    std::size_t differ = 0, total = 0;
    for (std::size_t q = 0; q < d.nq; ++q) {
      ASSERT_LE(x.count[q], cap);
      ASSERT_LE(y.count[q], cap);
      std::vector<uint64_t> a1(x.cand.begin() + long(q * cap), x.cand.begin() + long(q * cap + x.count[q]));
      std::vector<uint64_t> b1(y.cand.begin() + long(q * cap), y.cand.begin() + long(q * cap + y.count[q]));
      std::sort(a1.begin(), a1.end());
      std::sort(b1.begin(), b1.end());
      std::vector<uint64_t> sym;
      std::set_symmetric_difference(a1.begin(), a1.end(), b1.begin(), b1.end(), std::back_inserter(sym));
      differ += sym.size();
      total += a1.size();
    }
    EXPECT_GT(total, d.nq * 50);      // the thresholds let ~50 rows a query through
    EXPECT_LE(differ, total / 1000);  // edge rows only
  }
}

}  // namespace
}  // namespace hive::gpu::cuda
