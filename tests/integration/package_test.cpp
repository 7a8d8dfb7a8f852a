// The Debian package, built by CPack from this build directory into a temp dir and inspected
// without installing it: control fields and maintainer scripts (dpkg-deb -I/-e), the file list
// (dpkg-deb -c), and the extracted binaries run. It never touches the machine's package
// database: `dpkg -i` belongs to a disposable CI machine, not to a test.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
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
    const fs::path root = fs::path(dir_->path()) / "root";
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
  // dpkg-shlibdeps computed them from the binaries: at least the C and C++ runtimes.
  EXPECT_TRUE(contains(info.out, "\n Depends: ")) << info.out;
  EXPECT_TRUE(contains(info.out, "libc6")) << info.out;
  EXPECT_TRUE(contains(info.out, "libstdc++6")) << info.out;
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
        "./usr/share/doc/forkd/README.md"}) {
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
}

TEST_F(PackageTest, InstalledUnitsPointAtTheInstalledFiles) {
  const fs::path root = extracted();
  const auto unit = read_text((root / "usr/lib/systemd/system/forkd.service").string());
  EXPECT_TRUE(contains(unit, "\nExecStart=/usr/bin/forkd -c /etc/forkd/forkd.yaml\n")) << unit;
  EXPECT_TRUE(contains(unit, "\nExecReload=/usr/bin/forkctl -c /etc/forkd/forkd.yaml")) << unit;
  const auto man = read_text((root / "usr/share/man/man8/forkd.8").string());
  EXPECT_TRUE(man.starts_with(".TH FORKD 8")) << man.substr(0, 80);
}

}  // namespace
