// forkd's command line (SPEC "forkd command line"), parsed into options. Pure: no I/O beyond
// the help/version text it returns for main() to print.
#pragma once

#include <optional>
#include <string>
#include <vector>

namespace forkd::daemon {

inline constexpr const char* kDefaultConfigPath = "/etc/forkd/forkd.yaml";

struct CliOptions {
  std::optional<std::string> config;  // -c FILE
  bool check_config = false;
  bool print_config = false;
  std::optional<std::string> log_level;
};

struct CliOutcome {
  std::optional<CliOptions> options;  // run with these, or else:
  int exit_code = 0;                  // exit at once with this code (0 help/version, 64 usage)
  std::string out;                    // text for stdout (help, version)
  std::string err;                    // text for stderr (usage error)
};

[[nodiscard]] CliOutcome parse_command_line(const std::vector<std::string>& args);

}  // namespace forkd::daemon
