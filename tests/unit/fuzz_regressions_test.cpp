// Every input the fuzzers found a bug with (fuzz/regressions/<target>/) and the seed corpora
// (fuzz/corpus/<target>/), replayed through the same property checks as the fuzz targets
// (fuzz/checks.hpp) with the known-bug skips off, plus each finding spelled out as a test.
// A kept input may hang or exhaust memory, so each replay runs in a child with a time and
// memory bound: a finding fails its test instead of taking the suite down.
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "common/config.hpp"
#include "common/http.hpp"
#include "daemon/forkctl/args.hpp"
#include "daemon/forkctl/format.hpp"
#include "fuzz/checks.hpp"
#include "tests/unit/source_tree.hpp"

namespace {

namespace fs = std::filesystem;
using forkd::fuzz::check_config;
using forkd::fuzz::check_control;
using forkd::fuzz::check_http;
using forkd::fuzz::check_ipc_protocol;
using forkd::fuzz::check_ndjson;
using forkd::fuzz::check_sd_notify;
using forkd::fuzz::check_units;

using Check = std::string (*)(std::string_view, bool);

// The source tree, found from this file: the corpora live there, not in the build directory.
fs::path fuzz_dir() {
  return forkd::test::source_root() / "fuzz";
}

std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

std::vector<fs::path> files_in(const fs::path& dir) {
  std::vector<fs::path> files;
  if (!fs::is_directory(dir)) return files;
  for (const auto& entry : fs::directory_iterator(dir)) {
    if (entry.is_regular_file()) files.push_back(entry.path());
  }
  std::sort(files.begin(), files.end());
  return files;
}

// Caps the child's new memory at 512 MiB beyond what it has (RLIMIT_DATA counts new mappings,
// so the sanitizers' existing shadow reservations do not matter) and its time at `seconds`.
void bound_this_process(unsigned seconds) {
  std::ifstream status("/proc/self/status");
  std::string line;
  rlim_t data_kib = 0;
  while (std::getline(status, line)) {
    if (line.rfind("VmData:", 0) == 0) data_kib = std::stoull(line.substr(7));
  }
  const rlim_t limit = (data_kib + (rlim_t{1} << 19)) * 1024;
  const rlimit cap{limit, limit};
  (void)::setrlimit(RLIMIT_DATA, &cap);
  ::alarm(seconds);
}

// In the child: runs the check, says what broke, exits 0 only when every property held.
[[noreturn]] void replay_and_exit(Check check, const std::string& data) {
  bound_this_process(20);
  std::string broken;
  try {
    broken = check(data, false);
  } catch (const std::exception& error) {
    broken = std::string("exception escaped: ") + error.what();
  } catch (...) {
    broken = "unknown exception escaped";
  }
  if (!broken.empty()) {
    (void)std::fprintf(stderr, "property broken: %s\n", broken.c_str());
    (void)std::fflush(stderr);
    std::_Exit(1);
  }
  std::_Exit(0);
}

struct Target {
  const char* name;
  Check check;
};

constexpr Target kTargets[] = {
    {"config", &check_config},
    {"units", &check_units},
    {"ndjson", &check_ndjson},
    {"control", &check_control},
    {"sd_notify", &check_sd_notify},
    {"http", &check_http},
    {"ipc_protocol", &check_ipc_protocol},
};

class FuzzRegressionsTest : public ::testing::Test {
 protected:
  void SetUp() override { GTEST_FLAG_SET(death_test_style, "threadsafe"); }
};

TEST_F(FuzzRegressionsTest, SeedCorporaAreThereAndHoldEveryProperty) {
  for (const Target& target : kTargets) {
    const auto files = files_in(fuzz_dir() / "corpus" / target.name);
    EXPECT_FALSE(files.empty()) << "no seed corpus for " << target.name;
    for (const auto& file : files) {
      SCOPED_TRACE(file.string());
      EXPECT_EQ(target.check(read_file(file), false), "");
    }
  }
}

// Each kept crash, hang or property-breaking input, replayed in a bounded child.
TEST_F(FuzzRegressionsTest, EveryKeptFindingNowPasses) {
  for (const Target& target : kTargets) {
    for (const auto& file : files_in(fuzz_dir() / "regressions" / target.name)) {
      SCOPED_TRACE(file.string());
      const std::string data = read_file(file);
      EXPECT_EXIT(replay_and_exit(target.check, data), ::testing::ExitedWithCode(0), "")
          << target.name << " finding " << file.filename().string()
          << " still breaks a property (or hangs, or crashes)";
    }
  }
}

// Found by fuzz_config: yaml-cpp's YAML::LoadAll, which Loader::load() (common/config.cpp)
// calls, never returns on a file holding just "," (nor " ," or "---\n,"): the parser keeps
// reporting an empty document without consuming the comma, each one allocated, so forkd
// --check-config, a start and a SIGHUP reload grow without bound (hundreds of MiB a second)
// until std::bad_alloc. It must be a ConfigError naming the file like any syntax error.
[[noreturn]] void load_and_exit(const std::string& yaml) {
  bound_this_process(10);
  try {
    (void)forkd::common::load_config_string(yaml, "comma.yaml");
    (void)std::fprintf(stderr, "loaded without an error\n");
  } catch (const forkd::common::ConfigError& error) {
    std::_Exit(error.issues().empty() ? 1 : 0);
  } catch (const std::exception& error) {
    (void)std::fprintf(stderr, "escaped: %s\n", error.what());
  }
  std::_Exit(1);
}

TEST_F(FuzzRegressionsTest, ConfigOfALoneCommaIsAnErrorNotAnEndlessLoad) {
  for (const char* text : {",", " ,", "---\n,"}) {
    SCOPED_TRACE(text);
    EXPECT_EXIT(load_and_exit(text), ::testing::ExitedWithCode(0), "");
  }
}

// Found by fuzz_control (with _GLIBCXX_ASSERTIONS, as the fuzz build compiles): `forkctl scale
// ""` makes build_request (daemon/forkctl/args.cpp) call front() on the empty value, undefined
// behaviour that an assertion-enabled libstdc++ aborts on. It must be a usage error.
TEST_F(FuzzRegressionsTest, ScaleWithAnEmptyValueIsAUsageError) {
  EXPECT_THROW((void)forkd::ctl::parse_args({"scale", ""}), forkd::ctl::UsageError);
  EXPECT_THROW((void)forkd::ctl::parse_args({"--json", "scale", "", "--timeout", "1s"}),
               forkd::ctl::UsageError);
}

// Found with fuzz_control (UBSan's float-cast-overflow, which the fuzz build enables):
// format_uptime and rss_cell (daemon/forkctl/format.cpp) cast a reply's double straight to
// uint64_t, undefined behaviour beyond 2^64; on x86-64 the result is 0, so an absurd uptime
// prints as "0s" and an absurd RSS as "0B". The rendering must stay defined and not pretend.
TEST_F(FuzzRegressionsTest, AbsurdUptimeAndRssInAReplyAreNotRenderedAsZero) {
  EXPECT_NE(forkd::ctl::format_uptime(1e300), "0s");
  const auto reply = nlohmann::json::parse(
      R"({"ok":true,"workers":[{"id":0,"pid":7,"state":"ready","rss_bytes":1e300}]})");
  const std::string table = forkd::ctl::format_status(reply);
  EXPECT_EQ(table.find(" 0B"), std::string::npos) << table;
}

// Found by fuzz_http: parse_request (common/http.cpp) skips every leading blank line
// before it compares their count with max_head_bytes, so past the cap a stray CR is answered
// 400 when the bytes arrive together and 431 when the first part arrives alone. The server
// re-parses from the start as bytes arrive: the answer must not depend on how they were cut.
TEST_F(FuzzRegressionsTest, BlankLinesPastTheHeadCapGetOneStatusWhateverTheChunking) {
  forkd::common::HttpLimits limits;
  limits.max_head_bytes = 16;
  const std::string bytes = std::string(18, '\n') + "\rX";
  forkd::common::HttpRequest request;
  const auto whole = forkd::common::parse_request(bytes, limits, request);
  const auto first_part = forkd::common::parse_request(bytes.substr(0, 17), limits, request);
  ASSERT_EQ(whole.status, forkd::common::ParseStatus::error);
  ASSERT_EQ(first_part.status, forkd::common::ParseStatus::error);
  EXPECT_EQ(whole.error_status, first_part.error_status);
}

}  // namespace
