#ifndef _GNU_SOURCE
#error "CVXLinux must be built with _GNU_SOURCE (Package.swift defines it)"
#endif

#include "cvx_linux.h"

#ifdef __linux__
#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

int
cvx_tap_open(const char *name, uint32_t flags, char *name_out)
{
    struct ifreq ifr;
    int fd;

    if (name == NULL || strlen(name) >= IFNAMSIZ) {
        return -EINVAL;
    }
    fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
        return -errno;
    }
    memset(&ifr, 0, sizeof ifr);
    ifr.ifr_flags = IFF_TAP | IFF_NO_PI;
    if (flags & CVX_TAP_VNET_HDR) {
        ifr.ifr_flags |= IFF_VNET_HDR;
    }
    if (flags & CVX_TAP_MULTI_QUEUE) {
        ifr.ifr_flags |= IFF_MULTI_QUEUE;
    }
    strncpy(ifr.ifr_name, name, IFNAMSIZ - 1);
    if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
        int saved = errno;
        close(fd);
        return -saved;
    }
    if (name_out != NULL) {
        memcpy(name_out, ifr.ifr_name, IFNAMSIZ);
        name_out[IFNAMSIZ - 1] = '\0';
    }
    return fd;
}

int
cvx_tap_set_persist(int fd, int persist)
{
    if (ioctl(fd, TUNSETPERSIST, persist ? 1 : 0) < 0) {
        return -errno;
    }
    return 0;
}
#endif /* __linux__ */
