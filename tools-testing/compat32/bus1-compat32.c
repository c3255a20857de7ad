// SPDX-License-Identifier: GPL-2.0
/*
 * Every bus1 system call from a 32-bit program on a 64-bit kernel.
 *
 * Built with "gcc -m32 -static" against uapi/bus1.h and run inside the
 * x86_64 test kernel (CONFIG_IA32_EMULATION) by the in-kernel test
 * compat32::a_32_bit_program_uses_every_call.  bus1 has no compat entry
 * points: this program proves that none are needed, including for
 * messages carrying handles and file descriptors.
 *
 * Prints one line per step and "compat32: all N checks passed" at the
 * end; exits non-zero at the first failure.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <linux/bus1.h>

#define NR_BUS1_OPEN		473
#define NR_BUS1_NODE_CREATE	474
#define NR_BUS1_HANDLE_TRANSFER	475
#define NR_BUS1_HANDLE_RELEASE	476
#define NR_BUS1_NODES_DESTROY	477
#define NR_BUS1_SEND		478
#define NR_BUS1_RECV		479
#define NR_BUS1_PEER_RESET	480

_Static_assert(sizeof(void *) == 4, "build this with -m32");
_Static_assert(sizeof(struct bus1_message) == BUS1_MESSAGE_SIZE_VER1,
	       "struct bus1_message has one layout");
_Static_assert(sizeof(struct bus1_recv) == BUS1_RECV_SIZE_VER1,
	       "struct bus1_recv has one layout");

static int checks;

#define CHECK(cond, ...)						\
	do {								\
		checks++;						\
		if (!(cond)) {						\
			fprintf(stderr, "compat32: FAILED %s:%d: %s: ",	\
				__FILE__, __LINE__, #cond);		\
			fprintf(stderr, __VA_ARGS__);			\
			fprintf(stderr, " (errno %d)\n", errno);	\
			exit(1);					\
		}							\
	} while (0)

static uint64_t ptr(const void *p)
{
	return (uint64_t)(uintptr_t)p;
}

static long node_create(int peer, uint64_t *id)
{
	return syscall(NR_BUS1_NODE_CREATE, peer, id, 0);
}

static long transfer(int src, uint64_t src_id, int dst, uint64_t *dst_id)
{
	return syscall(NR_BUS1_HANDLE_TRANSFER, src, &src_id, dst, dst_id, 0);
}

static long release(int peer, uint64_t id)
{
	return syscall(NR_BUS1_HANDLE_RELEASE, peer, &id, 0);
}

int main(void)
{
	int owner, sender, pipefd[2], got_fd;
	uint64_t node, handle, again, carried, dst_ids[1], ids[2];
	char buf[64];
	struct bus1_vec vec;
	struct bus1_message msg;
	struct bus1_recv rcv;
	int32_t errors[1];
	long r;

	owner = syscall(NR_BUS1_OPEN, BUS1_OPEN_CLOEXEC | BUS1_OPEN_NONBLOCK);
	CHECK(owner >= 0, "bus1_open");
	sender = syscall(NR_BUS1_OPEN, BUS1_OPEN_NONBLOCK);
	CHECK(sender >= 0, "bus1_open");
	CHECK(syscall(NR_BUS1_OPEN, 1U << 31) < 0 && errno == EINVAL,
	      "unknown open flag");
	printf("compat32: bus1_open ok\n");

	CHECK(node_create(owner, &node) == 0 && node != BUS1_ID_INVALID,
	      "bus1_node_create");
	CHECK(transfer(owner, node, sender, &handle) == 0, "transfer");
	CHECK(transfer(owner, node, sender, &again) == 0 && again == handle,
	      "a second transfer counts up the same handle");
	CHECK(release(sender, handle) == 0, "release one of two");
	CHECK(transfer(sender, 12345, owner, &again) < 0 && errno == ENXIO,
	      "transfer of an unknown id");
	CHECK(release(sender, 12345) < 0 && errno == ENXIO,
	      "release of an unknown id");
	printf("compat32: node_create, handle_transfer, handle_release ok\n");

	/* A message with payload, a handle and a file descriptor. */
	CHECK(node_create(sender, &carried) == 0, "a node to carry");
	CHECK(pipe(pipefd) == 0, "pipe");
	memset(&msg, 0, sizeof(msg));
	vec.base = ptr("hello from i386");
	vec.len = 16;
	msg.vecs = ptr(&vec);
	msg.n_vecs = 1;
	msg.handles = ptr(&carried);
	msg.n_handles = 1;
	msg.fds = ptr(&pipefd[1]);
	msg.n_fds = 1;
	msg.errors = ptr(errors);
	CHECK(syscall(NR_BUS1_SEND, sender, &handle, 1, &msg, sizeof(msg),
		      BUS1_SEND_HANDLES) < 0 && errno == EINVAL,
	      "fds without BUS1_SEND_FDS");
	r = syscall(NR_BUS1_SEND, sender, &handle, 1, &msg, sizeof(msg),
		    BUS1_SEND_HANDLES | BUS1_SEND_FDS);
	CHECK(r == 1 && errors[0] == 0, "bus1_send returned %ld", r);
	close(pipefd[1]);

	memset(&rcv, 0, sizeof(rcv));
	memset(buf, 0, sizeof(buf));
	vec.base = ptr(buf);
	vec.len = sizeof(buf);
	rcv.vecs = ptr(&vec);
	rcv.n_vecs = 1;
	rcv.handles = ptr(dst_ids);
	rcv.n_handles = 1;
	rcv.fds = ptr(&got_fd);
	rcv.n_fds = 1;
	r = syscall(NR_BUS1_RECV, owner, &rcv, sizeof(rcv), 0);
	CHECK(r == 0, "bus1_recv");
	CHECK(rcv.type == BUS1_MSG_DATA && rcv.id == node, "type and id");
	CHECK(rcv.n_bytes == 16 && !strcmp(buf, "hello from i386"), "payload");
	CHECK(rcv.n_handles == 1 && dst_ids[0] != BUS1_ID_INVALID,
	      "the carried handle");
	CHECK(rcv.n_fds == 1 && got_fd >= 0, "the carried descriptor");
	CHECK(rcv.uid == getuid() && rcv.gid == getgid() &&
	      rcv.pid == getpid() && rcv.tid == gettid(), "credentials");
	CHECK(write(got_fd, "x", 1) == 1 && read(pipefd[0], buf, 1) == 1,
	      "the descriptor is the pipe");
	CHECK(fcntl(got_fd, F_GETFD) == FD_CLOEXEC, "installed O_CLOEXEC");
	close(got_fd);
	printf("compat32: bus1_send, bus1_recv with a handle and an fd ok\n");

	/* Release notification of the carried node, then destruction. */
	CHECK(release(owner, dst_ids[0]) == 0, "release the carried handle");
	memset(&rcv, 0, sizeof(rcv));
	CHECK(syscall(NR_BUS1_RECV, sender, &rcv, sizeof(rcv), 0) == 0 &&
	      rcv.type == BUS1_MSG_NODE_RELEASE && rcv.id == carried &&
	      rcv.uid == (uint32_t)-1, "NODE_RELEASE");
	ids[0] = node;
	ids[1] = node;
	CHECK(syscall(NR_BUS1_NODES_DESTROY, owner, ids, 2, 0) < 0 &&
	      errno == ENOTUNIQ, "an id twice");
	CHECK(syscall(NR_BUS1_NODES_DESTROY, owner, ids, 1, 0) == 0,
	      "bus1_nodes_destroy");
	memset(&rcv, 0, sizeof(rcv));
	CHECK(syscall(NR_BUS1_RECV, sender, &rcv, sizeof(rcv), 0) == 0 &&
	      rcv.type == BUS1_MSG_NODE_DESTROY && rcv.id == handle,
	      "NODE_DESTROY to the holder");
	CHECK(syscall(NR_BUS1_RECV, owner, &rcv, sizeof(rcv), 0) == 0 &&
	      rcv.type == BUS1_MSG_NODE_DESTROY && rcv.id == node,
	      "NODE_DESTROY to the owner");
	CHECK(syscall(NR_BUS1_RECV, owner, &rcv, sizeof(rcv), 0) < 0 &&
	      errno == EAGAIN, "nothing more");
	printf("compat32: bus1_nodes_destroy and notifications ok\n");

	CHECK(syscall(NR_BUS1_PEER_RESET, sender, 0) == 0, "bus1_peer_reset");
	CHECK(release(sender, handle) < 0 && errno == ENXIO,
	      "the reset dropped the handle");
	CHECK(node_create(sender, &again) == 0 && again > carried,
	      "ids are not reused after a reset");
	printf("compat32: bus1_peer_reset ok\n");

	printf("compat32: all %d checks passed\n", checks);
	return 0;
}
