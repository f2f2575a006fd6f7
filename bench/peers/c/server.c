/*
 * The throughput benchmark's C reference: the least a server must do per delivery. One thread,
 * epoll, no framework. Client port: `GET /test/<id>` gets a 200 chunked head and the article's
 * welcome chunk, and the socket is filed under its numeric id. Publish port: `POST /publish`
 * (keep-alive) whose body is newline-separated ids; for each, one chunk
 * `Recvd msg #N: 'x'<br/>` is written to that id's stream, and the answer is the count written.
 * A stream whose kernel buffer is full is dropped (the slow-consumer cut, without a queue).
 *
 *   server CLIENT_PORT PUBLISH_PORT MAX_ID
 *
 * Prints "ready CLIENT_PORT PUBLISH_PORT" once listening. Written for this benchmark only.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

enum kind { LISTEN_CLIENT = 1, LISTEN_PUBLISH, CLIENT, PUBLISHER };

struct conn {
  int fd;
  int kind;
  int id;          /* stream id, -1 until the head is read */
  int n;           /* messages written (the article's #N) */
  char *in;        /* publisher: request bytes so far */
  size_t len, cap;
};

static struct conn **by_id;
static int max_id;

static int listen_on(int port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
  if (bind(fd, (struct sockaddr *)&a, sizeof a) < 0 || listen(fd, 65535) < 0) { perror("listen"); exit(1); }
  return fd;
}

static int port_of(int fd) {
  struct sockaddr_in a;
  socklen_t l = sizeof a;
  getsockname(fd, (struct sockaddr *)&a, &l);
  return ntohs(a.sin_port);
}

static void drop(int ep, struct conn *c) {
  epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
  close(c->fd);
  if (c->kind == CLIENT && c->id >= 0 && c->id <= max_id && by_id[c->id] == c) by_id[c->id] = NULL;
  free(c->in);
  free(c);
}

static const char HEAD[] = "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nTransfer-Encoding: chunked\r\n\r\n";

static void client_read(int ep, struct conn *c) {
  char buf[4096];
  ssize_t r = read(c->fd, buf, sizeof buf - 1);
  if (r <= 0) {
    if (r == 0 || errno != EAGAIN) drop(ep, c);
    return;
  }
  if (c->id >= 0) return; /* streams take no input */
  buf[r] = 0;
  char *p = strstr(buf, "GET /test/");
  if (p == NULL) { drop(ep, c); return; }
  int id = atoi(p + 10);
  if (id < 0 || id > max_id) { drop(ep, c); return; }
  c->id = id;
  if (by_id[id] != NULL) drop(ep, by_id[id]);
  by_id[id] = c;
  char welcome[128];
  int wl = snprintf(welcome, sizeof welcome, "Mochiconntest welcomes you! Your Id: %d\n", id);
  char out[512];
  int ol = snprintf(out, sizeof out, "%s%x\r\n%s\r\n", HEAD, wl, welcome);
  if (write(c->fd, out, (size_t)ol) != ol) drop(ep, c);
}

/* Writes one message chunk to stream `id`; 1 when written. */
static int deliver(int ep, int id) {
  if (id < 0 || id > max_id || by_id[id] == NULL) return 0;
  struct conn *c = by_id[id];
  c->n++;
  char body[64];
  int bl = snprintf(body, sizeof body, "Recvd msg #%d: 'x'<br/>", c->n);
  char out[96];
  int ol = snprintf(out, sizeof out, "%x\r\n%s\r\n", bl, body);
  if (write(c->fd, out, (size_t)ol) != ol) { drop(ep, c); return 0; }
  return 1;
}

static void publisher_read(int ep, struct conn *c) {
  for (;;) {
    if (c->cap - c->len < 65536) {
      c->cap = c->cap * 2 + 65536;
      c->in = realloc(c->in, c->cap);
    }
    ssize_t r = read(c->fd, c->in + c->len, c->cap - c->len - 1);
    if (r == 0 || (r < 0 && errno != EAGAIN)) { drop(ep, c); return; }
    if (r < 0) break;
    c->len += (size_t)r;
  }
  for (;;) {
    c->in[c->len] = 0;
    char *end = strstr(c->in, "\r\n\r\n");
    if (end == NULL) return;
    char *cl = strcasestr(c->in, "content-length:");
    size_t body_len = cl && cl < end ? (size_t)atol(cl + 15) : 0;
    size_t head_len = (size_t)(end + 4 - c->in);
    if (c->len < head_len + body_len) return;
    char *body = c->in + head_len;
    int delivered = 0;
    for (char *line = body; line < body + body_len;) {
      char *nl = memchr(line, '\n', (size_t)(body + body_len - line));
      delivered += deliver(ep, atoi(line));
      if (nl == NULL) break;
      line = nl + 1;
    }
    char num[32];
    int nl = snprintf(num, sizeof num, "%d", delivered);
    char out[256];
    int ol = snprintf(out, sizeof out, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n%s", nl, num);
    if (write(c->fd, out, (size_t)ol) != ol) { drop(ep, c); return; }
    size_t used = head_len + body_len;
    memmove(c->in, c->in + used, c->len - used);
    c->len -= used;
  }
}

int main(int argc, char **argv) {
  if (argc < 4) { fprintf(stderr, "usage: server CLIENT_PORT PUBLISH_PORT MAX_ID\n"); return 2; }
  signal(SIGPIPE, SIG_IGN);
  max_id = atoi(argv[3]);
  by_id = calloc((size_t)max_id + 1, sizeof *by_id);
  int ep = epoll_create1(0);
  int lc = listen_on(atoi(argv[1])), lp = listen_on(atoi(argv[2]));
  struct conn lcc = {.fd = lc, .kind = LISTEN_CLIENT}, lpc = {.fd = lp, .kind = LISTEN_PUBLISH};
  struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &lcc};
  epoll_ctl(ep, EPOLL_CTL_ADD, lc, &ev);
  ev.data.ptr = &lpc;
  epoll_ctl(ep, EPOLL_CTL_ADD, lp, &ev);
  printf("ready %d %d\n", port_of(lc), port_of(lp));
  fflush(stdout);
  struct epoll_event evs[512];
  for (;;) {
    int n = epoll_wait(ep, evs, 512, -1);
    for (int i = 0; i < n; i++) {
      struct conn *c = evs[i].data.ptr;
      if (c->kind == LISTEN_CLIENT || c->kind == LISTEN_PUBLISH) {
        for (;;) {
          int fd = accept4(c->fd, NULL, NULL, SOCK_NONBLOCK);
          if (fd < 0) break;
          int one = 1;
          setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
          struct conn *nc = calloc(1, sizeof *nc);
          nc->fd = fd;
          nc->id = -1;
          nc->kind = c->kind == LISTEN_CLIENT ? CLIENT : PUBLISHER;
          struct epoll_event e = {.events = EPOLLIN, .data.ptr = nc};
          epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e);
        }
      } else if (c->kind == CLIENT) {
        client_read(ep, c);
      } else {
        publisher_read(ep, c);
      }
    }
  }
}
