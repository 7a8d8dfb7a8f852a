// The body every libFuzzer entry shares: run one check of checks.hpp on the input and abort
// with the broken property named, so libFuzzer keeps the input as a crash. Nothing else.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

namespace forkd::fuzz {

using Check = std::string (*)(std::string_view, bool);

inline int run_check(Check check, const std::uint8_t* data, std::size_t size) {
  // NOLINTNEXTLINE(cppcoreguidelines-pro-type-reinterpret-cast): libFuzzer hands bytes.
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  if (const std::string broken = check(bytes, true); !broken.empty()) {
    std::fprintf(stderr, "forkd fuzz: property broken: %s\n", broken.c_str());
    std::abort();
  }
  return 0;
}

}  // namespace forkd::fuzz
