/*
 * delay-switch: an Ethernet switch in user space that holds every frame for a set time before it
 * forwards it -- one-way delay between test hosts where the kernel has no netem qdisc
 * (CONFIG_NET_SCH_NETEM unset). netns.ts runs it in the switch namespace over the hosts' links.
 *
 *   delay-switch DELAY_US IFACE...
 *   stdin: "delay N\n" sets the delay to N microseconds from now on; EOF ends it.
 *
 * Frames are read from each interface with an AF_PACKET socket, the source MAC is learned, and
 * after the delay the frame goes to the port that MAC was last seen on (or to every other port for
 * broadcast and unknown addresses). One queue in arrival order: a frame never overtakes another.
 * A full queue drops, as a router would. Locally made packets on veth carry a partial checksum
 * (the kernel finishes it on the wire): it is completed here before the frame is sent on, or the
 * receiving host would drop it. The hosts' links are set to gso_max_size 1500 by netns.ts, so no
 * frame is larger than one MTU.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_PORTS 64
#define FRAME_MAX 2048
#define QUEUE 16384
#define MACS 1024

struct frame {
  uint64_t due;
  int in;
  int len;
  unsigned char data[FRAME_MAX];
};

static struct frame *queue;
static int head, count;
static int fds[MAX_PORTS], ports;
static struct { unsigned char mac[6]; int port; } macs[MACS];
static int nmacs;
static uint64_t delay_us;
static unsigned long dropped;

static uint64_t now_us(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (uint64_t)t.tv_sec * 1000000u + (uint64_t)t.tv_nsec / 1000u;
}

static uint32_t sum16(const unsigned char *p, int n, uint32_t s) {
  for (; n > 1; p += 2, n -= 2) s += (uint32_t)(p[0] << 8 | p[1]);
  if (n == 1) s += (uint32_t)(p[0] << 8);
  return s;
}

/* Completes the TCP or UDP checksum of an IPv4 frame whose checksum the kernel left partial. */
static void finish_checksum(unsigned char *f, int len) {
  if (len < 14 + 20 || f[12] != 0x08 || f[13] != 0x00) return;
  unsigned char *ip = f + 14;
  int ihl = (ip[0] & 15) * 4;
  int total = ip[2] << 8 | ip[3];
  if (ihl < 20 || 14 + total > len || total < ihl) return;
  int l4len = total - ihl;
  unsigned char *l4 = ip + ihl;
  int off;
  if (ip[9] == 6 && l4len >= 20) off = 16;
  else if (ip[9] == 17 && l4len >= 8) off = 6;
  else return;
  l4[off] = l4[off + 1] = 0;
  uint32_t s = sum16(ip + 12, 8, 0); /* source and destination addresses */
  s += ip[9];
  s += (uint32_t)l4len;
  s = sum16(l4, l4len, s);
  while (s >> 16) s = (s & 0xffff) + (s >> 16);
  uint16_t c = (uint16_t)~s;
  if (ip[9] == 17 && c == 0) c = 0xffff;
  l4[off] = (unsigned char)(c >> 8);
  l4[off + 1] = (unsigned char)c;
}

static void learn(const unsigned char *mac, int port) {
  for (int i = 0; i < nmacs; i++)
    if (memcmp(macs[i].mac, mac, 6) == 0) {
      macs[i].port = port;
      return;
    }
  if (nmacs < MACS) {
    memcpy(macs[nmacs].mac, mac, 6);
    macs[nmacs++].port = port;
  }
}

static int port_of(const unsigned char *mac) {
  if (mac[0] & 1) return -1; /* broadcast, multicast */
  for (int i = 0; i < nmacs; i++)
    if (memcmp(macs[i].mac, mac, 6) == 0) return macs[i].port;
  return -1;
}

static void forward(struct frame *fr) {
  int to = port_of(fr->data);
  for (int p = 0; p < ports; p++) {
    if (p == fr->in || (to >= 0 && p != to)) continue;
    /* A port that is down (a cut link) or full drops the frame. */
    if (send(fds[p], fr->data, (size_t)fr->len, MSG_DONTWAIT) < 0) dropped++;
  }
}

static void receive(int p) {
  for (;;) {
    if (count == QUEUE) {
      unsigned char skip[FRAME_MAX];
      if (recv(fds[p], skip, sizeof skip, MSG_DONTWAIT) < 0) return;
      dropped++;
      continue;
    }
    struct frame *fr = &queue[(head + count) % QUEUE];
    char ctl[CMSG_SPACE(sizeof(struct tpacket_auxdata))];
    struct iovec iov = {fr->data, FRAME_MAX};
    struct msghdr m = {0};
    m.msg_iov = &iov;
    m.msg_iovlen = 1;
    m.msg_control = ctl;
    m.msg_controllen = sizeof ctl;
    ssize_t n = recvmsg(fds[p], &m, MSG_DONTWAIT);
    if (n < 0) return;
    if (n < 14 || (m.msg_flags & MSG_TRUNC)) {
      dropped++;
      continue;
    }
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&m); c != NULL; c = CMSG_NXTHDR(&m, c)) {
      if (c->cmsg_level == SOL_PACKET && c->cmsg_type == PACKET_AUXDATA) {
        struct tpacket_auxdata aux;
        memcpy(&aux, CMSG_DATA(c), sizeof aux);
        if (aux.tp_status & TP_STATUS_CSUMNOTREADY) finish_checksum(fr->data, (int)n);
      }
    }
    learn(fr->data + 6, p);
    fr->in = p;
    fr->len = (int)n;
    fr->due = now_us() + delay_us;
    count++;
  }
}

int main(int argc, char **argv) {
  if (argc < 3 || argc - 2 > MAX_PORTS) {
    fprintf(stderr, "usage: delay-switch DELAY_US IFACE... (at most %d)\n", MAX_PORTS);
    return 2;
  }
  delay_us = strtoull(argv[1], NULL, 10);
  queue = calloc(QUEUE, sizeof *queue);
  if (queue == NULL) return 1;
  for (int i = 2; i < argc; i++) {
    int fd = socket(AF_PACKET, SOCK_RAW, htons(ETH_P_ALL));
    int one = 1;
    struct sockaddr_ll a = {0};
    a.sll_family = AF_PACKET;
    a.sll_protocol = htons(ETH_P_ALL);
    a.sll_ifindex = (int)if_nametoindex(argv[i]);
    if (fd < 0 || a.sll_ifindex == 0 || bind(fd, (struct sockaddr *)&a, sizeof a) < 0 ||
        setsockopt(fd, SOL_PACKET, PACKET_AUXDATA, &one, sizeof one) < 0 ||
        setsockopt(fd, SOL_PACKET, PACKET_IGNORE_OUTGOING, &one, sizeof one) < 0) {
      fprintf(stderr, "delay-switch: %s: %s\n", argv[i], strerror(errno));
      return 1;
    }
    int buf = 4 << 20;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &buf, sizeof buf);
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &buf, sizeof buf);
    fds[ports++] = fd;
  }
  fprintf(stderr, "delay-switch: %d ports, delay %llu us\n", ports, (unsigned long long)delay_us);
  struct pollfd pf[MAX_PORTS + 1];
  char line[128];
  size_t have = 0;
  for (;;) {
    uint64_t t = now_us();
    while (count > 0 && queue[head].due <= t) {
      forward(&queue[head]);
      head = (head + 1) % QUEUE;
      count--;
    }
    for (int p = 0; p < ports; p++) pf[p] = (struct pollfd){fds[p], POLLIN, 0};
    pf[ports] = (struct pollfd){0, POLLIN, 0};
    /* ppoll: a timeout to the microsecond (poll's is a millisecond, coarser than the delay). */
    struct timespec wait, *waitp = NULL;
    if (count > 0) {
      uint64_t left = queue[head].due - t;
      wait.tv_sec = (time_t)(left / 1000000u);
      wait.tv_nsec = (long)(left % 1000000u) * 1000;
      waitp = &wait;
    }
    if (ppoll(pf, (nfds_t)ports + 1, waitp, NULL) < 0 && errno != EINTR) return 1;
    for (int p = 0; p < ports; p++)
      if (pf[p].revents & POLLIN) receive(p);
    if (pf[ports].revents & (POLLIN | POLLHUP)) {
      ssize_t n = read(0, line + have, sizeof line - 1 - have);
      if (n <= 0) return 0;
      have += (size_t)n;
      line[have] = 0;
      char *nl;
      while ((nl = strchr(line, '\n')) != NULL) {
        *nl = 0;
        unsigned long long us;
        if (sscanf(line, "delay %llu", &us) == 1) {
          delay_us = us;
          fprintf(stderr, "delay-switch: delay %llu us (dropped so far %lu)\n", us, dropped);
        }
        have -= (size_t)(nl + 1 - line);
        memmove(line, nl + 1, have + 1);
      }
      if (have == sizeof line - 1) have = 0;
    }
  }
}
