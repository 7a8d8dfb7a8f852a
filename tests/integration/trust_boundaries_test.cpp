// Trust boundaries (SPEC): what a config writer, a second local user or a careless editor can do
// to a running forkd, tried for real. Each attack is one that worked on an earlier forkd: an
// empty file on reload, a FIFO as the config, symlinks planted by whoever owns a log or socket
// directory, a foreign pidfile, a fake control server, an alias bomb.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>

#include "common/worker_identity.hpp"
#include "tests/integration/test_support.hpp"

namespace {

using namespace forkd::test;
using nlohmann::json;

constexpr uid_t kNobody = 65534;

json status(Cluster& c) {
  auto r = forkctl(c, {"--json", "status"});
  EXPECT_EQ(r.exit_code(), 0) << r.err;
  return r.exit_code() == 0 ? json::parse(r.out) : json::object();
}

void rewrite_config(Cluster& c, const std::string& text) {
  (void)c.dir.write_file("forkd.yaml", text);
}

mode_t mode_of(const std::string& path) {
  struct stat st {};
  EXPECT_EQ(::lstat(path.c_str(), &st), 0) << path;
  return st.st_mode & 07777;
}

// A directory in the test's temp dir that belongs to `nobody`, and the temp dir opened so that
// nobody can reach it: the directory a less trusted user owns (a log or socket directory).
std::string nobody_dir(TempDir& dir, const std::string& name) {
  EXPECT_EQ(::chmod(dir.path().c_str(), 0755), 0);
  const std::string path = dir.file(name);
  EXPECT_EQ(::mkdir(path.c_str(), 0755), 0);
  EXPECT_EQ(::chown(path.c_str(), kNobody, kNobody), 0);
  return path;
}

// Runs argv as nobody; the attack steps a second local user takes.
void as_nobody(std::vector<std::string> argv) {
  std::vector<std::string> full = setpriv_as(kNobody);
  full.emplace_back("--");
  full.insert(full.end(), argv.begin(), argv.end());
  const auto r = run_command(full, 10s);
  ASSERT_EQ(r.exit_code(), 0) << argv.front() << ": " << describe_status(r.status) << r.out
                              << r.err;
}

// Whether a client has connected to `listener` (its backlog is not empty), without waiting.
bool has_pending_connection(const Listener& listener) {
  pollfd p{listener.fd(), POLLIN, 0};
  return ::poll(&p, 1, 0) == 1;
}

// A root-owned file only root may read or write: what a planted symlink points at.
std::string victim_file(TempDir& dir) {
  const std::string path = dir.write_file("victim", "root's own data\n");
  EXPECT_EQ(::chmod(path.c_str(), 0600), 0);
  return path;
}

TEST(TrustBoundaries, AnEmptyConfigIsRefusedAndAReloadWithItChangesNothing) {
  Cluster c;
  c.start("workers: 1\n");
  c.wait_all_ready(1);
  const std::string config = c.forkd.config_path();
  const std::string good = read_text(config);

  for (const std::string text : {"", "# being rewritten\n"}) {
    (void)c.dir.write_file("empty.yaml", text);
    const auto check =
        run_command({forkd_bin(), "-c", c.dir.file("empty.yaml"), "--check-config"}, 10s);
    EXPECT_EQ(check.exit_code(), 78) << check.out << check.err;
    EXPECT_NE(
        check.err.find(c.dir.file("empty.yaml") + ": the file is empty or holds only comments"),
        std::string::npos)
        << check.err;
  }

  // What an editor or cp leaves for a moment: the file truncated, then a SIGHUP.
  rewrite_config(c, "");
  ASSERT_TRUE(c.forkd.signal(SIGHUP));
  ASSERT_TRUE(c.forkd.wait_for_log("reload: .*the file is empty or holds only comments", 10s))
      << c.forkd.log();
  const json s = status(c);
  EXPECT_EQ(s["master"]["last_reload"]["ok"], false) << s.dump();
  EXPECT_EQ(s["master"]["generation"], 1);
  auto r = c.get("/");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(c.forkd.count_log("127\\.0\\.0\\.1:8080"), 0U) << "the embedded default was applied";
  rewrite_config(c, good);
}

TEST(TrustBoundaries, AFifoAsTheConfigDoesNotHangTheMaster) {
  Cluster c;
  c.start("workers: 1\n");
  c.wait_all_ready(1);
  const std::string config = c.forkd.config_path();
  ASSERT_EQ(::unlink(config.c_str()), 0);
  ASSERT_EQ(::mkfifo(config.c_str(), 0600), 0);
  ASSERT_TRUE(c.forkd.signal(SIGHUP));
  ASSERT_TRUE(c.forkd.wait_for_log("must be a regular file, this is a FIFO", 10s)) << c.forkd.log();
  const auto reply = forkctl(c, {"status"}, 10s);
  EXPECT_EQ(reply.exit_code(), 0) << reply.err;
  auto r = c.get("/");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
}

TEST(TrustBoundaries, AnAliasBombOnReloadIsRefusedFast) {
  Cluster c;
  c.start("workers: 1\n");
  c.wait_all_ready(1);
  std::string bomb = "listen:\n  - " + c.listener.address() +
                     "\ncontrol:\n  socket: " + c.dir.file("forkd.sock") +
                     "\nworker:\n  cwd: &s \"" + std::string(100'000, 'x') + "\"\n  env:\n";
  for (int i = 0; i < 12'000; ++i) bomb += "    V" + std::to_string(i) + ": *s\n";
  rewrite_config(c, bomb);
  auto r = forkctl(c, {"reload"}, 30s);
  EXPECT_EQ(r.exit_code(), 1) << r.out << r.err;
  EXPECT_NE((r.out + r.err).find("expands to more than 16MiB of text"), std::string::npos)
      << r.out << r.err;
  EXPECT_EQ(status(c)["master"]["last_reload"]["ok"], false);
}

TEST(TrustBoundaries, ConfigErrorsShowControlBytesAndBadUtf8Escaped) {
  TempDir dir;
  const std::string path = dir.write_file("f.yaml", "workers: \"4\\e[2J\xff\"\nbogus\xfe: 1\n");
  const auto r = run_command({forkd_bin(), "-c", path, "--check-config"}, 10s);
  EXPECT_EQ(r.exit_code(), 78);
  EXPECT_NE(r.err.find("\"4\\x1b[2J\\xff\""), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("unknown key \"bogus\\xfe\""), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find('\x1b'), std::string::npos);
  EXPECT_EQ(r.err.find('\xff'), std::string::npos);
}

// nginx CVE-2016-1247: whoever owns the log directory replaces the log with a symlink, and the
// root master appends to (or creates) the file it names on the next reopen.
TEST(TrustBoundaries, ALogSymlinkPlantedByTheDirectoryOwnerIsNotFollowed) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to act as a second user";
  Cluster c;
  const std::string logs = nobody_dir(c.dir, "logs");
  const std::string victim = victim_file(c.dir);
  const std::string log = logs + "/forkd.log";
  c.start("workers: 1\nlog:\n  file: " + log + "\n");
  c.wait_all_ready(1);
  ASSERT_FALSE(read_text(log).empty()) << "forkd logs to " << log << ":\n" << c.forkd.log();

  as_nobody({"/bin/ln", "-sf", victim, log});
  ASSERT_TRUE(c.forkd.signal(SIGUSR1));
  ASSERT_TRUE(c.forkd.wait_for_log("cannot open log file " + log + ": is a symbolic link in " +
                                       logs +
                                       ", which is owned by uid 65534; refusing to follow it",
                                   10s))
      << c.forkd.log();
  ASSERT_EQ(forkctl(c, {"scale", "2"}).exit_code(), 0);  // more lines to write somewhere
  c.wait_all_ready(2);
  EXPECT_EQ(read_text(victim), "root's own data\n");
  EXPECT_EQ(mode_of(victim), 0600U);

  // A log file the other user owns is refused too: they could truncate or forge root's log.
  ASSERT_EQ(::unlink(log.c_str()), 0);
  as_nobody({"/usr/bin/touch", log});
  ASSERT_TRUE(c.forkd.signal(SIGUSR1));
  ASSERT_TRUE(c.forkd.wait_for_log("cannot open log file " + log + ": is owned by uid 65534", 10s))
      << c.forkd.log();
}

// A Unix listener's socket replaced by a symlink to a root file: a reload that changes the
// socket's mode must not chmod the file it names.
TEST(TrustBoundaries, AListenerModeChangeDoesNotFollowAPlantedSymlink) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to act as a second user";
  TempDir dir;
  const std::string sockets = nobody_dir(dir, "sockets");
  const std::string victim = victim_file(dir);
  const std::string socket = sockets + "/app.sock";
  const auto config = [&](const std::string& mode) {
    return "workers: 1\nlisten:\n  - address: unix:" + socket + "\n    mode: \"" + mode +
           "\"\ncontrol:\n  socket: " + dir.file("forkd.sock") + "\n";
  };
  ForkdProcess forkd;
  ForkdOptions options;
  options.config_yaml = config("0660");
  forkd.start(dir, options);
  std::string why;
  ASSERT_TRUE(wait_workers_ready(forkd, dir.file("forkd.sock"), 1, std::nullopt, 30s, &why)) << why;
  EXPECT_EQ(mode_of(socket), 0660U);

  as_nobody({"/bin/ln", "-sf", victim, socket});
  (void)dir.write_file("forkd.yaml", config("0666"));
  ASSERT_TRUE(forkd.signal(SIGHUP));
  ASSERT_TRUE(forkd.wait_for_log("reload: .*no longer a socket", 10s)) << forkd.log();
  EXPECT_EQ(mode_of(victim), 0600U);
  EXPECT_EQ(read_text(victim), "root's own data\n");
}

TEST(TrustBoundaries, APidfileAnotherUserOwnsInTheirDirectoryIsRefused) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to act as a second user";
  TempDir dir;
  const std::string run = nobody_dir(dir, "run");
  const std::string pidfile = run + "/forkd.pid";
  as_nobody({"/bin/sh", "-c", "echo 1 > " + pidfile});
  ForkdProcess forkd;
  ForkdOptions options;
  options.config_yaml = "workers: 1\nlisten: [127.0.0.1:" + std::to_string(free_tcp_port()) +
                        "]\ncontrol:\n  socket: " + dir.file("forkd.sock") +
                        "\npidfile: " + pidfile + "\n";
  forkd.start(dir, options);
  const auto exited = forkd.wait_exit(20s);
  ASSERT_TRUE(exited) << forkd.log();
  EXPECT_NE(*exited, 0);
  EXPECT_NE(forkd.log().find("pidfile " + pidfile + ": is owned by uid 65534 in " + run +
                             ", which is owned by uid 65534; refusing it"),
            std::string::npos)
      << forkd.log();
  EXPECT_EQ(read_text(pidfile), "1\n");
}

// A server another user could have started: forkctl must not send it a payload or print what it
// answers.
TEST(TrustBoundaries, ForkctlRefusesASocketDirectoryOthersCanWrite) {
  TempDir dir;
  const std::string open_dir = dir.file("open");
  ASSERT_EQ(::mkdir(open_dir.c_str(), 0755), 0);
  ASSERT_EQ(::chmod(open_dir.c_str(), 01777), 0);
  const Listener fake = Listener::unix_socket(open_dir + "/forkd.sock");
  const auto r = run_command(
      {forkctl_bin(), "-s", open_dir + "/forkd.sock", "send", "0", R"({"secret":1})"}, 10s);
  EXPECT_EQ(r.exit_code(), 2) << r.out << r.err;
  EXPECT_NE(r.err.find("the socket directory " + open_dir +
                       " is writable by everyone, so another user could have put a fake server "
                       "there; refusing to use it"),
            std::string::npos)
      << r.err;
  EXPECT_FALSE(has_pending_connection(fake)) << "forkctl connected to the fake server";
}

// The default path of a user without XDG_RUNTIME_DIR: /tmp/forkd-UID made by someone else.
TEST(TrustBoundaries, ForkctlRefusesATmpDirectoryAnotherUserMadeForUs) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to act as two other users";
  const uid_t uid = spare_uid();
  const std::string planted = "/tmp/forkd-" + std::to_string(uid);
  if (::mkdir(planted.c_str(), 0755) != 0) GTEST_SKIP() << planted << " already exists";
  struct Cleanup {
    std::string dir;
    ~Cleanup() { std::filesystem::remove_all(dir); }
  } cleanup{planted};
  const Listener fake = Listener::unix_socket(planted + "/forkd.sock");
  ASSERT_EQ(::chmod((planted + "/forkd.sock").c_str(), 0777), 0);
  ASSERT_EQ(::chown(planted.c_str(), kNobody, kNobody), 0);  // the squatter's, not uid's
  std::vector<std::string> argv = setpriv_as(uid);
  argv.insert(argv.end(), {"--", "/usr/bin/env", "-u", "XDG_RUNTIME_DIR", forkctl_bin(), "status"});
  const auto r = run_command(argv, 10s);
  EXPECT_EQ(r.exit_code(), 2) << r.out << r.err;
  EXPECT_NE(r.err.find("the socket directory " + planted + " is owned by uid 65534 in /tmp"),
            std::string::npos)
      << r.err;
  EXPECT_FALSE(has_pending_connection(fake)) << "forkctl connected to the planted server";
}

// What forkd.service sets up: /run/forkd made by root (RuntimeDirectory=) and given to the
// service's user. Root's forkctl, and operators of control.group, must still reach it.
TEST(TrustBoundaries, ForkctlTrustsADirectoryRootGaveToTheServiceUser) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to give a directory to another user";
  Cluster c;
  const std::string run = nobody_dir(c.dir, "run");
  ASSERT_EQ(::chmod(c.dir.path().c_str(), 0755), 0);
  c.start("workers: 1\ncontrol:\n  socket: " + run + "/forkd.sock\n");
  c.wait_all_ready(1);
  const auto r = run_command({forkctl_bin(), "-s", run + "/forkd.sock", "status"}, 10s);
  EXPECT_EQ(r.exit_code(), 0) << r.out << r.err;
}

// Under `user: nobody` a worker used to see the master's HOME=/root.
TEST(TrustBoundaries, WorkersGetTheirOwnUsersHomeAndNames) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to switch users";
  Cluster c;
  c.start(
      "workers: 1\nworker:\n  user: nobody\n  ready: started\n  shell: 'echo \"account "
      "HOME=$HOME USER=$USER LOGNAME=$LOGNAME SHELL=$SHELL\"; exec sleep 600'\n");
  const auto m =
      c.forkd.wait_for_log("account HOME=(\\S*) USER=(\\S*) LOGNAME=(\\S*) SHELL=(\\S*)", 30s);
  ASSERT_TRUE(m) << c.forkd.log();
  std::string error;
  const auto nobody = forkd::common::lookup_user("nobody", error);
  ASSERT_TRUE(nobody) << error;
  EXPECT_EQ((*m)[1], nobody->home);
  EXPECT_EQ((*m)[2], "nobody");
  EXPECT_EQ((*m)[3], "nobody");
  EXPECT_EQ((*m)[4], nobody->shell);
}

TEST(TrustBoundaries, AWrongTypeInARequestGetsAnErrorThatSaysSo) {
  Cluster c;
  c.start("workers: 1\n");
  c.wait_all_ready(1);
  const json reply =
      json::parse(control_request(c.dir.file("forkd.sock"), R"({"cmd":"reload","dry_run":"yes"})"
                                                            "\n"));
  EXPECT_EQ(reply["ok"], false);
  EXPECT_EQ(reply["error"], "reload: dry_run must be true or false, got \"yes\"");
  const json stop =
      json::parse(control_request(c.dir.file("forkd.sock"), R"({"cmd":"stop","fast":1})"
                                                            "\n"));
  EXPECT_EQ(stop["error"], "stop: fast must be true or false, got 1");
  EXPECT_TRUE(c.forkd.running());
}

}  // namespace
