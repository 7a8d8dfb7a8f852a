/* Address parsing and matching for the bind takeover (endpoint.h). */
#include "takeover/endpoint.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

static const unsigned char kV4MappedPrefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

static int all_zero(const unsigned char* bytes, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    if (bytes[i] != 0) return 0;
  }
  return 1;
}

int forkd_endpoint_parse(const struct sockaddr* addr, socklen_t len, struct forkd_endpoint* out) {
  memset(out, 0, sizeof(*out));
  if (addr == NULL || len < (socklen_t)sizeof(sa_family_t)) return -1;
  if (addr->sa_family == AF_INET && len >= (socklen_t)sizeof(struct sockaddr_in)) {
    const struct sockaddr_in* in = (const struct sockaddr_in*)(const void*)addr;
    out->family = AF_INET;
    memcpy(out->ip, &in->sin_addr, 4);
    out->wildcard = all_zero(out->ip, 4);
    out->port = ntohs(in->sin_port);
    return 0;
  }
  if (addr->sa_family == AF_INET6 && len >= (socklen_t)sizeof(struct sockaddr_in6)) {
    const struct sockaddr_in6* in6 = (const struct sockaddr_in6*)(const void*)addr;
    const unsigned char* bytes = in6->sin6_addr.s6_addr;
    out->port = ntohs(in6->sin6_port);
    if (memcmp(bytes, kV4MappedPrefix, sizeof(kV4MappedPrefix)) == 0) {
      out->family = AF_INET;
      memcpy(out->ip, bytes + 12, 4);
      out->wildcard = all_zero(out->ip, 4);
      return 0;
    }
    out->family = AF_INET6;
    memcpy(out->ip, bytes, 16);
    out->wildcard = all_zero(out->ip, 16);
    return 0;
  }
  if (addr->sa_family == AF_UNIX) {
    const struct sockaddr_un* un = (const struct sockaddr_un*)(const void*)addr;
    const size_t offset = offsetof(struct sockaddr_un, sun_path);
    if ((size_t)len <= offset) return -1; /* unnamed */
    size_t n = (size_t)len - offset;
    if (n > sizeof(out->path)) n = sizeof(out->path);
    /* A path name ends at its first NUL; an abstract one (leading NUL) is all its bytes. */
    if (un->sun_path[0] != '\0') n = strnlen(un->sun_path, n);
    out->family = AF_UNIX;
    memcpy(out->path, un->sun_path, n);
    out->path_len = n;
    return 0;
  }
  return -1;
}

int forkd_endpoint_score(const struct forkd_endpoint* asked, const struct forkd_endpoint* served) {
  if (asked->family == AF_UNIX || served->family == AF_UNIX) {
    if (asked->family != served->family || asked->path_len == 0) return 0;
    return asked->path_len == served->path_len &&
                   memcmp(asked->path, served->path, asked->path_len) == 0
               ? 3
               : 0;
  }
  if (asked->family == 0 || served->family == 0) return 0;
  if (asked->port == 0 || asked->port != served->port) return 0;
  if (asked->family == served->family) {
    const size_t n = asked->family == AF_INET ? 4 : 16;
    if (memcmp(asked->ip, served->ip, n) == 0) return 3;
    return asked->wildcard || served->wildcard ? 2 : 0;
  }
  return asked->wildcard || served->wildcard ? 1 : 0;
}

void forkd_endpoint_format(const struct forkd_endpoint* e, char* buf, size_t size) {
  if (size == 0) return;
  char ip[INET6_ADDRSTRLEN] = "";
  switch (e->family) {
    case AF_INET:
      inet_ntop(AF_INET, e->ip, ip, sizeof(ip));
      snprintf(buf, size, "%s:%u", ip, (unsigned)e->port);
      return;
    case AF_INET6:
      inet_ntop(AF_INET6, e->ip, ip, sizeof(ip));
      snprintf(buf, size, "[%s]:%u", ip, (unsigned)e->port);
      return;
    case AF_UNIX:
      if (e->path_len > 0 && e->path[0] == '\0') {
        snprintf(buf, size, "unix:@%.*s", (int)(e->path_len - 1), e->path + 1);
      } else {
        snprintf(buf, size, "unix:%.*s", (int)e->path_len, e->path);
      }
      return;
    default:
      snprintf(buf, size, "(unknown address)");
  }
}
