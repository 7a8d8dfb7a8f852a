// The audit trail's words: commands with their arguments (payloads by size), outcomes, signals.
#include "daemon/audit_trail.hpp"

#include <gtest/gtest.h>
#include <signal.h>

#include <nlohmann/json.hpp>
#include <string>

namespace {

using forkd::daemon::describe_command;
using forkd::daemon::describe_outcome;
using forkd::daemon::describe_signal;
using nlohmann::json;

TEST(AuditTrail, CommandsAreWrittenWithTheirArguments) {
  EXPECT_EQ(describe_command("scale", json{{"cmd", "scale"}, {"value", "+2"}}),
            "scale value=\"+2\"");
  EXPECT_EQ(describe_command("scale", json{{"cmd", "scale"}, {"value", 3}}), "scale value=3");
  EXPECT_EQ(describe_command("restart", json{{"cmd", "restart"}, {"worker", 1}}),
            "restart worker=1");
  EXPECT_EQ(describe_command("reload", json{{"cmd", "reload"}, {"dry_run", true}}),
            "reload dry_run=true");
  EXPECT_EQ(describe_command("stop", json{{"cmd", "stop"}, {"fast", false}}), "stop fast=false");
  EXPECT_EQ(describe_command("reopen-logs", json{{"cmd", "reopen-logs"}}), "reopen-logs");
}

TEST(AuditTrail, APayloadIsCountedNeverCopied) {
  const json request = {
      {"cmd", "send"}, {"worker", 0}, {"data", {{"password", "hunter2"}}}, {"wait_ms", 5000}};
  const std::string text = describe_command("send", request);
  EXPECT_EQ(text, "send worker=0 wait_ms=5000 bytes=22");
  EXPECT_EQ(text.find("hunter2"), std::string::npos);
  EXPECT_EQ(describe_command("broadcast", json{{"cmd", "broadcast"}, {"data", "x"}}),
            "broadcast bytes=3");
}

TEST(AuditTrail, StringsAreQuotedEscapedAndCutShort) {
  EXPECT_EQ(describe_command("restart", json{{"worker", "all\n[info] forged"}}),
            "restart worker=\"all\\n[info] forged\"");
  const std::string shown = describe_command("scale", json{{"value", std::string(500, 'x')}});
  EXPECT_LT(shown.size(), 100U);
  EXPECT_TRUE(shown.ends_with("...\"")) << shown;
  EXPECT_EQ(describe_command("restart", json{{"worker", json::array({1, 2})}}),
            "restart worker=(an array)");
  EXPECT_EQ(describe_command("restart", json{{"worker", std::string("\xff")}}),
            "restart worker=\"\xEF\xBF\xBD\"");
}

TEST(AuditTrail, OutcomesSayOkOrWhyNot) {
  EXPECT_EQ(describe_outcome(json{{"ok", true}}), "ok");
  EXPECT_EQ(describe_outcome(json{{"ok", true}, {"message", "scaling from 2 to 3 workers"}}),
            "ok: scaling from 2 to 3 workers");
  EXPECT_EQ(describe_outcome(json{{"ok", false}, {"error", "forkd is stopping"}}),
            "failed: forkd is stopping");
  EXPECT_EQ(describe_outcome(json{{"ok", false}, {"error", "bad\x1b[31m"}}),
            "failed: bad\\u001b[31m");
  EXPECT_EQ(describe_outcome(json("weird")), "failed");
}

TEST(AuditTrail, SignalsNameTheirSender) {
  forkd::common::SignalInfo hup;
  hup.signo = SIGHUP;
  hup.from_process = true;
  hup.sender_pid = 4242;
  hup.sender_uid = 1000;
  EXPECT_EQ(describe_signal(hup), "SIGHUP from uid 1000 pid 4242");
  forkd::common::SignalInfo interrupt;
  interrupt.signo = SIGINT;
  EXPECT_EQ(describe_signal(interrupt), "SIGINT from the kernel");
}

}  // namespace
