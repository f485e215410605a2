/*
 * UDP packet-rate load for bench/device.ts, batched so the load generator spends as
 * little CPU as possible on the 2-core machine it shares with the forwarder.
 *
 *   udpblast send <dst-ip> <port> <seconds> <payload-bytes>   sendmmsg, 64 per call
 *   udpblast recv <bind-ip> <port> <seconds>                   recvmmsg, counts
 *
 * The receiver starts its clock at the first datagram and counts for <seconds>, then
 * prints "received <count> seconds <s>". The sender ignores ENOBUFS/EAGAIN (a full TUN
 * queue drops, which is what is being measured) and prints "sent <count>".
 * Addresses are IPv4 or IPv6 (sockaddr.h); a receiver on :: takes both families.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "sockaddr.h"

#define BATCH 64

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
  if (argc < 5) { fprintf(stderr, "usage: udpblast send|recv <ip> <port> <seconds> [payload]\n"); return 2; }
  int sending = strcmp(argv[1], "send") == 0;
  struct endpoint addr;
  if (parse_endpoint(argv[2], argv[3], &addr) < 0) { fprintf(stderr, "bad address %s port %s\n", argv[2], argv[3]); return 2; }
  double seconds = atof(argv[4]);
  int fd = socket_for(&addr, SOCK_DGRAM);
  if (fd < 0) { perror("socket"); return 1; }
  int big = 8 << 20;
  setsockopt(fd, SOL_SOCKET, sending ? SO_SNDBUFFORCE : SO_RCVBUFFORCE, &big, sizeof big);
  static char buf[BATCH][2048];
  struct mmsghdr msgs[BATCH];
  struct iovec iov[BATCH];
  memset(msgs, 0, sizeof msgs);
  if (sending) {
    size_t payload = argc > 5 ? (size_t)atoi(argv[5]) : 64;
    if (connect(fd, (struct sockaddr *)&addr.addr, addr.len) < 0) { perror("connect"); return 1; }
    for (int i = 0; i < BATCH; i++) {
      iov[i].iov_base = buf[i];
      iov[i].iov_len = payload;
      msgs[i].msg_hdr.msg_iov = &iov[i];
      msgs[i].msg_hdr.msg_iovlen = 1;
    }
    unsigned long long sent = 0;
    double end = now() + seconds;
    while (now() < end) {
      int r = sendmmsg(fd, msgs, BATCH, 0);
      if (r > 0) sent += (unsigned long long)r;
      else if (errno != ENOBUFS && errno != EAGAIN && errno != ECONNREFUSED) { perror("sendmmsg"); return 1; }
    }
    printf("sent %llu\n", sent);
    return 0;
  }
  if (bind(fd, (struct sockaddr *)&addr.addr, addr.len) < 0) { perror("bind"); return 1; }
  for (int i = 0; i < BATCH; i++) {
    iov[i].iov_base = buf[i];
    iov[i].iov_len = sizeof buf[i];
    msgs[i].msg_hdr.msg_iov = &iov[i];
    msgs[i].msg_hdr.msg_iovlen = 1;
  }
  printf("ready\n");
  fflush(stdout);
  unsigned long long count = 0;
  double start = 0, end = 0, giveUp = now() + seconds + 10;
  struct pollfd p = { .fd = fd, .events = POLLIN };
  for (;;) {
    double t = now();
    if ((start > 0 && t >= end) || t >= giveUp) break;
    if (poll(&p, 1, 100) <= 0) continue;
    int r = recvmmsg(fd, msgs, BATCH, MSG_DONTWAIT, NULL);
    if (r <= 0) continue;
    if (start == 0) { start = now(); end = start + seconds; }
    count += (unsigned long long)r;
  }
  printf("received %llu seconds %.3f\n", count, start > 0 ? (now() < end ? now() - start : seconds) : 0.0);
  return 0;
}
