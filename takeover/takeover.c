/* forkd's bind takeover, preloaded (LD_PRELOAD) into unchanged exec workers: a program written
 * for one process binds and listens on its port itself; as N workers the second one would fail
 * with EADDRINUSE. Here a bind() of an address a forkd listener serves makes the program's
 * descriptor a duplicate of the inherited listener, and the listen() after it only says so to
 * the master (`ready: listening`). Every other call goes through untouched.
 *
 * Plain C and libc only: no C++ runtime to load into someone else's program. Active only in
 * the process forkd started (LISTEN_PID), never in the children it starts: they inherit the
 * environment, not the listeners' meaning. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#include "takeover/endpoint.h"

#define EXPORT __attribute__((visibility("default")))

enum { kMaxListeners = 64, kMaxTaken = 256 };

struct listener {
  int fd; /* 3.. as LISTEN_FDS passed it */
  dev_t dev;
  ino_t ino;
  struct forkd_endpoint served;
  int reported; /* listen() said to the master once */
};

/* A program descriptor that became a listener: what it asked for, for getsockname(). */
struct taken {
  int fd;
  dev_t dev;
  ino_t ino;
  struct sockaddr_storage asked;
  socklen_t asked_len;
};

static struct listener g_listeners[kMaxListeners];
static int g_listener_count;
static struct taken g_taken[kMaxTaken];
static int g_active;
static int g_warned;
static char g_notify[sizeof(((struct sockaddr_un*)0)->sun_path)];
static volatile int g_lock; /* binds from several threads at once are rare but possible */

typedef int (*bind_fn)(int, const struct sockaddr*, socklen_t);
typedef int (*listen_fn)(int, int);
typedef int (*getsockname_fn)(int, struct sockaddr*, socklen_t*);
typedef int (*unlink_fn)(const char*);
typedef int (*unlinkat_fn)(int, const char*, int);

static bind_fn real_bind;
static listen_fn real_listen;
static getsockname_fn real_getsockname;
static unlink_fn real_unlink;
static unlinkat_fn real_unlinkat;

static void lock(void) {
  while (__atomic_test_and_set(&g_lock, __ATOMIC_ACQUIRE)) {
  }
}
static void unlock(void) {
  __atomic_clear(&g_lock, __ATOMIC_RELEASE);
}

static long parse_number(const char* text) {
  if (text == NULL || *text == '\0') return -1;
  char* end = NULL;
  errno = 0;
  const long value = strtol(text, &end, 10);
  if (errno != 0 || *end != '\0' || value < 0) return -1;
  return value;
}

static int same_socket(int fd, dev_t dev, ino_t ino) {
  struct stat st;
  return fstat(fd, &st) == 0 && S_ISSOCK(st.st_mode) && st.st_dev == dev && st.st_ino == ino;
}

static int stream_socket(int fd) {
  int type = 0;
  socklen_t len = sizeof(type);
  return getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) == 0 && type == SOCK_STREAM;
}

/* One datagram to this worker's NOTIFY_SOCKET, as sd_notify sends it. */
static void notify_master(const char* text) {
  if (g_notify[0] == '\0') return;
  struct sockaddr_un addr;
  memset(&addr, 0, sizeof(addr));
  addr.sun_family = AF_UNIX;
  size_t n = strlen(g_notify);
  memcpy(addr.sun_path, g_notify, n);
  if (addr.sun_path[0] == '@') addr.sun_path[0] = '\0';
  const int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return;
  const socklen_t len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
  (void)sendto(fd, text, strlen(text), MSG_NOSIGNAL, (const struct sockaddr*)&addr, len);
  close(fd);
}

__attribute__((constructor)) static void forkd_takeover_init(void) {
  const long pid = parse_number(getenv("LISTEN_PID"));
  const long count = parse_number(getenv("LISTEN_FDS"));
  if (pid != (long)getpid() || count <= 0) return;
  real_bind = (bind_fn)dlsym(RTLD_NEXT, "bind");
  real_listen = (listen_fn)dlsym(RTLD_NEXT, "listen");
  real_getsockname = (getsockname_fn)dlsym(RTLD_NEXT, "getsockname");
  real_unlink = (unlink_fn)dlsym(RTLD_NEXT, "unlink");
  real_unlinkat = (unlinkat_fn)dlsym(RTLD_NEXT, "unlinkat");
  if (!real_bind || !real_listen || !real_getsockname || !real_unlink || !real_unlinkat) return;
  for (long i = 0; i < count && g_listener_count < kMaxListeners; ++i) {
    struct listener* l = &g_listeners[g_listener_count];
    l->fd = 3 + (int)i;
    struct stat st;
    if (fstat(l->fd, &st) != 0 || !S_ISSOCK(st.st_mode) || !stream_socket(l->fd)) continue;
    struct sockaddr_storage addr;
    socklen_t len = sizeof(addr);
    if (real_getsockname(l->fd, (struct sockaddr*)&addr, &len) != 0) continue;
    if (forkd_endpoint_parse((const struct sockaddr*)&addr, len, &l->served) != 0) continue;
    l->dev = st.st_dev;
    l->ino = st.st_ino;
    ++g_listener_count;
  }
  const char* notify = getenv("NOTIFY_SOCKET");
  if (notify != NULL && strlen(notify) < sizeof(g_notify)) strcpy(g_notify, notify);
  g_active = g_listener_count > 0;
}

/* The listener that serves `asked` best, still open under its number; NULL if none. */
static struct listener* listener_for(const struct forkd_endpoint* asked) {
  struct listener* best = NULL;
  int best_score = 0;
  for (int i = 0; i < g_listener_count; ++i) {
    const int score = forkd_endpoint_score(asked, &g_listeners[i].served);
    if (score > best_score &&
        same_socket(g_listeners[i].fd, g_listeners[i].dev, g_listeners[i].ino)) {
      best = &g_listeners[i];
      best_score = score;
    }
  }
  return best;
}

static struct listener* listener_behind(int fd) {
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISSOCK(st.st_mode)) return NULL;
  for (int i = 0; i < g_listener_count; ++i) {
    if (g_listeners[i].dev == st.st_dev && g_listeners[i].ino == st.st_ino) return &g_listeners[i];
  }
  return NULL;
}

static void remember(int fd, const struct listener* l, const struct sockaddr* asked,
                     socklen_t len) {
  struct taken* slot = NULL;
  for (int i = 0; i < kMaxTaken && slot == NULL; ++i) {
    if (g_taken[i].fd == fd || g_taken[i].asked_len == 0) slot = &g_taken[i];
  }
  if (slot == NULL) slot = &g_taken[fd % kMaxTaken]; /* full: the oldest meaning is stale anyway */
  if (len > (socklen_t)sizeof(slot->asked)) len = sizeof(slot->asked);
  slot->fd = fd;
  slot->dev = l->dev;
  slot->ino = l->ino;
  memcpy(&slot->asked, asked, len);
  slot->asked_len = len;
}

static void warn_unserved(const struct forkd_endpoint* asked) {
  if (__atomic_exchange_n(&g_warned, 1, __ATOMIC_RELAXED)) return;
  char text[160];
  char where[128];
  forkd_endpoint_format(asked, where, sizeof(where));
  snprintf(text, sizeof(text), "FORKD_UNSERVED_BIND=%s", where);
  notify_master(text);
}

EXPORT int bind(int fd, const struct sockaddr* addr, socklen_t len) {
  if (!g_active) {
    if (real_bind == NULL) return (int)syscall(SYS_bind, fd, addr, len);
    return real_bind(fd, addr, len);
  }
  struct forkd_endpoint asked;
  if (forkd_endpoint_parse(addr, len, &asked) != 0 || !stream_socket(fd)) {
    return real_bind(fd, addr, len);
  }
  lock();
  struct listener* l = listener_for(&asked);
  if (l == NULL) {
    unlock();
    if (asked.family != AF_UNIX && asked.port != 0) warn_unserved(&asked);
    return real_bind(fd, addr, len);
  }
  if (!same_socket(fd, l->dev, l->ino)) {
    /* The program's own socket settings that live on the descriptor stay its own: close on
     * exec, and blocking or not (that one is shared by every holder of the listener). */
    const int fd_flags = fcntl(fd, F_GETFD);
    const int status = fcntl(fd, F_GETFL);
    if (dup3(l->fd, fd, fd_flags >= 0 && (fd_flags & FD_CLOEXEC) ? O_CLOEXEC : 0) < 0) {
      const int saved = errno;
      unlock();
      errno = saved;
      return -1;
    }
    const int now = fcntl(fd, F_GETFL);
    if (status >= 0 && now >= 0 && (now & O_NONBLOCK) != (status & O_NONBLOCK)) {
      (void)fcntl(fd, F_SETFL, (now & ~O_NONBLOCK) | (status & O_NONBLOCK));
    }
  }
  remember(fd, l, addr, len);
  unlock();
  return 0;
}

EXPORT int listen(int fd, int backlog) {
  if (!g_active) {
    if (real_listen == NULL) return (int)syscall(SYS_listen, fd, backlog);
    return real_listen(fd, backlog);
  }
  lock();
  struct listener* l = listener_behind(fd);
  if (l == NULL) {
    unlock();
    return real_listen(fd, backlog);
  }
  /* It listens already, with the backlog forkd was configured with. */
  const int first = !l->reported;
  l->reported = 1;
  unlock();
  if (first) {
    char text[64];
    snprintf(text, sizeof(text), "FORKD_LISTENING=%d", l->fd);
    notify_master(text);
  }
  return 0;
}

EXPORT int getsockname(int fd, struct sockaddr* addr, socklen_t* len) {
  if (!g_active) {
    if (real_getsockname == NULL) return (int)syscall(SYS_getsockname, fd, addr, len);
    return real_getsockname(fd, addr, len);
  }
  lock();
  for (int i = 0; i < kMaxTaken; ++i) {
    const struct taken* t = &g_taken[i];
    if (t->asked_len == 0 || t->fd != fd || !same_socket(fd, t->dev, t->ino)) continue;
    /* The address the program asked for, as bind() would have left it. */
    if (addr != NULL && len != NULL) {
      memcpy(addr, &t->asked, *len < t->asked_len ? *len : t->asked_len);
      *len = t->asked_len;
    }
    unlock();
    return 0;
  }
  unlock();
  return real_getsockname(fd, addr, len);
}

/* A program that clears a stale socket file before binding would delete the listener's. */
static int is_listener_path(const char* path) {
  if (path == NULL || path[0] == '\0') return 0;
  const size_t n = strlen(path);
  for (int i = 0; i < g_listener_count; ++i) {
    const struct forkd_endpoint* e = &g_listeners[i].served;
    if (e->family == AF_UNIX && e->path_len == n && memcmp(e->path, path, n) == 0) return 1;
  }
  return 0;
}

EXPORT int unlink(const char* path) {
  if (!g_active) {
    if (real_unlink == NULL) return (int)syscall(SYS_unlink, path);
    return real_unlink(path);
  }
  if (is_listener_path(path)) return 0;
  return real_unlink(path);
}

EXPORT int unlinkat(int dirfd, const char* path, int flags) {
  if (!g_active) {
    if (real_unlinkat == NULL) return (int)syscall(SYS_unlinkat, dirfd, path, flags);
    return real_unlinkat(dirfd, path, flags);
  }
  if ((flags & AT_REMOVEDIR) == 0 && (dirfd == AT_FDCWD || path[0] == '/') &&
      is_listener_path(path)) {
    return 0;
  }
  return real_unlinkat(dirfd, path, flags);
}
