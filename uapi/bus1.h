/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
/*
 * bus1 - capability-based inter-process communication
 *
 * This header defines the user-space ABI of the bus1 system calls.
 *
 * A peer is a file descriptor returned by bus1_open(2).  It owns nodes, holds
 * handles to nodes, and has one message queue.  All objects a peer refers to
 * are named by 64-bit ids that the kernel assigns and never reuses in the
 * life of that peer.
 *
 * ABI rules shared by every bus1 system call:
 *
 *  - Flags that are not defined here are rejected with EINVAL.
 *  - Argument structures are extensible: the caller passes the structure's
 *    size, the kernel accepts smaller (older) and larger (newer) sizes with
 *    copy_struct_from_user() semantics, and fails with E2BIG when a larger
 *    structure has non-zero bytes the kernel does not know.
 *  - Structures contain only fixed-size fields, naturally aligned, and
 *    pointers are carried as __u64, so 32-bit and 64-bit callers share one
 *    layout and no compat translation is needed.
 *  - A call that fails has no visible effect.
 */
#ifndef _UAPI_LINUX_BUS1_H
#define _UAPI_LINUX_BUS1_H

#include <linux/types.h>

/**
 * DOC: bus1_open() flags
 *
 * int bus1_open(unsigned int flags);
 *
 * Creates a new peer and returns a file descriptor referring to it.  The
 * peer lives until the last file descriptor referring to it is closed.
 *
 * BUS1_OPEN_CLOEXEC:	set close-on-exec on the new file descriptor.
 * BUS1_OPEN_NONBLOCK:	open the peer in non-blocking mode (O_NONBLOCK on
 *			the file); receiving from an empty queue then fails
 *			with EAGAIN instead of waiting.
 *
 * The flag values are the same on every architecture; they are not the
 * O_* values.
 *
 * Errors: EINVAL for an unknown flag, EMFILE/ENFILE when no file descriptor
 * is available, ENOMEM.
 */
#define BUS1_OPEN_CLOEXEC	(1U << 0)
#define BUS1_OPEN_NONBLOCK	(1U << 1)

#endif /* _UAPI_LINUX_BUS1_H */
