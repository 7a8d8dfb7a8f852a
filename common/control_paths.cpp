#include "common/control_paths.hpp"

#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <memory>
#include <stdexcept>
#include <string_view>
#include <system_error>

#include "common/fd.hpp"
#include "common/safe_open.hpp"

namespace forkd::common {
namespace {

constexpr mode_t kPrivateDirMode = 0700;
constexpr mode_t kSharedDirMode = 0755;

std::string private_tmp_dir(uid_t uid) {
  return "/tmp/forkd-" + std::to_string(uid);
}

// mkdir then chmod: mkdir's mode is narrowed by the umask, and the result must be exact.
// Returns false when the directory already existed.
bool make_dir(const std::string& dir, mode_t mode) {
  if (::mkdir(dir.c_str(), mode) != 0) {
    if (errno == EEXIST) return false;
    throw system_error_from_errno("cannot create control socket directory " + dir);
  }
  if (::chmod(dir.c_str(), mode) != 0) {
    throw system_error_from_errno("cannot set the mode of control socket directory " + dir);
  }
  return true;
}

}  // namespace

std::string default_control_socket_for(uid_t uid, const char* xdg_runtime_dir) {
  if (uid == 0) return "/run/forkd/forkd.sock";
  if (xdg_runtime_dir != nullptr && *xdg_runtime_dir != '\0') {
    std::string dir(xdg_runtime_dir);
    while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
    return dir + "/forkd.sock";
  }
  return private_tmp_dir(uid) + "/forkd.sock";
}

std::string default_control_socket() {
  // getenv is read-only here; nothing in forkd calls setenv after start-up.
  return default_control_socket_for(::geteuid(), std::getenv("XDG_RUNTIME_DIR"));  // NOLINT
}

void ensure_private_dir(const std::string& dir) {
  if (make_dir(dir, kPrivateDirMode)) return;
  struct stat st {};
  if (::lstat(dir.c_str(), &st) != 0) {
    throw system_error_from_errno("cannot inspect control socket directory " + dir);
  }
  if (!S_ISDIR(st.st_mode)) {
    throw std::runtime_error("control socket directory " + dir +
                             " exists but is not a directory (refusing to use it)");
  }
  if (st.st_uid != ::geteuid()) {
    throw std::runtime_error("control socket directory " + dir + " is owned by uid " +
                             std::to_string(st.st_uid) + ", not by uid " +
                             std::to_string(::geteuid()) + " (refusing to use it)");
  }
  if ((st.st_mode & 07777) != kPrivateDirMode) {
    throw std::runtime_error("control socket directory " + dir + " has mode " +
                             fmt::format("{:04o}", st.st_mode & 07777) +
                             ", expected 0700 (refusing to use it)");
  }
}

std::string untrusted_socket_dir(const std::string& socket_path) {
  if (socket_path.empty() || socket_path.front() == '@') return {};
  std::string dir = parent_directory(socket_path);
  // Symlinks resolved: the directory that holds the socket, and the one that holds that.
  if (std::unique_ptr<char, decltype(&std::free)> real(::realpath(dir.c_str(), nullptr),
                                                       &std::free);
      real) {
    dir = real.get();
  }
  struct stat st {};
  if (::stat(dir.c_str(), &st) != 0) return {};  // connect() will say what is missing
  const auto refuse = [&](const std::string& why) {
    return "the socket directory " + dir + " is " + why +
           ", so another user could have put a fake server there; refusing to use it";
  };
  if (const std::string shared = shared_write_access(st); !shared.empty()) return refuse(shared);
  if (st.st_uid == 0 || st.st_uid == ::geteuid()) return {};
  // Another user's directory is trusted only where that user could not have made it: root gave
  // it to them in a directory only root can write (RuntimeDirectory=, tmpfiles: /run/forkd of a
  // service running as user forkd). /tmp/forkd-UID made by someone else fails here.
  const std::string above = parent_directory(dir);
  struct stat up {};
  if (::stat(above.c_str(), &up) == 0 && up.st_uid == 0 && shared_write_access(up).empty()) {
    return {};
  }
  return refuse("owned by uid " + std::to_string(st.st_uid) + " in " + above +
                ", which others than root can write");
}

bool trusted_server_uid(uid_t uid) {
  return uid == 0 || uid == ::geteuid();
}

void prepare_control_socket_dir(const std::string& socket_path) {
  const std::string dir = parent_directory(socket_path);
  if (dir == private_tmp_dir(::geteuid())) {
    ensure_private_dir(dir);
    return;
  }
  make_dir(dir, kSharedDirMode);
}

}  // namespace forkd::common
