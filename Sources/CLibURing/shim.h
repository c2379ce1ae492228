#pragma once
/* liburing.h defines _XOPEN_SOURCE itself; without _GNU_SOURCE first, fd_set comes out differently here and in
 * CLibPcap and the two modules refuse to coexist (STYLE.md section 2). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif
/* swift-system's CSystem module includes the kernel's <linux/io_uring.h>; liburing ships its own copy of that
 * header under the same include guard but with different contents, and clang refuses two modules that disagree
 * on `struct io_uring_sqe`. Including the kernel's header first makes liburing use it too. */
#include <linux/io_uring.h>
#include <liburing.h>
