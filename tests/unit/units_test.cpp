#include "common/units.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <limits>
#include <string>

namespace {

using forkd::common::format_duration;
using forkd::common::format_size;
using forkd::common::parse_duration;
using forkd::common::parse_size;
using forkd::common::try_parse_duration;
using forkd::common::try_parse_size;
using forkd::common::UnitError;
using std::chrono::milliseconds;

std::string duration_error(const std::string& text) {
  std::string error;
  EXPECT_FALSE(try_parse_duration(text, error).has_value()) << text;
  return error;
}

std::string size_error(const std::string& text) {
  std::string error;
  EXPECT_FALSE(try_parse_size(text, error).has_value()) << text;
  return error;
}

TEST(UnitsDuration, ParsesEveryUnit) {
  EXPECT_EQ(parse_duration("250ms"), milliseconds(250));
  EXPECT_EQ(parse_duration("30s"), milliseconds(30'000));
  EXPECT_EQ(parse_duration("5m"), milliseconds(300'000));
  EXPECT_EQ(parse_duration("24h"), milliseconds(86'400'000));
  EXPECT_EQ(parse_duration("0s"), milliseconds(0));
}

TEST(UnitsDuration, ParsesCompoundValuesLargestFirst) {
  EXPECT_EQ(parse_duration("1m30s"), milliseconds(90'000));
  EXPECT_EQ(parse_duration("1h30m"), milliseconds(5'400'000));
  EXPECT_EQ(parse_duration("1h2m3s4ms"), milliseconds(3'723'004));
  EXPECT_NE(duration_error("30s1m").find("largest to smallest"), std::string::npos);
  EXPECT_NE(duration_error("1s1s").find("largest to smallest"), std::string::npos);
}

TEST(UnitsDuration, BareZeroIsZeroButOtherBareNumbersNeedAUnit) {
  EXPECT_EQ(parse_duration("0"), milliseconds(0));
  EXPECT_EQ(parse_duration("000"), milliseconds(0));
  EXPECT_EQ(duration_error("30"),
            "a duration needs a unit, got \"30\" (write 30ms, 30s, 30m or 30h)");
  EXPECT_NE(duration_error("1m30").find("missing unit after \"30\""), std::string::npos);
}

TEST(UnitsDuration, RejectsGarbageWithAClearMessage) {
  EXPECT_EQ(duration_error("abc"), "expected a duration like 250ms, 30s, 5m or 24h, got \"abc\"");
  EXPECT_EQ(duration_error(""), "expected a duration like 250ms, 30s, 5m or 24h, got \"\"");
  EXPECT_EQ(duration_error("30sec"), "unknown unit \"sec\" in \"30sec\" (use ms, s, m or h)");
  EXPECT_NE(duration_error("-1s").find("cannot be negative"), std::string::npos);
  EXPECT_NE(duration_error("1.5s").find("fractions"), std::string::npos);
  EXPECT_FALSE(duration_error("30 s").empty());
  EXPECT_FALSE(duration_error("5d").empty());
  EXPECT_THROW((void)parse_duration("abc"), UnitError);
}

TEST(UnitsDuration, OverflowIsAnError) {
  EXPECT_NE(duration_error("99999999999999999999s").find("too large"), std::string::npos);
  EXPECT_NE(duration_error("9999999999999999h").find("too large"), std::string::npos);
  EXPECT_NE(duration_error("2562047788015h59m").find("too large"), std::string::npos);
  const auto max = std::numeric_limits<std::int64_t>::max();
  EXPECT_EQ(parse_duration(std::to_string(max) + "ms"), milliseconds(max));
}

TEST(UnitsDuration, FormatsWithTheLargestExactUnit) {
  EXPECT_EQ(format_duration(milliseconds(0)), "0");
  EXPECT_EQ(format_duration(milliseconds(250)), "250ms");
  EXPECT_EQ(format_duration(milliseconds(1500)), "1500ms");
  EXPECT_EQ(format_duration(milliseconds(30'000)), "30s");
  EXPECT_EQ(format_duration(milliseconds(90'000)), "90s");
  EXPECT_EQ(format_duration(milliseconds(300'000)), "5m");
  EXPECT_EQ(format_duration(milliseconds(5'400'000)), "90m");
  EXPECT_EQ(format_duration(milliseconds(86'400'000)), "24h");
}

TEST(UnitsDuration, FormatRoundTrips) {
  for (std::int64_t ms : {std::int64_t{0}, std::int64_t{1}, std::int64_t{999}, std::int64_t{1000},
                          std::int64_t{61'000}, std::int64_t{3'600'000}, std::int64_t{3'600'001},
                          std::numeric_limits<std::int64_t>::max()}) {
    EXPECT_EQ(parse_duration(format_duration(milliseconds(ms))), milliseconds(ms)) << ms;
  }
}

TEST(UnitsSize, ParsesBinaryUnitsAndBareBytes) {
  EXPECT_EQ(parse_size("0"), 0U);
  EXPECT_EQ(parse_size("4096"), 4096U);
  EXPECT_EQ(parse_size("100B"), 100U);
  EXPECT_EQ(parse_size("64KiB"), 64U * 1024);
  EXPECT_EQ(parse_size("512MiB"), 512ULL << 20);
  EXPECT_EQ(parse_size("1GiB"), 1ULL << 30);
  EXPECT_EQ(parse_size("2TiB"), 2ULL << 40);
}

TEST(UnitsSize, RejectsDecimalUnitsWithAHint) {
  EXPECT_EQ(size_error("64KB"),
            "size unit \"KB\" in \"64KB\" is ambiguous: sizes use binary units, write \"64KiB\"");
  EXPECT_NE(size_error("512MB").find("write \"512MiB\""), std::string::npos);
  EXPECT_NE(size_error("1G").find("write \"1GiB\""), std::string::npos);
  EXPECT_NE(size_error("1kib").find("write \"1KiB\""), std::string::npos);
}

TEST(UnitsSize, RejectsGarbageAndOverflow) {
  EXPECT_EQ(size_error("abc"), "expected a size like 64KiB, 512MiB or 1GiB, got \"abc\"");
  EXPECT_EQ(size_error(""), "expected a size like 64KiB, 512MiB or 1GiB, got \"\"");
  EXPECT_NE(size_error("1XB").find("unknown unit \"XB\""), std::string::npos);
  EXPECT_NE(size_error("-1KiB").find("cannot be negative"), std::string::npos);
  EXPECT_NE(size_error("1.5MiB").find("fractions"), std::string::npos);
  EXPECT_NE(size_error("16777216TiB").find("too large"), std::string::npos);
  EXPECT_NE(size_error("99999999999999999999").find("too large"), std::string::npos);
  EXPECT_EQ(parse_size("16777215TiB"), 16777215ULL << 40);
  EXPECT_THROW((void)parse_size("1 KiB"), UnitError);
}

TEST(UnitsSize, FormatsWithTheLargestExactUnit) {
  EXPECT_EQ(format_size(0), "0");
  EXPECT_EQ(format_size(512), "512B");
  EXPECT_EQ(format_size(1536), "1536B");
  EXPECT_EQ(format_size(1024), "1KiB");
  EXPECT_EQ(format_size(std::uint64_t{1536} * 1024), "1536KiB");
  EXPECT_EQ(format_size(1048576), "1MiB");
  EXPECT_EQ(format_size(1ULL << 30), "1GiB");
  EXPECT_EQ(format_size(3ULL << 40), "3TiB");
}

TEST(UnitsSize, FormatRoundTrips) {
  for (std::uint64_t bytes :
       {std::uint64_t{0}, std::uint64_t{1}, std::uint64_t{1023}, std::uint64_t{1} << 20,
        (std::uint64_t{1} << 20) + 1, std::numeric_limits<std::uint64_t>::max()}) {
    EXPECT_EQ(parse_size(format_size(bytes)), bytes) << bytes;
  }
}

}  // namespace
