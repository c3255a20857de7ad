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
 *    layout and no compat translation is needed.  No system call takes a
 *    64-bit scalar argument (32-bit ABIs would split it across two
 *    registers): 64-bit ids are passed by address.
 *  - A call that fails has no visible effect, apart from the reports it
 *    documents (the sizes bus1_recv() needs, the per-destination errors of
 *    bus1_send()).  Every address a result is written to is written once
 *    before the call changes anything, so EFAULT means no effect; only when
 *    another thread unmaps or write-protects it during the call does
 *    bus1_node_create() or bus1_handle_transfer() fail with EFAULT after
 *    creating the node or handle, and bus1_send() return its result with
 *    @errors partly written.
 *  - A call holds a reference to each peer file it uses: a close in another
 *    thread releases the peer only when the call returns.
 *  - poll() reports a peer readable when bus1_recv() would not block, and
 *    always writable: bus1_send() never blocks.
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

/**
 * DOC: ids
 *
 * A peer names the nodes it owns and the handles it holds by 64-bit ids.
 * Ids are assigned by the kernel, unique within the peer, and never reused
 * in the life of the peer.  An owner names its node by the node's id; every
 * other peer refers to the node through a handle id of its own.
 *
 * BUS1_ID_INVALID stands in for a handle whose node was destroyed before a
 * message carrying it was received.
 */
#define BUS1_ID_INVALID		0xffffffffffffffffULL

/**
 * DOC: limits
 *
 * BUS1_NODES_DESTROY_MAX:	ids in one bus1_nodes_destroy() call.
 * BUS1_DESTINATIONS_MAX:	destinations of one bus1_send() call.
 * BUS1_VECS_MAX:		vectors in one struct bus1_message or bus1_recv.
 * BUS1_HANDLES_MAX:		handles carried by one message.
 * BUS1_PAYLOAD_MAX:		payload bytes of one message.
 * BUS1_FDS_MAX:		file descriptors carried by one message.
 */
#define BUS1_NODES_DESTROY_MAX	1024
#define BUS1_DESTINATIONS_MAX	1024
#define BUS1_VECS_MAX		1024
#define BUS1_HANDLES_MAX	256
#define BUS1_PAYLOAD_MAX	(1U << 22)
#define BUS1_FDS_MAX		256

/**
 * DOC: message types
 *
 * BUS1_MSG_DATA:		a message sent with bus1_send().
 * BUS1_MSG_NODE_DESTROY:	the node behind the id was destroyed; sent to
 *				the owner and to every holder of a handle.
 * BUS1_MSG_NODE_RELEASE:	the last handle to the owner's node was
 *				released.
 */
#define BUS1_MSG_DATA		1
#define BUS1_MSG_NODE_DESTROY	2
#define BUS1_MSG_NODE_RELEASE	3

/**
 * struct bus1_vec - one piece of a payload
 * @base:	address of the bytes
 * @len:	number of bytes
 *
 * Like struct iovec, but with the same layout for 32-bit and 64-bit callers.
 */
struct bus1_vec {
	__u64 base;
	__u64 len;
};

/**
 * DOC: node and handle system calls
 *
 * int bus1_node_create(int peer, __u64 *id, unsigned int flags);
 *	Creates a node owned by @peer and stores its id in *@id.
 *
 * int bus1_handle_transfer(int src_peer, const __u64 *src_id, int dst_peer,
 *			    __u64 *dst_id, unsigned int flags);
 *	Gives the peer @dst_peer (-1: @src_peer itself) a handle to the node
 *	that *@src_id names in @src_peer, and stores its id in *@dst_id
 *	(@src_id and @dst_id may point to the same __u64).  A
 *	peer holds at most one handle per node: acquiring it again counts up
 *	that handle's references.  The owner of the node gets the node's id.
 *
 * int bus1_handle_release(int peer, const __u64 *id, unsigned int flags);
 *	Drops one reference of the handle *@id.  When the last handle to a node
 *	(and the last message carrying one) is gone, the owner gets a
 *	BUS1_MSG_NODE_RELEASE.  At most one is pending per node: only the
 *	owner can hand out an unreferenced node again, and doing so withdraws
 *	a pending release notification the owner has not started to receive.
 *
 * int bus1_nodes_destroy(int peer, const __u64 *ids, unsigned int n_ids,
 *			  unsigned int flags);
 *	Destroys the nodes @ids of @peer in one transaction.  The owner and
 *	every handle holder get a BUS1_MSG_NODE_DESTROY on their id; messages
 *	committed before are received before it, and nothing sent to the node
 *	is accepted after it.
 *
 * int bus1_peer_reset(int peer, unsigned int flags);
 *	Resets @peer as if it were closed and opened again, but keeping its
 *	file descriptor: its queue is flushed, its nodes are destroyed and its
 *	handles released, with the notifications a close sends to the other
 *	peers.  Ids are still never reused.
 *
 * No flags are defined for these calls yet.  Errors: EBADF (not a bus1
 * peer), ENXIO (unknown id), EPERM (releasing an owned node, or destroying
 * a handle), EHOSTUNREACH (the node is destroyed), ENOTUNIQ (an id twice
 * in one call), EDQUOT (a new node or handle would exceed the limits
 * /proc/sys/bus1/max_{peer,user}_{nodes,held_handles}), EPERM or EACCES
 * (a security module refused a handle transfer), EFAULT, EINVAL,
 * ENOMEM (also at the limit of the caller's memory cgroup, to which all
 * memory bus1 keeps for the caller is charged).
 */

/**
 * struct bus1_message - what bus1_send() sends
 * @vecs:	address of an array of struct bus1_vec, the payload
 * @n_vecs:	number of entries in @vecs, at most BUS1_VECS_MAX
 * @handles:	address of an array of __u64 ids (handles or owned nodes)
 *		of the sender; the receiver gets a handle to each node
 * @n_handles:	number of entries in @handles, at most BUS1_HANDLES_MAX
 * @errors:	address of an array of n_destinations __s32, or 0; receives
 *		one errno value per destination (see below)
 * @fds:	address of an array of int, file descriptors of the sender
 * @n_fds:	number of entries in @fds, at most BUS1_FDS_MAX
 *
 * int bus1_send(int peer, const __u64 *destinations,
 *		 unsigned int n_destinations,
 *		 const struct bus1_message *message, size_t size,
 *		 unsigned int flags);
 *
 * Sends the message through each handle (or owned node) in @destinations,
 * at most BUS1_DESTINATIONS_MAX, no id twice (ENOTUNIQ), as one
 * transaction: every pair of transactions is received in the same order
 * by all peers that receive both.  Returns the number of destinations the
 * message was queued on.
 *
 * Without flags the send is all or nothing: if any destination refuses
 * the message, the call fails with that destination's errno and nothing
 * is queued anywhere.
 *
 * BUS1_SEND_CONTINUE:	queue the message on every destination that takes
 *			it; the call fails only if none does.
 * BUS1_SEND_HANDLES:	the message carries handles; must be set exactly
 *			when @n_handles is not 0 (else EINVAL).
 * BUS1_SEND_FDS:	the message carries file descriptors; must be set
 *			exactly when @n_fds is not 0 (else EINVAL).
 *
 * The last two make in registers visible what a message carries, so that a
 * seccomp filter (which cannot read struct bus1_message) can forbid
 * passing handles or file descriptors; the number of destinations is the
 * third argument.
 *
 * A destination refuses with ENXIO (the sender has no such id),
 * EHOSTUNREACH (the node is destroyed, or its owner is gone), EDQUOT (the
 * message does not fit the receiver's quota, see below) or the errno of a
 * security module's refusal (EPERM, EACCES).  When @errors
 * is set, it is written before anything else happens, and on return holds
 * for each destination 0 (queued), the errno of its refusal, or ECANCELED
 * (not queued because the call failed as a whole).
 *
 * File descriptors: the message holds the files of @fds until it is
 * received or dropped.  Files that can hold other files cannot be passed
 * (EOPNOTSUPP): bus1 peers, AF_UNIX sockets and io_uring instances; a
 * message holding its own receiver through one of them would be a
 * reference cycle nothing ever breaks.  O_PATH descriptors can be passed.
 * A descriptor that is not open fails the call with EBADF.
 *
 * Quota: a message is charged to its receiver when it is sent: to the
 * receiving peer and to the user who opened that peer (all of that user's
 * peers share one pool).  It costs one message, its payload plus a fixed
 * overhead in bytes, its handles and its file descriptors, and is given
 * back when the receiver dequeues it.  A sender of another user may hold
 * at most what remains free of either pool after its charge, so no user
 * can fill another user's pools.  The limits are the sysctls
 * /proc/sys/bus1/max_{peer,user}_{messages,bytes,handles,fds}; the use and
 * the limits are shown in /proc/<pid>/fdinfo/<fd> of a peer as
 * "bus1-queue-<resource>" and "bus1-user-<resource>" lines.
 */
struct bus1_message {
	__u64 vecs;
	__u64 n_vecs;
	__u64 handles;
	__u64 n_handles;
	__u64 errors;
	__u64 fds;
	__u64 n_fds;
};

#define BUS1_SEND_CONTINUE	(1U << 0)
#define BUS1_SEND_HANDLES	(1U << 1)
#define BUS1_SEND_FDS		(1U << 2)

#define BUS1_MESSAGE_SIZE_VER0	40	/* without @fds, @n_fds */
#define BUS1_MESSAGE_SIZE_VER1	56

/**
 * struct bus1_recv - what bus1_recv() receives into
 * @vecs:	in: address of an array of struct bus1_vec for the payload
 * @n_vecs:	in: number of entries in @vecs, at most BUS1_VECS_MAX
 * @handles:	in: address of an array of __u64 for the received handle ids
 * @n_handles:	in: capacity of @handles; out: handles in the message
 * @n_bytes:	out: payload size of the message
 * @type:	out: BUS1_MSG_*
 * @id:		out: the receiver's id the message arrived on (its node for
 *		BUS1_MSG_DATA and BUS1_MSG_NODE_RELEASE; its handle or node for
 *		BUS1_MSG_NODE_DESTROY)
 * @flags:	out: BUS1_RECV_FLAG_*
 * @fds:	in: address of an array of int for the received descriptors
 * @n_fds:	in: capacity of @fds; out: descriptors in the message
 * @uid:	out: the sender's effective uid, in the receiver's user namespace
 * @gid:	out: the sender's effective gid, likewise
 * @pid:	out: the sender's process id, in the receiver's pid namespace
 *		(0 if not visible there)
 * @tid:	out: the sender's thread id, likewise
 *
 * int bus1_recv(int peer, struct bus1_recv *args, size_t size,
 *		 unsigned int flags);
 *
 * Dequeues the next message.  The receiver becomes a holder of the handles
 * it carries only once nothing can fail any more: a failed receive leaves
 * no handle, id or notification behind.  When the payload, the handles or
 * the file descriptors do not fit, fails with EMSGSIZE, reports the sizes needed in
 * @n_bytes, @n_handles and @n_fds, and leaves the message queued.  The
 * descriptors are installed with O_CLOEXEC; when the file descriptor table
 * is full the call fails with EMFILE and the message stays queued.  The
 * credentials are those of the sending task when it sent the message (the
 * overflow uid and gid when they have no mapping); for notifications @uid
 * and @gid are (__u32)-1 and @pid and @tid 0.  No flags are defined yet
 * for the call.
 *
 * BUS1_RECV_FLAG_CONTINUE:	the next entry in the queue belongs to the same
 *				transaction (a message sent to several nodes of
 *				this peer, or nodes destroyed together), so the
 *				receiver can take them as one batch.
 */
struct bus1_recv {
	__u64 vecs;
	__u64 n_vecs;
	__u64 handles;
	__u64 n_handles;
	__u64 n_bytes;
	__u64 type;
	__u64 id;
	__u64 flags;
	__u64 fds;
	__u64 n_fds;
	__u32 uid;
	__u32 gid;
	__s32 pid;
	__s32 tid;
};

#define BUS1_RECV_SIZE_VER0	64	/* up to @flags */
#define BUS1_RECV_SIZE_VER1	96

#define BUS1_RECV_FLAG_CONTINUE	(1ULL << 0)

#endif /* _UAPI_LINUX_BUS1_H */
