/*
 * The bench tools' one address parser: IPv4 or IPv6, the family from the text
 * ("10.244.1.2", "fd00:10:244:1::2", "[fd00:10:244:1::2]"), through getaddrinfo with
 * AI_NUMERICHOST so that nothing is ever looked up, into a sockaddr_storage.
 * Included by each tool (each is one translation unit; bench/lib/tools.ts rebuilds
 * them when this file changes too).
 */
#ifndef TAPIR_BENCH_SOCKADDR_H
#define TAPIR_BENCH_SOCKADDR_H

#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

struct endpoint {
  struct sockaddr_storage addr;
  socklen_t len;
};

/* 0, or -1 when `ip` is not a numeric IPv4/IPv6 address or `port` not a number. */
static int parse_endpoint(const char *ip, const char *port, struct endpoint *out) {
  char text[INET6_ADDRSTRLEN + 2];
  size_t n = strlen(ip);
  if (n >= sizeof text) return -1;
  if (n >= 2 && ip[0] == '[' && ip[n - 1] == ']') { memcpy(text, ip + 1, n - 2); text[n - 2] = '\0'; }
  else memcpy(text, ip, n + 1);
  struct addrinfo hints = { .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV, .ai_family = AF_UNSPEC };
  struct addrinfo *res = NULL;
  if (getaddrinfo(text, port, &hints, &res) != 0 || res == NULL) return -1;
  memcpy(&out->addr, res->ai_addr, res->ai_addrlen);
  out->len = res->ai_addrlen;
  freeaddrinfo(res);
  return 0;
}

/*
 * A socket of the endpoint's family. IPV6_V6ONLY off, so that a server bound to ::
 * takes IPv4 clients as well (one server serves a dual-stack pod's both addresses).
 */
static int socket_for(const struct endpoint *e, int type) {
  int fd = socket(e->addr.ss_family, type | SOCK_CLOEXEC, 0);
  if (fd >= 0 && e->addr.ss_family == AF_INET6) {
    int off = 0;
    setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof off);
  }
  return fd;
}

#endif
