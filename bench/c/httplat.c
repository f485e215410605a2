/*
 * HTTP request latency and service-programming probes for bench/proxy-modes.ts, run
 * inside a lab pod against a service's cluster IP. Every request is its own TCP
 * connection (HTTP/1.0, "Connection: close"), so each one crosses the proxy's
 * new-connection path (service lookup, endpoint choice, DNAT) as well as its
 * established path.
 *
 *   httplat latency <ip> <port> <seconds> <max-requests>
 *       sequential requests until either limit; prints
 *       "requests <n> failed <f> seconds <s> p50_us <x> p99_us <y>"
 *   httplat wait <ip> <port> <expect> <timeout-seconds>
 *       prints "polling", then requests until a reply contains <expect>; prints
 *       "ok <unix-ms> attempts <n>" (the wall clock of the first matching reply, for
 *       comparing with the moment the change was made) or "timeout attempts <n>"
 *   httplat first <gap-ms> <ip:port>...
 *       one connect() to each target, in order, <gap-ms> apart (so that the samples
 *       spread over the data plane's periodic work instead of landing in one moment);
 *       prints "connect <ip:port> <us>" (or "failed <ip:port> <errno>") per target: the
 *       first packet of a flow to a service nothing has used yet
 *
 * Addresses are IPv4 or IPv6 (sockaddr.h); an IPv6 target of "first" is written
 * [addr]:port.
 *
 * Attempts in "wait" are bounded (50 ms to connect, 500 ms for the reply): a SYN the
 * data plane does not forward yet is abandoned rather than left to the kernel's 1 s
 * retransmission, so the time resolution is a few tens of milliseconds.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "sockaddr.h"

#define MAX_SAMPLES 1000000

static double mono(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double unix_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* Non-blocking connect bounded by timeout_ms; returns a blocking socket, or -1 with errno set. */
static int connect_within(const struct endpoint *addr, int timeout_ms) {
  int fd = socket_for(addr, SOCK_STREAM | SOCK_NONBLOCK);
  if (fd < 0) return -1;
  if (connect(fd, (const struct sockaddr *)&addr->addr, addr->len) < 0) {
    if (errno != EINPROGRESS) { int e = errno; close(fd); errno = e; return -1; }
    struct pollfd p = { .fd = fd, .events = POLLOUT };
    int r = poll(&p, 1, timeout_ms);
    if (r <= 0) { close(fd); errno = r == 0 ? ETIMEDOUT : errno; return -1; }
    int err = 0;
    socklen_t len = sizeof err;
    getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err != 0) { close(fd); errno = err; return -1; }
  }
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
  return fd;
}

/* One request on its own connection; the reply (NUL-terminated, truncated to cap) in buf. */
static int request(const struct endpoint *addr, const char *host, int connect_ms, int reply_ms, char *buf, size_t cap) {
  int fd = connect_within(addr, connect_ms);
  if (fd < 0) return -1;
  struct timeval limit = { .tv_sec = reply_ms / 1000, .tv_usec = (reply_ms % 1000) * 1000 };
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof limit);
  char req[256];
  /* RFC 7230 §5.4: an IPv6 literal in Host is bracketed. */
  int v6 = addr->addr.ss_family == AF_INET6 && host[0] != '[';
  int n = snprintf(req, sizeof req, "GET / HTTP/1.0\r\nHost: %s%s%s\r\nConnection: close\r\n\r\n", v6 ? "[" : "", host, v6 ? "]" : "");
  if (write(fd, req, (size_t)n) != n) { close(fd); return -1; }
  size_t got = 0;
  for (;;) {
    ssize_t r = read(fd, buf + got, cap - 1 - got);
    if (r < 0) { close(fd); return -1; }
    if (r == 0) break;
    got += (size_t)r;
    if (got == cap - 1) got = 0; /* only the tail matters once the buffer is full */
  }
  buf[got] = '\0';
  close(fd);
  return strncmp(buf, "HTTP/1.", 7) == 0 && strstr(buf, " 200 ") != NULL ? 0 : -1;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static int latency(int argc, char **argv) {
  if (argc < 6) return 2;
  struct endpoint addr;
  if (parse_endpoint(argv[2], argv[3], &addr) < 0) { fprintf(stderr, "bad address %s port %s\n", argv[2], argv[3]); return 2; }
  double seconds = atof(argv[4]);
  long max = atol(argv[5]);
  if (max > MAX_SAMPLES) max = MAX_SAMPLES;
  double *samples = malloc(sizeof(double) * (size_t)max);
  static char buf[4096];
  long count = 0, failed = 0;
  double start = mono(), end = start + seconds;
  while (count < max && mono() < end) {
    double t0 = mono();
    if (request(&addr, argv[2], 1000, 1000, buf, sizeof buf) == 0) samples[count++] = (mono() - t0) * 1e6;
    else failed++;
  }
  double elapsed = mono() - start;
  qsort(samples, (size_t)count, sizeof *samples, cmp_double);
  double p50 = count > 0 ? samples[(count - 1) / 2] : -1, p99 = count > 0 ? samples[(long)((count - 1) * 0.99)] : -1;
  printf("requests %ld failed %ld seconds %.3f p50_us %.1f p99_us %.1f\n", count, failed, elapsed, p50, p99);
  free(samples);
  return 0;
}

static int wait_for(int argc, char **argv) {
  if (argc < 6) return 2;
  struct endpoint addr;
  if (parse_endpoint(argv[2], argv[3], &addr) < 0) { fprintf(stderr, "bad address %s port %s\n", argv[2], argv[3]); return 2; }
  const char *expect = argv[4];
  double end = mono() + atof(argv[5]);
  static char buf[4096];
  long attempts = 0;
  printf("polling\n");
  fflush(stdout);
  while (mono() < end) {
    attempts++;
    if (request(&addr, argv[2], 50, 500, buf, sizeof buf) == 0 && strstr(buf, expect) != NULL) {
      printf("ok %.1f attempts %ld\n", unix_ms(), attempts);
      return 0;
    }
    /* An unreachable or rejected address fails at once; don't spin a core on it. */
    usleep(2000);
  }
  printf("timeout attempts %ld\n", attempts);
  return 1;
}

static int first(int argc, char **argv) {
  if (argc < 3) return 2;
  int gap_ms = atoi(argv[2]);
  for (int i = 3; i < argc; i++) {
    if (i > 3 && gap_ms > 0) usleep((useconds_t)gap_ms * 1000);
    char ip[64];
    const char *colon = strrchr(argv[i], ':');
    struct endpoint addr;
    if (colon == NULL || (size_t)(colon - argv[i]) >= sizeof ip) { fprintf(stderr, "bad target %s\n", argv[i]); return 2; }
    memcpy(ip, argv[i], (size_t)(colon - argv[i]));
    ip[colon - argv[i]] = '\0';
    if (parse_endpoint(ip, colon + 1, &addr) < 0) { fprintf(stderr, "bad target %s\n", argv[i]); return 2; }
    double t0 = mono();
    int fd = connect_within(&addr, 2000);
    double us = (mono() - t0) * 1e6;
    if (fd < 0) { printf("failed %s %d\n", argv[i], errno); continue; }
    /* RST instead of FIN: nothing lingers in TIME_WAIT. */
    struct linger rst = { .l_onoff = 1, .l_linger = 0 };
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &rst, sizeof rst);
    close(fd);
    printf("connect %s %.1f\n", argv[i], us);
  }
  return 0;
}

int main(int argc, char **argv) {
  int rc = 2;
  if (argc >= 2 && strcmp(argv[1], "latency") == 0) rc = latency(argc, argv);
  else if (argc >= 2 && strcmp(argv[1], "wait") == 0) rc = wait_for(argc, argv);
  else if (argc >= 2 && strcmp(argv[1], "first") == 0) rc = first(argc, argv);
  if (rc == 2) fprintf(stderr, "usage: httplat latency <ip> <port> <seconds> <max> | wait <ip> <port> <expect> <timeout-s> | first <gap-ms> <ip:port>...\n");
  return rc;
}
