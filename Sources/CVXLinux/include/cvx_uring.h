#pragma once
/* The io_uring part of the C shim: what Swift cannot do with liburing 2.3 alone. That is SQE fields inside
 * anonymous unions (buf_group), an opcode liburing 2.3 has no helper or constant for (IORING_OP_READ_MULTISHOT),
 * the provided-buffer ring's mmap + registration (liburing 2.4's io_uring_setup_buf_ring does not exist in
 * 2.3), and parsing a multishot recvmsg buffer. Declarations are unguarded so the header parses everywhere; the
 * implementations in cvx_uring.c are Linux only. All functions return 0 (or a count) on success and -errno on
 * failure, like liburing; they never set errno. */
/* No _GNU_SOURCE here: see CLibURing/shim.h (the .c files get it from Package.swift). */
#include <features.h>

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

struct io_uring;
struct io_uring_sqe;
struct io_uring_buf_ring;
struct msghdr;

/* IORING_OP_READ_MULTISHOT (Linux 6.7, uapi enum io_uring_op value 49). Debian bookworm's <linux/io_uring.h>
 * stops at IORING_OP_SENDMSG_ZC (48), so the value is written here and checked against the kernel at run time
 * with io_uring_get_probe. */
#define CVX_IORING_OP_READ_MULTISHOT 49u

/* The name space a multishot recvmsg on a UDP tunnel socket reserves in every buffer: room for a struct
 * sockaddr_in6 (28), rounded up to keep the payload 16-byte aligned, so IPv4 and IPv6 sockets share one layout.
 * Raw IPv6 GRE sockets use it too; raw IPv4 GRE sockets ask for a struct sockaddr_in only. */
#define CVX_URING_RECVMSG_NAME_SPACE 32u

/* Allocates (mmap, page aligned) and registers a provided-buffer ring of `entries` slots (a power of two,
 * at most 32768) as buffer group `bgid` of `ring`, and initializes its tail. On success stores the ring in
 * `*out` and returns 0; on failure returns -errno and leaves nothing mapped or registered.
 * Wraps mmap + io_uring_register_buf_ring + io_uring_buf_ring_init. */
int cvx_uring_buf_ring_create(struct io_uring *ring, unsigned entries, unsigned bgid, struct io_uring_buf_ring **out);

/* Unregisters buffer group `bgid` (ignoring errors: the ring may already be gone) and unmaps `br`, which
 * cvx_uring_buf_ring_create made with `entries` slots. Pass ring = NULL to only unmap. */
void cvx_uring_buf_ring_destroy(struct io_uring *ring, struct io_uring_buf_ring *br, unsigned entries, unsigned bgid);

/* Writes buffer `addr`/`len` with id `bid` into slot tail + `offset` of `br` (`mask` = entries - 1). The
 * kernel sees it only after cvx_uring_buf_ring_publish. Wraps io_uring_buf_ring_add. */
void cvx_uring_buf_ring_add(struct io_uring_buf_ring *br, void *addr, unsigned len, unsigned short bid,
                            unsigned mask, unsigned offset);

/* Makes `count` added buffers visible to the kernel (a store-release of the tail).
 * Wraps io_uring_buf_ring_advance. */
void cvx_uring_buf_ring_publish(struct io_uring_buf_ring *br, unsigned count);

/* A multishot recvmsg on socket `fd` that picks its buffers from group `bgid`. `msg` only gives the name and
 * control lengths; the kernel copies it when the request is issued. Each CQE's buffer starts with a struct
 * io_uring_recvmsg_out. Wraps io_uring_prep_recvmsg_multishot + IOSQE_BUFFER_SELECT. */
void cvx_uring_prep_recvmsg_multishot(struct io_uring_sqe *sqe, int fd, struct msghdr *msg, unsigned bgid);

/* A multishot read on pollable `fd` (IORING_OP_READ_MULTISHOT, Linux 6.7+) with buffers from group `bgid`:
 * one CQE per read, each with IORING_CQE_F_MORE while the request stays armed. liburing 2.3 has no helper,
 * so the SQE is filled here as liburing 2.5's io_uring_prep_read_multishot does (addr = 0, len = 0). */
void cvx_uring_prep_read_multishot(struct io_uring_sqe *sqe, int fd, unsigned bgid);

/* A single-shot read of at most `len` bytes from `fd` into a buffer from group `bgid`: the fallback when
 * multishot read is not supported. Wraps io_uring_prep_read + IOSQE_BUFFER_SELECT. */
void cvx_uring_prep_read_select(struct io_uring_sqe *sqe, int fd, unsigned len, unsigned bgid);

/* Splits a buffer filled by cvx_uring_prep_recvmsg_multishot (`res` bytes at `buf`, `msg` as submitted):
 * stores the payload's offset from `buf` and its length, the sender's address as 16 bytes in network byte order
 * (an IPv6 address, or an IPv4 one in its IPv4-mapped form ::ffff:a.b.c.d; ::ffff:0.0.0.0 when the name is
 * neither AF_INET nor AF_INET6), and the UDP_GRO segment size from the control data (0 when the read is one
 * datagram or `msg` asked for no control data). Returns 0, -EINVAL when the buffer is shorter than its header,
 * or -EMSGSIZE when the payload was truncated (MSG_TRUNC: the datagram did not fit the buffer) or the control data
 * was (MSG_CTRUNC) without a UDP_GRO message in what remained: such a read cannot be split into its datagrams. */
int cvx_uring_recvmsg_parse(void *buf, int res, struct msghdr *msg, uint32_t *payload_offset,
                            uint32_t *payload_length, uint8_t sender[16], uint32_t *segment_size);

/* Enables a ring created with IORING_SETUP_R_DISABLED; with IORING_SETUP_SINGLE_ISSUER the calling thread
 * becomes the ring's one submitter. liburing 2.3 declares io_uring_enable_rings but its shared library does not
 * export it (the symbol is missing from 2.3's liburing.map), so this issues io_uring_register(2) with
 * IORING_REGISTER_ENABLE_RINGS itself. Returns 0 or -errno. */
int cvx_uring_enable_rings(struct io_uring *ring);

/* An eventfd (counter 0, blocking, close-on-exec) for the engine's waker: Glibc's Swift module does not
 * export <sys/eventfd.h>. Returns the fd or -errno. Wraps eventfd(0, EFD_CLOEXEC). */
int cvx_uring_eventfd(void);

#ifdef __cplusplus
}
#endif
