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
  EXPECT_EQ(escape_text("\x1b[2J\r\n\t\x7f"), "\\x1b[2J\\r\\n\t\\x7f");
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

TEST(EscapeText, C1ControlsBecomeHexBytes) {
  EXPECT_EQ(escape_text("\xc2\x9b"
                        "2J"),
            "\\xc2\\x9b2J");                         // U+009B, ESC [ on some terminals
  EXPECT_EQ(escape_text("\xc2\x85"), "\\xc2\\x85");  // U+0085, NEL
  EXPECT_EQ(escape_text("\xc2\xa0"), "\xc2\xa0");    // U+00A0 is past them
}

TEST(EscapeText, WithinALengthNeverCuttingAnEscapeOrACharacter) {
  using forkd::common::escape_text_within;
  EXPECT_EQ(escape_text_within("abcdef", 6), "abcdef");
  EXPECT_EQ(escape_text_within("abcdefgh", 6), "abcdef [2 more bytes]");
  EXPECT_EQ(escape_text_within("abcd\x1b[0m", 6), "abcd [4 more bytes]");
  EXPECT_EQ(escape_text_within("abcde\xc3\xa9", 6), "abcde [2 more bytes]");
  EXPECT_EQ(escape_text_within("a\\b", 6), "a\\b");  // a backslash stays one byte
  const std::string flood(std::size_t{1} << 20, '\x1b');
  const std::string shown = escape_text_within(flood, 16384);
  EXPECT_EQ(shown.substr(0, 8), "\\x1b\\x1b");
  EXPECT_EQ(shown, std::string(shown.substr(0, 16384)) + " [" +
                       std::to_string((std::size_t{1} << 20) - 4096) + " more bytes]");
}

}  // namespace
