#include "pymbrl/indexed_max_heap.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <map>
#include <stdexcept>
#include <utility>
#include <vector>

#include "pymbrl/rng.h"
#include "support.h"

namespace {

using pymbrl::IndexedMaxHeap;
using Entry = IndexedMaxHeap::Entry;

std::vector<std::pair<int64_t, double>> drain(IndexedMaxHeap& heap) {
  std::vector<std::pair<int64_t, double>> out;
  while (!heap.empty()) {
    const Entry e = heap.pop();
    out.emplace_back(e.key, e.priority);
  }
  return out;
}

bool same_entries(const std::vector<Entry>& a, const std::vector<Entry>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i].key != b[i].key || a[i].priority != b[i].priority) return false;
  }
  return true;
}

// Checks every key's membership and that the array satisfies the max-heap property: a broken
// position index or sift shows up here long before it shows up as a wrong pop.
void expect_consistent(const IndexedMaxHeap& heap, const std::map<int64_t, double>& ref) {
  ASSERT_EQ(heap.size(), static_cast<int64_t>(ref.size()));
  for (int64_t k = 0; k < heap.capacity(); ++k) EXPECT_EQ(heap.contains(k), ref.count(k) == 1) << k;
  const auto& e = heap.entries();
  for (size_t i = 1; i < e.size(); ++i) ASSERT_GE(e[(i - 1) / 2].priority, e[i].priority) << i;
  for (const Entry& x : e) EXPECT_EQ(ref.at(x.key), x.priority);
}

TEST(IndexedMaxHeap, StartsEmpty) {
  IndexedMaxHeap heap(5);
  EXPECT_EQ(heap.capacity(), 5);
  EXPECT_TRUE(heap.empty());
  EXPECT_EQ(heap.size(), 0);
  for (int64_t k = 0; k < 5; ++k) EXPECT_FALSE(heap.contains(k));
}

TEST(IndexedMaxHeap, PopsInNonIncreasingOrderAgainstReference) {
  constexpr int64_t kCap = 64;
  IndexedMaxHeap heap(kCap);
  std::map<int64_t, double> ref;
  pymbrl::Rng rng(1);
  for (int op = 0; op < 20000; ++op) {
    const uint64_t kind = rng.uniform_int(3);
    if (kind < 2 || ref.empty()) {
      const int64_t key = static_cast<int64_t>(rng.uniform_int(kCap));
      // Few distinct priorities, so ties are common.
      const double p = static_cast<double>(rng.uniform_int(10));
      heap.push_or_raise(key, p);
      auto it = ref.find(key);
      if (it == ref.end()) ref[key] = p;
      else it->second = std::max(it->second, p);
    } else {
      double best = -1.0;
      for (const auto& kv : ref) best = std::max(best, kv.second);
      ASSERT_DOUBLE_EQ(heap.top().priority, best);
      const Entry e = heap.pop();
      ASSERT_EQ(e.priority, best);
      ASSERT_EQ(ref.at(e.key), best);
      ref.erase(e.key);
    }
    if (op % 97 == 0) expect_consistent(heap, ref);
  }
  expect_consistent(heap, ref);

  std::vector<double> expected;
  for (const auto& kv : ref) expected.push_back(kv.second);
  std::sort(expected.rbegin(), expected.rend());
  std::vector<double> got;
  for (const auto& kv : drain(heap)) got.push_back(kv.second);
  EXPECT_EQ(got, expected);
}

TEST(IndexedMaxHeap, PushOrRaiseOnlyRaises) {
  IndexedMaxHeap heap(4);
  heap.push_or_raise(2, 5.0);
  heap.push_or_raise(2, 1.0);
  EXPECT_EQ(heap.size(), 1);
  EXPECT_EQ(heap.top().priority, 5.0);
  heap.push_or_raise(2, 7.5);
  EXPECT_EQ(heap.size(), 1);
  EXPECT_EQ(heap.top().key, 2);
  EXPECT_EQ(heap.top().priority, 7.5);
}

TEST(IndexedMaxHeap, RaiseMovesKeyToTop) {
  IndexedMaxHeap heap(8);
  for (int64_t k = 0; k < 8; ++k) heap.push_or_raise(k, static_cast<double>(k));
  heap.push_or_raise(0, 100.0);
  EXPECT_EQ(heap.top().key, 0);
  const auto order = drain(heap);
  std::vector<int64_t> keys;
  for (const auto& kv : order) keys.push_back(kv.first);
  EXPECT_EQ(keys, (std::vector<int64_t>{0, 7, 6, 5, 4, 3, 2, 1}));
}

TEST(IndexedMaxHeap, PoppedKeyCanBeReinserted) {
  IndexedMaxHeap heap(3);
  heap.push_or_raise(1, 2.0);
  EXPECT_TRUE(heap.contains(1));
  EXPECT_EQ(heap.pop().key, 1);
  EXPECT_FALSE(heap.contains(1));
  // A stale position would make this a "raise" of a ghost entry instead of an insert.
  heap.push_or_raise(1, 0.5);
  EXPECT_TRUE(heap.contains(1));
  EXPECT_EQ(heap.size(), 1);
  EXPECT_EQ(heap.top().priority, 0.5);
}

TEST(IndexedMaxHeap, ClearForgetsEverything) {
  IndexedMaxHeap heap(6);
  for (int64_t k = 0; k < 6; ++k) heap.push_or_raise(k, 1.0 + k);
  heap.clear();
  EXPECT_TRUE(heap.empty());
  for (int64_t k = 0; k < 6; ++k) EXPECT_FALSE(heap.contains(k));
  heap.push_or_raise(3, 0.25);
  EXPECT_EQ(heap.size(), 1);
  EXPECT_EQ(heap.pop().key, 3);
}

TEST(IndexedMaxHeap, SnapshotRoundTripReproducesPopsIncludingTies) {
  constexpr int64_t kCap = 40;
  IndexedMaxHeap heap(kCap);
  pymbrl::Rng rng(17);
  for (int i = 0; i < 200; ++i) {
    heap.push_or_raise(static_cast<int64_t>(rng.uniform_int(kCap)), static_cast<double>(rng.uniform_int(3)));
    if (i % 5 == 4) heap.pop();
  }
  ASSERT_GT(heap.size(), 10);
  const std::vector<Entry> snap = heap.entries();

  IndexedMaxHeap copy(kCap);
  copy.push_or_raise(0, 99.0);  // existing contents must be replaced, not merged
  copy.set_entries(snap);
  EXPECT_TRUE(same_entries(copy.entries(), snap));
  for (int64_t k = 0; k < kCap; ++k) EXPECT_EQ(copy.contains(k), heap.contains(k));

  // Also exercise the restored position index through raises before draining.
  heap.push_or_raise(snap.back().key, 10.0);
  copy.push_or_raise(snap.back().key, 10.0);
  EXPECT_EQ(drain(copy), drain(heap));
}

TEST(IndexedMaxHeap, SetEntriesAcceptsEmpty) {
  IndexedMaxHeap heap(3);
  heap.push_or_raise(1, 1.0);
  heap.set_entries({});
  EXPECT_TRUE(heap.empty());
  EXPECT_FALSE(heap.contains(1));
}

class IndexedMaxHeapRejects : public ::testing::TestWithParam<std::vector<Entry>> {};

TEST_P(IndexedMaxHeapRejects, InvalidSnapshotLeavesHeapUnchanged) {
  IndexedMaxHeap heap(4);
  heap.push_or_raise(3, 2.0);
  heap.push_or_raise(1, 2.0);
  heap.push_or_raise(0, 1.0);
  const std::vector<Entry> before = heap.entries();

  EXPECT_THROW(heap.set_entries(GetParam()), std::invalid_argument);
  EXPECT_TRUE(same_entries(heap.entries(), before));
  EXPECT_TRUE(heap.contains(0));
  EXPECT_TRUE(heap.contains(1));
  EXPECT_FALSE(heap.contains(2));
  EXPECT_TRUE(heap.contains(3));

  IndexedMaxHeap fresh(4);
  fresh.set_entries(before);
  EXPECT_EQ(drain(heap), drain(fresh));
}

const double kNaN = std::numeric_limits<double>::quiet_NaN();
const double kInf = std::numeric_limits<double>::infinity();

INSTANTIATE_TEST_SUITE_P(
    Cases, IndexedMaxHeapRejects,
    ::testing::Values(std::vector<Entry>{{0, 3.0}, {4, 1.0}},             // key == capacity
                      std::vector<Entry>{{-1, 3.0}},                      // negative key
                      std::vector<Entry>{{2, 3.0}, {1, 2.0}, {2, 1.0}},   // duplicate key
                      std::vector<Entry>{{0, 1.0}, {1, 2.0}},             // child above parent
                      std::vector<Entry>{{0, 5.0}, {1, 4.0}, {2, 1.0}, {3, 4.5}},  // grandchild
                      std::vector<Entry>{{0, kNaN}},                      // NaN at the root
                      std::vector<Entry>{{0, 2.0}, {1, kNaN}},            // NaN below
                      std::vector<Entry>{{0, kInf}},                      // infinite
                      std::vector<Entry>{{0, 1.0}, {1, -kInf}}));

}  // namespace
