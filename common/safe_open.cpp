#include "common/safe_open.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <linux/magic.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>

namespace forkd::common {

namespace {

// Symbolic links in a chain before we give up, as the kernel's own limit (MAXSYMLINKS is 40).
constexpr int kMaxLinks = 40;

bool on_procfs(const std::string& directory) {
  struct statfs fs {};
  return ::statfs(directory.c_str(), &fs) == 0 && fs.f_type == PROC_SUPER_MAGIC;
}

}  // namespace

std::string others_can_write(const struct stat& dir) {
  if (dir.st_uid != 0 && dir.st_uid != ::geteuid()) {
    return "owned by uid " + std::to_string(dir.st_uid);
  }
  return shared_write_access(dir);
}

std::string shared_write_access(const struct stat& dir) {
  if ((dir.st_mode & S_IWOTH) != 0) return "writable by everyone";
  if ((dir.st_mode & S_IWGRP) != 0 && dir.st_gid != 0) {
    return "writable by its group (gid " + std::to_string(dir.st_gid) + ")";
  }
  return {};
}

std::string file_kind(mode_t mode) {
  switch (mode & S_IFMT) {
    case S_IFREG:
      return "a regular file";
    case S_IFDIR:
      return "a directory";
    case S_IFIFO:
      return "a FIFO";
    case S_IFSOCK:
      return "a socket";
    case S_IFCHR:
      return "a character device";
    case S_IFBLK:
      return "a block device";
    case S_IFLNK:
      return "a symbolic link";
    default:
      return "a file of unknown type";
  }
}

std::string foreign_owner(const struct stat& file) {
  if (file.st_uid == 0 || file.st_uid == ::geteuid()) return {};
  return "owned by uid " + std::to_string(file.st_uid);
}

std::string parent_directory(const std::string& path) {
  const auto slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

UniqueFd open_trusted(const std::string& path, int flags, mode_t mode, std::string& error) {
  std::string current = path;
  for (int links = 0;; ++links) {
    struct stat st {};
    if (::lstat(current.c_str(), &st) != 0 || !S_ISLNK(st.st_mode)) break;
    const std::string directory = parent_directory(current);
    // /proc's links (/dev/stdout -> /proc/self/fd/1) are the kernel's, not a user's.
    if (on_procfs(directory)) {
      UniqueFd fd(::open(current.c_str(), flags, mode));
      if (!fd) error = std::strerror(errno);
      return fd;
    }
    if (links == kMaxLinks) {
      error = "too many levels of symbolic links";
      return {};
    }
    struct stat dir {};
    if (::stat(directory.c_str(), &dir) != 0) {
      error = "cannot check directory " + directory + ": " + std::strerror(errno);
      return {};
    }
    std::array<char, 4096> target{};
    const ssize_t n = ::readlink(current.c_str(), target.data(), target.size());
    if (const std::string why = others_can_write(dir); !why.empty()) {
      error =
          fmt::format("{} a symbolic link in {}, which is {}; refusing to follow it",
                      current == path ? "is" : "leads through " + current + ",", directory, why);
      // The kubelet makes a ConfigMap or Secret volume's top directory writable by everyone and
      // mounts it read-only; its files are links through "..data".
      if (n > 0 &&
          std::string_view(target.data(), static_cast<std::size_t>(n)).starts_with("..data/")) {
        error += fmt::format(
            " (a Kubernetes ConfigMap or Secret volume: name the file as {}/{}, the kubelet's "
            "own link, which it swaps atomically on update)",
            directory, std::string_view(target.data(), static_cast<std::size_t>(n)));
      }
      return {};
    }
    if (n < 0 || static_cast<std::size_t>(n) >= target.size()) {
      error = "cannot read symbolic link " + current + ": " +
              (n < 0 ? std::strerror(errno) : "target too long");
      return {};
    }
    const std::string next(target.data(), static_cast<std::size_t>(n));
    current = next.front() == '/' ? next : fmt::format("{}/{}", directory, next);
  }
  // O_NOFOLLOW: a link swapped in after the check fails with ELOOP instead of being followed.
  UniqueFd fd(::open(current.c_str(), flags | O_NOFOLLOW, mode));
  if (!fd) {
    error = errno == ELOOP ? "became a symbolic link while it was being opened"
                           : std::string(std::strerror(errno));
  }
  return fd;
}

}  // namespace forkd::common
