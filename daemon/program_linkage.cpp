#include "daemon/program_linkage.hpp"

#include <elf.h>
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "common/fd.hpp"

namespace forkd::daemon {

namespace {

// Enough for the ELF header and the program headers of any ordinary executable.
constexpr std::size_t kHeadBytes = 16 * 1024;
constexpr int kMaxScriptDepth = 4;

template <typename Ehdr, typename Phdr>
ProgramLinkage elf_linkage(std::string_view head) {
  ProgramLinkage out;
  if (head.size() < sizeof(Ehdr)) {
    out.detail = "truncated ELF header";
    return out;
  }
  Ehdr header;
  std::memcpy(&header, head.data(), sizeof(header));
  if (header.e_phentsize != sizeof(Phdr)) {
    out.detail = "unexpected ELF program header size";
    return out;
  }
  for (std::size_t i = 0; i < header.e_phnum; ++i) {
    const std::size_t at = static_cast<std::size_t>(header.e_phoff) + i * sizeof(Phdr);
    if (at + sizeof(Phdr) > head.size()) {
      out.detail = "ELF program headers beyond the first " + std::to_string(head.size()) + " bytes";
      return out;
    }
    Phdr program;
    std::memcpy(&program, head.data() + at, sizeof(program));
    if (program.p_type == PT_INTERP) {
      out.kind = ProgramLinkage::Kind::dynamic;
      return out;
    }
  }
  out.kind = ProgramLinkage::Kind::static_elf;
  return out;
}

}  // namespace

ProgramLinkage linkage_of(std::string_view head) {
  ProgramLinkage out;
  if (head.starts_with("#!")) {
    const auto end = head.find('\n');
    if (end == std::string_view::npos) {
      out.detail = "a #! line without its end";
      return out;
    }
    std::string_view line = head.substr(2, end - 2);
    const auto first = line.find_first_not_of(" \t");
    if (first == std::string_view::npos) {
      out.detail = "an empty #! line";
      return out;
    }
    line.remove_prefix(first);
    out.kind = ProgramLinkage::Kind::script;
    out.interpreter = std::string(line.substr(0, line.find_first_of(" \t\r")));
    return out;
  }
  if (head.size() < EI_NIDENT || std::memcmp(head.data(), ELFMAG, SELFMAG) != 0) {
    out.detail = "neither an ELF file nor a #! script";
    return out;
  }
  if (head[EI_CLASS] == ELFCLASS64) return elf_linkage<Elf64_Ehdr, Elf64_Phdr>(head);
  if (head[EI_CLASS] == ELFCLASS32) return elf_linkage<Elf32_Ehdr, Elf32_Phdr>(head);
  out.detail = "an ELF file of an unknown class";
  return out;
}

ProgramLinkage program_linkage(const std::string& path, std::string& resolved) {
  resolved = path;
  for (int depth = 0;; ++depth) {
    common::UniqueFd fd(::open(resolved.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) {
      return {
          ProgramLinkage::Kind::unknown, {}, std::string("cannot read: ") + std::strerror(errno)};
    }
    std::string head(kHeadBytes, '\0');
    std::size_t got = 0;
    while (got < head.size()) {
      const ssize_t n = ::read(fd.get(), head.data() + got, head.size() - got);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      got += static_cast<std::size_t>(n);
    }
    head.resize(got);
    ProgramLinkage linkage = linkage_of(head);
    if (linkage.kind != ProgramLinkage::Kind::script) return linkage;
    if (depth + 1 >= kMaxScriptDepth || linkage.interpreter.empty() ||
        linkage.interpreter.front() != '/') {
      linkage.kind = ProgramLinkage::Kind::unknown;
      linkage.detail =
          "a script whose interpreter \"" + linkage.interpreter + "\" cannot be followed";
      return linkage;
    }
    resolved = linkage.interpreter;
  }
}

}  // namespace forkd::daemon
