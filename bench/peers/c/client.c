/*
 * The throughput benchmark's stream client: opens N `GET <prefix><id>` streams with epoll, from a
 * list of local source addresses, and counts the messages that arrive (occurrences of "<br/>",
 * which every message chunk of every server under test carries once; the welcome has none).
 *
 *   client HOST PORT COUNT FIRST_ID SOURCES PATH_PREFIX EXTRA_HEADER REPORT_MS
 *
 * SOURCES: comma-separated IPv4 addresses to bind to, round robin. EXTRA_HEADER: "" or one
 * header line without CRLF (Nchan's streams want "TE: chunked"). Prints a JSON line to stdout
 * every REPORT_MS: {"t":ms,"open":n,"failed":n,"received":n,"bytes":n}. Runs until SIGTERM or
 * SIGINT, then prints a last line and exits 0. Written for this benchmark; never a test target.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

struct conn {
  int fd;
  int open;         /* got the response head */
  char carry[5];    /* last bytes of the previous read, for a "<br/>" split across reads */
  int ncarry;
};

static volatile sig_atomic_t stop = 0;
static void on_signal(int s) { (void)s; stop = 1; }

static long long now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static long long count_br(const char *buf, int len) {
  long long n = 0;
  for (const char *p = buf; (p = memmem(p, (size_t)(buf + len - p), "<br/>", 5)) != NULL; p += 5) n++;
  return n;
}

int main(int argc, char **argv) {
  if (argc < 9) {
    fprintf(stderr, "usage: client HOST PORT COUNT FIRST_ID SOURCES PATH_PREFIX EXTRA_HEADER REPORT_MS\n");
    return 2;
  }
  const char *host = argv[1];
  int port = atoi(argv[2]);
  int count = atoi(argv[3]);
  int first = atoi(argv[4]);
  char *sources = strdup(argv[5]);
  const char *prefix = argv[6];
  const char *extra = argv[7];
  int report_ms = atoi(argv[8]);
  signal(SIGTERM, on_signal);
  signal(SIGINT, on_signal);
  signal(SIGPIPE, SIG_IGN);

  struct in_addr src[1024];
  int nsrc = 0;
  for (char *tok = strtok(sources, ","); tok && nsrc < 1024; tok = strtok(NULL, ",")) inet_pton(AF_INET, tok, &src[nsrc++]);
  if (nsrc == 0) inet_pton(AF_INET, "127.0.0.1", &src[nsrc++]);

  struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  inet_pton(AF_INET, host, &to.sin_addr);
  int ep = epoll_create1(0);
  struct conn *conns = calloc((size_t)count, sizeof *conns);
  long long failed = 0, received = 0, bytes = 0, opened = 0;
  int made = 0;
  long long t0 = now_ms(), next_report = t0 + report_ms;
  char buf[65536];
  struct epoll_event evs[512];

  while (!stop) {
    /* Connect in steps of 200 per loop turn, so the server's accept queue is not flooded. */
    for (int k = 0; k < 200 && made < count; k++, made++) {
      int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
      if (fd < 0) { failed++; continue; }
      struct sockaddr_in from = {.sin_family = AF_INET, .sin_addr = src[made % nsrc]};
      int one = 1;
      setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
      if (bind(fd, (struct sockaddr *)&from, sizeof from) < 0) { close(fd); failed++; continue; }
      if (connect(fd, (struct sockaddr *)&to, sizeof to) < 0 && errno != EINPROGRESS) { close(fd); failed++; continue; }
      conns[made].fd = fd;
      struct epoll_event ev = {.events = EPOLLOUT | EPOLLIN, .data.u32 = (uint32_t)made};
      epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
    }
    int n = epoll_wait(ep, evs, 512, 50);
    for (int i = 0; i < n; i++) {
      struct conn *c = &conns[evs[i].data.u32];
      if (evs[i].events & EPOLLOUT) {
        char req[512];
        int len = snprintf(req, sizeof req, "GET %s%d HTTP/1.1\r\nHost: bench\r\n%s%s\r\n", prefix,
                           first + (int)evs[i].data.u32, extra, extra[0] ? "\r\n" : "");
        if (write(c->fd, req, (size_t)len) != len) { failed++; close(c->fd); c->fd = -1; continue; }
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = evs[i].data.u32};
        epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
        continue;
      }
      for (;;) {
        ssize_t r = read(c->fd, buf, sizeof buf);
        if (r > 0) {
          bytes += r;
          if (!c->open) { c->open = 1; opened++; }
          /* Count across the boundary with the previous read. */
          char edge[10];
          int ne = c->ncarry;
          memcpy(edge, c->carry, (size_t)ne);
          int take = r < 4 ? (int)r : 4;
          memcpy(edge + ne, buf, (size_t)take);
          received += count_br(edge, ne + take) + count_br(buf, (int)r);
          c->ncarry = r < 4 ? (int)r : 4;
          memcpy(c->carry, buf + r - c->ncarry, (size_t)c->ncarry);
          continue;
        }
        if (r == 0 || (errno != EAGAIN && errno != EINTR)) {
          if (c->open) opened--; else failed++;
          epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
          close(c->fd);
          c->fd = -1;
          c->open = 0;
        }
        break;
      }
    }
    long long t = now_ms();
    if (t >= next_report) {
      printf("{\"t\":%lld,\"open\":%lld,\"failed\":%lld,\"received\":%lld,\"bytes\":%lld}\n", t - t0, opened, failed, received, bytes);
      fflush(stdout);
      next_report += report_ms;
    }
  }
  printf("{\"t\":%lld,\"open\":%lld,\"failed\":%lld,\"received\":%lld,\"bytes\":%lld,\"final\":true}\n", now_ms() - t0, opened, failed, received, bytes);
  return 0;
}
