#pragma once
/* liburing.h defines _XOPEN_SOURCE itself; without _GNU_SOURCE first, fd_set comes out differently here and in
 * CLibPcap and the two modules refuse to coexist (STYLE.md section 2). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif
#include <liburing.h>
