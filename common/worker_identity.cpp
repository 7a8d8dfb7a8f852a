#include "common/worker_identity.hpp"

#include <grp.h>
#include <pwd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <system_error>

#include "common/units.hpp"

namespace forkd::common {

namespace {

constexpr std::size_t kFirstBufferSize = 16384;
// Only a bound on the growth loop: real entries, even of groups with thousands of members,
// need far less.
constexpr std::size_t kMaxBufferSize = std::size_t{16} << 20;

// getpwnam_r and getgrnam_r report "no such entry" as 0 with no result, though POSIX lets
// some implementations say ENOENT or ESRCH instead.
bool means_not_found(int rc) {
  return rc == 0 || rc == ENOENT || rc == ESRCH;
}

// Calls lookup(buffer) until the buffer is large enough; returns its last result code.
template <typename Lookup>
int with_growing_buffer(Lookup lookup) {
  std::vector<char> buffer(kFirstBufferSize);
  for (;;) {
    const int rc = lookup(buffer);
    if (rc != ERANGE || buffer.size() >= kMaxBufferSize) return rc;
    buffer.resize(buffer.size() * 2);
  }
}

}  // namespace

ProcessIdentity ProcessIdentity::of_this_process() noexcept {
  return {::geteuid(), ::getegid()};
}

std::optional<UserEntry> lookup_user(const std::string& name, std::string& error) {
  error.clear();
  std::optional<UserEntry> found;
  const int rc = with_growing_buffer([&](std::vector<char>& buffer) {
    passwd entry{};
    passwd* result = nullptr;
    const int r = ::getpwnam_r(name.c_str(), &entry, buffer.data(), buffer.size(), &result);
    if (r == 0 && result != nullptr) {
      found = UserEntry{result->pw_uid, result->pw_gid, result->pw_name,
                        result->pw_dir != nullptr ? result->pw_dir : "",
                        result->pw_shell != nullptr ? result->pw_shell : ""};
    }
    return r;
  });
  if (!found && !means_not_found(rc)) error = std::generic_category().message(rc);
  return found;
}

std::optional<gid_t> lookup_group(const std::string& name, std::string& error) {
  error.clear();
  std::optional<gid_t> found;
  const int rc = with_growing_buffer([&](std::vector<char>& buffer) {
    group entry{};
    group* result = nullptr;
    const int r = ::getgrnam_r(name.c_str(), &entry, buffer.data(), buffer.size(), &result);
    if (r == 0 && result != nullptr) found = result->gr_gid;
    return r;
  });
  if (!found && !means_not_found(rc)) error = std::generic_category().message(rc);
  return found;
}

std::vector<gid_t> group_list(const std::string& user, gid_t primary) {
  const long limit = ::sysconf(_SC_NGROUPS_MAX);
  const int max_groups = limit > 0 ? static_cast<int>(std::min(limit, 65536L)) : 65536;
  int count = 64;
  std::vector<gid_t> groups;
  for (;;) {
    groups.resize(static_cast<std::size_t>(count));
    int wanted = count;
    if (::getgrouplist(user.c_str(), primary, groups.data(), &wanted) >= 0) {
      groups.resize(static_cast<std::size_t>(wanted));
      return groups;
    }
    // glibc says how many it needs; other libcs may not, so at least double.
    const int next = std::max(wanted, count * 2);
    if (count >= max_groups) {  // setgroups() would take no more than this anyway
      groups.resize(static_cast<std::size_t>(count));
      return groups;
    }
    count = std::min(next, max_groups);
  }
}

ResolvedWorkerIds resolve_worker_ids(const std::string& user, const std::string& group,
                                     const ProcessIdentity& master) {
  ResolvedWorkerIds out;
  const bool root = master.uid == 0;
  std::optional<UserEntry> user_entry;
  if (!user.empty()) {
    std::string error;
    user_entry = lookup_user(user, error);
    if (!user_entry) {
      out.user_error = error.empty() ? "no such user " + quote(user)
                                     : "cannot look up user " + quote(user) + ": " + error;
    } else if (!root && user_entry->uid != master.uid) {
      out.user_error = "forkd runs as uid " + std::to_string(master.uid) +
                       " and cannot switch to user " + quote(user) + " (uid " +
                       std::to_string(user_entry->uid) +
                       "); start it as root or remove worker.user";
    }
  }
  std::optional<gid_t> group_id;
  if (!group.empty()) {
    std::string error;
    group_id = lookup_group(group, error);
    if (!group_id) {
      out.group_error = error.empty() ? "no such group " + quote(group)
                                      : "cannot look up group " + quote(group) + ": " + error;
    } else if (!root && *group_id != master.gid) {
      out.group_error = "forkd runs as uid " + std::to_string(master.uid) + " with gid " +
                        std::to_string(master.gid) + " and cannot switch to group " + quote(group) +
                        " (gid " + std::to_string(*group_id) +
                        "); start it as root or remove worker.group";
    }
  }
  // A non-root master only ever names itself here: nothing to change, and setgroups() would
  // fail without privilege.
  if (!out.user_error.empty() || !out.group_error.empty() || !root) return out;
  if (user_entry) {
    out.uid = user_entry->uid;
    out.gid = group_id.value_or(user_entry->gid);
    out.groups = group_list(user, user_entry->gid);
    out.account_env = {{"USER", user_entry->name},
                       {"LOGNAME", user_entry->name},
                       {"HOME", user_entry->home.empty() ? "/" : user_entry->home},
                       {"SHELL", user_entry->shell.empty() ? "/bin/sh" : user_entry->shell}};
    if (group_id &&
        std::find(out.groups.begin(), out.groups.end(), *group_id) == out.groups.end()) {
      out.groups.push_back(*group_id);
    }
  } else if (group_id) {
    out.gid = group_id;
  }
  return out;
}

}  // namespace forkd::common
