// Internal: one process-wide pool of worker threads for CPU search. The calling thread works
// too, and several callers may run parallel_for at once (concurrent searches share workers).
#pragma once
#include <cstddef>
#include <functional>

namespace hive::gpu::cpu {

class ThreadPool {
 public:
  // Sized by HIVE_GPU_NUM_THREADS, else std::thread::hardware_concurrency().
  static ThreadPool& instance();
  // Threads that run tasks, the caller included.
  int size() const { return threads_; }
  // Runs fn(0) .. fn(n - 1), each once, across the pool; returns when all are done. The first
  // exception a task throws is rethrown here after the others finish.
  void parallel_for(std::size_t n, const std::function<void(std::size_t)>& fn);

  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

 private:
  explicit ThreadPool(int threads);
  struct Impl;
  Impl* impl_;
  int threads_;
};

}  // namespace hive::gpu::cpu
