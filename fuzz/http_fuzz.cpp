// libFuzzer entry: the HTTP/1.x request parser of http-hello and the metrics endpoint
// (common/http.hpp), pipelined and chunked. The properties live in checks.hpp, shared with the
// regression tests.
#include "fuzz/checks.hpp"
#include "fuzz/entry.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  return forkd::fuzz::run_check(&forkd::fuzz::check_http, data, size);
}
