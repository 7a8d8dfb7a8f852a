// Typed fields of a control request, with errors an operator can read ("dry_run must be true
// or false, got \"yes\"") instead of the JSON library's own wording.
#pragma once

#include <nlohmann/json.hpp>
#include <string_view>

namespace forkd::daemon {

// false when `key` is absent; the boolean when present. Throws std::invalid_argument for any
// other type, naming the key and the value.
[[nodiscard]] bool flag_field(const nlohmann::json& request, std::string_view key);

}  // namespace forkd::daemon
