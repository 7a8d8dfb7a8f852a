// Resolving worker.user / worker.group to the ids a worker runs with, once per configuration
// load (start-up, --check-config, every reload): the user database is never asked per spawn, so
// a name that stops resolving cannot make a worker start as the master's user. Lookups only:
// nothing here changes ids (child_setup applies them) or knows about YAML positions.
#pragma once

#include <sys/types.h>

#include <map>
#include <optional>
#include <string>
#include <vector>

namespace forkd::common {

// The ids the master runs as, against which worker.user/group are checked.
struct ProcessIdentity {
  uid_t uid = 0;  // effective uid
  gid_t gid = 0;  // effective gid
  [[nodiscard]] static ProcessIdentity of_this_process() noexcept;
};

// What a worker is switched to, or why it cannot be. Without uid and gid the worker keeps the
// master's identity: nothing was asked, or a non-root master named its own user/group.
struct ResolvedWorkerIds {
  std::optional<uid_t> uid;
  std::optional<gid_t> gid;
  std::vector<gid_t> groups;  // supplementary groups; filled whenever uid is
  // HOME, USER, LOGNAME and SHELL of the user switched to, as systemd sets them for User=:
  // filled whenever uid is, so a worker never sees the master's HOME=/root.
  std::map<std::string, std::string> account_env;
  std::string user_error;   // "" or why worker.user cannot be applied
  std::string group_error;  // "" or why worker.group cannot be applied
};

// `user` (may be ""): its uid, its primary gid and every group it is a member of. `group` (may
// be ""): the gid, also added to the supplementary groups when there is a user; alone it sets the
// gid only. A non-root `master` can switch to nothing but itself: another user or a gid other
// than its own is an error, its own means nothing to change.
[[nodiscard]] ResolvedWorkerIds resolve_worker_ids(const std::string& user,
                                                   const std::string& group,
                                                   const ProcessIdentity& master);

struct UserEntry {
  uid_t uid = 0;
  gid_t gid = 0;  // primary group
  std::string name;
  std::string home;
  std::string shell;
};

// getpwnam_r/getgrnam_r with a buffer that grows on ERANGE. nullopt with `error` "" means no
// such entry; a failed lookup (NSS unreachable, ...) leaves its errno text in `error`.
[[nodiscard]] std::optional<UserEntry> lookup_user(const std::string& name, std::string& error);
[[nodiscard]] std::optional<gid_t> lookup_group(const std::string& name, std::string& error);
// getgrouplist with a growing list: `primary` and every group that lists `user` as a member.
[[nodiscard]] std::vector<gid_t> group_list(const std::string& user, gid_t primary);

}  // namespace forkd::common
