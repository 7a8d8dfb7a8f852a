// The key table against what is written elsewhere: every key loads and prints back, the example
// file sets every key and nothing else, and the manual page has a paragraph for every key.
#include <grp.h>
#include <gtest/gtest.h>
#include <pwd.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "common/config.hpp"
#include "tests/unit/source_tree.hpp"

namespace {

namespace fs = std::filesystem;
using forkd::common::Config;
using forkd::common::config_keys;
using forkd::common::ConfigKey;
using forkd::common::default_config;
using forkd::common::find_config_key;
using forkd::common::KeyEffect;
using forkd::common::load_config_string;
using forkd::common::LoadOptions;
using forkd::common::to_yaml;

std::string read_text(const fs::path& path) {
  std::ifstream in(path);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

Config without_source(Config config) {
  config.source.clear();
  return config;
}

LoadOptions options() {
  LoadOptions out;
  out.builtin_apps = {"http-hello", "other-app"};
  return out;
}

// A file setting one key to a value other than its default, per key of the table. The names
// of this process's user and group are the ones any user may name.
std::map<std::string, std::string> samples() {
  const passwd* own_user = ::getpwuid(::geteuid());
  const group* own_group = ::getgrgid(::getegid());
  const std::string user_name = own_user != nullptr ? own_user->pw_name : "root";
  const std::string group_name = own_group != nullptr ? own_group->gr_name : "root";
  return {
      {"workers", "workers: 3\n"},
      {"listen", "listen: [127.0.0.1:9090, \"[::1]:9090\"]\n"},
      {"listen.address", "listen:\n  - address: 127.0.0.1:9091\n"},
      {"listen.name", "listen:\n  - address: 127.0.0.1:8080\n    name: web\n"},
      {"listen.backlog", "listen:\n  - address: 127.0.0.1:8080\n    backlog: 16\n"},
      {"listen.reuseport", "listen:\n  - address: 127.0.0.1:8080\n    reuseport: true\n"},
      {"listen.mode", "listen:\n  - address: unix:/tmp/forkd-keys.sock\n    mode: \"0660\"\n"},
      {"worker.app", "worker:\n  app: other-app\n"},
      {"worker.command", "worker:\n  command: [/bin/sh, -c, \"exit 0\"]\n"},
      {"worker.shell", "worker:\n  shell: \"exec node server.js\"\n"},
      {"worker.cwd", "worker:\n  cwd: /\n"},
      {"worker.env", "worker:\n  env: {NODE_ENV: production, EMPTY: \"\"}\n"},
      {"worker.user", "worker:\n  user: " + user_name + "\n"},
      {"worker.group", "worker:\n  group: " + group_name + "\n"},
      {"worker.ready", "worker:\n  ready: notify\n"},
      {"worker.inherit_bind", "worker:\n  inherit_bind: off\n"},
      {"worker.ready_timeout", "worker:\n  ready_timeout: 5s\n"},
      {"worker.stall_after", "worker:\n  stall_after: 500ms\n"},
      {"worker.heartbeat_timeout", "worker:\n  heartbeat_timeout: 2s\n"},
      {"worker.shutdown_timeout", "worker:\n  shutdown_timeout: 1m30s\n"},
      {"worker.max_memory", "worker:\n  max_memory: 256MiB\n"},
      {"worker.max_lifetime", "worker:\n  max_lifetime: 24h\n"},
      {"worker.cpu_affinity", "worker:\n  cpu_affinity: true\n"},
      {"worker.rlimit_nofile", "worker:\n  rlimit_nofile: 4096\n"},
      {"worker.stdout", "worker:\n  stdout: inherit\n"},
      {"worker.stderr", "worker:\n  stderr: null\n"},
      {"restart.delay", "restart:\n  delay: 250ms\n"},
      {"restart.max_delay", "restart:\n  max_delay: 1m\n"},
      {"restart.min_uptime", "restart:\n  min_uptime: 5s\n"},
      {"restart.burst", "restart:\n  burst: 5\n"},
      {"restart.max_failures", "restart:\n  max_failures: 3\n"},
      {"restart.exit_on_failed", "restart:\n  exit_on_failed: true\n"},
      {"reload.batch", "reload:\n  batch: 25%\n"},
      {"control.socket", "control:\n  socket: /tmp/forkd-keys/forkd.sock\n"},
      {"control.mode", "control:\n  mode: \"0660\"\n"},
      {"control.group", "control:\n  group: " + group_name + "\n"},
      {"ipc.max_message", "ipc:\n  max_message: 4MiB\n"},
      {"log.level", "log:\n  level: debug\n"},
      {"log.format", "log:\n  format: json\n"},
      {"log.file", "log:\n  file: /var/log/forkd.log\n"},
      {"log.worker_lines", "log:\n  worker_lines: 50\n"},
      {"log.audit", "log:\n  audit: /var/log/forkd-audit.log\n"},
      {"pidfile", "pidfile: /run/forkd.pid\n"},
      {"metrics.listen", "metrics:\n  listen: 127.0.0.1:9101\n"},
      {"stop.delay", "stop:\n  delay: 5s\n"},
  };
}

TEST(ConfigKeys, EveryKeyLoadsAndPrintsBack) {
  const auto files = samples();
  const Config defaults = without_source(default_config());
  for (const ConfigKey& key : config_keys()) {
    if (key.section) continue;
    SCOPED_TRACE(key.path);
    const auto sample = files.find(key.path);
    if (sample == files.end()) {
      ADD_FAILURE() << "no sample value for " << key.path << " in " << __FILE__;
      continue;
    }
    const Config loaded = without_source(load_config_string(sample->second, "t.yaml", options()));
    EXPECT_NE(loaded, defaults) << "the sample changes nothing:\n" << sample->second;
    const std::string printed = to_yaml(loaded);
    EXPECT_NE(printed, to_yaml(defaults)) << "to_yaml does not print it";
    EXPECT_EQ(without_source(load_config_string(printed, "printed.yaml", options())), loaded)
        << printed;
  }
  for (const auto& [path, yaml] : files) {
    const ConfigKey* key = find_config_key(path);
    EXPECT_TRUE(key != nullptr && key->path == path) << "a sample for no key: " << path;
  }
}

TEST(ConfigKeys, TablePrintsInItsOwnOrder) {
  // The top-level keys of to_yaml's output, in order, are the table's.
  std::vector<std::string> printed;
  std::istringstream lines(to_yaml(default_config()));
  for (std::string line; std::getline(lines, line);) {
    if (!line.empty() && line[0] != ' ') printed.push_back(line.substr(0, line.find(':')));
  }
  std::vector<std::string> table;
  for (const ConfigKey& key : config_keys()) {
    if (key.path.find('.') == std::string::npos) table.push_back(key.path);
  }
  EXPECT_EQ(printed, table);
}

// Every key etc/forkd.yaml sets, commented-out ones included ("# command: [...]",
// "# - address: ..."), as dotted paths: "worker.command", "listen.address".
std::set<std::string> keys_in_example(const std::string& text) {
  std::set<std::string> keys;
  std::vector<std::pair<std::size_t, std::string>> parents;  // (column, path)
  std::istringstream lines(text);
  for (std::string line; std::getline(lines, line);) {
    // A commented-out key reads as if the "# " were not there. It starts where keys start; a
    // comment that goes on beside the values (column 25) is prose.
    const std::size_t hash = line.find_first_not_of(' ');
    if (hash != std::string::npos && line.compare(hash, 2, "# ") == 0) {
      if (hash > 4) continue;
      line.erase(hash, 2);
    }
    std::size_t column = line.find_first_not_of(' ');
    if (column == std::string::npos) continue;
    if (line.compare(column, 2, "- ") == 0) column += 2;
    std::size_t end = column;
    while (end < line.size() && ((line[end] >= 'a' && line[end] <= 'z') || line[end] == '_')) {
      ++end;
    }
    if (end == column || end >= line.size() || line[end] != ':') continue;
    while (!parents.empty() && parents.back().first >= column) parents.pop_back();
    std::string path = line.substr(column, end - column);
    if (!parents.empty()) path = parents.back().second + "." + path;
    keys.insert(path);
    parents.emplace_back(column, path);
  }
  return keys;
}

TEST(ConfigKeys, ExampleFileSetsEveryKeyAndNoOther) {
  const fs::path example = forkd::test::source_root() / "etc" / "forkd.yaml";
  const std::set<std::string> written = keys_in_example(read_text(example));
  ASSERT_FALSE(written.empty()) << example;
  std::set<std::string> table;
  for (const ConfigKey& key : config_keys()) table.insert(key.path);
  for (const std::string& key : table) {
    EXPECT_TRUE(written.contains(key)) << key << " is missing from " << example;
  }
  for (const std::string& key : written) {
    EXPECT_TRUE(table.contains(key)) << example << " sets " << key << ", which is not a key";
  }
}

// The keys forkd.yaml(5) gives a paragraph of their own: the tags of its .TP items, as dotted
// paths; the items nested (.RS ... .RE) under "listen" are "listen.KEY".
std::set<std::string> keys_in_manual(const std::string& text) {
  std::set<std::string> keys;
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  std::string last_tag;
  std::string nested_under;
  for (std::size_t i = 0; i + 1 < lines.size(); ++i) {
    if (lines[i] == ".RS") nested_under = last_tag;
    if (lines[i] == ".RE") nested_under.clear();
    if (lines[i] != ".TP") continue;
    std::string tag = lines[i + 1];
    if (!tag.starts_with(".B ") && !tag.starts_with(".BR ")) continue;
    tag = tag.substr(tag.find(' ') + 1);
    // ".BR worker.stdout \", \" worker.stderr": every word that is not quoted punctuation.
    std::istringstream words(tag);
    for (std::string word; words >> word;) {
      std::string name;
      for (std::size_t c = 0; c < word.size(); ++c) {
        if (word.compare(c, 2, "\\-") == 0) {
          name += '-';
          ++c;
        } else if (word[c] != '"' && word[c] != ',') {
          name += word[c];
        }
      }
      if (name.empty()) continue;
      last_tag = name;
      keys.insert(nested_under.empty() ? name : nested_under + "." + name);
    }
  }
  return keys;
}

TEST(ConfigKeys, ManualPageDescribesEveryKey) {
  const fs::path manual = forkd::test::source_root() / "man" / "forkd.yaml.5";
  const std::set<std::string> described = keys_in_manual(read_text(manual));
  ASSERT_FALSE(described.empty()) << manual;
  for (const ConfigKey& key : config_keys()) {
    // A section is a heading (.SH WORKER); its keys have the paragraphs.
    if (key.section) continue;
    EXPECT_TRUE(described.contains(key.path)) << key.path << " has no paragraph in " << manual;
  }
}

TEST(ConfigKeys, WhatTheRunningMasterHoldsWaitsForARestart) {
  for (const ConfigKey& key : config_keys()) {
    SCOPED_TRACE(key.path);
    if (key.path.starts_with("control")) {
      EXPECT_EQ(key.effect, KeyEffect::after_restart_or_upgrade);
    } else if (key.path == "pidfile") {
      EXPECT_EQ(key.effect, KeyEffect::after_restart);
    } else {
      EXPECT_EQ(key.effect, KeyEffect::on_reload);
    }
  }
}

TEST(ConfigKeys, PrintedPathsFindTheirKey) {
  ASSERT_NE(find_config_key("worker.env.PATH"), nullptr);
  EXPECT_EQ(find_config_key("worker.env.PATH")->path, "worker.env");
  ASSERT_NE(find_config_key("control.socket"), nullptr);
  EXPECT_EQ(find_config_key("control.socket")->path, "control.socket");
  EXPECT_EQ(find_config_key("worker.nope"), nullptr);
  EXPECT_EQ(find_config_key("workersx"), nullptr);
}

}  // namespace
