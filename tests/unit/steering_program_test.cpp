// The steering program's instructions, as the kernel will run them.
#include "daemon/steering_program.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

namespace {

using forkd::daemon::build_steering_program;
using forkd::daemon::kHashOverAllSockets;
using forkd::daemon::kMaxSteeredSockets;

bool same(const sock_filter& a, const sock_filter& b) {
  return a.code == b.code && a.jt == b.jt && a.jf == b.jf && a.k == b.k;
}

void expect_program(const std::vector<sock_filter>& got, const std::vector<sock_filter>& want) {
  ASSERT_EQ(got.size(), want.size());
  for (std::size_t i = 0; i < got.size(); ++i) {
    EXPECT_TRUE(same(got[i], want[i]))
        << "instruction " << i << ": code " << got[i].code << " jt " << int{got[i].jt} << " jf "
        << int{got[i].jf} << " k " << got[i].k;
  }
}

TEST(SteeringProgramTest, NoSocketFallsBackToTheKernelsHash) {
  expect_program(build_steering_program({}), {{BPF_RET | BPF_K, 0, 0, kHashOverAllSockets}});
}

TEST(SteeringProgramTest, OneSocketTakesEverything) {
  const std::vector<std::uint32_t> one{3};
  expect_program(build_steering_program(one), {{BPF_RET | BPF_K, 0, 0, 3}});
}

TEST(SteeringProgramTest, SeveralSocketsAreChosenAtRandom) {
  const std::vector<std::uint32_t> indices{0, 2, 5};
  expect_program(
      build_steering_program(indices),
      {
          {BPF_LD | BPF_W | BPF_ABS, 0, 0, static_cast<std::uint32_t>(SKF_AD_OFF + SKF_AD_RANDOM)},
          {BPF_ALU | BPF_MOD | BPF_K, 0, 0, 3},
          {BPF_JMP | BPF_JEQ | BPF_K, 0, 1, 0},
          {BPF_RET | BPF_K, 0, 0, 0},
          {BPF_JMP | BPF_JEQ | BPF_K, 0, 1, 1},
          {BPF_RET | BPF_K, 0, 0, 2},
          {BPF_JMP | BPF_JEQ | BPF_K, 0, 1, 2},
          {BPF_RET | BPF_K, 0, 0, 5},
          {BPF_RET | BPF_K, 0, 0, kHashOverAllSockets},
      });
}

TEST(SteeringProgramTest, StaysWithinBpfMaxInsns) {
  std::vector<std::uint32_t> many(5000);
  for (std::size_t i = 0; i < many.size(); ++i) many[i] = static_cast<std::uint32_t>(i);
  const auto program = build_steering_program(many);
  EXPECT_LE(program.size(), std::size_t{BPF_MAXINSNS});
  EXPECT_EQ(program[1].k, kMaxSteeredSockets);
}

}  // namespace
