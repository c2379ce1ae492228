#pragma once
/* The C shim: only what Swift cannot import (function-like ioctl macros, liburing inline helpers that need
 * filling by hand, CMSG_* macros, headers the Glibc module leaves out) plus layout checks. Declarations are
 * unguarded so the header parses everywhere; the implementations in cvx_linux.c are Linux only. */
/* Unlike our other headers this one does not define _GNU_SOURCE (STYLE §2): it includes libc headers that
 * Swift code also sees through the Glibc module, which is built without it, and <sys/select.h> spells fd_set's
 * member differently under _GNU_SOURCE ("'__fds_bits' from module 'SwiftGlibc' is not present in definition of
 * 'fd_set' in module 'CVXLinux'"). Nothing declared here needs it: struct mmsghdr is mirrored as cvx_mmsghdr,
 * and cvx_linux.c, which calls recvmmsg/sendmmsg, gets _GNU_SOURCE from Package.swift. */
#include <stdint.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <netinet/in.h>
#include <time.h>
#ifdef __linux__
#include <sys/epoll.h>
#include <sys/eventfd.h>
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* Flags for cvx_tap_open, mirrored from <linux/if_tun.h> so callers need not import it. */
#define CVX_TAP_VNET_HDR 0x1u    /* IFF_VNET_HDR: frames carry a struct virtio_net_hdr in front. */
#define CVX_TAP_MULTI_QUEUE 0x2u /* IFF_MULTI_QUEUE: this fd is one queue of a multi-queue TAP. */

/* Opens /dev/net/tun and attaches it to TAP interface `name` (created if absent) with IFF_TAP | IFF_NO_PI
 * plus the CVX_TAP_* flags. On success returns the fd (O_NONBLOCK | O_CLOEXEC) and writes the kernel's final
 * interface name (at most IFNAMSIZ bytes including the NUL) into `name_out` when it is not NULL. On failure
 * returns -errno and leaves no fd open. */
int cvx_tap_open(const char *name, uint32_t flags, char *name_out);

/* TUNSETPERSIST on an open TAP fd: 1 keeps the interface after the last fd closes, 0 lets it go.
 * Returns 0 or -errno. */
int cvx_tap_set_persist(int fd, int persist);

/* TUNSETVNETHDRSZ on an open TAP fd opened with CVX_TAP_VNET_HDR: the size of the virtio-net header in front
 * of every frame (the kernel's default is 10; 12 is struct virtio_net_hdr_mrg_rxbuf). Returns 0 or -errno. */
int cvx_tap_set_vnet_header_size(int fd, int size);

/* Where an open TAP's interface is now (users move TAPs into containers and rename them; the descriptor follows).
 * cvx_tap_get_name: TUNGETIFF, the interface's current name (at most IFNAMSIZ bytes including the NUL).
 * cvx_tap_device_netns: TUNGETDEVNETNS (Linux 5.2+), a new O_CLOEXEC descriptor of the network namespace the
 * interface is in now. Both return 0 / the descriptor, or -errno: -EBADFD once the interface was deleted. */
int cvx_tap_get_name(int fd, char *name_out);
int cvx_tap_device_netns(int fd);

/* Offload flags for cvx_tap_set_offload, mirrored from <linux/if_tun.h> (TUN_F_*): what the TAP tells the kernel
 * it may hand us in one read, behind a virtio-net header. */
#define CVX_TUN_F_CSUM 0x01u /* TUN_F_CSUM: frames may have a partial L4 checksum (VIRTIO_NET_HDR_F_NEEDS_CSUM). */
#define CVX_TUN_F_TSO4 0x02u /* TUN_F_TSO4: TCP over IPv4 up to 64 KiB (VIRTIO_NET_HDR_GSO_TCPV4). */
#define CVX_TUN_F_TSO6 0x04u /* TUN_F_TSO6: TCP over IPv6 up to 64 KiB (VIRTIO_NET_HDR_GSO_TCPV6). */
#define CVX_TUN_F_USO4 0x20u /* TUN_F_USO4: UDP over IPv4 in runs of datagrams (VIRTIO_NET_HDR_GSO_UDP_L4). */
#define CVX_TUN_F_USO6 0x40u /* TUN_F_USO6: the same over IPv6; the kernel takes USO4 and USO6 only together. */
/* TUN_F_UDP_TUNNEL_GSO (Linux 6.17+): GSO bursts encapsulated in UDP, described by the 24-byte header. */
#define CVX_TUN_F_UDP_TUNNEL_GSO 0x80u
/* TUN_F_UDP_TUNNEL_GSO_CSUM: the outer UDP checksum of such bursts may be partial too. */
#define CVX_TUN_F_UDP_TUNNEL_GSO_CSUM 0x100u

/* TUNSETOFFLOAD on an open TAP fd opened with CVX_TAP_VNET_HDR: `flags` is a set of CVX_TUN_F_*; TSO needs CSUM.
 * The kernel turns the matching netdev features on (ethtool -k shows them). Returns 0 or -errno (EINVAL for
 * flags the kernel does not know). */
int cvx_tap_set_offload(int fd, unsigned int flags);

/* Interface ioctls by name (struct ifreq's members are macros over unions, which Swift cannot name).
 * `sock` is any AF_INET socket of the network namespace the interface lives in. All return 0 or -errno. */
int cvx_if_get_index(int sock, const char *name, int32_t *index_out);   /* SIOCGIFINDEX */
int cvx_if_get_mtu(int sock, const char *name, int32_t *mtu_out);       /* SIOCGIFMTU */
int cvx_if_set_mtu(int sock, const char *name, int32_t mtu);            /* SIOCSIFMTU */
int cvx_if_get_flags(int sock, const char *name, uint32_t *flags_out);  /* SIOCGIFFLAGS */
int cvx_if_set_flags(int sock, const char *name, uint32_t flags);       /* SIOCSIFFLAGS */
int cvx_if_get_hwaddr(int sock, const char *name, uint8_t mac_out[6]);  /* SIOCGIFHWADDR */

/* IFF_UP, for cvx_if_get_flags / cvx_if_set_flags. */
#define CVX_IFF_UP 0x1u

/* SO_RXQ_OVFL (asm-generic/socket.h): with it on, every datagram read after a kernel receive-queue drop
 * carries a SOL_SOCKET control message holding the socket's cumulative drop count as a uint32_t. */
#define CVX_SO_RXQ_OVFL 40
/* SO_RCVBUFFORCE / SO_SNDBUFFORCE: like SO_RCVBUF / SO_SNDBUF but past rmem_max/wmem_max (CAP_NET_ADMIN). */
#define CVX_SO_RCVBUFFORCE 33
#define CVX_SO_SNDBUFFORCE 32

/* Bytes of control buffer one datagram needs for the SO_RXQ_OVFL message: CMSG_SPACE(sizeof(uint32_t)). */
#define CVX_RXQ_OVFL_CONTROL_SPACE 24

/* Mirror of struct mmsghdr, which the Glibc module hides behind __USE_GNU; cvx_linux.c asserts the layout. */
typedef struct cvx_mmsghdr {
    struct msghdr msg_hdr; /* The message, as for recvmsg/sendmsg. */
    unsigned int msg_len;  /* Bytes received or sent, filled in by the kernel. */
} cvx_mmsghdr;

/* recvmmsg(2) and sendmmsg(2). Return what the syscall returns; errno is set on -1. */
int cvx_recvmmsg(int fd, cvx_mmsghdr *msgvec, unsigned int vlen, int flags, struct timespec *timeout);
int cvx_sendmmsg(int fd, cvx_mmsghdr *msgvec, unsigned int vlen, int flags);

/* UDP GSO and GRO (<linux/udp.h>, which the Glibc module does not export): SOL_UDP is IPPROTO_UDP (17).
 * UDP_SEGMENT on a send (a uint16_t cmsg, or the socket option) makes the kernel cut the payload into datagrams of
 * that many bytes (the last may be shorter); UDP_GRO on a socket lets it hand over a run of same-flow, same-size
 * datagrams as one read, with a cmsg (an int) giving the size each was. UDP_MAX_SEGMENTS is the most datagrams one
 * UDP_SEGMENT send may make (64 until Linux 6.9, 128 after; 64 is safe on both). */
#define CVX_SOL_UDP 17
#define CVX_UDP_SEGMENT 103
#define CVX_UDP_GRO 104
#define CVX_UDP_MAX_SEGMENTS 64
/* IP_MTU_DISCOVER values (<linux/in.h>): DONT leaves DF clear and lets the kernel fragment. */
#define CVX_IP_PMTUDISC_DONT 0

/* Control space of one tunnel datagram: SO_RXQ_OVFL (uint32_t) + UDP_GRO (int) on receive, UDP_SEGMENT
 * (uint16_t) on send. CMSG_SPACE of each is 24. */
#define CVX_TUNNEL_CONTROL_SPACE 48
/* Control space of a UDP_SEGMENT cmsg alone: CMSG_SPACE(sizeof(uint16_t)). */
#define CVX_UDP_SEGMENT_CONTROL_SPACE 24

/* Writes one SOL_UDP/UDP_SEGMENT cmsg carrying `segment_size` at `control`, which must hold
 * CVX_UDP_SEGMENT_CONTROL_SPACE bytes (8-byte aligned). Returns the bytes to put in msg_controllen. */
unsigned cvx_cmsg_put_udp_segment(void *control, uint16_t segment_size);

/* Walks the control messages of `msg` for SOL_UDP/UDP_GRO. Returns the segment size (the size of every datagram
 * of a GRO read but the last), or 0 when the read is a single datagram. */
uint32_t cvx_cmsg_udp_gro(const struct msghdr *msg);

/* Walks the control messages of `msg` (CMSG_FIRSTHDR/CMSG_NXTHDR are macros) for SOL_SOCKET/SO_RXQ_OVFL.
 * Returns 1 and stores the cumulative drop count when present, 0 otherwise. */
int cvx_cmsg_rxq_ovfl(const struct msghdr *msg, uint32_t *drops_out);

/* The number of CPUs the calling thread may run on (sched_getaffinity; CPU_COUNT is a macro), which is what a
 * taskset, a cgroup cpuset or systemd's CPUAffinity= leaves a process, not the machine's online CPUs. Returns
 * the count, or -errno. */
int cvx_usable_cpu_count(void);

#ifdef __cplusplus
}
#endif
