// Where this process's cgroup files are, whatever the layout: cgroup v2 (unified), v1 (one
// hierarchy per controller group) or both (hybrid), mounted wherever /proc/self/mountinfo says,
// and seen from inside a container whose mount shows only part of a hierarchy. Pure text
// parsing: the caller reads the two /proc files.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace forkd::daemon {

// One cgroup filesystem mount from /proc/self/mountinfo.
struct CgroupMount {
  int version = 2;                       // 1 or 2
  std::vector<std::string> controllers;  // v1: from the super options ("cpu", "cpuacct", ...)
  std::string root;                      // the part of the hierarchy mounted here ("/" or deeper)
  std::string mount_point;               // octal escapes (\040) decoded
};

// This process's membership in one hierarchy, from a /proc/self/cgroup line
// ("4:memory:/a/b", "2:cpu,cpuacct:/x", "0::/a" for v2).
struct CgroupMembership {
  int hierarchy = 0;
  std::vector<std::string> controllers;  // empty for v2
  std::string path;
};

// A cgroup directory to read limits from, and the directory the walk up stops at (the mount
// point: what lies above is not visible to us).
struct CgroupDir {
  int version = 2;
  std::string dir;
  std::string top;
};

[[nodiscard]] std::vector<CgroupMount> parse_cgroup_mounts(std::string_view mountinfo);
[[nodiscard]] std::vector<CgroupMembership> parse_cgroup_memberships(std::string_view proc_cgroup);

// The directories holding `controller`'s files for this process: the v1 hierarchy that carries
// the controller, and the v2 hierarchy (whose files exist only where the controller is enabled;
// the caller's read simply finds none). Both may be returned on a hybrid host.
[[nodiscard]] std::vector<CgroupDir> cgroup_dirs_for(const std::vector<CgroupMount>& mounts,
                                                     const std::vector<CgroupMembership>& members,
                                                     std::string_view controller);

// `dir`, then each parent up to and including `top`.
[[nodiscard]] std::vector<std::string> cgroup_walk(const CgroupDir& dir);

}  // namespace forkd::daemon
