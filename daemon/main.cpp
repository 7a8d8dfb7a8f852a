// forkd: argv -> exit code. 0 clean stop, 64 bad command line, 78 invalid configuration,
// 1 any other failure — each failure as one stderr line naming the cause and the object.
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <iostream>

#include "common/config.hpp"
#include "common/log.hpp"
#include "common/spawner.hpp"
#include "daemon/cli.hpp"
#include "daemon/config_loading.hpp"
#include "daemon/listeners.hpp"
#include "daemon/master.hpp"

namespace {

constexpr int kExitConfig = 78;
constexpr int kExitFailure = 1;

// -c FILE, else /etc/forkd/forkd.yaml when it exists, else the embedded default.
std::pair<forkd::common::Config, std::string> load(const forkd::daemon::CliOptions& options) {
  if (options.config) return {forkd::daemon::load_daemon_config(*options.config), *options.config};
  struct stat st {};
  if (::stat(forkd::daemon::kDefaultConfigPath, &st) == 0) {
    return {forkd::daemon::load_daemon_config(forkd::daemon::kDefaultConfigPath),
            forkd::daemon::kDefaultConfigPath};
  }
  return {forkd::common::default_config(), ""};
}

// The binary a hot upgrade runs again: this path as resolved now, not /proc/self/exe, so a
// file replaced on disk is what runs next.
forkd::daemon::LaunchInfo launch_info(int argc, char** argv) {
  forkd::daemon::LaunchInfo info;
  info.argv.assign(argv, argv + argc);
  const std::string self = argc > 0 ? argv[0] : "forkd";
  if (self.find('/') != std::string::npos) {
    std::array<char, PATH_MAX> resolved{};
    if (::realpath(self.c_str(), resolved.data()) != nullptr) info.executable = resolved.data();
  } else {
    int error = 0;
    info.executable = forkd::common::find_program(self, error).value_or("");
  }
  return info;
}

int run(int argc, char** argv) {
  const std::vector<std::string> args(argv + 1, argv + argc);
  const auto outcome = forkd::daemon::parse_command_line(args);
  if (!outcome.options) {
    (void)std::fputs(outcome.out.c_str(), stdout);
    (void)std::fputs(outcome.err.c_str(), stderr);
    return outcome.exit_code;
  }
  const auto& options = *outcome.options;
  forkd::common::Config config;
  std::string path;
  try {
    std::tie(config, path) = load(options);
  } catch (const forkd::common::ConfigError& e) {
    for (const auto& issue : e.issues()) std::cerr << issue.to_string() << '\n';
    return kExitConfig;
  }
  if (options.log_level) {
    // The command line accepted only valid names.
    config.log.level =
        forkd::common::parse_log_level(*options.log_level).value_or(config.log.level);
  }
  if (options.check_config) {
    std::cout << "ok\n";
    return 0;
  }
  if (options.print_config) {
    std::cout << forkd::common::to_yaml(config);
    return 0;
  }
  forkd::common::log::configure(config.log);
  try {
    forkd::daemon::Master master(std::move(config), path, launch_info(argc, argv));
    return master.run();
  } catch (const forkd::daemon::ListenError& e) {
    std::cerr << "forkd: " << e.what() << '\n';
  } catch (const forkd::daemon::PidfileError& e) {
    std::cerr << "forkd: " << e.what() << '\n';
  } catch (const std::exception& e) {
    std::cerr << "forkd: " << e.what() << '\n';
  }
  return kExitFailure;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::cerr << "forkd: " << e.what() << '\n';
    return kExitFailure;
  }
}
