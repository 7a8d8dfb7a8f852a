#include "daemon/pidfile.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <charconv>
#include <cstring>

#include "common/safe_open.hpp"

namespace forkd::daemon {
namespace {

// A pidfile that keeps being unlinked under us between open and lock means something is
// fighting over it; give up rather than spin.
constexpr int kMaxAttempts = 8;
constexpr mode_t kPidfileMode = 0644;

[[noreturn]] void fail(const std::string& path, const std::string& what, int err) {
  throw PidfileError("pidfile " + path + ": " + what + ": " + std::strerror(err), std::nullopt);
}

[[noreturn]] void refuse(const std::string& path, const std::string& why) {
  throw PidfileError("pidfile " + path + ": " + why, std::nullopt);
}

bool same_inode(const struct stat& a, const struct stat& b) noexcept {
  return a.st_dev == b.st_dev && a.st_ino == b.st_ino;
}

// Regular file with one link: not a device or FIFO someone planted, and not a hard link to a
// file elsewhere that truncating and writing would damage.
void check_file_kind(const std::string& path, const struct stat& st) {
  if (!S_ISREG(st.st_mode)) refuse(path, "not a regular file; refusing it");
  if (st.st_nlink > 1) refuse(path, "has other hard links; refusing it");
}

// As systemd does for PIDFile=: a file another user owns, in a directory others can write,
// may hold whatever pid they chose, and a master that trusted it could signal or lock out
// the wrong process.
void check_owner(const std::string& path, const struct stat& st) {
  const std::string owner = common::foreign_owner(st);
  if (owner.empty()) return;
  struct stat dir {};
  const std::string directory = common::parent_directory(path);
  if (::stat(directory.c_str(), &dir) != 0) fail(path, "cannot check " + directory, errno);
  if (const std::string why = common::others_can_write(dir); !why.empty()) {
    refuse(path, "is " + owner + " in " + directory + ", which is " + why + "; refusing it");
  }
}

std::optional<pid_t> read_pid_from(int fd) noexcept {
  std::array<char, 64> buffer{};
  ssize_t got = -1;
  do {
    got = ::pread(fd, buffer.data(), buffer.size(), 0);
  } while (got < 0 && errno == EINTR);
  if (got <= 0) return std::nullopt;
  return parse_pidfile({buffer.data(), static_cast<std::size_t>(got)});
}

// flock() without waiting: another holder means another forkd, named by the pid it wrote.
void lock_or_refuse(int fd, const std::string& path) {
  if (::flock(fd, LOCK_EX | LOCK_NB) == 0) return;
  const int err = errno;
  if (err != EWOULDBLOCK) fail(path, "cannot lock", err);
  const auto pid = read_pid_from(fd);
  const std::string who = pid ? "pid " + std::to_string(*pid) : "pid unknown";
  throw PidfileError("already running (" + who + "): pidfile " + path + " is locked", pid);
}

// The lock is held through fd; true when `path` still names the same inode, which is not the
// case when the previous holder unlinked the file between our open() and our flock().
bool path_names(const std::string& path, int fd, struct stat& held) {
  if (::fstat(fd, &held) != 0) fail(path, "fstat", errno);
  struct stat now {};
  if (::lstat(path.c_str(), &now) != 0) {
    if (errno == ENOENT) return false;
    fail(path, "lstat", errno);
  }
  return same_inode(held, now);
}

}  // namespace

std::optional<pid_t> parse_pidfile(std::string_view text) noexcept {
  const std::size_t newline = text.find('\n');
  std::string_view line = text.substr(0, newline);
  while (!line.empty() && (line.back() == ' ' || line.back() == '\t' || line.back() == '\r')) {
    line.remove_suffix(1);
  }
  pid_t pid = 0;
  const auto [end, error] = std::from_chars(line.data(), line.data() + line.size(), pid);
  if (error != std::errc{} || end != line.data() + line.size() || pid <= 0) return std::nullopt;
  return pid;
}

Pidfile Pidfile::acquire(const std::string& path) {
  if (path.empty()) refuse(path, "empty path");
  for (int attempt = 0; attempt < kMaxAttempts; ++attempt) {
    // O_NOFOLLOW: a symlink planted at the path is refused (ELOOP), never followed.
    // O_NONBLOCK: opening a FIFO planted there must not hang start-up.
    common::UniqueFd fd(::open(path.c_str(),
                               O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY | O_NONBLOCK,
                               kPidfileMode));
    if (!fd) {
      const int err = errno;
      if (err == ELOOP) refuse(path, "is a symbolic link; refusing it");
      fail(path, "cannot open", err);
    }
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0) fail(path, "fstat", errno);
    check_file_kind(path, st);
    check_owner(path, st);
    lock_or_refuse(fd.get(), path);
    if (!path_names(path, fd.get(), st)) continue;  // lost a race with a remove(): retry
    check_file_kind(path, st);
    Pidfile pidfile(std::move(fd), path);
    if (const auto error = pidfile.rewrite(::getpid())) fail(path, "cannot write", error.value());
    return pidfile;
  }
  refuse(path, "keeps being replaced while it is being locked");
}

Pidfile Pidfile::adopt(common::UniqueFd fd, const std::string& path) {
  if (!fd) refuse(path, "no inherited descriptor to adopt");
  struct stat st {};
  if (!path_names(path, fd.get(), st)) {
    refuse(path, "the inherited descriptor is not the file the path names");
  }
  check_file_kind(path, st);
  // On the description we share with the previous master this succeeds at once; on any other
  // description some other process holds the lock and it fails, as it should.
  lock_or_refuse(fd.get(), path);
  if (const auto error = common::set_cloexec(fd.get(), true)) {
    fail(path, "fcntl FD_CLOEXEC", error.value());
  }
  return {std::move(fd), path};
}

std::error_code Pidfile::rewrite(pid_t pid) noexcept {
  std::array<char, 32> text{};
  const auto [end, error] = std::to_chars(text.data(), text.data() + text.size() - 1, pid);
  if (error != std::errc{}) return std::make_error_code(error);
  *end = '\n';
  const auto length = static_cast<std::size_t>(end + 1 - text.data());
  std::size_t written = 0;
  while (written < length) {
    const ssize_t n =
        ::pwrite(fd_.get(), text.data() + written, length - written, static_cast<off_t>(written));
    if (n < 0) {
      if (errno == EINTR) continue;
      return common::last_error();
    }
    written += static_cast<std::size_t>(n);
  }
  if (::ftruncate(fd_.get(), static_cast<off_t>(length)) != 0) return common::last_error();
  return {};
}

std::optional<pid_t> Pidfile::read_pid() const noexcept {
  return read_pid_from(fd_.get());
}

Pidfile::Removal Pidfile::remove(std::error_code* error) noexcept {
  struct stat held {};
  struct stat now {};
  if (::fstat(fd_.get(), &held) != 0 || ::lstat(path_.c_str(), &now) != 0) {
    if (errno == ENOENT) return Removal::not_ours;
    if (error != nullptr) *error = common::last_error();
    return Removal::failed;
  }
  if (!same_inode(held, now) || read_pid() != ::getpid()) return Removal::not_ours;
  if (::unlink(path_.c_str()) != 0) {
    if (error != nullptr) *error = common::last_error();
    return Removal::failed;
  }
  return Removal::removed;
}

}  // namespace forkd::daemon
