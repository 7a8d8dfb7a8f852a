// Counts in messages read as English: "1 worker", "3 workers".
#pragma once

#include <string>

namespace forkd::common {

[[nodiscard]] inline std::string count_of(std::size_t n, const std::string& noun) {
  return std::to_string(n) + " " + noun + (n == 1 ? "" : "s");
}

}  // namespace forkd::common
