// render_prometheus: exact text line by line, and the same text read back by a real parser
// (python3's prometheus_client, run as a child process) to prove scrapers understand it.
#include "daemon/metrics.hpp"

#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <csignal>
#include <cstring>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "common/fd.hpp"

namespace {

using forkd::common::UniqueFd;
using forkd::daemon::escape_label_value;
using forkd::daemon::MetricsSnapshot;
using forkd::daemon::render_prometheus;
using Json = nlohmann::json;
using namespace std::chrono_literals;

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

MetricsSnapshot sample_snapshot() {
  MetricsSnapshot s;
  s.workers_by_state = {{"ready", 3}, {"backoff", 1}};
  s.restarts = {{1, "signal", 2}, {0, "exit", 5}, {1, "memory", 1}};
  s.reloads_ok = 4;
  s.reloads_failed = 1;
  s.memory = {{1, 4243, 2048, 8192}, {0, 4242, 1024, std::nullopt}};
  s.ipc_to_worker = 17;
  s.ipc_from_worker = 23;
  s.master_uptime_seconds = 12.5;
  s.generation = 2;
  s.target_workers = 4;
  s.cpu_quota = 2.5;
  s.memory_limit_bytes = 1073741824;
  s.worker_max_memory_bytes = 241591910;
  return s;
}

TEST(RenderPrometheus, RendersEveryFamilyLineByLine) {
  const std::vector<std::string> expected = {
      "# HELP forkd_workers Worker slots by state.",
      "# TYPE forkd_workers gauge",
      R"(forkd_workers{state="starting"} 0)",
      R"(forkd_workers{state="ready"} 3)",
      R"(forkd_workers{state="stopping"} 0)",
      R"(forkd_workers{state="backoff"} 1)",
      R"(forkd_workers{state="failed"} 0)",
      "# HELP forkd_workers_target Number of worker slots the master maintains.",
      "# TYPE forkd_workers_target gauge",
      "forkd_workers_target 4",
      // One line, split for width. NOLINTNEXTLINE(bugprone-suspicious-missing-comma)
      "# HELP forkd_worker_restarts_total Worker restarts by slot and reason (signal, exit, "
      "timeout, memory, lifetime).",
      "# TYPE forkd_worker_restarts_total counter",
      R"(forkd_worker_restarts_total{worker="0",reason="exit"} 5)",
      R"(forkd_worker_restarts_total{worker="1",reason="memory"} 1)",
      R"(forkd_worker_restarts_total{worker="1",reason="signal"} 2)",
      "# HELP forkd_reloads_total Configuration reloads by result.",
      "# TYPE forkd_reloads_total counter",
      R"(forkd_reloads_total{result="ok"} 4)",
      R"(forkd_reloads_total{result="failed"} 1)",
      "# HELP forkd_worker_memory_pss_bytes Proportional set size of each worker: pages shared "
      "after fork count once overall.",
      "# TYPE forkd_worker_memory_pss_bytes gauge",
      R"(forkd_worker_memory_pss_bytes{worker="0"} 1024)",
      R"(forkd_worker_memory_pss_bytes{worker="1"} 2048)",
      "# HELP forkd_worker_memory_rss_bytes Resident set size of each worker, shared pages "
      "included.",
      "# TYPE forkd_worker_memory_rss_bytes gauge",
      R"(forkd_worker_memory_rss_bytes{worker="1"} 8192)",
      "# HELP forkd_ipc_messages_total IPC messages between master and workers.",
      "# TYPE forkd_ipc_messages_total counter",
      R"(forkd_ipc_messages_total{direction="to_worker"} 17)",
      R"(forkd_ipc_messages_total{direction="from_worker"} 23)",
      "# HELP forkd_master_uptime_seconds Seconds since the master started.",
      "# TYPE forkd_master_uptime_seconds gauge",
      "forkd_master_uptime_seconds 12.5",
      "# HELP forkd_cpu_quota CPUs the cgroup CPU quota grants (quota / period); absent when "
      "unlimited.",
      "# TYPE forkd_cpu_quota gauge",
      "forkd_cpu_quota 2.5",
      "# HELP forkd_memory_limit_bytes The cgroup memory limit of the master and its workers; "
      "absent when unlimited.",
      "# TYPE forkd_memory_limit_bytes gauge",
      "forkd_memory_limit_bytes 1073741824",
      "# HELP forkd_worker_max_memory_bytes PSS above which a worker is replaced "
      "(worker.max_memory, auto resolved); 0 = off.",
      "# TYPE forkd_worker_max_memory_bytes gauge",
      "forkd_worker_max_memory_bytes 241591910",
      "# HELP forkd_generation Configuration generation, incremented by every applied reload.",
      "# TYPE forkd_generation gauge",
      "forkd_generation 2",
  };
  const std::string text = render_prometheus(sample_snapshot());
  ASSERT_FALSE(text.empty());
  EXPECT_EQ(text.back(), '\n');
  const auto lines = lines_of(text);
  ASSERT_EQ(lines.size(), expected.size()) << text;
  for (std::size_t i = 0; i < expected.size(); ++i) EXPECT_EQ(lines[i], expected[i]) << i;
}

TEST(RenderPrometheus, EmptySnapshotStillHasTheFixedSeries) {
  const auto lines = lines_of(render_prometheus(MetricsSnapshot{}));
  const auto has = [&](const std::string& line) {
    return std::find(lines.begin(), lines.end(), line) != lines.end();
  };
  for (const char* state : {"starting", "ready", "stopping", "backoff", "failed"}) {
    EXPECT_TRUE(has(std::string("forkd_workers{state=\"") + state + "\"} 0")) << state;
  }
  EXPECT_TRUE(has("forkd_reloads_total{result=\"ok\"} 0"));
  EXPECT_TRUE(has("forkd_reloads_total{result=\"failed\"} 0"));
  EXPECT_TRUE(has("forkd_ipc_messages_total{direction=\"to_worker\"} 0"));
  EXPECT_TRUE(has("forkd_ipc_messages_total{direction=\"from_worker\"} 0"));
  EXPECT_TRUE(has("forkd_master_uptime_seconds 0"));
  EXPECT_TRUE(has("forkd_generation 0"));
  EXPECT_TRUE(has("forkd_workers_target 0"));
  EXPECT_TRUE(has("forkd_worker_max_memory_bytes 0"));
  // No cgroup limit: the families are there, without samples.
  EXPECT_TRUE(has("# TYPE forkd_cpu_quota gauge"));
  EXPECT_FALSE(std::any_of(lines.begin(), lines.end(), [](const std::string& line) {
    return line.rfind("forkd_cpu_quota ", 0) == 0 ||
           line.rfind("forkd_memory_limit_bytes ", 0) == 0;
  }));
  // Families without samples keep their header, so a scraper always knows their type.
  EXPECT_TRUE(has("# TYPE forkd_worker_restarts_total counter"));
  EXPECT_TRUE(has("# TYPE forkd_worker_memory_pss_bytes gauge"));
}

// A small strict reader of the 0.0.4 line grammar, for what this renderer emits: metric and
// label names, quoted label values with their three escapes, and a number.
class LineReader {
 public:
  explicit LineReader(std::string_view line) : rest_(line) {}

  bool literal(std::string_view text) {
    if (!rest_.starts_with(text)) return false;
    rest_.remove_prefix(text.size());
    return true;
  }
  std::string name() {
    std::size_t n = 0;
    while (n < rest_.size() && ((rest_[n] >= 'a' && rest_[n] <= 'z') || rest_[n] == '_')) ++n;
    std::string taken(rest_.substr(0, n));
    rest_.remove_prefix(n);
    return taken;
  }
  bool label_value() {
    if (!literal("\"")) return false;
    while (!rest_.empty()) {
      const char c = rest_.front();
      rest_.remove_prefix(1);
      if (c == '"') return true;
      if (c == '\n') return false;
      if (c == '\\') {
        if (rest_.empty() ||
            std::string_view("\\\"n").find(rest_.front()) == std::string_view::npos) {
          return false;
        }
        rest_.remove_prefix(1);
      }
    }
    return false;
  }
  bool labels() {
    if (!literal("{")) return true;  // optional
    do {
      if (name().empty() || !literal("=") || !label_value()) return false;
    } while (literal(","));
    return literal("}");
  }
  bool number() {
    if (literal("NaN") || literal("+Inf") || literal("-Inf")) return true;
    const std::size_t digits = digit_run();
    if (digits == 0) return false;
    if (literal(".") && digit_run() == 0) return false;
    if (literal("e")) {
      if (!literal("+") && !literal("-")) return false;
      if (digit_run() == 0) return false;
    }
    return true;
  }
  [[nodiscard]] std::string_view rest() const { return rest_; }

 private:
  std::size_t digit_run() {
    std::size_t n = 0;
    while (n < rest_.size() && rest_[n] >= '0' && rest_[n] <= '9') ++n;
    rest_.remove_prefix(n);
    return n;
  }
  std::string_view rest_;
};

TEST(RenderPrometheus, EachFamilyHeaderAppearsOnceAndEveryLineIsWellFormed) {
  MetricsSnapshot s = sample_snapshot();
  s.workers_by_state["odd \"state\""] = 1;
  std::vector<std::string> helped;
  std::vector<std::string> typed;
  for (const auto& line : lines_of(render_prometheus(s))) {
    LineReader reader(line);
    if (reader.literal("# HELP ")) {
      const std::string name = reader.name();
      ASSERT_TRUE(name.starts_with("forkd_")) << line;
      ASSERT_TRUE(reader.literal(" ") && !reader.rest().empty()) << line;
      EXPECT_EQ(std::count(helped.begin(), helped.end(), name), 0) << line;
      helped.push_back(name);
    } else if (reader.literal("# TYPE ")) {
      const std::string name = reader.name();
      ASSERT_TRUE(reader.literal(" counter") || reader.literal(" gauge")) << line;
      ASSERT_TRUE(reader.rest().empty()) << line;
      ASSERT_FALSE(helped.empty());
      EXPECT_EQ(name, helped.back()) << "TYPE right after its HELP";
      typed.push_back(name);
    } else {
      const std::string name = reader.name();
      ASSERT_TRUE(name.starts_with("forkd_")) << line;
      ASSERT_TRUE(reader.labels()) << line;
      ASSERT_TRUE(reader.literal(" ") && reader.number() && reader.rest().empty()) << line;
      ASSERT_FALSE(typed.empty());
      EXPECT_EQ(name, typed.back()) << "sample outside its family: " << line;
    }
  }
  EXPECT_EQ(helped, typed);
  EXPECT_EQ(helped.size(), 12U);
}

TEST(RenderPrometheus, DuplicateSeriesAreSummedAndMissingReadingsLeftOut) {
  MetricsSnapshot s;
  s.restarts = {{2, "exit", 1}, {2, "exit", 2}};
  // One slot with two processes (old and new during a rolling restart); one process gone.
  s.memory = {{2, 100, 1000, 3000}, {2, 101, 500, 1500}, {3, 102, std::nullopt, std::nullopt}};
  const auto lines = lines_of(render_prometheus(s));
  const auto count = [&](const std::string& prefix) {
    return std::count_if(lines.begin(), lines.end(),
                         [&](const std::string& l) { return l.starts_with(prefix); });
  };
  EXPECT_EQ(count("forkd_worker_restarts_total{worker=\"2\",reason=\"exit\"} 3"), 1);
  EXPECT_EQ(count("forkd_worker_restarts_total{"), 1);
  EXPECT_EQ(count("forkd_worker_memory_pss_bytes{worker=\"2\"} 1500"), 1);
  EXPECT_EQ(count("forkd_worker_memory_rss_bytes{worker=\"2\"} 4500"), 1);
  EXPECT_EQ(count("forkd_worker_memory_pss_bytes{worker=\"3\"}"), 0);
  EXPECT_EQ(count("forkd_worker_memory_rss_bytes{worker=\"3\"}"), 0);
}

TEST(RenderPrometheus, SteeringStatesPerSlotOnlyWithReuseport) {
  MetricsSnapshot s;
  EXPECT_EQ(render_prometheus(s).find("forkd_worker_steering"), std::string::npos);
  // Slot 0 during a rollout: the old process in, its replacement not ready; slot 1 stalled.
  s.steering = {{0, "in"}, {0, "not ready"}, {1, "stalled"}};
  const auto lines = lines_of(render_prometheus(s));
  const auto has = [&](const std::string& line) {
    return std::find(lines.begin(), lines.end(), line) != lines.end();
  };
  EXPECT_TRUE(has(R"(forkd_worker_steering{worker="0",state="in"} 1)"));
  EXPECT_TRUE(has(R"(forkd_worker_steering{worker="0",state="not ready"} 1)"));
  EXPECT_TRUE(has(R"(forkd_worker_steering{worker="1",state="stalled"} 1)"));
  EXPECT_TRUE(has("# TYPE forkd_worker_steering gauge"));
}

TEST(RenderPrometheus, ConnectionCountsPerSlotSumTheExitedAndTheLive) {
  MetricsSnapshot s;
  EXPECT_EQ(render_prometheus(s).find("forkd_worker_accepted_connections_total"),
            std::string::npos);
  // Slot 0: a live process (120 accepted, 4 open) after one that exited having accepted 30;
  // slot 1 during a rollout: the old process and its replacement.
  s.connections = {{0, 120, 4}, {0, 30, std::nullopt}, {1, 50, 2}, {1, 5, 1}};
  const auto lines = lines_of(render_prometheus(s));
  const auto has = [&](const std::string& line) {
    return std::find(lines.begin(), lines.end(), line) != lines.end();
  };
  EXPECT_TRUE(has("# TYPE forkd_worker_accepted_connections_total counter"));
  EXPECT_TRUE(has(R"(forkd_worker_accepted_connections_total{worker="0"} 150)"));
  EXPECT_TRUE(has(R"(forkd_worker_accepted_connections_total{worker="1"} 55)"));
  EXPECT_TRUE(has("# TYPE forkd_worker_open_connections gauge"));
  EXPECT_TRUE(has(R"(forkd_worker_open_connections{worker="0"} 4)"));
  EXPECT_TRUE(has(R"(forkd_worker_open_connections{worker="1"} 3)"));
}

TEST(RenderPrometheus, EscapesLabelValues) {
  EXPECT_EQ(escape_label_value("plain"), "plain");
  EXPECT_EQ(escape_label_value("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
  MetricsSnapshot s;
  s.restarts = {{0, "we\"ird\\reason\n", 1}};
  EXPECT_NE(render_prometheus(s).find(
                "forkd_worker_restarts_total{worker=\"0\",reason=\"we\\\"ird\\\\reason\\n\"} 1\n"),
            std::string::npos);
}

TEST(RenderPrometheus, FormatsLargeAndSpecialValues) {
  MetricsSnapshot s;
  s.ipc_to_worker = std::numeric_limits<std::uint64_t>::max();
  s.master_uptime_seconds = 86400.25;
  std::string text = render_prometheus(s);
  EXPECT_NE(text.find("forkd_ipc_messages_total{direction=\"to_worker\"} 18446744073709551615\n"),
            std::string::npos);
  EXPECT_NE(text.find("forkd_master_uptime_seconds 86400.25\n"), std::string::npos);
  s.master_uptime_seconds = std::numeric_limits<double>::quiet_NaN();
  EXPECT_NE(render_prometheus(s).find("forkd_master_uptime_seconds NaN\n"), std::string::npos);
}

// --- validation by prometheus_client ------------------------------------------------------

struct ProcessResult {
  int exit_code = -1;  // 128 + signal when killed
  std::string out;
  std::string err;
};

// Owns a child: killed and reaped by pid whatever happens to the test.
class ChildGuard {
 public:
  explicit ChildGuard(pid_t pid) : pid_(pid) {}
  ChildGuard(const ChildGuard&) = delete;
  ChildGuard& operator=(const ChildGuard&) = delete;
  ChildGuard(ChildGuard&&) = delete;
  ChildGuard& operator=(ChildGuard&&) = delete;
  ~ChildGuard() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGKILL);
    (void)reap();
  }
  void kill() const { ::kill(pid_, SIGKILL); }
  int reap() {
    int status = 0;
    while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
    pid_ = -1;
    if (WIFEXITED(status)) return WEXITSTATUS(status);
    return 128 + WTERMSIG(status);
  }

 private:
  pid_t pid_;
};

// fork/exec `argv` with `input` on its stdin, collecting stdout and stderr. stdin is a socket,
// not a pipe, so writing to a child that already exited fails with EPIPE instead of
// raising SIGPIPE in the test.
ProcessResult run_process(const std::vector<std::string>& argv, const std::string& input,
                          std::chrono::milliseconds patience = 30s) {
  auto in = forkd::common::make_socketpair(SOCK_STREAM);
  auto out = forkd::common::make_pipe();
  auto err = forkd::common::make_pipe();
  // execvp wants mutable strings, prepared before fork: the child must not allocate.
  std::vector<std::string> storage = argv;
  std::vector<char*> args;
  args.reserve(storage.size() + 1);
  for (auto& arg : storage) args.push_back(arg.data());
  args.push_back(nullptr);

  const pid_t pid = ::fork();
  if (pid < 0) throw forkd::common::system_error_from_errno("fork");
  if (pid == 0) {
    // Child: only async-signal-safe calls until exec.
    if (::dup2(in.second.get(), 0) < 0 || ::dup2(out.second.get(), 1) < 0 ||
        ::dup2(err.second.get(), 2) < 0) {
      ::_exit(126);
    }
    ::execvp(args[0], args.data());
    ::_exit(127);
  }
  ChildGuard child(pid);
  in.second.reset();
  out.second.reset();
  err.second.reset();
  if (auto e = forkd::common::set_nonblocking(in.first.get(), true)) throw std::system_error(e);

  ProcessResult result;
  std::size_t written = 0;
  if (input.empty()) ::shutdown(in.first.get(), SHUT_WR);
  bool out_open = true;
  bool err_open = true;
  const auto deadline = std::chrono::steady_clock::now() + patience;
  while (out_open || err_open) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      child.kill();
      break;
    }
    std::vector<pollfd> fds;
    if (written < input.size()) fds.push_back({in.first.get(), POLLOUT, 0});
    if (out_open) fds.push_back({out.first.get(), POLLIN, 0});
    if (err_open) fds.push_back({err.first.get(), POLLIN, 0});
    if (::poll(fds.data(), fds.size(), static_cast<int>(left.count())) < 0 && errno != EINTR) {
      throw forkd::common::system_error_from_errno("poll");
    }
    for (const auto& p : fds) {
      if (p.revents == 0) continue;
      if (p.fd == in.first.get()) {
        const ssize_t n = ::send(p.fd, input.data() + written, input.size() - written,
                                 MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) written += static_cast<std::size_t>(n);
        if (n < 0 && errno != EAGAIN && errno != EINTR) written = input.size();  // child left
        if (written == input.size()) ::shutdown(p.fd, SHUT_WR);
        continue;
      }
      std::array<char, 4096> buffer{};
      const ssize_t n = ::read(p.fd, buffer.data(), buffer.size());
      std::string& sink = p.fd == out.first.get() ? result.out : result.err;
      bool& open = p.fd == out.first.get() ? out_open : err_open;
      if (n > 0) {
        sink.append(buffer.data(), static_cast<std::size_t>(n));
      } else if (n == 0 || (errno != EINTR && errno != EAGAIN)) {
        open = false;
      }
    }
  }
  result.exit_code = child.reap();
  return result;
}

// Debian's python3 first: python3-prometheus-client is installed for it, and a python3
// earlier in PATH (pyenv, venv) may not have it.
std::optional<std::string> python_with_prometheus_client() {
  for (const char* candidate : {"/usr/bin/python3", "python3"}) {
    const auto probe = run_process({candidate, "-c", "import prometheus_client.parser"}, "");
    if (probe.exit_code == 0) return candidate;
  }
  return std::nullopt;
}

// Parses stdin with prometheus_client and prints one JSON line per family, refusing a family
// split in two or a series that appears twice.
constexpr const char* kParseScript = R"PY(
import json, sys
from prometheus_client.parser import text_string_to_metric_families as parse
families, series = set(), set()
for family in parse(sys.stdin.read()):
    if family.name in families:
        sys.exit('family split or repeated: ' + family.name)
    families.add(family.name)
    samples = []
    for s in family.samples:
        key = (s.name, tuple(sorted(s.labels.items())))
        if key in series:
            sys.exit('duplicate series: %r' % (key,))
        series.add(key)
        samples.append({'name': s.name, 'labels': s.labels, 'value': s.value})
    print(json.dumps({'name': family.name, 'type': family.type,
                      'help': family.documentation, 'samples': samples}))
)PY";

class PrometheusParser : public ::testing::Test {
 protected:
  void SetUp() override {
    python_ = python_with_prometheus_client();
    if (!python_)
      GTEST_SKIP() << "python3 with prometheus_client (python3-prometheus-client) "
                      "is not installed";
  }

  // Family name -> parsed family, after asserting the parser accepted the text.
  std::map<std::string, Json> parse(const std::string& text) {
    const auto result = run_process({*python_, "-c", kParseScript}, text);
    EXPECT_EQ(result.exit_code, 0) << result.err << "\n" << text;
    std::map<std::string, Json> families;
    for (const auto& line : lines_of(result.out)) {
      Json family = Json::parse(line);
      families[family["name"].get<std::string>()] = family;
    }
    return families;
  }

  std::optional<std::string> python_;
};

// Value of the sample `name` whose labels are exactly `labels`; nullopt when absent.
std::optional<double> value_of(const Json& family, const std::string& name, const Json& labels) {
  for (const auto& s : family["samples"]) {
    if (s["name"] == name && s["labels"] == labels) return s["value"].get<double>();
  }
  return std::nullopt;
}

TEST_F(PrometheusParser, AcceptsTheRenderedTextAndReadsBackWhatWasPutIn) {
  const auto families = parse(render_prometheus(sample_snapshot()));
  ASSERT_EQ(families.size(), 12U);
  // prometheus_client names a counter family without its _total suffix.
  const std::map<std::string, std::string> types = {{"forkd_workers", "gauge"},
                                                    {"forkd_workers_target", "gauge"},
                                                    {"forkd_worker_restarts", "counter"},
                                                    {"forkd_reloads", "counter"},
                                                    {"forkd_worker_memory_pss_bytes", "gauge"},
                                                    {"forkd_worker_memory_rss_bytes", "gauge"},
                                                    {"forkd_ipc_messages", "counter"},
                                                    {"forkd_master_uptime_seconds", "gauge"},
                                                    {"forkd_cpu_quota", "gauge"},
                                                    {"forkd_memory_limit_bytes", "gauge"},
                                                    {"forkd_worker_max_memory_bytes", "gauge"},
                                                    {"forkd_generation", "gauge"}};
  for (const auto& [name, type] : types) {
    ASSERT_TRUE(families.contains(name)) << name;
    EXPECT_EQ(families.at(name)["type"], type) << name;
    EXPECT_FALSE(families.at(name)["help"].get<std::string>().empty()) << name;
  }
  const auto& workers = families.at("forkd_workers");
  EXPECT_EQ(workers["samples"].size(), 5U);
  EXPECT_EQ(value_of(workers, "forkd_workers", {{"state", "ready"}}), 3.0);
  EXPECT_EQ(value_of(workers, "forkd_workers", {{"state", "backoff"}}), 1.0);
  EXPECT_EQ(value_of(workers, "forkd_workers", {{"state", "failed"}}), 0.0);
  EXPECT_EQ(value_of(families.at("forkd_workers_target"), "forkd_workers_target", Json::object()),
            4.0);
  const auto& restarts = families.at("forkd_worker_restarts");
  EXPECT_EQ(restarts["samples"].size(), 3U);
  EXPECT_EQ(
      value_of(restarts, "forkd_worker_restarts_total", {{"worker", "1"}, {"reason", "signal"}}),
      2.0);
  EXPECT_EQ(
      value_of(restarts, "forkd_worker_restarts_total", {{"worker", "0"}, {"reason", "exit"}}),
      5.0);
  const auto& reloads = families.at("forkd_reloads");
  EXPECT_EQ(value_of(reloads, "forkd_reloads_total", {{"result", "ok"}}), 4.0);
  EXPECT_EQ(value_of(reloads, "forkd_reloads_total", {{"result", "failed"}}), 1.0);
  EXPECT_EQ(value_of(families.at("forkd_worker_memory_pss_bytes"), "forkd_worker_memory_pss_bytes",
                     {{"worker", "1"}}),
            2048.0);
  EXPECT_EQ(families.at("forkd_worker_memory_rss_bytes")["samples"].size(), 1U);
  const auto& ipc = families.at("forkd_ipc_messages");
  EXPECT_EQ(value_of(ipc, "forkd_ipc_messages_total", {{"direction", "to_worker"}}), 17.0);
  EXPECT_EQ(value_of(ipc, "forkd_ipc_messages_total", {{"direction", "from_worker"}}), 23.0);
  EXPECT_EQ(value_of(families.at("forkd_master_uptime_seconds"), "forkd_master_uptime_seconds",
                     Json::object()),
            12.5);
  EXPECT_EQ(value_of(families.at("forkd_generation"), "forkd_generation", Json::object()), 2.0);
}

TEST_F(PrometheusParser, ReadsBackEscapedLabelValuesAndEmptySnapshots) {
  MetricsSnapshot s;
  s.restarts = {{7, "quote\" backslash\\ newline\n", 9}};
  s.workers_by_state["{odd}=,state"] = 2;
  const auto families = parse(render_prometheus(s));
  EXPECT_EQ(value_of(families.at("forkd_worker_restarts"), "forkd_worker_restarts_total",
                     {{"worker", "7"}, {"reason", "quote\" backslash\\ newline\n"}}),
            9.0);
  EXPECT_EQ(value_of(families.at("forkd_workers"), "forkd_workers", {{"state", "{odd}=,state"}}),
            2.0);
  EXPECT_EQ(parse(render_prometheus(MetricsSnapshot{})).size(), 12U);
}

TEST_F(PrometheusParser, RefusesBrokenText) {
  // The check can fail: the same parser rejects a malformed exposition.
  const auto result = run_process({*python_, "-c", kParseScript}, "forkd_workers{state=\"x} 1\n");
  EXPECT_NE(result.exit_code, 0);
}

}  // namespace
