#pragma once
/* Why there is no `#define _GNU_SOURCE` here, unlike what STYLE.md section 2 suggests.
 *
 * Swift's own Glibc module is built with glibc's default feature set, where `fd_set` has a member `__fds_bits`.
 * A header that defines _GNU_SOURCE (or _XOPEN_SOURCE, which liburing.h does for itself) before glibc's
 * <features.h> is first processed gets `fds_bits` instead. sys/select.h is included textually into each Clang
 * module, so two modules end up with two different `fd_set`s, and any Swift module that imports both fails with
 * "'fds_bits' from module 'CLibURing' is not present in definition of 'fd_set' in module 'CVXLinux'" (seen on a
 * clean build with Swift 6.3.1; a warm module cache can hide it).
 *
 * So every C header Swift imports pins glibc's features first, exactly as Swift's Glibc module has them:
 * including <features.h> before anything else makes liburing.h's later `#define _XOPEN_SOURCE 500` and
 * `#define _GNU_SOURCE` come too late to change anything. liburing.h needs nothing from those macros here
 * (cpu_set_t comes from <bits/cpu-set.h>, which <sched.h> includes unconditionally). The C sources of CVXLinux,
 * which do need GNU extensions (recvmmsg, setns), are compiled with _GNU_SOURCE from Package.swift.
 *
 * swift-system's CSystem module includes the kernel's <linux/io_uring.h>; liburing ships its own copy of that
 * header under the same include guard but with different contents, and clang refuses two modules that disagree on
 * `struct io_uring_sqe`. Including the kernel's header first makes liburing use it too. */
#include <features.h>
#include <linux/io_uring.h>
#include <liburing.h>
