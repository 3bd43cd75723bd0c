#include "pymbrl/large_array.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <limits>
#include <new>
#include <type_traits>
#include <utility>

namespace {

using pymbrl::LargeArray;

constexpr uintptr_t kHuge = uintptr_t{2} << 20;

bool aligned(const void* p, uintptr_t alignment) { return reinterpret_cast<uintptr_t>(p) % alignment == 0; }

#if defined(__SANITIZE_ADDRESS__)
constexpr bool kAddressSanitizer = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
constexpr bool kAddressSanitizer = true;
#else
constexpr bool kAddressSanitizer = false;
#endif
#else
constexpr bool kAddressSanitizer = false;
#endif

static_assert(!std::is_copy_constructible_v<LargeArray<double>>);
static_assert(!std::is_copy_assignable_v<LargeArray<double>>);
static_assert(std::is_nothrow_move_constructible_v<LargeArray<double>>);
static_assert(std::is_nothrow_move_assignable_v<LargeArray<double>>);

TEST(LargeArray, DefaultIsEmpty) {
  LargeArray<double> a;
  EXPECT_EQ(a.size(), 0u);
  EXPECT_EQ(a.data(), nullptr);
}

TEST(LargeArray, SmallArraysAreCacheLineAlignedAndWritable) {
  for (size_t n : {size_t{1}, size_t{7}, size_t{8}, size_t{9}, size_t{1000}, size_t{4095}}) {
    LargeArray<double> a(n);
    ASSERT_NE(a.data(), nullptr) << n;
    EXPECT_EQ(a.size(), n);
    EXPECT_TRUE(aligned(a.data(), 64)) << n;
    for (size_t i = 0; i < n; ++i) a[i] = static_cast<double>(i) * 0.5;
    const LargeArray<double>& c = a;
    for (size_t i = 0; i < n; ++i) ASSERT_EQ(c[i], static_cast<double>(i) * 0.5) << n << " " << i;
    EXPECT_EQ(c.data(), a.data());
  }
}

TEST(LargeArray, ZeroElementsStillGivesAPointer) {
  LargeArray<uint8_t> a(0);
  EXPECT_EQ(a.size(), 0u);
  EXPECT_NE(a.data(), nullptr);
}

// 4 MiB and up takes the huge-page path: 2 MiB alignment, size rounded up internally.
TEST(LargeArray, LargeArraysAreHugePageAligned) {
  const size_t n = (size_t{4} << 20) / sizeof(double) + 3;  // not a whole number of huge pages
  LargeArray<double> a(n);
  ASSERT_NE(a.data(), nullptr);
  EXPECT_EQ(a.size(), n);
  EXPECT_TRUE(aligned(a.data(), kHuge));
  a[0] = 1.5;
  a[n / 2] = 2.5;
  a[n - 1] = 3.5;  // the last element is inside the allocation (ASan checks)
  EXPECT_EQ(a[0], 1.5);
  EXPECT_EQ(a[n / 2], 2.5);
  EXPECT_EQ(a[n - 1], 3.5);
}

TEST(LargeArray, JustBelowTheHugeThresholdIsStillUsable) {
  const size_t n = (size_t{4} << 20) - 1;
  LargeArray<uint8_t> a(n);
  EXPECT_TRUE(aligned(a.data(), 64));
  a[0] = 1;
  a[n - 1] = 2;
  EXPECT_EQ(a[0] + a[n - 1], 3);
}

TEST(LargeArray, MoveConstructionTransfersOwnership) {
  LargeArray<int64_t> a(100);
  for (size_t i = 0; i < 100; ++i) a[i] = static_cast<int64_t>(i * i);
  const int64_t* p = a.data();
  LargeArray<int64_t> b(std::move(a));
  EXPECT_EQ(b.data(), p);
  EXPECT_EQ(b.size(), 100u);
  EXPECT_EQ(a.data(), nullptr);  // NOLINT(bugprone-use-after-move): the moved-from state is specified
  EXPECT_EQ(a.size(), 0u);
  EXPECT_EQ(b[99], 99 * 99);
}

TEST(LargeArray, MoveAssignmentTakesTheOtherArray) {
  LargeArray<int32_t> a(10);
  LargeArray<int32_t> b(20);
  for (size_t i = 0; i < 20; ++i) b[i] = static_cast<int32_t>(i) + 7;
  const int32_t* pb = b.data();
  a = std::move(b);
  EXPECT_EQ(a.data(), pb);
  EXPECT_EQ(a.size(), 20u);
  EXPECT_EQ(a[19], 26);
  // Both are destroyed at scope end: each buffer must be freed exactly once (ASan checks).
  LargeArray<int32_t> empty;
  a = std::move(empty);
  EXPECT_EQ(a.size(), 0u);
}

TEST(LargeArray, UnsatisfiableSizeThrowsBadAlloc) {
  if (kAddressSanitizer) GTEST_SKIP() << "ASan aborts on impossible allocations instead of returning null";
  EXPECT_THROW(LargeArray<uint8_t>(size_t{1} << 62), std::bad_alloc);
}

// n * sizeof(T) must not wrap around: here it wraps to 8 bytes, and an array claiming 2^61 + 1
// elements over an 8-byte block would turn every index past 0 into an out-of-bounds access.
TEST(LargeArray, ElementCountWhoseByteSizeOverflowsIsRefused) {
  const size_t n = std::numeric_limits<size_t>::max() / sizeof(double) + 2;
  EXPECT_ANY_THROW(LargeArray<double> a(n));
}

}  // namespace
