#include "daemon/bind_takeover.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>

#include "common/safe_open.hpp"
#include "common/worker_program.hpp"

namespace forkd::daemon {

namespace {

constexpr const char* kLibraryName = "libforkd-takeover.so";

[[noreturn]] void refuse(const std::string& source, const std::string& message) {
  throw common::ConfigError({common::ConfigIssue{source, 0, 0, message}});
}

std::string describe(const ProgramLinkage& linkage, const std::string& program) {
  switch (linkage.kind) {
    case ProgramLinkage::Kind::dynamic:
      return program + " is dynamically linked";
    case ProgramLinkage::Kind::static_elf:
      return program + " is statically linked";
    default:
      return program + ": cannot tell how it is linked (" + linkage.detail + ")";
  }
}

}  // namespace

BindTakeover decide_bind_takeover(const TakeoverFacts& facts, const std::string& source) {
  BindTakeover out;
  const bool listening = facts.ready == common::ReadyMode::listening;
  const auto off = [&](const std::string& why) {
    if (listening) {
      refuse(source, "worker.ready: listening needs the bind takeover, which is off: " + why);
    }
    out.why = "off: " + why;
    return out;
  };
  if (!facts.exec_workers) return off("built-in apps take their listeners from forkd");
  if (facts.mode == common::InheritBind::off) return off("worker.inherit_bind is off");
  if (!facts.has_listeners) return off("no listener to take over");
  const std::string linkage = describe(facts.linkage, facts.program);
  const bool dynamic = facts.linkage.kind == ProgramLinkage::Kind::dynamic;
  if (facts.mode == common::InheritBind::on) {
    if (!dynamic) {
      refuse(source, "worker.inherit_bind: on, but " + linkage +
                         ": only a dynamically linked program loads the takeover library "
                         "(use LISTEN_FDS, or inherit_bind: off)");
    }
    if (!facts.library_problem.empty()) {
      refuse(source, "worker.inherit_bind: on, but the takeover library " + facts.library +
                         " cannot be used: " + facts.library_problem);
    }
  } else {
    if (!dynamic) return off(linkage + " (it cannot load the takeover library; use LISTEN_FDS)");
    if (!facts.library_problem.empty()) {
      return off("the takeover library " + facts.library +
                 " cannot be used: " + facts.library_problem);
    }
  }
  out.active = true;
  out.library = facts.library;
  out.why = "on: " + linkage;
  return out;
}

std::string takeover_library_path() {
  std::array<char, PATH_MAX> exe{};
  const ssize_t n = ::readlink("/proc/self/exe", exe.data(), exe.size() - 1);
  if (n <= 0) return {};
  const std::string binary(exe.data(), static_cast<std::size_t>(n));
  return common::parent_directory(common::parent_directory(binary)) + "/lib/forkd/" + kLibraryName;
}

std::string untrusted_library(const std::string& path) {
  if (path.empty()) return "its place is unknown (/proc/self/exe cannot be read)";
  if (path.find_first_of(" :") != std::string::npos) {
    return "its path has a space or a colon, which LD_PRELOAD takes as a separator";
  }
  std::array<char, PATH_MAX> real{};
  if (::realpath(path.c_str(), real.data()) == nullptr) return std::strerror(errno);
  std::string at(real.data());
  struct stat st {};
  if (::stat(at.c_str(), &st) != 0) return std::strerror(errno);
  if (!S_ISREG(st.st_mode)) return "it is " + common::file_kind(st.st_mode);
  if (const auto why = common::others_can_write(st); !why.empty()) return "it is " + why;
  while (at != "/") {
    at = common::parent_directory(at);
    if (::stat(at.c_str(), &st) != 0) return at + ": " + std::strerror(errno);
    const auto why = common::others_can_write(st);
    if (!why.empty() && (st.st_mode & S_ISVTX) == 0) return "directory " + at + " is " + why;
  }
  return {};
}

std::string unreadable_by(const std::string& path, uid_t uid, gid_t gid,
                          const std::vector<gid_t>& groups) {
  if (uid == 0) return {};
  const auto allowed = [&](const struct stat& st, mode_t owner, mode_t group, mode_t other) {
    if (st.st_uid == uid) return (st.st_mode & owner) != 0;
    if (st.st_gid == gid || std::find(groups.begin(), groups.end(), st.st_gid) != groups.end()) {
      return (st.st_mode & group) != 0;
    }
    return (st.st_mode & other) != 0;
  };
  std::array<char, PATH_MAX> real{};
  if (::realpath(path.c_str(), real.data()) == nullptr) return std::strerror(errno);
  std::string at(real.data());
  struct stat st {};
  if (::stat(at.c_str(), &st) != 0) return std::strerror(errno);
  if (!allowed(st, S_IRUSR, S_IRGRP, S_IROTH)) {
    return "uid " + std::to_string(uid) + " (worker.user) cannot read it";
  }
  while (at != "/") {
    at = common::parent_directory(at);
    if (::stat(at.c_str(), &st) != 0) return at + ": " + std::strerror(errno);
    if (!allowed(st, S_IXUSR, S_IXGRP, S_IXOTH)) {
      return "uid " + std::to_string(uid) + " (worker.user) cannot enter directory " + at;
    }
  }
  return {};
}

BindTakeover plan_bind_takeover(const common::Config& config, const std::string& library) {
  TakeoverFacts facts;
  const auto& wc = config.worker;
  facts.mode = wc.inherit_bind;
  facts.ready = wc.ready;
  facts.exec_workers = wc.app.empty();
  facts.has_listeners = !config.listen.empty();
  if (facts.exec_workers && facts.mode != common::InheritBind::off && facts.has_listeners) {
    facts.program = wc.shell.empty() ? common::resolve_worker_program(wc).path : "/bin/sh";
    if (facts.program.empty()) {
      facts.linkage.detail = "the program was not found";
      facts.program = wc.command.empty() ? "the worker program" : wc.command.front();
    } else {
      std::string judged;
      facts.linkage = program_linkage(facts.program, judged);
      if (judged != facts.program) facts.program += " (run by " + judged + ")";
    }
    // The file that was checked is the file preloaded: the resolved path, so a symbolic link on
    // the way cannot be pointed elsewhere between the check and a spawn.
    std::array<char, PATH_MAX> real{};
    facts.library = ::realpath(library.c_str(), real.data()) != nullptr ? real.data() : library;
    facts.library_problem = untrusted_library(facts.library);
    if (facts.library_problem.empty() && wc.uid && *wc.uid != ::geteuid()) {
      facts.library_problem =
          unreadable_by(facts.library, *wc.uid, wc.gid.value_or(*wc.uid), wc.groups);
    }
  }
  return decide_bind_takeover(facts, config.source);
}

common::ReadyMode effective_ready_mode(const common::Config& config, const BindTakeover& takeover) {
  if (config.worker.ready != common::ReadyMode::automatic) return config.worker.ready;
  if (!config.worker.app.empty()) return common::ReadyMode::message;
  return takeover.active ? common::ReadyMode::listening : common::ReadyMode::started;
}

std::string ready_description(common::ReadyMode mode) {
  switch (mode) {
    case common::ReadyMode::message:
      return "they send \"ready\" over IPC (ready: message)";
    case common::ReadyMode::notify:
      return "they send READY=1 to NOTIFY_SOCKET (ready: notify)";
    case common::ReadyMode::listening:
      return "they call listen() on a forkd listener (ready: listening)";
    case common::ReadyMode::started:
      return "exec succeeds (ready: started)";
    default:
      return "(auto)";
  }
}

}  // namespace forkd::daemon
