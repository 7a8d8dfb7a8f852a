#include "common/units.hpp"

#include <array>
#include <cctype>
#include <limits>

#include "common/text_escape.hpp"

namespace forkd::common {
namespace {

struct Unit {
  std::string_view name;
  std::uint64_t factor;
};

// Largest first: the formatters pick the first exact one; the duration parser uses the
// position as the rank that must strictly decrease in compound values.
constexpr std::array<Unit, 4> kDurationUnits{
    {{"h", 3'600'000}, {"m", 60'000}, {"s", 1'000}, {"ms", 1}}};
constexpr std::array<Unit, 5> kSizeUnits{{{"TiB", std::uint64_t{1} << 40},
                                          {"GiB", std::uint64_t{1} << 30},
                                          {"MiB", std::uint64_t{1} << 20},
                                          {"KiB", std::uint64_t{1} << 10},
                                          {"B", 1}}};
// Written by people used to decimal or shorthand units; each maps to the binary unit meant.
constexpr std::array<Unit, 12> kAmbiguousSizeUnits{{{"k", 1},
                                                    {"kb", 1},
                                                    {"m", 2},
                                                    {"mb", 2},
                                                    {"g", 3},
                                                    {"gb", 3},
                                                    {"t", 4},
                                                    {"tb", 4},
                                                    {"ki", 1},
                                                    {"mi", 2},
                                                    {"gi", 3},
                                                    {"ti", 4}}};
constexpr std::array<std::string_view, 5> kBinaryNames{"B", "KiB", "MiB", "GiB", "TiB"};

bool is_digit(char c) {
  return c >= '0' && c <= '9';
}
bool is_alpha(char c) {
  return std::isalpha(static_cast<unsigned char>(c)) != 0;
}

std::string lowercase(std::string_view text) {
  std::string out(text);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// Reads the decimal digits at `pos`; false on overflow of uint64.
bool read_number(std::string_view text, std::size_t& pos, std::uint64_t& value) {
  value = 0;
  constexpr auto kMax = std::numeric_limits<std::uint64_t>::max();
  while (pos < text.size() && is_digit(text[pos])) {
    const auto digit = static_cast<std::uint64_t>(text[pos] - '0');
    if (value > (kMax - digit) / 10) return false;
    value = value * 10 + digit;
    ++pos;
  }
  return true;
}

std::size_t skip_digits(std::string_view text, std::size_t pos) {
  while (pos < text.size() && is_digit(text[pos])) ++pos;
  return pos;
}

std::string duration_example() {
  return "expected a duration like 250ms, 30s, 5m or 24h";
}
std::string size_example() {
  return "expected a size like 64KiB, 512MiB or 1GiB";
}

}  // namespace

std::optional<std::chrono::milliseconds> try_parse_duration(std::string_view text,
                                                            std::string& error) {
  const std::string got = quote(text);
  if (text.empty() || (text[0] != '-' && !is_digit(text[0]))) {
    error = duration_example() + ", got " + got;
    return std::nullopt;
  }
  if (text[0] == '-') {
    error = "a duration cannot be negative, got " + got;
    return std::nullopt;
  }
  if (text.find('.') != std::string_view::npos) {
    error = "fractions are not supported in durations, got " + got + " (write 1500ms, not 1.5s)";
    return std::nullopt;
  }
  if (skip_digits(text, 0) == text.size()) {
    if (text.find_first_not_of('0') == std::string_view::npos) {
      return std::chrono::milliseconds{0};
    }
    error = "a duration needs a unit, got " + got + " (write " + std::string(text) + "ms, " +
            std::string(text) + "s, " + std::string(text) + "m or " + std::string(text) + "h)";
    return std::nullopt;
  }

  constexpr auto kMax = static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max());
  std::uint64_t total = 0;
  std::size_t pos = 0;
  std::size_t next_rank = 0;  // index into kDurationUnits of the largest unit still allowed
  while (pos < text.size()) {
    if (!is_digit(text[pos])) {
      error = duration_example() + ", got " + got;
      return std::nullopt;
    }
    const std::size_t number_start = pos;
    std::uint64_t value = 0;
    if (!read_number(text, pos, value)) {
      error = "duration " + got + " is too large";
      return std::nullopt;
    }
    const std::size_t unit_start = pos;
    while (pos < text.size() && is_alpha(text[pos])) ++pos;
    const std::string_view unit = text.substr(unit_start, pos - unit_start);
    if (unit.empty()) {
      error = "missing unit after " + quote(text.substr(number_start, pos - number_start)) +
              " in " + got + " (use ms, s, m or h)";
      return std::nullopt;
    }
    std::size_t rank = kDurationUnits.size();
    for (std::size_t i = 0; i < kDurationUnits.size(); ++i) {
      if (kDurationUnits[i].name == unit) rank = i;
    }
    if (rank == kDurationUnits.size()) {
      error = "unknown unit " + quote(unit) + " in " + got + " (use ms, s, m or h)";
      return std::nullopt;
    }
    if (rank < next_rank) {
      error = "units in " + got + " must go from largest to smallest, each once (like 1m30s)";
      return std::nullopt;
    }
    next_rank = rank + 1;
    const std::uint64_t factor = kDurationUnits[rank].factor;
    if (value > kMax / factor || total > kMax - value * factor) {
      error = "duration " + got + " is too large";
      return std::nullopt;
    }
    total += value * factor;
  }
  return std::chrono::milliseconds{static_cast<std::int64_t>(total)};
}

std::chrono::milliseconds parse_duration(std::string_view text) {
  std::string error;
  auto value = try_parse_duration(text, error);
  if (!value) throw UnitError(error);
  return *value;
}

std::optional<std::uint64_t> try_parse_size(std::string_view text, std::string& error) {
  const std::string got = quote(text);
  if (!text.empty() && text[0] == '-') {
    error = "a size cannot be negative, got " + got;
    return std::nullopt;
  }
  std::size_t pos = 0;
  std::uint64_t value = 0;
  const bool fits = read_number(text, pos, value);
  if (pos == 0) {
    error = size_example() + ", got " + got;
    return std::nullopt;
  }
  if (!fits) {
    error = "size " + got + " is too large";
    return std::nullopt;
  }
  const std::string digits(text.substr(0, pos));
  const std::string_view unit = text.substr(pos);
  if (!unit.empty() && unit[0] == '.') {
    error = "fractions are not supported in sizes, got " + got + " (write 1536KiB, not 1.5MiB)";
    return std::nullopt;
  }
  if (unit.empty()) return value;
  for (const Unit& known : kSizeUnits) {
    if (known.name == unit) {
      if (value > std::numeric_limits<std::uint64_t>::max() / known.factor) {
        error = "size " + got + " is too large";
        return std::nullopt;
      }
      return value * known.factor;
    }
  }
  const std::string lower = lowercase(unit);
  for (const Unit& known : kSizeUnits) {
    if (lowercase(known.name) == lower) {
      error = "size unit " + quote(unit) + " is misspelled in " + got + ": write " +
              quote(digits + std::string(known.name));
      return std::nullopt;
    }
  }
  for (const Unit& ambiguous : kAmbiguousSizeUnits) {
    if (ambiguous.name == lower) {
      const std::string meant = digits + std::string(kBinaryNames[ambiguous.factor]);
      error = "size unit " + quote(unit) + " in " + got +
              " is ambiguous: sizes use binary units, write " + quote(meant);
      return std::nullopt;
    }
  }
  error = "unknown unit " + quote(unit) + " in " + got + " (use B, KiB, MiB, GiB or TiB)";
  return std::nullopt;
}

std::uint64_t parse_size(std::string_view text) {
  std::string error;
  auto value = try_parse_size(text, error);
  if (!value) throw UnitError(error);
  return *value;
}

std::string format_duration(std::chrono::milliseconds duration) {
  const std::int64_t count = duration.count();
  if (count == 0) return "0";
  // Negative values never come from the parser; print them readably all the same.
  const bool negative = count < 0;
  const std::uint64_t magnitude = negative ? std::uint64_t{0} - static_cast<std::uint64_t>(count)
                                           : static_cast<std::uint64_t>(count);
  for (const Unit& unit : kDurationUnits) {
    if (magnitude % unit.factor == 0) {
      return (negative ? "-" : "") + std::to_string(magnitude / unit.factor) +
             std::string(unit.name);
    }
  }
  return std::to_string(count) + "ms";  // unreachable: ms always divides
}

std::string format_size(std::uint64_t bytes) {
  if (bytes == 0) return "0";
  for (const Unit& unit : kSizeUnits) {
    if (bytes % unit.factor == 0)
      return std::to_string(bytes / unit.factor) + std::string(unit.name);
  }
  return std::to_string(bytes) + "B";  // unreachable: B always divides
}

std::string quote(std::string_view text) {
  // A message quotes what was written, not a whole 100 KB value.
  constexpr std::size_t kShown = 200;
  std::string out = "\"";
  for (char c : escape_text(text.substr(0, kShown), true)) {
    if (c == '"') out += '\\';
    out += c;
  }
  out += '"';
  if (text.size() > kShown) out += "... (" + std::to_string(text.size()) + " bytes)";
  return out;
}

}  // namespace forkd::common
