#include "daemon/cli.hpp"

#include <CLI/CLI.hpp>
#include <algorithm>

namespace forkd::daemon {

CliOutcome parse_command_line(const std::vector<std::string>& args) {
  CLI::App app{"forkd — pre-forking cluster supervisor", "forkd"};
  CliOptions options;
  std::string config;
  std::string level;
  bool version = false;
  app.add_option("-c,--config", config,
                 std::string("configuration file (default ") + kDefaultConfigPath +
                     "; the embedded default when that does not exist)");
  app.add_flag("-t,--check-config", options.check_config,
               "validate the configuration, print ok or the errors");
  app.add_flag("--print-config", options.print_config, "print the effective configuration as YAML");
  app.add_option("--log-level", level, "override log.level")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error"}));
  app.add_flag("-V,--version", version, "print the version");

  std::vector<std::string> reversed(args.rbegin(), args.rend());
  CliOutcome outcome;
  try {
    app.parse(reversed);
  } catch (const CLI::CallForHelp&) {
    outcome.out = app.help();
    return outcome;
  } catch (const CLI::ParseError& e) {
    outcome.exit_code = 64;
    outcome.err = std::string("forkd: ") + e.what() + "\nRun 'forkd --help' for usage.\n";
    return outcome;
  }
  if (version) {
    outcome.out = std::string("forkd ") + FORKD_VERSION + "\n";
    return outcome;
  }
  if (app.count("--config") > 0) options.config = config;
  if (!level.empty()) options.log_level = level;
  outcome.options = options;
  return outcome;
}

}  // namespace forkd::daemon
