// Where the repository's own files (etc/, man/, fuzz/) are, for unit tests that check them: found
// from this header's place in the source tree, so a test runs from any directory.
#pragma once

#include <filesystem>

namespace forkd::test {

inline std::filesystem::path source_root() {
  return std::filesystem::path(__FILE__).parent_path().parent_path().parent_path();
}

}  // namespace forkd::test
