#include "pymbrl/replay/row_layout.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "pymbrl/rng.h"
#include "replay_support.h"

namespace {

using pymbrl::Rng;
using pymbrl::replay::Field;
using pymbrl::replay::RowLayout;
using replay_test::make_field;

std::vector<Field> minimal() {
  return {make_field("obs", 'f', 4, {3}), make_field("reward", 'f', 4), make_field("terminated", 'b', 1),
          make_field("truncated", 'b', 1)};
}

std::vector<Field> without(std::vector<Field> fs, const std::string& name) {
  std::vector<Field> out;
  for (auto& f : fs) {
    if (f.name != name) out.push_back(f);
  }
  return out;
}

std::vector<Field> replaced(std::vector<Field> fs, const Field& g) {
  for (auto& f : fs) {
    if (f.name == g.name) f = g;
  }
  return fs;
}

// The message of the invalid_argument the constructor throws, or "" if it does not throw.
std::string error_of(const std::vector<Field>& fs) {
  try {
    RowLayout l(fs);
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "";
}

void expect_well_formed(const RowLayout& l) {
  int64_t end = 0;
  for (const Field& f : l.fields()) {
    EXPECT_EQ(f.offset % f.itemsize, 0) << f.name;
    EXPECT_GE(f.offset, end) << f.name << ": overlaps the previous field";
    EXPECT_LT(f.offset - end, f.itemsize) << f.name << ": more padding than alignment needs";
    int64_t numel = 1;
    for (int64_t d : f.shape) numel *= d;
    EXPECT_EQ(f.numel, numel) << f.name;
    EXPECT_EQ(f.nbytes, numel * f.itemsize) << f.name;
    end = f.offset + f.nbytes;
  }
  EXPECT_EQ(l.row_bytes() % 8, 0);
  EXPECT_GE(l.row_bytes(), end);
  EXPECT_LT(l.row_bytes() - end, 8);
}

TEST(RowLayout, MinimalSpecPlacesFieldsInOrder) {
  RowLayout l(minimal());
  ASSERT_EQ(l.fields().size(), 4u);
  EXPECT_EQ(l.obs().name, "obs");
  EXPECT_EQ(l.obs().offset, 0);
  EXPECT_EQ(l.obs().numel, 3);
  EXPECT_EQ(l.obs().nbytes, 12);
  EXPECT_EQ(l.reward().offset, 12);
  EXPECT_EQ(l.terminated().offset, 16);
  EXPECT_EQ(l.truncated().offset, 17);
  EXPECT_EQ(l.row_bytes(), 24);  // 18 padded to 8
  EXPECT_EQ(l.reward_index(), 1u);
  EXPECT_EQ(l.terminated_index(), 2u);
  EXPECT_EQ(l.truncated_index(), 3u);
  expect_well_formed(l);
}

TEST(RowLayout, FieldsAreAlignedToTheirItemSize) {
  RowLayout l = replay_test::test_layout();
  const auto& f = l.fields();
  ASSERT_EQ(f.size(), 5u);
  EXPECT_EQ(f[0].offset, 0);   // terminated
  EXPECT_EQ(f[1].offset, 4);   // obs, float32[2], after 3 bytes of padding
  EXPECT_EQ(f[2].offset, 12);  // truncated
  EXPECT_EQ(f[3].offset, 16);  // action, int64, after 3 bytes of padding
  EXPECT_EQ(f[4].offset, 24);  // reward
  EXPECT_EQ(l.row_bytes(), 32);
  EXPECT_EQ(l.reward_index(), 4u);
  EXPECT_EQ(l.terminated_index(), 0u);
  EXPECT_EQ(l.truncated_index(), 2u);
  expect_well_formed(l);

  RowLayout l64 = replay_test::test_layout(true);
  EXPECT_EQ(l64.reward().offset, 24);
  EXPECT_EQ(l64.reward().itemsize, 8);
  EXPECT_EQ(l64.row_bytes(), 32);
}

TEST(RowLayout, RowSizeIsAMultipleOfEight) {
  // One byte of data still takes a whole 8-byte row slot.
  RowLayout l({make_field("obs", 'u', 1), make_field("terminated", 'b', 1), make_field("truncated", 'b', 1),
               make_field("reward", 'f', 4)});
  EXPECT_EQ(l.reward().offset, 4);
  EXPECT_EQ(l.row_bytes(), 8);
  RowLayout l2({make_field("obs", 'f', 8, {1}), make_field("reward", 'f', 8), make_field("terminated", 'b', 1),
                make_field("truncated", 'b', 1), make_field("x", 'i', 2, {5})});
  EXPECT_EQ(l2.fields()[4].offset, 18);
  EXPECT_EQ(l2.row_bytes(), 32);  // 28 rounded up
  expect_well_formed(l2);
}

TEST(RowLayout, RandomSpecsAreAlignedAndPacked) {
  Rng rng(7);
  const char kinds[] = {'f', 'i', 'u', 'b'};
  for (int rep = 0; rep < 300; ++rep) {
    std::vector<Field> fs = minimal();
    fs[0] = make_field("obs", 'u', 1, {});
    const int extra = static_cast<int>(rng.uniform_int(6));
    for (int k = 0; k < extra; ++k) {
      const char kind = kinds[rng.uniform_int(4)];
      const int64_t itemsize = kind == 'b' ? 1 : (kind == 'f' ? int64_t{4} << rng.uniform_int(2) : int64_t{1} << rng.uniform_int(4));
      std::vector<int64_t> shape;
      for (uint64_t d = rng.uniform_int(3); d > 0; --d) shape.push_back(1 + static_cast<int64_t>(rng.uniform_int(5)));
      fs.push_back(make_field("x" + std::to_string(k), kind, itemsize, shape));
    }
    // Shuffle so the required fields land anywhere.
    for (size_t i = fs.size(); i > 1; --i) std::swap(fs[i - 1], fs[rng.uniform_int(i)]);
    RowLayout l(fs);
    ASSERT_EQ(l.fields().size(), fs.size());
    for (size_t i = 0; i < fs.size(); ++i) EXPECT_EQ(l.fields()[i].name, fs[i].name);
    EXPECT_EQ(l.obs().name, "obs");
    EXPECT_EQ(l.reward().name, "reward");
    EXPECT_EQ(l.terminated().name, "terminated");
    EXPECT_EQ(l.truncated().name, "truncated");
    EXPECT_EQ(l.fields()[l.reward_index()].name, "reward");
    expect_well_formed(l);
  }
}

TEST(RowLayout, ObservationMayHaveAnyDtypeAndShape) {
  for (const Field& obs : {make_field("obs", 'u', 1, {84, 84, 3}), make_field("obs", 'b', 1, {4}),
                           make_field("obs", 'f', 8), make_field("obs", 'i', 2, {2, 3}), make_field("obs", 'f', 2, {7})}) {
    RowLayout l(replaced(minimal(), obs));
    EXPECT_EQ(l.obs().kind, obs.kind);
    EXPECT_EQ(l.obs().itemsize, obs.itemsize);
    expect_well_formed(l);
  }
}

TEST(RowLayout, MissingRequiredFieldsAreRefused) {
  for (const char* name : {"obs", "reward", "terminated", "truncated"}) {
    const std::string msg = error_of(without(minimal(), name));
    EXPECT_NE(msg.find(std::string("'") + name + "'"), std::string::npos) << name << ": " << msg;
  }
  EXPECT_THROW(RowLayout({}), std::invalid_argument);
}

TEST(RowLayout, RequiredFieldsOfTheWrongKindAreRefused) {
  const std::vector<Field> bad = {
      make_field("reward", 'i', 4),          make_field("reward", 'u', 8),      make_field("reward", 'b', 1),
      make_field("reward", 'f', 2),          // float16
      make_field("reward", 'f', 4, {1}),     // not a scalar
      make_field("terminated", 'u', 1),      make_field("terminated", 'i', 1), make_field("terminated", 'f', 4),
      make_field("terminated", 'b', 1, {1}), make_field("truncated", 'u', 1),  make_field("truncated", 'b', 1, {2}),
  };
  for (const Field& f : bad) {
    const std::string msg = error_of(replaced(minimal(), f));
    EXPECT_NE(msg.find("'" + f.name + "'"), std::string::npos)
        << f.name << " kind " << f.kind << f.itemsize << " dims " << f.shape.size() << ": '" << msg << "'";
  }
  // float64 rewards are fine.
  EXPECT_NO_THROW(RowLayout(replaced(minimal(), make_field("reward", 'f', 8))));
}

TEST(RowLayout, UnsupportedDtypesAreRefused) {
  const std::vector<Field> bad = {make_field("x", 'c', 8), make_field("x", 'O', 8), make_field("x", 'f', 3),
                                  make_field("x", 'i', 16), make_field("x", 'u', 0), make_field("x", 'b', 2),
                                  make_field("x", 'i', -4)};
  for (const Field& f : bad) {
    std::vector<Field> fs = minimal();
    fs.push_back(f);
    const std::string msg = error_of(fs);
    EXPECT_NE(msg.find("'x'"), std::string::npos) << f.kind << f.itemsize << ": '" << msg << "'";
  }
}

TEST(RowLayout, DuplicateAndEmptyNamesAreRefused) {
  std::vector<Field> fs = minimal();
  fs.push_back(make_field("reward", 'f', 4));
  EXPECT_NE(error_of(fs).find("twice"), std::string::npos) << error_of(fs);
  fs = minimal();
  fs.insert(fs.begin() + 1, make_field("obs", 'u', 1));
  EXPECT_NE(error_of(fs).find("'obs'"), std::string::npos);
  fs = minimal();
  fs.push_back(make_field("", 'f', 4));
  EXPECT_FALSE(error_of(fs).empty());
}

TEST(RowLayout, NonPositiveDimensionsAreRefused) {
  for (const std::vector<int64_t>& shape : {std::vector<int64_t>{0}, std::vector<int64_t>{3, 0}, std::vector<int64_t>{-1},
                                            std::vector<int64_t>{2, -3, 4}}) {
    std::vector<Field> fs = minimal();
    fs.push_back(make_field("x", 'f', 4, shape));
    EXPECT_NE(error_of(fs).find("'x'"), std::string::npos);
    EXPECT_FALSE(error_of(replaced(minimal(), make_field("obs", 'f', 4, shape))).empty());
  }
}

TEST(RowLayout, ReadsRewardAndFlagsFromARow) {
  for (bool reward64 : {false, true}) {
    RowLayout l = replay_test::test_layout(reward64);
    alignas(8) uint8_t row[32] = {};
    const double r = -2.375;  // exact in float32
    if (reward64) {
      std::memcpy(row + l.reward().offset, &r, 8);
    } else {
      const float f = static_cast<float>(r);
      std::memcpy(row + l.reward().offset, &f, 4);
    }
    EXPECT_EQ(l.read_reward(row), r);
    EXPECT_FALSE(l.terminated(row));
    EXPECT_FALSE(l.truncated(row));
    EXPECT_FALSE(l.done(row));
    row[l.truncated().offset] = 1;
    EXPECT_TRUE(l.truncated(row));
    EXPECT_TRUE(l.done(row));
    row[l.truncated().offset] = 0;
    row[l.terminated().offset] = 1;
    EXPECT_TRUE(l.terminated(row));
    EXPECT_FALSE(l.truncated(row));
    EXPECT_TRUE(l.done(row));
  }
  // float64 rewards keep their precision.
  RowLayout l = replay_test::test_layout(true);
  alignas(8) uint8_t row[32] = {};
  const double r = 0.1;
  std::memcpy(row + l.reward().offset, &r, 8);
  EXPECT_EQ(l.read_reward(row), 0.1);
}

TEST(RowLayout, LoadReadsUnalignedBytes) {
  uint8_t buf[16] = {};
  const double v = 3.25;
  std::memcpy(buf + 3, &v, 8);
  EXPECT_EQ(RowLayout::load<double>(buf + 3), 3.25);
  const int32_t i = -17;
  std::memcpy(buf + 1, &i, 4);
  EXPECT_EQ(RowLayout::load<int32_t>(buf + 1), -17);
}

// A dimension near 2^63 used to wrap the row size to 0, and a later division raised SIGFPE.
TEST(RowLayout, SizesThatOverflowOrExceedTheLimitAreRefused) {
  const int64_t big = int64_t{1} << 62;
  const std::vector<std::vector<int64_t>> shapes = {
      {big}, {INT64_MAX}, {int64_t{1} << 31, int64_t{1} << 31, 4}, {3, big}, {(int64_t{1} << 40) + 1}, {(int64_t{1} << 38) + 1}};
  for (const auto& shape : shapes) {
    const std::string e = error_of(replaced(minimal(), make_field("obs", 'f', 4, shape)));
    EXPECT_NE(e.find("spec['obs']"), std::string::npos) << shape.size() << " dims: " << e;
  }
  // Each field within the limit, all together beyond it.
  std::vector<Field> fs = minimal();
  fs.push_back(make_field("a", 'u', 1, {int64_t{1} << 39}));
  fs.push_back(make_field("b", 'u', 1, {int64_t{1} << 39}));
  EXPECT_NE(error_of(fs).find("spec['b']"), std::string::npos) << error_of(fs);
  // The limit itself is fine.
  EXPECT_EQ(error_of(replaced(minimal(), make_field("obs", 'u', 1, {(int64_t{1} << 40) - 64}))), "");
}

}  // namespace
