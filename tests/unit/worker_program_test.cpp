#include "common/worker_program.hpp"

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "tests/unit/temp_dir.hpp"

namespace {

namespace fs = std::filesystem;
using forkd::common::load_config_string;
using forkd::common::resolve_worker_program;
using forkd::common::worker_search_path;
using forkd::common::WorkerConfig;
using forkd::test::TempDir;

std::string write_script(const TempDir& dir, const std::string& name) {
  const std::string path = dir.file(name);
  std::ofstream(path) << "#!/bin/sh\nexit 0\n";
  fs::permissions(path, fs::perms::owner_all);
  return path;
}

WorkerConfig exec_worker(const std::string& program) {
  WorkerConfig worker;
  worker.app.clear();
  worker.command = {program, "--flag"};
  return worker;
}

TEST(WorkerProgram, SearchesThePathTheWorkerGets) {
  TempDir dir;
  const std::string script = write_script(dir, "forkd-only-here");
  WorkerConfig worker = exec_worker("forkd-only-here");
  // Not on this process's PATH...
  const auto without = resolve_worker_program(worker);
  EXPECT_FALSE(without.found());
  EXPECT_EQ(without.problem,
            "\"forkd-only-here\": not found in PATH (" + worker_search_path(worker) + ")");
  // ...but on the one worker.env gives the worker.
  worker.env["PATH"] = "/nonexistent:" + dir.path();
  EXPECT_EQ(worker_search_path(worker), "/nonexistent:" + dir.path());
  const auto with = resolve_worker_program(worker);
  EXPECT_TRUE(with.found()) << with.problem;
  EXPECT_EQ(with.path, script);
}

TEST(WorkerProgram, TheConfigCheckAcceptsWhatASpawnFinds) {
  TempDir dir;
  (void)write_script(dir, "forkd-only-here");
  const std::string yaml =
      "worker:\n  command: [forkd-only-here]\n  env: {PATH: " + dir.path() + "}\n";
  const auto config = load_config_string(yaml, "forkd.yaml");
  const auto program = resolve_worker_program(config.worker);
  EXPECT_EQ(program.path, dir.file("forkd-only-here"));
}

TEST(WorkerProgram, WithoutAnyPathTheDefaultIsSearched) {
  const char* saved = std::getenv("PATH");
  const std::string original = saved != nullptr ? saved : "";
  ::unsetenv("PATH");
  const WorkerConfig worker = exec_worker("sh");
  EXPECT_EQ(worker_search_path(worker), forkd::common::kDefaultWorkerPath);
  const auto program = resolve_worker_program(worker);
  if (saved != nullptr) ::setenv("PATH", original.c_str(), 1);
  EXPECT_TRUE(program.found()) << program.problem;
  EXPECT_TRUE(program.path.starts_with("/")) << program.path;
}

TEST(WorkerProgram, RelativePathsAreTakenFromTheWorkersDirectory) {
  TempDir dir;
  const std::string script = write_script(dir, "run.sh");
  WorkerConfig worker = exec_worker("./run.sh");
  worker.cwd = dir.path();
  const auto found = resolve_worker_program(worker);
  EXPECT_TRUE(found.found()) << found.problem;
  EXPECT_EQ(fs::path(found.path).lexically_normal().string(), script);

  // A relative worker.cwd still gives a path that holds after the child's chdir.
  const fs::path here = fs::current_path();
  fs::current_path(fs::path(dir.path()).parent_path());
  worker.cwd = fs::path(dir.path()).filename().string();
  const auto from_relative = resolve_worker_program(worker);
  fs::current_path(here);
  EXPECT_TRUE(from_relative.found()) << from_relative.problem;
  EXPECT_TRUE(from_relative.path.starts_with("/")) << from_relative.path;
  EXPECT_EQ(fs::path(from_relative.path).lexically_normal().string(), script);

  // And a relative PATH entry too: where the worker will search it.
  WorkerConfig searched = exec_worker("run.sh");
  searched.cwd = dir.path();
  searched.env["PATH"] = ".";
  const auto via_path = resolve_worker_program(searched);
  EXPECT_TRUE(via_path.found()) << via_path.problem;
  EXPECT_EQ(fs::path(via_path.path).lexically_normal().string(), script);

  worker.cwd = dir.path();
  worker.command = {"./missing.sh"};
  EXPECT_EQ(resolve_worker_program(worker).problem,
            "\"./missing.sh\": No such file or directory (relative to worker.cwd \"" + dir.path() +
                "\")");
}

TEST(WorkerProgram, OnlyRegularExecutableFilesCount) {
  TempDir dir;
  fs::create_directory(dir.file("bin"));
  fs::create_directory(dir.file("bin/tool"));  // a directory named like the program
  std::ofstream(dir.file("data")) << "x\n";
  WorkerConfig worker = exec_worker("tool");
  worker.env["PATH"] = dir.file("bin");
  EXPECT_FALSE(resolve_worker_program(worker).found());
  worker.command = {dir.file("data")};
  EXPECT_EQ(resolve_worker_program(worker).problem,
            "\"" + dir.file("data") + "\": " + std::generic_category().message(EACCES));
  worker.command = {dir.file("bin")};
  EXPECT_EQ(resolve_worker_program(worker).problem,
            "\"" + dir.file("bin") + "\": " + std::generic_category().message(EISDIR));
  worker.command = {""};
  EXPECT_EQ(resolve_worker_program(worker).problem, "the program name is empty");
}

}  // namespace
