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

}  // namespace
