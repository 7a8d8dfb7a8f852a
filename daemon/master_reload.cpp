// Reload (SIGHUP, forkctl reload): re-read and validate the file; an invalid one changes
// nothing. A valid one is applied as a new generation — kept listeners keep their socket, new
// ones are bound first — and every worker is replaced by a rolling restart. If the new
// generation cannot get ready, the old configuration and listeners come back and the old
// workers serve on. Reloads that arrive meanwhile are coalesced into one that follows.
#include <spdlog/logger.h>
#include <nlohmann/json.hpp>

#include "common/log.hpp"
#include "common/plural.hpp"
#include "common/sd_notify.hpp"
#include "daemon/config_loading.hpp"
#include "daemon/master.hpp"
#include "daemon/reload_plan.hpp"
#include "daemon/request_fields.hpp"

namespace forkd::daemon {

namespace {

std::string join(const std::vector<common::ConfigIssue>& issues) {
  std::string text;
  for (const auto& issue : issues) {
    if (!text.empty()) text += "; ";
    text += issue.to_string();
  }
  return text;
}

}  // namespace

void Master::cmd_reload(const nlohmann::json& request, const ControlCaller& /*caller*/,
                        Respond& respond) {
  const bool dry_run = flag_field(request, "dry_run");  // throws on a wrong type: answered then
  request_reload(std::move(respond), dry_run);
}

void Master::request_reload(Respond respond, bool dry_run) {
  if (dry_run) {
    dry_run_reload(respond);
    return;
  }
  if (pool_.stopping()) {
    if (respond) respond({{"ok", false}, {"error", "forkd is stopping"}});
    return;
  }
  if (respond) queued_reload_replies_.push_back(std::move(respond));
  if (reload_ || pool_.rollout_active()) {
    // One reload runs at a time; everything asked meanwhile becomes one more reload after it.
    if (!reload_queued_) log_->info("reload queued behind the rollout in progress");
    reload_queued_ = true;
    return;
  }
  reload_queued_ = false;
  start_reload();
}

void Master::dry_run_reload(const Respond& respond) {
  if (config_path_.empty()) {
    respond({{"ok", false},
             {"error", "no configuration file to reload: forkd runs on its embedded default"}});
    return;
  }
  try {
    const common::Config next = load_daemon_config(config_path_);
    // Read as a reload would, kept by nothing: a dry run changes nothing.
    const unsigned next_target = target_for(next, read_resource_limits());
    const auto plan = plan_reload(config_, next, pool_.target(), next_target);
    respond({{"ok", true},
             {"dry_run", true},
             {"changes", plan.describe()},
             {"message", "configuration " + config_path_ + " is valid"}});
  } catch (const common::ConfigError& e) {
    respond({{"ok", false}, {"error", join(e.issues())}});
  } catch (const std::exception& e) {
    respond({{"ok", false}, {"error", "cannot load " + config_path_ + ": " + e.what()}});
  }
}

void Master::start_reload() {
  std::vector<Respond> replies = std::move(queued_reload_replies_);
  queued_reload_replies_.clear();
  if (config_path_.empty()) {
    finish_reload(false, "no configuration file to reload: forkd runs on its embedded default",
                  replies, {});
    return;
  }
  log_->info("reloading {}", config_path_);
  notify_service_manager(common::reloading_message());
  common::Config next;
  BindTakeover next_takeover;
  try {
    next = load_daemon_config(config_path_);
    next_takeover = plan_bind_takeover(next);
  } catch (const common::ConfigError& e) {
    for (const auto& issue : e.issues()) log_->error("reload: {}", issue.to_string());
    finish_reload(false, "invalid configuration, nothing changed: " + join(e.issues()), replies,
                  {});
    return;
  } catch (const std::exception& e) {
    // Out of memory under a cgroup cap, say: still a failed reload that is counted and answered.
    log_->error("reload: cannot load {}: {}", config_path_, e.what());
    finish_reload(false, "cannot load " + config_path_ + ": " + e.what() + "; nothing changed",
                  replies, {});
    return;
  }
  // A pod resized in place or a unit given a new CPUQuota=: the limits are read anew, and kept
  // once the reload is applied.
  ResourceLimits next_limits = read_resource_limits();
  const unsigned next_target = target_for(next, next_limits);
  const auto plan = plan_reload(config_, next, pool_.target(), next_target);
  const auto changes = plan.describe();
  for (const auto& line : changes) log_->info("reload: {}", line);
  // Keys the running master itself holds (the key table says which): a restart applies them.
  for (const auto& line : plan.needs_restart) log_->warn("reload: {}", line);
  ListenerSet next_listeners;
  try {
    next_listeners = ListenerSet::rebuild(next.listen, plan.kept_from, listeners_);
    next_listeners.ensure_worker_sockets(next_target);
    steering_->track(next_listeners);
  } catch (const std::exception& e) {
    next_listeners.remove_socket_files_not_in(listeners_);
    log_->error("reload: {}", e.what());
    finish_reload(false, std::string(e.what()) + "; nothing changed", replies, {});
    return;
  }
  const unsigned generation = pool_.generation();
  reload_ = ReloadInProgress{std::move(config_),
                             std::move(takeover_),
                             std::move(listeners_),
                             generation,
                             pool_.target(),
                             std::move(replies),
                             changes};
  config_ = std::move(next);
  takeover_ = std::move(next_takeover);
  unserved_binds_said_.clear();
  limits_ = std::move(next_limits);
  listeners_ = std::move(next_listeners);
  pool_.reconfigure(pool_settings(), next_target, generation + 1);
  check_request_migration();
  std::vector<unsigned> ids;
  for (unsigned id = 0; id < next_target; ++id) ids.push_back(id);
  start_rollout(std::move(ids), [this](bool ok, const std::string& error) {
    if (ok) {
      commit_reload();
    } else {
      roll_back_reload(error);
    }
  });
}

void Master::commit_reload() {
  ReloadInProgress done = std::move(*reload_);
  reload_.reset();
  done.listeners.remove_socket_files_not_in(listeners_);
  common::log::configure(config_.log);
  for (auto& [slot, ring] : output_rings_) ring.set_max_lines(config_.log.worker_lines);
  if (config_.metrics.listen != done.config.metrics.listen) {
    if (metrics_) metrics_->close();
    metrics_.reset();
    try {
      open_metrics({});
    } catch (const std::exception& e) {
      log_->error("reload: metrics: {}", e.what());
    }
  }
  log_->info("reload complete: generation {}, {}", pool_.generation(),
             common::count_of(pool_.target(), "worker"));
  log_limits();
  finish_reload(true, "", done.replies, done.changes);
}

void Master::roll_back_reload(const std::string& why) {
  ReloadInProgress failed = std::move(*reload_);
  reload_.reset();
  const unsigned failed_generation = pool_.generation();
  listeners_.remove_socket_files_not_in(failed.listeners);
  config_ = std::move(failed.config);
  takeover_ = std::move(failed.takeover);
  listeners_ = std::move(failed.listeners);
  pool_.reconfigure(pool_settings(), failed.target, failed.generation);
  log_->error("reload failed, generation {} keeps serving: {}", failed.generation, why);
  // Slots the failed generation already took over go back to the configuration that works.
  std::vector<unsigned> back;
  for (const auto& slot : pool_.slots()) {
    if (slot.current.pid > 0 && slot.id < failed.target &&
        slot.current.generation == failed_generation) {
      back.push_back(slot.id);
    }
  }
  finish_reload(
      false, "new workers did not get ready (" + why + "); the previous generation keeps serving",
      failed.replies, failed.changes);
  if (!back.empty() && !pool_.stopping()) {
    start_rollout(std::move(back), [this](bool ok, const std::string& error) {
      if (!ok) log_->error("returning workers to the previous configuration failed: {}", error);
    });
  }
}

void Master::finish_reload(bool ok, const std::string& error, std::vector<Respond>& replies,
                           const std::vector<std::string>& changes) {
  last_reload_ = ReloadRecord{ok, error, std::chrono::system_clock::now()};
  if (!config_path_.empty()) notify_service_manager("READY=1\nSTATUS=" + status_line());
  ++(ok ? reloads_ok_ : reloads_failed_);
  const unsigned generation = pool_.generation();
  nlohmann::json event = {{"event", "reload"}, {"ok", ok}, {"generation", generation}};
  if (!ok) event["error"] = error;
  publish(std::move(event));
  nlohmann::json reply =
      ok ? nlohmann::json{{"ok", true},
                          {"generation", generation},
                          {"changes", changes},
                          {"message", "reloaded: generation " + std::to_string(generation) + ", " +
                                          std::to_string(pool_.target()) + " workers"}}
         : nlohmann::json{{"ok", false}, {"error", error}};
  for (auto& respond : replies) respond(reply);
  replies.clear();
}

void Master::start_queued_reload() {
  if (!reload_queued_ || reload_ || pool_.rollout_active() || pool_.stopping()) return;
  reload_queued_ = false;
  start_reload();
}

}  // namespace forkd::daemon
