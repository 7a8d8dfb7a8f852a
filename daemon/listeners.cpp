#include "daemon/listeners.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <fcntl.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <optional>

#include "common/decimal.hpp"
#include "common/socket_file.hpp"
#include "common/unix_socket.hpp"
#include "daemon/reload_plan.hpp"

namespace forkd::daemon {

using common::AddressKind;
using common::ListenConfig;
using common::UniqueFd;

namespace {

[[noreturn]] void fail(const ListenConfig& config, const std::string& what, int err) {
  throw ListenError(what + " " + config.address + ": " + std::strerror(err));
}

mode_t unix_mode(const ListenConfig& config) {
  return config.mode ? static_cast<mode_t>(*config.mode) : 0666;
}

struct SockAddr {
  sockaddr_storage storage{};
  socklen_t length = 0;
};

SockAddr make_sockaddr(const ListenConfig& config) {
  SockAddr out;
  switch (config.kind) {
    case AddressKind::tcp4: {
      auto* sin = reinterpret_cast<sockaddr_in*>(&out.storage);
      sin->sin_family = AF_INET;
      sin->sin_port = htons(config.port);
      if (::inet_pton(AF_INET, config.host.c_str(), &sin->sin_addr) != 1)
        fail(config, "bad address", EINVAL);
      out.length = sizeof(sockaddr_in);
      break;
    }
    case AddressKind::tcp6: {
      auto* sin6 = reinterpret_cast<sockaddr_in6*>(&out.storage);
      sin6->sin6_family = AF_INET6;
      sin6->sin6_port = htons(config.port);
      if (::inet_pton(AF_INET6, config.host.c_str(), &sin6->sin6_addr) != 1)
        fail(config, "bad address", EINVAL);
      out.length = sizeof(sockaddr_in6);
      break;
    }
    case AddressKind::unix_path: {
      try {
        const common::UnixAddress address(config.path);
        std::memcpy(&out.storage, address.get(), address.size());
        out.length = address.size();
      } catch (const common::UnixAddressError& e) {
        throw ListenError("cannot listen on " + config.address + ": " + e.what());
      }
      break;
    }
  }
  return out;
}

// A unix socket file left by a dead process answers no connect(): only then is it replaced.
void clear_stale_unix_socket(const ListenConfig& config) {
  std::error_code error;
  switch (common::probe_socket_file(config.path, error)) {
    case common::SocketFileState::absent:
      return;
    case common::SocketFileState::stat_failed:
      fail(config, "cannot stat", error.value());
    case common::SocketFileState::not_a_socket:
      throw ListenError("cannot listen on " + config.address +
                        ": the path exists and is not a socket");
    case common::SocketFileState::live:
      fail(config, "cannot listen on", EADDRINUSE);
    case common::SocketFileState::probe_failed:
      fail(config, "cannot probe existing socket", error.value());
    case common::SocketFileState::stale:
      break;
  }
  if (::unlink(config.path.c_str()) != 0 && errno != ENOENT)
    fail(config, "cannot remove stale socket", errno);
}

int family_of(const ListenConfig& config) {
  switch (config.kind) {
    case AddressKind::tcp4:
      return AF_INET;
    case AddressKind::tcp6:
      return AF_INET6;
    case AddressKind::unix_path:
      return AF_UNIX;
  }
  return AF_UNSPEC;
}

bool same_address(int fd, const ListenConfig& config) {
  SockAddr bound;
  bound.length = sizeof(bound.storage);
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&bound.storage), &bound.length) != 0)
    return false;
  if (bound.storage.ss_family != family_of(config)) return false;
  SockAddr wanted;
  try {
    wanted = make_sockaddr(config);
  } catch (const ListenError&) {
    return false;
  }
  switch (config.kind) {
    case AddressKind::tcp4: {
      const auto* a = reinterpret_cast<const sockaddr_in*>(&bound.storage);
      const auto* b = reinterpret_cast<const sockaddr_in*>(&wanted.storage);
      return a->sin_port == b->sin_port && a->sin_addr.s_addr == b->sin_addr.s_addr;
    }
    case AddressKind::tcp6: {
      const auto* a = reinterpret_cast<const sockaddr_in6*>(&bound.storage);
      const auto* b = reinterpret_cast<const sockaddr_in6*>(&wanted.storage);
      return a->sin6_port == b->sin6_port &&
             std::memcmp(&a->sin6_addr, &b->sin6_addr, sizeof(in6_addr)) == 0;
    }
    case AddressKind::unix_path: {
      const auto* a = reinterpret_cast<const sockaddr_un*>(&bound.storage);
      return config.path == a->sun_path;
    }
  }
  return false;
}

}  // namespace

std::vector<PassedSocket> take_passed_sockets() {
  std::vector<PassedSocket> out;
  const auto take = [](const char* name) -> std::optional<std::string> {
    const char* value = std::getenv(name);
    std::optional<std::string> copy;
    if (value != nullptr) copy = value;
    ::unsetenv(name);
    return copy;
  };
  const auto pid_env = take("LISTEN_PID");
  const auto fds_env = take("LISTEN_FDS");
  const std::string names = take("LISTEN_FDNAMES").value_or("");
  if (!pid_env || !fds_env) return out;
  const auto pid = common::parse_decimal<pid_t>(*pid_env);
  const int count = common::parse_decimal<int>(*fds_env).value_or(0);
  if (pid != ::getpid() || count <= 0) return out;
  std::size_t pos = 0;
  for (int i = 0; i < count; ++i) {
    const int fd = 3 + i;
    (void)common::set_cloexec(fd, true);
    std::string name;
    if (pos <= names.size() && !names.empty()) {
      const auto colon = names.find(':', pos);
      name = names.substr(pos, colon == std::string::npos ? std::string::npos : colon - pos);
      pos = colon == std::string::npos ? names.size() + 1 : colon + 1;
    }
    out.push_back({UniqueFd(fd), name});
  }
  return out;
}

std::string describe_socket(int fd) {
  SockAddr bound;
  bound.length = sizeof(bound.storage);
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&bound.storage), &bound.length) != 0) {
    return "fd " + std::to_string(fd);
  }
  char host[INET6_ADDRSTRLEN] = {};
  switch (bound.storage.ss_family) {
    case AF_INET: {
      const auto* a = reinterpret_cast<const sockaddr_in*>(&bound.storage);
      ::inet_ntop(AF_INET, &a->sin_addr, host, sizeof(host));
      return std::string(host) + ":" + std::to_string(ntohs(a->sin_port));
    }
    case AF_INET6: {
      const auto* a = reinterpret_cast<const sockaddr_in6*>(&bound.storage);
      ::inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof(host));
      return "[" + std::string(host) + "]:" + std::to_string(ntohs(a->sin6_port));
    }
    case AF_UNIX:
      return std::string("unix:") + reinterpret_cast<const sockaddr_un*>(&bound.storage)->sun_path;
    default:
      return "fd " + std::to_string(fd);
  }
}

UniqueFd open_listener(const ListenConfig& config, bool reuseport) {
  const int family = family_of(config);
  UniqueFd fd(::socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) fail(config, "cannot create socket for", errno);
  const int one = 1;
  if (config.kind != AddressKind::unix_path) {
    if (::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0)
      fail(config, "SO_REUSEADDR on", errno);
    if (reuseport && ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0)
      fail(config, "SO_REUSEPORT on", errno);
    // [::] must not swallow 0.0.0.0 on the same port: each family binds on its own (nginx too).
    if (config.kind == AddressKind::tcp6 &&
        ::setsockopt(fd.get(), IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) != 0) {
      fail(config, "IPV6_V6ONLY on", errno);
    }
  } else {
    clear_stale_unix_socket(config);
  }
  if (config.kind == AddressKind::unix_path) {
    // Born with its mode: no chmod through a path someone could have swapped for a symlink.
    const int error =
        common::bind_unix_with_mode(fd.get(), common::UnixAddress(config.path), unix_mode(config));
    if (error != 0) fail(config, "cannot bind", error);
  } else {
    const SockAddr addr = make_sockaddr(config);
    if (::bind(fd.get(), reinterpret_cast<const sockaddr*>(&addr.storage), addr.length) != 0) {
      fail(config, "cannot bind", errno);
    }
  }
  if (::listen(fd.get(), config.backlog) != 0) fail(config, "cannot listen on", errno);
  return fd;
}

void ListenerSet::open_all(const std::vector<ListenConfig>& configs,
                           std::vector<PassedSocket> passed, bool own_files) {
  std::vector<Listener> opened;
  opened.reserve(configs.size());
  for (const auto& config : configs) {
    Listener l;
    l.config = config;
    // Match a passed socket by its name first (FileDescriptorName=), then by address.
    auto match = passed.end();
    for (auto it = passed.begin(); it != passed.end(); ++it) {
      if (it->fd && !it->name.empty() && it->name == config.name &&
          same_address(it->fd.get(), config))
        match = it;
    }
    if (match == passed.end()) {
      for (auto it = passed.begin(); it != passed.end(); ++it) {
        if (it->fd && same_address(it->fd.get(), config)) {
          match = it;
          break;
        }
      }
    }
    if (match != passed.end()) {
      int type = 0;
      socklen_t len = sizeof(type);
      if (::getsockopt(match->fd.get(), SOL_SOCKET, SO_TYPE, &type, &len) != 0 ||
          type != SOCK_STREAM) {
        throw ListenError("passed socket " + describe_socket(match->fd.get()) + " for " +
                          config.address + " is not a stream socket");
      }
      l.adopted = true;
      l.created_file = own_files && config.kind == AddressKind::unix_path;
      if (config.reuseport) {
        // Every passed socket of this address: the previous master's per-slot sockets.
        for (auto& p : passed) {
          if (p.fd && same_address(p.fd.get(), config)) l.per_worker.push_back(std::move(p.fd));
        }
      } else {
        l.shared = std::move(match->fd);
      }
    } else if (!config.reuseport) {
      l.shared = open_listener(config, false);
      l.created_file = config.kind == AddressKind::unix_path;
    }
    opened.push_back(std::move(l));
  }
  for (const auto& p : passed) {
    if (p.fd) {
      throw ListenError("passed socket " + describe_socket(p.fd.get()) +
                        (p.name.empty() ? "" : " (name " + p.name + ")") +
                        " matches no listen entry");
    }
  }
  listeners_ = std::move(opened);
}

void ListenerSet::ensure_worker_sockets(unsigned count) {
  for (auto& l : listeners_) {
    if (!l.config.reuseport) continue;
    if (l.per_worker.size() < count) l.per_worker.resize(count);
    for (unsigned slot = 0; slot < count; ++slot) {
      if (!l.per_worker[slot]) l.per_worker[slot] = open_listener(l.config, true);
    }
  }
}

void ListenerSet::trim_worker_sockets(unsigned count) {
  for (auto& l : listeners_) {
    if (l.per_worker.size() > count) l.per_worker.resize(count);
    if (l.per_incoming.size() > count) l.per_incoming.resize(count);
  }
}

void ListenerSet::open_incoming_sockets(unsigned slot) {
  for (auto& l : listeners_) {
    if (!l.config.reuseport) continue;
    if (l.per_incoming.size() <= slot) l.per_incoming.resize(slot + 1);
    if (!l.per_incoming[slot]) l.per_incoming[slot] = open_listener(l.config, true);
  }
}

void ListenerSet::promote_incoming(unsigned slot) {
  for (auto& l : listeners_) {
    if (slot >= l.per_incoming.size() || !l.per_incoming[slot]) continue;
    if (l.per_worker.size() <= slot) l.per_worker.resize(slot + 1);
    l.per_worker[slot] = std::move(l.per_incoming[slot]);
  }
}

void ListenerSet::drop_incoming(unsigned slot) {
  for (auto& l : listeners_) {
    if (slot < l.per_incoming.size()) l.per_incoming[slot].reset();
  }
}

bool ListenerSet::has_incoming(unsigned slot) const {
  return std::any_of(listeners_.begin(), listeners_.end(), [slot](const Listener& l) {
    return slot < l.per_incoming.size() && l.per_incoming[slot];
  });
}

std::vector<int> ListenerSet::fds_for(unsigned slot, bool incoming) const {
  std::vector<int> fds;
  fds.reserve(listeners_.size());
  for (const auto& l : listeners_) {
    if (l.config.reuseport) {
      const auto& sockets = incoming ? l.per_incoming : l.per_worker;
      fds.push_back(slot < sockets.size() && sockets[slot] ? sockets[slot].get() : -1);
    } else {
      fds.push_back(l.shared.get());
    }
  }
  return fds;
}

std::vector<std::pair<std::string, int>> ListenerSet::reuseport_sockets() const {
  std::vector<std::pair<std::string, int>> out;
  for (const auto& l : listeners_) {
    if (!l.config.reuseport) continue;
    for (const auto& fd : l.per_worker)
      if (fd) out.emplace_back(l.config.address, fd.get());
    for (const auto& fd : l.per_incoming)
      if (fd) out.emplace_back(l.config.address, fd.get());
  }
  return out;
}

std::vector<std::pair<int, std::string>> ListenerSet::all_sockets() const {
  std::vector<std::pair<int, std::string>> out;
  for (const auto& l : listeners_) {
    if (l.shared) out.emplace_back(l.shared.get(), l.config.name);
    for (const auto& fd : l.per_worker)
      if (fd) out.emplace_back(fd.get(), l.config.name);
  }
  return out;
}

std::string ListenerSet::fdnames() const {
  std::string names;
  for (const auto& l : listeners_) {
    if (!names.empty()) names += ':';
    names += l.config.name;
  }
  return names;
}

namespace {

UniqueFd duplicate(const UniqueFd& fd, const ListenConfig& config) {
  UniqueFd copy(::fcntl(fd.get(), F_DUPFD_CLOEXEC, 3));
  if (!copy) fail(config, "cannot duplicate socket of", errno);
  return copy;
}

}  // namespace

ListenerSet ListenerSet::rebuild(const std::vector<ListenConfig>& configs,
                                 const std::vector<std::optional<std::size_t>>& kept_from,
                                 const ListenerSet& current) {
  ListenerSet next;
  for (std::size_t i = 0; i < configs.size(); ++i) {
    const ListenConfig& config = configs[i];
    Listener l;
    l.config = config;
    const std::optional<std::size_t> keep = i < kept_from.size() ? kept_from[i] : std::nullopt;
    if (keep && *keep < current.listeners_.size()) {
      const Listener* old = &current.listeners_[*keep];
      l.adopted = old->adopted;
      l.created_file = old->created_file;
      if (old->shared) l.shared = duplicate(old->shared, config);
      for (const auto& fd : old->per_worker)
        l.per_worker.push_back(fd ? duplicate(fd, config) : UniqueFd());
      for (const auto& fd : old->per_incoming)
        l.per_incoming.push_back(fd ? duplicate(fd, config) : UniqueFd());
      // A kept socket takes the new backlog and mode in place.
      const int any =
          l.shared ? l.shared.get() : (l.per_worker.empty() ? -1 : l.per_worker.front().get());
      if (any >= 0 && config.backlog != old->config.backlog) {
        for (const auto& fd : l.per_worker) ::listen(fd.get(), config.backlog);
        if (l.shared) ::listen(l.shared.get(), config.backlog);
      }
      if (config.kind == AddressKind::unix_path && config.mode != old->config.mode) {
        try {
          common::set_socket_file_access(config.path, unix_mode(config), std::nullopt);
        } catch (const std::system_error& error) {
          throw ListenError(config.address + ": " + error.what());
        }
      }
    } else if (!config.reuseport) {
      l.shared = open_listener(config, false);
      l.created_file = config.kind == AddressKind::unix_path;
    }
    next.listeners_.push_back(std::move(l));
  }
  return next;
}

void ListenerSet::remove_socket_files_not_in(const ListenerSet& successor) const {
  for (const auto& l : listeners_) {
    if (!l.created_file) continue;
    const bool kept =
        std::any_of(successor.listeners_.begin(), successor.listeners_.end(),
                    [&](const Listener& n) { return same_socket(n.config, l.config); });
    if (!kept) ::unlink(l.config.path.c_str());
  }
}

void ListenerSet::remove_socket_files() const {
  for (const auto& l : listeners_) {
    if (l.created_file) ::unlink(l.config.path.c_str());
  }
}

}  // namespace forkd::daemon
