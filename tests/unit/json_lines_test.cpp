// JSON values as lines: the checks every channel applies to what it reads, and the queue of
// what it writes.
#include "common/json_lines.hpp"

#include <gtest/gtest.h>

#include <string>

namespace {

using forkd::common::LineQueue;
using forkd::common::parse_json_line;
using forkd::common::ParsedLine;
using forkd::common::to_json_line;
using Status = ParsedLine::Status;

TEST(JsonLinesTest, ParsesAValueAndSkipsBlankLines) {
  const auto parsed = parse_json_line(R"({"cmd":"status","n":[1,2]})");
  ASSERT_EQ(parsed.status, Status::value);
  EXPECT_EQ(parsed.value["n"][1], 2);
  EXPECT_EQ(parse_json_line("").status, Status::blank);
  EXPECT_EQ(parse_json_line(" \t\r").status, Status::blank);
}

TEST(JsonLinesTest, RefusesMalformedAndTooDeepLinesWithoutThrowing) {
  EXPECT_EQ(parse_json_line("{\"cmd\":").status, Status::malformed);
  EXPECT_EQ(parse_json_line("not json").status, Status::malformed);
  // Deep enough to overflow the stack of whoever destroys or re-serialises the parsed value.
  const std::string deep = std::string(400000, '[') + std::string(400000, ']');
  EXPECT_EQ(parse_json_line(deep).status, Status::too_deep);
  const std::string fine = std::string(100, '[') + std::string(100, ']');
  EXPECT_EQ(parse_json_line(fine).status, Status::value);
}

TEST(JsonLinesTest, WritesOneLineAndReplacesInvalidUtf8) {
  EXPECT_EQ(to_json_line({{"a", 1}}), "{\"a\":1}\n");
  const std::string line = to_json_line(nlohmann::json("bad \xff byte"));
  EXPECT_EQ(line.back(), '\n');
  EXPECT_EQ(line.find('\n'), line.size() - 1);
  EXPECT_NE(line.find("\xef\xbf\xbd"), std::string::npos) << line;  // U+FFFD
}

TEST(JsonLinesTest, QueueBatchesWhileAWriteIsInFlightAndStaysUnderItsCap) {
  LineQueue queue(10);
  EXPECT_FALSE(queue.start_batch());  // nothing pending
  ASSERT_TRUE(queue.push("ab\n"));
  ASSERT_TRUE(queue.start_batch());
  EXPECT_EQ(queue.batch(), "ab\n");
  EXPECT_TRUE(queue.writing());
  ASSERT_TRUE(queue.push("cd\n"));
  ASSERT_TRUE(queue.push("ef\n"));
  EXPECT_FALSE(queue.start_batch());  // one write at a time
  EXPECT_FALSE(queue.push("gh\n"));   // 12 bytes would pass the cap of 10
  EXPECT_EQ(queue.bytes(), 9U);
  queue.batch_written();
  ASSERT_TRUE(queue.start_batch());
  EXPECT_EQ(queue.batch(), "cd\nef\n");  // the burst goes out as one write
  queue.clear();                         // drops what is pending, never the batch in flight
  EXPECT_EQ(queue.batch(), "cd\nef\n");
  queue.batch_written();
  EXPECT_EQ(queue.bytes(), 0U);
  EXPECT_FALSE(queue.writing());
}

TEST(JsonLinesTest, QueueGivesItsMemoryBackOnceDrained) {
  const std::size_t empty = 2 * std::string().capacity();
  LineQueue queue(1 << 20);
  ASSERT_TRUE(queue.push(std::string(100000, 'a') + "\n"));
  ASSERT_TRUE(queue.start_batch());
  ASSERT_TRUE(queue.push(std::string(100000, 'b') + "\n"));
  EXPECT_GE(queue.capacity(), 200000U);
  queue.batch_written();
  ASSERT_TRUE(queue.start_batch());
  queue.batch_written();
  EXPECT_LE(queue.capacity(), empty);  // nothing left to write: no buffer held
  ASSERT_TRUE(queue.push(std::string(100000, 'c') + "\n"));
  queue.clear();
  EXPECT_LE(queue.capacity(), empty);
}

}  // namespace
