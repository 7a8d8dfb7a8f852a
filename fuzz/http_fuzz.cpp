// libFuzzer entry: http-hello's HTTP/1.x request parser (worker/http_parser.hpp), pipelined and
// chunked. The properties live in checks.hpp, shared with the regression tests.
#include "fuzz/checks.hpp"
#include "fuzz/entry.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  return forkd::fuzz::run_check(&forkd::fuzz::check_http, data, size);
}
