// Text that came from outside (a config value, a worker's output, a client's request) made safe
// to put in a log line or an error message: control characters and bytes that are not valid
// UTF-8 become visible escapes, so nothing written there can move the terminal's cursor, forge
// a line of its own or break a JSON log.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace forkd::common {

// Printable ASCII, tab and valid UTF-8 sequences are kept; \n \r become "\n" "\r"; every
// other control byte (ESC, DEL, C0), the C1 controls U+0080..U+009F (some terminals obey U+009B
// as ESC [) and every byte of an invalid sequence become "\xHH".
// A backslash is kept as it is unless `escape_backslash` (then "\\"): quote() needs that to
// stay unambiguous.
[[nodiscard]] std::string escape_text(std::string_view text, bool escape_backslash = false);

// escape_text() of `text`, at most `max_bytes` of it (never cutting an escape or a character),
// then " [N more bytes]" when N bytes of `text` were left out: for a log line whose length
// someone outside chooses.
[[nodiscard]] std::string escape_text_within(std::string_view text, std::size_t max_bytes);

}  // namespace forkd::common
