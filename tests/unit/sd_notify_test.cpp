#include "common/sd_notify.hpp"
#include "tests/unit/temp_dir.hpp"

#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <optional>
#include <stdexcept>
#include <string>

#include "common/fd.hpp"

namespace {

using forkd::common::notify;
using forkd::common::notify_to;
using forkd::common::parse_notify_message;
using forkd::common::UniqueFd;
using forkd::common::watchdog_interval;
using forkd::common::watchdog_interval_from;
using Fields = std::vector<std::pair<std::string, std::string>>;
using std::chrono::microseconds;

using forkd::test::TempDir;

// A datagram socket bound where NOTIFY_SOCKET points, like systemd's (or forkd's per-worker) end.
class Receiver {
 public:
  // "/path" or "@abstract".
  explicit Receiver(std::string address) : address_(std::move(address)) {
    fd_ = UniqueFd(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    if (!fd_) throw forkd::common::system_error_from_errno("socket");
    sockaddr_un sa{};
    sa.sun_family = AF_UNIX;
    std::memcpy(sa.sun_path, address_.data(), address_.size());
    if (sa.sun_path[0] == '@') sa.sun_path[0] = '\0';
    const auto length = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + address_.size());
    if (::bind(fd_.get(), reinterpret_cast<const sockaddr*>(&sa), length) != 0) {
      throw forkd::common::system_error_from_errno("bind " + address_);
    }
  }

  [[nodiscard]] const std::string& address() const { return address_; }
  void close() { fd_.reset(); }

  // The next datagram, or nullopt after a generous timeout.
  [[nodiscard]] std::optional<std::string> receive() const {
    pollfd p{fd_.get(), POLLIN, 0};
    if (::poll(&p, 1, 5000) != 1) return std::nullopt;
    std::array<char, forkd::common::kNotifyMessageMax + 1> buffer{};
    const ssize_t got = ::recv(fd_.get(), buffer.data(), buffer.size(), 0);
    if (got < 0) return std::nullopt;
    return std::string(buffer.data(), static_cast<std::size_t>(got));
  }

 private:
  std::string address_;
  UniqueFd fd_;
};

std::string unique_abstract_name() {
  static int counter = 0;
  return "@forkd-notify-test-" + std::to_string(::getpid()) + "-" + std::to_string(++counter);
}

// Sets (or unsets, with nullptr) an environment variable for one test and restores it after.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old;
    if (value != nullptr) {
      ::setenv(name, value, 1);
    } else {
      ::unsetenv(name);
    }
  }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv(ScopedEnv&&) = delete;
  ScopedEnv& operator=(ScopedEnv&&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;
  ~ScopedEnv() {
    if (old_) {
      ::setenv(name_.c_str(), old_->c_str(), 1);
    } else {
      ::unsetenv(name_.c_str());
    }
  }

 private:
  std::string name_;
  std::optional<std::string> old_;
};

TEST(SdNotifyTest, SendsTheExactStateToAPathSocket) {
  const TempDir dir;
  const Receiver receiver(dir.path() + "/notify.sock");
  EXPECT_EQ(notify_to(receiver.address(), "READY=1\nSTATUS=8/8 workers ready, generation 3"), 1);
  EXPECT_EQ(receiver.receive(), "READY=1\nSTATUS=8/8 workers ready, generation 3");
}

TEST(SdNotifyTest, SendsToAnAbstractSocket) {
  const Receiver receiver(unique_abstract_name());
  EXPECT_EQ(notify_to(receiver.address(), "WATCHDOG=1"), 1);
  EXPECT_EQ(receiver.receive(), "WATCHDOG=1");
}

TEST(SdNotifyTest, NotifyReadsNotifySocketAndKeepsTheOrder) {
  const Receiver receiver(unique_abstract_name());
  const ScopedEnv env("NOTIFY_SOCKET", receiver.address().c_str());
  ASSERT_EQ(notify("RELOADING=1\nMONOTONIC_USEC=1"), 1);
  ASSERT_EQ(notify("READY=1"), 1);
  ASSERT_EQ(notify("STOPPING=1"), 1);
  EXPECT_EQ(receiver.receive(), "RELOADING=1\nMONOTONIC_USEC=1");
  EXPECT_EQ(receiver.receive(), "READY=1");
  EXPECT_EQ(receiver.receive(), "STOPPING=1");
}

TEST(SdNotifyTest, NotUnderSystemdIsZero) {
  {
    const ScopedEnv env("NOTIFY_SOCKET", nullptr);
    EXPECT_EQ(notify("READY=1"), 0);
  }
  {
    const ScopedEnv env("NOTIFY_SOCKET", "");
    EXPECT_EQ(notify("READY=1"), 0);
  }
  EXPECT_EQ(notify_to("", "READY=1"), 0);
}

TEST(SdNotifyTest, ErrorsAreNegativeErrno) {
  const TempDir dir;
  EXPECT_EQ(notify_to("relative/notify.sock", "READY=1"), -EAFNOSUPPORT);
  EXPECT_EQ(notify_to("/" + std::string(200, 'x'), "READY=1"), -E2BIG);
  EXPECT_EQ(notify_to(dir.path() + "/missing.sock", "READY=1"), -ENOENT);
  EXPECT_EQ(notify_to("@", "READY=1"), -EINVAL);
  Receiver receiver(dir.path() + "/notify.sock");
  EXPECT_EQ(notify_to(receiver.address(), ""), -EINVAL);
  receiver.close();  // the path stays, nobody listens
  EXPECT_EQ(notify_to(receiver.address(), "READY=1"), -ECONNREFUSED);
}

TEST(SdNotifyTest, ParsesKeyValueLines) {
  EXPECT_EQ(parse_notify_message("READY=1"), (Fields{{"READY", "1"}}));
  EXPECT_EQ(parse_notify_message("READY=1\nSTATUS=serving, 2 clients\n"),
            (Fields{{"READY", "1"}, {"STATUS", "serving, 2 clients"}}));
  EXPECT_EQ(parse_notify_message("STATUS=\nMAINPID=42"),
            (Fields{{"STATUS", ""}, {"MAINPID", "42"}}));
  EXPECT_EQ(parse_notify_message("X_CUSTOM=a=b"), (Fields{{"X_CUSTOM", "a=b"}}));
}

TEST(SdNotifyTest, SkipsInvalidLines) {
  EXPECT_TRUE(parse_notify_message("").empty());
  EXPECT_TRUE(parse_notify_message("\n\n").empty());
  EXPECT_EQ(parse_notify_message("garbage\nREADY=1\n=1\n1ABC=2\nBAD KEY=3\nWATCHDOG=1"),
            (Fields{{"READY", "1"}, {"WATCHDOG", "1"}}));
  using namespace std::string_literals;
  EXPECT_EQ(parse_notify_message("READY=1\0x\nSTATUS=ok"s), (Fields{{"STATUS", "ok"}}));
  EXPECT_EQ(parse_notify_message(std::string(10000, 'A') + "=1\nREADY=1").back(),
            (std::pair<std::string, std::string>{"READY", "1"}));
}

TEST(SdNotifyTest, WatchdogIntervalRules) {
  EXPECT_EQ(watchdog_interval_from("30000000", nullptr, 42), microseconds(30'000'000));
  EXPECT_EQ(watchdog_interval_from("500000", "42", 42), microseconds(500'000));
  EXPECT_FALSE(watchdog_interval_from("500000", "43", 42));  // meant for another process
  EXPECT_FALSE(watchdog_interval_from("500000", "", 42));
  EXPECT_FALSE(watchdog_interval_from("500000", "x", 42));
  EXPECT_FALSE(watchdog_interval_from(nullptr, "42", 42));
  EXPECT_FALSE(watchdog_interval_from("0", nullptr, 42));
  EXPECT_FALSE(watchdog_interval_from("-5", nullptr, 42));
  EXPECT_FALSE(watchdog_interval_from("12s", nullptr, 42));
  EXPECT_FALSE(watchdog_interval_from("", nullptr, 42));
  EXPECT_FALSE(watchdog_interval_from("18446744073709551615", nullptr, 42));
}

TEST(SdNotifyTest, WatchdogIntervalReadsTheEnvironment) {
  const ScopedEnv usec("WATCHDOG_USEC", "2000000");
  {
    const ScopedEnv pid("WATCHDOG_PID", std::to_string(::getpid()).c_str());
    EXPECT_EQ(watchdog_interval(), microseconds(2'000'000));
  }
  {
    const ScopedEnv pid("WATCHDOG_PID", std::to_string(::getpid() + 1).c_str());
    EXPECT_FALSE(watchdog_interval());
  }
  {
    const ScopedEnv pid("WATCHDOG_PID", nullptr);
    EXPECT_EQ(watchdog_interval(), microseconds(2'000'000));
  }
}

TEST(SdNotifyTest, ReloadingMessageCarriesTheMonotonicTime) {
  const std::chrono::steady_clock::time_point at{std::chrono::microseconds(123'456'789)};
  EXPECT_EQ(forkd::common::reloading_message(at), "RELOADING=1\nMONOTONIC_USEC=123456789");
  // The default is now on CLOCK_MONOTONIC, which systemd compares with its own clock.
  timespec ts{};
  ASSERT_EQ(::clock_gettime(CLOCK_MONOTONIC, &ts), 0);
  const auto fields = parse_notify_message(forkd::common::reloading_message());
  ASSERT_EQ(fields.size(), 2U);
  const long long before = ts.tv_sec * 1'000'000LL + ts.tv_nsec / 1000;
  EXPECT_GE(std::stoll(fields[1].second), before);
  EXPECT_LT(std::stoll(fields[1].second), before + 60'000'000LL);
}

}  // namespace
