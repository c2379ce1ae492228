#ifndef _GNU_SOURCE
#error "CVXLinux must be built with _GNU_SOURCE (Package.swift defines it)"
#endif

#include "cvx_netns.h"
#include "cvx_linux.h"

#ifdef __linux__
#include <errno.h>
#include <linux/if.h>
#include <linux/if_addr.h>
#include <linux/if_link.h>
#include <linux/netlink.h>
#include <linux/nsfs.h>
#include <linux/rtnetlink.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stddef.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

/* Sources/VXNetlink encodes and decodes these structures and constants by hand, in pure Swift (see
 * NetlinkConstants.swift). The values are written there; a set of kernel headers that disagrees must not build. */
_Static_assert(sizeof(struct nlmsghdr) == 16, "nlmsghdr");
_Static_assert(sizeof(struct nlmsgerr) == 20, "nlmsgerr: error + the echoed nlmsghdr");
_Static_assert(sizeof(struct ifinfomsg) == 16, "ifinfomsg");
_Static_assert(sizeof(struct ifaddrmsg) == 8, "ifaddrmsg");
_Static_assert(sizeof(struct rtmsg) == 12, "rtmsg");
_Static_assert(sizeof(struct rtattr) == 4 && sizeof(struct nlattr) == 4, "rtattr/nlattr");
_Static_assert(NLMSG_ALIGNTO == 4 && RTA_ALIGNTO == 4 && NLA_ALIGNTO == 4, "4-byte alignment");
_Static_assert(NLMSG_NOOP == 1 && NLMSG_ERROR == 2 && NLMSG_DONE == 3 && NLMSG_OVERRUN == 4, "NLMSG_*");
_Static_assert(NLM_F_REQUEST == 0x1 && NLM_F_MULTI == 0x2 && NLM_F_ACK == 0x4 && NLM_F_DUMP_INTR == 0x10, "NLM_F");
_Static_assert(NLM_F_DUMP == 0x300 && NLM_F_REPLACE == 0x100 && NLM_F_EXCL == 0x200 && NLM_F_CREATE == 0x400,
               "NLM_F_DUMP/REPLACE/EXCL/CREATE");
_Static_assert(NLM_F_CAPPED == 0x100 && NLM_F_ACK_TLVS == 0x200, "NLM_F_CAPPED/ACK_TLVS");
_Static_assert(NLMSGERR_ATTR_MSG == 1 && NLMSGERR_ATTR_OFFS == 2, "NLMSGERR_ATTR_*");
_Static_assert(RTM_NEWLINK == 16 && RTM_DELLINK == 17 && RTM_GETLINK == 18, "RTM_*LINK");
_Static_assert(RTM_NEWADDR == 20 && RTM_DELADDR == 21 && RTM_GETADDR == 22, "RTM_*ADDR");
_Static_assert(RTM_NEWROUTE == 24 && RTM_DELROUTE == 25 && RTM_GETROUTE == 26, "RTM_*ROUTE");
_Static_assert(IFLA_ADDRESS == 1 && IFLA_IFNAME == 3 && IFLA_MTU == 4 && IFLA_OPERSTATE == 16, "IFLA_*");
_Static_assert(IFLA_NET_NS_PID == 19 && IFLA_NET_NS_FD == 28 && IFLA_EXT_MASK == 29, "IFLA_NET_NS_*");
_Static_assert(IFA_ADDRESS == 1 && IFA_LOCAL == 2 && IFA_LABEL == 3 && IFA_BROADCAST == 4, "IFA_*");
_Static_assert(RTA_DST == 1 && RTA_OIF == 4 && RTA_GATEWAY == 5 && RTA_TABLE == 15, "RTA_*");
_Static_assert(RT_TABLE_MAIN == 254 && RTPROT_BOOT == 3 && RT_SCOPE_UNIVERSE == 0 && RTN_UNICAST == 1, "rtmsg");
_Static_assert(NETLINK_ROUTE == 0 && RTEXT_FILTER_SKIP_STATS == 8, "NETLINK_ROUTE, RTEXT_FILTER_SKIP_STATS");
_Static_assert(IFF_UP == 0x1 && IFF_RUNNING == 0x40 && IFF_LOWER_UP == 0x10000, "IFF_*");

/* What the namespace thread is given and hands back. Lives on the caller's stack: the caller joins the thread
 * before returning, so the pointer the thread receives never outlives it. */
struct cvx_netns_job {
    int nsfd;             /* The namespace to enter. */
    int kind;             /* CVX_NETNS_JOB_SOCKET or CVX_NETNS_JOB_TAP. */
    int domain;           /* socket() arguments (CVX_NETNS_JOB_SOCKET). */
    int type;
    int protocol;
    const char *name;     /* cvx_tap_open() arguments (CVX_NETNS_JOB_TAP). */
    uint32_t flags;
    char *name_out;
    int result;           /* The new descriptor, or -errno. */
};

enum { CVX_NETNS_JOB_SOCKET = 1, CVX_NETNS_JOB_TAP = 2 };

static void *
cvx_netns_thread(void *arg)
{
    struct cvx_netns_job *job = arg;

    /* Only this thread changes namespace, and it exits right after, so nothing else ever runs in it. */
    if (setns(job->nsfd, CLONE_NEWNET) != 0) {
        job->result = -errno;
        return NULL;
    }
    if (job->kind == CVX_NETNS_JOB_TAP) {
        /* /dev/net/tun opened here belongs to this namespace, so TUNSETIFF creates the interface in it. */
        job->result = cvx_tap_open(job->name, job->flags, job->name_out);
        return NULL;
    }
    job->result = socket(job->domain, job->type | SOCK_CLOEXEC, job->protocol);
    if (job->result < 0) {
        job->result = -errno;
    }
    return NULL;
}

/* Runs `job` on a short-lived thread inside job->nsfd and returns its result. */
static int
cvx_netns_run(struct cvx_netns_job *job)
{
    pthread_attr_t attr;
    sigset_t all, saved;
    pthread_t thread;
    int rc;

    if (job->nsfd < 0) {
        return -EBADF;
    }
    rc = cvx_netns_check(job->nsfd);
    if (rc < 0) {
        return rc;
    }
    /* A small stack: the thread makes a few syscalls. Signals stay blocked in it (it inherits the mask set here),
     * so a process-directed signal is never delivered on a thread that is about to vanish. */
    if ((rc = pthread_attr_init(&attr)) != 0) {
        return -rc;
    }
    pthread_attr_setstacksize(&attr, 64 * 1024);
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &saved);
    rc = pthread_create(&thread, &attr, cvx_netns_thread, job);
    pthread_sigmask(SIG_SETMASK, &saved, NULL);
    pthread_attr_destroy(&attr);
    if (rc != 0) {
        return -rc;
    }
    pthread_join(thread, NULL);
    return job->result;
}

int
cvx_netns_socket(int nsfd, int domain, int type, int protocol)
{
    struct cvx_netns_job job = { .nsfd = nsfd, .kind = CVX_NETNS_JOB_SOCKET, .domain = domain, .type = type,
                                 .protocol = protocol, .result = -EINVAL };

    return cvx_netns_run(&job);
}

int
cvx_netns_tap_open(int nsfd, const char *name, uint32_t flags, char *name_out)
{
    struct cvx_netns_job job = { .nsfd = nsfd, .kind = CVX_NETNS_JOB_TAP, .name = name, .flags = flags,
                                 .name_out = name_out, .result = -EINVAL };

    return cvx_netns_run(&job);
}

int
cvx_netns_check(int fd)
{
    int type = ioctl(fd, NS_GET_NSTYPE);

    if (type < 0) {
        return -errno;
    }
    return type == CLONE_NEWNET ? 0 : -EINVAL;
}

int
cvx_socket_netns_cookie(int sock, uint64_t *cookie_out)
{
    uint64_t cookie = 0;
    socklen_t len = sizeof cookie;

    if (getsockopt(sock, SOL_SOCKET, SO_NETNS_COOKIE, &cookie, &len) != 0) {
        return -errno;
    }
    if (len != sizeof cookie) {
        return -EPROTO;
    }
    *cookie_out = cookie;
    return 0;
}

int
cvx_netlink_setup(int sock, uint32_t options, uint32_t timeout_ms, uint32_t *port_id_out)
{
    struct sockaddr_nl addr;
    socklen_t len = sizeof addr;
    int one = 1;

    /* Each option is an improvement, not a requirement: a kernel that lacks one (ENOPROTOOPT) still works. */
    if ((options & CVX_NETLINK_EXT_ACK) && setsockopt(sock, SOL_NETLINK, NETLINK_EXT_ACK, &one, sizeof one) != 0
        && errno != ENOPROTOOPT) {
        return -errno;
    }
    if ((options & CVX_NETLINK_CAP_ACK) && setsockopt(sock, SOL_NETLINK, NETLINK_CAP_ACK, &one, sizeof one) != 0
        && errno != ENOPROTOOPT) {
        return -errno;
    }
    if ((options & CVX_NETLINK_STRICT_CHK)
        && setsockopt(sock, SOL_NETLINK, NETLINK_GET_STRICT_CHK, &one, sizeof one) != 0 && errno != ENOPROTOOPT) {
        return -errno;
    }
    if (timeout_ms > 0) {
        struct timeval tv = { .tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000 };
        if (setsockopt(sock, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) != 0) {
            return -errno;
        }
    }
    memset(&addr, 0, sizeof addr);
    addr.nl_family = AF_NETLINK;
    addr.nl_pid = 0; /* Let the kernel pick a unique port id: two sockets in one process must not share one. */
    if (bind(sock, (struct sockaddr *)&addr, sizeof addr) != 0) {
        return -errno;
    }
    memset(&addr, 0, sizeof addr);
    if (getsockname(sock, (struct sockaddr *)&addr, &len) != 0) {
        return -errno;
    }
    if (len != sizeof addr || addr.nl_family != AF_NETLINK) {
        return -EPROTO;
    }
    *port_id_out = addr.nl_pid;
    return 0;
}

#endif /* __linux__ */
