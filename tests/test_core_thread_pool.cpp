#include <gtest/gtest.h>

#include <atomic>
#include <stdexcept>
#include <vector>

#include "zqat/core/error.h"
#include "zqat/core/thread_pool.h"

using namespace zqat;

TEST(ThreadPool, RunsEveryTaskOnce) {
    for (int threads : {1, 2, 3, 8}) {
        ThreadPool pool(threads);
        for (int64_t n : {0, 1, 2, 7, 1000}) {
            std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
            std::atomic<int> bad_thread{0};
            pool.parallel_for(n, [&](int64_t t, int th) {
                hits[size_t(t)]++;
                if (th < 0 || th >= threads) bad_thread++;
            });
            for (auto& h : hits) EXPECT_EQ(h.load(), 1);
            EXPECT_EQ(bad_thread.load(), 0);
        }
    }
}

TEST(ThreadPool, ManyJobsInARow) {
    ThreadPool pool(4);
    std::atomic<int64_t> sum{0};
    for (int rep = 0; rep < 2000; ++rep) pool.parallel_for(3, [&](int64_t t, int) { sum += t; });
    EXPECT_EQ(sum.load(), 2000 * 3);
}

TEST(ThreadPool, RethrowsTaskException) {
    ThreadPool pool(2);
    EXPECT_THROW(pool.parallel_for(100,
                                   [&](int64_t t, int) {
                                       if (t == 37) throw std::runtime_error("task 37");
                                   }),
                 std::runtime_error);
    // The pool stays usable after a failed job.
    std::atomic<int> n{0};
    pool.parallel_for(10, [&](int64_t, int) { n++; });
    EXPECT_EQ(n.load(), 10);
}

TEST(ThreadPool, RejectsZeroThreads) {
    EXPECT_THROW(ThreadPool(0), Error);
}
