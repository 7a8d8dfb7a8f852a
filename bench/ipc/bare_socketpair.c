/* The floor for IPC between two processes: a Unix stream socketpair, blocking write(2) and
 * read(2) of the same small lines ({"n":i}\n) that the other runners exchange, no event loop and
 * no JSON parsing. Prints "<messages> <seconds>".
 * Usage: bare_socketpair [--epoll] pingpong SECONDS | bare_socketpair [--epoll] oneway COUNT
 *   pingpong: the parent writes a line and waits for the child to echo it back;
 *   oneway:   the child writes COUNT lines, one write(2) each; the parent counts newlines.
 *   --epoll:  both ends read as an event loop does (the floor for any of them, forkd's too):
 *             a non-blocking read, and when it finds nothing, epoll_wait(2) on the socket
 *             (edge-triggered) before the next one. */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* One end of the pair: reads block in read(2), or in epoll_wait(2) when epoll_fd >= 0. */
struct end {
  int fd;
  int epoll_fd;
};

static int open_end(struct end* end, int fd, int use_epoll) {
  end->fd = fd;
  end->epoll_fd = -1;
  if (!use_epoll) return 0;
  end->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
  struct epoll_event event = {.events = EPOLLIN | EPOLLET, .data = {.fd = fd}};
  return end->epoll_fd < 0 ? -1 : epoll_ctl(end->epoll_fd, EPOLL_CTL_ADD, fd, &event);
}

static ssize_t read_some(const struct end* end, char* buf, size_t n) {
  if (end->epoll_fd < 0) return read(end->fd, buf, n);
  for (;;) {
    ssize_t r = recv(end->fd, buf, n, MSG_DONTWAIT);
    if (r >= 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) return r;
    struct epoll_event event;
    if (epoll_wait(end->epoll_fd, &event, 1, -1) < 0 && errno != EINTR) return -1;
  }
}

static int write_all(int fd, const char* p, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

/* Echoes every byte back: lines come back whole, in order. */
static int child_echo(const struct end* end) {
  char buf[65536];
  for (;;) {
    ssize_t r = read_some(end, buf, sizeof buf);
    if (r == 0) return 0;
    if (r < 0) {
      if (errno == EINTR) continue;
      return 1;
    }
    if (write_all(end->fd, buf, (size_t)r) != 0) return 1;
  }
}

static int child_send(int fd, long count) {
  char line[64];
  for (long i = 0; i < count; ++i) {
    int n = snprintf(line, sizeof line, "{\"n\":%ld}\n", i);
    if (write_all(fd, line, (size_t)n) != 0) return 1;
  }
  /* Wait for the parent to close, so it measures delivery, not our exit. */
  char c;
  while (read(fd, &c, 1) > 0) {
  }
  return 0;
}

static long parent_pingpong(const struct end* end, double seconds, double* elapsed) {
  char line[64], reply[64];
  long count = 0;
  const double start = now_s();
  double t = start;
  while (t - start < seconds) {
    int n = snprintf(line, sizeof line, "{\"n\":%ld}\n", count);
    if (write_all(end->fd, line, (size_t)n) != 0) return -1;
    size_t got = 0;
    while (got == 0 || reply[got - 1] != '\n') {
      ssize_t r = read_some(end, reply + got, sizeof reply - got);
      if (r <= 0) return -1;
      got += (size_t)r;
    }
    if (got != (size_t)n || memcmp(line, reply, got) != 0) return -1;
    ++count;
    t = now_s();
  }
  *elapsed = t - start;
  return count;
}

static long parent_count(const struct end* end, long count, double* elapsed) {
  char buf[65536];
  long lines = 0;
  const double start = now_s();
  while (lines < count) {
    ssize_t r = read_some(end, buf, sizeof buf);
    if (r <= 0) return -1;
    for (ssize_t i = 0; i < r; ++i) lines += buf[i] == '\n';
  }
  *elapsed = now_s() - start;
  return lines;
}

int main(int argc, char** argv) {
  const int use_epoll = argc > 1 && strcmp(argv[1], "--epoll") == 0;
  argc -= use_epoll;
  argv += use_epoll;
  if (argc != 3 || (strcmp(argv[1], "pingpong") != 0 && strcmp(argv[1], "oneway") != 0)) {
    fputs(
        "usage: bare_socketpair [--epoll] pingpong SECONDS | bare_socketpair [--epoll] oneway"
        " COUNT\n",
        stderr);
    return 64;
  }
  const int pingpong = strcmp(argv[1], "pingpong") == 0;
  const double amount = strtod(argv[2], NULL);
  signal(SIGPIPE, SIG_IGN);
  int fds[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) {
    perror("socketpair");
    return 1;
  }
  pid_t pid = fork();
  if (pid < 0) {
    perror("fork");
    return 1;
  }
  struct end end;
  if (pid == 0) {
    close(fds[0]);
    if (open_end(&end, fds[1], use_epoll) != 0) _exit(1);
    _exit(pingpong ? child_echo(&end) : child_send(fds[1], (long)amount));
  }
  close(fds[1]);
  if (open_end(&end, fds[0], use_epoll) != 0) {
    perror("epoll");
    return 1;
  }
  double elapsed = 0;
  long messages = pingpong ? parent_pingpong(&end, amount, &elapsed)
                           : parent_count(&end, (long)amount, &elapsed);
  close(fds[0]);
  if (end.epoll_fd >= 0) close(end.epoll_fd);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (messages < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    fprintf(stderr, "bare_socketpair %s: run failed\n", argv[1]);
    return 1;
  }
  printf("%ld %.6f\n", messages, elapsed);
  return 0;
}
