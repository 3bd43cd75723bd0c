// A small persistent thread pool for data-parallel loops that are called thousands of times a
// second (one MCTS step over a batch of trees takes ~100 µs): spawning threads per call would cost
// as much as the work, so workers live as long as the pool and wait between jobs, spinning briefly
// first because the next job usually arrives within microseconds.
#pragma once

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

namespace pymbrl {

class ThreadPool {
 public:
  // `threads` counts the calling thread: ThreadPool(1) runs everything inline.
  explicit ThreadPool(int threads) : size_(std::max(1, threads)) {
    for (int t = 1; t < size_; ++t) workers_.emplace_back([this, t] { work(t); });
  }
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;
  ~ThreadPool() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stop_ = true;
      generation_.fetch_add(1, std::memory_order_release);
    }
    wake_.notify_all();
    for (auto& w : workers_) w.join();
  }

  int size() const { return size_; }

  // Calls fn(lo, hi) on contiguous chunks covering [0, n), one chunk per thread; the caller takes
  // the first. Returns when every chunk is done; rethrows the first exception a chunk threw.
  template <typename F>
  void parallel_for(int64_t n, F&& fn) {
    const int chunks = static_cast<int>(std::min<int64_t>(size_, n));
    if (chunks <= 1) {
      if (n > 0) fn(int64_t{0}, n);
      return;
    }
    Job job{&fn, [](void* f, int64_t lo, int64_t hi) { (*static_cast<F*>(f))(lo, hi); }, n, chunks};
    {
      std::lock_guard<std::mutex> lock(mutex_);
      job_ = job;
      pending_.store(chunks - 1, std::memory_order_relaxed);
      error_ = nullptr;
      generation_.fetch_add(1, std::memory_order_release);
    }
    wake_.notify_all();
    run_chunk(job, 0);
    // Workers finish within microseconds of the caller; a short spin avoids a futex round trip.
    for (int spin = 0; pending_.load(std::memory_order_acquire) != 0; ++spin) {
      if (spin > 20000) {
        std::unique_lock<std::mutex> lock(mutex_);
        done_.wait(lock, [this] { return pending_.load(std::memory_order_acquire) == 0; });
        break;
      }
    }
    if (error_) std::rethrow_exception(error_);
  }

 private:
  struct Job {
    void* fn = nullptr;
    void (*call)(void*, int64_t, int64_t) = nullptr;
    int64_t n = 0;
    int chunks = 0;
  };

  void run_chunk(const Job& job, int index) {
    const int64_t lo = job.n * index / job.chunks;
    const int64_t hi = job.n * (index + 1) / job.chunks;
    try {
      if (lo < hi) job.call(job.fn, lo, hi);
    } catch (...) {
      std::lock_guard<std::mutex> lock(mutex_);
      if (!error_) error_ = std::current_exception();
    }
  }

  void work(int index) {
    uint64_t seen = 0;
    for (;;) {
      // Spin a little (the next step of a search follows within tens of microseconds), then sleep.
      uint64_t gen = generation_.load(std::memory_order_acquire);
      for (int spin = 0; gen == seen && spin < 4000; ++spin) {
        std::this_thread::yield();
        gen = generation_.load(std::memory_order_acquire);
      }
      Job job;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        wake_.wait(lock, [&] { return stop_ || generation_.load(std::memory_order_acquire) != seen; });
        if (stop_) return;
        seen = generation_.load(std::memory_order_acquire);
        job = job_;
      }
      if (index < job.chunks) {
        run_chunk(job, index);
        if (pending_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
          std::lock_guard<std::mutex> lock(mutex_);
          done_.notify_one();
        }
      }
    }
  }

  int size_;
  std::vector<std::thread> workers_;
  std::mutex mutex_;
  std::condition_variable wake_, done_;
  std::atomic<uint64_t> generation_{0};
  std::atomic<int> pending_{0};
  Job job_;
  std::exception_ptr error_;
  bool stop_ = false;
};

}  // namespace pymbrl
