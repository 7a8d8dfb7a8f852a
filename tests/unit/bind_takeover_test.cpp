// The bind takeover's pure parts: which listener answers a program's bind() (the C matching the
// preloaded library runs), how a program is linked, and whether a configuration gets the
// takeover and which readiness `auto` then means.
#include <arpa/inet.h>
#include <elf.h>
#include <netinet/in.h>
#include <sys/stat.h>

#include <gtest/gtest.h>
#include <cstring>
#include <fstream>
#include <string>

#include "common/config.hpp"
#include "daemon/bind_takeover.hpp"
#include "daemon/program_linkage.hpp"
#include "takeover/endpoint.h"
#include "tests/unit/temp_dir.hpp"

namespace {

using forkd::common::Config;
using forkd::common::ConfigError;
using forkd::common::InheritBind;
using forkd::common::ReadyMode;
using forkd::daemon::BindTakeover;
using forkd::daemon::decide_bind_takeover;
using forkd::daemon::effective_ready_mode;
using forkd::daemon::linkage_of;
using forkd::daemon::program_linkage;
using forkd::daemon::ProgramLinkage;
using forkd::daemon::TakeoverFacts;
using forkd::daemon::unreadable_by;
using forkd::daemon::untrusted_library;

forkd_endpoint tcp(const char* ip, unsigned short port) {
  forkd_endpoint e{};
  if (std::strchr(ip, ':') != nullptr) {
    sockaddr_in6 a{};
    a.sin6_family = AF_INET6;
    a.sin6_port = htons(port);
    ::inet_pton(AF_INET6, ip, &a.sin6_addr);
    EXPECT_EQ(forkd_endpoint_parse(reinterpret_cast<sockaddr*>(&a), sizeof(a), &e), 0);
  } else {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    ::inet_pton(AF_INET, ip, &a.sin_addr);
    EXPECT_EQ(forkd_endpoint_parse(reinterpret_cast<sockaddr*>(&a), sizeof(a), &e), 0);
  }
  return e;
}

forkd_endpoint unix_path(const std::string& path) {
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::memcpy(a.sun_path, path.data(), path.size());
  forkd_endpoint e{};
  const auto len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + path.size() + 1);
  EXPECT_EQ(forkd_endpoint_parse(reinterpret_cast<sockaddr*>(&a), len, &e), 0);
  return e;
}

std::string formatted(const forkd_endpoint& e) {
  char buf[160];
  forkd_endpoint_format(&e, buf, sizeof(buf));
  return buf;
}

TEST(TakeoverEndpoint, TheSameAddressAndPortMatchBest) {
  const auto served = tcp("127.0.0.1", 8080);
  EXPECT_EQ(forkd_endpoint_score(&served, &served), 3);
  const auto v6 = tcp("::1", 8080);
  EXPECT_EQ(forkd_endpoint_score(&v6, &v6), 3);
}

TEST(TakeoverEndpoint, AWildcardOnEitherSideMatchesTheSamePort) {
  const auto any4 = tcp("0.0.0.0", 3000);
  const auto local4 = tcp("127.0.0.1", 3000);
  EXPECT_EQ(forkd_endpoint_score(&local4, &any4), 2);
  EXPECT_EQ(forkd_endpoint_score(&any4, &local4), 2);
  // Node's listen(3000) binds [::] dual-stack: a 0.0.0.0 or 127.0.0.1 listener answers it.
  const auto any6 = tcp("::", 3000);
  EXPECT_EQ(forkd_endpoint_score(&any6, &local4), 1);
  EXPECT_EQ(forkd_endpoint_score(&any6, &any4), 1);
  EXPECT_EQ(forkd_endpoint_score(&local4, &any6), 1);
}

TEST(TakeoverEndpoint, OtherPortsAddressesAndEphemeralPortsNeverMatch) {
  const auto served = tcp("127.0.0.1", 3000);
  const auto other_port = tcp("127.0.0.1", 3001);
  const auto other_host = tcp("127.0.0.2", 3000);
  const auto v6_host = tcp("::1", 3000);
  const auto ephemeral = tcp("0.0.0.0", 0);
  EXPECT_EQ(forkd_endpoint_score(&other_port, &served), 0);
  EXPECT_EQ(forkd_endpoint_score(&other_host, &served), 0);
  EXPECT_EQ(forkd_endpoint_score(&v6_host, &served), 0);
  EXPECT_EQ(forkd_endpoint_score(&ephemeral, &served), 0);
}

TEST(TakeoverEndpoint, AV4MappedAddressIsItsV4Address) {
  const auto mapped = tcp("::ffff:127.0.0.1", 3000);
  EXPECT_EQ(mapped.family, AF_INET);
  const auto served = tcp("127.0.0.1", 3000);
  EXPECT_EQ(forkd_endpoint_score(&mapped, &served), 3);
}

TEST(TakeoverEndpoint, UnixSocketsMatchByTheirPathOnly) {
  const auto served = unix_path("/run/app/web.sock");
  const auto same = unix_path("/run/app/web.sock");
  const auto other = unix_path("/run/app/other.sock");
  const auto tcp_side = tcp("0.0.0.0", 3000);
  EXPECT_EQ(forkd_endpoint_score(&same, &served), 3);
  EXPECT_EQ(forkd_endpoint_score(&other, &served), 0);
  EXPECT_EQ(forkd_endpoint_score(&tcp_side, &served), 0);
  EXPECT_EQ(forkd_endpoint_score(&served, &tcp_side), 0);
}

TEST(TakeoverEndpoint, UnknownFamiliesAndShortAddressesAreRefused) {
  sockaddr_in short_one{};
  short_one.sin_family = AF_INET;
  forkd_endpoint e{};
  EXPECT_EQ(forkd_endpoint_parse(reinterpret_cast<sockaddr*>(&short_one), 4, &e), -1);
  EXPECT_EQ(forkd_endpoint_parse(nullptr, 0, &e), -1);
  sockaddr other{};
  other.sa_family = AF_PACKET;
  EXPECT_EQ(forkd_endpoint_parse(&other, sizeof(other), &e), -1);
}

TEST(TakeoverEndpoint, FormatsAsTheConfigurationWritesAddresses) {
  EXPECT_EQ(formatted(tcp("0.0.0.0", 3000)), "0.0.0.0:3000");
  EXPECT_EQ(formatted(tcp("::1", 80)), "[::1]:80");
  EXPECT_EQ(formatted(unix_path("/run/a.sock")), "unix:/run/a.sock");
}

// An ELF64 header and `count` program headers, the first of type `first_type`.
std::string elf64(std::uint32_t first_type, unsigned count = 2) {
  Elf64_Ehdr header{};
  std::memcpy(header.e_ident, ELFMAG, SELFMAG);
  header.e_ident[EI_CLASS] = ELFCLASS64;
  header.e_phoff = sizeof(Elf64_Ehdr);
  header.e_phentsize = sizeof(Elf64_Phdr);
  header.e_phnum = static_cast<Elf64_Half>(count);
  std::string out(reinterpret_cast<const char*>(&header), sizeof(header));
  for (unsigned i = 0; i < count; ++i) {
    Elf64_Phdr program{};
    program.p_type = i == 0 ? first_type : PT_LOAD;
    out.append(reinterpret_cast<const char*>(&program), sizeof(program));
  }
  return out;
}

TEST(ProgramLinkage, AnInterpreterHeaderMeansDynamic) {
  EXPECT_EQ(linkage_of(elf64(PT_PHDR, 3)).kind, ProgramLinkage::Kind::static_elf);
  auto with_interp = elf64(PT_PHDR, 3);
  Elf64_Phdr interp{};
  interp.p_type = PT_INTERP;
  std::memcpy(with_interp.data() + sizeof(Elf64_Ehdr) + sizeof(Elf64_Phdr), &interp,
              sizeof(interp));
  EXPECT_EQ(linkage_of(with_interp).kind, ProgramLinkage::Kind::dynamic);
  EXPECT_EQ(linkage_of(elf64(PT_LOAD)).kind, ProgramLinkage::Kind::static_elf);
}

TEST(ProgramLinkage, TruncatedOrForeignFilesAreUnknownWithTheReason) {
  const auto full = elf64(PT_INTERP, 4);
  const auto cut = linkage_of(std::string_view(full).substr(0, sizeof(Elf64_Ehdr) + 10));
  EXPECT_EQ(cut.kind, ProgramLinkage::Kind::unknown);
  EXPECT_NE(cut.detail.find("beyond"), std::string::npos) << cut.detail;
  EXPECT_EQ(linkage_of(std::string_view(full).substr(0, 20)).kind, ProgramLinkage::Kind::unknown);
  const auto text = linkage_of("hello world");
  EXPECT_EQ(text.kind, ProgramLinkage::Kind::unknown);
  EXPECT_EQ(text.detail, "neither an ELF file nor a #! script");
}

TEST(ProgramLinkage, AScriptNamesItsInterpreter) {
  const auto env = linkage_of("#!/usr/bin/env node\nconsole.log(1)\n");
  EXPECT_EQ(env.kind, ProgramLinkage::Kind::script);
  EXPECT_EQ(env.interpreter, "/usr/bin/env");
  EXPECT_EQ(linkage_of("#! /bin/sh -e\n").interpreter, "/bin/sh");
  EXPECT_EQ(linkage_of("#!/bin/sh").kind, ProgramLinkage::Kind::unknown);
}

TEST(ProgramLinkage, RealFilesAndScriptsAreFollowedToWhatRuns) {
  forkd::test::TempDir dir;
  std::string judged;
  EXPECT_EQ(program_linkage("/bin/sh", judged).kind, ProgramLinkage::Kind::dynamic);
  const std::string script = dir.path() + "/app.sh";
  std::ofstream(script) << "#!/bin/sh\necho hi\n";
  EXPECT_EQ(program_linkage(script, judged).kind, ProgramLinkage::Kind::dynamic);
  EXPECT_EQ(judged, "/bin/sh");
  const std::string fixed = dir.path() + "/static";
  std::ofstream(fixed) << elf64(PT_LOAD);
  EXPECT_EQ(program_linkage(fixed, judged).kind, ProgramLinkage::Kind::static_elf);
  const std::string relative = dir.path() + "/relative.sh";
  std::ofstream(relative) << "#!sh\n";
  EXPECT_EQ(program_linkage(relative, judged).kind, ProgramLinkage::Kind::unknown);
  const auto missing = program_linkage(dir.path() + "/missing", judged);
  EXPECT_EQ(missing.kind, ProgramLinkage::Kind::unknown);
  EXPECT_NE(missing.detail.find("No such file"), std::string::npos) << missing.detail;
}

TakeoverFacts exec_facts(ProgramLinkage::Kind kind) {
  TakeoverFacts f;
  f.exec_workers = true;
  f.has_listeners = true;
  f.program = "/usr/bin/node";
  f.linkage.kind = kind;
  f.library = "/usr/lib/forkd/libforkd-takeover.so";
  return f;
}

std::string refusal(const TakeoverFacts& facts) {
  try {
    (void)decide_bind_takeover(facts, "forkd.yaml");
  } catch (const ConfigError& e) {
    return e.issues().at(0).to_string();
  }
  return "(accepted)";
}

TEST(BindTakeoverDecision, AutoIsOnForDynamicProgramsAndOffForStaticOnes) {
  const auto on = decide_bind_takeover(exec_facts(ProgramLinkage::Kind::dynamic), "forkd.yaml");
  EXPECT_TRUE(on.active);
  EXPECT_EQ(on.library, "/usr/lib/forkd/libforkd-takeover.so");
  EXPECT_EQ(on.why, "on: /usr/bin/node is dynamically linked");
  const auto off = decide_bind_takeover(exec_facts(ProgramLinkage::Kind::static_elf), "f");
  EXPECT_FALSE(off.active);
  EXPECT_EQ(off.why,
            "off: /usr/bin/node is statically linked (it cannot load the takeover library; use "
            "LISTEN_FDS)");
}

TEST(BindTakeoverDecision, OffWhenAskedOrWhenThereIsNothingToTakeOver) {
  auto f = exec_facts(ProgramLinkage::Kind::dynamic);
  f.mode = InheritBind::off;
  EXPECT_EQ(decide_bind_takeover(f, "f").why, "off: worker.inherit_bind is off");
  f = exec_facts(ProgramLinkage::Kind::dynamic);
  f.has_listeners = false;
  EXPECT_FALSE(decide_bind_takeover(f, "f").active);
  f = exec_facts(ProgramLinkage::Kind::dynamic);
  f.exec_workers = false;
  EXPECT_FALSE(decide_bind_takeover(f, "f").active);
}

TEST(BindTakeoverDecision, AnUnusableLibraryTurnsAutoOffAndRefusesOn) {
  auto f = exec_facts(ProgramLinkage::Kind::dynamic);
  f.library_problem = "it is writable by everyone";
  const auto off = decide_bind_takeover(f, "f");
  EXPECT_FALSE(off.active);
  EXPECT_NE(off.why.find("cannot be used: it is writable by everyone"), std::string::npos);
  f.mode = InheritBind::on;
  EXPECT_EQ(refusal(f),
            "forkd.yaml: worker.inherit_bind: on, but the takeover library "
            "/usr/lib/forkd/libforkd-takeover.so cannot be used: it is writable by everyone");
}

TEST(BindTakeoverDecision, OnForAStaticProgramIsAConfigurationError) {
  auto f = exec_facts(ProgramLinkage::Kind::static_elf);
  f.mode = InheritBind::on;
  EXPECT_EQ(refusal(f),
            "forkd.yaml: worker.inherit_bind: on, but /usr/bin/node is statically linked: only a "
            "dynamically linked program loads the takeover library (use LISTEN_FDS, or "
            "inherit_bind: off)");
}

TEST(BindTakeoverDecision, ReadyListeningWithoutTheTakeoverIsAConfigurationError) {
  auto f = exec_facts(ProgramLinkage::Kind::static_elf);
  f.ready = ReadyMode::listening;
  EXPECT_NE(refusal(f).find("worker.ready: listening needs the bind takeover, which is off: "
                            "/usr/bin/node is statically linked"),
            std::string::npos)
      << refusal(f);
  f = exec_facts(ProgramLinkage::Kind::dynamic);
  f.ready = ReadyMode::listening;
  EXPECT_TRUE(decide_bind_takeover(f, "f").active);
}

TEST(BindTakeoverDecision, AutoReadinessFollowsTheTakeover) {
  Config config;
  BindTakeover on;
  on.active = true;
  const BindTakeover off;
  config.worker.app = "http-hello";
  EXPECT_EQ(effective_ready_mode(config, off), ReadyMode::message);
  config.worker.app.clear();
  config.worker.command = {"node", "app.js"};
  EXPECT_EQ(effective_ready_mode(config, on), ReadyMode::listening);
  EXPECT_EQ(effective_ready_mode(config, off), ReadyMode::started);
  config.worker.ready = ReadyMode::notify;
  EXPECT_EQ(effective_ready_mode(config, on), ReadyMode::notify);
}

TEST(BindTakeoverLibrary, OnlyAFileNobodyElseCanReplaceIsPreloaded) {
  forkd::test::TempDir dir;  // under /tmp: sticky, so others cannot replace what we own there
  const std::string lib = dir.path() + "/libforkd-takeover.so";
  std::ofstream(lib) << "x";
  ::chmod(lib.c_str(), 0644);
  EXPECT_EQ(untrusted_library(lib), "");
  ::chmod(lib.c_str(), 0666);
  EXPECT_EQ(untrusted_library(lib), "it is writable by everyone");
  ::chmod(lib.c_str(), 0644);
  const std::string open_dir = dir.path() + "/open";
  ::mkdir(open_dir.c_str(), 0755);
  ::chmod(open_dir.c_str(), 0777);
  const std::string inside = open_dir + "/libforkd-takeover.so";
  std::ofstream(inside) << "x";
  ::chmod(inside.c_str(), 0644);
  EXPECT_EQ(untrusted_library(inside), "directory " + open_dir + " is writable by everyone");
  EXPECT_NE(untrusted_library(dir.path() + "/missing.so").find("No such file"), std::string::npos);
  EXPECT_NE(untrusted_library("/a b/lib.so").find("separator"), std::string::npos);
  EXPECT_EQ(untrusted_library(dir.path()), "it is a directory");
}

TEST(BindTakeoverLibrary, AWorkerUserThatCannotReadItIsNamed) {
  forkd::test::TempDir dir;
  const std::string lib = dir.path() + "/libforkd-takeover.so";
  std::ofstream(lib) << "x";
  ::chmod(lib.c_str(), 0644);
  ::chmod(dir.path().c_str(), 0755);
  EXPECT_EQ(unreadable_by(lib, 4242, 4242, {}), "");
  EXPECT_EQ(unreadable_by(lib, 0, 0, {}), "");
  ::chmod(lib.c_str(), 0640);
  EXPECT_EQ(unreadable_by(lib, 4242, 4242, {}), "uid 4242 (worker.user) cannot read it");
  ::chmod(lib.c_str(), 0644);
  ::chmod(dir.path().c_str(), 0700);
  EXPECT_EQ(unreadable_by(lib, 4242, 4242, {}),
            "uid 4242 (worker.user) cannot enter directory " + dir.path());
  ::chmod(dir.path().c_str(), 0710);
  struct stat st {};
  ASSERT_EQ(::stat(dir.path().c_str(), &st), 0);
  EXPECT_EQ(unreadable_by(lib, 4242, 4242, {st.st_gid}), "");
}

}  // namespace
