// Durations ("250ms", "30s", "5m", "24h", "1m30s") and sizes ("64KiB", "1GiB") as the
// configuration and forkctl write them, parsed and printed back. Pure text conversion:
// no policy about what range a particular setting accepts lives here.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

namespace forkd::common {

// A malformed duration or size; what() is the full user-facing reason.
class UnitError : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

// Integers with units ms, s, m, h, largest first and each at most once ("1h30m", "1m30s");
// a bare "0" is zero. Bare non-zero numbers, unknown units, negatives and values beyond
// the range of milliseconds are errors. `error` receives the reason on failure.
[[nodiscard]] std::optional<std::chrono::milliseconds> try_parse_duration(std::string_view text,
                                                                          std::string& error);
// Same, throwing UnitError.
[[nodiscard]] std::chrono::milliseconds parse_duration(std::string_view text);

// An integer with an optional binary unit: B, KiB, MiB, GiB, TiB (bare = bytes). Decimal or
// ambiguous units (KB, MB, K, ...) are refused with a hint to write the binary one.
[[nodiscard]] std::optional<std::uint64_t> try_parse_size(std::string_view text,
                                                          std::string& error);
// Same, throwing UnitError.
[[nodiscard]] std::uint64_t parse_size(std::string_view text);

// The inverse: the largest unit that represents the value exactly (90000ms -> "90s",
// 5400000ms -> "90m", 1536 -> "1536B", 1048576 -> "1MiB"); zero is "0".
// parse(format(x)) == x for every non-negative x.
[[nodiscard]] std::string format_duration(std::chrono::milliseconds duration);
[[nodiscard]] std::string format_size(std::uint64_t bytes);

// "text" with " and \ escaped, and control characters and invalid UTF-8 as \xHH (see
// escape_text), cut after 200 bytes: how error messages quote what the user wrote.
[[nodiscard]] std::string quote(std::string_view text);

}  // namespace forkd::common
