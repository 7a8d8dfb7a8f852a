#include "daemon/reload_plan.hpp"

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace forkd::daemon {

namespace {

// "a.b.c" -> scalar text, from the printed config, so every key is compared the same way.
void flatten(const YAML::Node& node, const std::string& prefix,
             std::map<std::string, std::string>& out) {
  if (node.IsMap()) {
    for (const auto& kv : node) {
      const auto key = kv.first.as<std::string>();
      flatten(kv.second, prefix.empty() ? key : fmt::format("{}.{}", prefix, key), out);
    }
  } else if (node.IsSequence()) {
    YAML::Emitter e;
    e << YAML::Flow << node;
    out[prefix] = e.c_str();
  } else if (node.IsScalar()) {
    out[prefix] = node.Scalar();
  } else {
    out[prefix] = "";
  }
}

// One key's value, flattened under its section ("worker.env.PATH" for a map-valued key).
std::map<std::string, std::string> flat_key(const common::Config& config,
                                            const common::ConfigKey& key) {
  std::map<std::string, std::string> out;
  const std::string text = common::print_config_key(config, key);
  if (text.empty()) return out;
  const auto dot = key.path.rfind('.');
  flatten(YAML::Load(text), dot == std::string::npos ? "" : key.path.substr(0, dot), out);
  return out;
}

// One line per section whose changed keys the running master cannot apply, in table order.
std::vector<std::string> restart_notes(const std::vector<const common::ConfigKey*>& changed) {
  std::vector<std::string> notes;
  for (const common::ConfigKey& key : common::config_keys()) {
    if (key.effect == common::KeyEffect::on_reload ||
        std::find(changed.begin(), changed.end(), &key) == changed.end()) {
      continue;
    }
    const auto dot = key.path.find('.');
    const std::string subject =
        dot == std::string::npos ? key.path : key.path.substr(0, dot) + ".*";
    const std::string_view when =
        key.effect == common::KeyEffect::after_restart ? "a restart" : "a restart or hot upgrade";
    std::string note = fmt::format("{} changes take effect after {}", subject, when);
    if (std::find(notes.begin(), notes.end(), note) == notes.end())
      notes.push_back(std::move(note));
  }
  return notes;
}

}  // namespace

bool same_socket(const common::ListenConfig& a, const common::ListenConfig& b) {
  return a.kind == b.kind && a.host == b.host && a.port == b.port && a.path == b.path &&
         a.reuseport == b.reuseport;
}

ReloadPlan plan_reload(const common::Config& current, const common::Config& next,
                       unsigned current_workers, unsigned next_workers) {
  ReloadPlan plan;
  plan.workers_from = current_workers;
  plan.workers_to = next_workers;
  for (const auto& n : next.listen) {
    const auto old = std::find_if(current.listen.begin(), current.listen.end(),
                                  [&](const auto& c) { return same_socket(c, n); });
    const bool kept = old != current.listen.end();
    plan.kept_from.push_back(
        kept ? std::optional<std::size_t>(static_cast<std::size_t>(old - current.listen.begin()))
             : std::nullopt);
    (kept ? plan.listeners_kept : plan.listeners_added).push_back(n.address);
  }
  for (const auto& c : current.listen) {
    const bool kept = std::any_of(next.listen.begin(), next.listen.end(),
                                  [&](const auto& n) { return same_socket(c, n); });
    if (!kept) plan.listeners_removed.push_back(c.address);
  }
  // Key by key through the table, in its order; a map-valued key entry by entry.
  std::vector<const common::ConfigKey*> changed;
  for (const common::ConfigKey& key : common::config_keys()) {
    if (key.section || key.path == "listen" || key.path.starts_with("listen.")) continue;
    const auto before = flat_key(current, key);
    const auto after = flat_key(next, key);
    if (before == after) continue;
    changed.push_back(&key);
    for (const auto& [path, value] : after) {
      const auto it = before.find(path);
      if (it == before.end()) {
        plan.changed_keys.push_back(fmt::format("{}: (unset) -> {}", path, value));
      } else if (it->second != value) {
        plan.changed_keys.push_back(fmt::format("{}: {} -> {}", path, it->second, value));
      }
    }
    for (const auto& [path, value] : before) {
      if (after.find(path) == after.end()) {
        plan.changed_keys.push_back(fmt::format("{}: {} -> (unset)", path, value));
      }
    }
  }
  plan.needs_restart = restart_notes(changed);
  return plan;
}

std::vector<std::string> ReloadPlan::describe() const {
  std::vector<std::string> lines;
  for (const auto& a : listeners_added) lines.push_back("listener added: " + a);
  for (const auto& r : listeners_removed) lines.push_back("listener removed: " + r);
  if (workers_from != workers_to) {
    lines.push_back("workers: " + std::to_string(workers_from) + " -> " +
                    std::to_string(workers_to));
  }
  for (const auto& k : changed_keys) {
    if (!k.starts_with("workers:")) lines.push_back(k);
  }
  if (lines.empty()) lines.emplace_back("no configuration change (workers are still replaced)");
  return lines;
}

}  // namespace forkd::daemon
