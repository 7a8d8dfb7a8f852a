// libFuzzer entry: the newline framing of IPC and control (common::LineDecoder) under any chunking.
// The properties live in checks.hpp, shared with the regression tests.
#include "fuzz/checks.hpp"
#include "fuzz/entry.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  return forkd::fuzz::run_check(&forkd::fuzz::check_ndjson, data, size);
}
