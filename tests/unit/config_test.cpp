#include "common/config.hpp"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "tests/unit/source_tree.hpp"
#include "tests/unit/temp_dir.hpp"

namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using forkd::common::AddressKind;
using forkd::common::Config;
using forkd::common::ConfigError;
using forkd::common::ConfigIssue;
using forkd::common::default_config;
using forkd::common::InheritBind;
using forkd::common::load_config_file;
using forkd::common::load_config_string;
using forkd::common::LoadOptions;
using forkd::common::LogFormat;
using forkd::common::LogLevel;
using forkd::common::OutputMode;
using forkd::common::ReadyMode;
using forkd::common::to_yaml;

constexpr const char* kSource = "forkd.yaml";

Config load(const std::string& yaml, const LoadOptions& options = {}) {
  return load_config_string(yaml, kSource, options);
}

// Every issue of an invalid config, as "file:line:col: message" lines.
std::vector<std::string> errors_of(const std::string& yaml, const LoadOptions& options = {}) {
  try {
    (void)load_config_string(yaml, kSource, options);
  } catch (const ConfigError& error) {
    std::vector<std::string> lines;
    for (const ConfigIssue& issue : error.issues()) lines.push_back(issue.to_string());
    return lines;
  }
  ADD_FAILURE() << "no error for:\n" << yaml;
  return {};
}

// The single issue of an invalid config.
std::string error_of(const std::string& yaml) {
  const auto errors = errors_of(yaml);
  if (errors.size() != 1) {
    std::string all;
    for (const auto& e : errors) all += e + "\n";
    ADD_FAILURE() << "expected one error, got " << errors.size() << ":\n" << all;
    return errors.empty() ? "" : errors.front();
  }
  return errors.front();
}

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

Config without_source(Config config) {
  config.source.clear();
  return config;
}

using forkd::test::TempDir;

// A file in `dir` with these contents and permission bits.
fs::path write_file(const TempDir& dir, const std::string& name, const std::string& text,
                    fs::perms perms) {
  fs::path file = dir.file(name);
  std::ofstream(file) << text;
  fs::permissions(file, perms);
  return file;
}

// ---- basics -------------------------------------------------------------------------------

TEST(ConfigDefaults, EmbeddedDefaultFollowsTheSpec) {
  const Config config = default_config();
  EXPECT_EQ(config.source, "<embedded default>");
  EXPECT_EQ(config.workers, 0U);
  ASSERT_EQ(config.listen.size(), 1U);
  EXPECT_EQ(config.listen[0].address, "127.0.0.1:8080");
  EXPECT_EQ(config.listen[0].kind, AddressKind::tcp4);
  EXPECT_EQ(config.listen[0].host, "127.0.0.1");
  EXPECT_EQ(config.listen[0].port, 8080);
  EXPECT_EQ(config.listen[0].name, "listen0");
  EXPECT_EQ(config.listen[0].backlog, 1024);
  EXPECT_EQ(config.worker.app, "http-hello");
  EXPECT_EQ(config.worker.ready_timeout, 30s);
  EXPECT_EQ(config.worker.shutdown_timeout, 30s);
  EXPECT_EQ(config.restart.delay, 100ms);
  EXPECT_EQ(config.restart.max_delay, 30s);
  EXPECT_EQ(config.restart.min_uptime, 1s);
  EXPECT_EQ(config.control.socket, "");
  EXPECT_EQ(config.control.mode, 0600U);
  EXPECT_EQ(config.ipc.max_message, 1024U * 1024U);
  EXPECT_EQ(config.log.level, LogLevel::info);
  EXPECT_FALSE(config.log.format_set);
}

// A file truncated by an editor or cp, reloaded in that gap, must not become the defaults.
TEST(ConfigLoad, EmptyOrCommentOnlyFileIsAnError) {
  const std::string expected =
      "forkd.yaml: the file is empty or holds only comments; a config must set at least one key "
      "(run forkd without -c for the embedded default)";
  EXPECT_EQ(error_of(""), expected);
  EXPECT_EQ(error_of("# nothing here\n\n"), expected);
  EXPECT_EQ(error_of("---\n...\n"), expected);
  EXPECT_EQ(without_source(load("{}\n")), without_source(default_config()));
}

TEST(ConfigLoad, StopDelay) {
  EXPECT_EQ(default_config().stop.delay, 0ms);
  EXPECT_EQ(load("stop:\n  delay: 15s\n").stop.delay, 15s);
  EXPECT_EQ(error_of("stop:\n  delay: soon\n").find("forkd.yaml:2:10: stop.delay: "), 0U);
  EXPECT_NE(to_yaml(load("stop:\n  delay: 15s\n")).find("stop:\n  delay: 15s\n"),
            std::string::npos);
}

TEST(ConfigLoad, MaxMemoryAuto) {
  EXPECT_FALSE(default_config().worker.max_memory_auto);
  const Config config = load("worker:\n  max_memory: auto\n");
  EXPECT_TRUE(config.worker.max_memory_auto);
  EXPECT_EQ(config.worker.max_memory, 0U);
  EXPECT_NE(to_yaml(config).find("  max_memory: auto\n"), std::string::npos);
  EXPECT_EQ(without_source(load(to_yaml(config))), without_source(config));
  EXPECT_EQ(error_of("worker:\n  max_memory: lots\n").find("forkd.yaml:2:15: worker.max_memory: "),
            0U);
  EXPECT_TRUE(contains(error_of("worker:\n  max_memory: lots\n"), "or auto"));
}

TEST(ConfigLoad, AliasesCannotExpandPastTheLimits) {
  // 230 KB of aliases that would stand for 1.1 GB of env values.
  std::string yaml = "s: &s \"" + std::string(100'000, 'x') + "\"\nworker:\n  env:\n";
  for (int i = 0; i < 12'000; ++i) yaml += "    V" + std::to_string(i) + ": *s\n";
  const std::string error = error_of(yaml);
  EXPECT_NE(error.find("expands to more than 16MiB of text once its aliases"), std::string::npos)
      << error;
  // Billion laughs: nine levels of ten.
  std::string laughs = "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n";
  for (int level = 1; level < 9; ++level) {
    laughs += "a" + std::to_string(level) + ": &a" + std::to_string(level) + " [";
    for (int i = 0; i < 10; ++i) laughs += (i > 0 ? ", *a" : "*a") + std::to_string(level - 1);
    laughs += "]\n";
  }
  const auto errors = errors_of(laughs + "listen: *a8\n");
  ASSERT_EQ(errors.size(), 1U);
  EXPECT_NE(errors[0].find("expands to more than 200000 values"), std::string::npos) << errors[0];
  // Aliases within the limits are fine.
  EXPECT_EQ(load("worker:\n  cwd: &d /srv\n  env: {DIR: *d}\n").worker.env.at("DIR"), "/srv");
}

TEST(ConfigLoad, QuotedValuesAreEscapedAndCut) {
  const std::string error = error_of("workers: \"4\\e[2J\xff\"\n");
  EXPECT_NE(error.find("\\x1b[2J\\xff"), std::string::npos) << error;
  EXPECT_EQ(error.find('\x1b'), std::string::npos) << error;
  const std::string long_error = error_of("workers: " + std::string(5000, 'y') + "\n");
  EXPECT_NE(long_error.find("... (5000 bytes)"), std::string::npos) << long_error;
  EXPECT_LT(long_error.size(), 400U) << long_error;
}

TEST(ConfigLoad, EmptySectionsKeepTheirDefaults) {
  const Config config = load("worker:\nrestart:\nlog:\n");
  EXPECT_EQ(without_source(config), without_source(default_config()));
}

TEST(ConfigLoad, ExampleFileLoadsAndEqualsTheDefault) {
  const fs::path example = forkd::test::source_root() / "etc" / "forkd.yaml";
  ASSERT_TRUE(fs::exists(example)) << example;
  const Config config = load_config_file(example.string());
  EXPECT_EQ(config.source, example.string());
  EXPECT_EQ(without_source(config), without_source(default_config()));
}

TEST(ConfigLoad, ExampleFileMentionsEveryKeyOfThePrintedConfig) {
  std::ifstream in(forkd::test::source_root() / "etc" / "forkd.yaml");
  const std::string example((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::istringstream printed(to_yaml(default_config()));
  for (std::string line; std::getline(printed, line);) {
    const auto start = line.find_first_not_of(" -");
    const auto colon = line.find(':');
    ASSERT_NE(colon, std::string::npos) << line;
    const std::string key = line.substr(start, colon - start);
    EXPECT_TRUE(contains(example, key + ":")) << key;
  }
  EXPECT_TRUE(contains(example, "command:"));
  EXPECT_TRUE(contains(example, "shell:"));
  EXPECT_TRUE(contains(example, "mode: \"0660\""));
}

TEST(ConfigLoad, UnreadableFileNamesThePathAndErrno) {
  TempDir dir;
  const std::string missing = dir.file("nope.yaml");
  try {
    (void)load_config_file(missing);
    FAIL() << "no error";
  } catch (const ConfigError& error) {
    ASSERT_EQ(error.issues().size(), 1U);
    EXPECT_EQ(error.issues()[0].to_string(),
              missing + ": cannot read config file: No such file or directory");
    EXPECT_EQ(std::string(error.what()), error.issues()[0].to_string());
  }
  try {
    (void)load_config_file(dir.path());
    FAIL() << "no error";
  } catch (const ConfigError& error) {
    EXPECT_EQ(error.issues().at(0).to_string(),
              dir.path() + ": the config file must be a regular file, this is a directory");
  }
}

// A FIFO at the config path would hang the master on SIGHUP.
TEST(ConfigLoad, AFifoIsRefusedAtOnce) {
  TempDir dir;
  const std::string fifo = dir.file("forkd.yaml");
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  try {
    (void)load_config_file(fifo);
    FAIL() << "no error";
  } catch (const ConfigError& error) {
    EXPECT_EQ(error.issues().at(0).to_string(),
              fifo + ": the config file must be a regular file, this is a FIFO");
  }
}

TEST(ConfigLoad, ASymlinkInADirectoryOthersCanWriteIsNotFollowed) {
  TempDir dir;
  const fs::path real = write_file(dir, "real.yaml", "workers: 2\n", fs::perms::owner_read);
  const fs::path open_dir = fs::path(dir.path()) / "shared";
  fs::create_directory(open_dir);
  fs::permissions(open_dir, fs::perms::all | fs::perms::sticky_bit);
  const fs::path link = open_dir / "forkd.yaml";
  fs::create_symlink(real, link);
  try {
    (void)load_config_file(link.string());
    FAIL() << "no error";
  } catch (const ConfigError& error) {
    EXPECT_EQ(error.issues().at(0).to_string(),
              link.string() + ": cannot read config file: is a symbolic link in " +
                  open_dir.string() + ", which is writable by everyone; refusing to follow it");
  }
  // The same link in a directory only we can write is followed (a Kubernetes ConfigMap mount
  // is made of such links).
  const fs::path trusted = fs::path(dir.path()) / "forkd.yaml";
  fs::create_symlink(real, trusted);
  EXPECT_EQ(load_config_file(trusted.string()).workers, 2U);
}

TEST(ConfigLoad, IssueFormatting) {
  EXPECT_EQ((ConfigIssue{"f.yaml", 3, 10, "boom"}).to_string(), "f.yaml:3:10: boom");
  EXPECT_EQ((ConfigIssue{"f.yaml", 3, 0, "boom"}).to_string(), "f.yaml:3: boom");
  EXPECT_EQ((ConfigIssue{"f.yaml", 0, 0, "boom"}).to_string(), "f.yaml: boom");
}

TEST(ConfigLoad, FileNameIsUsedExactlyAsGiven) {
  TempDir dir;
  const fs::path file = write_file(dir, "my.yaml", "\n\nworkers: 0\n", fs::perms::owner_read);
  try {
    (void)load_config_file(file.string());
    FAIL() << "no error";
  } catch (const ConfigError& error) {
    EXPECT_EQ(std::string(error.what()),
              file.string() + ":3:10: workers: 0 is out of range (1..4096 or auto)");
  }
}

// ---- syntax and structure -----------------------------------------------------------------

TEST(ConfigSyntax, ParserErrorsCarryThePosition) {
  EXPECT_EQ(error_of("workers: 2\nlisten: [127.0.0.1:80\nlog: {}\n"),
            "forkd.yaml:3:4: end of sequence flow not found");
  EXPECT_TRUE(contains(error_of("a: b\n  c: d\n"), "forkd.yaml:2:4: "));
}

TEST(ConfigSyntax, TopLevelMustBeAMapping) {
  EXPECT_EQ(error_of("- 1\n- 2\n"),
            "forkd.yaml:1:1: the top level must be a mapping of keys like \"workers: auto\", got "
            "a list");
  EXPECT_TRUE(contains(error_of("just text\n"), "got \"just text\""));
}

TEST(ConfigSyntax, OnlyOneDocument) {
  EXPECT_EQ(error_of("workers: 2\n---\nworkers: 3\n"),
            "forkd.yaml:2:1: only one YAML document is allowed, found a second one");
}

TEST(ConfigSyntax, UnknownKeySuggestsTheNearestOne) {
  EXPECT_EQ(error_of("wrokers: 4\n"),
            "forkd.yaml:1:1: unknown key \"wrokers\" (did you mean \"workers\"?)");
  EXPECT_EQ(error_of("worker:\n  app: http-hello\n  redy: auto\n"),
            "forkd.yaml:3:3: worker: unknown key \"redy\" (did you mean \"ready\"?)");
  EXPECT_EQ(error_of("worker:\n  heartbeat: 1s\n"),
            "forkd.yaml:2:3: worker: unknown key \"heartbeat\" (did you mean "
            "\"heartbeat_timeout\"?)");
  EXPECT_EQ(error_of("restart:\n  max_dealy: 1m\n"),
            "forkd.yaml:2:3: restart: unknown key \"max_dealy\" (did you mean \"max_delay\"?)");
  EXPECT_EQ(error_of("listen:\n  - adress: 127.0.0.1:80\n"),
            "forkd.yaml:2:5: listen[0]: unknown key \"adress\" (did you mean \"address\"?)");
}

TEST(ConfigSyntax, UnknownKeyInTheWrongSectionPointsToTheRightOne) {
  EXPECT_EQ(error_of("app: http-hello\n"),
            "forkd.yaml:1:1: unknown key \"app\" (did you mean \"worker.app\"?)");
}

TEST(ConfigSyntax, UnknownKeyWithoutNeighbourListsTheValidKeys) {
  EXPECT_EQ(error_of("ipc:\n  zzzzzz: 1\n"),
            "forkd.yaml:2:3: ipc: unknown key \"zzzzzz\" (valid keys: max_message)");
}

TEST(ConfigSyntax, DuplicateKeysAreErrors) {
  EXPECT_EQ(error_of("workers: 2\nlog:\n  level: info\nworkers: 3\n"),
            "forkd.yaml:4:1: duplicate key \"workers\" (first set at line 1)");
  EXPECT_EQ(error_of("log:\n  level: info\n  level: warn\n"),
            "forkd.yaml:3:3: log: duplicate key \"level\" (first set at line 2)");
  EXPECT_EQ(error_of("worker:\n  env:\n    A: 1\n    A: 2\n"),
            "forkd.yaml:4:5: worker.env: duplicate key \"A\" (first set at line 3)");
}

TEST(ConfigSyntax, AllProblemsAreReportedTogetherInFileOrder) {
  const auto errors = errors_of(
      "log:\n"
      "  level: loud\n"
      "workers: 0\n"
      "listen: 127.0.0.1:99999\n"
      "wrokers: 1\n"
      "worker:\n"
      "  ready_timeout: abc\n");
  ASSERT_EQ(errors.size(), 5U);
  EXPECT_EQ(errors[0],
            "forkd.yaml:2:10: log.level: \"loud\" is not one of trace, debug, info, warn or error");
  EXPECT_EQ(errors[1], "forkd.yaml:3:10: workers: 0 is out of range (1..4096 or auto)");
  EXPECT_EQ(errors[2],
            "forkd.yaml:4:9: listen: port 99999 is out of range (1..65535) in "
            "\"127.0.0.1:99999\"");
  EXPECT_EQ(errors[3], "forkd.yaml:5:1: unknown key \"wrokers\" (did you mean \"workers\"?)");
  EXPECT_EQ(errors[4],
            "forkd.yaml:7:18: worker.ready_timeout: expected a duration like 250ms, 30s, 5m or "
            "24h, got \"abc\"");
}

TEST(ConfigSyntax, WrongTypesSayWhatWasExpectedAndFound) {
  EXPECT_EQ(error_of("worker: 5\n"),
            "forkd.yaml:1:9: worker: expected a mapping of keys, got \"5\"");
  EXPECT_EQ(error_of("worker:\n  cpu_affinity: maybe\n"),
            "forkd.yaml:2:17: worker.cpu_affinity: expected true or false, got \"maybe\"");
  EXPECT_EQ(error_of("pidfile: [a, b]\n"),
            "forkd.yaml:1:10: pidfile: expected a string, got a list");
  EXPECT_EQ(error_of("workers: {a: 1}\n"),
            "forkd.yaml:1:10: workers: expected an integer (1..4096) or auto, got a mapping");
  EXPECT_EQ(error_of("restart:\n  max_failures:\n"),
            "forkd.yaml:2:3: restart.max_failures: expected an integer (0 = never give up, or up "
            "to 1000000), got nothing");
}

// ---- workers ------------------------------------------------------------------------------

TEST(ConfigWorkers, AutoOrOneToFourThousandNinetySix) {
  EXPECT_EQ(load("workers: auto\n").workers, 0U);
  EXPECT_EQ(load("workers: 1\n").workers, 1U);
  EXPECT_EQ(load("workers: 4096\n").workers, 4096U);
  EXPECT_EQ(error_of("\n\nworkers: 0\n"),
            "forkd.yaml:3:10: workers: 0 is out of range (1..4096 or auto)");
  EXPECT_EQ(error_of("workers: 5000\n"),
            "forkd.yaml:1:10: workers: 5000 is out of range (1..4096 or auto)");
  EXPECT_EQ(error_of("workers: abc\n"),
            "forkd.yaml:1:10: workers: expected an integer (1..4096) or auto, got \"abc\"");
  EXPECT_TRUE(contains(error_of("workers: -2\n"), "-2 is out of range"));
  EXPECT_TRUE(contains(error_of("workers: 2.5\n"), "got \"2.5\""));
}

// ---- listen -------------------------------------------------------------------------------

TEST(ConfigListen, ScalarListAndMappingForms) {
  const Config single = load("listen: 127.0.0.1:9000\n");
  ASSERT_EQ(single.listen.size(), 1U);
  EXPECT_EQ(single.listen[0].port, 9000);
  EXPECT_EQ(single.listen[0].name, "listen0");

  const Config config = load(
      "listen:\n"
      "  - '*:80'\n"
      "  - localhost:81\n"
      "  - \"[::1]:8443\"\n"
      "  - unix:/run/app.sock\n"
      "  - address: \"[::]:9000\"\n"
      "    name: https\n"
      "    backlog: 16\n"
      "    reuseport: true\n"
      "  - address: unix:relative.sock\n"
      "    mode: \"0660\"\n");
  ASSERT_EQ(config.listen.size(), 6U);
  EXPECT_EQ(config.listen[0].kind, AddressKind::tcp4);
  EXPECT_EQ(config.listen[0].host, "0.0.0.0");
  EXPECT_EQ(config.listen[0].address, "*:80");
  EXPECT_EQ(config.listen[1].host, "127.0.0.1");
  EXPECT_EQ(config.listen[1].port, 81);
  EXPECT_EQ(config.listen[2].kind, AddressKind::tcp6);
  EXPECT_EQ(config.listen[2].host, "::1");
  EXPECT_EQ(config.listen[2].port, 8443);
  EXPECT_EQ(config.listen[3].kind, AddressKind::unix_path);
  EXPECT_EQ(config.listen[3].path, "/run/app.sock");
  EXPECT_EQ(config.listen[3].name, "listen3");
  EXPECT_EQ(config.listen[4].host, "::");
  EXPECT_EQ(config.listen[4].name, "https");
  EXPECT_EQ(config.listen[4].backlog, 16);
  EXPECT_TRUE(config.listen[4].reuseport);
  EXPECT_FALSE(config.listen[4].mode.has_value());
  EXPECT_EQ(config.listen[5].path, "relative.sock");
  EXPECT_EQ(config.listen[5].mode, 0660U);
  EXPECT_EQ(config.listen[5].name, "listen5");

  const Config mapping = load("listen: {address: 10.0.0.1:1, name: one}\n");
  ASSERT_EQ(mapping.listen.size(), 1U);
  EXPECT_EQ(mapping.listen[0].name, "one");
}

TEST(ConfigListen, PortsMustBeInRange) {
  EXPECT_EQ(error_of("listen:\n  - 127.0.0.1:99999\n"),
            "forkd.yaml:2:5: listen[0]: port 99999 is out of range (1..65535) in "
            "\"127.0.0.1:99999\"");
  EXPECT_TRUE(contains(error_of("listen: 127.0.0.1:0\n"), "port 0 is out of range"));
  EXPECT_TRUE(contains(error_of("listen: 127.0.0.1:http\n"), "expected a port number"));
  EXPECT_TRUE(contains(error_of("listen: \"127.0.0.1:\"\n"), "expected a port number"));
}

TEST(ConfigListen, HostsMustBeIpLiterals) {
  EXPECT_EQ(error_of("listen: example.com:80\n"),
            "forkd.yaml:1:9: listen: the host must be an IP address (or * or localhost), got "
            "\"example.com\" in \"example.com:80\"");
  EXPECT_TRUE(contains(error_of("listen: \"::1:80\"\n"), "needs brackets"));
  EXPECT_TRUE(contains(error_of("listen: \"[zz::1]:80\"\n"), "is not an IPv6 address"));
  EXPECT_TRUE(contains(error_of("listen: 8080\n"), "expected host:port"));
  EXPECT_TRUE(contains(error_of("listen: :8080\n"), "missing host"));
  EXPECT_TRUE(contains(error_of("listen: \"unix:\"\n"), "needs a socket path"));
  EXPECT_TRUE(contains(error_of("listen: unix:/" + std::string(120, 'x') + "\n"), "too long"));
}

TEST(ConfigListen, NeedsAtLeastOneEntry) {
  EXPECT_EQ(error_of("listen: []\n"),
            "forkd.yaml:1:9: listen: needs at least one address, like 127.0.0.1:8080");
  EXPECT_EQ(error_of("listen:\n"),
            "forkd.yaml:1:1: listen: needs at least one address, like 127.0.0.1:8080");
}

TEST(ConfigListen, MappingEntriesAreChecked) {
  EXPECT_EQ(error_of("listen:\n  - name: x\n"),
            "forkd.yaml:2:5: listen[0]: missing required key \"address\"");
  EXPECT_EQ(error_of("listen:\n  - address: 127.0.0.1:80\n    backlog: 0\n"),
            "forkd.yaml:3:14: listen[0].backlog: 0 is out of range (1..65535)");
  EXPECT_TRUE(contains(error_of("listen:\n  - {address: 127.0.0.1:80, backlog: 70000}\n"),
                       "70000 is out of range (1..65535)"));
  EXPECT_EQ(error_of("listen:\n  - address: unix:/x.sock\n    reuseport: true\n"),
            "forkd.yaml:3:16: listen[0].reuseport: applies to TCP listeners only, not unix "
            "sockets");
  EXPECT_EQ(error_of("listen:\n  - address: 127.0.0.1:80\n    mode: \"0660\"\n"),
            "forkd.yaml:3:11: listen[0].mode: applies to unix sockets only, not TCP listeners");
  EXPECT_TRUE(contains(error_of("listen:\n  - {address: unix:/x, mode: \"0999\"}\n"),
                       "expected an octal mode"));
  EXPECT_TRUE(contains(error_of("listen:\n  - {address: unix:/x, mode: \"01777\"}\n"),
                       "out of range (at most 0777)"));
  EXPECT_TRUE(contains(error_of("listen:\n  - [1, 2]\n"), "got a list"));
}

TEST(ConfigListen, NamesAreUniqueAndSafeForListenFdNames) {
  EXPECT_EQ(error_of("listen:\n  - {address: 127.0.0.1:80, name: \"a:b\"}\n"),
            "forkd.yaml:2:35: listen[0].name: \"a:b\" may only contain letters, digits, '_', '.' "
            "and '-'");
  EXPECT_TRUE(contains(error_of("listen:\n  - {address: 127.0.0.1:80, name: \"\"}\n"),
                       "listen[0].name: must not be empty"));
  EXPECT_EQ(error_of("listen:\n"
                     "  - {address: 127.0.0.1:80, name: web}\n"
                     "  - {address: 127.0.0.1:81, name: web}\n"),
            "forkd.yaml:3:35: listen[1]: name \"web\" is already used by listen[0]");
  // A default name counts too.
  EXPECT_TRUE(contains(error_of("listen:\n  - 127.0.0.1:80\n  - {address: 127.0.0.1:81, name: "
                                "listen0}\n"),
                       "name \"listen0\" is already used by listen[0]"));
  EXPECT_EQ(load("listen:\n  - {address: 127.0.0.1:80, name: a.b_c-1}\n").listen[0].name,
            "a.b_c-1");
}

TEST(ConfigListen, DuplicateAddressesAreErrors) {
  EXPECT_EQ(error_of("listen:\n  - 127.0.0.1:80\n  - localhost:80\n"),
            "forkd.yaml:3:5: listen[1]: address \"localhost:80\" is already listed as listen[0]");
  EXPECT_TRUE(contains(error_of("listen:\n  - \"[::1]:80\"\n  - \"[0:0::1]:80\"\n"),
                       "already listed as listen[0]"));
  EXPECT_TRUE(contains(error_of("listen:\n  - unix:/a.sock\n  - {address: unix:/a.sock}\n"),
                       "already listed"));
  EXPECT_EQ(load("listen:\n  - 127.0.0.1:80\n  - 127.0.0.1:81\n  - \"[::1]:80\"\n").listen.size(),
            3U);
}

TEST(ConfigListen, ParseListenAddressIsReusable) {
  const auto tcp = forkd::common::parse_listen_address("0.0.0.0:9101");
  EXPECT_EQ(tcp.kind, AddressKind::tcp4);
  EXPECT_EQ(tcp.port, 9101);
  EXPECT_THROW((void)forkd::common::parse_listen_address("nope"), std::invalid_argument);
}

// ---- worker -------------------------------------------------------------------------------

TEST(ConfigWorker, AppMustBeBuiltIn) {
  EXPECT_EQ(error_of("worker:\n  app: http-helo\n"),
            "forkd.yaml:2:8: worker.app: unknown built-in app \"http-helo\" (did you mean "
            "\"http-hello\"?); built-in apps: http-hello");
  LoadOptions options;
  options.builtin_apps = {"http-hello", "echo"};
  EXPECT_EQ(load("worker: {app: echo}\n", options).worker.app, "echo");
  const auto errors = errors_of("worker: {app: nope}\n", options);
  ASSERT_EQ(errors.size(), 1U);
  EXPECT_TRUE(contains(errors[0], "built-in apps: http-hello, echo")) << errors[0];
}

TEST(ConfigWorker, CommandMustBeExecutable) {
  const Config config = load("worker:\n  command: [/bin/sh, -c, \"exit 0\"]\n");
  EXPECT_EQ(config.worker.command, (std::vector<std::string>{"/bin/sh", "-c", "exit 0"}));
  EXPECT_EQ(config.worker.app, "");
  EXPECT_EQ(error_of("worker:\n  command: [/nope]\n"),
            "forkd.yaml:2:13: worker.command: \"/nope\": No such file or directory");
  EXPECT_EQ(load("worker:\n  command: [sh, -c, true]\n").worker.command.front(), "sh");
  EXPECT_TRUE(contains(error_of("worker:\n  command: [no-such-program-forkd-test]\n"),
                       "worker.command: \"no-such-program-forkd-test\": not found in PATH"));
  EXPECT_TRUE(contains(error_of("worker:\n  command: [/tmp]\n"), "Is a directory"));
}

TEST(ConfigWorker, CommandIsResolvedInTheWorkingDirectory) {
  TempDir dir;
  write_file(dir, "run.sh", "#!/bin/sh\n", fs::perms::owner_all);
  write_file(dir, "data.txt", "x\n", fs::perms::owner_read | fs::perms::owner_write);
  const std::string& cwd = dir.path();
  const Config config = load("worker:\n  cwd: " + cwd + "\n  command: [./run.sh]\n");
  EXPECT_EQ(config.worker.cwd, cwd);
  EXPECT_EQ(config.worker.command.front(), "./run.sh");
  EXPECT_EQ(error_of("worker:\n  cwd: " + cwd + "\n  command: [./missing.sh]\n"),
            "forkd.yaml:3:13: worker.command: \"./missing.sh\": No such file or directory "
            "(relative to worker.cwd \"" +
                cwd + "\")");
  EXPECT_TRUE(contains(error_of("worker:\n  cwd: " + cwd + "\n  command: [./data.txt]\n"),
                       "Permission denied"));
  // A PATH given in worker.env is the one searched.
  EXPECT_EQ(load("worker:\n  env: {PATH: " + cwd + "}\n  command: [run.sh]\n").worker.command[0],
            "run.sh");
}

TEST(ConfigWorker, CommandMustBeANonEmptyListOfStrings) {
  EXPECT_EQ(error_of("worker:\n  command: node server.js\n"),
            "forkd.yaml:2:12: worker.command: expected a non-empty list like [/usr/bin/node, "
            "server.js], got \"node server.js\" (use worker.shell for a command line)");
  EXPECT_TRUE(contains(error_of("worker:\n  command: []\n"), "expected a non-empty list"));
  EXPECT_EQ(error_of("worker:\n  command: [/bin/sh, {a: 1}]\n"),
            "forkd.yaml:2:22: worker.command[1]: expected a string, got a mapping");
}

TEST(ConfigWorker, AtMostOneOfAppCommandShell) {
  EXPECT_EQ(error_of("worker:\n  app: http-hello\n  command: [/bin/sh]\n"),
            "forkd.yaml:3:3: worker: set only one of app, command and shell (found app and "
            "command)");
  EXPECT_TRUE(contains(error_of("worker:\n  shell: x\n  command: [/bin/sh]\n  app: http-hello\n"),
                       "(found app, command and shell)"));
  const Config shell = load("worker:\n  shell: exec sleep 1\n");
  EXPECT_EQ(shell.worker.shell, "exec sleep 1");
  EXPECT_EQ(shell.worker.app, "");
  EXPECT_TRUE(contains(error_of("worker:\n  shell: \"\"\n"), "worker.shell: must not be empty"));
}

TEST(ConfigWorker, CwdMustBeAnExistingDirectory) {
  EXPECT_EQ(error_of("worker:\n  cwd: /no/such/dir\n"),
            "forkd.yaml:2:8: worker.cwd: \"/no/such/dir\": No such file or directory");
  TempDir dir;
  const fs::path file = write_file(dir, "f", "", fs::perms::owner_read);
  EXPECT_TRUE(contains(error_of("worker:\n  cwd: " + file.string() + "\n"), "Not a directory"));
}

TEST(ConfigWorker, EnvValuesAreStoredAsText) {
  const Config config = load(
      "worker:\n"
      "  env:\n"
      "    NODE_ENV: production\n"
      "    PORT: 8080\n"
      "    DEBUG: true\n"
      "    RATIO: 0.5\n"
      "    EMPTY: \"\"\n"
      "    NOTHING:\n"
      "    WORD: null\n");
  const auto& env = config.worker.env;
  EXPECT_EQ(env.at("NODE_ENV"), "production");
  EXPECT_EQ(env.at("PORT"), "8080");
  EXPECT_EQ(env.at("DEBUG"), "true");
  EXPECT_EQ(env.at("RATIO"), "0.5");
  EXPECT_EQ(env.at("EMPTY"), "");
  EXPECT_EQ(env.at("NOTHING"), "");
  EXPECT_EQ(env.at("WORD"), "null");
  EXPECT_EQ(error_of("worker:\n  env: [A=1]\n"),
            "forkd.yaml:2:8: worker.env: expected a mapping of keys, got a list");
  EXPECT_EQ(error_of("worker:\n  env:\n    A: [1]\n"),
            "forkd.yaml:3:8: worker.env.A: expected a string, got a list");
  EXPECT_TRUE(
      contains(error_of("worker:\n  env: {\"A=B\": 1}\n"), "must be non-empty and contain no '='"));
}

// As a root master: the one that may switch its workers to any user.
LoadOptions as_root() {
  LoadOptions options;
  options.master = forkd::common::ProcessIdentity{0, 0};
  return options;
}

TEST(ConfigWorker, UserAndGroupMustExist) {
  const Config config = load("worker:\n  user: root\n  group: root\n", as_root());
  EXPECT_EQ(config.worker.user, "root");
  EXPECT_EQ(config.worker.group, "root");
  EXPECT_EQ(error_of("worker:\n  user: no-such-user-forkd\n"),
            "forkd.yaml:2:9: worker.user: no such user \"no-such-user-forkd\"");
  EXPECT_EQ(error_of("worker:\n  group: no-such-group-forkd\n"),
            "forkd.yaml:2:10: worker.group: no such group \"no-such-group-forkd\"");
  EXPECT_EQ(errors_of("worker:\n  group: no-such-group-forkd\n  user: no-such-user-forkd\n"),
            (std::vector<std::string>{
                "forkd.yaml:2:10: worker.group: no such group \"no-such-group-forkd\"",
                "forkd.yaml:3:9: worker.user: no such user \"no-such-user-forkd\""}));
}

TEST(ConfigWorker, UserAndGroupAreResolvedToIdsWhenLoaded) {
  const Config config = load("worker:\n  user: root\n", as_root());
  EXPECT_EQ(config.worker.uid, uid_t{0});
  EXPECT_EQ(config.worker.gid, gid_t{0});
  EXPECT_FALSE(config.worker.groups.empty());
  const Config group_only = load("worker:\n  group: root\n", as_root());
  EXPECT_FALSE(group_only.worker.uid);
  EXPECT_EQ(group_only.worker.gid, gid_t{0});
  const Config nothing = load("workers: 1\n", as_root());
  EXPECT_FALSE(nothing.worker.uid);
  EXPECT_FALSE(nothing.worker.gid);
  EXPECT_FALSE(default_config().worker.uid);
}

TEST(ConfigWorker, NonRootMasterCannotNameAnotherUser) {
  LoadOptions options;
  options.master = forkd::common::ProcessIdentity{1000, 1000};
  EXPECT_EQ(errors_of("worker:\n  user: root\n  group: root\n", options),
            (std::vector<std::string>{
                "forkd.yaml:2:9: worker.user: forkd runs as uid 1000 and cannot switch to user "
                "\"root\" (uid 0); start it as root or remove worker.user",
                "forkd.yaml:3:10: worker.group: forkd runs as uid 1000 with gid 1000 and cannot "
                "switch to group \"root\" (gid 0); start it as root or remove worker.group"}));
  // Its own user and group: nothing to drop, nothing to apply.
  options.master = forkd::common::ProcessIdentity{1000, 0};
  const Config own_group = load("worker:\n  group: root\n", options);
  EXPECT_FALSE(own_group.worker.gid);
  std::string error;
  const auto nobody = forkd::common::lookup_user("nobody", error);
  if (!nobody) GTEST_SKIP() << "no user nobody here";
  options.master = forkd::common::ProcessIdentity{nobody->uid, nobody->gid};
  const Config own_user = load("worker:\n  user: nobody\n", options);
  EXPECT_FALSE(own_user.worker.uid);
  EXPECT_FALSE(own_user.worker.gid);
}

TEST(ConfigWorker, ReadyModeAndOutputModes) {
  EXPECT_EQ(load("worker: {ready: notify}\n").worker.ready, ReadyMode::notify);
  EXPECT_EQ(load("worker: {ready: auto}\n").worker.ready, ReadyMode::automatic);
  EXPECT_EQ(error_of("worker:\n  ready: notfy\n"),
            "forkd.yaml:2:10: worker.ready: \"notfy\" is not one of auto, message, notify, "
            "listening or started (did you mean \"notify\"?)");
  EXPECT_EQ(load("worker: {ready: listening}\n").worker.ready, ReadyMode::listening);
  EXPECT_EQ(load("worker: {inherit_bind: on}\n").worker.inherit_bind, InheritBind::on);
  EXPECT_EQ(load("worker: {inherit_bind: off}\n").worker.inherit_bind, InheritBind::off);
  EXPECT_EQ(load("worker: {}\n").worker.inherit_bind, InheritBind::automatic);
  EXPECT_EQ(error_of("worker:\n  inherit_bind: yes\n"),
            "forkd.yaml:2:17: worker.inherit_bind: \"yes\" is not one of auto, on or off");
  const Config config = load("worker:\n  stdout: null\n  stderr: inherit\n");
  EXPECT_EQ(config.worker.stdout_mode, OutputMode::null);
  EXPECT_EQ(config.worker.stderr_mode, OutputMode::inherit);
  EXPECT_EQ(load("worker: {stdout: ~}\n").worker.stdout_mode, OutputMode::null);
  EXPECT_EQ(error_of("worker:\n  stderr: file\n"),
            "forkd.yaml:2:11: worker.stderr: \"file\" is not one of log, inherit or null");
  EXPECT_TRUE(contains(error_of("worker:\n  stdout:\n"), "got nothing"));
}

TEST(ConfigWorker, TimeoutsAndLimitsAreRangeChecked) {
  const Config config = load(
      "worker:\n"
      "  ready_timeout: 5s\n"
      "  heartbeat_timeout: 100ms\n"
      "  shutdown_timeout: 1m30s\n"
      "  max_memory: 512MiB\n"
      "  max_lifetime: 24h\n"
      "  cpu_affinity: true\n"
      "  rlimit_nofile: 65536\n");
  EXPECT_EQ(config.worker.ready_timeout, 5s);
  EXPECT_EQ(config.worker.heartbeat_timeout, 100ms);
  EXPECT_EQ(config.worker.shutdown_timeout, 90s);
  EXPECT_EQ(config.worker.max_memory, 512ULL << 20);
  EXPECT_EQ(config.worker.max_lifetime, 24h);
  EXPECT_TRUE(config.worker.cpu_affinity);
  EXPECT_EQ(config.worker.rlimit_nofile, 65536U);

  EXPECT_EQ(error_of("worker:\n  ready_timeout: 0\n"),
            "forkd.yaml:2:18: worker.ready_timeout: must be more than 0");
  EXPECT_EQ(error_of("worker:\n  heartbeat_timeout: 50ms\n"),
            "forkd.yaml:2:22: worker.heartbeat_timeout: 50ms is too short (0 = off, or at least "
            "100ms)");
  EXPECT_TRUE(contains(error_of("worker: {shutdown_timeout: 0ms}\n"), "must be more than 0"));
  EXPECT_EQ(error_of("worker:\n  max_memory: 64KiB\n"),
            "forkd.yaml:2:15: worker.max_memory: 64KiB is too small (0 = no limit, or at least "
            "1MiB)");
  EXPECT_TRUE(contains(error_of("worker: {max_memory: 1MB}\n"), "write \"1MiB\""));
  EXPECT_TRUE(contains(error_of("worker: {max_lifetime: 500ms}\n"), "at least 1s"));
  EXPECT_TRUE(contains(error_of("worker: {rlimit_nofile: 8}\n"),
                       "8 is out of range (0 = inherit, or 16..1048576)"));
  EXPECT_TRUE(contains(error_of("worker: {rlimit_nofile: 2000000}\n"), "out of range"));
  EXPECT_TRUE(contains(error_of("worker: {ready_timeout: 30}\n"), "needs a unit"));
  EXPECT_TRUE(contains(error_of("worker: {max_lifetime: 1000000h}\n"), "is too long"));
  EXPECT_EQ(load("worker: {heartbeat_timeout: 0, max_memory: 0, rlimit_nofile: 0}\n").worker,
            default_config().worker);
}

// ---- restart, reload, control, ipc, log, pidfile, metrics -----------------------------------

TEST(ConfigRestart, DelaysAndFailures) {
  const Config config = load(
      "restart:\n  delay: 0\n  max_delay: 1m\n  min_uptime: 0\n  max_failures: 5\n"
      "  exit_on_failed: yes\n");
  EXPECT_EQ(config.restart.delay, 0ms);
  EXPECT_EQ(config.restart.max_delay, 60s);
  EXPECT_EQ(config.restart.min_uptime, 0ms);
  EXPECT_EQ(config.restart.max_failures, 5U);
  EXPECT_TRUE(config.restart.exit_on_failed);
  EXPECT_EQ(error_of("restart:\n  delay: 1s\n  max_delay: 500ms\n"),
            "forkd.yaml:3:14: restart.max_delay: 500ms is less than restart.delay (1s)");
  EXPECT_EQ(error_of("restart:\n  delay: 1m\n"),
            "forkd.yaml:2:10: restart.delay: 1m is more than restart.max_delay (30s); raise "
            "max_delay too");
  EXPECT_TRUE(contains(error_of("restart: {max_failures: -1}\n"), "-1 is out of range"));
  EXPECT_TRUE(contains(error_of("restart: {max_failures: 1000001}\n"), "out of range"));
  EXPECT_EQ(load("restart: {max_failures: 1000000}\n").restart.max_failures, 1000000U);
}

TEST(ConfigWorkers, TheCountAndTheBatchAreBoundByTheSharedWorkerCap) {
  const unsigned cap = forkd::common::kMaxWorkers;
  const std::string text = std::to_string(cap);
  const std::string over = std::to_string(cap + 1);
  EXPECT_EQ(load("workers: " + text + "\n").workers, cap);
  EXPECT_TRUE(contains(error_of("workers: " + over + "\n"), "(1.." + text + " or auto)"));
  EXPECT_EQ(load("reload: {batch: " + text + "}\n").reload.batch.value, cap);
  EXPECT_TRUE(contains(error_of("reload: {batch: " + over + "}\n"), "(1.." + text + ")"));
}

TEST(ConfigReload, BatchIsACountOrAPercentage) {
  EXPECT_EQ(load("reload: {batch: 3}\n").reload.batch.value, 3U);
  const Config percent = load("reload:\n  batch: 25%\n");
  EXPECT_EQ(percent.reload.batch.value, 25U);
  EXPECT_TRUE(percent.reload.batch.percent);
  EXPECT_EQ(error_of("reload:\n  batch: 0\n"),
            "forkd.yaml:2:10: reload.batch: 0 is out of range (1..4096)");
  EXPECT_TRUE(contains(error_of("reload: {batch: 0%}\n"), "out of range (1%..100%)"));
  EXPECT_TRUE(contains(error_of("reload: {batch: 101%}\n"), "out of range (1%..100%)"));
  EXPECT_TRUE(contains(error_of("reload: {batch: half}\n"), "got \"half\""));
}

TEST(ConfigControl, SocketModeAndGroup) {
  const Config config = load("control:\n  socket: /tmp/x.sock\n  mode: \"0660\"\n  group: root\n");
  EXPECT_EQ(config.control.socket, "/tmp/x.sock");
  EXPECT_EQ(config.control.mode, 0660U);
  EXPECT_EQ(config.control.group, "root");
  EXPECT_EQ(load("control: {mode: 0660}\n").control.mode, 0660U);
  EXPECT_EQ(load("control: {mode: 0777}\n").control.mode, 0777U);
  EXPECT_EQ(load("control: {mode: 0}\n").control.mode, 0U);
  EXPECT_EQ(error_of("control:\n  mode: \"0999\"\n"),
            "forkd.yaml:2:9: control.mode: expected an octal mode like \"0660\", got \"0999\"");
  EXPECT_TRUE(contains(error_of("control: {mode: 01777}\n"), "out of range (at most 0777)"));
  EXPECT_TRUE(contains(error_of("control: {group: no-such-group-forkd}\n"), "no such group"));
  EXPECT_TRUE(contains(error_of("control: {socket: /" + std::string(120, 's') + "}\n"),
                       "too long for a unix socket"));
}

TEST(ConfigIpc, MaxMessageBetweenOneKibAndOneGib) {
  EXPECT_EQ(load("ipc: {max_message: 64KiB}\n").ipc.max_message, 64U * 1024);
  EXPECT_EQ(load("ipc: {max_message: 1GiB}\n").ipc.max_message, 1ULL << 30);
  EXPECT_EQ(error_of("ipc:\n  max_message: 512B\n"),
            "forkd.yaml:2:16: ipc.max_message: 512B is out of range (1KiB..1GiB)");
  EXPECT_TRUE(contains(error_of("ipc: {max_message: 2GiB}\n"), "out of range"));
}

TEST(ConfigLog, LevelFormatFile) {
  const Config config = load("log:\n  level: debug\n  format: json\n  file: /var/log/forkd.log\n");
  EXPECT_EQ(config.log.level, LogLevel::debug);
  EXPECT_EQ(config.log.format, LogFormat::json);
  EXPECT_TRUE(config.log.format_set);
  EXPECT_EQ(config.log.file, "/var/log/forkd.log");
  const Config text = load("log: {format: text}\n");
  EXPECT_EQ(text.log.format, LogFormat::text);
  EXPECT_TRUE(text.log.format_set);
  EXPECT_FALSE(load("log: {format: auto}\n").log.format_set);
  EXPECT_EQ(error_of("log:\n  format: xml\n"),
            "forkd.yaml:2:11: log.format: \"xml\" is not one of text, json or journal");
  EXPECT_EQ(forkd::common::parse_log_level("warn"), LogLevel::warn);
  EXPECT_FALSE(forkd::common::parse_log_level("loud").has_value());
}

TEST(ConfigLog, AuditIsTheMainLogByDefaultOrAFileOfItsOwn) {
  EXPECT_EQ(load("workers: 1\n").log.audit, "");
  EXPECT_EQ(load("log: {audit: /var/log/forkd-audit.log}\n").log.audit, "/var/log/forkd-audit.log");
  EXPECT_EQ(load("log:\n  audit:\n").log.audit, "");
  EXPECT_EQ(error_of("log:\n  audit: [a, b]\n"),
            "forkd.yaml:2:10: log.audit: expected a string, got a list");
  EXPECT_TRUE(contains(error_of("log:\n  audti: /x\n"), "audit")) << "the nearest key is named";
}

TEST(ConfigMetrics, ListenIsEmptyOrTcp) {
  EXPECT_EQ(load("metrics: {listen: \"127.0.0.1:9101\"}\n").metrics.listen, "127.0.0.1:9101");
  EXPECT_EQ(error_of("metrics:\n  listen: unix:/m.sock\n"),
            "forkd.yaml:2:11: metrics.listen: expected host:port (TCP only), got \"unix:/m.sock\"");
  EXPECT_TRUE(contains(error_of("metrics: {listen: \"127.0.0.1:99999\"}\n"), "out of range"));
  EXPECT_EQ(load("pidfile: /run/forkd.pid\n").pidfile, "/run/forkd.pid");
}

// ---- to_yaml ------------------------------------------------------------------------------

TEST(ConfigPrint, EveryKeyInSpecOrder) {
  const std::string yaml = to_yaml(default_config());
  std::size_t last = 0;
  for (const char* key : {"workers: auto",
                          "listen:",
                          "  - address: \"127.0.0.1:8080\"",
                          "    name: listen0",
                          "worker:",
                          "  app: http-hello",
                          "  cwd: \"\"",
                          "  env: {}",
                          "  ready: auto",
                          "  ready_timeout: 30s",
                          "  heartbeat_timeout: 0",
                          "  max_memory: 0",
                          "  stdout: log",
                          "restart:",
                          "  delay: 100ms",
                          "reload:",
                          "  batch: 1",
                          "control:",
                          "  mode: \"0600\"",
                          "ipc:",
                          "  max_message: 1MiB",
                          "log:",
                          "  level: info",
                          "  format: auto",
                          "  file: \"\"",
                          "  audit: \"\"",
                          "pidfile: \"\"",
                          "metrics:",
                          "  listen: \"\""}) {
    const std::size_t at = yaml.find(std::string(key) + "\n", last);
    ASSERT_NE(at, std::string::npos) << key << " missing or out of order in:\n" << yaml;
    last = at;
  }
}

TEST(ConfigPrint, DefaultRoundTrips) {
  const Config config = default_config();
  EXPECT_EQ(without_source(load(to_yaml(config))), without_source(config));
}

TEST(ConfigPrint, CustomConfigRoundTrips) {
  const std::string original =
      "workers: 3\n"
      "listen:\n"
      "  - '*:80'\n"
      "  - {address: \"[::1]:8443\", name: https, backlog: 64, reuseport: true}\n"
      "  - {address: \"unix:/tmp/a b.sock\", mode: \"0660\"}\n"
      "worker:\n"
      "  command: [/bin/sh, -c, \"echo \\\"hi\\\"; exit 0\", \"true\", \"null\", \"\", \"a: b\"]\n"
      "  env: {A: \"x y\", B: null, \"weird key\": \"line\\nbreak\", C: \"#\", D: yes}\n"
      "  user: root\n"
      "  group: root\n"
      "  ready: notify\n"
      "  ready_timeout: 1m30s\n"
      "  heartbeat_timeout: 1500ms\n"
      "  shutdown_timeout: 2h\n"
      "  max_memory: 1536KiB\n"
      "  max_lifetime: 1h\n"
      "  cpu_affinity: true\n"
      "  rlimit_nofile: 1024\n"
      "  stdout: null\n"
      "  stderr: inherit\n"
      "restart: {delay: 0, max_delay: 5m, min_uptime: 0, max_failures: 3, exit_on_failed: true}\n"
      "reload: {batch: 25%}\n"
      "control: {socket: /tmp/c.sock, mode: \"0660\", group: root}\n"
      "ipc: {max_message: 4KiB}\n"
      "log: {level: trace, format: journal, file: /tmp/f.log, audit: \"/tmp/a #1.log\"}\n"
      "pidfile: /tmp/forkd.pid\n"
      "metrics: {listen: \"localhost:9101\"}\n";
  const Config config = load(original, as_root());
  const Config again = load(to_yaml(config), as_root());
  EXPECT_EQ(without_source(again), without_source(config)) << to_yaml(config);
  EXPECT_EQ(config.worker.env.at("B"), "null");

  const Config shell = load("worker: {shell: \"exec sleep 1\"}\nlog: {format: text}\n");
  EXPECT_EQ(without_source(load(to_yaml(shell))), without_source(shell));
}

}  // namespace
