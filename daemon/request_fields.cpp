#include "daemon/request_fields.hpp"

#include <stdexcept>
#include <string>

namespace forkd::daemon {

bool flag_field(const nlohmann::json& request, std::string_view key) {
  const auto it = request.find(key);
  if (it == request.end()) return false;
  if (it->is_boolean()) return it->get<bool>();
  constexpr int kShown = 60;
  std::string shown = it->dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  if (shown.size() > kShown) shown = shown.substr(0, kShown) + "...";
  throw std::invalid_argument(std::string(key) + " must be true or false, got " + shown);
}

}  // namespace forkd::daemon
