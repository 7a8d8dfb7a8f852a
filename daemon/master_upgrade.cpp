// Hot upgrade (SIGUSR2), as nginx does it: the master starts the forkd binary anew as its own
// child, handing it every listening socket and the control socket the systemd way
// (LISTEN_FDS/LISTEN_FDNAMES) plus a pipe. The new master starts its workers on those sockets
// and writes "ready" on the pipe once all are ready; only then does this master stop
// accepting and drain. If the new master exits first or is not ready in time, this master
// serves on as if nothing happened.
#include <signal.h>
#include <unistd.h>

#include <spdlog/logger.h>
#include <asio/buffer.hpp>
#include <cstring>
#include <nlohmann/json.hpp>

#include "common/spawner.hpp"
#include "daemon/master.hpp"

namespace forkd::daemon {

using common::find_program;
using common::spawn_process;
using common::SpawnResult;
using common::SpawnSpec;

namespace {

constexpr std::string_view kReadyWord = "ready\n";
constexpr auto kUpgradeGrace = std::chrono::seconds(10);

}  // namespace

void Master::start_upgrade() {
  if (pool_.stopping()) return;
  if (!upgrade_.idle()) {
    log_->warn("hot upgrade: already in progress (new master pid {}); ignored", *upgrade_.pid());
    return;
  }
  if (launch_.executable.empty()) {
    fail_upgrade("the path of the forkd binary is unknown; nothing changed");
    return;
  }
  common::FdPair pipe;
  try {
    pipe = common::make_pipe();
  } catch (const std::system_error& e) {
    fail_upgrade(std::string(e.what()) + "; nothing changed");
    return;
  }
  SpawnSpec spec;
  spec.program = launch_.executable;
  spec.argv = launch_.argv;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
    const std::string_view entry(*e);
    const auto eq = entry.find('=');
    if (eq == std::string_view::npos || entry.starts_with("LISTEN_") ||
        entry.starts_with("FORKD_UPGRADE_"))
      continue;
    spec.env.emplace(std::string(entry.substr(0, eq)), std::string(entry.substr(eq + 1)));
  }
  spec.fds = {-1, -1, -1};
  std::string names;
  std::vector<int> passed;
  for (const auto& [fd, name] : listeners_.all_sockets()) {
    spec.fds.push_back(fd);
    passed.push_back(fd);
    names += (names.empty() ? "" : ":") + name;
  }
  // So that the new master steers the reuseport sockets it takes over from its first moment.
  if (const auto orders = steering_->orders_to_hand_over(passed); !orders.empty()) {
    spec.env["FORKD_UPGRADE_REUSEPORT_ORDER"] = encode_orders(orders);
  }
  if (control_ && control_->native_handle() >= 0) {
    spec.fds.push_back(control_->native_handle());
    names += (names.empty() ? "" : ":") + std::string(kControlSocketName);
  }
  if (metrics_ && metrics_->native_handle() >= 0) {
    spec.fds.push_back(metrics_->native_handle());
    names += (names.empty() ? "" : ":") + std::string(kMetricsSocketName);
  }
  spec.env["LISTEN_FDS"] = std::to_string(spec.fds.size() - 3);
  spec.env["LISTEN_FDNAMES"] = names;
  spec.env["FORKD_UPGRADE_FD"] = std::to_string(spec.fds.size());
  spec.fds.push_back(pipe.second.get());
  if (pidfile_) {
    spec.env["FORKD_PIDFILE_FD"] = std::to_string(spec.fds.size());
    spec.fds.push_back(pidfile_->fd());
  }
  spec.listen_pid = true;
  spec.die_with_master = false;  // it is to outlive us

  const SpawnResult result = spawn_process(spec);
  if (result.pid < 0 || result.failure) {
    fail_upgrade("cannot start " + spec.program + ": " + result.describe(spec) +
                 "; this master keeps serving");
    return;  // a child that failed to exec is reaped as an unknown pid
  }
  upgrade_.started(result.pid, Clock::now() + config_.worker.ready_timeout + kUpgradeGrace);
  upgrade_pipe_ = std::make_unique<asio::posix::stream_descriptor>(io_, pipe.first.release());
  log_->info("hot upgrade: started {} as new master (pid {})", spec.program, result.pid);
  publish({{"event", "upgrade"}, {"pid", result.pid}, {"state", "started"}});
  read_upgrade_pipe();
}

void Master::read_upgrade_pipe() {
  upgrade_pipe_->async_read_some(asio::buffer(upgrade_buffer_), [this](std::error_code ec,
                                                                       std::size_t n) {
    if (ec == asio::error::operation_aborted || !upgrade_.pending()) return;
    if (!ec && std::string_view(upgrade_buffer_.data(), n).starts_with(kReadyWord.substr(0, 5))) {
      guarded("hot upgrade", [this] { carry_out(upgrade_.ready_word()); });
      return;
    }
    if (ec) return;  // EOF without "ready": the new master died; its exit is reported when reaped
    read_upgrade_pipe();
  });
}

void Master::hand_over() {
  upgrade_pipe_.reset();
  log_->info("hot upgrade: new master (pid {}) is ready; this master stops accepting and drains",
             *upgrade_.pid());
  publish({{"event", "upgrade"}, {"pid", *upgrade_.pid()}, {"state", "handed_over"}});
  // The new master is the service's main process now (NotifyAccess=main lets only us say so),
  // and the pidfile names it.
  notify_service_manager("MAINPID=" + std::to_string(*upgrade_.pid()) +
                         "\nSTATUS=handed over to pid " + std::to_string(*upgrade_.pid()));
  if (pidfile_) {
    if (const auto ec = pidfile_->rewrite(*upgrade_.pid())) {
      log_->error("hot upgrade: cannot write pid {} to {}: {}", *upgrade_.pid(), pidfile_->path(),
                  ec.message());
    }
  }
  if (control_) control_->close();
  if (metrics_) metrics_->close();
  // The reuseport groups are the new master's to steer now: our draining workers must not
  // rewrite its programs. The sockets stay in their groups: the new master holds them too.
  steering_->close();
  begin_stop(false);
}

void Master::on_upgrade_exit(int wait_status) {
  const pid_t pid = *upgrade_.pid();
  const common::ExitStatus status = common::ExitStatus::from_wait_status(wait_status);
  switch (upgrade_.exited(pid)) {
    case UpgradeHandoff::Decision::exited_after:
      log_->warn("hot upgrade: new master (pid {}) {}", pid, status.describe());
      break;
    case UpgradeHandoff::Decision::failed:
      publish({{"event", "upgrade"}, {"pid", pid}, {"state", "failed"}});
      fail_upgrade("new master (pid " + std::to_string(pid) + ") " + status.describe() +
                   " before it was ready; this master keeps serving");
      upgrade_pipe_.reset();
      break;
    default:
      break;
  }
}

void Master::fail_upgrade(const std::string& why) {
  log_->error("hot upgrade failed: {}", why);
  // The failed master may have steered our reuseport groups its own way meanwhile.
  steering_->reattach();
  // Status and metrics show it as they show a failed reload: an operator's change that did not
  // take.
  last_reload_ = ReloadRecord{false, "hot upgrade: " + why, std::chrono::system_clock::now()};
  ++reloads_failed_;
}

void Master::enforce_upgrade_deadline(TimePoint now) {
  carry_out(upgrade_.deadline_check(now));
}

void Master::carry_out(UpgradeHandoff::Decision decision) {
  switch (decision) {
    case UpgradeHandoff::Decision::hand_over:
      hand_over();
      break;
    case UpgradeHandoff::Decision::quit_new:
      log_->error(
          "hot upgrade: new master (pid {}) not ready in time; stopping it, this master keeps "
          "serving",
          *upgrade_.pid());
      ::kill(*upgrade_.pid(), SIGQUIT);
      break;
    case UpgradeHandoff::Decision::kill_new:
      log_->error("hot upgrade: new master (pid {}) still running; sending SIGKILL",
                  *upgrade_.pid());
      ::kill(*upgrade_.pid(), SIGKILL);
      break;
    default:
      break;
  }
}

void Master::tell_predecessor_ready() {
  if (!predecessor_) return;
  const ssize_t n = ::write(predecessor_.get(), kReadyWord.data(), kReadyWord.size());
  if (n != static_cast<ssize_t>(kReadyWord.size())) {
    log_->warn("hot upgrade: cannot tell the previous master (pid {}) we are ready: {}",
               predecessor_pid_, std::strerror(errno));
  } else {
    log_->info("hot upgrade: told the previous master (pid {}) to drain", predecessor_pid_);
  }
  predecessor_.reset();
}

}  // namespace forkd::daemon
