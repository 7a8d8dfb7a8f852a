// Writing to a child's stdin pipe without SIGPIPE. A library may not change the process's
// signal dispositions, so SIGPIPE is blocked in this thread around the write and a SIGPIPE the
// write raised is consumed before unblocking; the caller just sees EPIPE.
#pragma once

#include <sys/types.h>

#include <cstddef>

namespace forkd::process {

// write(2) semantics (-1 and errno on failure), EPIPE instead of the signal. Not EINTR-retried.
[[nodiscard]] ssize_t write_without_sigpipe(int fd, const void* data, std::size_t size) noexcept;

}  // namespace forkd::process
