// Turning net.ipv4.tcp_migrate_req on, exercised on stand-in files instead of the real sysctl.
#include "daemon/request_migration.hpp"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "tests/unit/temp_dir.hpp"

namespace {

using forkd::daemon::enable_request_migration;
using forkd::daemon::RequestMigration;
using forkd::test::TempDir;

std::string write(const std::string& path, const std::string& text) {
  std::ofstream(path) << text;
  return path;
}

std::string read(const std::string& path) {
  std::ifstream in(path);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

TEST(RequestMigrationTest, OffIsSwitchedOn) {
  TempDir dir;
  const auto path = write(dir.file("tcp_migrate_req"), "0\n");
  EXPECT_EQ(enable_request_migration(path).state, RequestMigration::State::switched_on);
  EXPECT_EQ(read(path), "1\n");
}

TEST(RequestMigrationTest, OnIsLeftAlone) {
  TempDir dir;
  const auto path = write(dir.file("tcp_migrate_req"), "1\n");
  EXPECT_EQ(enable_request_migration(path).state, RequestMigration::State::already_on);
  EXPECT_EQ(read(path), "1\n");
}

TEST(RequestMigrationTest, AMissingSwitchNamesTheKernel) {
  TempDir dir;
  const auto result = enable_request_migration(dir.file("absent"));
  EXPECT_EQ(result.state, RequestMigration::State::off);
  EXPECT_NE(result.detail.find("Linux 5.14"), std::string::npos) << result.detail;
}

TEST(RequestMigrationTest, AnUnwritableSwitchSaysWhy) {
  TempDir dir;
  // A directory: readable, never writable, whoever we are (root ignores file modes).
  const auto path = dir.file("tcp_migrate_req");
  std::filesystem::create_directory(path);
  const auto result = enable_request_migration(path);
  EXPECT_EQ(result.state, RequestMigration::State::off);
  EXPECT_NE(result.detail.find("cannot be set here (" + path), std::string::npos) << result.detail;
}

}  // namespace
