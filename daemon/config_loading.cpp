#include "daemon/config_loading.hpp"

#include "daemon/bind_takeover.hpp"
#include "worker/apps/registry.hpp"

namespace forkd::daemon {

common::Config load_daemon_config(const std::string& path) {
  common::LoadOptions options;
  options.builtin_apps.clear();
  for (const auto& app : worker::builtin_apps()) options.builtin_apps.emplace_back(app.name);
  common::Config config = common::load_config_file(path, options);
  // What only the daemon can check: whether the bind takeover it was asked for can work.
  (void)plan_bind_takeover(config);
  return config;
}

}  // namespace forkd::daemon
