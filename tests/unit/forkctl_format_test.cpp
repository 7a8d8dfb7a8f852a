// forkctl's output: human units, the status table, and reply -> stdout/stderr/exit code.
#include "daemon/forkctl/format.hpp"

#include <gtest/gtest.h>

#include <string>

namespace {

using forkd::ctl::format_bytes;
using forkd::ctl::format_last_exit;
using forkd::ctl::format_uptime;
using forkd::ctl::parse_args;
using forkd::ctl::render_reply;
using forkd::ctl::Rendered;
using Json = nlohmann::json;

TEST(ForkctlFormat, Bytes) {
  EXPECT_EQ(format_bytes(0), "0B");
  EXPECT_EQ(format_bytes(512), "512B");
  EXPECT_EQ(format_bytes(1024), "1.0KiB");
  EXPECT_EQ(format_bytes(1536), "1.5KiB");
  EXPECT_EQ(format_bytes(12897484), "12.3MiB");
  EXPECT_EQ(format_bytes(1048575), "1.0MiB");  // rounds up into the next unit, not 1024.0KiB
  EXPECT_EQ(format_bytes(std::uint64_t{3} << 30), "3.0GiB");
}

TEST(ForkctlFormat, Uptime) {
  EXPECT_EQ(format_uptime(0), "0s");
  EXPECT_EQ(format_uptime(0.4), "0s");
  EXPECT_EQ(format_uptime(45), "45s");
  EXPECT_EQ(format_uptime(192), "3m12s");
  EXPECT_EQ(format_uptime(3600), "1h0m");
  EXPECT_EQ(format_uptime(7500), "2h5m");
  EXPECT_EQ(format_uptime(277200), "3d5h");
}

TEST(ForkctlFormat, LastExit) {
  EXPECT_EQ(format_last_exit(nullptr), "-");
  EXPECT_EQ(format_last_exit(Json{{"code", 3}, {"at", "t"}}), "code 3");
  EXPECT_EQ(format_last_exit(Json{{"signal", 9}, {"at", "t"}}), "signal 9");
}

const Json kStatus = Json::parse(R"({
  "ok": true,
  "master": {"pid": 4242, "version": "0.1.0", "uptime_s": 192, "config": "/etc/forkd/forkd.yaml",
             "generation": 3, "last_reload": {"ok": false, "error": "workers: out of range",
                                              "at": "2024-05-01T12:00:00Z"},
             "workers_target": 3, "workers_ready": 1, "rss_bytes": 4508876, "cpu_percent": 0.1,
             "listeners": [{"name": "listen0", "address": "127.0.0.1:8080"},
                           {"name": "https", "address": "[::1]:8443"}]},
  "workers": [
    {"id": 0, "pid": 4243, "state": "ready", "generation": 3, "uptime_s": 75, "restarts": 0,
     "last_exit": null, "rss_bytes": 12897484, "cpu_percent": 12.25, "command": "node server.js",
     "connections": 7, "accepted": 1532},
    {"id": 1, "pid": null, "state": "backoff", "generation": 3, "uptime_s": null, "restarts": 12,
     "failed_starts": 2, "last_exit": {"signal": 9, "at": "2024-05-01T12:01:00Z"},
     "rss_bytes": null},
    {"id": 2, "pid": null, "state": "failed", "generation": 3, "uptime_s": null, "restarts": 4,
     "failed_starts": 5, "last_exit": {"code": 3, "at": "2024-05-01T12:01:30Z"},
     "rss_bytes": null},
    {"id": 10, "pid": 4250, "state": "starting", "generation": 3, "uptime_s": 1, "restarts": 1,
     "last_exit": {"code": 3, "at": "2024-05-01T12:02:00Z"}, "rss_bytes": 1024}
  ]
})");

TEST(ForkctlFormat, StatusTable) {
  const std::string expected =
      "forkd 0.1.0, pid 4242: 1/3 workers ready, generation 3, up 3m12s, master 4.3MiB 0.1% CPU\n"
      "listening on 127.0.0.1:8080 (listen0), [::1]:8443 (https)\n"
      "command node server.js\n"
      "config /etc/forkd/forkd.yaml\n"
      "last reload: failed at 2024-05-01T12:00:00Z: workers: out of range\n"
      "\n"
      "ID  PID   STATE                      GEN  UPTIME  RESTARTS  LAST-EXIT  CPU    RSS      "
      "CONNS  ACCEPTED\n"
      "0   4243  ready                      3    1m15s   0         -          12.2%  12.3MiB  7    "
      "  1532\n"
      "1   -     backoff (2 failed starts)  3    -       12        signal 9   -      -        -    "
      "  -\n"
      "2   -     failed (5 failed starts)   3    -       4         code 3     -      -        -    "
      "  -\n"
      "10  4250  starting                   3    1s      1         code 3     -      1.0KiB   -    "
      "  -\n";
  EXPECT_EQ(forkd::ctl::format_status(kStatus), expected);
}

TEST(ForkctlFormat, LogsOneLinePerCapturedLine) {
  const Json reply = Json::parse(R"({"ok":true,"lines":[
    {"worker":0,"pid":41,"stream":"stdout","at":"t","text":"listening on fd 3"},
    {"worker":1,"pid":42,"stream":"stderr","at":"t","text":"Error: boom"}]})");
  EXPECT_EQ(forkd::ctl::format_logs(reply),
            "[0 pid 41 stdout] listening on fd 3\n[1 pid 42 stderr] Error: boom\n");
  EXPECT_EQ(forkd::ctl::format_logs(Json::parse(R"({"ok":true,"lines":[]})")), "");
}

TEST(ForkctlFormat, StatusWithoutHistoryOrWorkers) {
  const Json reply = Json::parse(R"json({"ok":true,"master":{"pid":1,"version":"0.1.0","uptime_s":5,
    "config":"(embedded)","generation":0,"last_reload":null},"workers":[]})json");
  EXPECT_EQ(forkd::ctl::format_status(reply),
            "forkd 0.1.0, pid 1: 0 workers, generation 0, up 5s\n"
            "config (embedded)\n"
            "last reload: none\n"
            "no workers\n");
}

TEST(ForkctlFormat, StatusJsonIsTheDocumentedObject) {
  const Rendered rendered = render_reply(parse_args({"status", "--json"}), kStatus.dump());
  EXPECT_EQ(rendered.exit_code, 0);
  const Json printed = Json::parse(rendered.out);
  EXPECT_FALSE(printed.contains("ok"));
  EXPECT_EQ(printed["master"], kStatus["master"]);
  EXPECT_EQ(printed["workers"], kStatus["workers"]);
  EXPECT_EQ(rendered.out.find('\n'), rendered.out.size() - 1);  // one line
}

TEST(ForkctlFormat, RefusalsGoToStderrAndExitOne) {
  const Rendered refused =
      render_reply(parse_args({"scale", "0"}), R"({"ok":false,"error":"workers must be 1..4096"})");
  EXPECT_EQ(refused.exit_code, 1);
  EXPECT_EQ(refused.out, "");
  EXPECT_EQ(refused.err, "forkctl: workers must be 1..4096\n");

  const Rendered reload =
      render_reply(parse_args({"reload"}), R"({"ok":false,"error":"line 3: unknown key"})");
  EXPECT_EQ(reload.exit_code, 1);
  EXPECT_EQ(reload.err, "forkctl: reload failed: line 3: unknown key\n");

  const std::string line = R"({"ok":false,"error":"nope"})";
  const Rendered as_json = render_reply(parse_args({"--json", "stop"}), line);
  EXPECT_EQ(as_json.exit_code, 1);
  EXPECT_EQ(as_json.out, line + "\n");

  const Rendered garbage = render_reply(parse_args({"stop"}), "not json");
  EXPECT_EQ(garbage.exit_code, 1);
  EXPECT_NE(garbage.err.find("malformed reply"), std::string::npos);
  EXPECT_EQ(render_reply(parse_args({"stop"}), R"({"status":1})").exit_code, 1);
}

TEST(ForkctlFormat, SuccessLines) {
  EXPECT_EQ(render_reply(parse_args({"stop"}), R"({"ok":true})").out, "ok\n");
  EXPECT_EQ(
      render_reply(parse_args({"scale", "+1"}), R"({"ok":true,"message":"workers 4 -> 5"})").out,
      "workers 4 -> 5\n");
  EXPECT_EQ(render_reply(parse_args({"--json", "scale", "+1"}), R"({"ok":true,"workers":5})").out,
            "{\"ok\":true,\"workers\":5}\n");
  EXPECT_EQ(render_reply(parse_args({"reload", "--dry-run"}),
                         R"({"ok":true,"changes":["workers: 2 -> 4","listen: + [::1]:8080"]})")
                .out,
            "workers: 2 -> 4\nlisten: + [::1]:8080\n");
  EXPECT_EQ(render_reply(parse_args({"reload", "--dry-run"}), R"({"ok":true,"changes":[]})").out,
            "no changes\n");
  EXPECT_EQ(render_reply(
                parse_args({"reload"}),
                R"({"ok":true,"message":"reloaded: generation 4","changes":["workers: 2 -> 4"]})")
                .out,
            "reloaded: generation 4\nworkers: 2 -> 4\n");
}

TEST(ForkctlFormat, SendWithWaitPrintsTheWorkersReply) {
  const std::string line = R"({"ok":true,"reply":{"echo":{"job":7},"worker":2,"pid":99}})";
  EXPECT_EQ(render_reply(parse_args({"send", "2", R"({"job":7})", "--wait", "1s"}), line).out,
            "{\"echo\":{\"job\":7},\"pid\":99,\"worker\":2}\n");
  EXPECT_EQ(render_reply(parse_args({"send", "2", "{}"}), R"({"ok":true})").out, "ok\n");
}

TEST(ForkctlFormat, Version) {
  const auto invocation = parse_args({"version"});
  const Rendered both = forkd::ctl::render_version(invocation, "0.2.0",
                                                   std::string(R"({"ok":true,"version":"0.1.0"})"));
  EXPECT_EQ(both.out, "forkctl 0.2.0\nforkd 0.1.0\n");
  EXPECT_EQ(both.exit_code, 0);
  const Rendered alone = forkd::ctl::render_version(invocation, "0.2.0", std::nullopt);
  EXPECT_EQ(alone.out, "forkctl 0.2.0\n");
  const Rendered as_json = forkd::ctl::render_version(
      parse_args({"--json", "version"}), "0.2.0", std::string(R"({"ok":true,"version":"0.1.0"})"));
  EXPECT_EQ(Json::parse(as_json.out), Json({{"forkctl", "0.2.0"}, {"forkd", "0.1.0"}}));
  const Rendered refused = forkd::ctl::render_version(
      invocation, "0.2.0", std::string(R"({"ok":false,"error":"permission denied"})"));
  EXPECT_EQ(refused.exit_code, 1);
  EXPECT_EQ(refused.out, "forkctl 0.2.0\n");
}

}  // namespace

namespace {

TEST(ForkctlFormat, StalledReuseportWorkerIsMarkedInTheStateColumn) {
  const Json reply = Json::parse(R"json({"ok":true,"master":{"pid":1,"version":"0.1.0",
    "uptime_s":5,"config":"(embedded)","generation":1,"last_reload":null},"workers":[
    {"id":0,"pid":7,"state":"ready","generation":1,"uptime_s":5,"restarts":0,"steering":"in"},
    {"id":1,"pid":8,"state":"ready","generation":1,"uptime_s":5,"restarts":0,
     "steering":"stalled"}]})json");
  const std::string table = forkd::ctl::format_status(reply);
  EXPECT_NE(table.find("ready (stalled)"), std::string::npos) << table;
  EXPECT_EQ(table.find("ready (in)"), std::string::npos) << table;
}

}  // namespace
