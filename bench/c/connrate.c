/*
 * Short TCP connections per second for bench/device.ts: one connection in flight,
 * connect() then close() with SO_LINGER 0 (an RST instead of the FIN handshake, so
 * neither side piles up TIME_WAIT sockets).
 *
 *   connrate server <bind-ip> <port>             accept and close, until killed
 *   connrate client <dst-ip> <port> <seconds>    prints "connections <n> seconds <s>"
 *
 * Addresses are IPv4 or IPv6 (sockaddr.h); a server on :: takes both families.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "sockaddr.h"

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
  if (argc < 4) { fprintf(stderr, "usage: connrate server|client <ip> <port> [seconds]\n"); return 2; }
  struct endpoint addr;
  if (parse_endpoint(argv[2], argv[3], &addr) < 0) { fprintf(stderr, "bad address %s port %s\n", argv[2], argv[3]); return 2; }
  if (strcmp(argv[1], "server") == 0) {
    int fd = socket_for(&addr, SOCK_STREAM);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, (struct sockaddr *)&addr.addr, addr.len) < 0 || listen(fd, 4096) < 0) { perror("listen"); return 1; }
    printf("ready\n");
    fflush(stdout);
    for (;;) {
      int c = accept4(fd, NULL, NULL, SOCK_CLOEXEC);
      if (c >= 0) close(c);
    }
  }
  double seconds = argc > 4 ? atof(argv[4]) : 3;
  struct linger rst = { .l_onoff = 1, .l_linger = 0 };
  /* SO_SNDTIMEO bounds connect(): a SYN the forwarder lost would otherwise stall the
   * loop for the kernel's full retry schedule, past the measurement window. */
  struct timeval limit = { .tv_sec = 1, .tv_usec = 0 };
  unsigned long long count = 0, failed = 0;
  double start = now(), end = start + seconds;
  while (now() < end) {
    int fd = socket_for(&addr, SOCK_STREAM);
    if (fd < 0) { perror("socket"); return 1; }
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &rst, sizeof rst);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &limit, sizeof limit);
    if (connect(fd, (struct sockaddr *)&addr.addr, addr.len) == 0) count++;
    else failed++;
    close(fd);
  }
  printf("connections %llu seconds %.3f failed %llu\n", count, now() - start, failed);
  return 0;
}
