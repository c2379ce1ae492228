#ifndef _GNU_SOURCE
#error "CVXLinux must be built with _GNU_SOURCE (Package.swift defines it)"
#endif

#include "cvx_uring.h"

#ifdef __linux__
#include <errno.h>
#include <liburing.h>
#include <netinet/udp.h>
#include <netinet/in.h>
#include <stddef.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

/* Layout checks: the Swift side computes buffer offsets from these sizes. */
_Static_assert(sizeof(struct io_uring_buf) == 16, "io_uring_buf must be 16 bytes");
_Static_assert(sizeof(struct io_uring_recvmsg_out) == 16, "io_uring_recvmsg_out must be 16 bytes");
_Static_assert(sizeof(struct sockaddr_in6) <= CVX_URING_RECVMSG_NAME_SPACE, "recvmsg name space must hold a sockaddr_in6");
_Static_assert(CVX_URING_RECVMSG_NAME_SPACE % 16 == 0, "recvmsg name space must keep the payload 16-byte aligned");
#ifdef IORING_OP_READ_MULTISHOT
_Static_assert(IORING_OP_READ_MULTISHOT == CVX_IORING_OP_READ_MULTISHOT, "READ_MULTISHOT opcode changed");
#endif

int
cvx_uring_buf_ring_create(struct io_uring *ring, unsigned entries, unsigned bgid, struct io_uring_buf_ring **out)
{
    struct io_uring_buf_reg reg;
    size_t size = (size_t)entries * sizeof(struct io_uring_buf);
    void *mem;
    int ret;

    if (ring == NULL || out == NULL || entries == 0 || entries > 32768 || (entries & (entries - 1)) != 0) {
        return -EINVAL;
    }
    /* The kernel wants the ring page aligned; an anonymous mapping is, and is zeroed. */
    mem = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
    if (mem == MAP_FAILED) {
        return -errno;
    }
    memset(&reg, 0, sizeof reg);
    reg.ring_addr = (unsigned long)(uintptr_t)mem;
    reg.ring_entries = entries;
    reg.bgid = (unsigned short)bgid;
    ret = io_uring_register_buf_ring(ring, &reg, 0);
    if (ret < 0) {
        munmap(mem, size);
        return ret;
    }
    io_uring_buf_ring_init((struct io_uring_buf_ring *)mem);
    *out = (struct io_uring_buf_ring *)mem;
    return 0;
}

void
cvx_uring_buf_ring_destroy(struct io_uring *ring, struct io_uring_buf_ring *br, unsigned entries, unsigned bgid)
{
    if (br == NULL) {
        return;
    }
    if (ring != NULL) {
        (void)io_uring_unregister_buf_ring(ring, (int)bgid);
    }
    munmap(br, (size_t)entries * sizeof(struct io_uring_buf));
}

void
cvx_uring_buf_ring_add(struct io_uring_buf_ring *br, void *addr, unsigned len, unsigned short bid, unsigned mask,
                       unsigned offset)
{
    io_uring_buf_ring_add(br, addr, len, bid, (int)mask, (int)offset);
}

void
cvx_uring_buf_ring_publish(struct io_uring_buf_ring *br, unsigned count)
{
    io_uring_buf_ring_advance(br, (int)count);
}

void
cvx_uring_prep_recvmsg_multishot(struct io_uring_sqe *sqe, int fd, struct msghdr *msg, unsigned bgid)
{
    io_uring_prep_recvmsg_multishot(sqe, fd, msg, 0);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = (unsigned short)bgid;
}

void
cvx_uring_prep_read_multishot(struct io_uring_sqe *sqe, int fd, unsigned bgid)
{
    /* Offset 0: the files this is used on (TAP, eventfd) are not seekable, and the kernel ignores it. */
    io_uring_prep_rw((int)CVX_IORING_OP_READ_MULTISHOT, sqe, fd, NULL, 0, 0);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = (unsigned short)bgid;
}

void
cvx_uring_prep_read_select(struct io_uring_sqe *sqe, int fd, unsigned len, unsigned bgid)
{
    io_uring_prep_read(sqe, fd, NULL, len, 0);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = (unsigned short)bgid;
}

int
cvx_uring_recvmsg_parse(void *buf, int res, struct msghdr *msg, uint32_t *payload_offset, uint32_t *payload_length,
                        uint8_t sender[16], uint32_t *segment_size)
{
    struct io_uring_recvmsg_out *o = io_uring_recvmsg_validate(buf, res, msg);
    unsigned char *payload;
    struct sockaddr_in sin;
    struct sockaddr_in6 sin6;

    if (o == NULL) {
        return -EINVAL;
    }
    if (o->flags & MSG_TRUNC) {
        return -EMSGSIZE;
    }
    payload = io_uring_recvmsg_payload(o, msg);
    *payload_offset = (uint32_t)(payload - (unsigned char *)buf);
    *payload_length = io_uring_recvmsg_payload_length(o, res, msg);
    /* Until a name says otherwise: 0.0.0.0, IPv4-mapped (UnderlayAddress.any), as the epoll engine reports too. */
    memset(sender, 0, 16);
    sender[10] = 0xff;
    sender[11] = 0xff;
    *segment_size = 0;
    if (msg->msg_controllen > 0) {
        struct cmsghdr *cmsg;
        int size;

        for (cmsg = io_uring_recvmsg_cmsg_firsthdr(o, msg); cmsg != NULL;
             cmsg = io_uring_recvmsg_cmsg_nexthdr(o, msg, cmsg)) {
            if (cmsg->cmsg_level == SOL_UDP && cmsg->cmsg_type == UDP_GRO && cmsg->cmsg_len >= CMSG_LEN(sizeof size)) {
                memcpy(&size, CMSG_DATA(cmsg), sizeof size);
                *segment_size = size > 0 ? (uint32_t) size : 0;
            }
        }
    }
    /* Control data cut short may have lost UDP_GRO: the read could hold several datagrams that nothing can split
     * again, so it is refused like a truncated payload rather than passed on as one. A template without control
     * space (the raw GRE sockets: no GRO) is cut short by every SO_RXQ_OVFL cmsg, which the kernel adds to each
     * datagram once the socket has dropped one; its payload is whole. */
    if ((o->flags & MSG_CTRUNC) && msg->msg_controllen > 0 && *segment_size == 0) {
        return -EMSGSIZE;
    }
    if (o->namelen >= sizeof sin6 && msg->msg_namelen >= sizeof sin6) {
        memcpy(&sin6, io_uring_recvmsg_name(o), sizeof sin6);
        if (sin6.sin6_family == AF_INET6) {
            memcpy(sender, &sin6.sin6_addr, 16);
            return 0;
        }
    }
    if (o->namelen >= sizeof sin && msg->msg_namelen >= sizeof sin) {
        memcpy(&sin, io_uring_recvmsg_name(o), sizeof sin);
        if (sin.sin_family == AF_INET) {
            memcpy(sender + 12, &sin.sin_addr, 4);
        }
    }
    return 0;
}

int
cvx_uring_enable_rings(struct io_uring *ring)
{
    long ret = syscall(__NR_io_uring_register, ring->ring_fd, IORING_REGISTER_ENABLE_RINGS, NULL, 0);

    return ret < 0 ? -errno : 0;
}

int
cvx_uring_eventfd(void)
{
    int fd = eventfd(0, EFD_CLOEXEC);

    return fd < 0 ? -errno : fd;
}

#endif /* __linux__ */
