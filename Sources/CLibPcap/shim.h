#pragma once
/* See CLibURing/shim.h: every C header of ours starts with this guard. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif
#include <pcap/pcap.h>
