#include "pymbrl/thread_pool.h"

#include <gtest/gtest.h>

#include <atomic>
#include <stdexcept>
#include <vector>

namespace {

using pymbrl::ThreadPool;

TEST(ThreadPool, CoversEveryIndexExactlyOnce) {
  for (int threads : {1, 2, 3, 8}) {
    ThreadPool pool(threads);
    for (int n : {0, 1, 2, 5, 64, 1001}) {
      std::vector<std::atomic<int>> hits(n);
      pool.parallel_for(n, [&](int64_t lo, int64_t hi) {
        for (int64_t i = lo; i < hi; ++i) hits[i].fetch_add(1);
      });
      for (int i = 0; i < n; ++i) ASSERT_EQ(hits[i].load(), 1) << "threads " << threads << " n " << n << " i " << i;
    }
  }
}

TEST(ThreadPool, SplitsIntoOneChunkPerThread) {
  ThreadPool pool(4);
  std::atomic<int> chunks{0};
  pool.parallel_for(100, [&](int64_t, int64_t) { chunks.fetch_add(1); });
  EXPECT_EQ(chunks.load(), 4);
  chunks = 0;
  pool.parallel_for(3, [&](int64_t, int64_t) { chunks.fetch_add(1); });
  EXPECT_EQ(chunks.load(), 3);
}

// Thousands of back-to-back jobs, the pattern of a search loop: no lost wake-up, no deadlock.
TEST(ThreadPool, ManyShortJobsInARow) {
  ThreadPool pool(3);
  int64_t total = 0;
  std::vector<int64_t> partial(3);
  for (int job = 0; job < 5000; ++job) {
    std::atomic<int64_t> sum{0};
    pool.parallel_for(30, [&](int64_t lo, int64_t hi) {
      int64_t s = 0;
      for (int64_t i = lo; i < hi; ++i) s += i;
      sum.fetch_add(s);
    });
    total += sum.load();
  }
  EXPECT_EQ(total, 5000 * (29 * 30 / 2));
}

TEST(ThreadPool, RethrowsAWorkerExceptionAndStaysUsable) {
  ThreadPool pool(3);
  EXPECT_THROW(pool.parallel_for(90, [](int64_t lo, int64_t) {
    if (lo > 0) throw std::runtime_error("chunk failed");
  }), std::runtime_error);
  std::atomic<int> done{0};
  pool.parallel_for(90, [&](int64_t lo, int64_t hi) { done.fetch_add(static_cast<int>(hi - lo)); });
  EXPECT_EQ(done.load(), 90);
}

TEST(ThreadPool, NonPositiveSizeRunsInline) {
  ThreadPool pool(0);
  EXPECT_EQ(pool.size(), 1);
  int calls = 0;
  pool.parallel_for(10, [&](int64_t lo, int64_t hi) {
    ++calls;
    EXPECT_EQ(lo, 0);
    EXPECT_EQ(hi, 10);
  });
  EXPECT_EQ(calls, 1);
}

}  // namespace
