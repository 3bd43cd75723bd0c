// A fixed-size, uninitialised array for big tables (replay rows, priority trees). Large ones are
// aligned to 2 MiB and, on Linux, marked for transparent huge pages: random access into hundreds
// of megabytes otherwise pays a TLB miss on almost every row. Pages are committed on first write.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <new>
#include <utility>

#ifdef __linux__
#include <sys/mman.h>
#endif

namespace pymbrl {

template <typename T>
class LargeArray {
 public:
  LargeArray() = default;
  explicit LargeArray(size_t n) : size_(n) {
    constexpr size_t kHuge = size_t{2} << 20;
    if (n > (std::numeric_limits<size_t>::max() - 2 * kHuge) / sizeof(T)) throw std::bad_alloc();
    const size_t bytes = n * sizeof(T);
    if (bytes >= 2 * kHuge) {
      const size_t rounded = (bytes + kHuge - 1) / kHuge * kHuge;
      data_ = static_cast<T*>(std::aligned_alloc(kHuge, rounded));
#ifdef __linux__
      if (data_) madvise(data_, rounded, MADV_HUGEPAGE);  // advice only: failure is harmless
#endif
    } else {
      // Cache-line aligned, so a group of eight doubles fills exactly one line.
      data_ = static_cast<T*>(std::aligned_alloc(64, (bytes + 63) / 64 * 64 + 64));
    }
    if (!data_) throw std::bad_alloc();
  }
  LargeArray(const LargeArray&) = delete;
  LargeArray& operator=(const LargeArray&) = delete;
  LargeArray(LargeArray&& other) noexcept : data_(other.data_), size_(other.size_) {
    other.data_ = nullptr;
    other.size_ = 0;
  }
  LargeArray& operator=(LargeArray&& other) noexcept {
    std::swap(data_, other.data_);
    std::swap(size_, other.size_);
    return *this;
  }
  ~LargeArray() { std::free(data_); }

  T* data() { return data_; }
  const T* data() const { return data_; }
  size_t size() const { return size_; }
  T& operator[](size_t i) { return data_[i]; }
  const T& operator[](size_t i) const { return data_[i]; }

 private:
  T* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace pymbrl
