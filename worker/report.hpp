// One-line diagnostics of the worker library on stderr, where the master captures them line by
// line and prefixes them with the worker. Unbuffered and allocation-free once the text exists:
// a line is one write(2), so lines of concurrent workers never interleave.
#pragma once

#include <string_view>

namespace forkd::worker {

// Writes `text` and a newline to fd 2; errors are ignored (there is nowhere left to report).
void report(std::string_view text) noexcept;

}  // namespace forkd::worker
