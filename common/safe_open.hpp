// Opening a file that a less trusted user may have prepared for us: a symbolic link is followed
// only when the directory that holds it can be written by nobody but root and this process's
// user, since anyone else who can write there could have planted it (the CVE-2016-1247 class:
// root appending to a file a log-directory owner pointed it at).
#pragma once

#include <sys/stat.h>
#include <sys/types.h>

#include <string>

#include "common/fd.hpp"

namespace forkd::common {

// Why users other than root and ours can write the directory described by `dir` ("owned by
// uid 1000", "writable by its group", "writable by everyone"); empty when they cannot.
[[nodiscard]] std::string others_can_write(const struct stat& dir);
// The mode part of that alone: "writable by everyone", "writable by its group (gid N)" (a
// group other than root's), or empty.
[[nodiscard]] std::string shared_write_access(const struct stat& dir);

// open(path, flags | O_NOFOLLOW, mode) after resolving the symbolic links at the end of `path`
// one by one, each only if the directory holding it passes others_can_write(). On failure the
// fd is invalid and `error` says why (without the path: callers name it).
[[nodiscard]] UniqueFd open_trusted(const std::string& path, int flags, mode_t mode,
                                    std::string& error);

// "a directory", "a FIFO", ... for messages that refuse a file of the wrong kind.
[[nodiscard]] std::string file_kind(mode_t mode);

// Why a file forkd appends to or locks is not trusted: owned by a user other than root and
// ours ("owned by uid 1000"); empty when it is fine. Whoever owns a log file can replace or
// truncate what root wrote there.
[[nodiscard]] std::string foreign_owner(const struct stat& file);

// The directory part of `path` ("." for a bare name, "/" for "/x").
[[nodiscard]] std::string parent_directory(const std::string& path);

}  // namespace forkd::common
