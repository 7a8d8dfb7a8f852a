// The forkctl program: parse the command line, talk to the control socket once, print the
// outcome and choose the exit code (0 ok, 1 refused/failed, 2 unreachable, 64 usage).
// main() only hands argv over; the request and output rules live in args.hpp and format.hpp.
#pragma once

#include <string>
#include <vector>

namespace forkd::ctl {

// args excludes argv[0]. Returns the process exit code.
[[nodiscard]] int run_forkctl(const std::vector<std::string>& args);

}  // namespace forkd::ctl
