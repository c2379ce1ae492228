#ifndef _GNU_SOURCE
#error "CVXLinux must be built with _GNU_SOURCE (Package.swift defines it)"
#endif

#include "cvx_linux.h"

#ifdef __linux__
#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <netinet/udp.h>
#include <sched.h>
#include <stddef.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

/* The Swift side sizes its vectors and control buffers from these; a libc that disagrees must not build. */
_Static_assert(sizeof(cvx_mmsghdr) == sizeof(struct mmsghdr), "cvx_mmsghdr must match struct mmsghdr");
_Static_assert(offsetof(cvx_mmsghdr, msg_len) == offsetof(struct mmsghdr, msg_len),
               "cvx_mmsghdr.msg_len must match struct mmsghdr");
_Static_assert(CVX_RXQ_OVFL_CONTROL_SPACE == CMSG_SPACE(sizeof(uint32_t)), "SO_RXQ_OVFL control space");
_Static_assert(CVX_SO_RXQ_OVFL == SO_RXQ_OVFL, "SO_RXQ_OVFL");
_Static_assert(CVX_SO_RCVBUFFORCE == SO_RCVBUFFORCE, "SO_RCVBUFFORCE");
_Static_assert(CVX_SO_SNDBUFFORCE == SO_SNDBUFFORCE, "SO_SNDBUFFORCE");
_Static_assert(CVX_IFF_UP == IFF_UP, "IFF_UP");
_Static_assert(CVX_SOL_UDP == SOL_UDP && CVX_UDP_SEGMENT == UDP_SEGMENT && CVX_UDP_GRO == UDP_GRO, "UDP GSO/GRO");
_Static_assert(CVX_IP_PMTUDISC_DONT == IP_PMTUDISC_DONT, "IP_PMTUDISC_DONT");
_Static_assert(CVX_UDP_SEGMENT_CONTROL_SPACE == CMSG_SPACE(sizeof(uint16_t)), "UDP_SEGMENT control space");
_Static_assert(CVX_TUNNEL_CONTROL_SPACE >= CMSG_SPACE(sizeof(uint32_t)) + CMSG_SPACE(sizeof(int)),
               "tunnel control space");
_Static_assert(CVX_TUN_F_CSUM == TUN_F_CSUM && CVX_TUN_F_TSO4 == TUN_F_TSO4 && CVX_TUN_F_TSO6 == TUN_F_TSO6,
               "TUN_F_* offload flags");

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

int
cvx_tap_get_name(int fd, char *name_out)
{
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    if (ioctl(fd, TUNGETIFF, &ifr) < 0) {
        return -errno;
    }
    memcpy(name_out, ifr.ifr_name, IFNAMSIZ);
    name_out[IFNAMSIZ - 1] = '\0';
    return 0;
}

#ifndef TUNGETDEVNETNS
#define TUNGETDEVNETNS _IO('T', 227)
#endif

int
cvx_tap_device_netns(int fd)
{
    int ns = ioctl(fd, TUNGETDEVNETNS);
    return ns < 0 ? -errno : ns;
}

int
cvx_tap_set_vnet_header_size(int fd, int size)
{
    if (ioctl(fd, TUNSETVNETHDRSZ, &size) < 0) {
        return -errno;
    }
    return 0;
}

int
cvx_tap_set_offload(int fd, unsigned int flags)
{
    /* TUNSETOFFLOAD takes the flags by value, not through a pointer (tun_set_offload gets `arg` itself). */
    if (ioctl(fd, TUNSETOFFLOAD, (unsigned long)flags) < 0) {
        return -errno;
    }
    return 0;
}

/* Fills `ifr` with `name`; -EINVAL when the name cannot be an interface name. */
static int
cvx_ifreq_init(struct ifreq *ifr, const char *name)
{
    if (name == NULL || strlen(name) == 0 || strlen(name) >= IFNAMSIZ) {
        return -EINVAL;
    }
    memset(ifr, 0, sizeof *ifr);
    strncpy(ifr->ifr_name, name, IFNAMSIZ - 1);
    return 0;
}

/* Runs one interface ioctl, retrying EINTR; 0 or -errno. */
static int
cvx_if_ioctl(int sock, unsigned long request, struct ifreq *ifr)
{
    int rc;

    do {
        rc = ioctl(sock, request, ifr);
    } while (rc < 0 && errno == EINTR);
    return rc < 0 ? -errno : 0;
}

int
cvx_if_get_index(int sock, const char *name, int32_t *index_out)
{
    struct ifreq ifr;
    int rc = cvx_ifreq_init(&ifr, name);

    if (rc == 0 && (rc = cvx_if_ioctl(sock, SIOCGIFINDEX, &ifr)) == 0) {
        *index_out = ifr.ifr_ifindex;
    }
    return rc;
}

int
cvx_if_get_mtu(int sock, const char *name, int32_t *mtu_out)
{
    struct ifreq ifr;
    int rc = cvx_ifreq_init(&ifr, name);

    if (rc == 0 && (rc = cvx_if_ioctl(sock, SIOCGIFMTU, &ifr)) == 0) {
        *mtu_out = ifr.ifr_mtu;
    }
    return rc;
}

int
cvx_if_set_mtu(int sock, const char *name, int32_t mtu)
{
    struct ifreq ifr;
    int rc = cvx_ifreq_init(&ifr, name);

    if (rc == 0) {
        ifr.ifr_mtu = mtu;
        rc = cvx_if_ioctl(sock, SIOCSIFMTU, &ifr);
    }
    return rc;
}

int
cvx_if_get_flags(int sock, const char *name, uint32_t *flags_out)
{
    struct ifreq ifr;
    int rc = cvx_ifreq_init(&ifr, name);

    if (rc == 0 && (rc = cvx_if_ioctl(sock, SIOCGIFFLAGS, &ifr)) == 0) {
        *flags_out = (uint16_t) ifr.ifr_flags;
    }
    return rc;
}

int
cvx_if_set_flags(int sock, const char *name, uint32_t flags)
{
    struct ifreq ifr;
    int rc = cvx_ifreq_init(&ifr, name);

    if (rc == 0) {
        ifr.ifr_flags = (short) flags;
        rc = cvx_if_ioctl(sock, SIOCSIFFLAGS, &ifr);
    }
    return rc;
}

int
cvx_if_get_hwaddr(int sock, const char *name, uint8_t mac_out[6])
{
    struct ifreq ifr;
    int rc = cvx_ifreq_init(&ifr, name);

    if (rc == 0 && (rc = cvx_if_ioctl(sock, SIOCGIFHWADDR, &ifr)) == 0) {
        memcpy(mac_out, ifr.ifr_hwaddr.sa_data, 6);
    }
    return rc;
}

int
cvx_recvmmsg(int fd, cvx_mmsghdr *msgvec, unsigned int vlen, int flags, struct timespec *timeout)
{
    return recvmmsg(fd, (struct mmsghdr *) msgvec, vlen, flags, timeout);
}

int
cvx_sendmmsg(int fd, cvx_mmsghdr *msgvec, unsigned int vlen, int flags)
{
    return sendmmsg(fd, (struct mmsghdr *) msgvec, vlen, flags);
}

int
cvx_cmsg_rxq_ovfl(const struct msghdr *msg, uint32_t *drops_out)
{
    struct cmsghdr *cmsg;

    for (cmsg = CMSG_FIRSTHDR((struct msghdr *) msg); cmsg != NULL;
         cmsg = CMSG_NXTHDR((struct msghdr *) msg, cmsg)) {
        if (cmsg->cmsg_level == SOL_SOCKET && cmsg->cmsg_type == SO_RXQ_OVFL
            && cmsg->cmsg_len >= CMSG_LEN(sizeof(uint32_t))) {
            memcpy(drops_out, CMSG_DATA(cmsg), sizeof(uint32_t));
            return 1;
        }
    }
    return 0;
}

unsigned
cvx_cmsg_put_udp_segment(void *control, uint16_t segment_size)
{
    struct cmsghdr *cmsg = control;

    memset(control, 0, CMSG_SPACE(sizeof segment_size));
    cmsg->cmsg_level = SOL_UDP;
    cmsg->cmsg_type = UDP_SEGMENT;
    cmsg->cmsg_len = CMSG_LEN(sizeof segment_size);
    memcpy(CMSG_DATA(cmsg), &segment_size, sizeof segment_size);
    return CMSG_SPACE(sizeof segment_size);
}

uint32_t
cvx_cmsg_udp_gro(const struct msghdr *msg)
{
    struct cmsghdr *cmsg;
    int size;

    for (cmsg = CMSG_FIRSTHDR((struct msghdr *) msg); cmsg != NULL;
         cmsg = CMSG_NXTHDR((struct msghdr *) msg, cmsg)) {
        if (cmsg->cmsg_level == SOL_UDP && cmsg->cmsg_type == UDP_GRO && cmsg->cmsg_len >= CMSG_LEN(sizeof(int))) {
            memcpy(&size, CMSG_DATA(cmsg), sizeof size);
            return size > 0 ? (uint32_t) size : 0;
        }
    }
    return 0;
}

int
cvx_usable_cpu_count(void)
{
    /* The kernel refuses (EINVAL) a set smaller than its own CPU mask, whose size depends on its build
     * (CONFIG_NR_CPUS), not on the CPUs present: start at glibc's cpu_set_t and double until it fits. */
    for (size_t cpus = CPU_SETSIZE; cpus <= ((size_t) 1 << 22); cpus *= 2) {
        cpu_set_t *set = CPU_ALLOC(cpus);
        if (set == NULL)
            return -ENOMEM;
        size_t size = CPU_ALLOC_SIZE(cpus);
        int count = -1, error = 0;
        if (sched_getaffinity(0, size, set) == 0)
            count = CPU_COUNT_S(size, set);
        else
            error = errno;
        CPU_FREE(set);
        if (count >= 0)
            return count;
        if (error != EINVAL)
            return -error;
    }
    return -EINVAL;
}
#endif /* __linux__ */
