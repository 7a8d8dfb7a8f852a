// The "forkd" envelope of the master<->worker channel (SPEC "IPC between master and worker"):
// one JSON value a line; objects with a string member "forkd" are the daemon's own (ready,
// heartbeat, connections, send, broadcast), everything else is the application's. Pure: decoding
// never throws and never trusts a field's type; the master acts only on what decode() returns.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <variant>

namespace forkd::common::ipc {

struct Application {  // any value that is not the daemon's: relayed to events and waiters
  nlohmann::json value;
};
struct Ready {};
struct Heartbeat {};
// A worker's connection counts, for status and metrics: accepted since it started, open now.
// A field that is not a non-negative integer is nullopt (and left alone by the master).
struct Connections {
  std::optional<std::uint64_t> accepted;
  std::optional<std::uint64_t> open;
};
struct Send {
  std::optional<unsigned> to;  // nullopt: "to" is not a worker id (0..kMaxWorkers-1)
  std::string to_shown;        // what "to" was, short, for a log line
  nlohmann::json data;
};
struct Broadcast {
  nlohmann::json data;
};
struct Unknown {  // a "forkd" envelope of a kind this version does not know
  std::string kind;
};
using Message = std::variant<Application, Ready, Heartbeat, Connections, Send, Broadcast, Unknown>;

// The plain string "ready" is readiness too (a Node worker's process.send('ready')).
[[nodiscard]] Message decode(nlohmann::json value);
// What a worker writes; the inverse of decode() for every daemon message.
[[nodiscard]] nlohmann::json encode(const Message& message);

}  // namespace forkd::common::ipc
