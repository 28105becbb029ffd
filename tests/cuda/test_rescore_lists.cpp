// The candidate-list re-score (launch_rescore_lists, the batch screen's) against the per-slot one
// (launch_rescore): the same keys bitwise, for L2 / inner product / cosine on fp32, fp16 and bf16
// rows, dims that take a 16-lane or a 32-lane group (and one that takes the per-slot kernel),
// lists of uneven length (empty, full, counts past the capacity); where the list kernel applies
// (rescore_lists_clears), slots past each list hold garbage and come back empty up to the
// length, untouched after it, else they are empty and left so. Both are also checked against a
// float64 reference.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "backends/cuda/kernels.hpp"

#include "cuda_test_util.hpp"

namespace hive::gpu::cuda {
namespace {

using test::DeviceMem;

constexpr uint64_t kEmpty = ~uint64_t(0);

float key_score_host(uint64_t k) {
  const auto o = uint32_t(k >> 32);
  const uint32_t u = (o & 0x80000000u) ? (o & 0x7fffffffu) : ~o;
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

struct Case {
  Metric metric;
  ScalarType storage;
  std::size_t dim;
};

std::string name_of(const Case& c) {
  return std::string(to_string(c.metric)) + " " + std::string(to_string(c.storage)) + " d " + std::to_string(c.dim);
}

void run_case(const Case& c, uint32_t seed) {
  SCOPED_TRACE(name_of(c));
  const std::size_t n = 3000, nq = 41, cap = 96, ld = cap + 3, dim = c.dim;
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> rows(n * dim), queries(nq * dim);
  for (auto& v : rows) v = nd(rng);
  for (auto& v : queries) v = nd(rng) * 3.0f;
  if (c.metric == Metric::Cosine) {  // (cosine stores and queries unit vectors)
    auto unit = [dim](float* x) {
      double s = 0;
      for (std::size_t j = 0; j < dim; ++j) s += double(x[j]) * x[j];
      for (std::size_t j = 0; j < dim; ++j) x[j] = float(x[j] / std::sqrt(s));
    };
    for (std::size_t r = 0; r < n; ++r) unit(&rows[r * dim]);
    for (std::size_t q = 0; q < nq; ++q) unit(&queries[q * dim]);
  }
  // Rows in their encoding, and the decoded values the reference uses.
  const std::size_t esize = c.storage == ScalarType::F32 ? 4 : 2;
  std::vector<uint8_t> enc(n * dim * esize);
  std::vector<float> dec(n * dim);
  for (std::size_t i = 0; i < n * dim; ++i) {
    if (c.storage == ScalarType::F32) {
      std::memcpy(&enc[i * 4], &rows[i], 4);
      dec[i] = rows[i];
    } else if (c.storage == ScalarType::F16) {
      const __half h = __float2half_rn(rows[i]);
      std::memcpy(&enc[i * 2], &h, 2);
      dec[i] = __half2float(h);
    } else {
      const __nv_bfloat16 h = __float2bfloat16_rn(rows[i]);
      std::memcpy(&enc[i * 2], &h, 2);
      dec[i] = __bfloat162float(h);
    }
  }
  // Lists: query q holds counts[q] rows (0, full, past cap, random), the rest of its slots empty.
  std::vector<uint32_t> counts(nq);
  std::vector<uint64_t> keys(nq * ld, kEmpty);
  std::uniform_int_distribution<uint32_t> row_of(0, uint32_t(n - 1)), len_of(1, uint32_t(cap));
  for (std::size_t q = 0; q < nq; ++q) {
    counts[q] = q == 0 ? 0u : q == 1 ? uint32_t(cap) : q == 2 ? uint32_t(cap + 7) : len_of(rng);
    for (std::size_t j = 0; j < ld; ++j)
      keys[q * ld + j] = j < std::min<std::size_t>(counts[q], cap) ? uint64_t(row_of(rng)) : kEmpty;
  }
  DeviceMem d_rows(enc.size()), d_q(queries.size() * 4), d_counts(nq * 4), d_a(keys.size() * 8), d_b(keys.size() * 8);
  ASSERT_TRUE(d_rows.p && d_q.p && d_counts.p && d_a.p && d_b.p);
  ASSERT_EQ(cudaMemcpy(d_rows.p, enc.data(), enc.size(), cudaMemcpyHostToDevice), cudaSuccess);
  ASSERT_EQ(cudaMemcpy(d_q.p, queries.data(), queries.size() * 4, cudaMemcpyHostToDevice), cudaSuccess);
  ASSERT_EQ(cudaMemcpy(d_counts.p, counts.data(), nq * 4, cudaMemcpyHostToDevice), cudaSuccess);
  ScanArgs a;
  a.base = d_rows.p;
  a.n = n;
  a.dim = dim;
  a.metric = c.metric;
  a.storage = c.storage;
  a.queries = d_q.p;
  a.nq = nq;
  const bool clears = rescore_lists_clears(a);
  // The list kernel's input: slots past each list hold garbage where it clears them.
  std::vector<uint64_t> keys_b = keys;
  if (clears)
    for (std::size_t q = 0; q < nq; ++q)
      for (std::size_t j = std::min<std::size_t>(counts[q], cap); j < ld; ++j)
        keys_b[q * ld + j] = (uint64_t(rng()) << 32) | row_of(rng);
  ASSERT_EQ(cudaMemcpy(d_a.p, keys.data(), keys.size() * 8, cudaMemcpyHostToDevice), cudaSuccess);
  ASSERT_EQ(cudaMemcpy(d_b.p, keys_b.data(), keys.size() * 8, cudaMemcpyHostToDevice), cudaSuccess);
  launch_rescore(a, d_a.as<uint64_t>(), cap, ld, nullptr);
  launch_rescore_lists(a, d_b.as<uint64_t>(), ld, d_counts.as<uint32_t>(), cap, nullptr);
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  std::vector<uint64_t> got_a(keys.size()), got_b(keys.size());
  ASSERT_EQ(cudaMemcpy(got_a.data(), d_a.p, keys.size() * 8, cudaMemcpyDeviceToHost), cudaSuccess);
  ASSERT_EQ(cudaMemcpy(got_b.data(), d_b.p, keys.size() * 8, cudaMemcpyDeviceToHost), cudaSuccess);
  int bad = 0;
  for (std::size_t q = 0; q < nq && bad < 5; ++q)
    for (std::size_t j = 0; j < ld && bad < 5; ++j) {
      const std::size_t i = q * ld + j;
      if (j >= std::min<std::size_t>(counts[q], cap)) {
        const uint64_t want = j < cap ? kEmpty : keys_b[i];  // cleared up to the length, untouched after
        if (got_b[i] != want) {
          ADD_FAILURE() << "query " << q << " slot " << j << " past the list: " << std::hex << got_b[i] << " vs "
                        << want;
          ++bad;
        }
        continue;
      }
      if (got_b[i] != got_a[i]) {
        ADD_FAILURE() << "query " << q << " slot " << j << ": " << std::hex << got_b[i] << " vs per-slot " << got_a[i];
        ++bad;
        continue;
      }
      const uint32_t row = uint32_t(got_b[i] & 0xffffffffu);
      if (row != uint32_t(keys[i])) {
        ADD_FAILURE() << "query " << q << " slot " << j << ": row " << row << " for " << keys[i];
        ++bad;
        continue;
      }
      // (Cosine: 1 - dot of the stored vectors, which fp16 / bf16 rounding left near, not at, unit length.)
      const double want = c.metric == Metric::Cosine
                              ? 1.0 + test::exact_score(Metric::InnerProduct, &queries[q * dim], &dec[row * dim], dim)
                              : test::exact_score(c.metric, &queries[q * dim], &dec[row * dim], dim);
      const double scale = c.metric == Metric::L2 ? std::max(1.0, want) : 1.0 + std::fabs(want);
      if (std::fabs(double(key_score_host(got_b[i])) - want) > 1e-4 * scale * std::sqrt(double(dim))) {
        ADD_FAILURE() << "query " << q << " slot " << j << ": score " << key_score_host(got_b[i]) << " vs " << want;
        ++bad;
      }
    }
}

TEST(CudaRescoreLists, MatchesPerSlotRescore) {
  REQUIRE_DEVICE();
  {  // both kinds of case below occur: lists cleared by the list kernel, and the per-slot fallback
    ScanArgs a;
    a.metric = Metric::L2;
    a.storage = ScalarType::F32;
    a.dim = 128;
    EXPECT_TRUE(rescore_lists_clears(a));
    a.dim = 160;
    EXPECT_FALSE(rescore_lists_clears(a));
  }
  uint32_t seed = 7;
  for (Metric m : {Metric::L2, Metric::InnerProduct, Metric::Cosine})
    for (ScalarType st : {ScalarType::F32, ScalarType::F16, ScalarType::BF16})
      // 16 or fewer 16-byte chunks a row (16-lane groups), up to 32 (32-lane groups), and more
      // (fp32 d 160: the per-slot kernel), plus one without 16-byte loads (fp16 d 12).
      for (std::size_t dim : {8, 64, 128, 160, 12}) {
        if (st == ScalarType::F32 && dim % 4 != 0) continue;
        run_case({m, st, dim}, seed++);
      }
}

}  // namespace
}  // namespace hive::gpu::cuda
