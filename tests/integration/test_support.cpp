#include "tests/integration/test_support.hpp"

#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <system_error>

namespace forkd::test {

std::string control_request(const std::string& socket_path, const std::string& line,
                            std::chrono::milliseconds timeout) {
  common::UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, socket_path.c_str(), sizeof(addr.sun_path) - 1);
  if (!fd || ::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) return "";
  std::string out = line;
  std::size_t sent = 0;
  while (sent < out.size()) {
    const ssize_t n = ::send(fd.get(), out.data() + sent, out.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) break;  // the daemon may close early (oversized request): read what it said
    sent += static_cast<std::size_t>(n);
  }
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  std::string reply;
  while (reply.find('\n') == std::string::npos) {
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
