// A binary max-heap over the integer keys [0, capacity), each present at most once, with its
// position tracked so a key's priority can be raised in O(log n). Prioritized sweeping needs
// exactly this: "insert (s, a) unless it is already queued with a higher priority".
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace pymbrl {

class IndexedMaxHeap {
 public:
  struct Entry {
    int64_t key;
    double priority;
  };

  explicit IndexedMaxHeap(int64_t capacity = 0) : pos_(static_cast<size_t>(capacity), -1) {}

  int64_t capacity() const { return static_cast<int64_t>(pos_.size()); }
  bool empty() const { return heap_.empty(); }
  int64_t size() const { return static_cast<int64_t>(heap_.size()); }
  bool contains(int64_t key) const { return pos_[static_cast<size_t>(key)] >= 0; }
  const Entry& top() const { return heap_.front(); }
  // Entries in heap order; with set_entries this is a lossless snapshot (ties pop identically).
  const std::vector<Entry>& entries() const { return heap_; }

  // Inserts key, or raises its priority to `priority` if that is higher than the queued one.
  void push_or_raise(int64_t key, double priority) {
    int64_t& p = pos_[static_cast<size_t>(key)];
    if (p < 0) {
      p = size();
      heap_.push_back({key, priority});
      sift_up(p);
    } else if (priority > heap_[static_cast<size_t>(p)].priority) {
      heap_[static_cast<size_t>(p)].priority = priority;
      sift_up(p);
    }
  }

  Entry pop() {
    Entry top_entry = heap_.front();
    pos_[static_cast<size_t>(top_entry.key)] = -1;
    Entry last = heap_.back();
    heap_.pop_back();
    if (!heap_.empty()) {
      heap_[0] = last;
      pos_[static_cast<size_t>(last.key)] = 0;
      sift_down(0);
    }
    return top_entry;
  }

  void clear() {
    for (const Entry& e : heap_) pos_[static_cast<size_t>(e.key)] = -1;
    heap_.clear();
  }

  // Restores a snapshot taken with entries(). Throws std::invalid_argument (leaving the heap as
  // it was) if a key is out of range or repeated, a priority is not finite, or the order is not a
  // valid max-heap.
  void set_entries(const std::vector<Entry>& entries) {
    std::vector<int64_t> pos(pos_.size(), -1);
    for (size_t i = 0; i < entries.size(); ++i) {
      const Entry& e = entries[i];
      if (e.key < 0 || e.key >= capacity()) {
        throw std::invalid_argument("queue: expected keys in [0, " + std::to_string(capacity()) +
                                    "), got " + std::to_string(e.key));
      }
      if (pos[static_cast<size_t>(e.key)] >= 0) {
        throw std::invalid_argument("queue: expected each key once, got " +
                                    std::to_string(e.key) + " twice");
      }
      if (!(e.priority - e.priority == 0.0)) {
        throw std::invalid_argument("queue: expected finite priorities");
      }
      if (i > 0 && entries[(i - 1) / 2].priority < e.priority) {
        throw std::invalid_argument("queue: expected entries in max-heap order");
      }
      pos[static_cast<size_t>(e.key)] = static_cast<int64_t>(i);
    }
    heap_ = entries;
    pos_ = std::move(pos);
  }

 private:
  void place(int64_t i, const Entry& e) {
    heap_[static_cast<size_t>(i)] = e;
    pos_[static_cast<size_t>(e.key)] = i;
  }

  void sift_up(int64_t i) {
    Entry e = heap_[static_cast<size_t>(i)];
    while (i > 0) {
      const int64_t parent = (i - 1) / 2;
      if (heap_[static_cast<size_t>(parent)].priority >= e.priority) break;
      place(i, heap_[static_cast<size_t>(parent)]);
      i = parent;
    }
    place(i, e);
  }

  void sift_down(int64_t i) {
    Entry e = heap_[static_cast<size_t>(i)];
    const int64_t n = size();
    while (true) {
      int64_t child = 2 * i + 1;
      if (child >= n) break;
      if (child + 1 < n && heap_[static_cast<size_t>(child + 1)].priority >
                               heap_[static_cast<size_t>(child)].priority) {
        ++child;
      }
      if (heap_[static_cast<size_t>(child)].priority <= e.priority) break;
      place(i, heap_[static_cast<size_t>(child)]);
      i = child;
    }
    place(i, e);
  }

  std::vector<Entry> heap_;
  std::vector<int64_t> pos_;
};

}  // namespace pymbrl
