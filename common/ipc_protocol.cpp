#include "common/ipc_protocol.hpp"

#include "common/config.hpp"

namespace forkd::common::ipc {

namespace {

constexpr std::size_t kShownLimit = 64;

// A field's value for a log line: short, never a re-serialised deep structure.
std::string shown(const nlohmann::json& value) {
  if (value.is_string()) {
    const auto& text = value.get_ref<const std::string&>();
    return "\"" + text.substr(0, kShownLimit) + (text.size() > kShownLimit ? "...\"" : "\"");
  }
  if (value.is_array()) return "an array";
  if (value.is_object()) return "an object";
  return value.dump();
}

nlohmann::json take(nlohmann::json& object, const char* key) {
  const auto it = object.find(key);
  return it == object.end() ? nlohmann::json() : std::move(*it);
}

std::optional<std::uint64_t> count(const nlohmann::json& object, const char* key) {
  const auto it = object.find(key);
  if (it == object.end()) return std::nullopt;
  if (it->is_number_unsigned()) return it->get<std::uint64_t>();
  if (it->is_number_integer() && it->get<std::int64_t>() >= 0) {
    return static_cast<std::uint64_t>(it->get<std::int64_t>());
  }
  return std::nullopt;
}

}  // namespace

Message decode(nlohmann::json value) {
  if (value.is_string() && value.get_ref<const std::string&>() == "ready") return Ready{};
  if (!value.is_object()) return Application{std::move(value)};
  const auto kind_it = value.find("forkd");
  if (kind_it == value.end() || !kind_it->is_string()) return Application{std::move(value)};
  const std::string kind = kind_it->get<std::string>();
  if (kind == "ready") return Ready{};
  if (kind == "heartbeat") return Heartbeat{};
  if (kind == "connections") return Connections{count(value, "accepted"), count(value, "open")};
  if (kind == "broadcast") return Broadcast{take(value, "data")};
  if (kind == "send") {
    const nlohmann::json to = take(value, "to");
    Send send{std::nullopt, shown(to), take(value, "data")};
    // Parsed text gives unsigned integers; a value built in code may hold a signed one.
    if (to.is_number_integer() && to.get<std::int64_t>() >= 0 &&
        to.get<std::int64_t>() < static_cast<std::int64_t>(kMaxWorkers)) {
      send.to = to.get<unsigned>();
    }
    return send;
  }
  return Unknown{kind.substr(0, kShownLimit)};
}

nlohmann::json encode(const Message& message) {
  return std::visit(
      [](const auto& m) -> nlohmann::json {
        using M = std::decay_t<decltype(m)>;
        if constexpr (std::is_same_v<M, Application>) {
          return m.value;
        } else if constexpr (std::is_same_v<M, Ready>) {
          return {{"forkd", "ready"}};
        } else if constexpr (std::is_same_v<M, Heartbeat>) {
          return {{"forkd", "heartbeat"}};
        } else if constexpr (std::is_same_v<M, Connections>) {
          nlohmann::json out = {{"forkd", "connections"}};
          if (m.accepted) out["accepted"] = *m.accepted;
          if (m.open) out["open"] = *m.open;
          return out;
        } else if constexpr (std::is_same_v<M, Send>) {
          return {{"forkd", "send"},
                  {"to", m.to ? nlohmann::json(*m.to) : nlohmann::json()},
                  {"data", m.data}};
        } else if constexpr (std::is_same_v<M, Broadcast>) {
          return {{"forkd", "broadcast"}, {"data", m.data}};
        } else {
          return {{"forkd", m.kind}};
        }
      },
      message);
}

}  // namespace forkd::common::ipc
