// The Debian package, built by CPack from this build directory into a temp dir: control fields
// and maintainer scripts (dpkg-deb -I/-e), the file list (dpkg-deb -c), the extracted binaries
// run, and a real `dpkg -i`/`-r`/`-P` into a root directory of its own (dpkg --root), so that the
// machine's package database and /usr are never touched.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "tests/integration/harness.hpp"

namespace {

using namespace forkd::test;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

// The Debian packages holding the shared libraries a binary loads (ldd, then dpkg -S).
std::set<std::string> library_packages(const fs::path& binary) {
  // Both come with every Debian system (libc-bin, dpkg).
  const auto ldd = run_command({find_tool("ldd").value_or("ldd"), binary.string()}, 30s);
  EXPECT_EQ(ldd.exit_code(), 0) << ldd.err;
  const auto dpkg_query = find_tool("dpkg-query").value_or("dpkg-query");
  std::set<std::string> packages;
  std::istringstream lines(ldd.out);
  for (std::string line; std::getline(lines, line);) {
    // "\tlibm.so.6 => /lib/x86_64-linux-gnu/libm.so.6 (0x...)", "\t/lib64/ld-linux...so.2 (0x...)"
    const auto slash = line.find('/');
    if (slash == std::string::npos) continue;  // the vDSO
    const std::string text = line.substr(slash, line.find(' ', slash) - slash);
    // A package registers the path under /lib or under /usr/lib (merged /usr): ask for both.
    const std::string other = text.starts_with("/usr/") ? text.substr(4) : "/usr" + text;
    auto owner = run_command({dpkg_query, "-S", text}, 30s);
    if (owner.exit_code() != 0) owner = run_command({dpkg_query, "-S", other}, 30s);
    EXPECT_EQ(owner.exit_code(), 0) << text << ": " << owner.err;
    std::istringstream owners(owner.out);
    for (std::string hit; std::getline(owners, hit);) {
      // "libc6:amd64: /lib/x86_64-linux-gnu/libm.so.6"
      const auto name = hit.substr(0, hit.find_first_of(":,"));
      if (!name.empty()) packages.insert(name);
    }
  }
  EXPECT_FALSE(packages.empty()) << binary << " loads no packaged library:\n" << ldd.out;
  return packages;
}

// One .deb for the whole suite: building it takes a few seconds.
class PackageTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    cpack_ = find_tool("cpack").value_or("");
    dpkg_deb_ = find_tool("dpkg-deb").value_or("");
    if (cpack_.empty() || dpkg_deb_.empty()) {
      skip_reason_ = "cpack or dpkg-deb is not installed";
      return;
    }
    // FORKD_BIN is <build>/bin/forkd.
    const fs::path build = fs::path(forkd_bin()).parent_path().parent_path();
    const fs::path config = build / "CPackConfig.cmake";
    if (!fs::exists(config)) {
      skip_reason_ = "no CPackConfig.cmake in " + build.string();
      return;
    }
    dir_ = std::make_unique<TempDir>();
    const auto out = fs::path(dir_->path()) / "out";
    build_result_ =
        run_command({cpack_, "-G", "DEB", "--config", config.string(), "-B", out.string()}, 60s);
    if (build_result_.exit_code() != 0) return;
    for (const auto& entry : fs::directory_iterator(out)) {
      if (entry.path().extension() == ".deb") deb_ = entry.path().string();
    }
  }
  static void TearDownTestSuite() { dir_.reset(); }

  void SetUp() override {
    if (!skip_reason_.empty()) GTEST_SKIP() << skip_reason_;
    ASSERT_EQ(build_result_.exit_code(), 0) << describe_status(build_result_.status) << "\n"
                                            << build_result_.out << build_result_.err;
    ASSERT_FALSE(deb_.empty()) << "cpack wrote no .deb:\n" << build_result_.out;
  }

  static RunResult dpkg_deb(std::vector<std::string> args) {
    args.insert(args.begin(), dpkg_deb_);
    return run_command(std::move(args), 30s);
  }

  // The package unpacked under the temp dir (once).
  static fs::path extracted() {
    fs::path root = fs::path(dir_->path()) / "root";
    if (!fs::exists(root)) {
      const auto r = dpkg_deb({"-x", deb_, root.string()});
      EXPECT_EQ(r.exit_code(), 0) << r.err;
    }
    return root;
  }

  static inline std::string cpack_;
  static inline std::string dpkg_deb_;
  static inline std::string skip_reason_;
  static inline std::unique_ptr<TempDir> dir_;
  static inline RunResult build_result_;
  static inline std::string deb_;
};

TEST_F(PackageTest, ControlFieldsNameThePackageItsMaintainerAndComputedDepends) {
  EXPECT_EQ(
      fs::path(deb_).filename().string().rfind(std::string("forkd_") + FORKD_VERSION + "_", 0), 0U)
      << deb_;
  const auto info = dpkg_deb({"-I", deb_});
  ASSERT_EQ(info.exit_code(), 0) << info.err;
  EXPECT_TRUE(contains(info.out, "\n Package: forkd\n")) << info.out;
  EXPECT_TRUE(contains(info.out, std::string("\n Version: ") + FORKD_VERSION + "\n")) << info.out;
  EXPECT_TRUE(contains(info.out, "\n Maintainer: forkd maintainers\n")) << info.out;
  // dpkg-shlibdeps computed them from the binaries: every package whose shared library the
  // packaged binaries load (only libc6 when the C++ runtime is linked in, FORKD_STATIC_RUNTIME).
  const auto depends_at = info.out.find("\n Depends: ");
  ASSERT_NE(depends_at, std::string::npos) << info.out;
  const std::string depends =
      info.out.substr(depends_at + 1, info.out.find('\n', depends_at + 1) - depends_at - 1);
  EXPECT_TRUE(contains(depends, "libc6")) << depends;
  for (const char* binary : {"usr/bin/forkd", "usr/bin/forkctl"}) {
    for (const auto& package : library_packages(extracted() / binary)) {
      EXPECT_TRUE(contains(depends, package)) << binary << " loads a library of " << package
                                              << ", which " << depends << " does not name";
    }
  }
  for (const char* member : {"conffiles", "postinst", "prerm", "postrm", "md5sums"}) {
    EXPECT_TRUE(contains(info.out, std::string(" ") + member + " ")) << member << "\n" << info.out;
  }
}

TEST_F(PackageTest, MaintainerScriptsAreValidShellAndTheConfigIsAConffile) {
  const fs::path control = fs::path(dir_->path()) / "control";
  const auto r = dpkg_deb({"-e", deb_, control.string()});
  ASSERT_EQ(r.exit_code(), 0) << r.err;
  EXPECT_EQ(read_text((control / "conffiles").string()), "/etc/forkd/forkd.yaml\n");
  for (const char* script : {"postinst", "prerm", "postrm"}) {
    const fs::path path = control / script;
    EXPECT_EQ(::access(path.c_str(), X_OK), 0) << script << " is not executable";
    const auto syntax = run_command({"/bin/sh", "-n", path.string()}, 10s);
    EXPECT_EQ(syntax.exit_code(), 0) << script << ": " << syntax.err;
  }
  const auto postinst = read_text((control / "postinst").string());
  EXPECT_TRUE(contains(postinst, "systemd-sysusers /usr/lib/sysusers.d/forkd.conf")) << postinst;
  EXPECT_TRUE(contains(postinst, "systemd-tmpfiles --create /usr/lib/tmpfiles.d/forkd.conf"))
      << postinst;
}

TEST_F(PackageTest, ListsEveryFileInItsFhsPlace) {
  const auto list = dpkg_deb({"-c", deb_});
  ASSERT_EQ(list.exit_code(), 0) << list.err;
  for (const char* path :
       {"./usr/bin/forkd", "./usr/bin/forkctl", "./etc/forkd/forkd.yaml",
        "./usr/lib/systemd/system/forkd.service", "./usr/lib/systemd/system/forkd-root.service",
        "./usr/lib/systemd/system/forkd.socket", "./usr/lib/sysusers.d/forkd.conf",
        "./usr/lib/tmpfiles.d/forkd.conf", "./usr/share/man/man8/forkd.8",
        "./usr/share/man/man8/forkctl.8", "./usr/share/man/man5/forkd.yaml.5",
        "./usr/share/doc/forkd/README.md", "./usr/lib/forkd/libforkd-takeover.so"}) {
    EXPECT_TRUE(contains(list.out, std::string(" ") + path + "\n")) << path << "\n" << list.out;
  }
  // Nothing outside /usr and /etc, and everything owned by root.
  std::istringstream lines(list.out);
  for (std::string line; std::getline(lines, line);) {
    EXPECT_TRUE(contains(line, " root/root ")) << line;
    EXPECT_TRUE(contains(line, " ./usr/") || contains(line, " ./etc/") || line.ends_with(" ./"))
        << line;
  }
}

TEST_F(PackageTest, ExtractedBinariesRunAndAcceptTheInstalledConfig) {
  const fs::path root = extracted();
  const auto version = run_command({(root / "usr/bin/forkd").string(), "--version"}, 10s);
  EXPECT_EQ(version.exit_code(), 0) << describe_status(version.status) << "\n" << version.err;
  EXPECT_EQ(version.out, std::string("forkd ") + FORKD_VERSION + "\n");
  const auto ctl = run_command({(root / "usr/bin/forkctl").string(), "--version"}, 10s);
  EXPECT_EQ(ctl.exit_code(), 0) << ctl.err;
  EXPECT_TRUE(contains(ctl.out, FORKD_VERSION)) << ctl.out;

  const auto check = run_command({(root / "usr/bin/forkd").string(), "--check-config", "-c",
                                  (root / "etc/forkd/forkd.yaml").string()},
                                 10s);
  EXPECT_EQ(check.exit_code(), 0) << check.err;
  EXPECT_EQ(check.out, "ok\n");

  // The packaged forkd finds the packaged takeover library beside it (../lib/forkd).
  const std::string forced = (root / "takeover.yaml").string();
  {
    std::ofstream out(forced);
    out << "listen: [127.0.0.1:1]\nworker:\n  shell: exec true\n  inherit_bind: on\n";
  }
  const auto takeover =
      run_command({(root / "usr/bin/forkd").string(), "--check-config", "-c", forced}, 10s);
  EXPECT_EQ(takeover.exit_code(), 0) << takeover.err;
}

TEST_F(PackageTest, InstalledUnitsPointAtTheInstalledFiles) {
  const fs::path root = extracted();
  const auto unit = read_text((root / "usr/lib/systemd/system/forkd.service").string());
  EXPECT_TRUE(contains(unit, "\nExecStart=/usr/bin/forkd -c /etc/forkd/forkd.yaml\n")) << unit;
  EXPECT_TRUE(contains(unit, "\nExecReload=/usr/bin/forkctl -c /etc/forkd/forkd.yaml")) << unit;
  const auto man = read_text((root / "usr/share/man/man8/forkd.8").string());
  EXPECT_TRUE(man.starts_with(".TH FORKD 8")) << man.substr(0, 80);
}

// dpkg installs it for real, maintainer scripts included (run chrootless with DPKG_ROOT), into a
// root of its own whose package database starts as a copy of this machine's: the Depends are
// checked against what is really installed here.
TEST_F(PackageTest, InstallsWithDpkgRunsAndRemovesCleanly) {
  if (::geteuid() != 0) GTEST_SKIP() << "dpkg installs files owned by root";
  const auto dpkg = find_tool("dpkg");
  ASSERT_TRUE(dpkg) << "dpkg is not installed";
  const fs::path root = fs::path(dir_->path()) / "dpkg-root";
  const fs::path admin = root / "var/lib/dpkg";
  fs::create_directories(admin / "info");
  fs::create_directories(admin / "updates");
  fs::copy_file("/var/lib/dpkg/status", admin / "status");
  const auto in_root = [&](std::vector<std::string> args) {
    args.insert(args.begin(),
                {*dpkg, "--root=" + root.string(), "--force-script-chrootless", "--log=/dev/null"});
    return run_command(std::move(args), 120s);
  };

  const auto installed = in_root({"-i", deb_});
  ASSERT_EQ(installed.exit_code(), 0) << installed.out << installed.err;
  EXPECT_TRUE(contains(in_root({"-s", "forkd"}).out, "Status: install ok installed"));
  const std::string forkd = (root / "usr/bin/forkd").string();
  const auto version = run_command({forkd, "--version"}, 10s);
  EXPECT_EQ(version.exit_code(), 0) << version.err;
  EXPECT_TRUE(contains(version.out, FORKD_VERSION)) << version.out;
  const auto check =
      run_command({forkd, "--check-config", "-c", (root / "etc/forkd/forkd.yaml").string()}, 10s);
  EXPECT_EQ(check.exit_code(), 0) << check.out << check.err;
  if (find_tool("systemd-sysusers")) {
    EXPECT_TRUE(contains(read_text((root / "etc/passwd").string()), "forkd:x:"))
        << "postinst did not create the forkd user in the package's root";
  }

  const auto removed = in_root({"-r", "forkd"});
  ASSERT_EQ(removed.exit_code(), 0) << removed.out << removed.err;
  EXPECT_FALSE(fs::exists(forkd));
  EXPECT_TRUE(fs::exists(root / "etc/forkd/forkd.yaml")) << "remove keeps the conffile";
  const auto purged = in_root({"-P", "forkd"});
  ASSERT_EQ(purged.exit_code(), 0) << purged.out << purged.err;
  EXPECT_FALSE(fs::exists(root / "etc/forkd"));
  // Nothing of the package is left behind.
  for (const char* top : {"usr", "lib", "etc/forkd"}) {
    if (!fs::exists(root / top)) continue;
    for (const auto& entry : fs::recursive_directory_iterator(root / top)) {
      EXPECT_FALSE(entry.is_regular_file()) << entry.path() << " left after purge";
    }
  }
}

}  // namespace
