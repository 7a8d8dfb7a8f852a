// The per-slot ring of captured worker lines behind `forkctl logs`: bounded by lines and bytes.
#include "daemon/output_ring.hpp"

#include <gtest/gtest.h>

namespace {

using forkd::daemon::CapturedLine;
using forkd::daemon::OutputRing;

CapturedLine line(std::uint64_t seq, std::string text) {
  CapturedLine l;
  l.seq = seq;
  l.text = std::move(text);
  return l;
}

TEST(OutputRing, KeepsTheLastLinesOldestFirst) {
  OutputRing ring(3);
  for (std::uint64_t i = 1; i <= 5; ++i) ring.push(line(i, "line " + std::to_string(i)));
  const auto last = ring.last(10);
  ASSERT_EQ(last.size(), 3U);
  EXPECT_EQ(last[0].text, "line 3");
  EXPECT_EQ(last[2].text, "line 5");
  ASSERT_EQ(ring.last(2).size(), 2U);
  EXPECT_EQ(ring.last(2)[0].text, "line 4");
}

TEST(OutputRing, NeverHoldsMoreBytesThanItsCap) {
  OutputRing ring(1000, 100);
  for (std::uint64_t i = 0; i < 50; ++i) ring.push(line(i, std::string(30, 'x')));
  EXPECT_LE(ring.bytes(), 100U);
  EXPECT_EQ(ring.size(), 3U);
  // One line above the cap keeps its head, alone.
  ring.push(line(99, std::string(500, 'y')));
  EXPECT_EQ(ring.size(), 1U);
  EXPECT_EQ(ring.bytes(), 100U);
  OutputRing none(0);
  none.push(line(1, "x"));
  EXPECT_EQ(none.size(), 0U);
}

}  // namespace
