#pragma once
/* The network-namespace and netlink part of the C shim, for VXNetlink: what Swift cannot import or should not
 * do itself. That is struct sockaddr_nl (in <linux/netlink.h>, which the Glibc module does not include), setns()
 * and CLONE_NEWNET (hidden behind _GNU_SOURCE in Swift's Glibc module), the nsfs ioctl NS_GET_NSTYPE (a
 * function-like _IO macro), and a thread that enters a namespace so that the caller's threads never do.
 * Declarations are unguarded so the header parses everywhere; the implementations in cvx_netns.c are Linux only.
 * Every function returns 0 (or a descriptor) on success and -errno on failure, and never leaves errno as its
 * only report.
 *
 * No _GNU_SOURCE guard here, unlike cvx_uring.h and STYLE §2, for the reason cvx_linux.h gives: with
 * `#define _GNU_SOURCE` in this header, VXIO (which imports CVXLinux, CLibURing and Glibc) stopped building with
 * "'fds_bits' from module 'CLibURing' is not present in definition of 'fd_set' in module 'CDispatch'" (tried
 * here: the same header without the define builds). Nothing declared here needs it: only <stdint.h> is
 * included, and cvx_netns.c, which calls setns, gets _GNU_SOURCE from Package.swift and checks it with #error. */

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Opens socket(domain, type | SOCK_CLOEXEC, protocol) inside the network namespace `nsfd` refers to.
 *
 * A socket belongs for its whole life to the network namespace of the thread that created it, whichever thread
 * uses it later. So this function starts a short-lived thread, which calls setns(nsfd, CLONE_NEWNET) (that
 * changes the namespace of that thread only), creates the socket and exits; the caller then uses the returned
 * descriptor from any thread. The caller's threads never change namespace, and no pooled thread is left in a
 * foreign namespace. Needs CAP_SYS_ADMIN (setns). Returns the descriptor or -errno: -EINVAL when `nsfd` is not
 * a network namespace, -EBADF when it is not open, the errno of setns, socket or pthread_create otherwise. */
int cvx_netns_socket(int nsfd, int domain, int type, int protocol);

/* cvx_tap_open (cvx_linux.h) on a short-lived thread inside the network namespace `nsfd` refers to: /dev/net/tun
 * opened there belongs to that namespace, so TUNSETIFF creates TAP `name` directly inside it, with no
 * IFLA_NET_NS_FD move (the move is the slow part of placing an interface: the kernel waits for RCU grace
 * periods in dev_change_net_namespace). The descriptor carries frames from any thread, like any TAP descriptor.
 * Returns the descriptor (O_NONBLOCK | O_CLOEXEC) and the kernel's name in `name_out`, or -errno. */
int cvx_netns_tap_open(int nsfd, const char *name, uint32_t flags, char *name_out);

/* Checks that `fd` refers to a network namespace (ioctl NS_GET_NSTYPE returns CLONE_NEWNET). Returns 0, -EINVAL
 * for another kind of namespace, -ENOTTY when `fd` is not an nsfs file at all (for example an empty file left in
 * /run/netns by an interrupted `ip netns add`), or another -errno. */
int cvx_netns_check(int fd);

/* The network-namespace cookie of the namespace socket `sock` lives in (getsockopt SOL_SOCKET SO_NETNS_COOKIE,
 * Linux 5.14): a 64-bit value that is unique for the life of the system and never reused, unlike the nsfs inode
 * number. Returns 0 and stores the cookie, or -errno (-ENOPROTOOPT on older kernels). */
int cvx_socket_netns_cookie(int sock, uint64_t *cookie_out);

/* Options for cvx_netlink_setup. */
#define CVX_NETLINK_EXT_ACK 0x1u    /* NETLINK_EXT_ACK: errors carry the kernel's message and attribute offset. */
#define CVX_NETLINK_CAP_ACK 0x2u    /* NETLINK_CAP_ACK: errors echo only the request's header, not its payload. */
#define CVX_NETLINK_STRICT_CHK 0x4u /* NETLINK_GET_STRICT_CHK: dump requests are checked strictly. */

/* Prepares a freshly created AF_NETLINK socket: sets the CVX_NETLINK_* options in `options` (a kernel without
 * one of them is not an error: the feature is just absent), a receive timeout of `timeout_ms` milliseconds
 * (SO_RCVTIMEO; 0 means none), binds it with nl_pid 0 so the kernel assigns a unique port id, and reads that
 * port id back with getsockname into `port_id_out`. Replies to our requests carry it in nlmsg_pid. Returns 0
 * or -errno; the caller closes the socket on failure. */
int cvx_netlink_setup(int sock, uint32_t options, uint32_t timeout_ms, uint32_t *port_id_out);

#ifdef __cplusplus
}
#endif
