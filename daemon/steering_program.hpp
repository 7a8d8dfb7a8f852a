// The classic BPF program the master attaches to a reuseport group (SO_ATTACH_REUSEPORT_CBPF):
// it picks one of the given socket indices at random for each new connection. Built here, pure;
// attaching it is daemon/reuseport_steering's job.
#pragma once

#include <linux/filter.h>

#include <cstdint>
#include <span>
#include <vector>

namespace forkd::daemon {

// An index no group has (>= num_socks): the kernel then picks by hash over every socket, as
// with no program at all (net/core/sock_reuseport.c run_bpf_filter returns NULL).
inline constexpr std::uint32_t kHashOverAllSockets = 0xffffffffU;

// BPF_MAXINSNS bounds the program: load, modulo, a JEQ + RET pair per index, and the last RET.
inline constexpr std::size_t kMaxSteeredSockets = (BPF_MAXINSNS - 3) / 2;

// `indices`: where new connections may go (at most kMaxSteeredSockets are used). None: the
// kernel's hash over all sockets; one: that socket; more: random over them.
[[nodiscard]] std::vector<sock_filter> build_steering_program(
    std::span<const std::uint32_t> indices);

}  // namespace forkd::daemon
