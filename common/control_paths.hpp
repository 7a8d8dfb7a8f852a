// Where the control socket lives when the configuration leaves control.socket empty, and the
// creation of its parent directory. Shared by forkd and forkctl so both find the same path.
// It never touches the socket itself: binding and stale-socket handling are the server's job.
#pragma once

#include <sys/types.h>

#include <string>

namespace forkd::common {

// /run/forkd/forkd.sock for uid 0; else $XDG_RUNTIME_DIR/forkd.sock when that is set and
// non-empty; else /tmp/forkd-UID/forkd.sock. Uses the effective uid.
[[nodiscard]] std::string default_control_socket();
// The same rule with its inputs spelled out (xdg_runtime_dir may be null).
[[nodiscard]] std::string default_control_socket_for(uid_t uid, const char* xdg_runtime_dir);

// Creates the socket's parent directory when it is missing: 0700 for /tmp/forkd-UID (which
// then gets the checks of ensure_private_dir, since /tmp is world-writable), 0755 for any
// other (such as /run/forkd). Only the last component is created. Throws
// std::system_error / std::runtime_error naming the path.
void prepare_control_socket_dir(const std::string& socket_path);

// Creates `dir` with mode 0700, or accepts it when it already is a directory (not a symlink:
// lstat) owned by the effective uid with mode exactly 0700; anything else throws
// std::runtime_error naming the path, since another user could have planted it.
void ensure_private_dir(const std::string& dir);

// Why forkctl must not talk to the server at `socket_path`, or "" when it may: whoever could
// have put a fake server there would read what we send and forge what we print (tmux refuses
// such a directory too). The directory (symlinks resolved) must not be writable by its group
// or by everyone, and must be owned by root or us, or by a user who could not have made it:
// root gave it to them in a directory only root can write (/run/forkd of a service running as
// user forkd). Abstract names ("@x") have no directory: see trusted_server_uid.
[[nodiscard]] std::string untrusted_socket_dir(const std::string& socket_path);
// A server uid forkctl accepts on an abstract socket: root or our own.
[[nodiscard]] bool trusted_server_uid(uid_t uid);

}  // namespace forkd::common
