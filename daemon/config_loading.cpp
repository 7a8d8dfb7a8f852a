#include "daemon/config_loading.hpp"

#include "worker/apps/registry.hpp"

namespace forkd::daemon {

common::Config load_daemon_config(const std::string& path) {
  common::LoadOptions options;
  options.builtin_apps.clear();
  for (const auto& app : worker::builtin_apps()) options.builtin_apps.emplace_back(app.name);
  return common::load_config_file(path, options);
}

}  // namespace forkd::daemon
