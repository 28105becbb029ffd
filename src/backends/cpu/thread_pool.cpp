#include "backends/cpu/thread_pool.hpp"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <deque>
#include <exception>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace hive::gpu::cpu {

namespace {
struct Job {
  const std::function<void(std::size_t)>* fn;
  std::size_t n;
  std::atomic<std::size_t> next{0};
  std::atomic<std::size_t> done{0};
  std::mutex mu;
  std::condition_variable finished;
  std::exception_ptr error;

  // Claims and runs tasks until none are left; returns after its last claim.
  void work() {
    for (std::size_t i; (i = next.fetch_add(1)) < n;) {
      try {
        (*fn)(i);
      } catch (...) {
        std::lock_guard lock(mu);
        if (!error) error = std::current_exception();
      }
      if (done.fetch_add(1) + 1 == n) {
        std::lock_guard lock(mu);
        finished.notify_all();
      }
    }
  }
};
}  // namespace

struct ThreadPool::Impl {
  std::mutex mu;
  std::condition_variable wake;
  std::deque<std::shared_ptr<Job>> queue;
  std::atomic<std::size_t> queued{0};  // queue.size(), readable without the lock
  bool stop = false;
  std::vector<std::thread> workers;

  // A worker that just finished polls briefly before sleeping: back-to-back single-query
  // searches then find it awake, instead of paying a futex wake-up (tens of microseconds in
  // a VM) on each of a ~1 ms search. The cost is at most this much spinning per idle period.
  static constexpr auto kSpin = std::chrono::microseconds(200);

  void spin_for_work() {
    const auto until = std::chrono::steady_clock::now() + kSpin;
    while (queued.load(std::memory_order_acquire) == 0 && std::chrono::steady_clock::now() < until) {
#if defined(__x86_64__)
      __builtin_ia32_pause();
#endif
    }
  }

  void pop_front_locked() {
    queue.pop_front();
    queued.store(queue.size(), std::memory_order_release);
  }

  void worker_loop() {
    for (;;) {
      spin_for_work();
      std::shared_ptr<Job> job;
      {
        std::unique_lock lock(mu);
        wake.wait(lock, [&] { return stop || !queue.empty(); });
        if (stop) return;
        job = queue.front();
        // A job whose tasks are all claimed leaves the queue; others stay for more workers.
        if (job->next.load() >= job->n) {
          pop_front_locked();
          continue;
        }
      }
      job->work();
      std::lock_guard lock(mu);
      if (!queue.empty() && queue.front() == job) pop_front_locked();
    }
  }
};

ThreadPool& ThreadPool::instance() {
  static ThreadPool pool([] {
    if (const char* env = std::getenv("HIVE_GPU_NUM_THREADS")) {
      const int v = std::atoi(env);
      if (v > 0) return v;
    }
    const unsigned hc = std::thread::hardware_concurrency();
    return hc ? int(hc) : 1;
  }());
  return pool;
}

ThreadPool::ThreadPool(int threads) : impl_(new Impl), threads_(threads) {
  for (int i = 1; i < threads; ++i) impl_->workers.emplace_back([this] { impl_->worker_loop(); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard lock(impl_->mu);
    impl_->stop = true;
  }
  impl_->wake.notify_all();
  for (auto& t : impl_->workers) t.join();
  delete impl_;
}

void ThreadPool::parallel_for(std::size_t n, const std::function<void(std::size_t)>& fn) {
  if (n == 0) return;
  if (n == 1 || threads_ == 1) {
    for (std::size_t i = 0; i < n; ++i) fn(i);
    return;
  }
  auto job = std::make_shared<Job>();
  job->fn = &fn;
  job->n = n;
  {
    std::lock_guard lock(impl_->mu);
    impl_->queue.push_back(job);
    impl_->queued.store(impl_->queue.size(), std::memory_order_release);
  }
  if (n >= std::size_t(threads_)) impl_->wake.notify_all();
  else
    for (std::size_t i = 1; i < n; ++i) impl_->wake.notify_one();
  job->work();
  {
    std::unique_lock lock(job->mu);
    job->finished.wait(lock, [&] { return job->done.load() == n; });
  }
  {
    // Drop it from the queue if no worker got to it.
    std::lock_guard lock(impl_->mu);
    for (auto it = impl_->queue.begin(); it != impl_->queue.end(); ++it)
      if (*it == job) {
        impl_->queue.erase(it);
        impl_->queued.store(impl_->queue.size(), std::memory_order_release);
        break;
      }
  }
  if (job->error) std::rethrow_exception(job->error);
}

}  // namespace hive::gpu::cpu
