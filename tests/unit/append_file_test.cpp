// open_for_append: what a log or audit file may be before forkd appends to it as root.
#include "common/append_file.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <string>

#include "tests/unit/temp_dir.hpp"

namespace {

using forkd::common::open_for_append;
using forkd::test::TempDir;

std::string read_all(const std::string& path) {
  std::ifstream in(path);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

TEST(AppendFile, CreatesAndAppends) {
  TempDir dir;
  const std::string path = dir.file("audit.log");
  { std::ofstream(path) << "before\n"; }
  auto opened = open_for_append(path);
  ASSERT_TRUE(opened.fd) << opened.error;
  EXPECT_TRUE(opened.error.empty());
  ASSERT_EQ(::write(opened.fd.get(), "after\n", 6), 6);
  EXPECT_EQ(read_all(path), "before\nafter\n");
  EXPECT_NE(::fcntl(opened.fd.get(), F_GETFD) & FD_CLOEXEC, 0);
  EXPECT_EQ(::fcntl(opened.fd.get(), F_GETFL) & O_NONBLOCK, 0);

  const std::string fresh = dir.file("new.log");
  auto created = open_for_append(fresh);
  ASSERT_TRUE(created.fd) << created.error;
  struct stat st {};
  ASSERT_EQ(::stat(fresh.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0037U, 0U) << "no more than 0640";
}

TEST(AppendFile, ASymlinkIsNotFollowed) {
  TempDir dir;
  const std::string target = dir.file("secret");
  { std::ofstream(target) << "secret\n"; }
  const std::string link = dir.file("audit.log");
  ASSERT_EQ(::symlink(target.c_str(), link.c_str()), 0);
  auto opened = open_for_append(link);
  EXPECT_FALSE(opened.fd);
  EXPECT_EQ(opened.error, link + " is a symbolic link (not followed)");
  EXPECT_EQ(read_all(target), "secret\n");
  // Dangling, it would be created where it points: refused the same way.
  const std::string dangling = dir.file("dangling.log");
  ASSERT_EQ(::symlink(dir.file("nowhere").c_str(), dangling.c_str()), 0);
  EXPECT_FALSE(open_for_append(dangling).fd);
  EXPECT_NE(::access(dir.file("nowhere").c_str(), F_OK), 0);
}

TEST(AppendFile, AFifoOrDirectoryIsRefusedWithoutBlocking) {
  TempDir dir;
  const std::string fifo = dir.file("fifo");
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  auto opened = open_for_append(fifo);
  EXPECT_FALSE(opened.fd);
  EXPECT_EQ(opened.error, fifo + " is not a regular file");
  EXPECT_EQ(open_for_append(dir.path()).error, dir.path() + " is not a regular file");
  EXPECT_NE(open_for_append("/dev/null").error.find("is not a regular file"), std::string::npos);
}

TEST(AppendFile, AFileOfAnotherUserIsRefused) {
  if (::geteuid() != 0) GTEST_SKIP() << "chown to another user needs root";
  TempDir dir;
  const std::string path = dir.file("theirs.log");
  { std::ofstream(path) << ""; }
  ASSERT_EQ(::chown(path.c_str(), 65534, 65534), 0);
  auto opened = open_for_append(path);
  EXPECT_FALSE(opened.fd);
  EXPECT_EQ(opened.error, path + " is owned by uid 65534, neither root nor forkd's uid 0");
}

TEST(AppendFile, AMissingDirectoryNamesThePathAndTheCause) {
  const auto opened = open_for_append("/nonexistent-dir/audit.log");
  EXPECT_FALSE(opened.fd);
  EXPECT_EQ(opened.error, "/nonexistent-dir/audit.log: No such file or directory");
}

}  // namespace
