// pktgen: a small UDP packet generator and counter for tools/bench (64-byte frames at full rate).
//
//   pktgen send --to 10.0.0.2 --port 9000 --size 18 --batch 64 --seconds 5 --max-packets 20000000
//   pktgen send --to 10.0.0.2 --port 9000 --packet eth0 --dst-mac 02:00:00:00:00:02 [--from 10.0.0.1] ...
//   pktgen recv --bind 10.0.0.2 --port 9000 --seconds 15 --idle 1
//
// send: one connected UDP socket, sendmmsg() in batches of --batch copies of one --size-byte payload, as fast as
// the kernel takes them, until --seconds have passed or --max-packets were sent (both bounds always apply).
// A payload of 18 bytes makes a 64-byte Ethernet frame on the overlay (14 Ethernet + 20 IPv4 + 8 UDP + 18, plus
// 4 bytes FCS). ENOBUFS/EAGAIN (a full queue: the frame was dropped) is counted and retried after --full-sleep-us
// (default 50; 0 yields instead) of sleep; other errors stop the sender. Sleeping, not spinning, on a full queue matters when the
// sender shares the cores with the datapath under test: a sender that yields in a loop takes the CPU the
// datapath needs to drain the queue.
// send --packet DEV: the same frames built by hand (Ethernet + IPv4 + UDP, checksums filled, the IPv4 ID counting
// up as a kernel sender's does) and handed to DEV through an AF_PACKET socket with PACKET_QDISC_BYPASS, sendmmsg in
// batches. This skips the sender's own UDP/IP stack and qdisc, which cost more per packet than the datapaths under
// test: one sendmmsg UDP sender tops out near 0.3 Mpps on a bare veth on these VMs. The destination MAC must be
// given (--dst-mac); the source MAC is DEV's, the source address --from (default: DEV's first IPv4 address).
// Frames the device cannot queue are dropped (the send reports ENOBUFS, counted as queue_full, then the pause
// above); nothing blocks, so the datapath sees the full offered rate.
// recv: one UDP socket bound to --bind:--port, recvmmsg() in batches, counts packets until --idle seconds pass
// without a packet after the first one, or --seconds in all.
// Each side prints one JSON line on stdout. The caller picks the addresses (only inside its own namespaces).
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_BATCH 1024

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

// The Internet checksum of `len` bytes, folded, starting from `sum` (RFC 1071).
static uint16_t checksum(const uint8_t *data, size_t len, uint32_t sum) {
    for (size_t i = 0; i + 1 < len; i += 2) sum += (uint32_t)data[i] << 8 | data[i + 1];
    if (len & 1) sum += (uint32_t)data[len - 1] << 8;
    while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
    return (uint16_t)~sum;
}

static int parse_mac(const char *text, uint8_t mac[6]) {
    unsigned int b[6];
    if (sscanf(text, "%x:%x:%x:%x:%x:%x", &b[0], &b[1], &b[2], &b[3], &b[4], &b[5]) != 6) return -1;
    for (int i = 0; i < 6; i++) {
        if (b[i] > 255) return -1;
        mac[i] = (uint8_t)b[i];
    }
    return 0;
}

// Builds Ethernet + IPv4 + UDP + `size` payload bytes into `frame` (the IPv4 ID and header checksum are filled per
// send); returns the frame length.
static size_t build_frame(uint8_t *frame, const uint8_t dst_mac[6], const uint8_t src_mac[6], struct in_addr from,
                          struct in_addr to, uint16_t port, int size) {
    size_t udp_len = 8 + (size_t)size, ip_len = 20 + udp_len;
    memcpy(frame, dst_mac, 6);
    memcpy(frame + 6, src_mac, 6);
    frame[12] = 0x08, frame[13] = 0x00;
    uint8_t *ip = frame + 14, *udp = ip + 20;
    memset(ip, 0, 20);
    ip[0] = 0x45;
    ip[2] = (uint8_t)(ip_len >> 8), ip[3] = (uint8_t)ip_len;
    ip[6] = 0x40;  // DF, as a kernel UDP sender sets it for a datagram that fits the path MTU
    ip[8] = 64, ip[9] = IPPROTO_UDP;
    memcpy(ip + 12, &from, 4);
    memcpy(ip + 16, &to, 4);
    uint16_t sport = (uint16_t)(port + 1);
    udp[0] = (uint8_t)(sport >> 8), udp[1] = (uint8_t)sport;
    udp[2] = (uint8_t)(port >> 8), udp[3] = (uint8_t)port;
    udp[4] = (uint8_t)(udp_len >> 8), udp[5] = (uint8_t)udp_len;
    udp[6] = udp[7] = 0;
    memset(udp + 8, 'v', (size_t)size);
    // The pseudo-header (addresses, protocol, UDP length) summed ahead of the UDP header and payload.
    uint32_t pseudo = 0;
    for (int i = 12; i < 20; i += 2) pseudo += (uint32_t)ip[i] << 8 | ip[i + 1];
    pseudo += IPPROTO_UDP + (uint32_t)udp_len;
    uint16_t sum = checksum(udp, udp_len, pseudo);
    if (sum == 0) sum = 0xffff;  // 0 means "no checksum" in UDP over IPv4
    udp[6] = (uint8_t)(sum >> 8), udp[7] = (uint8_t)sum;
    return 14 + ip_len;
}

static void set_ip_id(uint8_t *frame, uint16_t id) {
    uint8_t *ip = frame + 14;
    ip[4] = (uint8_t)(id >> 8), ip[5] = (uint8_t)id;
    ip[10] = ip[11] = 0;
    uint16_t sum = checksum(ip, 20, 0);
    ip[10] = (uint8_t)(sum >> 8), ip[11] = (uint8_t)sum;
}

static void usage(void) {
    fprintf(stderr,
            "usage: pktgen send --to IP --port N [--size 18] [--batch 64] [--seconds 5] [--max-packets N] [--full-sleep-us 50]\n"
            "                   [--packet DEV --dst-mac MAC [--from IP]]\n"
            "       pktgen recv --bind IP --port N [--seconds 15] [--idle 1]\n");
    exit(2);
}

int main(int argc, char **argv) {
    if (argc < 2) usage();
    const char *mode = argv[1];
    const char *addr = NULL, *device = NULL, *dst_mac_text = NULL, *from_text = NULL;
    int port = 9000, size = 18, batch = 64, full_sleep_us = 50;
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
        else if (!strcmp(k, "--packet")) device = v;
        else if (!strcmp(k, "--dst-mac")) dst_mac_text = v;
        else if (!strcmp(k, "--from")) from_text = v;
        else if (!strcmp(k, "--full-sleep-us")) full_sleep_us = atoi(v);
        else usage();
    }
    // Hard bounds whatever the caller asks: at most 60 s and 10^9 packets.
    if (!addr || port <= 0 || port > 65535 || size < 1 || size > 1472 || batch < 1 || batch > MAX_BATCH ||
        seconds <= 0 || seconds > 60 || idle <= 0 || full_sleep_us < 0 || full_sleep_us > 100000 || max_packets == 0 || max_packets > 1000000000ULL)
        usage();
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (inet_pton(AF_INET, addr, &sa.sin_addr) != 1) usage();
    if (!device != !dst_mac_text || (from_text && !device) || (device && strcmp(mode, "send"))) usage();
    // One row per message: a whole frame in packet mode (at most 14 + 20 + 8 + 1472 = 1514 bytes), a payload or
    // a received datagram otherwise.
    static char payload[MAX_BATCH][2048];
    static struct mmsghdr msgs[MAX_BATCH];
    static struct iovec iovs[MAX_BATCH];
    int bufsize = 16 << 20;
    int fd = device ? socket(AF_PACKET, SOCK_RAW, 0) : socket(AF_INET, SOCK_DGRAM, 0);
    if (fd < 0) { perror("socket"); return 1; }
    size_t frame_len = 0;

    if (!strcmp(mode, "send") && device) {
        uint8_t dst_mac[6], src_mac[6];
        if (parse_mac(dst_mac_text, dst_mac) < 0) usage();
        struct ifreq ifr = {0};
        if (strlen(device) >= sizeof ifr.ifr_name) usage();
        strcpy(ifr.ifr_name, device);
        if (ioctl(fd, SIOCGIFINDEX, &ifr) < 0) { perror(device); return 1; }
        int ifindex = ifr.ifr_ifindex;
        if (ioctl(fd, SIOCGIFHWADDR, &ifr) < 0) { perror("SIOCGIFHWADDR"); return 1; }
        memcpy(src_mac, ifr.ifr_hwaddr.sa_data, 6);
        struct in_addr from;
        if (from_text) {
            if (inet_pton(AF_INET, from_text, &from) != 1) usage();
        } else {
            int probe = socket(AF_INET, SOCK_DGRAM, 0);
            ifr.ifr_addr.sa_family = AF_INET;
            if (probe < 0 || ioctl(probe, SIOCGIFADDR, &ifr) < 0) { perror("SIOCGIFADDR (give --from)"); return 1; }
            from = ((struct sockaddr_in *)&ifr.ifr_addr)->sin_addr;
            close(probe);
        }
        // Bound to the device and protocol 0 (send only: a socket bound to protocol 0 receives nothing).
        struct sockaddr_ll ll = {.sll_family = AF_PACKET, .sll_ifindex = ifindex, .sll_protocol = 0};
        if (bind(fd, (struct sockaddr *)&ll, sizeof ll) < 0) { perror("bind"); return 1; }
        int one = 1;
        if (setsockopt(fd, SOL_PACKET, PACKET_QDISC_BYPASS, &one, sizeof one) < 0) {
            perror("PACKET_QDISC_BYPASS");
            return 1;
        }
        setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &bufsize, sizeof bufsize);
        for (int i = 0; i < batch; i++)
            frame_len = build_frame((uint8_t *)payload[i], dst_mac, src_mac, from, sa.sin_addr, (uint16_t)port, size);
    } else if (!strcmp(mode, "send")) {
        setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &bufsize, sizeof bufsize);
        if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) { perror("connect"); return 1; }
        for (int i = 0; i < batch; i++) memset(payload[i], 'v', (size_t)size);
        frame_len = (size_t)size;
    }
    if (!strcmp(mode, "send")) {
        for (int i = 0; i < batch; i++) {
            iovs[i].iov_base = payload[i];
            iovs[i].iov_len = frame_len;
            msgs[i].msg_hdr.msg_iov = &iovs[i];
            msgs[i].msg_hdr.msg_iovlen = 1;
        }
        uint16_t ip_id = 0;
        unsigned long long sent = 0, calls = 0, full = 0;
        int err = 0;
        double start = now(), end = start + seconds, t = start;
        while (sent < max_packets) {
            unsigned int n = (unsigned int)batch;
            if (max_packets - sent < n) n = (unsigned int)(max_packets - sent);
            if (device)
                for (unsigned int i = 0; i < n; i++) set_ip_id((uint8_t *)payload[i], (uint16_t)(ip_id + i));
            int r = sendmmsg(fd, msgs, n, 0);
            calls++;
            if (r > 0) sent += (unsigned long long)r, ip_id = (uint16_t)(ip_id + r);
            // A short count means the frame after the last one sent met a full queue, as an error return does.
            int queue_full = r >= 0 ? (unsigned int)r < n
                                    : (errno == ENOBUFS || errno == EAGAIN || errno == ECONNREFUSED);
            if (queue_full) {
                full++;
                if (full_sleep_us > 0) {
                    struct timespec pause = {.tv_sec = 0, .tv_nsec = full_sleep_us * 1000L};
                    nanosleep(&pause, NULL);
                } else {
                    sched_yield();
                }
            } else if (r < 0 && errno != EINTR) {
                err = errno;
                break;
            }
            if ((calls & 63) == 0 || r <= 0) {
                t = now();
                if (t >= end) break;
            }
        }
        t = now();
        printf("{\"role\":\"send\",\"packets\":%llu,\"seconds\":%.6f,\"pps\":%.1f,\"calls\":%llu,\"queue_full\":%llu,"
               "\"size\":%d,\"batch\":%d,\"sender\":\"%s\",\"error\":\"%s\"}\n",
               sent, t - start, (double)sent / (t - start), calls, full, size, batch, device ? "packet" : "udp",
               err ? strerror(err) : "");
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
