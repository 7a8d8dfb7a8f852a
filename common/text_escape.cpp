#include "common/text_escape.hpp"

#include <algorithm>
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

// U+0080..U+009F, in UTF-8 "\xc2\x80".."\xc2\x9f".
bool is_c1_control(std::string_view sequence) {
  return sequence.size() == 2 && static_cast<std::uint8_t>(sequence[0]) == 0xC2 &&
         static_cast<std::uint8_t>(sequence[1]) <= 0x9F;
}

// Escapes from the start of `text` while the result stays within max_bytes; returns how many
// bytes of `text` it took.
std::size_t escape_into(std::string& out, std::string_view text, bool escape_backslash,
                        std::size_t max_bytes) {
  std::string piece;  // what one character becomes
  std::size_t taken = 0;
  while (taken < text.size()) {
    const std::string_view rest = text.substr(taken);
    const auto c = static_cast<std::uint8_t>(rest.front());
    std::size_t used = 1;
    piece.clear();
    if (c >= 0x80) {
      used = utf8_sequence(rest);
      if (used == 0) {
        append_hex(piece, c);
        used = 1;
      } else if (is_c1_control(rest.substr(0, used))) {
        for (const char b : rest.substr(0, used)) append_hex(piece, static_cast<std::uint8_t>(b));
      } else {
        piece.append(rest.substr(0, used));
      }
    } else if (c == '\t') {
      piece = "\t";  // harmless in a line, and how Java indents a stack trace
    } else if (c == '\n') {
      piece = "\\n";
    } else if (c == '\r') {
      piece = "\\r";
    } else if (c < 0x20 || c == 0x7F) {
      append_hex(piece, c);
    } else if (c == '\\' && escape_backslash) {
      piece = "\\\\";
    } else {
      piece = static_cast<char>(c);
    }
    if (out.size() + piece.size() > max_bytes) break;
    out += piece;
    taken += used;
  }
  return taken;
}

}  // namespace

std::string escape_text(std::string_view text, bool escape_backslash) {
  std::string out;
  out.reserve(text.size());
  (void)escape_into(out, text, escape_backslash, std::string::npos);
  return out;
}

std::string escape_text_within(std::string_view text, std::size_t max_bytes) {
  std::string out;
  out.reserve(std::min(text.size(), max_bytes));
  const std::size_t taken = escape_into(out, text, false, max_bytes);
  if (taken < text.size()) out += " [" + std::to_string(text.size() - taken) + " more bytes]";
  return out;
}

}  // namespace forkd::common
