#include "read_floor.hpp"

#include <algorithm>
#include <atomic>
#include <barrier>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <thread>
#include <vector>

namespace hive::gpu::tool {

namespace {

uint64_t sum_words(const uint64_t* p, std::size_t n) {
  // Eight independent lanes so the loop streams instead of waiting on one add chain.
  uint64_t s[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    for (int l = 0; l < 8; ++l) s[l] += p[i + std::size_t(l)];
  }
  for (; i < n; ++i) s[0] += p[i];
  return s[0] + s[1] + s[2] + s[3] + s[4] + s[5] + s[6] + s[7];
}

}  // namespace

ReadFloor measure_read_floor(std::size_t bytes, unsigned threads, int runs) {
  ReadFloor r;
  r.bytes = bytes;
  r.threads = threads == 0 ? std::max(1u, std::thread::hardware_concurrency()) : threads;
  r.runs = std::max(1, runs);
  const std::size_t words = std::max<std::size_t>(1, (bytes + 7) / 8);
  std::unique_ptr<uint64_t[]> buf(new uint64_t[words]);
  // Each thread touches its own slice first so pages land near the thread that reads them.
  const std::size_t per = (words + r.threads - 1) / r.threads;
  std::atomic<uint64_t> sink{0};
  using clock = std::chrono::steady_clock;
  std::vector<clock::time_point> begin_at(r.threads), end_at(r.threads);
  std::vector<double> times;
  times.reserve(std::size_t(r.runs));
  std::barrier start(static_cast<std::ptrdiff_t>(r.threads) + 1);
  std::barrier stop(static_cast<std::ptrdiff_t>(r.threads) + 1);
  std::vector<std::thread> pool;
  for (unsigned t = 0; t < r.threads; ++t) {
    pool.emplace_back([&, t] {
      const std::size_t b = std::min(words, std::size_t(t) * per);
      const std::size_t e = std::min(words, b + per);
      for (std::size_t i = b; i < e; ++i) buf[i] = i * 0x9e3779b97f4a7c15ULL;
      for (int run = 0; run <= r.runs; ++run) {  // run 0 warms up
        start.arrive_and_wait();
        begin_at[t] = clock::now();
        sink += sum_words(buf.get() + b, e - b);
        end_at[t] = clock::now();
        stop.arrive_and_wait();
      }
    });
  }
  // A pass lasts from the first thread's start to the last thread's end: each thread stamps
  // its own times, since a thread woken late from the barrier would skew the main thread's.
  for (int run = 0; run <= r.runs; ++run) {
    start.arrive_and_wait();
    stop.arrive_and_wait();
    const auto t0 = *std::min_element(begin_at.begin(), begin_at.end());
    const auto t1 = *std::max_element(end_at.begin(), end_at.end());
    if (run > 0) times.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
  }
  for (auto& th : pool) th.join();
  r.best_ms = *std::min_element(times.begin(), times.end());
  r.gbps = r.best_ms > 0 ? static_cast<double>(bytes) / (r.best_ms * 1e6) : 0.0;
  if (sink.load() == 42) r.runs += 0;  // keep the sums alive
  return r;
}

}  // namespace hive::gpu::tool
