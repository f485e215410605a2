/*
 * Wakeup round trip for bench/device.ts: two threads hand a token back and forth
 * through a pair of eventfds, each sleeping in read() until the other writes, as a
 * forwarder sleeps in epoll until a device has a frame. Pinned to one CPU the round
 * trip is two context switches; pinned to two CPUs it is two cross-CPU wakeups (an
 * IPI to a CPU that may have gone idle: on a VM, often a halted vCPU the host must
 * run again).
 *
 *   wakelat <cpu-a> <cpu-b> <seconds>    prints "round_trips <n> seconds <s> p50_us <x> p99_us <y>"
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#define MAX_SAMPLES (1 << 20)

static int ping, pong;

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void pin(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  if (sched_setaffinity(0, sizeof set, &set) != 0) { perror("sched_setaffinity"); exit(1); }
}

static void *echo(void *arg) {
  pin(*(int *)arg);
  uint64_t v;
  /* Turns alternate, so each read sees exactly the one value written: 1 is a token, 2 the end. */
  while (read(ping, &v, sizeof v) == sizeof v) {
    if (write(pong, &v, sizeof v) != sizeof v || v == 2) break;
  }
  return NULL;
}

static int cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
  if (argc < 4) { fprintf(stderr, "usage: wakelat <cpu-a> <cpu-b> <seconds>\n"); return 2; }
  int a = atoi(argv[1]), b = atoi(argv[2]);
  double seconds = atof(argv[3]);
  ping = eventfd(0, EFD_CLOEXEC);
  pong = eventfd(0, EFD_CLOEXEC);
  if (ping < 0 || pong < 0) { perror("eventfd"); return 1; }
  pthread_t t;
  pthread_create(&t, NULL, echo, &b);
  pin(a);
  double *samples = malloc(sizeof(double) * MAX_SAMPLES);
  long n = 0;
  uint64_t one = 1, v;
  double start = now(), end = start + seconds;
  for (;;) {
    double t0 = now();
    if (t0 >= end) break;
    if (write(ping, &one, sizeof one) != sizeof one || read(pong, &v, sizeof v) != sizeof v) { perror("eventfd"); return 1; }
    if (n < MAX_SAMPLES) samples[n] = (now() - t0) * 1e6;
    n++;
  }
  double took = now() - start;
  uint64_t end_token = 2;
  if (write(ping, &end_token, sizeof end_token) != sizeof end_token || read(pong, &v, sizeof v) != sizeof v) { perror("eventfd"); return 1; }
  pthread_join(t, NULL);
  long kept = n < MAX_SAMPLES ? n : MAX_SAMPLES;
  qsort(samples, kept, sizeof(double), cmp);
  printf("round_trips %ld seconds %.3f p50_us %.2f p99_us %.2f\n", n, took, kept ? samples[kept / 2] : -1, kept ? samples[(long)(kept * 0.99)] : -1);
  return 0;
}
