// Decimal numbers read from the environment, /proc and protocol fields: the whole text must be
// the number, within T's range. Anything else is nullopt, never a silent 0 as atoi() gives.
#pragma once

#include <charconv>
#include <optional>
#include <string_view>
#include <system_error>

namespace forkd::common {

template <typename T>
[[nodiscard]] std::optional<T> parse_decimal(std::string_view text) noexcept {
  T value{};
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (error != std::errc{} || end != text.data() + text.size()) return std::nullopt;
  return value;
}

}  // namespace forkd::common
