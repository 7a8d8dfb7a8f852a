/* The addresses the bind takeover compares: what a program asks bind() for and what a forkd
 * listener serves. Pure C, no allocation, no libc state: the preloaded library calls it inside
 * bind(), and the unit tests call it directly. */
#ifndef FORKD_TAKEOVER_ENDPOINT_H
#define FORKD_TAKEOVER_ENDPOINT_H

#include <stddef.h>
#include <sys/socket.h>
#include <sys/un.h>

#ifdef __cplusplus
extern "C" {
#endif

struct forkd_endpoint {
  int family; /* AF_INET (also for a v4-mapped IPv6 address), AF_INET6, AF_UNIX; 0 = none */
  unsigned char ip[16]; /* 4 bytes for AF_INET */
  int wildcard;         /* 0.0.0.0 or :: */
  unsigned short port;  /* host byte order */
  char path[sizeof(((struct sockaddr_un*)0)->sun_path)];
  size_t path_len; /* bytes of path that count (an abstract name starts with a NUL) */
};

/* Fills `out` from a socket address. Returns 0, or -1 for a family or length it does not know
 * (such a bind is never taken over). */
int forkd_endpoint_parse(const struct sockaddr* addr, socklen_t len, struct forkd_endpoint* out);

/* How well a listener serving `served` answers a bind of `asked`: 0 = not at all; for TCP the
 * same port and then 3 = the same address, 2 = a wildcard on either side in the same family,
 * 1 = a wildcard across families (a program's [::] for a 0.0.0.0 listener); for Unix sockets
 * 3 = the same path. Port 0 (an ephemeral port) never matches. */
int forkd_endpoint_score(const struct forkd_endpoint* asked, const struct forkd_endpoint* served);

/* "0.0.0.0:3000", "[::1]:80", "unix:/run/app.sock" into `buf` (always terminated). */
void forkd_endpoint_format(const struct forkd_endpoint* e, char* buf, size_t size);

#ifdef __cplusplus
}
#endif

#endif
