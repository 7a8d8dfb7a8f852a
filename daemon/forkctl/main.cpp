#include <string>
#include <vector>

#include "daemon/forkctl/forkctl.hpp"

int main(int argc, char** argv) {
  std::vector<std::string> args;
  for (int i = 1; i < argc; ++i) args.emplace_back(argv[i]);  // NOLINT: argv is an array
  return forkd::ctl::run_forkctl(args);
}
