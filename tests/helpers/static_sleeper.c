/* A statically linked worker program: the bind takeover cannot load into it (no ld.so), as
 * into a Go binary. It waits for SIGTERM and exits 0. */
#include <signal.h>
#include <unistd.h>

static volatile sig_atomic_t stop;

static void on_term(int signo) {
  (void)signo;
  stop = 1;
}

int main(void) {
  signal(SIGTERM, on_term);
  while (!stop) pause();
  return 0;
}
