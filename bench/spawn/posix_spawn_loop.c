/* The floor: a bare posix_spawn + waitpid loop of one program for a fixed time, in C.
   Prints "<runs> <seconds>". Compiled and run by bench/spawn/run. */
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>

extern char** environ;

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char** argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: posix_spawn_loop PROGRAM SECONDS\n");
    return 64;
  }
  /* BENCH_BALLAST_MIB: memory this process holds, as a real parent would. */
  const char* ballast_mib = getenv("BENCH_BALLAST_MIB");
  const size_t ballast = ballast_mib != NULL ? (size_t)atol(ballast_mib) << 20 : 0;
  char* held = ballast > 0 ? malloc(ballast) : NULL;
  if (held != NULL) memset(held, 1, ballast);
  char* child_argv[] = {argv[1], NULL};
  const double start = now();
  const double end = start + atof(argv[2]);
  long runs = 0;
  while (now() < end) {
    pid_t pid;
    if (posix_spawn(&pid, argv[1], NULL, NULL, child_argv, environ) != 0) return 1;
    int status;
    if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0) return 1;
    ++runs;
  }
  printf("%ld %.3f\n", runs, now() - start);
  free(held);
  return 0;
}
