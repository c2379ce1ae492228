// pktgen: a small UDP packet generator and counter for tools/bench (64-byte frames at full rate).
//
//   pktgen send --to 10.0.0.2 --port 9000 --size 18 --batch 64 --seconds 5 --max-packets 20000000
//   pktgen recv --bind 10.0.0.2 --port 9000 --seconds 15 --idle 1
//
// send: one connected UDP socket, sendmmsg() in batches of --batch copies of one --size-byte payload, as fast as
// the kernel takes them, until --seconds have passed or --max-packets were sent (both bounds always apply).
// A payload of 18 bytes makes a 64-byte Ethernet frame on the overlay (14 Ethernet + 20 IPv4 + 8 UDP + 18, plus
// 4 bytes FCS). ENOBUFS/EAGAIN (a full queue) is counted and retried after a yield; other errors stop the sender.
// recv: one UDP socket bound to --bind:--port, recvmmsg() in batches, counts packets until --idle seconds pass
// without a packet after the first one, or --seconds in all.
// Each side prints one JSON line on stdout. The caller picks the addresses (only inside its own namespaces).
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_BATCH 1024

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void usage(void) {
    fprintf(stderr,
            "usage: pktgen send --to IP --port N [--size 18] [--batch 64] [--seconds 5] [--max-packets N]\n"
            "       pktgen recv --bind IP --port N [--seconds 15] [--idle 1]\n");
    exit(2);
}

int main(int argc, char **argv) {
    if (argc < 2) usage();
    const char *mode = argv[1];
    const char *addr = NULL;
    int port = 9000, size = 18, batch = 64;
    double seconds = 5, idle = 1;
    unsigned long long max_packets = 20000000ULL;
    for (int i = 2; i < argc; i++) {
        if (i + 1 >= argc) usage();
        const char *k = argv[i], *v = argv[++i];
        if (!strcmp(k, "--to") || !strcmp(k, "--bind")) addr = v;
        else if (!strcmp(k, "--port")) port = atoi(v);
        else if (!strcmp(k, "--size")) size = atoi(v);
        else if (!strcmp(k, "--batch")) batch = atoi(v);
        else if (!strcmp(k, "--seconds")) seconds = atof(v);
        else if (!strcmp(k, "--idle")) idle = atof(v);
        else if (!strcmp(k, "--max-packets")) max_packets = strtoull(v, NULL, 10);
        else usage();
    }
    // Hard bounds whatever the caller asks: at most 60 s and 10^9 packets.
    if (!addr || port <= 0 || port > 65535 || size < 1 || size > 1472 || batch < 1 || batch > MAX_BATCH ||
        seconds <= 0 || seconds > 60 || idle <= 0 || max_packets == 0 || max_packets > 1000000000ULL)
        usage();
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (inet_pton(AF_INET, addr, &sa.sin_addr) != 1) usage();
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    if (fd < 0) { perror("socket"); return 1; }
    static char payload[MAX_BATCH][1500];
    static struct mmsghdr msgs[MAX_BATCH];
    static struct iovec iovs[MAX_BATCH];
    int bufsize = 16 << 20;

    if (!strcmp(mode, "send")) {
        setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &bufsize, sizeof bufsize);
        if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) { perror("connect"); return 1; }
        for (int i = 0; i < batch; i++) {
            memset(payload[i], 'v', (size_t)size);
            iovs[i].iov_base = payload[i];
            iovs[i].iov_len = (size_t)size;
            msgs[i].msg_hdr.msg_iov = &iovs[i];
            msgs[i].msg_hdr.msg_iovlen = 1;
        }
        unsigned long long sent = 0, calls = 0, full = 0;
        int err = 0;
        double start = now(), end = start + seconds, t = start;
        while (sent < max_packets) {
            unsigned int n = (unsigned int)batch;
            if (max_packets - sent < n) n = (unsigned int)(max_packets - sent);
            int r = sendmmsg(fd, msgs, n, 0);
            calls++;
            if (r > 0) sent += (unsigned long long)r;
            else if (r < 0 && (errno == ENOBUFS || errno == EAGAIN || errno == ECONNREFUSED)) { full++; sched_yield(); }
            else if (r < 0 && errno != EINTR) { err = errno; break; }
            if ((calls & 63) == 0 || r <= 0) {
                t = now();
                if (t >= end) break;
            }
        }
        t = now();
        printf("{\"role\":\"send\",\"packets\":%llu,\"seconds\":%.6f,\"pps\":%.1f,\"calls\":%llu,\"queue_full\":%llu,"
               "\"size\":%d,\"batch\":%d,\"error\":\"%s\"}\n",
               sent, t - start, (double)sent / (t - start), calls, full, size, batch, err ? strerror(err) : "");
        return err ? 1 : 0;
    }
    if (!strcmp(mode, "recv")) {
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &bufsize, sizeof bufsize);
        setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &bufsize, sizeof bufsize);
        if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0) { perror("bind"); return 1; }
        for (int i = 0; i < MAX_BATCH; i++) {
            iovs[i].iov_base = payload[i];
            iovs[i].iov_len = sizeof payload[i];
            msgs[i].msg_hdr.msg_iov = &iovs[i];
            msgs[i].msg_hdr.msg_iovlen = 1;
        }
        printf("{\"role\":\"recv\",\"listening\":true}\n");
        fflush(stdout);
        unsigned long long got = 0, bytes = 0;
        double start = now(), end = start + seconds, first = 0, last = 0;
        for (;;) {
            double t = now();
            if (t >= end) break;
            if (got > 0 && t - last >= idle) break;
            struct pollfd p = {.fd = fd, .events = POLLIN};
            int wait_ms = (int)(((got > 0 ? (last + idle) : end) - t) * 1000) + 1;
            if (wait_ms > 100) wait_ms = 100;
            if (poll(&p, 1, wait_ms) <= 0) continue;
            int r = recvmmsg(fd, msgs, MAX_BATCH, MSG_DONTWAIT, NULL);
            if (r <= 0) continue;
            t = now();
            if (got == 0) first = t;
            last = t;
            got += (unsigned long long)r;
            for (int i = 0; i < r; i++) bytes += msgs[i].msg_len;
        }
        double span = got > 1 ? last - first : 0;
        printf("{\"role\":\"recv\",\"packets\":%llu,\"bytes\":%llu,\"seconds\":%.6f,\"pps\":%.1f}\n", got, bytes, span,
               span > 0 ? (double)got / span : 0.0);
        return 0;
    }
    usage();
    return 2;
}
