// A fixed pool of worker threads. Work is split into tasks whose boundaries never depend on the
// number of threads, and every reduction inside a task runs in a fixed order, so results are
// bit-identical for any thread count.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>

namespace zqat {

class ThreadPool {
  public:
    explicit ThreadPool(int n_threads);  // n_threads >= 1; the caller's thread is one of them
    ~ThreadPool();
    ThreadPool(const ThreadPool&) = delete;
    ThreadPool& operator=(const ThreadPool&) = delete;

    int size() const { return n_threads_; }
    // Runs fn(task, thread) for task in [0, n_tasks); thread in [0, size()). Blocks until done.
    // Tasks are claimed dynamically; fn must not depend on which thread runs which task except
    // through per-thread scratch indexed by `thread`. Rethrows the first exception a task threw.
    void parallel_for(int64_t n_tasks, const std::function<void(int64_t task, int thread)>& fn);

  private:
    struct Impl;
    int n_threads_;
    std::unique_ptr<Impl> impl_;
};

// Number of hardware threads (>= 1).
int hardware_threads();

}  // namespace zqat
