// forkctl's command line -> request JSON, socket resolution and usage errors.
#include "daemon/forkctl/args.hpp"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "common/control_paths.hpp"

namespace {

using forkd::ctl::Command;
using forkd::ctl::Invocation;
using forkd::ctl::parse_args;
using forkd::ctl::UsageError;
using Json = nlohmann::json;
using std::chrono::milliseconds;

Json request_of(const std::vector<std::string>& args) {
  return parse_args(args).request;
}

std::string usage_error_of(const std::vector<std::string>& args) {
  try {
    (void)parse_args(args);
  } catch (const UsageError& error) {
    return error.what();
  }
  return "(accepted)";
}

TEST(ForkctlArgs, CommandsBecomeTheDocumentedRequests) {
  EXPECT_EQ(request_of({"status"}), Json({{"cmd", "status"}}));
  EXPECT_EQ(request_of({"reload"}), Json({{"cmd", "reload"}, {"dry_run", false}}));
  EXPECT_EQ(request_of({"reload", "--dry-run"}), Json({{"cmd", "reload"}, {"dry_run", true}}));
  EXPECT_EQ(request_of({"restart", "3"}), Json({{"cmd", "restart"}, {"worker", 3}}));
  EXPECT_EQ(request_of({"restart", "all"}), Json({{"cmd", "restart"}, {"worker", "all"}}));
  EXPECT_EQ(request_of({"scale", "4"}), Json({{"cmd", "scale"}, {"value", "4"}}));
  EXPECT_EQ(request_of({"scale", "+2"}), Json({{"cmd", "scale"}, {"value", "+2"}}));
  EXPECT_EQ(request_of({"scale", "-1"}), Json({{"cmd", "scale"}, {"value", "-1"}}));
  EXPECT_EQ(request_of({"scale", "auto"}), Json({{"cmd", "scale"}, {"value", "auto"}}));
  EXPECT_EQ(request_of({"stop"}), Json({{"cmd", "stop"}, {"fast", false}}));
  EXPECT_EQ(request_of({"stop", "--fast"}), Json({{"cmd", "stop"}, {"fast", true}}));
  EXPECT_EQ(request_of({"send", "2", R"({"job":7})"}),
            Json({{"cmd", "send"}, {"worker", 2}, {"data", {{"job", 7}}}}));
  EXPECT_EQ(request_of({"send", "2", "\"hi\"", "--wait", "2s"}),
            Json({{"cmd", "send"}, {"worker", 2}, {"data", "hi"}, {"wait_ms", 2000}}));
  EXPECT_EQ(request_of({"send", "0", "-1.5"}),
            Json({{"cmd", "send"}, {"worker", 0}, {"data", -1.5}}));
  EXPECT_EQ(request_of({"broadcast", "[1,", "2]"}), Json({{"cmd", "broadcast"}, {"data", {1, 2}}}));
  EXPECT_EQ(request_of({"events"}), Json({{"cmd", "events"}}));
  EXPECT_EQ(request_of({"reopen-logs"}), Json({{"cmd", "reopen-logs"}}));
  EXPECT_EQ(request_of({"version"}), Json({{"cmd", "version"}}));
  EXPECT_EQ(request_of({"logs"}), Json({{"cmd", "logs"}}));
  EXPECT_EQ(request_of({"logs", "-n", "5", "2"}),
            Json({{"cmd", "logs"}, {"worker", 2}, {"lines", 5}}));
  EXPECT_EQ(request_of({"logs", "-n50"}), Json({{"cmd", "logs"}, {"lines", 50}}));
  EXPECT_EQ(usage_error_of({"logs", "-n", "0"}),
            "-n: expected a number of lines from 1 to 100000, not '0'");
  EXPECT_EQ(usage_error_of({"status", "-n", "3"}), "option -n is not valid for 'status'");
  EXPECT_EQ(usage_error_of({"logs", "1", "2"}), "logs: unexpected argument '2'");
  EXPECT_TRUE(parse_args({"logs", "-f"}).follow);
  EXPECT_FALSE(parse_args({"logs"}).follow);
  EXPECT_EQ(usage_error_of({"status", "-f"}), "option -f is not valid for 'status'");
}

TEST(ForkctlArgs, GlobalOptionsGoAnywhere) {
  const Invocation before = parse_args({"-s", "/x.sock", "--json", "--timeout", "5s", "status"});
  EXPECT_EQ(before.socket, "/x.sock");
  EXPECT_TRUE(before.json);
  EXPECT_EQ(before.timeout, milliseconds(5000));
  EXPECT_EQ(before.command, Command::status);

  const Invocation after = parse_args({"status", "--json", "--socket=/y.sock", "-c", "f.yaml"});
  EXPECT_EQ(after.socket, "/y.sock");
  EXPECT_EQ(after.config, "f.yaml");
  EXPECT_TRUE(after.json);
  EXPECT_EQ(after.timeout, milliseconds(30000));

  EXPECT_EQ(parse_args({"-s/z.sock", "status"}).socket, "/z.sock");
  EXPECT_EQ(parse_args({"--", "scale", "-3"}).request["value"], "-3");
  EXPECT_TRUE(parse_args({"--help"}).help);
  EXPECT_TRUE(parse_args({"--version"}).show_version);
}

TEST(ForkctlArgs, HelpOfOneCommandOrOfAll) {
  const Invocation all = parse_args({"help"});
  EXPECT_TRUE(all.help);
  EXPECT_FALSE(all.help_for);
  EXPECT_EQ(parse_args({"help", "status"}).help_for, Command::status);
  EXPECT_EQ(parse_args({"reload", "--help"}).help_for, Command::reload);
  EXPECT_EQ(parse_args({"-h", "scale"}).help_for, Command::scale);
  // `reload --help` must not become a reload, nor `send --help` a usage error about its JSON.
  EXPECT_TRUE(parse_args({"send", "--help"}).help);
  EXPECT_EQ(usage_error_of({"help", "nope"}), "unknown command 'nope'");
  EXPECT_EQ(usage_error_of({"help", "status", "x"}), "help: unexpected argument 'x'");

  const std::string scale = forkd::ctl::command_help(Command::scale);
  EXPECT_EQ(scale.rfind("usage: forkctl [-s SOCKET] [-c FILE] [--json] scale N|+N|-N|auto\n", 0),
            0U)
      << scale;
  EXPECT_NE(scale.find("auto sets it to the CPUs"), std::string::npos) << scale;
  // The global usage lists every command with its synopsis, aligned, and help itself.
  const std::string usage = forkd::ctl::usage_text();
  EXPECT_NE(
      usage.find("\n  scale N|+N|-N|auto         set, raise or lower the number of workers\n"),
      std::string::npos)
      << usage;
  EXPECT_NE(usage.find("\n  status                     table of master and workers\n"),
            std::string::npos)
      << usage;
  EXPECT_NE(usage.find("\n  help [COMMAND]"), std::string::npos) << usage;
}

TEST(ForkctlArgs, WaitExtendsTheReplyTimeout) {
  const Invocation plain = parse_args({"send", "1", "{}"});
  EXPECT_EQ(plain.wait, milliseconds(0));
  EXPECT_EQ(forkd::ctl::reply_timeout(plain), milliseconds(30000));
  const Invocation waiting = parse_args({"--timeout", "10s", "send", "1", "{}", "--wait", "500ms"});
  EXPECT_EQ(waiting.wait, milliseconds(500));
  EXPECT_EQ(forkd::ctl::reply_timeout(waiting), milliseconds(10500));
  EXPECT_EQ(forkd::ctl::reply_timeout(parse_args({"--timeout", "0", "status"})), milliseconds(0));
}

TEST(ForkctlArgs, Durations) {
  EXPECT_EQ(forkd::ctl::parse_duration("250ms"), milliseconds(250));
  EXPECT_EQ(forkd::ctl::parse_duration("30s"), milliseconds(30000));
  EXPECT_EQ(forkd::ctl::parse_duration("5m"), milliseconds(300000));
  EXPECT_EQ(forkd::ctl::parse_duration("24h"), milliseconds(86400000));
  EXPECT_EQ(forkd::ctl::parse_duration("7"), milliseconds(7000));
  for (const char* bad : {"", "s", "1.5s", "10x", "-1s", "99999999999999999999h"}) {
    EXPECT_THROW((void)forkd::ctl::parse_duration(bad), UsageError) << bad;
  }
}

TEST(ForkctlArgs, UsageErrorsNameTheProblem) {
  EXPECT_EQ(usage_error_of({}), "missing command");
  EXPECT_EQ(usage_error_of({"frobnicate"}), "unknown command 'frobnicate'");
  EXPECT_EQ(usage_error_of({"status", "--bogus"}), "unknown option '--bogus'");
  EXPECT_EQ(usage_error_of({"status", "extra"}), "status: unexpected argument 'extra'");
  EXPECT_EQ(usage_error_of({"status", "--fast"}), "option --fast is not valid for 'status'");
  EXPECT_EQ(usage_error_of({"stop", "--dry-run"}), "option --dry-run is not valid for 'stop'");
  EXPECT_EQ(usage_error_of({"broadcast", "1", "--wait", "1s"}),
            "option --wait is not valid for 'broadcast'");
  EXPECT_EQ(usage_error_of({"restart"}), "restart: missing worker ID or 'all'");
  EXPECT_EQ(usage_error_of({"restart", "-1"}),
            "restart: worker ID must be a non-negative integer, not '-1'");
  EXPECT_EQ(usage_error_of({"scale", "x2"}),
            "scale: expected N, +N, -N (an integer) or auto, not 'x2'");
  EXPECT_EQ(usage_error_of({"scale", "+"}),
            "scale: expected N, +N, -N (an integer) or auto, not '+'");
  EXPECT_EQ(usage_error_of({"scale", "1.5"}),
            "scale: expected N, +N, -N (an integer) or auto, not '1.5'");
  EXPECT_EQ(usage_error_of({"send", "1"}), "send: missing JSON message");
  EXPECT_EQ(usage_error_of({"send"}), "send: missing worker ID");
  EXPECT_NE(usage_error_of({"send", "1", "{nope"}).find("send: invalid JSON message '{nope'"),
            std::string::npos);
  EXPECT_EQ(usage_error_of({"-s"}), "option -s needs a value");
  EXPECT_EQ(usage_error_of({"--json=yes", "status"}), "option --json takes no value");
  EXPECT_EQ(usage_error_of({"send", "1", "{}", "--wait", "0"}),
            "--wait needs a duration above zero");
}

class ConfigFile {
 public:
  explicit ConfigFile(const std::string& text) {
    std::string pattern = "/tmp/forkctl-test-XXXXXX";
    const int fd = ::mkstemp(pattern.data());
    if (fd < 0) throw std::runtime_error("mkstemp failed");
    ::close(fd);
    path_ = pattern;
    std::ofstream(path_) << text;
  }
  ConfigFile(const ConfigFile&) = delete;
  ConfigFile& operator=(const ConfigFile&) = delete;
  ConfigFile(ConfigFile&&) = delete;
  ConfigFile& operator=(ConfigFile&&) = delete;
  ~ConfigFile() { std::filesystem::remove(path_); }
  [[nodiscard]] const std::string& path() const { return path_; }

 private:
  std::string path_;
};

TEST(ForkctlArgs, SocketPathResolution) {
  const ConfigFile with_socket("workers: 2\ncontrol:\n  socket: /srv/app/forkd.sock\n");
  const ConfigFile without("workers: 2\n");
  const ConfigFile empty_socket("control:\n  socket: \"\"\n");

  EXPECT_EQ(forkd::ctl::resolve_socket_path(
                parse_args({"-s", "/a.sock", "-c", with_socket.path(), "status"})),
            "/a.sock");
  EXPECT_EQ(forkd::ctl::resolve_socket_path(parse_args({"-c", with_socket.path(), "status"})),
            "/srv/app/forkd.sock");
  EXPECT_EQ(forkd::ctl::resolve_socket_path(parse_args({"-c", without.path(), "status"})),
            forkd::common::default_control_socket());
  EXPECT_EQ(forkd::ctl::resolve_socket_path(parse_args({"-c", empty_socket.path(), "status"})),
            forkd::common::default_control_socket());
  EXPECT_EQ(forkd::ctl::resolve_socket_path(parse_args({"status"})),
            forkd::common::default_control_socket());
  try {
    (void)forkd::ctl::socket_from_config("/nonexistent/forkd.yaml");
    FAIL() << "a missing config was accepted";
  } catch (const std::runtime_error& error) {
    EXPECT_NE(std::string(error.what()).find("/nonexistent/forkd.yaml"), std::string::npos);
  }
  const ConfigFile broken("control: [unclosed\n");
  EXPECT_THROW((void)forkd::ctl::socket_from_config(broken.path()), std::runtime_error);
}

}  // namespace
