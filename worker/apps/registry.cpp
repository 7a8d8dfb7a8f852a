#include "worker/apps/registry.hpp"

#include <stdio_ext.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <exception>
#include <string>

#include "worker/apps/http_hello.hpp"
#include "worker/report.hpp"

namespace forkd::worker {

namespace {

constexpr std::array kBuiltinApps{
    AppEntry{"http-hello", &apps::http_hello_main},
};

}  // namespace

std::span<const AppEntry> builtin_apps() noexcept {
  return kBuiltinApps;
}

const AppEntry* find_builtin_app(std::string_view name) noexcept {
  for (const AppEntry& app : kBuiltinApps) {
    if (app.name == name) return &app;
  }
  return nullptr;
}

void run_builtin_app(const AppEntry& app) noexcept {
  // Unflushed bytes in stdout's buffer were written by the parent before fork: flushing them
  // here would print them twice.
  ::__fpurge(stdout);
  int code = 1;
  try {
    code = app.main();
  } catch (const std::exception& e) {
    report(std::string(app.name) + ": " + e.what());
  } catch (...) {
    report(std::string(app.name) + ": unknown exception");
  }
  static_cast<void>(std::fflush(stdout));
  static_cast<void>(std::fflush(stderr));
  ::_exit(code);
}

}  // namespace forkd::worker
