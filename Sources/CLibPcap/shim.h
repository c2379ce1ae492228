#pragma once
/* glibc's feature set pinned first, as Swift's Glibc module has it: see CLibURing/shim.h for why no C header that
 * Swift imports may define _GNU_SOURCE. */
#include <features.h>
#include <pcap/pcap.h>
