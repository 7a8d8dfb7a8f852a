// test_worker: an exec-mode worker for the integration tests, built on the worker library.
// Each flag switches one behaviour on (see kUsage); they combine freely. It must behave only
// as its flags say, so that a test can blame the master for anything else.
#include <unistd.h>

#include <asio/steady_timer.hpp>
#include <charconv>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <optional>
#include <string>
#include <string_view>

#include "worker/apps/http_hello.hpp"
#include "worker/worker.hpp"

namespace {

constexpr int kExitUsage = 64;
constexpr int kExitCrash = 3;

constexpr std::string_view kUsage =
    "usage: test_worker [FLAGS]\n"
    "  --serve               serve http-hello on the inherited listeners\n"
    "  --ready               send {\"forkd\":\"ready\"} after setup (default)\n"
    "  --never-ready         never send ready\n"
    "  --crash-after-ms N    exit with code 3 after N ms (0: at once, before ready)\n"
    "  --exit-code N         exit code after a graceful stop (default 0)\n"
    "  --ignore-term         ignore SIGTERM and keep running\n"
    "  --echo                answer IPC messages with {\"echo\":X,\"worker\":ID,\"pid\":PID}\n"
    "  --no-heartbeat        send no heartbeats even when WATCHDOG_USEC is set\n"
    "  --flood N             send N application messages at start\n"
    "  --help                this text\n";

struct Options {
  bool serve = false;
  bool ready = true;
  std::optional<unsigned long> crash_after_ms;
  int exit_code = 0;
  bool ignore_term = false;
  bool echo = false;
  bool heartbeat = true;
  unsigned long flood = 0;
};

struct UsageError {
  std::string message;
};

unsigned long parse_count(std::string_view flag, const char* text) {
  if (text == nullptr) throw UsageError{std::string(flag) + " needs a value"};
  const std::string_view value(text);
  unsigned long n = 0;
  const auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), n);
  if (value.empty() || ec != std::errc() || end != value.data() + value.size()) {
    throw UsageError{std::string(flag) + ": not a non-negative number: " + std::string(value)};
  }
  return n;
}

Options parse_options(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg(argv[i]);
    const char* next = i + 1 < argc ? argv[i + 1] : nullptr;
    if (arg == "--serve") {
      o.serve = true;
    } else if (arg == "--ready") {
      o.ready = true;
    } else if (arg == "--never-ready") {
      o.ready = false;
    } else if (arg == "--crash-after-ms") {
      o.crash_after_ms = parse_count(arg, next);
      ++i;
    } else if (arg == "--exit-code") {
      const unsigned long code = parse_count(arg, next);
      if (code > 255) throw UsageError{"--exit-code: must be 0..255"};
      o.exit_code = static_cast<int>(code);
      ++i;
    } else if (arg == "--ignore-term") {
      o.ignore_term = true;
    } else if (arg == "--echo") {
      o.echo = true;
    } else if (arg == "--no-heartbeat") {
      o.heartbeat = false;
    } else if (arg == "--flood") {
      o.flood = parse_count(arg, next);
      ++i;
    } else if (arg == "--help" || arg == "-h") {
      static_cast<void>(std::fputs(kUsage.data(), stdout));
      std::exit(0);
    } else {
      throw UsageError{"unknown flag: " + std::string(arg)};
    }
  }
  return o;
}

[[noreturn]] void crash() {
  static_cast<void>(std::fflush(stdout));
  static_cast<void>(std::fflush(stderr));
  ::_exit(kExitCrash);
}

int run(const Options& o) {
  if (o.crash_after_ms == 0UL) crash();
  if (o.ignore_term) {
    // Worker::run respects a SIGTERM the program chose to ignore.
    struct sigaction ignore {};
    ignore.sa_handler = SIG_IGN;
    ::sigaction(SIGTERM, &ignore, nullptr);
  }

  forkd::worker::Context context = forkd::worker::Context::from_environment();
  if (!o.heartbeat) context.watchdog = std::chrono::microseconds(0);
  forkd::worker::Worker worker(std::move(context));

  std::optional<forkd::worker::apps::HelloServer> server;
  if (o.serve) server.emplace(worker);
  if (o.echo) forkd::worker::apps::echo_messages(worker);

  asio::steady_timer crash_timer(worker.io());
  if (o.crash_after_ms) {
    crash_timer.expires_after(std::chrono::milliseconds(*o.crash_after_ms));
    crash_timer.async_wait([](std::error_code ec) {
      if (!ec) crash();
    });
    // A graceful stop cancels the crash: the drain decides the exit code then.
    worker.on_stop([&crash_timer] { crash_timer.cancel(); });
  }

  if (o.ready) worker.ready();
  const unsigned id = worker.context().id;
  for (unsigned long i = 0; i < o.flood; ++i) {
    worker.send({{"flood", i}, {"worker", id}, {"pid", ::getpid()}});
  }
  const int code = worker.run();
  return code != 0 ? code : o.exit_code;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(parse_options(argc, argv));
  } catch (const UsageError& e) {
    static_cast<void>(
        std::fprintf(stderr, "test_worker: %s\n%s", e.message.c_str(), kUsage.data()));
    return kExitUsage;
  } catch (const std::exception& e) {
    static_cast<void>(std::fprintf(stderr, "test_worker: %s\n", e.what()));
    return 1;
  }
}
