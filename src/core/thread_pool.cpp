#include "zqat/core/thread_pool.h"

#include <atomic>
#include <condition_variable>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

#include "zqat/core/error.h"

namespace zqat {

// Workers sleep on a condition variable between jobs; a job is (fn, n_tasks) and tasks are claimed
// with an atomic counter. The caller's thread works too (thread index 0).
struct ThreadPool::Impl {
    std::vector<std::thread> workers;
    std::mutex mu;
    std::condition_variable cv_start, cv_done;
    const std::function<void(int64_t, int)>* fn = nullptr;
    int64_t n_tasks = 0;
    std::atomic<int64_t> next{0};
    uint64_t generation = 0;
    int running = 0;
    bool stop = false;
    std::exception_ptr error;

    void work(int thread) {
        for (;;) {
            const int64_t t = next.fetch_add(1, std::memory_order_relaxed);
            if (t >= n_tasks) return;
            try {
                (*fn)(t, thread);
            } catch (...) {
                std::lock_guard<std::mutex> lock(mu);
                if (!error) error = std::current_exception();
                next.store(n_tasks);  // stop handing out tasks
            }
        }
    }

    void loop(int thread) {
        uint64_t seen = 0;
        for (;;) {
            {
                std::unique_lock<std::mutex> lock(mu);
                cv_start.wait(lock, [&] { return stop || generation != seen; });
                if (stop) return;
                seen = generation;
            }
            work(thread);
            std::lock_guard<std::mutex> lock(mu);
            if (--running == 0) cv_done.notify_one();
        }
    }
};

ThreadPool::ThreadPool(int n_threads) : n_threads_(n_threads), impl_(std::make_unique<Impl>()) {
    if (n_threads < 1) fail("core", "thread count must be >= 1, got {}", n_threads);
    for (int i = 1; i < n_threads; ++i) impl_->workers.emplace_back([this, i] { impl_->loop(i); });
}

ThreadPool::~ThreadPool() {
    {
        std::lock_guard<std::mutex> lock(impl_->mu);
        impl_->stop = true;
    }
    impl_->cv_start.notify_all();
    for (auto& w : impl_->workers) w.join();
}

void ThreadPool::parallel_for(int64_t n_tasks,
                              const std::function<void(int64_t task, int thread)>& fn) {
    if (n_tasks <= 0) return;
    if (n_threads_ == 1 || n_tasks == 1) {
        for (int64_t t = 0; t < n_tasks; ++t) fn(t, 0);
        return;
    }
    Impl& s = *impl_;
    {
        std::lock_guard<std::mutex> lock(s.mu);
        s.fn = &fn;
        s.n_tasks = n_tasks;
        s.next.store(0);
        s.error = nullptr;
        s.running = n_threads_ - 1;
        ++s.generation;
    }
    s.cv_start.notify_all();
    s.work(0);
    std::unique_lock<std::mutex> lock(s.mu);
    s.cv_done.wait(lock, [&] { return s.running == 0; });
    s.fn = nullptr;
    if (s.error) std::rethrow_exception(s.error);
}

int hardware_threads() {
    const unsigned n = std::thread::hardware_concurrency();
    return n == 0 ? 1 : int(n);
}

}  // namespace zqat
