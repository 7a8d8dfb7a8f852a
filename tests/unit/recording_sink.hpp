// An spdlog sink that keeps every line as "LEVEL message", for tests that check what was logged.
#pragma once

#include <spdlog/details/null_mutex.h>
#include <spdlog/sinks/base_sink.h>

#include <string>
#include <vector>

namespace forkd::test {

struct RecordingSink final : spdlog::sinks::base_sink<spdlog::details::null_mutex> {
  std::vector<std::string> lines;

 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    const auto level = spdlog::level::to_string_view(msg.level);
    lines.push_back(std::string(level.data(), level.size()) + " " +
                    std::string(msg.payload.data(), msg.payload.size()));
  }
  void flush_() override {}
};

}  // namespace forkd::test
