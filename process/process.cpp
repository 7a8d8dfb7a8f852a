#include "process/process.hpp"

#include <asio/post.hpp>
#include <utility>

#include "process/exit_watch.hpp"

namespace forkd::process {

using common::ExitStatus;
using common::UniqueFd;

struct ChildProcess::Impl {
  Impl(asio::io_context& context, pid_t child) : io(context), pid(child) {}
  Impl(const Impl&) = delete;
  Impl& operator=(const Impl&) = delete;
  Impl(Impl&&) = delete;
  Impl& operator=(Impl&&) = delete;

  ~Impl() {
    // Our ends close first: a child blocked writing to us gets EPIPE rather than hanging.
    ipc.reset();
    stdio.clear();
    const auto active = watcher.lock();
    if (!active) return;  // reaped already
    active->clear_handlers();
    if (disowned) {
      active->handle().disown();
      return;
    }
    [[maybe_unused]] const auto ec = active->handle().send_signal(SIGKILL);
    active->reap_within(PidHandle::kReapOnDestroyLimit);
  }

  asio::io_context& io;
  pid_t pid;
  // The watcher keeps itself alive while it waits; the record outlives it.
  std::weak_ptr<ExitWatcher> watcher;
  ExitWatcher::Record record = std::make_shared<std::optional<ExitStatus>>();
  std::vector<std::unique_ptr<asio::posix::stream_descriptor>> stdio;
  std::unique_ptr<IpcChannel> ipc;
  bool disowned = false;
};

ChildProcess::ChildProcess(std::unique_ptr<Impl> impl) noexcept : impl_(std::move(impl)) {}
ChildProcess::ChildProcess(ChildProcess&&) noexcept = default;
ChildProcess& ChildProcess::operator=(ChildProcess&&) noexcept = default;
ChildProcess::~ChildProcess() = default;

pid_t ChildProcess::pid() const noexcept {
  return impl_ ? impl_->pid : -1;
}

asio::posix::stream_descriptor* ChildProcess::stdio(std::size_t index) noexcept {
  if (!impl_ || index >= impl_->stdio.size()) return nullptr;
  return impl_->stdio[index].get();
}

IpcChannel* ChildProcess::ipc() noexcept {
  return impl_ ? impl_->ipc.get() : nullptr;
}

std::error_code ChildProcess::kill(int signo) noexcept {
  if (impl_) {
    if (const auto active = impl_->watcher.lock()) return active->handle().send_signal(signo);
  }
  return std::make_error_code(std::errc::no_such_process);
}

void ChildProcess::async_wait(ExitHandler handler) {
  if (!impl_) return;
  if (impl_->record->has_value()) {
    asio::post(impl_->io,
               [handler = std::move(handler), exit = **impl_->record] { handler(exit); });
    return;
  }
  if (const auto active = impl_->watcher.lock()) active->add_handler(std::move(handler));
}

std::optional<ExitStatus> ChildProcess::exit_status() const {
  return impl_ ? *impl_->record : std::nullopt;
}

void ChildProcess::disown() noexcept {
  if (impl_) impl_->disowned = true;
}

ChildProcess spawn(asio::io_context& io, const std::string& file,
                   const std::vector<std::string>& args, const SpawnOptions& options) {
  StartedChild started = start_child(file, args, options);
  auto impl = std::make_unique<ChildProcess::Impl>(io, started.handle.pid());
  impl->watcher = ExitWatcher::start(io, std::move(started.handle), impl->record);
  impl->stdio.resize(started.parent_ends.size());
  for (std::size_t i = 0; i < started.parent_ends.size(); ++i) {
    UniqueFd& end = started.parent_ends[i];
    if (!end) continue;
    if (static_cast<int>(i) == started.ipc_index) {
      impl->ipc = std::make_unique<IpcChannel>(io, std::move(end), options.max_message);
      continue;
    }
    impl->stdio[i] = std::make_unique<asio::posix::stream_descriptor>(io, end.get());
    [[maybe_unused]] const int owned_by_asio = end.release();
  }
  return ChildProcess(std::move(impl));
}

}  // namespace forkd::process
