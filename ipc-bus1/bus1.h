/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Entry points of the bus1 Rust code, called from the system call glue in
 * syscalls.c.  Also included by rust/bindings/bindings_helper.h so that
 * #[export] checks the Rust definitions against these declarations, and
 * so that the Rust code sees the kernel functions that tell which files
 * may not be passed in a message (io_uring.h, af_unix.h) and the
 * tracepoints it emits (trace/events/bus1.h).
 */
#ifndef _IPC_BUS1_BUS1_H
#define _IPC_BUS1_BUS1_H

#include <linux/compiler_types.h>
#include <linux/io_uring.h>
#include <linux/types.h>
#include <net/af_unix.h>
#include <trace/events/bus1.h>

long bus1_sys_open(unsigned int flags);
long bus1_sys_node_create(int peer, void __user *id, unsigned int flags);
long bus1_sys_handle_transfer(int src_peer, const void __user *src_id,
			      int dst_peer, void __user *dst_id,
			      unsigned int flags);
long bus1_sys_handle_release(int peer, const void __user *id,
			     unsigned int flags);
long bus1_sys_nodes_destroy(int peer, const void __user *ids,
			    unsigned int n_ids, unsigned int flags);
long bus1_sys_send(int peer, const void __user *destinations,
		   unsigned int n_destinations, const void __user *message,
		   size_t size, unsigned int flags);
long bus1_sys_recv(int peer, void __user *args, size_t size,
		   unsigned int flags);
long bus1_sys_peer_reset(int peer, unsigned int flags);

#endif /* _IPC_BUS1_BUS1_H */
