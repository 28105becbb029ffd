// CPU distance kernels at every SIMD level this CPU supports, against float64 references
// computed from the decoded stored values. Inputs end right before an inaccessible page, so a
// kernel reading past its input faults, and outputs carry a poisoned guard zone.
#include <gtest/gtest.h>

#include <functional>
#include <sys/mman.h>
#include <unistd.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "backends/cpu/kernels.hpp"
#include "hive_gpu/error.hpp"

namespace hive::gpu::cpu {
namespace {

// count elements placed so that the byte after the last one is in a PROT_NONE page.
template <class T>
class Guarded {
 public:
  explicit Guarded(std::size_t count) : count_(count) {
    const auto page = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
    const std::size_t bytes = count * sizeof(T);
    const std::size_t data_pages = (bytes + page - 1) / page;
    total_ = (data_pages + 1) * page;
    void* p = mmap(nullptr, total_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) throw std::bad_alloc();
    base_ = static_cast<unsigned char*>(p);
    if (mprotect(base_ + data_pages * page, page, PROT_NONE) != 0) throw std::bad_alloc();
    data_ = reinterpret_cast<T*>(base_ + data_pages * page - bytes);
  }
  ~Guarded() { munmap(base_, total_); }
  Guarded(const Guarded&) = delete;
  Guarded& operator=(const Guarded&) = delete;

  T* data() { return data_; }
  T& operator[](std::size_t i) { return data_[i]; }
  std::size_t size() const { return count_; }

 private:
  unsigned char* base_ = nullptr;
  std::size_t total_ = 0;
  T* data_ = nullptr;
  std::size_t count_ = 0;
};

// Independent of the kernels' bit manipulation: the binary16 definition via ldexp.
double ref_half(uint16_t h) {
  const double sign = (h & 0x8000u) != 0 ? -1.0 : 1.0;
  const int e = (h >> 10) & 0x1f;
  const int m = h & 0x3ff;
  if (e == 0) return sign * std::ldexp(m, -24);
  if (e == 31) return m == 0 ? sign * HUGE_VAL : std::nan("");
  return sign * std::ldexp(1024 + m, e - 25);
}

double ref_bf16(uint16_t b) { return std::bit_cast<float>(uint32_t(b) << 16); }

// fp32 -> binary16, round to nearest even; finite inputs only.
uint16_t to_half(float f) {
  const uint16_t sign = std::signbit(f) ? 0x8000u : 0u;
  const double a = std::fabs(static_cast<double>(f));
  if (a == 0.0) return sign;
  int e = 0;
  std::frexp(a, &e);  // a in [2^(e-1), 2^e)
  if (e - 1 < -14) {  // subnormal; 1024 units correctly becomes the smallest normal
    return static_cast<uint16_t>(sign | static_cast<unsigned>(std::nearbyint(std::ldexp(a, 24))));
  }
  auto units = static_cast<unsigned>(std::nearbyint(std::ldexp(a, 10 - (e - 1))));  // [1024, 2048]
  int biased = e - 1 + 15;
  if (units == 2048) {
    units = 1024;
    ++biased;
  }
  if (biased >= 31) return static_cast<uint16_t>(sign | 0x7c00u);
  return static_cast<uint16_t>(sign | (static_cast<unsigned>(biased) << 10) | (units - 1024));
}

uint16_t to_bf16(float f) { return static_cast<uint16_t>(std::bit_cast<uint32_t>(f) >> 16); }

uint32_t bits(float f) { return std::bit_cast<uint32_t>(f); }

constexpr std::size_t kGuard = 19;
constexpr float kPoison = -1234.5f;

const Metric kFloatMetricList[] = {Metric::L2, Metric::InnerProduct, Metric::Cosine, Metric::L1, Metric::Linf};
const ScalarType kStorageList[] = {ScalarType::F32, ScalarType::F16, ScalarType::BF16};
const std::size_t kDims[] = {1, 3, 7, 8, 15, 16, 17, 31, 33, 64, 100, 128, 784};
const std::size_t kRowCounts[] = {0, 1, 2, 3, 4, 5, 7, 8, 9, 12, 37};
const uint64_t kSeeds[] = {1, 2, 3};

// Scores one random case with fn and compares with the float64 reference.
using ScanLike = std::function<void(const float*, const void*, std::size_t, std::size_t, float*)>;

testing::AssertionResult check_scan(const ScanLike& fn, Metric metric, ScalarType storage, std::size_t dim,
                                    std::size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed * 1000003u + dim * 1009u + n * 17u + int(metric) * 7u + int(storage));
  std::uniform_real_distribution<float> uni(-1.0f, 1.0f);
  std::uniform_int_distribution<int> pick(0, 15);

  Guarded<float> q(dim);
  for (std::size_t j = 0; j < dim; ++j) q[j] = uni(rng);

  const std::size_t count = n * dim;
  std::vector<double> x(count);
  Guarded<float> rows_f32(storage == ScalarType::F32 ? count : 0);
  Guarded<uint16_t> rows_u16(storage == ScalarType::F32 ? 0 : count);
  for (std::size_t i = 0; i < count; ++i) {
    const float v = uni(rng);
    if (storage == ScalarType::F32) {
      rows_f32[i] = v;
      x[i] = v;
    } else if (storage == ScalarType::F16) {
      // Some values tiny enough to be fp16 subnormals, so the kernels decode those too.
      rows_u16[i] = to_half(pick(rng) == 0 ? v * 1e-5f : 2.0f * v);
      x[i] = ref_half(rows_u16[i]);
    } else {
      rows_u16[i] = to_bf16(4.0f * v);
      x[i] = ref_bf16(rows_u16[i]);
    }
  }
  const void* rows = storage == ScalarType::F32 ? static_cast<const void*>(rows_f32.data())
                                                : static_cast<const void*>(rows_u16.data());

  std::vector<float> out(n + kGuard, kPoison);
  fn(q.data(), rows, n, dim, out.data());

  const auto where = [&](std::size_t i) {
    return " [metric " + std::to_string(int(metric)) + " storage " + std::to_string(int(storage)) + " dim " +
           std::to_string(dim) + " n " + std::to_string(n) + " seed " + std::to_string(seed) + " row " +
           std::to_string(i) + "]";
  };
  for (std::size_t i = n; i < out.size(); ++i) {
    if (bits(out[i]) != bits(kPoison)) return testing::AssertionFailure() << "wrote past n" << where(i);
  }
  for (std::size_t i = 0; i < n; ++i) {
    double value = 0.0;
    double scale = 0.0;  // sum of |terms|: what the rounding error of a float sum scales with
    for (std::size_t j = 0; j < dim; ++j) {
      const double qj = q[j];
      const double xj = x[i * dim + j];
      switch (metric) {
        case Metric::L2:
          value += (qj - xj) * (qj - xj);
          break;
        case Metric::InnerProduct:
        case Metric::Cosine:
          value += qj * xj;
          scale += std::fabs(qj * xj);
          break;
        case Metric::L1:
          value += std::fabs(qj - xj);
          break;
        default:
          value = std::fmax(value, std::fabs(qj - xj));
          break;
      }
    }
    if (metric == Metric::InnerProduct) value = -value;
    if (metric == Metric::Cosine) {
      value = 1.0 - value;
      scale += 1.0;
    }
    if (metric == Metric::L2 || metric == Metric::L1) scale = value;

    const float got = out[i];
    if (metric == Metric::Linf) {
      if (bits(got) != bits(static_cast<float>(value))) {
        return testing::AssertionFailure() << "Linf " << got << " != " << value << where(i);
      }
    } else if (!(std::fabs(static_cast<double>(got) - value) <= 1e-5 * scale + 1e-30)) {
      return testing::AssertionFailure() << got << " vs reference " << value << " (scale " << scale << ")" << where(i);
    }
  }
  return testing::AssertionSuccess();
}

testing::AssertionResult check_hamming(ScanBitsFn fn, std::size_t nbytes, std::size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed * 7919u + nbytes * 31u + n);
  Guarded<uint8_t> q(nbytes);
  Guarded<uint8_t> rows(n * nbytes);
  for (std::size_t j = 0; j < nbytes; ++j) q[j] = static_cast<uint8_t>(rng());
  for (std::size_t i = 0; i < n * nbytes; ++i) rows[i] = static_cast<uint8_t>(rng());
  // Extremes: identical to q, and its complement.
  if (n > 0) std::memcpy(rows.data(), q.data(), nbytes);
  if (n > 1) {
    for (std::size_t j = 0; j < nbytes; ++j) rows[nbytes + j] = static_cast<uint8_t>(~q[j]);
  }

  std::vector<float> out(n + kGuard, kPoison);
  fn(q.data(), rows.data(), n, nbytes, out.data());
  for (std::size_t i = n; i < out.size(); ++i) {
    if (bits(out[i]) != bits(kPoison)) return testing::AssertionFailure() << "wrote past n=" << n << " nbytes=" << nbytes;
  }
  for (std::size_t i = 0; i < n; ++i) {
    int expect = 0;
    for (std::size_t j = 0; j < nbytes; ++j) expect += std::popcount(static_cast<uint8_t>(q[j] ^ rows[i * nbytes + j]));
    if (out[i] != static_cast<float>(expect)) {
      return testing::AssertionFailure() << "row " << i << ": " << out[i] << " != " << expect << " (nbytes " << nbytes
                                         << ", n " << n << ")";
    }
  }
  return testing::AssertionSuccess();
}

class KernelLevel : public testing::TestWithParam<SimdLevel> {
 protected:
  void SetUp() override {
    if (!cpu_supports(GetParam())) GTEST_SKIP() << "CPU lacks " << to_string(GetParam());
    table_ = &kernels(GetParam());
  }
  const KernelTable* table_ = nullptr;
};

TEST_P(KernelLevel, TableIsComplete) {
  EXPECT_EQ(table_->level, GetParam());
  for (const Metric m : kFloatMetricList) {
    for (const ScalarType s : kStorageList) EXPECT_NE(table_->scan_fn(m, s), nullptr);
  }
  EXPECT_NE(table_->hamming, nullptr);
  for (const DecodeFn d : table_->decode) EXPECT_NE(d, nullptr);
}

TEST_P(KernelLevel, FloatScansMatchReference) {
  for (const Metric m : kFloatMetricList) {
    for (const ScalarType s : kStorageList) {
      const ScanFn fn = table_->scan_fn(m, s);
      for (const uint64_t seed : kSeeds) {
        for (const std::size_t dim : kDims) {
          for (const std::size_t n : kRowCounts) {
            const auto result = check_scan(fn, m, s, dim, n, seed);
            ASSERT_TRUE(result);
          }
        }
      }
    }
  }
}

// A long run of rows exercises the steady-state loop many times over, with dims around the
// vector widths.
TEST_P(KernelLevel, FloatScansManyRows) {
  for (const Metric m : kFloatMetricList) {
    for (const ScalarType s : kStorageList) {
      for (const std::size_t dim : {16u, 24u, 96u, 129u}) ASSERT_TRUE(check_scan(table_->scan_fn(m, s), m, s, dim, 1003, 9));
    }
  }
}

// The gather kernels through the same checker: row i of the contiguous block is handed over as
// pointer n - 1 - i (rows anywhere, in any order) and the results put back in row order.
TEST_P(KernelLevel, GatherMatchesReference) {
  for (const Metric m : kFloatMetricList) {
    for (const ScalarType s : kStorageList) {
      const GatherFn g = table_->gather_fn(m, s);
      ASSERT_NE(g, nullptr);
      const std::size_t elem = s == ScalarType::F32 ? 4 : 2;
      const ScanLike reversed = [g, elem](const float* q, const void* rows, std::size_t n, std::size_t dim, float* out) {
        std::vector<const void*> ptrs(n);
        for (std::size_t i = 0; i < n; ++i) ptrs[i] = static_cast<const uint8_t*>(rows) + (n - 1 - i) * dim * elem;
        std::vector<float> tmp(n + kGuard, kPoison);
        g(q, ptrs.data(), n, dim, tmp.data());
        for (std::size_t i = 0; i < n; ++i) out[n - 1 - i] = tmp[i];
        for (std::size_t i = n; i < tmp.size(); ++i)  // nothing written past n
          if (bits(tmp[i]) != bits(kPoison)) out[n + (i - n) % kGuard] = 0.0f;
      };
      for (const std::size_t dim : kDims) {
        for (const std::size_t n : kRowCounts) ASSERT_TRUE(check_scan(reversed, m, s, dim, n, 5));
      }
    }
  }
}

TEST_P(KernelLevel, HammingMatchesReference) {
  std::vector<ScanBitsFn> fns = {table_->hamming};
  if (GetParam() == SimdLevel::AVX512) fns.push_back(avx512_hamming_no_vpopcnt());
  for (const ScanBitsFn fn : fns) {
    for (const uint64_t seed : kSeeds) {
      for (const std::size_t nbytes : {1u, 3u, 7u, 8u, 15u, 16u, 17u, 31u, 32u, 33u, 63u, 64u, 65u, 100u, 128u, 200u}) {
        for (const std::size_t n : kRowCounts) ASSERT_TRUE(check_hamming(fn, nbytes, n, seed));
      }
    }
  }
}

TEST_P(KernelLevel, DecodeF16Exhaustive) {
  Guarded<uint16_t> src(65536);
  for (std::size_t i = 0; i < src.size(); ++i) src[i] = static_cast<uint16_t>(i);
  std::vector<float> dst(65536);
  table_->decode[int(ScalarType::F16)](src.data(), dst.data(), src.size());
  for (std::size_t i = 0; i < src.size(); ++i) {
    const double ref = ref_half(static_cast<uint16_t>(i));
    if (std::isnan(ref)) {
      ASSERT_TRUE(std::isnan(dst[i])) << std::hex << i;
      ASSERT_EQ(std::signbit(dst[i]), (i & 0x8000u) != 0) << std::hex << i;
    } else {
      ASSERT_EQ(bits(dst[i]), bits(static_cast<float>(ref))) << std::hex << i;  // -0 keeps its sign
    }
  }
}

TEST_P(KernelLevel, DecodeF16SpecialValues) {
  const struct {
    uint16_t h;
    float f;
  } cases[] = {
      {0x0000, 0.0f},         {0x8000, -0.0f},        {0x0001, 0x1p-24f},        {0x8001, -0x1p-24f},
      {0x03ff, 0x3ffp-24f},   {0x0400, 0x1p-14f},     {0x3c00, 1.0f},            {0xc000, -2.0f},
      {0x3555, 0x1.554p-2f},  {0x7bff, 65504.0f},     {0x7c00, INFINITY},        {0xfc00, -INFINITY},
  };
  Guarded<uint16_t> src(std::size(cases));
  for (std::size_t i = 0; i < std::size(cases); ++i) src[i] = cases[i].h;
  std::vector<float> dst(std::size(cases));
  table_->decode[int(ScalarType::F16)](src.data(), dst.data(), src.size());
  for (std::size_t i = 0; i < std::size(cases); ++i) EXPECT_EQ(bits(dst[i]), bits(cases[i].f)) << std::hex << cases[i].h;

  src[0] = 0x7e00;
  src[1] = 0xfd01;  // signalling NaN payload
  table_->decode[int(ScalarType::F16)](src.data(), dst.data(), 2);
  EXPECT_TRUE(std::isnan(dst[0]));
  EXPECT_TRUE(std::isnan(dst[1]));
}

// Every finite half decodes to a float that encodes back to the same bits.
TEST_P(KernelLevel, DecodeF16RoundTrips) {
  Guarded<uint16_t> src(65536);
  for (std::size_t i = 0; i < src.size(); ++i) src[i] = static_cast<uint16_t>(i);
  std::vector<float> dst(65536);
  table_->decode[int(ScalarType::F16)](src.data(), dst.data(), src.size());
  for (std::size_t i = 0; i < src.size(); ++i) {
    if ((i & 0x7c00u) == 0x7c00u) continue;  // inf / NaN
    ASSERT_EQ(to_half(dst[i]), i) << std::hex << i;
  }
}

TEST_P(KernelLevel, DecodeBF16Exhaustive) {
  Guarded<uint16_t> src(65536);
  for (std::size_t i = 0; i < src.size(); ++i) src[i] = static_cast<uint16_t>(i);
  std::vector<float> dst(65536);
  table_->decode[int(ScalarType::BF16)](src.data(), dst.data(), src.size());
  for (std::size_t i = 0; i < src.size(); ++i) ASSERT_EQ(bits(dst[i]), uint32_t(i) << 16) << std::hex << i;
}

// Every length around the vector widths: exact values, no read past the input (guard page),
// no write past n.
TEST_P(KernelLevel, DecodeLengths) {
  std::mt19937_64 rng(5);
  for (std::size_t n = 0; n <= 40; ++n) {
    for (const ScalarType s : kStorageList) {
      Guarded<float> f32(s == ScalarType::F32 ? n : 0);
      Guarded<uint16_t> u16(s == ScalarType::F32 ? 0 : n);
      std::vector<float> expect(n);
      for (std::size_t i = 0; i < n; ++i) {
        const float v = std::uniform_real_distribution<float>(-100.0f, 100.0f)(rng);
        if (s == ScalarType::F32) {
          f32[i] = v;
          expect[i] = v;
        } else if (s == ScalarType::F16) {
          u16[i] = to_half(v);
          expect[i] = static_cast<float>(ref_half(u16[i]));
        } else {
          u16[i] = to_bf16(v);
          expect[i] = static_cast<float>(ref_bf16(u16[i]));
        }
      }
      const void* src = s == ScalarType::F32 ? static_cast<const void*>(f32.data()) : static_cast<const void*>(u16.data());
      std::vector<float> dst(n + kGuard, kPoison);
      table_->decode[int(s)](src, dst.data(), n);
      for (std::size_t i = 0; i < n; ++i) ASSERT_EQ(bits(dst[i]), bits(expect[i])) << "storage " << int(s) << " n " << n;
      for (std::size_t i = n; i < dst.size(); ++i) ASSERT_EQ(bits(dst[i]), bits(kPoison)) << "storage " << int(s) << " n " << n;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(CpuKernels, KernelLevel,
                         testing::Values(SimdLevel::Scalar, SimdLevel::AVX2, SimdLevel::AVX512),
                         [](const testing::TestParamInfo<SimdLevel>& param) { return std::string(to_string(param.param)); });

TEST(CpuKernelDispatch, NamesLevels) {
  EXPECT_STREQ(to_string(SimdLevel::Scalar), "scalar");
  EXPECT_STREQ(to_string(SimdLevel::AVX2), "avx2");
  EXPECT_STREQ(to_string(SimdLevel::AVX512), "avx512");
}

TEST(CpuKernelDispatch, BestLevelIsSupported) {
  EXPECT_TRUE(cpu_supports(SimdLevel::Scalar));
  EXPECT_TRUE(cpu_supports(best_simd_level()));
  EXPECT_EQ(kernels().level, best_simd_level());
  if (cpu_supports(SimdLevel::AVX512)) {
    EXPECT_TRUE(cpu_supports(SimdLevel::AVX2));
  }
}

TEST(CpuKernelDispatch, UnsupportedLevelThrows) {
  for (const SimdLevel l : {SimdLevel::AVX2, SimdLevel::AVX512}) {
    if (cpu_supports(l)) continue;
    try {
      kernels(l);
      ADD_FAILURE() << "no exception for " << to_string(l);
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::Unsupported);
    }
  }
}

TEST(CpuKernelDispatch, EnvRequestOnlyLowersTheLevel) {
  using L = SimdLevel;
  EXPECT_EQ(resolve_simd_level(L::AVX512, nullptr), L::AVX512);
  EXPECT_EQ(resolve_simd_level(L::AVX512, "scalar"), L::Scalar);
  EXPECT_EQ(resolve_simd_level(L::AVX512, "avx2"), L::AVX2);
  EXPECT_EQ(resolve_simd_level(L::AVX512, "AVX2"), L::AVX2);
  EXPECT_EQ(resolve_simd_level(L::AVX512, "avx512"), L::AVX512);
  EXPECT_EQ(resolve_simd_level(L::AVX2, "avx512"), L::AVX2);
  EXPECT_EQ(resolve_simd_level(L::Scalar, "avx2"), L::Scalar);
  EXPECT_EQ(resolve_simd_level(L::AVX2, "sse9"), L::AVX2);
  EXPECT_EQ(resolve_simd_level(L::AVX2, ""), L::AVX2);
  EXPECT_EQ(resolve_simd_level(L::AVX2, "avx"), L::AVX2);
  EXPECT_EQ(resolve_simd_level(L::AVX512, "avx2x"), L::AVX512);
}

}  // namespace
}  // namespace hive::gpu::cpu
