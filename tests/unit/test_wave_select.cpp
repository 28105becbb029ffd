// The wave-level select logic of the GPU kernels (src/backends/cuda/wave_select.hpp), run on
// the CPU by emulation with 32 and 64 lanes: W threads play the lanes of one wave and every
// wave operation (shuffle, ballot) is a barrier-synchronised exchange, so the very source the
// CUDA and HIP kernels compile is checked at both wave widths on any machine, against
// std::sort references on random keys.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <barrier>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <thread>
#include <type_traits>
#include <vector>

#include "backends/cuda/wave_select.hpp"

namespace {

constexpr uint64_t kEmpty = ~uint64_t(0);

// One wave of W lanes, each lane a thread; collective operations meet at a barrier.
template <int W>
class EmuWave {
 public:
  static constexpr int kWidth = W;
  using Mask = std::conditional_t<W == 64, uint64_t, uint32_t>;

  struct Shared {
    std::barrier<> bar{W};
    std::array<uint64_t, W> slot{};
  };

  EmuWave(Shared& s, int lane) : s_(&s), lane_(lane) {}
  int lane() const { return lane_; }

  template <class T>
  T shfl(T v, int src) const {
    return exchange(v, src & (W - 1));
  }
  template <class T>
  T shfl_xor(T v, int m) const {
    return exchange(v, (lane_ ^ m) & (W - 1));
  }
  template <class T>
  T shfl_up(T v, int d) const {
    return exchange(v, lane_ >= d ? lane_ - d : lane_);  // own value below d, as on the GPUs
  }
  Mask ballot(bool p) const {
    s_->slot[std::size_t(lane_)] = p ? 1 : 0;
    s_->bar.arrive_and_wait();
    Mask m = 0;
    for (int i = 0; i < W; ++i)
      if (s_->slot[std::size_t(i)] != 0) m |= Mask(1) << i;
    s_->bar.arrive_and_wait();  // nobody rewrites a slot before every lane has read it
    return m;
  }
  static int popc(Mask m) { return std::popcount(m); }
  static int lowest(Mask m) { return std::countr_zero(m); }

 private:
  template <class T>
  T exchange(T v, int src) const {
    static_assert(sizeof(T) <= sizeof(uint64_t));
    uint64_t bits = 0;
    std::memcpy(&bits, &v, sizeof(T));
    s_->slot[std::size_t(lane_)] = bits;
    s_->bar.arrive_and_wait();
    const uint64_t got = s_->slot[std::size_t(src)];
    s_->bar.arrive_and_wait();
    T out;
    std::memcpy(&out, &got, sizeof(T));
    return out;
  }

  Shared* s_;
  int lane_;
};

// Runs body(wave) on every lane of one emulated wave.
template <int W, class F>
void run_wave(F body) {
  typename EmuWave<W>::Shared shared;
  std::vector<std::thread> lanes;
  lanes.reserve(W);
  for (int lane = 0; lane < W; ++lane)
    lanes.emplace_back([&shared, &body, lane] {
      const EmuWave<W> wv(shared, lane);
      body(wv);
    });
  for (auto& t : lanes) t.join();
}

// Unique keys: a random score order in the high half, the row in the low half (as the GPU
// kernels form them); some slots offer nothing (kEmpty).
std::vector<uint64_t> random_keys(std::size_t n, uint32_t seed, int distinct_scores) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<uint32_t> score(0, uint32_t(distinct_scores - 1));
  std::bernoulli_distribution empty(0.1);
  std::vector<uint64_t> keys(n);
  for (std::size_t i = 0; i < n; ++i) keys[i] = empty(rng) ? kEmpty : (uint64_t(score(rng)) << 32) | uint64_t(i);
  return keys;
}

std::vector<uint64_t> best_of(std::vector<uint64_t> keys, std::size_t count) {
  std::sort(keys.begin(), keys.end());
  keys.resize(std::min(count, keys.size()));
  return keys;
}

// A wave list after offers of `keys`: its first `exact` entries are the best keys offered, every
// lane's `worst` is the last of them, and the entries past them are still in order (merging such
// lists relies on it).
void expect_wave_list(const std::vector<uint64_t>& keys, const std::vector<uint64_t>& list,
                      const std::vector<uint64_t>& worst, std::size_t exact) {
  std::vector<uint64_t> live;
  for (uint64_t k : keys)
    if (k != kEmpty) live.push_back(k);
  std::vector<uint64_t> want = best_of(live, exact);
  want.resize(exact, kEmpty);
  for (std::size_t i = 0; i < exact; ++i) ASSERT_EQ(list[i], want[i]) << "entry " << i;
  for (std::size_t lane = 0; lane < worst.size(); ++lane) ASSERT_EQ(worst[lane], want[exact - 1]) << "lane " << lane;
  EXPECT_TRUE(std::is_sorted(list.begin(), list.end()));
}

// Offers rounds x W keys (lane L offers keys[round * W + L]) to a wave list of W R entries
// that keeps the first (last_lane + 1) R exact, and checks them (and the order of the rest).
template <int W, int R>
void check_list_offer(int last_lane, int rounds, uint32_t seed, int distinct_scores) {
  SCOPED_TRACE("W=" + std::to_string(W) + " R=" + std::to_string(R) + " last_lane=" + std::to_string(last_lane) +
               " seed=" + std::to_string(seed));
  const std::vector<uint64_t> keys = random_keys(std::size_t(rounds) * W, seed, distinct_scores);
  std::vector<uint64_t> list(static_cast<std::size_t>(W * R), 0), worst(static_cast<std::size_t>(W), 0);
  run_wave<W>([&](const EmuWave<W>& wv) {
    uint64_t l[R];
    for (auto& e : l) e = kEmpty;
    uint64_t w = kEmpty;
    for (int r = 0; r < rounds; ++r)
      hive::gpu::wave::list_offer<R>(wv, keys[std::size_t(r) * W + std::size_t(wv.lane())], l, w, last_lane);
    for (int j = 0; j < R; ++j) list[std::size_t(wv.lane()) * R + std::size_t(j)] = l[j];
    worst[std::size_t(wv.lane())] = w;
  });
  expect_wave_list(keys, list, worst, std::size_t(last_lane + 1) * R);
}

// The same through list_merge_batch (rounds batches of W keys, lane L's key keys[round * W + L]);
// with `mixed`, odd rounds go through list_offer instead (the fused scan's lists meet both).
template <int W>
void check_list_merge_batch(int last_lane, int rounds, uint32_t seed, int distinct_scores, bool mixed) {
  SCOPED_TRACE("W=" + std::to_string(W) + " last_lane=" + std::to_string(last_lane) + " seed=" +
               std::to_string(seed) + (mixed ? " mixed" : ""));
  const std::vector<uint64_t> keys = random_keys(std::size_t(rounds) * W, seed, distinct_scores);
  std::vector<uint64_t> list(static_cast<std::size_t>(W), 0), worst(static_cast<std::size_t>(W), 0);
  run_wave<W>([&](const EmuWave<W>& wv) {
    uint64_t l[1] = {kEmpty};
    uint64_t w = kEmpty;
    for (int r = 0; r < rounds; ++r) {
      const uint64_t key = keys[std::size_t(r) * W + std::size_t(wv.lane())];
      if (mixed && r % 2 == 1)
        hive::gpu::wave::list_offer<1>(wv, key, l, w, last_lane);
      else
        hive::gpu::wave::list_merge_batch(wv, key, l[0], w, last_lane);
    }
    list[std::size_t(wv.lane())] = l[0];
    worst[std::size_t(wv.lane())] = w;
  });
  expect_wave_list(keys, list, worst, std::size_t(last_lane + 1));
}

template <int W>
void check_merge_lists(uint32_t seed) {
  SCOPED_TRACE("W=" + std::to_string(W) + " seed=" + std::to_string(seed));
  const std::vector<uint64_t> keys = random_keys(2 * std::size_t(W), seed, 50);
  std::vector<uint64_t> a = best_of({keys.begin(), keys.begin() + W}, W);
  std::vector<uint64_t> b = best_of({keys.begin() + W, keys.end()}, W);
  std::vector<uint64_t> got(W, 0);
  run_wave<W>([&](const EmuWave<W>& wv) {
    const std::size_t lane = std::size_t(wv.lane());
    got[lane] = hive::gpu::wave::merge_lists(wv, a[lane], b[lane]);
  });
  std::vector<uint64_t> both = a;
  both.insert(both.end(), b.begin(), b.end());
  EXPECT_EQ(got, best_of(both, W));
}

template <int W>
void check_sort_lanes(uint32_t seed, int distinct) {
  SCOPED_TRACE("W=" + std::to_string(W) + " seed=" + std::to_string(seed));
  std::vector<uint64_t> keys = random_keys(std::size_t(W), seed, distinct);
  keys[std::size_t(seed) % std::size_t(W)] = kEmpty;  // empty keys sort last
  std::vector<uint64_t> got(W, 0);
  run_wave<W>([&](const EmuWave<W>& wv) {
    const std::size_t lane = std::size_t(wv.lane());
    got[lane] = hive::gpu::wave::sort_lanes(wv, keys[lane]);
  });
  std::sort(keys.begin(), keys.end());
  EXPECT_EQ(got, keys);
}

template <int W>
void check_reductions(uint32_t seed) {
  SCOPED_TRACE("W=" + std::to_string(W) + " seed=" + std::to_string(seed));
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  std::uniform_int_distribution<uint32_t> small(0, 1000);
  std::vector<float> x(W);
  std::vector<uint32_t> c(W);
  for (auto& v : x) v = u(rng);
  for (auto& v : c) v = small(rng);
  std::vector<float> sums(W);
  std::vector<uint32_t> scans(W), counts(W);
  run_wave<W>([&](const EmuWave<W>& wv) {
    const std::size_t lane = std::size_t(wv.lane());
    sums[lane] = hive::gpu::wave::butterfly(wv, x[lane], [](float p, float q) { return p + q; });
    scans[lane] = hive::gpu::wave::inclusive_scan(wv, c[lane]);
    counts[lane] = hive::gpu::wave::butterfly(wv, c[lane], [](uint32_t p, uint32_t q) { return p + q; });
  });
  double ref = 0, abs_sum = 0;
  for (float v : x) {
    ref += double(v);
    abs_sum += std::fabs(double(v));
  }
  uint32_t run = 0, total = 0;
  for (uint32_t v : c) total += v;
  for (int lane = 0; lane < W; ++lane) {
    // Every lane holds bitwise the same sum (the kernels rely on it), close to the exact one.
    EXPECT_EQ(std::memcmp(&sums[std::size_t(lane)], &sums[0], sizeof(float)), 0) << "lane " << lane;
    EXPECT_NEAR(double(sums[std::size_t(lane)]), ref, 1e-6 * abs_sum) << "lane " << lane;
    run += c[std::size_t(lane)];
    EXPECT_EQ(scans[std::size_t(lane)], run) << "lane " << lane;
    EXPECT_EQ(counts[std::size_t(lane)], total) << "lane " << lane;
  }
}

// The capacities the kernels use: the wave select's 32 (R = 1) and 256 (R = 256 / W), the
// fused kernel's k-limited lists (R = 1, last lane k - 1), with few distinct scores too (ties
// on the score, broken by the row).
TEST(WaveSelect, ListOfferWave32) {
  check_list_offer<32, 1>(31, 24, 1, 1 << 20);
  check_list_offer<32, 1>(9, 24, 2, 1 << 20);
  check_list_offer<32, 1>(0, 8, 3, 1 << 20);
  check_list_offer<32, 8>(31, 24, 4, 1 << 20);
  check_list_offer<32, 8>(31, 12, 5, 7);
}

TEST(WaveSelect, ListOfferWave64) {
  check_list_offer<64, 1>(31, 16, 6, 1 << 20);  // capacity 32 on a 64-lane wave
  check_list_offer<64, 1>(63, 16, 7, 1 << 20);
  check_list_offer<64, 1>(9, 16, 8, 5);
  check_list_offer<64, 4>(63, 16, 9, 1 << 20);  // capacity 256
  check_list_offer<64, 4>(63, 6, 10, 1 << 20);  // fewer keys than the capacity
}

TEST(WaveSelect, ListMergeBatch) {
  check_list_merge_batch<32>(31, 20, 11, 1 << 20, false);
  check_list_merge_batch<32>(9, 20, 12, 1 << 20, false);
  check_list_merge_batch<32>(0, 6, 13, 1 << 20, false);
  check_list_merge_batch<32>(31, 1, 14, 1 << 20, false);  // one batch: fewer keys than the list
  check_list_merge_batch<32>(31, 12, 15, 5, false);       // ties on the score
  check_list_merge_batch<32>(9, 20, 16, 1 << 20, true);
  check_list_merge_batch<32>(31, 20, 17, 1 << 20, true);
  check_list_merge_batch<64>(63, 12, 18, 1 << 20, false);
  check_list_merge_batch<64>(31, 12, 19, 1 << 20, true);
  check_list_merge_batch<64>(9, 12, 20, 7, false);
}

TEST(WaveSelect, MergeLists) {
  for (uint32_t seed = 20; seed < 24; ++seed) {
    check_merge_lists<32>(seed);
    check_merge_lists<64>(seed);
  }
}

TEST(WaveSelect, SortLanes) {
  for (uint32_t seed = 40; seed < 44; ++seed) {
    check_sort_lanes<32>(seed, 1 << 20);
    check_sort_lanes<64>(seed, 1 << 20);
    check_sort_lanes<32>(seed, 3);  // few distinct scores: ties broken by the row
  }
}

TEST(WaveSelect, ReductionsAndScans) {
  for (uint32_t seed = 30; seed < 33; ++seed) {
    check_reductions<32>(seed);
    check_reductions<64>(seed);
  }
}

}  // namespace
