#include "common/text_escape.hpp"

#include <array>
#include <cstdint>

namespace forkd::common {

namespace {

// Length of the valid UTF-8 sequence at the start of `text`, or 0 when it is not one (stray
// continuation byte, truncated sequence, overlong form, surrogate, past U+10FFFF).
std::size_t utf8_sequence(std::string_view text) {
  const auto byte = [&](std::size_t i) { return static_cast<std::uint8_t>(text[i]); };
  const std::uint8_t lead = byte(0);
  std::size_t length = 0;
  std::uint32_t code = 0;
  std::uint32_t least = 0;
  if (lead >= 0xC2 && lead <= 0xDF) {
    length = 2, code = lead & 0x1FU, least = 0x80;
  } else if (lead >= 0xE0 && lead <= 0xEF) {
    length = 3, code = lead & 0x0FU, least = 0x800;
  } else if (lead >= 0xF0 && lead <= 0xF4) {
    length = 4, code = lead & 0x07U, least = 0x10000;
  } else {
    return 0;
  }
  if (text.size() < length) return 0;
  for (std::size_t i = 1; i < length; ++i) {
    if ((byte(i) & 0xC0U) != 0x80U) return 0;
    code = (code << 6U) | (byte(i) & 0x3FU);
  }
  if (code < least || code > 0x10FFFF || (code >= 0xD800 && code <= 0xDFFF)) return 0;
  return length;
}

void append_hex(std::string& out, std::uint8_t value) {
  constexpr std::array<char, 16> kDigits = {'0', '1', '2', '3', '4', '5', '6', '7',
                                            '8', '9', 'a', 'b', 'c', 'd', 'e', 'f'};
  out += "\\x";
  out += kDigits[value >> 4U];
  out += kDigits[value & 0x0FU];
}

}  // namespace

std::string escape_text(std::string_view text, bool escape_backslash) {
  std::string out;
  out.reserve(text.size());
  while (!text.empty()) {
    const auto c = static_cast<std::uint8_t>(text.front());
    std::size_t used = 1;
    if (c >= 0x80) {
      used = utf8_sequence(text);
      if (used == 0) {
        append_hex(out, c);
        used = 1;
      } else {
        out.append(text.substr(0, used));
      }
    } else if (c == '\t') {
      out += "\\t";
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c < 0x20 || c == 0x7F) {
      append_hex(out, c);
    } else if (c == '\\' && escape_backslash) {
      out += "\\\\";
    } else {
      out += static_cast<char>(c);
    }
    text.remove_prefix(used);
  }
  return out;
}

}  // namespace forkd::common
