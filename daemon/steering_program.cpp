#include "daemon/steering_program.hpp"

#include <algorithm>

namespace forkd::daemon {

namespace {

sock_filter statement(std::uint16_t code, std::uint32_t k) {
  return sock_filter{code, 0, 0, k};
}

sock_filter jump(std::uint16_t code, std::uint32_t k, std::uint8_t jt, std::uint8_t jf) {
  return sock_filter{code, jt, jf, k};
}

}  // namespace

std::vector<sock_filter> build_steering_program(std::span<const std::uint32_t> indices) {
  const std::size_t count = std::min(indices.size(), kMaxSteeredSockets);
  if (count == 0) return {statement(BPF_RET | BPF_K, kHashOverAllSockets)};
  if (count == 1) return {statement(BPF_RET | BPF_K, indices[0])};
  std::vector<sock_filter> program;
  program.reserve(3 + 2 * count);
  // A = random() % count: each allowed socket as likely as the next.
  program.push_back(
      statement(BPF_LD | BPF_W | BPF_ABS, static_cast<std::uint32_t>(SKF_AD_OFF + SKF_AD_RANDOM)));
  program.push_back(statement(BPF_ALU | BPF_MOD | BPF_K, static_cast<std::uint32_t>(count)));
  for (std::size_t i = 0; i < count; ++i) {
    // A == i: return the i-th index; else skip that return.
    program.push_back(jump(BPF_JMP | BPF_JEQ | BPF_K, static_cast<std::uint32_t>(i), 0, 1));
    program.push_back(statement(BPF_RET | BPF_K, indices[i]));
  }
  program.push_back(statement(BPF_RET | BPF_K, kHashOverAllSockets));  // unreachable
  return program;
}

}  // namespace forkd::daemon
