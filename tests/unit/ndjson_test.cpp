#include "common/ndjson.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace {

using forkd::common::LineDecoder;

struct Collected {
  std::vector<std::string> lines;
  int oversized = 0;
  LineDecoder::Sink sink() {
    return [this](LineDecoder::Event e, std::string_view line) {
      if (e == LineDecoder::Event::oversized) {
        ++oversized;
      } else {
        lines.emplace_back(line);
      }
    };
  }
};

TEST(NdjsonTest, SplitsLinesAcrossArbitraryChunks) {
  LineDecoder d(64);
  Collected c;
  const std::string stream = "{\"a\":1}\n{\"b\":\n2}\r\n\n\"x\"\n";
  for (char ch : stream) d.feed(std::string_view(&ch, 1), c.sink());
  EXPECT_EQ(c.lines, (std::vector<std::string>{"{\"a\":1}", "{\"b\":", "2}", "", "\"x\""}));
  EXPECT_EQ(d.buffered(), 0U);
}

TEST(NdjsonTest, OversizedLineIsReportedOnceAndSkippedToTheNextNewline) {
  LineDecoder d(8);
  Collected c;
  d.feed("0123456789", c.sink());
  d.feed("abcdef", c.sink());
  EXPECT_LE(d.buffered(), 8U);
  d.feed("ghi\nok\n", c.sink());
  EXPECT_EQ(c.oversized, 1);
  EXPECT_EQ(c.lines, (std::vector<std::string>{"ok"}));
}

TEST(NdjsonTest, LineOfExactlyMaxSizeIsAccepted) {
  LineDecoder d(4);
  Collected c;
  d.feed("abcd\nabcde\n", c.sink());
  EXPECT_EQ(c.lines, (std::vector<std::string>{"abcd"}));
  EXPECT_EQ(c.oversized, 1);
}

TEST(NdjsonTest, AnUnfinishedLinesBufferIsGivenBackOnceTheLineIsDone) {
  LineDecoder d(4096);
  Collected c;
  d.feed(std::string(1000, 'a'), c.sink());
  EXPECT_GE(d.capacity(), 1000U);  // held while the line is unfinished
  d.feed("a\n", c.sink());
  ASSERT_EQ(c.lines.size(), 1U);
  EXPECT_EQ(c.lines[0].size(), 1001U);
  EXPECT_LE(d.capacity(), std::string().capacity());  // an idle peer costs no buffer
  d.feed(std::string(3000, 'b'), c.sink());
  d.feed(std::string(3000, 'b') + "\n", c.sink());  // past the cap: dropped
  EXPECT_EQ(c.oversized, 1);
  EXPECT_LE(d.capacity(), std::string().capacity());
}

}  // namespace
