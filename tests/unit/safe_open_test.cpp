// Opening files and setting socket modes where another user may have planted a symlink.
#include "common/safe_open.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <system_error>

#include "common/log.hpp"
#include "common/socket_file.hpp"
#include "common/unix_socket.hpp"
#include "tests/unit/temp_dir.hpp"

namespace {

namespace fs = std::filesystem;
using forkd::common::open_trusted;
using forkd::common::UniqueFd;
using forkd::test::TempDir;

constexpr uid_t kNobody = 65534;

void write(const std::string& path, const std::string& text) {
  std::ofstream(path) << text;
}

mode_t mode_of(const std::string& path) {
  struct stat st {};
  EXPECT_EQ(::lstat(path.c_str(), &st), 0) << path;
  return st.st_mode & 07777;
}

TEST(OpenTrusted, FollowsALinkInADirectoryOnlyWeCanWrite) {
  TempDir dir;
  write(dir.file("real"), "x");
  fs::create_symlink(dir.file("real"), dir.file("link"));
  std::string error;
  EXPECT_TRUE(open_trusted(dir.file("link"), O_RDONLY | O_CLOEXEC, 0, error)) << error;
}

TEST(OpenTrusted, RefusesALinkInAWorldWritableDirectory) {
  TempDir dir;
  write(dir.file("real"), "x");
  const std::string open_dir = dir.file("open");
  ASSERT_EQ(::mkdir(open_dir.c_str(), 0777), 0);
  ASSERT_EQ(::chmod(open_dir.c_str(), 01777), 0);
  fs::create_symlink(dir.file("real"), open_dir + "/log");
  std::string error;
  EXPECT_FALSE(open_trusted(open_dir + "/log", O_WRONLY | O_APPEND | O_CLOEXEC, 0, error));
  EXPECT_EQ(error, "is a symbolic link in " + open_dir +
                       ", which is writable by everyone; refusing to follow it");
  // A trusted link to the untrusted one is refused at the second hop.
  fs::create_symlink(open_dir + "/log", dir.file("chain"));
  EXPECT_FALSE(open_trusted(dir.file("chain"), O_RDONLY | O_CLOEXEC, 0, error));
  EXPECT_NE(error.find("leads through " + open_dir + "/log"), std::string::npos) << error;
}

TEST(OpenTrusted, AConfigMapVolumeIsRefusedWithThePathThatWorks) {
  // The kubelet's layout: a top directory writable by everyone, NAME -> ..data/NAME,
  // ..data -> ..<timestamp>/ holding the regular files.
  TempDir dir;
  const std::string volume = dir.file("volume");
  ASSERT_EQ(::mkdir(volume.c_str(), 0777), 0);
  ASSERT_EQ(::chmod(volume.c_str(), 0777), 0);
  ASSERT_EQ(::mkdir((volume + "/..2026_12_06_10_00_00.1").c_str(), 0755), 0);
  write(volume + "/..2026_12_06_10_00_00.1/forkd.yaml", "workers: 1\n");
  fs::create_symlink("..2026_12_06_10_00_00.1", volume + "/..data");
  fs::create_symlink("..data/forkd.yaml", volume + "/forkd.yaml");
  std::string error;
  EXPECT_FALSE(open_trusted(volume + "/forkd.yaml", O_RDONLY | O_CLOEXEC, 0, error));
  EXPECT_EQ(error, "is a symbolic link in " + volume +
                       ", which is writable by everyone; refusing to follow it (a Kubernetes "
                       "ConfigMap or Secret volume: name the file as " +
                       volume +
                       "/..data/forkd.yaml, the kubelet's own link, which it swaps atomically on "
                       "update)");
  EXPECT_TRUE(open_trusted(volume + "/..data/forkd.yaml", O_RDONLY | O_CLOEXEC, 0, error)) << error;
}

TEST(OpenTrusted, RefusesALinkInADirectoryAnotherUserOwns) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to give a directory to another user";
  TempDir dir;
  write(dir.file("secret"), "root only");
  const std::string theirs = dir.file("theirs");
  ASSERT_EQ(::mkdir(theirs.c_str(), 0755), 0);
  ASSERT_EQ(::chown(theirs.c_str(), kNobody, kNobody), 0);
  fs::create_symlink(dir.file("secret"), theirs + "/forkd.log");
  std::string error;
  EXPECT_FALSE(forkd::common::log::open_log_file(theirs + "/forkd.log", error));
  EXPECT_EQ(error, "is a symbolic link in " + theirs + ", which is owned by uid 65534; " +
                       "refusing to follow it");
}

TEST(OpenLogFile, RefusesAFileAnotherUserOwnsAndAFifo) {
  TempDir dir;
  const std::string fifo = dir.file("fifo.log");
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  std::string error;
  EXPECT_FALSE(forkd::common::log::open_log_file(fifo, error));  // and does not hang
  EXPECT_EQ(error, "is a FIFO, not a regular file; refusing it");
  EXPECT_TRUE(forkd::common::log::open_log_file("/dev/null", error)) << error;
  EXPECT_TRUE(forkd::common::log::open_log_file(dir.file("new.log"), error)) << error;
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to give a file to another user";
  const std::string theirs = dir.file("theirs.log");
  write(theirs, "");
  ASSERT_EQ(::chown(theirs.c_str(), kNobody, kNobody), 0);
  EXPECT_FALSE(forkd::common::log::open_log_file(theirs, error));
  EXPECT_NE(error.find("is owned by uid 65534, not by root or forkd's user"), std::string::npos)
      << error;
}

TEST(SocketFile, IsBornWithItsModeAndNeverChangedThroughASymlink) {
  TempDir dir;
  const std::string path = dir.file("app.sock");
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  ASSERT_TRUE(fd);
  const mode_t old_mask = ::umask(077);
  EXPECT_EQ(forkd::common::bind_unix_with_mode(fd.get(), forkd::common::UnixAddress(path), 0660),
            0);
  ::umask(old_mask);
  EXPECT_EQ(mode_of(path), 0660U);  // the umask did not narrow it
  forkd::common::set_socket_file_access(path, 0600, std::nullopt);
  EXPECT_EQ(mode_of(path), 0600U);

  // Swapped for a symlink to a file: refused, and the file keeps its mode.
  write(dir.file("victim"), "");
  ASSERT_EQ(::chmod(dir.file("victim").c_str(), 0600), 0);
  ASSERT_EQ(::unlink(path.c_str()), 0);
  fs::create_symlink(dir.file("victim"), path);
  EXPECT_THROW(forkd::common::set_socket_file_access(path, 0666, std::nullopt), std::system_error);
  EXPECT_EQ(mode_of(dir.file("victim")), 0600U);
  // And a regular file in its place is left alone too.
  ASSERT_EQ(::unlink(path.c_str()), 0);
  write(path, "");
  ASSERT_EQ(::chmod(path.c_str(), 0600), 0);
  EXPECT_THROW(forkd::common::set_socket_file_access(path, 0666, std::nullopt), std::system_error);
  EXPECT_EQ(mode_of(path), 0600U);
}

}  // namespace
