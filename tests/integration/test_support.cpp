#include "tests/integration/test_support.hpp"

#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <system_error>
#include <thread>

namespace forkd::test {

std::string control_socket_in(const std::string& config_yaml) {
  const auto control = config_yaml.find("control:");
  if (control == std::string::npos) return "";
  const auto key = config_yaml.find("socket:", control);
  if (key == std::string::npos) return "";
  const auto begin = config_yaml.find_first_not_of(" \t\"'", key + 7);
  if (begin == std::string::npos) return "";
  const auto end = config_yaml.find_first_of("\n,}\"'", begin);
  std::string path = config_yaml.substr(begin, end == std::string::npos ? end : end - begin);
  while (!path.empty() && (path.back() == ' ' || path.back() == '\t')) path.pop_back();
  return path;
}

namespace {

// Sends `line` on a new connection to the control socket and returns the first reply line (""
// when none came in time). With `until_close`, the sending side is shut and the reply read up
// to the master's close.
std::string exchange_line(const std::string& socket_path, const std::string& line,
                          std::chrono::milliseconds timeout, bool until_close) {
  common::UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, socket_path.c_str(), sizeof(addr.sun_path) - 1);
  if (!fd || ::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) return "";
  std::size_t sent = 0;
  while (sent < line.size()) {
    const ssize_t n = ::send(fd.get(), line.data() + sent, line.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) break;  // the daemon may close early (oversized request): read what it said
    sent += static_cast<std::size_t>(n);
  }
  if (until_close && (sent < line.size() || ::shutdown(fd.get(), SHUT_WR) != 0)) return "";
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  std::string reply;
  while (until_close || reply.find('\n') == std::string::npos) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return "";
    pollfd p{fd.get(), POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) return "";
    char buf[4096];
    const ssize_t n = ::read(fd.get(), buf, sizeof(buf));
    if (n <= 0) break;
    reply.append(buf, static_cast<std::size_t>(n));
  }
  return reply.substr(0, reply.find('\n'));
}

}  // namespace

// The request is followed by a half-close and the reply read up to the master's close: once this
// returns, the master holds no descriptor for the connection (tests count its fds).
std::optional<nlohmann::json> control_status(const std::string& socket_path,
                                             std::chrono::milliseconds timeout) {
  const std::string reply =
      exchange_line(socket_path, "{\"cmd\":\"status\"}\n", timeout, /*until_close=*/true);
  if (reply.empty()) return std::nullopt;
  auto parsed = nlohmann::json::parse(reply, nullptr, false);
  if (parsed.is_discarded() || !parsed.is_object() || parsed.value("ok", false) != true ||
      !parsed.contains("master") || !parsed.contains("workers")) {
    return std::nullopt;
  }
  return parsed;
}

namespace {

// Whether a status reply shows the awaited state; *shown summarises it for a failure message.
bool workers_ready(const nlohmann::json& status, unsigned n, std::optional<unsigned> generation,
                   std::string& shown) {
  const auto current = status["master"].value("generation", 0U);
  unsigned ready = 0;
  shown = "generation " + std::to_string(current) + ", workers";
  for (const auto& w : status["workers"]) {
    const std::string state = w.value("state", "");
    shown += " " + std::to_string(w.value("id", 0U)) + ":" + state + "/g" +
             std::to_string(w.value("generation", 0U));
    if (state == "ready" && w.value("generation", 0U) == current) ++ready;
  }
  return (!generation || current == *generation) && ready == n;
}

}  // namespace

std::optional<std::size_t> wait_workers_ready(ForkdProcess& forkd, const std::string& socket_path,
                                              unsigned n, std::optional<unsigned> generation,
                                              std::chrono::milliseconds timeout, std::string* why) {
  using Clock = std::chrono::steady_clock;
  const auto deadline = Clock::now() + timeout;
  const std::string socket =
      socket_path.empty() ? control_socket_in(read_text(forkd.config_path())) : socket_path;
  std::chrono::milliseconds pause{5};
  std::string shown = "no status reply on " + socket;
  while (true) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    const auto status = control_status(socket, std::clamp(left, std::chrono::milliseconds{100},
                                                          std::chrono::milliseconds{10'000}));
    if (status && workers_ready(*status, n, generation, shown)) {
      // Every line the master logged before it answered is complete by now.
      const std::string log = forkd.log();
      const auto last_newline = log.rfind('\n');
      return last_newline == std::string::npos ? 0 : last_newline + 1;
    }
    // A master gone for good (a hot upgrade's successor would still answer) ends the wait.
    const bool gone = !status && !forkd.running();
    if (gone || Clock::now() >= deadline) {
      if (why != nullptr) {
        *why =
            (gone ? "forkd is gone; " : "timed out; ") + shown + "\n" + last_lines(forkd.log(), 30);
      }
      return std::nullopt;
    }
    std::this_thread::sleep_for(std::min<Clock::duration>(pause, deadline - Clock::now()));
    pause = std::min(pause * 2, std::chrono::milliseconds{100});
  }
}

std::string control_request(const std::string& socket_path, const std::string& line,
                            std::chrono::milliseconds timeout) {
  return exchange_line(socket_path, line, timeout, /*until_close=*/false);
}

std::string socket_dir_for(const TempDir& dir, uid_t uid) {
  const std::string path = dir.file("run-" + std::to_string(uid));
  if (::mkdir(path.c_str(), 0700) != 0 || ::chown(path.c_str(), uid, uid) != 0) {
    throw std::system_error(errno, std::generic_category(), "socket directory " + path);
  }
  return path;
}

RunResult forkctl_as(uid_t uid, const std::vector<std::string>& args,
                     std::chrono::milliseconds timeout) {
  std::vector<std::string> argv = setpriv_as(uid);
  argv.push_back(forkctl_bin());
  argv.insert(argv.end(), args.begin(), args.end());
  return run_command(argv, timeout);
}

}  // namespace forkd::test
