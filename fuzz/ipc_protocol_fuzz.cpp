// libFuzzer entry: the "forkd" envelope of a worker's IPC line (common::ipc::decode).
// The properties live in checks.hpp, shared with the regression tests.
#include "fuzz/checks.hpp"
#include "fuzz/entry.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  return forkd::fuzz::run_check(&forkd::fuzz::check_ipc_protocol, data, size);
}
