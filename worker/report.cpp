#include "worker/report.hpp"

#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>

namespace forkd::worker {

namespace {

void write_all(const char* data, std::size_t size) noexcept {
  while (size > 0) {
    const ssize_t n = ::write(STDERR_FILENO, data, size);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    data += n;
    size -= static_cast<std::size_t>(n);
  }
}

}  // namespace

void report(std::string_view text) noexcept {
  std::array<char, 4096> line{};
  if (text.size() < line.size()) {
    std::copy(text.begin(), text.end(), line.begin());
    line[text.size()] = '\n';
    write_all(line.data(), text.size() + 1);
  } else {
    write_all(text.data(), text.size());
    write_all("\n", 1);
  }
}

}  // namespace forkd::worker
