// Radix top-k (radix_select) against a CPU reference that orders the same 64-bit keys (score
// order, row): random scores, ties at the threshold, NaN, deleted rows, fewer live rows than k,
// ld > n with unaligned rows, and a reused (initially garbage) workspace.
#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "backends/cuda/kernels.hpp"
#include "backends/cuda/radix_select.hpp"

#include "cuda_test_util.hpp"

namespace hive::gpu::cuda {
namespace {

using test::DeviceMem;

// As make_key on the device: -0 ranks as +0, NaN never enters.
uint64_t host_key(float s, uint32_t row) {
  uint32_t u;
  std::memcpy(&u, &s, sizeof u);
  if ((u & 0x7fffffffu) == 0) u = 0;
  const uint32_t o = (u & 0x80000000u) != 0 ? ~u : (u | 0x80000000u);
  return (uint64_t(o) << 32) | uint64_t(row);
}

bool dead(const std::vector<uint32_t>* del, std::size_t row) {
  return del != nullptr && (((*del)[row >> 5] >> (row & 31)) & 1u) != 0;
}

// The k best keys of one query's rows, ascending, padded with kEmptyKey.
std::vector<uint64_t> reference(const float* s, std::size_t n, const std::vector<uint32_t>* del, int k) {
  std::vector<uint64_t> keys;
  keys.reserve(n);
  for (std::size_t r = 0; r < n; ++r)
    if (!std::isnan(s[r]) && !dead(del, r)) keys.push_back(host_key(s[r], static_cast<uint32_t>(r)));
  const std::size_t m = std::min(static_cast<std::size_t>(k), keys.size());
  std::partial_sort(keys.begin(), keys.begin() + static_cast<std::ptrdiff_t>(m), keys.end());
  keys.resize(m);
  keys.resize(static_cast<std::size_t>(k), kEmptyKey);
  return keys;
}

::testing::AssertionResult same_keys(const std::vector<uint64_t>& got, const std::vector<uint64_t>& want) {
  if (got.size() != want.size())
    return ::testing::AssertionFailure() << "size " << got.size() << " != " << want.size();
  std::size_t bad = 0, first = got.size();
  for (std::size_t j = 0; j < got.size(); ++j)
    if (got[j] != want[j]) {
      if (bad++ == 0) first = j;
    }
  if (bad == 0) return ::testing::AssertionSuccess();
  std::ostringstream os;
  os << bad << " slots differ, first at " << first << ": got 0x" << std::hex << got[first] << ", want 0x"
     << want[first];
  return ::testing::AssertionFailure() << os.str();
}

// Scores of nq queries (host, nq x ld, row r of query q at [q * ld + r]) plus an optional
// deleted bitmap, on the device; the base pointer starts `offset` floats into the allocation so
// rows can start unaligned.
struct Problem {
  std::vector<float> scores;
  std::size_t ld = 0, nq = 0, n = 0, offset = 0;
  std::vector<uint32_t> deleted;  // empty: none
};

constexpr uint64_t kUntouched = 0xababababababababull;

// Runs radix_select `repeats` times (same workspace) and checks each query against the
// reference, and that slots past k are left alone. `ws` may be given (reused across calls).
void check_problem(const Problem& p, int k, DeviceMem* ws = nullptr, int repeats = 1) {
  const std::vector<uint32_t>* del = p.deleted.empty() ? nullptr : &p.deleted;
  DeviceMem d_scores((p.scores.size() + p.offset) * sizeof(float));
  DeviceMem d_del(p.deleted.size() * sizeof(uint32_t));
  const std::size_t out_ld = static_cast<std::size_t>(k) + 3;
  DeviceMem d_out(p.nq * out_ld * sizeof(uint64_t));
  std::unique_ptr<DeviceMem> own;
  if (ws == nullptr) {
    own = std::make_unique<DeviceMem>(radix_select_workspace_bytes(p.nq, p.n, k));
    ws = own.get();
    // Garbage: the call must not rely on zeroed memory.
    CUDA_OK(cudaMemset(ws->p, 0xff, radix_select_workspace_bytes(p.nq, p.n, k)));
  }
  ASSERT_NE(d_scores.p, nullptr);
  ASSERT_NE(d_out.p, nullptr);
  ASSERT_NE(ws->p, nullptr);
  CUDA_OK(cudaMemcpy(d_scores.as<float>() + p.offset, p.scores.data(), p.scores.size() * sizeof(float),
                     cudaMemcpyHostToDevice));
  if (del != nullptr) {
    CUDA_OK(cudaMemcpy(d_del.p, p.deleted.data(), p.deleted.size() * sizeof(uint32_t), cudaMemcpyHostToDevice));
  }
  CUDA_OK(cudaMemset(d_out.p, 0xab, p.nq * out_ld * sizeof(uint64_t)));
  cudaStream_t stream = nullptr;
  CUDA_OK(cudaStreamCreate(&stream));
  for (int i = 0; i < repeats; ++i)
    radix_select(d_scores.as<float>() + p.offset, p.ld, p.nq, p.n, del != nullptr ? d_del.as<uint32_t>() : nullptr,
                 k, d_out.as<uint64_t>(), out_ld, ws->p, stream);
  const cudaError_t sync = cudaStreamSynchronize(stream);
  cudaStreamDestroy(stream);
  CUDA_OK(sync);
  std::vector<uint64_t> out(p.nq * out_ld);
  CUDA_OK(cudaMemcpy(out.data(), d_out.p, out.size() * sizeof(uint64_t), cudaMemcpyDeviceToHost));
  for (std::size_t q = 0; q < p.nq; ++q) {
    const auto first = out.begin() + static_cast<std::ptrdiff_t>(q * out_ld);
    const std::vector<uint64_t> got(first, first + k);
    EXPECT_TRUE(same_keys(got, reference(p.scores.data() + q * p.ld, p.n, del, k)))
        << "n = " << p.n << ", ld = " << p.ld << ", nq = " << p.nq << ", k = " << k << ", query " << q;
    for (std::size_t j = static_cast<std::size_t>(k); j < out_ld; ++j)
      EXPECT_EQ(out[q * out_ld + j], kUntouched) << "slot " << j << " past k written, query " << q;
  }
}

// nq queries of n scores each, row length ld, all zero.
Problem sized_problem(std::size_t n, std::size_t nq, std::size_t ld) {
  Problem p;
  p.n = n;
  p.nq = nq;
  p.ld = ld;
  p.scores.resize(nq * ld);
  return p;
}

Problem random_problem(std::size_t n, std::size_t nq, std::size_t ld, uint64_t seed) {
  Problem p = sized_problem(n, nq, ld);
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  for (float& v : p.scores) v = dist(rng);
  return p;
}

std::vector<uint32_t> random_bitmap(std::size_t n, double fraction, uint64_t seed) {
  std::vector<uint32_t> bits((n + 31) / 32, 0u);
  std::mt19937_64 rng(seed);
  std::bernoulli_distribution on(fraction);
  for (std::size_t r = 0; r < n; ++r)
    if (on(rng)) bits[r >> 5] |= 1u << (r & 31);
  return bits;
}

constexpr int kKs[] = {1, 33, 257, 1024, 2048};

TEST(RadixSelect, RandomScores) {
  REQUIRE_DEVICE();
  for (const std::size_t n : {std::size_t(1), std::size_t(1000), std::size_t(1000007)}) {
    for (const std::size_t nq : {std::size_t(1), std::size_t(3)}) {
      const Problem p = random_problem(n, nq, n, 17 * n + nq);
      // One workspace (sized for the largest k) across every k: state left by a call must not leak.
      DeviceMem ws(radix_select_workspace_bytes(nq, n, 2048));
      CUDA_OK(cudaMemset(ws.p, 0xff, radix_select_workspace_bytes(nq, n, 2048)));
      for (const int k : kKs) check_problem(p, k, &ws);
    }
  }
}

TEST(RadixSelect, AllEqualScores) {
  REQUIRE_DEVICE();
  for (const std::size_t n : {std::size_t(100003), std::size_t(1000007)}) {
    Problem p = sized_problem(n, 2, n);
    p.scores.assign(2 * n, 1.25f);
    // Query 1: +0 and -0 mixed, one key order.
    for (std::size_t r = 0; r < n; ++r) p.scores[n + r] = (r % 3 == 0) ? -0.0f : 0.0f;
    for (const int k : {1, 257, 1024, 2048}) check_problem(p, k);
  }
}

TEST(RadixSelect, FewDistinctValues) {
  REQUIRE_DEVICE();
  const std::size_t n = 1000007;
  Problem p = sized_problem(n, 3, n);
  const float values[5] = {-1.0f, 0.0f, 0.5f, 2.0f, 3.0f};
  std::mt19937_64 rng(5);
  std::uniform_int_distribution<int> pick(0, 4);
  for (float& v : p.scores) v = values[pick(rng)];
  for (const int k : kKs) check_problem(p, k);
  p.deleted = random_bitmap(n, 0.1, 6);
  for (const int k : {257, 2048}) check_problem(p, k);
}

// Integer-valued scores, about 10 rows each: the threshold usually splits a tie group whose rows
// are spread over the whole range (the look-back crosses many tiles).
TEST(RadixSelect, SparseTies) {
  REQUIRE_DEVICE();
  const std::size_t n = 1000007;
  Problem p = sized_problem(n, 3, n);
  std::mt19937_64 rng(7);
  std::uniform_int_distribution<int> pick(0, 99999);
  for (float& v : p.scores) v = static_cast<float>(pick(rng));
  for (const int k : kKs) check_problem(p, k);
}

TEST(RadixSelect, NaNAndInfinities) {
  REQUIRE_DEVICE();
  const std::size_t n = 100003;
  Problem p = random_problem(n, 3, n, 11);
  std::mt19937_64 rng(12);
  std::uniform_int_distribution<int> pick(0, 99);
  const float inf = std::numeric_limits<float>::infinity();
  for (float& v : p.scores) {
    const int c = pick(rng);
    if (c < 3) {
      v = std::numeric_limits<float>::quiet_NaN();
    } else if (c < 5) {
      v = -std::numeric_limits<float>::quiet_NaN();  // would rank first if it entered
    } else if (c == 5) {
      v = -inf;
    } else if (c == 6) {
      v = inf;
    }
  }
  for (const int k : kKs) check_problem(p, k);
}

TEST(RadixSelect, DeletedRows) {
  REQUIRE_DEVICE();
  const std::size_t n = 1000007;
  Problem p = random_problem(n, 3, n, 21);
  p.deleted = random_bitmap(n, 0.1, 22);
  for (const int k : {33, 1024, 2048}) check_problem(p, k);
}

TEST(RadixSelect, FewerLiveRowsThanK) {
  REQUIRE_DEVICE();
  {
    const Problem p = random_problem(100, 2, 100, 31);
    for (const int k : {257, 1024, 2048}) check_problem(p, k);
  }
  {
    // n > k, but NaN and deleted rows leave fewer than k live.
    Problem p = random_problem(3000, 3, 3000, 32);
    std::mt19937_64 rng(33);
    std::bernoulli_distribution nan(0.5);
    for (float& v : p.scores)
      if (nan(rng)) v = std::numeric_limits<float>::quiet_NaN();
    p.deleted = random_bitmap(3000, 0.3, 34);
    for (const int k : {1024, 2048}) check_problem(p, k);
  }
  {
    const Problem p = random_problem(0, 1, 4, 35);  // no rows at all
    check_problem(p, 33);
  }
}

TEST(RadixSelect, LeadingDimensionAndUnalignedRows) {
  REQUIRE_DEVICE();
  for (const std::size_t offset : {std::size_t(0), std::size_t(1), std::size_t(2), std::size_t(3)}) {
    const std::size_t n = 10007;
    Problem p = random_problem(n, 3, n + 5, 41 + offset);
    p.offset = offset;
    p.deleted = random_bitmap(n, 0.1, 42);
    for (const int k : {1, 257, 2048}) check_problem(p, k);
  }
  // Single query, long rows, unaligned start: float4 body with a head and a tail.
  Problem p = random_problem(1000007, 1, 1000007, 43);
  p.offset = 3;
  p.deleted = random_bitmap(1000007, 0.1, 44);
  check_problem(p, 1024);
}

TEST(RadixSelect, ReusedWorkspace) {
  REQUIRE_DEVICE();
  const std::size_t n = 1000007;
  const Problem a = random_problem(n, 2, n, 51);
  Problem b;
  b.n = n;
  b.nq = 2;
  b.ld = n;
  b.scores.assign(2 * n, 3.0f);  // ties: the other state paths
  DeviceMem ws(radix_select_workspace_bytes(2, n, 1024));
  CUDA_OK(cudaMemset(ws.p, 0xff, radix_select_workspace_bytes(2, n, 1024)));
  check_problem(a, 1024, &ws, 2);  // twice in a row on one stream
  check_problem(b, 1024, &ws, 2);
  check_problem(a, 1024, &ws);
}

}  // namespace
}  // namespace hive::gpu::cuda
