// The audit trail: what changed the service and who asked, kept whatever log.level says, in
// the main log or in log.audit's own file, with the caller's uid and pid and the arguments.
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <string>

#include "tests/integration/test_support.hpp"

namespace {

using namespace forkd::test;

std::string me() {
  return "uid " + std::to_string(::getuid()) + " pid " + std::to_string(::getpid());
}

// With log.level: error nothing at info is written, yet the trail is: a scale names its
// target count and its caller, a SIGHUP its sender.
TEST(AuditTest, ScaleAndSighupAreRecordedInTheMainLogWhateverTheLevel) {
  Cluster c;
  c.start("workers: 2\nlog:\n  level: error\n");
  ASSERT_TRUE(wait_until([&] { return forkctl(c, {"status"}).exit_code() == 0; }, 20s));
  const auto scaled = forkctl(c, {"scale", "3"});
  ASSERT_EQ(scaled.exit_code(), 0) << scaled.out << scaled.err;
  const auto scale = c.forkd.wait_for_log(
      "\\[info\\] audit: scale value=\"3\" by uid (\\d+) pid (\\d+): ok: scaling from 2 to 3 "
      "workers$",
      10s);
  ASSERT_TRUE(scale) << c.forkd.log();
  EXPECT_EQ((*scale)[1], std::to_string(::getuid()));
  EXPECT_NE((*scale)[2], "0");

  ASSERT_TRUE(c.forkd.signal(SIGHUP));
  EXPECT_TRUE(c.forkd.wait_for_log("\\[info\\] audit: signal SIGHUP from " + me() + "$", 10s))
      << c.forkd.log();
  // The level still holds for everything else.
  EXPECT_EQ(c.forkd.count_log("\\[info\\] master:"), 0U) << c.forkd.log();
}

// log.audit: a file of its own (and nothing of the trail in the main log), reopened after
// logrotate's rename on SIGUSR1, and followed to a new path on reload.
TEST(AuditTest, AnAuditFileOfItsOwnIsReopenedOnSigusr1AndFollowedOnReload) {
  Cluster c;
  const std::string audit = c.dir.file("audit.log");
  c.start("workers: 2\nlog:\n  level: error\n  audit: " + audit + "\n");
  ASSERT_TRUE(wait_until([&] { return forkctl(c, {"status"}).exit_code() == 0; }, 20s));
  ASSERT_EQ(forkctl(c, {"scale", "3"}).exit_code(), 0);
  const std::string scale_record =
      "audit: scale value=\"3\" by uid " + std::to_string(::getuid()) + " pid ";
  ASSERT_TRUE(
      wait_until([&] { return read_text(audit).find(scale_record) != std::string::npos; }, 10s))
      << read_text(audit);
  struct stat st {};
  ASSERT_EQ(::stat(audit.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0027, 0U) << "no more than 0640";

  std::filesystem::rename(audit, audit + ".1");
  ASSERT_TRUE(c.forkd.signal(SIGUSR1));
  ASSERT_TRUE(wait_until([&] { return std::filesystem::exists(audit); }, 10s));
  ASSERT_EQ(forkctl(c, {"scale", "4"}).exit_code(), 0);
  ASSERT_TRUE(wait_until(
      [&] { return read_text(audit).find("audit: scale value=\"4\"") != std::string::npos; }, 10s))
      << read_text(audit);
  const std::string rotated = read_text(audit + ".1");
  EXPECT_NE(rotated.find("audit: signal SIGUSR1 from " + me()), std::string::npos) << rotated;

  const std::string moved = c.dir.file("audit-2.log");
  c.rewrite_config("workers: 3\nlog:\n  level: error\n  audit: " + moved + "\n");
  const auto reloaded = forkctl(c, {"reload"}, 60s);
  ASSERT_EQ(reloaded.exit_code(), 0) << reloaded.out << reloaded.err;
  ASSERT_TRUE(wait_until(
      [&] {
        return read_text(moved).find("audit: reload dry_run=false by uid ") != std::string::npos;
      },
      10s))
      << read_text(moved);
  EXPECT_EQ(c.forkd.count_log("audit:"), 0U) << c.forkd.log();
}

// A symlink planted where the audit file goes is not followed (the file it points at stays
// untouched); the records go to the main log instead, and forkd says why.
TEST(AuditTest, APlantedSymlinkIsNotFollowedAndTheTrailGoesToTheMainLog) {
  Cluster c;
  const std::string target = c.dir.write_file("precious", "precious\n");
  // A directory anyone may write to, as the audit file's: whoever could have planted the link.
  const std::string shared = c.dir.file("shared");
  ASSERT_EQ(::mkdir(shared.c_str(), 0777), 0);
  ASSERT_EQ(::chmod(shared.c_str(), 01777), 0);
  const std::string audit = shared + "/audit.log";
  ASSERT_EQ(::symlink(target.c_str(), audit.c_str()), 0);
  c.start("workers: 1\nlog:\n  level: error\n  audit: " + audit + "\n");
  ASSERT_TRUE(c.forkd.wait_for_log("cannot open audit file " + audit + ": is a symbolic link in " +
                                       shared +
                                       ", which is writable by everyone; refusing to follow it; "
                                       "audit records go to the main log instead",
                                   20s))
      << c.forkd.log();
  ASSERT_TRUE(wait_until([&] { return forkctl(c, {"status"}).exit_code() == 0; }, 20s));
  ASSERT_EQ(forkctl(c, {"scale", "2"}).exit_code(), 0);
  EXPECT_TRUE(c.forkd.wait_for_log("audit: scale value=\"2\" by uid", 10s)) << c.forkd.log();
  EXPECT_EQ(read_text(target), "precious\n");
}

}  // namespace
