// tapfwd: the cheapest user-space path between two TAP devices, a floor for tools/bench (variant `tapfwd`).
//
//   tapfwd TAP0 TAP1
//
// Creates two TAP devices (no packet-info header, no virtio-net header, so no offloads), prints "ready" on
// stdout once both exist, and copies every frame read from one to the other: one thread per direction, a
// blocking read() and a write() per frame, nothing else. No tunnel, no forwarding table, no second hop.
//
// It is one hop where a tunnel between two hosts needs two (a TAP read and an encapsulated send on one, a receive
// and a TAP write on the other). With the bench's traffic ends, its ping RTT shows what the wake-ups of one hop
// whose threads sleep cost on the machine, and its 64-byte rate what one system call per frame each way allows
// (a datapath that batches can do better per frame: vxswitch writes runs of datagrams to a TAP as one frame).
//
// The caller moves each TAP into its container's namespace (the file descriptors keep working) and configures
// it. A write that fails (EIO while the other TAP is still down, ENOBUFS) drops that frame and goes on, as a
// switch port would; a read that fails for any reason but EINTR ends the program with a message on stderr.
// It runs until it is killed.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

// Larger than any frame a TAP without a virtio-net header hands over (MTU 65535 + Ethernet header).
#define FRAME_CAPACITY 65550

struct direction {
    int from, to;
    const char *name;
};

static int open_tap(const char *name) {
    int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
    if (fd < 0) {
        fprintf(stderr, "tapfwd: /dev/net/tun: %s\n", strerror(errno));
        exit(1);
    }
    struct ifreq request;
    memset(&request, 0, sizeof request);
    request.ifr_flags = IFF_TAP | IFF_NO_PI;
    if (strlen(name) >= IFNAMSIZ) {
        fprintf(stderr, "tapfwd: device name too long: %s\n", name);
        exit(2);
    }
    strcpy(request.ifr_name, name);
    if (ioctl(fd, TUNSETIFF, &request) < 0) {
        fprintf(stderr, "tapfwd: TUNSETIFF %s: %s\n", name, strerror(errno));
        exit(1);
    }
    return fd;
}

static void *forward(void *argument) {
    const struct direction *direction = argument;
    static __thread unsigned char frame[FRAME_CAPACITY];
    for (;;) {
        ssize_t length = read(direction->from, frame, sizeof frame);
        if (length < 0) {
            if (errno == EINTR) continue;
            fprintf(stderr, "tapfwd: read (%s): %s\n", direction->name, strerror(errno));
            exit(1);
        }
        // A failed write drops the frame: the receiving side is down or its queue is full.
        (void)!write(direction->to, frame, (size_t)length);
    }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: tapfwd TAP0 TAP1\n");
        return 2;
    }
    int tap0 = open_tap(argv[1]), tap1 = open_tap(argv[2]);
    static struct direction directions[2];
    directions[0] = (struct direction){tap0, tap1, "0 to 1"};
    directions[1] = (struct direction){tap1, tap0, "1 to 0"};
    pthread_t thread;
    if (pthread_create(&thread, NULL, forward, &directions[1]) != 0) {
        fprintf(stderr, "tapfwd: cannot start a thread\n");
        return 1;
    }
    printf("ready\n");
    fflush(stdout);
    forward(&directions[0]);
    return 0;
}
