#pragma once
/* The C shim: only what Swift cannot import (function-like ioctl macros, liburing inline helpers that need
 * filling by hand) plus layout checks. Declarations are unguarded so the header parses everywhere; the
 * implementations in cvx_linux.c are Linux only. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <stdint.h>

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

#ifdef __cplusplus
}
#endif
