// Whether a worker program can load the bind takeover library: a dynamically linked ELF file
// (it has an interpreter, PT_INTERP) runs ld.so, which honours LD_PRELOAD; a static one never
// does. A script is judged by its interpreter (#!), as execve would run it.
#pragma once

#include <string>
#include <string_view>

namespace forkd::daemon {

struct ProgramLinkage {
  enum class Kind { dynamic, static_elf, script, unknown };
  Kind kind = Kind::unknown;
  std::string interpreter;  // script: the #! program
  std::string detail;       // unknown: why ("not an ELF file", "truncated ELF header")
};

// Pure: the first bytes of a file (at least the ELF header and its program headers, or the
// #! line).
[[nodiscard]] ProgramLinkage linkage_of(std::string_view head);

// Reads `path` (following #! up to four levels) and says what finally runs. `path` is named
// by the caller's messages; `resolved` is set to the file that was judged.
[[nodiscard]] ProgramLinkage program_linkage(const std::string& path, std::string& resolved);

}  // namespace forkd::daemon
