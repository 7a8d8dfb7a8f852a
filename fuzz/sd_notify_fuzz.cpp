// libFuzzer entry: the sd_notify datagrams a master reads from its workers (parse_notify_message).
// The properties live in checks.hpp, shared with the regression tests.
#include "fuzz/checks.hpp"
#include "fuzz/entry.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  return forkd::fuzz::run_check(&forkd::fuzz::check_sd_notify, data, size);
}
