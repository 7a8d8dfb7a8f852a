// Worker identity as the running daemon applies it: worker.user is resolved
// when the configuration is loaded, so a user deleted later never makes a
// worker start as root, and a non-root master cannot name another user.
#include <signal.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "common/worker_identity.hpp"
#include "tests/integration/test_support.hpp"

namespace {

using namespace forkd::test;

// Real, effective, saved and filesystem uid, as /proc/PID/status shows them.
std::string uid_line(uid_t uid) {
  std::string line = "Uid:";
  for (int i = 0; i < 4; ++i) line.append("\t").append(std::to_string(uid));
  return line;
}

std::optional<std::string> sbin_tool(const std::string& name) {
  for (const char* dir : {"/usr/sbin/", "/sbin/"}) {
    const std::string path = dir + name;
    if (::access(path.c_str(), X_OK) == 0) return path;
  }
  return std::nullopt;
}

// A system user that exists for one test: created without a home, removed on
// teardown however the test ends (unless the test has removed it already).
class ThrowawayUser {
 public:
  ThrowawayUser(std::string useradd, std::string userdel)
      : name_("forkdt" + std::to_string(::getpid())), userdel_(std::move(userdel)) {
    const auto r =
        run_command({std::move(useradd), "--system", "--no-create-home", "--home-dir",
                     "/nonexistent", "--shell", "/usr/sbin/nologin", "--no-user-group", name_},
                    30s);
    if (r.exit_code() != 0) throw std::runtime_error("useradd " + name_ + ": " + r.err);
    created_ = true;
    std::string error;
    const auto entry = forkd::common::lookup_user(name_, error);
    if (!entry) {
      (void)remove();  // no destructor runs for an object whose constructor threw
      throw std::runtime_error("useradd " + name_ + " made no user: " + error);
    }
    uid_ = entry->uid;
  }
  ThrowawayUser(const ThrowawayUser&) = delete;
  ThrowawayUser& operator=(const ThrowawayUser&) = delete;
  ThrowawayUser(ThrowawayUser&&) = delete;
  ThrowawayUser& operator=(ThrowawayUser&&) = delete;
  ~ThrowawayUser() {
    if (!created_) return;
    try {
      (void)remove();
    } catch (const std::exception& e) {
      ADD_FAILURE() << "userdel " << name_ << ": " << e.what();
    }
  }

  // userdel --force: the user still has processes (its workers).
  [[nodiscard]] RunResult remove() {
    created_ = false;
    return run_command({userdel_, "--force", name_}, 30s);
  }
  [[nodiscard]] const std::string& name() const noexcept { return name_; }
  [[nodiscard]] uid_t uid() const noexcept { return uid_; }

 private:
  std::string name_;
  std::string userdel_;
  bool created_ = false;
  uid_t uid_ = 0;
};

TEST(WorkerIdentityTest, AWorkerWhoseUserWasDeletedIsRespawnedAsThatUidNeverAsRoot) {
  if (::geteuid() != 0) GTEST_SKIP() << "creating a user and dropping to it needs root";
  const auto useradd = sbin_tool("useradd");
  const auto userdel = sbin_tool("userdel");
  if (!useradd || !userdel) GTEST_SKIP() << "useradd/userdel (passwd package) are missing";
  ThrowawayUser user(*useradd, *userdel);
  Cluster c;  // torn down before the user is removed
  c.start("workers: 1\nrestart: {delay: 50ms}\nworker:\n" + test_worker_command("--serve") +
          "  ready: message\n  user: " + user.name() + "\n");
  const auto from = c.wait_all_ready(1);
  const pid_t first = c.forkd.children().at(0);
  EXPECT_EQ(proc_status_line(first, "Uid"), uid_line(user.uid()));

  const auto removed = user.remove();
  ASSERT_EQ(removed.exit_code(), 0) << removed.err;
  std::string error;
  ASSERT_FALSE(forkd::common::lookup_user(user.name(), error)) << "the user is still there";
  ASSERT_EQ(::kill(first, SIGKILL), 0);
  const auto respawned = c.forkd.wait_for_log("worker 0 ready \\(pid (\\d+)", 20s, from);
  ASSERT_TRUE(respawned) << c.forkd.log();
  const pid_t second = std::stoi((*respawned)[1]);
  EXPECT_NE(second, first);
  EXPECT_EQ(proc_status_line(second, "Uid"), uid_line(user.uid()));
  auto r = c.get("/");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);

  // A reload now reads a file naming a user that does not exist: refused, the
  // workers serve on.
  const auto reload = forkctl(c, {"reload"});
  EXPECT_NE(reload.exit_code(), 0);
  EXPECT_NE((reload.out + reload.err).find("no such user \"" + user.name() + "\""),
            std::string::npos)
      << reload.out << reload.err;
  const std::string refused = "reload: .*worker.user: no such user \"" + user.name() + "\"";
  const auto by_forkctl = c.forkd.wait_for_log(refused, 20s, respawned->end_offset);
  ASSERT_TRUE(by_forkctl) << c.forkd.log();
  ASSERT_TRUE(c.forkd.signal(SIGHUP));
  EXPECT_TRUE(c.forkd.wait_for_log(refused, 20s, by_forkctl->end_offset));
  r = c.get("/");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(c.forkd.children(), std::vector<pid_t>{second});
}

TEST(WorkerIdentityTest, ANonRootMasterNamingAnotherUserIsAConfigError) {
  if (::geteuid() != 0) GTEST_SKIP() << "running forkd as another user needs root";
  TempDir dir;
  std::filesystem::permissions(
      dir.path(), std::filesystem::perms::owner_all | std::filesystem::perms::group_read |
                      std::filesystem::perms::group_exec | std::filesystem::perms::others_read |
                      std::filesystem::perms::others_exec);
  const std::string path =
      dir.write_file("c.yaml", "listen: [127.0.0.1:18080]\nworker:\n  user: root\n");
  const uid_t uid = spare_uid();
  auto argv = setpriv_as(uid);
  argv.insert(argv.end(), {"--", forkd_bin(), "-c", path, "--check-config"});
  const auto r = run_command(argv, 10s);
  EXPECT_EQ(r.exit_code(), 78) << r.err;
  EXPECT_NE(r.err.find(path + ":3:9: worker.user: forkd runs as uid " + std::to_string(uid) +
                       " and cannot switch to user \"root\""),
            std::string::npos)
      << r.err;
}

}  // namespace
