/*
 * The C baseline for bench/device.ts: a TUN-pair forwarder with the same batching as
 * src/device/relay.ts (read up to BATCH frames, then write them; at most 8 batches per
 * wakeup per direction), driven by level-triggered epoll like libuv's uv_poll.
 *
 *   tunfwd <nameA> <nameB> [--vnet] [--batch N]
 *
 * Opens both TUNs (IFF_TUN | IFF_NO_PI, with --vnet also IFF_VNET_HDR, a 10-byte header
 * and TUNSETOFFLOAD(CSUM|TSO4|TSO6)), prints "ready", forwards until SIGTERM/SIGINT,
 * then prints "frames <a-to-b> <b-to-a> batches <n> dropped <n>". SIGUSR2 prints
 * "counts <frames read> <batches>" so the benchmark can relate CPU to frames.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/uio.h>
#include <unistd.h>

#define MAX_BATCH 256
#define BATCHES_PER_WAKEUP 8

static volatile sig_atomic_t stopping, reporting;
static void on_signal(int sig) { if (sig == SIGUSR2) reporting = 1; else stopping = 1; }

struct lane {
  int from, to;
  unsigned char *slab;
  size_t slot;
  int lengths[MAX_BATCH];
  unsigned long long frames, batches, dropped;
};

static int open_tun(const char *name, int vnet) {
  int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) { perror("open /dev/net/tun"); exit(1); }
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  ifr.ifr_flags = IFF_TUN | IFF_NO_PI | (vnet ? IFF_VNET_HDR : 0);
  strncpy(ifr.ifr_name, name, IFNAMSIZ - 1);
  if (ioctl(fd, TUNSETIFF, &ifr) < 0) { perror("TUNSETIFF"); exit(1); }
  if (vnet) {
    int size = 10;
    if (ioctl(fd, TUNSETVNETHDRSZ, &size) < 0) { perror("TUNSETVNETHDRSZ"); exit(1); }
    if (ioctl(fd, TUNSETOFFLOAD, TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6) < 0) { perror("TUNSETOFFLOAD"); exit(1); }
  }
  return fd;
}

static void pump(struct lane *l, int batch) {
  for (int round = 0; round < BATCHES_PER_WAKEUP; round++) {
    int n = 0;
    while (n < batch) {
      ssize_t r = read(l->from, l->slab + (size_t)n * l->slot, l->slot);
      if (r < 0) {
        if (errno == EINTR) continue;
        if (errno != EAGAIN) perror("read");
        break;
      }
      l->lengths[n++] = (int)r;
    }
    if (n == 0) return;
    int written = 0;
    for (int i = 0; i < n; i++) {
      ssize_t w = write(l->to, l->slab + (size_t)i * l->slot, (size_t)l->lengths[i]);
      if (w >= 0) written++;
      else if (errno == EAGAIN) break; /* full: drop the rest, as the addon does */
    }
    l->frames += (unsigned long long)written;
    l->dropped += (unsigned long long)(n - written);
    l->batches++;
    if (n < batch) return;
  }
}

int main(int argc, char **argv) {
  if (argc < 3) { fprintf(stderr, "usage: tunfwd <nameA> <nameB> [--vnet] [--batch N]\n"); return 2; }
  int vnet = 0, batch = 64;
  for (int i = 3; i < argc; i++) {
    if (strcmp(argv[i], "--vnet") == 0) vnet = 1;
    else if (strcmp(argv[i], "--batch") == 0 && i + 1 < argc) batch = atoi(argv[++i]);
  }
  if (batch < 1 || batch > MAX_BATCH) { fprintf(stderr, "batch must be 1..%d\n", MAX_BATCH); return 2; }
  size_t slot = vnet ? 65536 + 16 : 2048; /* same slot sizes as the TypeScript side */
  struct lane ab = { .from = open_tun(argv[1], vnet), .slot = slot }, ba = { .slot = slot };
  ab.to = open_tun(argv[2], vnet);
  ba.from = ab.to;
  ba.to = ab.from;
  ab.slab = malloc(slot * (size_t)batch);
  ba.slab = malloc(slot * (size_t)batch);

  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGUSR2, &sa, NULL);

  int ep = epoll_create1(EPOLL_CLOEXEC);
  struct epoll_event ev = { .events = EPOLLIN, .data.ptr = &ab };
  epoll_ctl(ep, EPOLL_CTL_ADD, ab.from, &ev);
  ev.data.ptr = &ba;
  epoll_ctl(ep, EPOLL_CTL_ADD, ba.from, &ev);
  printf("ready\n");
  fflush(stdout);

  struct epoll_event events[2];
  while (!stopping) {
    int n = epoll_wait(ep, events, 2, -1);
    for (int i = 0; i < n; i++) pump(events[i].data.ptr, batch);
    if (reporting) {
      reporting = 0;
      printf("counts %llu %llu\n", ab.frames + ab.dropped + ba.frames + ba.dropped, ab.batches + ba.batches);
      fflush(stdout);
    }
  }
  printf("frames %llu %llu batches %llu dropped %llu\n", ab.frames, ba.frames, ab.batches + ba.batches, ab.dropped + ba.dropped);
  return 0;
}
