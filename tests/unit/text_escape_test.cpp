#include "common/text_escape.hpp"

#include <gtest/gtest.h>

#include <string>

namespace {

using forkd::common::escape_text;

TEST(EscapeText, KeepsPrintableTextAndValidUtf8) {
  EXPECT_EQ(escape_text("hello, world"), "hello, world");
  EXPECT_EQ(escape_text("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"),
            "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80");
  EXPECT_EQ(escape_text("a\\b"), "a\\b");
  EXPECT_EQ(escape_text("a\\b", true), "a\\\\b");
}

TEST(EscapeText, ControlCharactersBecomeVisible) {
  EXPECT_EQ(escape_text("\x1b[2J\r\n\t\x7f"), "\\x1b[2J\\r\\n\\t\\x7f");
  EXPECT_EQ(escape_text(std::string("a\0b", 3)), "a\\x00b");
}

TEST(EscapeText, InvalidUtf8BecomesHexBytes) {
  EXPECT_EQ(escape_text("\xff"), "\\xff");
  EXPECT_EQ(escape_text("\xc3"), "\\xc3");                             // truncated
  EXPECT_EQ(escape_text("\xc0\xaf"), "\\xc0\\xaf");                    // overlong '/'
  EXPECT_EQ(escape_text("\xed\xa0\x80"), "\\xed\\xa0\\x80");           // surrogate
  EXPECT_EQ(escape_text("\xf4\x90\x80\x80"), "\\xf4\\x90\\x80\\x80");  // past U+10FFFF
  EXPECT_EQ(escape_text("\x80x"), "\\x80x");                           // stray continuation byte
}

}  // namespace
