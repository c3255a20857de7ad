// SPDX-License-Identifier: GPL-2.0
/*
 * bus1 system call entry points.
 *
 * The system calls are defined in C so that SYSCALL_DEFINE provides the
 * syscall metadata (tracepoints with argument names, audit, seccomp
 * notification of the right prototype); all of the work happens in Rust.
 *
 * Every argument is a pointer or at most 32 bits wide (ids are passed by
 * address), so 32-bit and 64-bit callers use the same entry points and no
 * compat wrappers are needed.
 */

#include <linux/syscalls.h>
#include <uapi/linux/bus1.h>

#include "bus1.h"

SYSCALL_DEFINE1(bus1_open, unsigned int, flags)
{
	return bus1_sys_open(flags);
}

SYSCALL_DEFINE3(bus1_node_create, int, peer, __u64 __user *, id,
		unsigned int, flags)
{
	return bus1_sys_node_create(peer, id, flags);
}

SYSCALL_DEFINE5(bus1_handle_transfer, int, src_peer,
		const __u64 __user *, src_id, int, dst_peer,
		__u64 __user *, dst_id, unsigned int, flags)
{
	return bus1_sys_handle_transfer(src_peer, src_id, dst_peer, dst_id,
					flags);
}

SYSCALL_DEFINE3(bus1_handle_release, int, peer, const __u64 __user *, id,
		unsigned int, flags)
{
	return bus1_sys_handle_release(peer, id, flags);
}

SYSCALL_DEFINE4(bus1_nodes_destroy, int, peer, const __u64 __user *, ids,
		unsigned int, n_ids, unsigned int, flags)
{
	return bus1_sys_nodes_destroy(peer, ids, n_ids, flags);
}

SYSCALL_DEFINE6(bus1_send, int, peer, const __u64 __user *, destinations,
		unsigned int, n_destinations,
		const struct bus1_message __user *, message, size_t, size,
		unsigned int, flags)
{
	return bus1_sys_send(peer, destinations, n_destinations, message, size,
			     flags);
}

SYSCALL_DEFINE4(bus1_recv, int, peer, struct bus1_recv __user *, args,
		size_t, size, unsigned int, flags)
{
	return bus1_sys_recv(peer, args, size, flags);
}

SYSCALL_DEFINE2(bus1_peer_reset, int, peer, unsigned int, flags)
{
	return bus1_sys_peer_reset(peer, flags);
}
