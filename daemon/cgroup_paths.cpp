#include "daemon/cgroup_paths.hpp"

#include <algorithm>
#include <charconv>

namespace forkd::daemon {

namespace {

std::vector<std::string_view> split(std::string_view text, char separator) {
  std::vector<std::string_view> parts;
  for (;;) {
    const auto at = text.find(separator);
    parts.push_back(text.substr(0, at));
    if (at == std::string_view::npos) return parts;
    text.remove_prefix(at + 1);
  }
}

std::vector<std::string_view> lines(std::string_view text) {
  std::vector<std::string_view> out;
  for (const auto line : split(text, '\n'))
    if (!line.empty()) out.push_back(line);
  return out;
}

// mountinfo writes space, tab, newline and backslash in paths as \ooo.
std::string unescape_octal(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '\\' && i + 3 < text.size()) {
      const auto digits = text.substr(i + 1, 3);
      if (std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '7'; })) {
        out.push_back(static_cast<char>(((digits[0] - '0') << 6) | ((digits[1] - '0') << 3) |
                                        (digits[2] - '0')));
        i += 3;
        continue;
      }
    }
    out.push_back(text[i]);
  }
  return out;
}

bool names_controller(const std::vector<std::string>& controllers, std::string_view controller) {
  return std::find(controllers.begin(), controllers.end(), controller) != controllers.end();
}

// A kernel path that climbs out of the cgroup namespace ("/../..") is not under any mount root.
bool climbs(std::string_view path) {
  const auto parts = split(path, '/');
  return std::any_of(parts.begin(), parts.end(),
                     [](std::string_view part) { return part == ".."; });
}

// The suffix of `path` below `root`, or nullopt when `path` does not lie under it.
std::optional<std::string_view> below(std::string_view path, std::string_view root) {
  if (climbs(path)) return std::nullopt;
  if (root == "/") return path == "/" ? std::string_view{} : path;
  if (path == root) return std::string_view{};
  if (path.starts_with(root) && path.size() > root.size() && path[root.size()] == '/')
    return path.substr(root.size());
  return std::nullopt;
}

std::optional<CgroupDir> locate(const std::vector<CgroupMount>& mounts,
                                const CgroupMembership& member, int version,
                                std::string_view controller) {
  const CgroupMount* best = nullptr;
  std::optional<std::string_view> best_suffix;
  for (const auto& mount : mounts) {
    if (mount.version != version) continue;
    if (version == 1 && !names_controller(mount.controllers, controller)) continue;
    const auto suffix = below(member.path, mount.root);
    // Prefer a mount that shows our own cgroup, the deepest such root first (bind mounts).
    if (suffix && (!best_suffix || mount.root.size() > best->root.size())) {
      best = &mount;
      best_suffix = suffix;
    } else if (best == nullptr) {
      best = &mount;
    }
  }
  if (best == nullptr) return std::nullopt;
  // A container that sees only its own part of the hierarchy, mounted at the mount point, but
  // whose /proc/self/cgroup still names the host's path: its cgroup is the mount point itself.
  std::string dir = best->mount_point;
  if (best_suffix) dir += *best_suffix;
  return CgroupDir{version, dir, best->mount_point};
}

}  // namespace

std::vector<CgroupMount> parse_cgroup_mounts(std::string_view mountinfo) {
  std::vector<CgroupMount> mounts;
  for (const auto line : lines(mountinfo)) {
    const auto dash = line.find(" - ");
    if (dash == std::string_view::npos) continue;
    const auto before = split(line.substr(0, dash), ' ');
    const auto after = split(line.substr(dash + 3), ' ');
    if (before.size() < 5 || after.size() < 3) continue;
    CgroupMount mount;
    if (after[0] == "cgroup2") {
      mount.version = 2;
    } else if (after[0] == "cgroup") {
      mount.version = 1;
      for (const auto option : split(after[2], ',')) {
        if (option == "rw" || option == "ro" || option.find('=') != std::string_view::npos ||
            option == "clone_children" || option == "noprefix" || option == "xattr" ||
            option == "cpuset_v2_mode") {
          continue;
        }
        mount.controllers.emplace_back(option);
      }
    } else {
      continue;
    }
    mount.root = unescape_octal(before[3]);
    mount.mount_point = unescape_octal(before[4]);
    mounts.push_back(std::move(mount));
  }
  return mounts;
}

std::vector<CgroupMembership> parse_cgroup_memberships(std::string_view proc_cgroup) {
  std::vector<CgroupMembership> members;
  for (const auto line : lines(proc_cgroup)) {
    const auto first = line.find(':');
    if (first == std::string_view::npos) continue;
    const auto second = line.find(':', first + 1);
    if (second == std::string_view::npos) continue;
    CgroupMembership member;
    const auto id = line.substr(0, first);
    if (std::from_chars(id.data(), id.data() + id.size(), member.hierarchy).ec != std::errc())
      continue;
    const auto names = line.substr(first + 1, second - first - 1);
    if (!names.empty()) {
      for (const auto name : split(names, ',')) member.controllers.emplace_back(name);
    }
    member.path = std::string(line.substr(second + 1));
    if (member.path.empty() || member.path.front() != '/') continue;
    members.push_back(std::move(member));
  }
  return members;
}

std::vector<CgroupDir> cgroup_dirs_for(const std::vector<CgroupMount>& mounts,
                                       const std::vector<CgroupMembership>& members,
                                       std::string_view controller) {
  std::vector<CgroupDir> dirs;
  for (const auto& member : members) {
    const bool unified = member.hierarchy == 0 && member.controllers.empty();
    if (!unified && !names_controller(member.controllers, controller)) continue;
    if (auto dir = locate(mounts, member, unified ? 2 : 1, controller)) dirs.push_back(*dir);
  }
  return dirs;
}

std::vector<std::string> cgroup_walk(const CgroupDir& dir) {
  std::vector<std::string> out;
  std::string current = dir.dir;
  for (;;) {
    out.push_back(current);
    if (current == dir.top || current.size() <= dir.top.size()) return out;
    const auto slash = current.rfind('/');
    if (slash == std::string::npos || slash == 0) return out;
    current.resize(slash);
  }
}

}  // namespace forkd::daemon
