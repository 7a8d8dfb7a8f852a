// Text that came from outside (a config value, a worker's output, a client's request) made safe
// to put in a log line or an error message: control characters and bytes that are not valid
// UTF-8 become visible escapes, so nothing written there can move the terminal's cursor, forge
// a line of its own or break a JSON log.
#pragma once

#include <string>
#include <string_view>

namespace forkd::common {

// Printable ASCII and valid UTF-8 sequences are kept; \t \n \r become "\t" "\n" "\r"; every
// other control byte (ESC, DEL, C0) and every byte of an invalid sequence becomes "\xHH".
// A backslash is kept as it is unless `escape_backslash` (then "\\"): quote() needs that to
// stay unambiguous.
[[nodiscard]] std::string escape_text(std::string_view text, bool escape_backslash = false);

}  // namespace forkd::common
