// The shipped systemd units, checked by systemd's own tools in offline mode (no systemd needed as
// PID 1): `systemd-analyze verify` must print nothing at all (it exits 0 on unknown keys, so its
// stderr is the verdict), `systemd-analyze security --offline=true` must rate forkd.service at
// most 1.5 and forkd-root.service at most 2.5, and the sysusers.d/tmpfiles.d entries must apply
// to an empty root directory.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iostream>
#include <optional>
#include <regex>
#include <sstream>
#include <string>

#include "tests/integration/harness.hpp"

namespace {

using namespace forkd::test;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

std::string replace_all(std::string text, const std::string& from, const std::string& to) {
  for (std::size_t at = text.find(from); at != std::string::npos;
       at = text.find(from, at + to.size())) {
    text.replace(at, from.size(), to);
  }
  return text;
}

// The units as shipped, with the binaries they run pointed at this build (verify checks that
// ExecStart= and ExecReload= name executables).
std::string unit_for_this_build(const std::string& name) {
  std::string text = read_text((source_dir() / "systemd" / name).string());
  text = replace_all(std::move(text), "/usr/bin/forkd ", forkd_bin() + " ");
  return replace_all(std::move(text), "/usr/bin/forkctl ", forkctl_bin() + " ");
}

class SystemdUnitsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto tool = find_tool("systemd-analyze");
    if (!tool) GTEST_SKIP() << "systemd-analyze is not installed (Debian package systemd)";
    analyze_ = *tool;
    ASSERT_TRUE(fs::exists(source_dir() / "systemd" / "forkd.service")) << source_dir();
  }

  // `systemd-analyze verify` on the given units, written into the temp dir.
  RunResult verify(const std::vector<std::pair<std::string, std::string>>& units) {
    std::vector<std::string> argv{analyze_, "verify", "--man=no", "--no-pager"};
    for (const auto& [name, text] : units) argv.push_back(dir_.write_file(name, text));
    return run_command(argv, 60s, {{"SYSTEMD_LOG_COLOR", "0"}});
  }

  // The "Overall exposure level" of `systemd-analyze security --offline=true`.
  std::optional<double> exposure(const std::string& unit, std::string* output) {
    const auto path = dir_.write_file(unit, unit_for_this_build(unit));
    auto r = run_command({analyze_, "security", "--offline=true", "--no-pager", path}, 60s,
                         {{"SYSTEMD_COLORS", "0"}});
    *output = r.out + r.err;
    EXPECT_EQ(r.exit_code(), 0) << describe_status(r.status) << "\n" << *output;
    EXPECT_EQ(r.err, "") << "systemd-analyze security complained about " << unit;
    std::smatch m;
    const std::regex overall("Overall exposure level for [^:]+: ([0-9]+\\.[0-9]+)");
    if (!std::regex_search(r.out, m, overall)) return std::nullopt;
    return std::stod(m[1].str());
  }

  std::string analyze_;
  TempDir dir_;
};

TEST_F(SystemdUnitsTest, VerifyReportsNothingForTheShippedUnits) {
  const auto r = verify({{"forkd.service", unit_for_this_build("forkd.service")},
                         {"forkd-root.service", unit_for_this_build("forkd-root.service")},
                         {"forkd.socket", unit_for_this_build("forkd.socket")}});
  EXPECT_EQ(r.exit_code(), 0) << describe_status(r.status) << "\n" << r.err;
  EXPECT_EQ(r.err, "") << "systemd-analyze verify warned";
  EXPECT_EQ(r.out, "");
}

TEST_F(SystemdUnitsTest, VerifyWarningsAreSeenByThisTest) {
  // The check above relies on stderr: make sure an unknown key does show up there even though
  // verify exits 0 for it, so a typo in a unit cannot pass unnoticed.
  const auto r =
      verify({{"forkd.service", unit_for_this_build("forkd.service") + "\n[Service]\nBogus=1\n"}});
  EXPECT_NE(r.err.find("Unknown key 'Bogus'"), std::string::npos) << r.err;
}

TEST_F(SystemdUnitsTest, DefaultUnitExposureIsAtMost1_5) {
  std::string output;
  const auto score = exposure("forkd.service", &output);
  ASSERT_TRUE(score) << output;
  std::cout << "[ exposure ] forkd.service: " << *score << '\n';
  RecordProperty("exposure", std::to_string(*score));
  EXPECT_LE(*score, 1.5) << output;
}

TEST_F(SystemdUnitsTest, RootMasterUnitExposureIsAtMost2_5) {
  std::string output;
  const auto score = exposure("forkd-root.service", &output);
  ASSERT_TRUE(score) << output;
  std::cout << "[ exposure ] forkd-root.service: " << *score << '\n';
  RecordProperty("exposure", std::to_string(*score));
  EXPECT_LE(*score, 2.5) << output;
}

TEST_F(SystemdUnitsTest, UnitsRunTheInstalledBinariesWithTheInstalledConfig) {
  for (const char* name : {"forkd.service", "forkd-root.service"}) {
    const auto text = read_text((source_dir() / "systemd" / name).string());
    EXPECT_NE(text.find("\nType=notify\n"), std::string::npos) << name;
    EXPECT_NE(text.find("\nExecStart=/usr/bin/forkd -c /etc/forkd/forkd.yaml\n"), std::string::npos)
        << name;
    EXPECT_NE(text.find("\nExecReload=/usr/bin/forkctl -c /etc/forkd/forkd.yaml"),
              std::string::npos)
        << name;
    EXPECT_NE(text.find("\nKillMode=mixed\n"), std::string::npos) << name;
    EXPECT_NE(text.find("\nRuntimeDirectory=forkd\n"), std::string::npos) << name;
  }
  const auto service = read_text((source_dir() / "systemd" / "forkd.service").string());
  EXPECT_NE(service.find("\nUser=forkd\n"), std::string::npos);
  EXPECT_NE(service.find("\nAmbientCapabilities=CAP_NET_BIND_SERVICE\n"), std::string::npos);
  const auto socket = read_text((source_dir() / "systemd" / "forkd.socket").string());
  EXPECT_NE(socket.find("\nFileDescriptorName=listen0\n"), std::string::npos);
  EXPECT_NE(socket.find("\nService=forkd.service\n"), std::string::npos);
}

TEST_F(SystemdUnitsTest, SysusersAndTmpfilesEntriesApplyToAnEmptyRoot) {
  const auto sysusers = find_tool("systemd-sysusers");
  const auto tmpfiles = find_tool("systemd-tmpfiles");
  if (!sysusers || !tmpfiles) GTEST_SKIP() << "systemd-sysusers/systemd-tmpfiles not installed";
  const fs::path root = fs::path(dir_.path()) / "root";
  dir_.write_file("root/usr/lib/sysusers.d/forkd.conf",
                  read_text((source_dir() / "systemd" / "sysusers.d" / "forkd.conf").string()));
  dir_.write_file("root/usr/lib/tmpfiles.d/forkd.conf",
                  read_text((source_dir() / "systemd" / "tmpfiles.d" / "forkd.conf").string()));
  fs::create_directories(root / "etc");

  const auto users = run_command({*sysusers, "--root=" + root.string()}, 30s);
  ASSERT_EQ(users.exit_code(), 0) << describe_status(users.status) << "\n" << users.err;
  const std::regex forkd_user("(^|\n)forkd:x:([0-9]+):([0-9]+):[^\n]*:/usr/sbin/nologin\n");
  std::smatch m;
  const auto passwd = read_text((root / "etc" / "passwd").string());
  ASSERT_TRUE(std::regex_search(passwd, m, forkd_user)) << passwd;
  const auto uid = static_cast<uid_t>(std::stoul(m[2].str()));
  EXPECT_NE(read_text((root / "etc" / "group").string()).find("forkd:x:"), std::string::npos);

  if (::geteuid() != 0) {
    GTEST_SKIP() << "tmpfiles.d entries chown to forkd: applying them needs root";
  }
  const auto dirs = run_command({*tmpfiles, "--root=" + root.string(), "--create"}, 30s);
  ASSERT_EQ(dirs.exit_code(), 0) << describe_status(dirs.status) << "\n" << dirs.err;
  for (const char* sub : {"run/forkd", "var/log/forkd"}) {
    struct stat st {};
    ASSERT_EQ(::stat((root / sub).c_str(), &st), 0) << sub;
    EXPECT_TRUE(S_ISDIR(st.st_mode)) << sub;
    EXPECT_EQ(st.st_uid, uid) << sub;
  }
}

}  // namespace
