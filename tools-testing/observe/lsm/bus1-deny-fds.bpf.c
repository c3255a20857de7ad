// SPDX-License-Identifier: GPL-2.0
/*
 * bus1-deny-fds.bpf.c - a BPF LSM policy for bus1: file descriptors do not
 * cross users.  A message that carries file descriptors is refused with
 * EPERM by every destination whose peer was opened by another user than
 * the sending peer; messages without descriptors, and descriptors between
 * peers of one user, pass.  Users are compared by effective uid (the uid
 * bus1_recv(2) reports for the sender), as the credentials were when each
 * peer was opened.
 *
 * The rule is enforced by two hooks, either of which suffices; the loader
 * (bus1-deny-fds.c) attaches both or one of them:
 *
 *  - lsm/bus1_send: called once per destination of a bus1_send(2) with the
 *    numbers of bytes, handles and descriptors the message carries;
 *  - lsm/bus1_transfer_file: called for each file, per destination.
 *
 * lsm/bus1_transfer_handle only counts its calls: handles are not
 * restricted by this policy.
 *
 * The counters are read by the loader through the skeleton (.bss).
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#define EPERM 1

char LICENSE[] SEC("license") = "GPL";

__u64 send_checked;
__u64 send_denied;
__u64 file_checked;
__u64 file_denied;
__u64 handle_checked;

static __always_inline bool same_user(const struct cred *a, const struct cred *b)
{
	return a->euid.val == b->euid.val;
}

SEC("lsm/bus1_send")
int BPF_PROG(bus1_deny_fds_send, const struct cred *sender,
	     const struct cred *receiver, size_t n_bytes,
	     unsigned int n_handles, unsigned int n_fds, int ret)
{
	/* An earlier BPF program already refused. */
	if (ret)
		return ret;
	__sync_fetch_and_add(&send_checked, 1);
	if (n_fds && !same_user(sender, receiver)) {
		__sync_fetch_and_add(&send_denied, 1);
		return -EPERM;
	}
	return 0;
}

SEC("lsm/bus1_transfer_file")
int BPF_PROG(bus1_deny_fds_file, const struct cred *from,
	     const struct cred *to, const struct file *file, int ret)
{
	if (ret)
		return ret;
	__sync_fetch_and_add(&file_checked, 1);
	if (!same_user(from, to)) {
		__sync_fetch_and_add(&file_denied, 1);
		return -EPERM;
	}
	return 0;
}

SEC("lsm/bus1_transfer_handle")
int BPF_PROG(bus1_count_handles, const struct cred *from,
	     const struct cred *to, int ret)
{
	__sync_fetch_and_add(&handle_checked, 1);
	return ret;
}
