#include "daemon/pidfile.hpp"
#include "tests/unit/temp_dir.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>

namespace {

using forkd::common::UniqueFd;
using forkd::daemon::parse_pidfile;
using forkd::daemon::Pidfile;
using forkd::daemon::PidfileError;

using forkd::test::TempDir;

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

void write_text(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::trunc) << text;
}

std::string self_line() {
  return std::to_string(::getpid()) + "\n";
}

// A lock taken on a separate open file description, as a second forkd process would.
bool can_lock(const std::string& path) {
  const UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  return fd && ::flock(fd.get(), LOCK_EX | LOCK_NB) == 0;
}

TEST(PidfileTest, CreatesLocksAndWritesOurPid) {
  const TempDir dir;
  const auto path = dir.file("forkd.pid");
  const auto pidfile = Pidfile::acquire(path);
  EXPECT_EQ(read_text(path), self_line());
  EXPECT_EQ(pidfile.read_pid(), ::getpid());
  EXPECT_FALSE(can_lock(path));
  EXPECT_NE(::fcntl(pidfile.fd(), F_GETFD) & FD_CLOEXEC, 0);
}

TEST(PidfileTest, SecondInstanceIsRefusedNamingThePidAndThePath) {
  const TempDir dir;
  const auto path = dir.file("forkd.pid");
  const auto first = Pidfile::acquire(path);
  try {
    const auto second = Pidfile::acquire(path);
    FAIL() << "a second instance got the pidfile";
  } catch (const PidfileError& e) {
    const std::string expected = "already running (pid " + std::to_string(::getpid()) + ")";
    EXPECT_NE(std::string(e.what()).find(expected), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
    EXPECT_EQ(e.running_pid(), ::getpid());
  }
  EXPECT_EQ(read_text(path), self_line());  // the refused one changed nothing
}

TEST(PidfileTest, StaleFileFromADeadMasterIsTakenOver) {
  const TempDir dir;
  const auto path = dir.file("forkd.pid");
  write_text(path, "4194304000\nleftover junk that is longer than a pid\n");
  const auto pidfile = Pidfile::acquire(path);
  EXPECT_EQ(read_text(path), self_line());
}

TEST(PidfileTest, LockIsReleasedWhenTheMasterGoes) {
  const TempDir dir;
  const auto path = dir.file("forkd.pid");
  { const auto pidfile = Pidfile::acquire(path); }
  EXPECT_TRUE(std::filesystem::exists(path));  // the destructor never unlinks
  EXPECT_TRUE(can_lock(path));
  const auto again = Pidfile::acquire(path);
  EXPECT_EQ(read_text(path), self_line());
}

TEST(PidfileTest, SymlinkIsRefusedAndItsTargetUntouched) {
  const TempDir dir;
  const auto target = dir.file("precious");
  write_text(target, "do not truncate\n");
  const auto path = dir.file("forkd.pid");
  std::filesystem::create_symlink(target, path);
  try {
    const auto pidfile = Pidfile::acquire(path);
    FAIL() << "a symlinked pidfile was accepted";
  } catch (const PidfileError& e) {
    EXPECT_NE(std::string(e.what()).find("symbolic link"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
    EXPECT_FALSE(e.running_pid());
  }
  EXPECT_EQ(read_text(target), "do not truncate\n");
}

TEST(PidfileTest, HardLinkDirectoryAndMissingParentAreRefused) {
  const TempDir dir;
  const auto target = dir.file("precious");
  write_text(target, "keep\n");
  std::filesystem::create_hard_link(target, dir.file("linked.pid"));
  EXPECT_THROW((void)Pidfile::acquire(dir.file("linked.pid")), PidfileError);
  EXPECT_EQ(read_text(target), "keep\n");

  std::filesystem::create_directory(dir.file("dir.pid"));
  EXPECT_THROW((void)Pidfile::acquire(dir.file("dir.pid")), PidfileError);
  EXPECT_THROW((void)Pidfile::acquire(dir.file("missing/forkd.pid")), PidfileError);
}

TEST(PidfileTest, RemoveUnlinksOnlyOurOwnFile) {
  const TempDir dir;
  const auto path = dir.file("forkd.pid");
  auto pidfile = Pidfile::acquire(path);
  EXPECT_EQ(pidfile.remove(), Pidfile::Removal::removed);
  EXPECT_FALSE(std::filesystem::exists(path));
  EXPECT_EQ(pidfile.remove(), Pidfile::Removal::not_ours);  // already gone
}

TEST(PidfileTest, RemoveLeavesAReplacedFileAlone) {
  const TempDir dir;
  const auto path = dir.file("forkd.pid");
  auto pidfile = Pidfile::acquire(path);
  // Someone else's file now sits at the path (another inode).
  std::filesystem::remove(path);
  write_text(path, "777\n");
  EXPECT_EQ(pidfile.remove(), Pidfile::Removal::not_ours);
  EXPECT_EQ(read_text(path), "777\n");
}

TEST(PidfileTest, RewriteHandsTheFileToANewMasterAndRemoveThenLeavesIt) {
  const TempDir dir;
  const auto path = dir.file("forkd.pid");
  auto old_master = Pidfile::acquire(path);

  // The new master adopts the inherited descriptor (same open file description, same lock).
  UniqueFd inherited(::dup(old_master.fd()));
  ASSERT_TRUE(inherited);
  auto new_master = Pidfile::adopt(std::move(inherited), path);
  EXPECT_NE(::fcntl(new_master.fd(), F_GETFD) & FD_CLOEXEC, 0);

  const pid_t new_pid = ::getpid() + 1;
  ASSERT_FALSE(old_master.rewrite(new_pid));
  EXPECT_EQ(read_text(path), std::to_string(new_pid) + "\n");
  EXPECT_EQ(new_master.read_pid(), new_pid);

  // The old master's shutdown leaves the new master's file and lock in place.
  EXPECT_EQ(old_master.remove(), Pidfile::Removal::not_ours);
  { const Pidfile gone = std::move(old_master); }
  EXPECT_TRUE(std::filesystem::exists(path));
  EXPECT_FALSE(can_lock(path));
  try {
    const auto third = Pidfile::acquire(path);
    FAIL() << "a third instance got the pidfile during the upgrade";
  } catch (const PidfileError& e) {
    EXPECT_EQ(e.running_pid(), new_pid);
  }
}

TEST(PidfileTest, AdoptRefusesADescriptorThatIsNotTheLockedFile) {
  const TempDir dir;
  const auto path = dir.file("forkd.pid");
  const auto holder = Pidfile::acquire(path);
  // A fresh open of the same file is another description: the holder's lock refuses it.
  UniqueFd other(::open(path.c_str(), O_RDWR | O_CLOEXEC));
  ASSERT_TRUE(other);
  EXPECT_THROW((void)Pidfile::adopt(std::move(other), path), PidfileError);
  // A descriptor of some other file is refused too.
  write_text(dir.file("other"), "1\n");
  UniqueFd unrelated(::open(dir.file("other").c_str(), O_RDWR | O_CLOEXEC));
  EXPECT_THROW((void)Pidfile::adopt(std::move(unrelated), path), PidfileError);
  EXPECT_THROW((void)Pidfile::adopt(UniqueFd(), path), PidfileError);
}

TEST(PidfileTest, ParsesTheFirstLine) {
  EXPECT_EQ(parse_pidfile("123\n"), 123);
  EXPECT_EQ(parse_pidfile("123"), 123);
  EXPECT_EQ(parse_pidfile("123 \r\nrest"), 123);
  EXPECT_FALSE(parse_pidfile(""));
  EXPECT_FALSE(parse_pidfile("\n123\n"));
  EXPECT_FALSE(parse_pidfile("0\n"));
  EXPECT_FALSE(parse_pidfile("-4\n"));
  EXPECT_FALSE(parse_pidfile("12ab\n"));
  EXPECT_FALSE(parse_pidfile("99999999999999999999\n"));
}

}  // namespace
