// SPDX-License-Identifier: GPL-2.0
/*
 * bus1 system call entry points.
 *
 * The system calls are defined in C so that SYSCALL_DEFINE provides the
 * syscall metadata (tracepoints with argument names, audit, seccomp
 * notification of the right prototype); all of the work happens in Rust.
 */

#include <linux/syscalls.h>

#include "bus1.h"

SYSCALL_DEFINE1(bus1_open, unsigned int, flags)
{
	return bus1_sys_open(flags);
}
