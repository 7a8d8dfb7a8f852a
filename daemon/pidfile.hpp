// The master's pidfile: created without following symlinks, locked (flock) for the master's life
// so that a second forkd on the same file is refused, taken over when a dead master left it
// unlocked. Unlinking is an explicit shutdown step (remove()), never a destructor's: the
// destructor only closes the fd, which releases the lock unless a new master shares it.
//
// Hot upgrade: a flock lock belongs to the open file description, not to a process. The old
// master passes fd() to the new master as it passes the listeners (an inherited fd outside
// LISTEN_FDS, e.g. FORKD_PIDFILE_FD=N), and the new one calls adopt(): both then hold the very
// same lock, so there is no moment at which a third forkd could take the file, as there would be
// if the new master reopened it after the old one exited. When the handover is decided (the new
// master is ready), the old master calls rewrite(new_pid) — at the same moment as it sends
// MAINPID= to systemd — and then exits; its remove() leaves the file alone because the pid in it
// is no longer its own, and its close() leaves the lock to the new master. If the new master
// fails instead, nothing was rewritten and the old master carries on as the holder.
#pragma once

#include <sys/types.h>

#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>

#include "common/fd.hpp"

namespace forkd::daemon {

// Any pidfile failure, with a message naming the path. running_pid() is set when another live
// master holds the lock: the message is then "already running (pid N): pidfile PATH is locked".
class PidfileError : public std::runtime_error {
 public:
  PidfileError(const std::string& message, std::optional<pid_t> running_pid)
      : std::runtime_error(message), running_pid_(running_pid) {}
  [[nodiscard]] std::optional<pid_t> running_pid() const noexcept { return running_pid_; }

 private:
  std::optional<pid_t> running_pid_;
};

class Pidfile {
 public:
  enum class Removal { removed, not_ours, failed };

  // Opens or creates `path` (mode 0644 less the umask) with O_NOFOLLOW, refuses anything but a
  // regular file with a single link, takes the lock without waiting and writes getpid().
  // A file left by a dead master (unlocked) is taken over. Throws PidfileError.
  [[nodiscard]] static Pidfile acquire(const std::string& path);
  // Takes over an fd inherited from the previous master in a hot upgrade: checks that it is the
  // locked file that `path` still names. The content is left as it is (see rewrite()).
  // Throws PidfileError.
  [[nodiscard]] static Pidfile adopt(common::UniqueFd fd, const std::string& path);

  Pidfile(Pidfile&&) noexcept = default;
  Pidfile& operator=(Pidfile&&) noexcept = default;
  Pidfile(const Pidfile&) = delete;
  Pidfile& operator=(const Pidfile&) = delete;
  ~Pidfile() = default;

  [[nodiscard]] const std::string& path() const noexcept { return path_; }
  // The locked descriptor (close-on-exec), to be handed to the next master.
  [[nodiscard]] int fd() const noexcept { return fd_.get(); }

  // Replaces the content with "PID\n" (written, then truncated to its length, so a reader never
  // sees an empty file or a mix of two pids in the first line).
  [[nodiscard]] std::error_code rewrite(pid_t pid) noexcept;
  // The pid in the file now; nullopt when empty or unreadable.
  [[nodiscard]] std::optional<pid_t> read_pid() const noexcept;

  // Unlinks the file if it is still ours: `path` names the inode we hold and that inode holds
  // getpid(). Otherwise (replaced, or rewritten for a new master) it is left alone: not_ours.
  // `error` receives the reason of a failure. The lock is kept until destruction.
  [[nodiscard]] Removal remove(std::error_code* error = nullptr) noexcept;

 private:
  Pidfile(common::UniqueFd fd, std::string path) noexcept
      : fd_(std::move(fd)), path_(std::move(path)) {}

  common::UniqueFd fd_;
  std::string path_;
};

// The first line of a pidfile as a pid (> 0); nullopt otherwise. Pure.
[[nodiscard]] std::optional<pid_t> parse_pidfile(std::string_view text) noexcept;

}  // namespace forkd::daemon
