// Whether a configuration's workers get the bind takeover library (SPEC "Unchanged programs")
// and so what `ready: auto` means for them. Decided when a configuration is loaded or reloaded,
// never per spawn; a configuration that asks for what cannot be (the takeover forced on for a
// program that cannot load it, `ready: listening` without it) is refused there.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include "common/config.hpp"
#include "daemon/program_linkage.hpp"

namespace forkd::daemon {

struct BindTakeover {
  bool active = false;
  std::string library;  // what LD_PRELOAD gets when active
  std::string why;      // for the log: "on: /usr/bin/node is dynamically linked"
};

// What the decision is made of, gathered from the file system by plan_bind_takeover().
struct TakeoverFacts {
  common::InheritBind mode = common::InheritBind::automatic;
  common::ReadyMode ready = common::ReadyMode::automatic;
  bool exec_workers = false;
  bool has_listeners = false;
  std::string program;  // what is exec'd ("/bin/sh" for worker.shell)
  ProgramLinkage linkage;
  std::string library;
  std::string library_problem;  // "" when the library can be preloaded
};

// Pure. Throws common::ConfigError (in `source`) for a configuration that cannot work.
[[nodiscard]] BindTakeover decide_bind_takeover(const TakeoverFacts& facts,
                                                const std::string& source);

// The library beside the running binary, as built and as installed:
// <dir of forkd>/../lib/forkd/libforkd-takeover.so.
[[nodiscard]] std::string takeover_library_path();

// Why `path` must not be preloaded into workers: "" when it may. It and every directory above
// it must belong to root or to us and be writable by nobody else (a sticky directory such as
// /tmp is fine: others cannot replace what we own there); else whoever can write there runs
// code in every worker.
[[nodiscard]] std::string untrusted_library(const std::string& path);

// Why the worker's user cannot load `path` (ld.so would skip it with a warning and the program
// would run without the takeover): "" when it can. Judged from the mode bits, as the kernel
// would for `uid` with `gid` and `groups`.
[[nodiscard]] std::string unreadable_by(const std::string& path, uid_t uid, gid_t gid,
                                        const std::vector<gid_t>& groups);

// Gathers the facts and decides. Throws common::ConfigError.
[[nodiscard]] BindTakeover plan_bind_takeover(const common::Config& config,
                                              const std::string& library = takeover_library_path());

// `ready: auto` made concrete: message for built-in apps; for exec workers listening with the
// takeover, else started.
[[nodiscard]] common::ReadyMode effective_ready_mode(const common::Config& config,
                                                     const BindTakeover& takeover);

// "the program calls listen() on a forkd listener", ... for the log.
[[nodiscard]] std::string ready_description(common::ReadyMode mode);

}  // namespace forkd::daemon
