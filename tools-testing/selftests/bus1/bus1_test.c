// SPDX-License-Identifier: GPL-2.0
/*
 * bus1 - capability-based inter-process communication
 *
 * Tests of the eight bus1 system calls: what each call does, the errors
 * its man page documents (each without visible effect on the peers), the
 * order of messages and notifications, and concurrent senders.  No test
 * sleeps or depends on timing.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <linux/bus1.h>

#include "../kselftest_harness.h"

#ifndef __NR_bus1_open
#define __NR_bus1_open			473
#endif
#ifndef __NR_bus1_node_create
#define __NR_bus1_node_create		474
#endif
#ifndef __NR_bus1_handle_transfer
#define __NR_bus1_handle_transfer	475
#endif
#ifndef __NR_bus1_handle_release
#define __NR_bus1_handle_release	476
#endif
#ifndef __NR_bus1_nodes_destroy
#define __NR_bus1_nodes_destroy		477
#endif
#ifndef __NR_bus1_send
#define __NR_bus1_send			478
#endif
#ifndef __NR_bus1_recv
#define __NR_bus1_recv			479
#endif
#ifndef __NR_bus1_peer_reset
#define __NR_bus1_peer_reset		480
#endif

/* An id far above any id the short-lived peers of these tests are given. */
#define UNKNOWN_ID	0x0001000000000000ULL

#define PTR(p)		((__u64)(uintptr_t)(p))

/*
 * The system calls.  Each returns what the call returns, or -errno when it
 * fails, so that a test can compare both in one assertion.
 */
static int ret_or_errno(long ret)
{
	return ret < 0 ? -errno : (int)ret;
}

static int sys_bus1_open(unsigned int flags)
{
	return ret_or_errno(syscall(__NR_bus1_open, flags));
}

static int sys_bus1_node_create(int peer, __u64 *id, unsigned int flags)
{
	return ret_or_errno(syscall(__NR_bus1_node_create, peer, id, flags));
}

static int sys_bus1_handle_transfer(int src_peer, const __u64 *src_id,
				    int dst_peer, __u64 *dst_id,
				    unsigned int flags)
{
	return ret_or_errno(syscall(__NR_bus1_handle_transfer, src_peer,
				    src_id, dst_peer, dst_id, flags));
}

static int sys_bus1_handle_release(int peer, const __u64 *id,
				   unsigned int flags)
{
	return ret_or_errno(syscall(__NR_bus1_handle_release, peer, id, flags));
}

static int sys_bus1_nodes_destroy(int peer, const __u64 *ids,
				  unsigned int n_ids, unsigned int flags)
{
	return ret_or_errno(syscall(__NR_bus1_nodes_destroy, peer, ids, n_ids,
				    flags));
}

static int sys_bus1_send(int peer, const __u64 *destinations,
			 unsigned int n_destinations,
			 const struct bus1_message *message, size_t size,
			 unsigned int flags)
{
	return ret_or_errno(syscall(__NR_bus1_send, peer, destinations,
				    n_destinations, message, size, flags));
}

static int sys_bus1_recv(int peer, struct bus1_recv *args, size_t size,
			 unsigned int flags)
{
	return ret_or_errno(syscall(__NR_bus1_recv, peer, args, size, flags));
}

static int sys_bus1_peer_reset(int peer, unsigned int flags)
{
	return ret_or_errno(syscall(__NR_bus1_peer_reset, peer, flags));
}

static pid_t sys_gettid(void)
{
	return syscall(SYS_gettid);
}

/* Creates a node, BUS1_ID_INVALID on failure. */
static __u64 node_new(int peer)
{
	__u64 id = BUS1_ID_INVALID;

	if (sys_bus1_node_create(peer, &id, 0))
		return BUS1_ID_INVALID;
	return id;
}

/* Gives @dst a handle to the node @id names in @src, BUS1_ID_INVALID on failure. */
static __u64 handle_new(int src, __u64 id, int dst)
{
	__u64 dst_id = BUS1_ID_INVALID;

	if (sys_bus1_handle_transfer(src, &id, dst, &dst_id, 0))
		return BUS1_ID_INVALID;
	return dst_id;
}

static int release(int peer, __u64 id)
{
	return sys_bus1_handle_release(peer, &id, 0);
}

static int destroy(int peer, __u64 id)
{
	return sys_bus1_nodes_destroy(peer, &id, 1, 0);
}

/* bus1_send() with the flags that must tell what the message carries. */
static int send_msg(int peer, const __u64 *dsts, unsigned int n_dsts,
		    const void *data, size_t len,
		    const __u64 *handles, unsigned int n_handles,
		    const int *fds, unsigned int n_fds,
		    __s32 *errors, unsigned int flags)
{
	struct bus1_vec vec = { .base = PTR(data), .len = len };
	struct bus1_message msg = {
		.vecs = PTR(&vec),
		.n_vecs = 1,
		.handles = PTR(handles),
		.n_handles = n_handles,
		.errors = PTR(errors),
		.fds = PTR(fds),
		.n_fds = n_fds,
	};

	if (n_handles)
		flags |= BUS1_SEND_HANDLES;
	if (n_fds)
		flags |= BUS1_SEND_FDS;
	return sys_bus1_send(peer, dsts, n_dsts, &msg, sizeof(msg), flags);
}

static int send_bytes(int peer, __u64 dst, const void *data, size_t len)
{
	return send_msg(peer, &dst, 1, data, len, NULL, 0, NULL, 0, NULL, 0);
}

static int send_str(int peer, __u64 dst, const char *str)
{
	return send_bytes(peer, dst, str, strlen(str));
}

/* One received entry, with room for 4 KiB, 16 handles and 16 fds. */
struct rmsg {
	struct bus1_recv r;
	char data[4096];
	__u64 handles[16];
	int fds[16];
};

static int recv_msg(int peer, struct rmsg *m)
{
	struct bus1_vec vec;

	memset(m, 0, sizeof(*m));
	vec.base = PTR(m->data);
	vec.len = sizeof(m->data);
	m->r.vecs = PTR(&vec);
	m->r.n_vecs = 1;
	m->r.handles = PTR(m->handles);
	m->r.n_handles = ARRAY_SIZE(m->handles);
	m->r.fds = PTR(m->fds);
	m->r.n_fds = ARRAY_SIZE(m->fds);
	return sys_bus1_recv(peer, &m->r, sizeof(m->r), 0);
}

/* Receives the next entry of @peer, which must be @type on @id. */
static void expect_entry(struct __test_metadata *_metadata, int peer,
			 __u64 type, __u64 id, struct rmsg *m)
{
	ASSERT_EQ(0, recv_msg(peer, m));
	EXPECT_EQ(type, m->r.type);
	EXPECT_EQ(id, m->r.id);
}

/* Receives a data message on @id, which must carry the string @str. */
static void expect_data(struct __test_metadata *_metadata, int peer,
			__u64 id, const char *str)
{
	struct rmsg m;

	expect_entry(_metadata, peer, BUS1_MSG_DATA, id, &m);
	ASSERT_EQ(strlen(str), m.r.n_bytes);
	EXPECT_EQ(0, memcmp(str, m.data, strlen(str)));
}

/* A notification: no payload, no handles, no sender. */
static void expect_notification(struct __test_metadata *_metadata, int peer,
				__u64 type, __u64 id)
{
	struct rmsg m;

	expect_entry(_metadata, peer, type, id, &m);
	EXPECT_EQ(0ULL, m.r.n_bytes);
	EXPECT_EQ(0ULL, m.r.n_handles);
	EXPECT_EQ(0ULL, m.r.n_fds);
	EXPECT_EQ((__u32)-1, m.r.uid);
	EXPECT_EQ((__u32)-1, m.r.gid);
	EXPECT_EQ(0, m.r.pid);
	EXPECT_EQ(0, m.r.tid);
}

/* The queue of the non-blocking @peer must be empty. */
static void expect_empty(struct __test_metadata *_metadata, int peer)
{
	struct rmsg m;

	EXPECT_EQ(-EAGAIN, recv_msg(peer, &m)) {
		TH_LOG("unexpected entry: type %llu on id %llu",
		       m.r.type, m.r.id);
	}
}

/* The bus1 lines of a peer's fdinfo: its id, queue use, nodes and handles. */
static void peer_state(int peer, char *buf, size_t size)
{
	char path[64], line[256];
	size_t len = 0;
	FILE *f;

	buf[0] = '\0';
	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", peer);
	f = fopen(path, "re");
	if (!f)
		return;
	while (fgets(line, sizeof(line), f)) {
		if (strncmp(line, "bus1-", 5))
			continue;
		if (len + strlen(line) >= size)
			break;
		memcpy(buf + len, line, strlen(line) + 1);
		len += strlen(line);
	}
	fclose(f);
}

/* The use (@limit false) or limit of one fdinfo line, -1 if not there. */
static long long peer_value(int peer, const char *name, bool limit)
{
	char buf[4096], key[64];
	long long used, max;
	char *p;

	peer_state(peer, buf, sizeof(buf));
	snprintf(key, sizeof(key), "%s:", name);
	p = strstr(buf, key);
	if (!p)
		return -1;
	max = -1;
	if (sscanf(p + strlen(key), "%lld %lld", &used, &max) < 1)
		return -1;
	return limit ? max : used;
}

/* The lowest descriptor number that is not open. */
static int lowest_free_fd(void)
{
	int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);

	if (fd >= 0)
		close(fd);
	return fd;
}

static void *map_page(int prot)
{
	return mmap(NULL, getpagesize(), prot, MAP_PRIVATE | MAP_ANONYMOUS,
		    -1, 0);
}

/* The fdinfo of two peers, to check that failing calls have no effect. */
struct saved_state {
	int peers[2];
	char state[2][2048];
};

/*
 * Two peers: @owner owns @node, @holder holds @handle to it.  Both are
 * non-blocking.  The fixture also has bad arguments at hand.
 */
FIXTURE(bus1) {
	int owner;
	int holder;
	__u64 node;
	__u64 handle;
	void *unmapped;		/* a PROT_NONE page */
	void *read_only;	/* a PROT_READ page */
	int pipe[2];		/* files that are not bus1 peers */
	int closed;		/* a descriptor number that is not open */
	int path;		/* an O_PATH descriptor of @owner */
	struct saved_state saved;
	long long sysctl_saved[3];	/* see lower_limits() */
};

static const char * const lowered_sysctls[3] = {
	"max_peer_nodes", "max_peer_held_handles", "max_peer_messages",
};

static long long read_sysctl(const char *name)
{
	char path[96];
	long long v = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/sys/bus1/%s", name);
	f = fopen(path, "r");
	if (!f)
		return -1;
	if (fscanf(f, "%lld", &v) != 1)
		v = -1;
	fclose(f);
	return v;
}

static bool write_sysctl(const char *name, long long value)
{
	char path[96];
	bool ok;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/sys/bus1/%s", name);
	f = fopen(path, "w");
	if (!f)
		return false;
	ok = fprintf(f, "%lld\n", value) > 0;
	return fclose(f) == 0 && ok;
}

/*
 * Lowers the peer limits the limits test fills, where the caller may
 * (root), so that it is quick on slow kernels too; the fixture's teardown
 * puts the old values back.
 */
static void lower_limits(long long *saved, long long value)
{
	int i;

	for (i = 0; i < 3; i++) {
		saved[i] = read_sysctl(lowered_sysctls[i]);
		if (saved[i] > value && !write_sysctl(lowered_sysctls[i], value))
			saved[i] = -1;
	}
}

FIXTURE_SETUP(bus1)
{
	char path[64];

	self->sysctl_saved[0] = -1;
	self->sysctl_saved[1] = -1;
	self->sysctl_saved[2] = -1;
	self->owner = sys_bus1_open(BUS1_OPEN_NONBLOCK | BUS1_OPEN_CLOEXEC);
	ASSERT_LE(0, self->owner);
	self->holder = sys_bus1_open(BUS1_OPEN_NONBLOCK | BUS1_OPEN_CLOEXEC);
	ASSERT_LE(0, self->holder);
	self->node = node_new(self->owner);
	ASSERT_NE(BUS1_ID_INVALID, self->node);
	self->handle = handle_new(self->owner, self->node, self->holder);
	ASSERT_NE(BUS1_ID_INVALID, self->handle);

	self->unmapped = map_page(PROT_NONE);
	ASSERT_NE(MAP_FAILED, self->unmapped);
	self->read_only = map_page(PROT_READ);
	ASSERT_NE(MAP_FAILED, self->read_only);
	ASSERT_EQ(0, pipe2(self->pipe, O_CLOEXEC | O_NONBLOCK));
	self->closed = sysconf(_SC_OPEN_MAX) - 1;
	ASSERT_EQ(-1, fcntl(self->closed, F_GETFD));
	snprintf(path, sizeof(path), "/proc/self/fd/%d", self->owner);
	self->path = open(path, O_PATH | O_CLOEXEC);
	ASSERT_LE(0, self->path);
}

FIXTURE_TEARDOWN(bus1)
{
	int i;

	for (i = 0; i < 3; i++)
		if (self->sysctl_saved[i] >= 0)
			write_sysctl(lowered_sysctls[i], self->sysctl_saved[i]);
	close(self->path);
	close(self->pipe[0]);
	close(self->pipe[1]);
	close(self->holder);
	close(self->owner);
}

/* Remembers the state of two peers. */
static void save_state(struct saved_state *s, int owner, int holder)
{
	int i;

	s->peers[0] = owner;
	s->peers[1] = holder;
	for (i = 0; i < 2; i++)
		peer_state(s->peers[i], s->state[i], sizeof(s->state[i]));
}

/* Their state is still what save_state() saw. */
static void expect_unchanged(struct __test_metadata *_metadata,
			     const struct saved_state *s)
{
	char now[2048];
	int i;

	for (i = 0; i < 2; i++) {
		ASSERT_NE('\0', s->state[i][0]);
		peer_state(s->peers[i], now, sizeof(now));
		EXPECT_STREQ(s->state[i], now);
	}
}

/* @call fails with @err and changes nothing the peers' fdinfo shows. */
#define EXPECT_FAILS(err, call) do {					\
	EXPECT_EQ(-(err), (call));					\
	expect_unchanged(_metadata, &self->saved);			\
} while (0)

/* Both queues of the fixture are empty, and its node still works. */
static void expect_intact(struct __test_metadata *_metadata, int owner,
			  int holder, __u64 node, __u64 handle)
{
	expect_empty(_metadata, owner);
	expect_empty(_metadata, holder);
	ASSERT_EQ(1, send_str(holder, handle, "intact"));
	expect_data(_metadata, owner, node, "intact");
}

/*
 * bus1_open(): the flags, the kind of file, a peer id per peer; EINVAL for
 * unknown flags and EMFILE for a full descriptor table, without using up a
 * descriptor.
 */
TEST(open_flags)
{
	static const unsigned int bad[] = { 1U << 2, 1U << 3, 1U << 31, ~0U };
	char path[64], link[64];
	struct rlimit old, low;
	struct rmsg m;
	int fd, fd2, free_fd;
	ssize_t len;
	unsigned int i;

	fd = sys_bus1_open(0);
	ASSERT_LE(0, fd);
	EXPECT_EQ(0, fcntl(fd, F_GETFD) & FD_CLOEXEC);
	EXPECT_EQ(0, fcntl(fd, F_GETFL) & O_NONBLOCK);
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	len = readlink(path, link, sizeof(link) - 1);
	ASSERT_LT(0, len);
	link[len] = '\0';
	EXPECT_STREQ("anon_inode:[bus1]", link);
	/* Non-blocking mode can also be set on the file later. */
	ASSERT_EQ(0, fcntl(fd, F_SETFL, O_NONBLOCK));
	EXPECT_EQ(-EAGAIN, recv_msg(fd, &m));

	fd2 = sys_bus1_open(BUS1_OPEN_CLOEXEC);
	ASSERT_LE(0, fd2);
	EXPECT_EQ(FD_CLOEXEC, fcntl(fd2, F_GETFD) & FD_CLOEXEC);
	EXPECT_EQ(0, fcntl(fd2, F_GETFL) & O_NONBLOCK);
	/* Every peer has an id of its own. */
	EXPECT_LE(0, peer_value(fd, "bus1-peer-id", false));
	EXPECT_NE(peer_value(fd, "bus1-peer-id", false),
		  peer_value(fd2, "bus1-peer-id", false));
	close(fd2);

	fd2 = sys_bus1_open(BUS1_OPEN_NONBLOCK);
	ASSERT_LE(0, fd2);
	EXPECT_EQ(0, fcntl(fd2, F_GETFD) & FD_CLOEXEC);
	EXPECT_EQ(O_NONBLOCK, fcntl(fd2, F_GETFL) & O_NONBLOCK);
	EXPECT_EQ(-EAGAIN, recv_msg(fd2, &m));
	close(fd2);

	fd2 = sys_bus1_open(BUS1_OPEN_CLOEXEC | BUS1_OPEN_NONBLOCK);
	ASSERT_LE(0, fd2);
	EXPECT_EQ(FD_CLOEXEC, fcntl(fd2, F_GETFD) & FD_CLOEXEC);
	EXPECT_EQ(O_NONBLOCK, fcntl(fd2, F_GETFL) & O_NONBLOCK);
	close(fd2);

	free_fd = lowest_free_fd();
	ASSERT_LE(0, free_fd);
	for (i = 0; i < ARRAY_SIZE(bad); i++) {
		EXPECT_EQ(-EINVAL, sys_bus1_open(bad[i])) {
			TH_LOG("flags %#x", bad[i]);
		}
	}
	EXPECT_EQ(free_fd, lowest_free_fd());

	ASSERT_EQ(0, getrlimit(RLIMIT_NOFILE, &old));
	low = old;
	low.rlim_cur = free_fd;
	ASSERT_EQ(0, setrlimit(RLIMIT_NOFILE, &low));
	EXPECT_EQ(-EMFILE, sys_bus1_open(0));
	ASSERT_EQ(0, setrlimit(RLIMIT_NOFILE, &old));
	EXPECT_EQ(free_fd, lowest_free_fd());
	close(fd);
}

/* bus1_node_create(): unique ids, never reused, and a usable node. */
TEST(node_create)
{
	__u64 a, b, c, ids[2];
	int p;

	p = sys_bus1_open(BUS1_OPEN_NONBLOCK);
	ASSERT_LE(0, p);
	EXPECT_EQ(0, peer_value(p, "bus1-peer-nodes", false));
	a = node_new(p);
	b = node_new(p);
	ASSERT_NE(BUS1_ID_INVALID, a);
	ASSERT_NE(BUS1_ID_INVALID, b);
	EXPECT_NE(a, b);
	EXPECT_EQ(2, peer_value(p, "bus1-peer-nodes", false));

	ASSERT_EQ(0, destroy(p, a));
	expect_notification(_metadata, p, BUS1_MSG_NODE_DESTROY, a);
	EXPECT_EQ(1, peer_value(p, "bus1-peer-nodes", false));
	c = node_new(p);
	ASSERT_NE(BUS1_ID_INVALID, c);
	EXPECT_NE(a, c);
	EXPECT_NE(b, c);

	/* Messages to the node are queued on its owner. */
	ASSERT_EQ(1, send_str(p, c, "to myself"));
	expect_data(_metadata, p, c, "to myself");
	expect_empty(_metadata, p);

	ids[0] = b;
	ids[1] = c;
	ASSERT_EQ(0, sys_bus1_nodes_destroy(p, ids, 2, 0));
	EXPECT_EQ(0, peer_value(p, "bus1-peer-nodes", false));
	close(p);
}

/* bus1_node_create(): EINVAL, EBADF, EFAULT, each without effect. */
TEST_F(bus1, node_create_errors)
{
	__u64 id = 0;

	save_state(&self->saved, self->owner, self->holder);
	EXPECT_FAILS(EINVAL, sys_bus1_node_create(self->owner, &id, 1));
	EXPECT_FAILS(EINVAL, sys_bus1_node_create(self->owner, &id, 1U << 31));
	EXPECT_FAILS(EBADF, sys_bus1_node_create(-1, &id, 0));
	EXPECT_FAILS(EBADF, sys_bus1_node_create(self->closed, &id, 0));
	EXPECT_FAILS(EBADF, sys_bus1_node_create(self->pipe[0], &id, 0));
	EXPECT_FAILS(EBADF, sys_bus1_node_create(self->path, &id, 0));
	EXPECT_FAILS(EFAULT, sys_bus1_node_create(self->owner, NULL, 0));
	EXPECT_FAILS(EFAULT, sys_bus1_node_create(self->owner,
						  self->unmapped, 0));
	EXPECT_FAILS(EFAULT, sys_bus1_node_create(self->owner,
						  self->read_only, 0));
	expect_intact(_metadata, self->owner, self->holder, self->node,
		      self->handle);
}

/*
 * bus1_handle_transfer(): one handle per node and peer, the owner's node
 * id, -1 for the source peer, the same __u64 for both ids, a holder
 * passing the node on, and counted references.
 */
TEST_F(bus1, handle_transfer)
{
	__u64 id, x;
	int third, i;

	third = sys_bus1_open(BUS1_OPEN_NONBLOCK);
	ASSERT_LE(0, third);

	/* Acquiring it again counts up the same handle. */
	EXPECT_EQ(self->handle, handle_new(self->owner, self->node,
					   self->holder));
	EXPECT_EQ(1, peer_value(self->holder, "bus1-peer-held-handles", false));
	/* The owner gets its node id, from anyone. */
	EXPECT_EQ(self->node, handle_new(self->holder, self->handle,
					 self->owner));
	EXPECT_EQ(self->node, handle_new(self->owner, self->node, -1));
	EXPECT_EQ(0, peer_value(self->owner, "bus1-peer-held-handles", false));
	/* -1: the holder acquires its own handle once more. */
	id = BUS1_ID_INVALID;
	EXPECT_EQ(0, sys_bus1_handle_transfer(self->holder, &self->handle, -1,
					      &id, 0));
	EXPECT_EQ(self->handle, id);

	/* A holder passes the node on; both ids in one __u64. */
	x = self->handle;
	ASSERT_EQ(0, sys_bus1_handle_transfer(self->holder, &x, third, &x, 0));
	ASSERT_NE(BUS1_ID_INVALID, x);
	EXPECT_EQ(1, peer_value(third, "bus1-peer-held-handles", false));
	ASSERT_EQ(1, send_str(third, x, "from the third"));
	expect_data(_metadata, self->owner, self->node, "from the third");

	/* The holder has three references, the third peer one. */
	for (i = 0; i < 3; i++) {
		ASSERT_EQ(1, send_str(self->holder, self->handle, "ref"));
		ASSERT_EQ(0, release(self->holder, self->handle));
	}
	EXPECT_EQ(-ENXIO, send_str(self->holder, self->handle, "gone"));
	EXPECT_EQ(0, peer_value(self->holder, "bus1-peer-held-handles", false));
	for (i = 0; i < 3; i++)
		expect_data(_metadata, self->owner, self->node, "ref");
	expect_empty(_metadata, self->owner);
	ASSERT_EQ(0, release(third, x));
	expect_notification(_metadata, self->owner, BUS1_MSG_NODE_RELEASE,
			    self->node);
	expect_empty(_metadata, self->owner);
	close(third);
}

/* bus1_handle_transfer(): every documented error, without effect. */
TEST_F(bus1, handle_transfer_errors)
{
	__u64 dead, dead_handle, id = 0, unknown = UNKNOWN_ID;

	/* A destroyed node, still named by a handle of the holder. */
	dead = node_new(self->owner);
	dead_handle = handle_new(self->owner, dead, self->holder);
	ASSERT_NE(BUS1_ID_INVALID, dead_handle);
	ASSERT_EQ(0, destroy(self->owner, dead));
	expect_notification(_metadata, self->owner, BUS1_MSG_NODE_DESTROY,
			    dead);
	expect_notification(_metadata, self->holder, BUS1_MSG_NODE_DESTROY,
			    dead_handle);

	save_state(&self->saved, self->owner, self->holder);
	EXPECT_FAILS(EINVAL, sys_bus1_handle_transfer(self->owner, &self->node,
						      self->holder, &id, 1));
	EXPECT_FAILS(EINVAL, sys_bus1_handle_transfer(self->owner, &self->node,
						      self->holder, &id,
						      1U << 31));
	EXPECT_FAILS(EBADF, sys_bus1_handle_transfer(-1, &self->node,
						     self->holder, &id, 0));
	EXPECT_FAILS(EBADF, sys_bus1_handle_transfer(self->pipe[0], &self->node,
						     self->holder, &id, 0));
	EXPECT_FAILS(EBADF, sys_bus1_handle_transfer(self->path, &self->node,
						     self->holder, &id, 0));
	EXPECT_FAILS(EBADF, sys_bus1_handle_transfer(self->owner, &self->node,
						     self->closed, &id, 0));
	EXPECT_FAILS(EBADF, sys_bus1_handle_transfer(self->owner, &self->node,
						     self->pipe[1], &id, 0));
	EXPECT_FAILS(EBADF, sys_bus1_handle_transfer(self->owner, &self->node,
						     -2, &id, 0));
	EXPECT_FAILS(EFAULT, sys_bus1_handle_transfer(self->owner, NULL,
						      self->holder, &id, 0));
	EXPECT_FAILS(EFAULT, sys_bus1_handle_transfer(self->owner,
						      self->unmapped,
						      self->holder, &id, 0));
	EXPECT_FAILS(EFAULT, sys_bus1_handle_transfer(self->owner, &self->node,
						      self->holder, NULL, 0));
	EXPECT_FAILS(EFAULT, sys_bus1_handle_transfer(self->owner, &self->node,
						      self->holder,
						      self->unmapped, 0));
	EXPECT_FAILS(EFAULT, sys_bus1_handle_transfer(self->owner, &self->node,
						      self->holder,
						      self->read_only, 0));
	EXPECT_FAILS(ENXIO, sys_bus1_handle_transfer(self->owner, &unknown,
						     self->holder, &id, 0));
	/* A destroyed node's id is unknown to its owner from then on. */
	EXPECT_FAILS(ENXIO, sys_bus1_handle_transfer(self->owner, &dead,
						     self->holder, &id, 0));
	EXPECT_FAILS(EHOSTUNREACH,
		     sys_bus1_handle_transfer(self->holder, &dead_handle,
					      self->owner, &id, 0));
	EXPECT_FAILS(EHOSTUNREACH,
		     sys_bus1_handle_transfer(self->holder, &dead_handle, -1,
					      &id, 0));
	expect_intact(_metadata, self->owner, self->holder, self->node,
		      self->handle);
}

/*
 * bus1_send() and bus1_recv() of a payload: gathered from several vectors,
 * scattered into several, in order, with the sender's credentials; an
 * empty payload, BUS1_PAYLOAD_MAX bytes, and the version 0 structures.
 */
TEST_F(bus1, send_recv_payload)
{
	static const char *const parts[] = { "hello", ", ", "bus1" };
	struct {
		struct bus1_message msg;
		__u64 zero;
	} bigger;
	struct bus1_vec vecs[3], out[2];
	struct bus1_message msg;
	struct bus1_recv args;
	char head[4], tail[64];
	unsigned char *big, *big_out;
	unsigned int i;

	for (i = 0; i < 3; i++) {
		vecs[i].base = PTR(parts[i]);
		vecs[i].len = strlen(parts[i]);
	}
	memset(&msg, 0, sizeof(msg));
	msg.vecs = PTR(vecs);
	msg.n_vecs = 3;
	ASSERT_EQ(1, sys_bus1_send(self->holder, &self->handle, 1, &msg,
				   sizeof(msg), 0));

	memset(tail, 0, sizeof(tail));
	out[0].base = PTR(head);
	out[0].len = sizeof(head);
	out[1].base = PTR(tail);
	out[1].len = sizeof(tail);
	memset(&args, 0, sizeof(args));
	args.vecs = PTR(out);
	args.n_vecs = 2;
	ASSERT_EQ(0, sys_bus1_recv(self->owner, &args, sizeof(args), 0));
	EXPECT_EQ((__u64)BUS1_MSG_DATA, args.type);
	EXPECT_EQ(self->node, args.id);
	EXPECT_EQ(11ULL, args.n_bytes);
	EXPECT_EQ(0ULL, args.n_handles);
	EXPECT_EQ(0ULL, args.n_fds);
	EXPECT_EQ(0ULL, args.flags);
	EXPECT_EQ(0, memcmp(head, "hell", 4));
	EXPECT_STREQ("o, bus1", tail);
	EXPECT_EQ(geteuid(), args.uid);
	EXPECT_EQ(getegid(), args.gid);
	EXPECT_EQ(getpid(), args.pid);
	EXPECT_EQ(sys_gettid(), args.tid);
	expect_empty(_metadata, self->owner);

	/* First in, first out; an empty payload is a message too. */
	ASSERT_EQ(1, send_str(self->holder, self->handle, "one"));
	ASSERT_EQ(1, send_str(self->holder, self->handle, ""));
	ASSERT_EQ(1, send_str(self->holder, self->handle, "three"));
	expect_data(_metadata, self->owner, self->node, "one");
	expect_data(_metadata, self->owner, self->node, "");
	expect_data(_metadata, self->owner, self->node, "three");
	expect_empty(_metadata, self->owner);

	/* No vectors at all. */
	memset(&msg, 0, sizeof(msg));
	ASSERT_EQ(1, sys_bus1_send(self->holder, &self->handle, 1, &msg,
				   sizeof(msg), 0));
	expect_data(_metadata, self->owner, self->node, "");

	/* Version 0 of both structures (without fds), and a larger one. */
	msg.vecs = PTR(vecs);
	msg.n_vecs = 1;
	ASSERT_EQ(1, sys_bus1_send(self->holder, &self->handle, 1, &msg,
				   BUS1_MESSAGE_SIZE_VER0, 0));
	memset(&bigger, 0, sizeof(bigger));
	bigger.msg = msg;
	ASSERT_EQ(1, sys_bus1_send(self->holder, &self->handle, 1, &bigger.msg,
				   sizeof(bigger), 0));
	for (i = 0; i < 2; i++) {
		memset(tail, 0, sizeof(tail));
		memset(&args, 0, sizeof(args));
		args.vecs = PTR(&out[1]);
		args.n_vecs = 1;
		ASSERT_EQ(0, sys_bus1_recv(self->owner, &args,
					   BUS1_RECV_SIZE_VER0, 0));
		EXPECT_EQ(5ULL, args.n_bytes);
		EXPECT_STREQ("hello", tail);
		/* Past the version 0 size, nothing is written. */
		EXPECT_EQ(0U, args.uid);
		EXPECT_EQ(0, args.pid);
	}

	/* The largest payload, whole. */
	big = malloc(BUS1_PAYLOAD_MAX);
	big_out = malloc(BUS1_PAYLOAD_MAX);
	ASSERT_NE(NULL, big);
	ASSERT_NE(NULL, big_out);
	for (i = 0; i < BUS1_PAYLOAD_MAX; i++)
		big[i] = i % 251;
	memset(big_out, 0, BUS1_PAYLOAD_MAX);
	ASSERT_EQ(1, send_bytes(self->holder, self->handle, big,
				BUS1_PAYLOAD_MAX));
	out[0].base = PTR(big_out);
	out[0].len = BUS1_PAYLOAD_MAX;
	memset(&args, 0, sizeof(args));
	args.vecs = PTR(out);
	args.n_vecs = 1;
	ASSERT_EQ(0, sys_bus1_recv(self->owner, &args, sizeof(args), 0));
	EXPECT_EQ((__u64)BUS1_PAYLOAD_MAX, args.n_bytes);
	EXPECT_EQ(0, memcmp(big, big_out, BUS1_PAYLOAD_MAX));
	free(big);
	free(big_out);

	expect_empty(_metadata, self->owner);
	expect_empty(_metadata, self->holder);
}

/*
 * A handle in a message: the receiver gets handles of its own, usable to
 * send and counted like any other.
 */
TEST_F(bus1, send_handle)
{
	__u64 tnode, to_third, hnode, carried[2];
	struct rmsg m;
	int third;

	third = sys_bus1_open(BUS1_OPEN_NONBLOCK);
	ASSERT_LE(0, third);
	tnode = node_new(third);
	to_third = handle_new(third, tnode, self->holder);
	ASSERT_NE(BUS1_ID_INVALID, to_third);
	hnode = node_new(self->holder);
	ASSERT_NE(BUS1_ID_INVALID, hnode);

	/* A handle and an owned node. */
	carried[0] = to_third;
	carried[1] = hnode;
	ASSERT_EQ(1, send_msg(self->holder, &self->handle, 1, "h", 1,
			      carried, 2, NULL, 0, NULL, 0));
	expect_entry(_metadata, self->owner, BUS1_MSG_DATA, self->node, &m);
	ASSERT_EQ(2ULL, m.r.n_handles);
	EXPECT_NE(BUS1_ID_INVALID, m.handles[0]);
	EXPECT_NE(BUS1_ID_INVALID, m.handles[1]);
	EXPECT_NE(m.handles[0], m.handles[1]);
	EXPECT_NE(self->node, m.handles[0]);
	EXPECT_EQ(2, peer_value(self->owner, "bus1-peer-held-handles", false));

	ASSERT_EQ(1, send_str(self->owner, m.handles[0], "to the third"));
	expect_data(_metadata, third, tnode, "to the third");
	ASSERT_EQ(1, send_str(self->owner, m.handles[1], "to the holder"));
	expect_data(_metadata, self->holder, hnode, "to the holder");

	/* A node carried twice arrives as one handle. */
	carried[1] = to_third;
	ASSERT_EQ(1, send_msg(self->holder, &self->handle, 1, "", 0,
			      carried, 2, NULL, 0, NULL, 0));
	expect_entry(_metadata, self->owner, BUS1_MSG_DATA, self->node, &m);
	ASSERT_EQ(2ULL, m.r.n_handles);
	EXPECT_EQ(m.handles[0], m.handles[1]);

	/* The owner holds three references of the third peer's node. */
	ASSERT_EQ(0, release(self->holder, to_third));
	ASSERT_EQ(0, release(self->owner, m.handles[0]));
	ASSERT_EQ(0, release(self->owner, m.handles[0]));
	expect_empty(_metadata, third);
	ASSERT_EQ(0, release(self->owner, m.handles[0]));
	expect_notification(_metadata, third, BUS1_MSG_NODE_RELEASE, tnode);
	expect_empty(_metadata, third);
	EXPECT_EQ(-ENXIO, release(self->owner, m.handles[0]));
	close(third);
}

/*
 * File descriptors in a message: held by the message, installed with
 * O_CLOEXEC, together with a handle; EMSGSIZE and EMFILE keep the message.
 */
TEST_F(bus1, send_fds)
{
	struct rlimit old, low;
	struct bus1_recv args;
	struct bus1_vec vec;
	__u64 tnode, to_third;
	int p[2], fds[2], free_fd, third;
	struct rmsg m;
	char c;

	ASSERT_EQ(0, pipe2(p, O_CLOEXEC | O_NONBLOCK));
	third = sys_bus1_open(BUS1_OPEN_NONBLOCK);
	ASSERT_LE(0, third);
	tnode = node_new(third);
	to_third = handle_new(third, tnode, self->holder);
	ASSERT_NE(BUS1_ID_INVALID, to_third);

	/* The write end of a pipe, and an O_PATH descriptor, with a handle. */
	fds[0] = p[1];
	fds[1] = self->path;
	ASSERT_EQ(1, send_msg(self->holder, &self->handle, 1, "fd", 2,
			      &to_third, 1, fds, 2, NULL, 0));
	close(p[1]);
	/* The message holds the write end: no end of file. */
	EXPECT_EQ(-1, read(p[0], &c, 1));
	EXPECT_EQ(EAGAIN, errno);
	EXPECT_EQ(2, peer_value(self->owner, "bus1-queue-fds", false));

	/* Room for all but one descriptor: EMSGSIZE, and the sizes needed. */
	vec.base = PTR(m.data);
	vec.len = sizeof(m.data);
	memset(&args, 0, sizeof(args));
	args.vecs = PTR(&vec);
	args.n_vecs = 1;
	args.handles = PTR(m.handles);
	args.n_handles = 1;
	args.fds = PTR(m.fds);
	args.n_fds = 1;
	EXPECT_EQ(-EMSGSIZE, sys_bus1_recv(self->owner, &args, sizeof(args),
					   0));
	EXPECT_EQ(2ULL, args.n_bytes);
	EXPECT_EQ(1ULL, args.n_handles);
	EXPECT_EQ(2ULL, args.n_fds);
	/* A caller with the version 0 structure has no room for them. */
	args.n_handles = 1;
	args.n_fds = 1234;
	EXPECT_EQ(-EMSGSIZE, sys_bus1_recv(self->owner, &args,
					   BUS1_RECV_SIZE_VER0, 0));
	EXPECT_EQ(2ULL, args.n_bytes);
	EXPECT_EQ(1234ULL, args.n_fds);
	EXPECT_EQ(2, peer_value(self->owner, "bus1-queue-fds", false));

	/* A full descriptor table: EMFILE, and nothing installed. */
	free_fd = lowest_free_fd();
	ASSERT_LE(0, free_fd);
	ASSERT_EQ(0, getrlimit(RLIMIT_NOFILE, &old));
	low = old;
	low.rlim_cur = free_fd;
	ASSERT_EQ(0, setrlimit(RLIMIT_NOFILE, &low));
	EXPECT_EQ(-EMFILE, recv_msg(self->owner, &m));
	ASSERT_EQ(0, setrlimit(RLIMIT_NOFILE, &old));
	EXPECT_EQ(free_fd, lowest_free_fd());
	EXPECT_EQ(0, peer_value(self->owner, "bus1-peer-held-handles", false));

	/* The message stayed queued, whole. */
	expect_entry(_metadata, self->owner, BUS1_MSG_DATA, self->node, &m);
	ASSERT_EQ(2ULL, m.r.n_fds);
	ASSERT_EQ(1ULL, m.r.n_handles);
	EXPECT_EQ(0, memcmp(m.data, "fd", 2));
	EXPECT_EQ(0, peer_value(self->owner, "bus1-queue-fds", false));
	EXPECT_EQ(FD_CLOEXEC, fcntl(m.fds[0], F_GETFD) & FD_CLOEXEC);
	EXPECT_EQ(FD_CLOEXEC, fcntl(m.fds[1], F_GETFD) & FD_CLOEXEC);
	EXPECT_EQ(O_PATH, fcntl(m.fds[1], F_GETFL) & O_PATH);
	/* It is the same pipe. */
	ASSERT_EQ(1, write(m.fds[0], "x", 1));
	ASSERT_EQ(1, read(p[0], &c, 1));
	EXPECT_EQ('x', c);
	close(m.fds[0]);
	close(m.fds[1]);
	/* The last write end is gone: end of file. */
	EXPECT_EQ(0, read(p[0], &c, 1));
	close(p[0]);
	/* The handle works. */
	ASSERT_EQ(1, send_str(self->owner, m.handles[0], "with fds"));
	expect_data(_metadata, third, tnode, "with fds");

	/* An unreceived message gives its files back when it is dropped. */
	ASSERT_EQ(0, pipe2(p, O_CLOEXEC | O_NONBLOCK));
	ASSERT_EQ(1, send_msg(self->holder, &self->handle, 1, "", 0,
			      NULL, 0, &p[1], 1, NULL, 0));
	close(p[1]);
	EXPECT_EQ(-1, read(p[0], &c, 1));
	ASSERT_EQ(0, sys_bus1_peer_reset(self->owner, 0));
	EXPECT_EQ(0, read(p[0], &c, 1));
	close(p[0]);
	close(third);
}

/* bus1_send(): every documented error, without effect. */
TEST_F(bus1, send_errors)
{
	static __u64 many[BUS1_DESTINATIONS_MAX + 1];
	static struct bus1_vec vecs[BUS1_VECS_MAX + 1];
	static __u64 handles[BUS1_HANDLES_MAX + 1];
	static int fds[BUS1_FDS_MAX + 1];
	static char tail[4097];
	__u64 dsts[2], unknown = UNKNOWN_ID;
	struct {
		struct bus1_message msg;
		__u64 extra;
	} bigger;
	struct bus1_vec vec, bad_vec;
	struct bus1_message msg;
	int sv[2], bad_fds[2];
	unsigned int i;
	char *huge;

	for (i = 0; i < ARRAY_SIZE(many); i++)
		many[i] = self->handle;
	for (i = 0; i < ARRAY_SIZE(handles); i++)
		handles[i] = self->handle;
	for (i = 0; i < ARRAY_SIZE(fds); i++)
		fds[i] = self->pipe[0];
	ASSERT_EQ(0, socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv));
	huge = mmap(NULL, BUS1_PAYLOAD_MAX + 1, PROT_READ,
		    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT_NE(MAP_FAILED, huge);

	vec.base = PTR("payload");
	vec.len = 7;
	memset(&msg, 0, sizeof(msg));
	msg.vecs = PTR(&vec);
	msg.n_vecs = 1;
	dsts[0] = self->handle;
	dsts[1] = self->handle;

	save_state(&self->saved, self->owner, self->holder);
#define SEND(m, size, flags) \
	sys_bus1_send(self->holder, &self->handle, 1, (m), (size), (flags))

	/* Flags and counts. */
	EXPECT_FAILS(EINVAL, SEND(&msg, sizeof(msg), 1U << 3));
	EXPECT_FAILS(EINVAL, SEND(&msg, sizeof(msg), 1U << 31));
	EXPECT_FAILS(EINVAL, sys_bus1_send(self->holder, many, 0, &msg,
					   sizeof(msg), 0));
	EXPECT_FAILS(EINVAL, sys_bus1_send(self->holder, many,
					   BUS1_DESTINATIONS_MAX + 1, &msg,
					   sizeof(msg), 0));
	msg.vecs = PTR(vecs);
	msg.n_vecs = BUS1_VECS_MAX + 1;
	EXPECT_FAILS(EINVAL, SEND(&msg, sizeof(msg), 0));
	msg.vecs = PTR(&vec);
	msg.n_vecs = 1;
	/* BUS1_SEND_HANDLES and BUS1_SEND_FDS must tell what it carries. */
	EXPECT_FAILS(EINVAL, SEND(&msg, sizeof(msg), BUS1_SEND_HANDLES));
	EXPECT_FAILS(EINVAL, SEND(&msg, sizeof(msg), BUS1_SEND_FDS));
	msg.handles = PTR(handles);
	msg.n_handles = 1;
	EXPECT_FAILS(EINVAL, SEND(&msg, sizeof(msg), 0));
	EXPECT_FAILS(EINVAL, SEND(&msg, sizeof(msg), BUS1_SEND_FDS));
	msg.n_handles = BUS1_HANDLES_MAX + 1;
	EXPECT_FAILS(EINVAL, SEND(&msg, sizeof(msg), BUS1_SEND_HANDLES));
	msg.handles = 0;
	msg.n_handles = 0;
	msg.fds = PTR(fds);
	msg.n_fds = 1;
	EXPECT_FAILS(EINVAL, SEND(&msg, sizeof(msg), 0));
	EXPECT_FAILS(EINVAL, SEND(&msg, sizeof(msg), BUS1_SEND_HANDLES));
	msg.n_fds = BUS1_FDS_MAX + 1;
	EXPECT_FAILS(EINVAL, SEND(&msg, sizeof(msg), BUS1_SEND_FDS));
	msg.fds = 0;
	msg.n_fds = 0;

	/* Structure sizes. */
	EXPECT_FAILS(EINVAL, SEND(&msg, 8, 0));
	EXPECT_FAILS(EINVAL, SEND(&msg, BUS1_MESSAGE_SIZE_VER0 - 8, 0));
	memset(&bigger, 0, sizeof(bigger));
	bigger.msg = msg;
	bigger.extra = 1;
	EXPECT_FAILS(E2BIG, SEND(&bigger.msg, sizeof(bigger), 0));
	memcpy(tail, &msg, sizeof(msg));
	tail[4096] = 1;
	EXPECT_FAILS(E2BIG, SEND((struct bus1_message *)tail, 4097, 0));

	/* Descriptors: the peer, and the files carried. */
	EXPECT_FAILS(EBADF, sys_bus1_send(-1, &self->handle, 1, &msg,
					  sizeof(msg), 0));
	EXPECT_FAILS(EBADF, sys_bus1_send(self->closed, &self->handle, 1, &msg,
					  sizeof(msg), 0));
	EXPECT_FAILS(EBADF, sys_bus1_send(self->pipe[1], &self->handle, 1,
					  &msg, sizeof(msg), 0));
	EXPECT_FAILS(EBADF, sys_bus1_send(self->path, &self->handle, 1,
					  &msg, sizeof(msg), 0));
	bad_fds[0] = self->pipe[1];
	msg.fds = PTR(bad_fds);
	msg.n_fds = 2;
	bad_fds[1] = self->closed;
	EXPECT_FAILS(EBADF, SEND(&msg, sizeof(msg), BUS1_SEND_FDS));
	bad_fds[1] = -1;
	EXPECT_FAILS(EBADF, SEND(&msg, sizeof(msg), BUS1_SEND_FDS));
	bad_fds[1] = self->owner;
	EXPECT_FAILS(EOPNOTSUPP, SEND(&msg, sizeof(msg), BUS1_SEND_FDS));
	bad_fds[1] = self->holder;
	EXPECT_FAILS(EOPNOTSUPP, SEND(&msg, sizeof(msg), BUS1_SEND_FDS));
	bad_fds[1] = sv[0];
	EXPECT_FAILS(EOPNOTSUPP, SEND(&msg, sizeof(msg), BUS1_SEND_FDS));
	msg.fds = 0;
	msg.n_fds = 0;

	/* The payload limit. */
	bad_vec.base = PTR(huge);
	bad_vec.len = BUS1_PAYLOAD_MAX + 1;
	msg.vecs = PTR(&bad_vec);
	EXPECT_FAILS(EMSGSIZE, SEND(&msg, sizeof(msg), 0));
	vecs[0].base = PTR(huge);
	vecs[0].len = BUS1_PAYLOAD_MAX;
	vecs[1].base = PTR(huge);
	vecs[1].len = 1;
	msg.vecs = PTR(vecs);
	msg.n_vecs = 2;
	EXPECT_FAILS(EMSGSIZE, SEND(&msg, sizeof(msg), 0));
	msg.vecs = PTR(&vec);
	msg.n_vecs = 1;

	/* Ids: twice, unknown (all or nothing), a handle unknown. */
	EXPECT_FAILS(ENOTUNIQ, sys_bus1_send(self->holder, dsts, 2, &msg,
					     sizeof(msg), 0));
	EXPECT_FAILS(ENXIO, sys_bus1_send(self->holder, &unknown, 1, &msg,
					  sizeof(msg), 0));
	dsts[1] = UNKNOWN_ID;
	EXPECT_FAILS(ENXIO, sys_bus1_send(self->holder, dsts, 2, &msg,
					  sizeof(msg), 0));
	msg.handles = PTR(&unknown);
	msg.n_handles = 1;
	EXPECT_FAILS(ENXIO, SEND(&msg, sizeof(msg), BUS1_SEND_HANDLES));
	msg.handles = 0;
	msg.n_handles = 0;

	/* Addresses. */
	EXPECT_FAILS(EFAULT, sys_bus1_send(self->holder, NULL, 1, &msg,
					   sizeof(msg), 0));
	EXPECT_FAILS(EFAULT, sys_bus1_send(self->holder, self->unmapped, 1,
					   &msg, sizeof(msg), 0));
	EXPECT_FAILS(EFAULT, SEND(NULL, sizeof(msg), 0));
	EXPECT_FAILS(EFAULT, SEND(self->unmapped, sizeof(msg), 0));
	msg.vecs = PTR(self->unmapped);
	EXPECT_FAILS(EFAULT, SEND(&msg, sizeof(msg), 0));
	bad_vec.base = PTR(self->unmapped);
	bad_vec.len = 8;
	msg.vecs = PTR(&bad_vec);
	EXPECT_FAILS(EFAULT, SEND(&msg, sizeof(msg), 0));
	msg.vecs = PTR(&vec);
	msg.handles = PTR(self->unmapped);
	msg.n_handles = 1;
	EXPECT_FAILS(EFAULT, SEND(&msg, sizeof(msg), BUS1_SEND_HANDLES));
	msg.handles = 0;
	msg.n_handles = 0;
	msg.fds = PTR(self->unmapped);
	msg.n_fds = 1;
	EXPECT_FAILS(EFAULT, SEND(&msg, sizeof(msg), BUS1_SEND_FDS));
	msg.fds = 0;
	msg.n_fds = 0;
	msg.errors = PTR(self->read_only);
	EXPECT_FAILS(EFAULT, SEND(&msg, sizeof(msg), 0));
	msg.errors = PTR(self->unmapped);
	EXPECT_FAILS(EFAULT, SEND(&msg, sizeof(msg), 0));
	msg.errors = 0;
#undef SEND

	expect_intact(_metadata, self->owner, self->holder, self->node,
		      self->handle);
	munmap(huge, BUS1_PAYLOAD_MAX + 1);
	close(sv[0]);
	close(sv[1]);
}

/*
 * A send to several destinations: one transaction, flagged as a batch in
 * a receiver with several of them; all or nothing, or BUS1_SEND_CONTINUE
 * with an errno per destination; BUS1_DESTINATIONS_MAX destinations.
 */
TEST(send_multicast)
{
	static __u64 nodes[BUS1_DESTINATIONS_MAX];
	static bool got[BUS1_DESTINATIONS_MAX];
	__u64 a1, a2, b, dsts[3], seen[2];
	int s, pa, pb, i, j, missed = 0;
	__s32 errors[3];
	struct rmsg m;

	s = sys_bus1_open(BUS1_OPEN_NONBLOCK);
	pa = sys_bus1_open(BUS1_OPEN_NONBLOCK);
	pb = sys_bus1_open(BUS1_OPEN_NONBLOCK);
	ASSERT_LE(0, s);
	ASSERT_LE(0, pa);
	ASSERT_LE(0, pb);
	a1 = node_new(pa);
	a2 = node_new(pa);
	b = node_new(pb);
	dsts[0] = handle_new(pa, a1, s);
	dsts[1] = handle_new(pa, a2, s);
	dsts[2] = handle_new(pb, b, s);
	for (i = 0; i < 3; i++)
		ASSERT_NE(BUS1_ID_INVALID, dsts[i]);

	errors[0] = 12345;
	errors[1] = 12345;
	errors[2] = 12345;
	ASSERT_EQ(3, send_msg(s, dsts, 3, "all", 3, NULL, 0, NULL, 0,
			      errors, 0));
	EXPECT_EQ(0, errors[0]);
	EXPECT_EQ(0, errors[1]);
	EXPECT_EQ(0, errors[2]);
	/* Two entries on one peer: back to back, the first flagged. */
	ASSERT_EQ(0, recv_msg(pa, &m));
	EXPECT_EQ(BUS1_RECV_FLAG_CONTINUE, m.r.flags);
	seen[0] = m.r.id;
	ASSERT_EQ(0, recv_msg(pa, &m));
	EXPECT_EQ(0ULL, m.r.flags);
	seen[1] = m.r.id;
	EXPECT_EQ(0, memcmp(m.data, "all", 3));
	EXPECT_TRUE((seen[0] == a1 && seen[1] == a2) ||
		    (seen[0] == a2 && seen[1] == a1));
	expect_data(_metadata, pb, b, "all");
	expect_empty(_metadata, pa);
	expect_empty(_metadata, pb);

	/* One destination is destroyed: all or nothing. */
	ASSERT_EQ(0, destroy(pb, b));
	expect_notification(_metadata, pb, BUS1_MSG_NODE_DESTROY, b);
	expect_notification(_metadata, s, BUS1_MSG_NODE_DESTROY, dsts[2]);
	dsts[1] = dsts[2];
	errors[0] = 12345;
	errors[1] = 12345;
	EXPECT_EQ(-EHOSTUNREACH, send_msg(s, dsts, 2, "x", 1, NULL, 0, NULL,
					  0, errors, 0));
	EXPECT_EQ(ECANCELED, errors[0]);
	EXPECT_EQ(EHOSTUNREACH, errors[1]);
	expect_empty(_metadata, pa);
	/* BUS1_SEND_CONTINUE: delivered where possible. */
	errors[0] = 12345;
	errors[1] = 12345;
	EXPECT_EQ(1, send_msg(s, dsts, 2, "y", 1, NULL, 0, NULL, 0, errors,
			      BUS1_SEND_CONTINUE));
	EXPECT_EQ(0, errors[0]);
	EXPECT_EQ(EHOSTUNREACH, errors[1]);
	expect_data(_metadata, pa, a1, "y");
	dsts[1] = UNKNOWN_ID;
	EXPECT_EQ(1, send_msg(s, dsts, 2, "z", 1, NULL, 0, NULL, 0, errors,
			      BUS1_SEND_CONTINUE));
	EXPECT_EQ(0, errors[0]);
	EXPECT_EQ(ENXIO, errors[1]);
	expect_data(_metadata, pa, a1, "z");
	/* Nobody takes it: the call fails. */
	errors[0] = 12345;
	EXPECT_EQ(-EHOSTUNREACH, send_msg(s, &dsts[2], 1, "", 0, NULL, 0, NULL,
					  0, errors, BUS1_SEND_CONTINUE));
	EXPECT_EQ(EHOSTUNREACH, errors[0]);
	expect_empty(_metadata, pa);

	/* The destination limit, on the sender's own nodes. */
	for (i = 0; i < BUS1_DESTINATIONS_MAX; i++) {
		nodes[i] = node_new(s);
		ASSERT_NE(BUS1_ID_INVALID, nodes[i]);
	}
	ASSERT_EQ(BUS1_DESTINATIONS_MAX,
		  send_msg(s, nodes, BUS1_DESTINATIONS_MAX, "", 0, NULL, 0,
			   NULL, 0, NULL, 0));
	for (i = 0; i < BUS1_DESTINATIONS_MAX; i++) {
		ASSERT_EQ(0, recv_msg(s, &m));
		EXPECT_EQ(i < BUS1_DESTINATIONS_MAX - 1 ?
			  BUS1_RECV_FLAG_CONTINUE : 0ULL, m.r.flags);
		/* Each node once. */
		for (j = 0; j < BUS1_DESTINATIONS_MAX; j++) {
			if (nodes[j] == m.r.id && !got[j])
				break;
		}
		if (j < BUS1_DESTINATIONS_MAX)
			got[j] = true;
		else
			missed++;
	}
	EXPECT_EQ(0, missed);
	expect_empty(_metadata, s);
	close(s);
	close(pa);
	close(pb);
}

/* bus1_recv(): every documented error; the message stays queued. */
TEST_F(bus1, recv_errors)
{
	static struct bus1_vec many[BUS1_VECS_MAX + 1];
	char buf[128], small[10], tail[4097];
	__u64 carried[2], ids[2];
	struct bus1_vec vec, bad_vec;
	struct bus1_recv args;
	char payload[100];
	struct rmsg m;

	/* Nothing queued: EAGAIN, for a non-blocking peer. */
	expect_empty(_metadata, self->owner);

	memset(payload, 7, sizeof(payload));
	carried[0] = node_new(self->holder);
	carried[1] = node_new(self->holder);
	ASSERT_EQ(1, send_msg(self->holder, &self->handle, 1, payload,
			      sizeof(payload), carried, 2, NULL, 0, NULL, 0));
	save_state(&self->saved, self->owner, self->holder);

#define RECV(a, size, flags) sys_bus1_recv(self->owner, (a), (size), (flags))
	vec.base = PTR(buf);
	vec.len = sizeof(buf);
	memset(&args, 0, sizeof(args));
	args.vecs = PTR(&vec);
	args.n_vecs = 1;
	args.handles = PTR(ids);
	args.n_handles = 2;
	EXPECT_FAILS(EINVAL, RECV(&args, sizeof(args), 1));
	EXPECT_FAILS(EINVAL, RECV(&args, sizeof(args), 1U << 31));
	EXPECT_FAILS(EINVAL, RECV(&args, 8, 0));
	EXPECT_FAILS(EINVAL, RECV(&args, BUS1_RECV_SIZE_VER0 - 8, 0));
	memset(tail, 0, sizeof(tail));
	memcpy(tail, &args, sizeof(args));
	tail[4096] = 1;
	EXPECT_FAILS(E2BIG, RECV((struct bus1_recv *)tail, sizeof(tail), 0));
	EXPECT_FAILS(EBADF, sys_bus1_recv(-1, &args, sizeof(args), 0));
	EXPECT_FAILS(EBADF, sys_bus1_recv(self->closed, &args, sizeof(args),
					  0));
	EXPECT_FAILS(EBADF, sys_bus1_recv(self->pipe[0], &args, sizeof(args),
					  0));
	EXPECT_FAILS(EBADF, sys_bus1_recv(self->path, &args, sizeof(args), 0));
	args.vecs = PTR(many);
	args.n_vecs = BUS1_VECS_MAX + 1;
	EXPECT_FAILS(EINVAL, RECV(&args, sizeof(args), 0));

	/* Addresses. */
	EXPECT_FAILS(EFAULT, RECV(NULL, sizeof(args), 0));
	EXPECT_FAILS(EFAULT, RECV(self->unmapped, sizeof(args), 0));
	/* The arguments cannot be written back. */
	EXPECT_FAILS(EFAULT, RECV(self->read_only, sizeof(args), 0));
	args.vecs = PTR(self->unmapped);
	args.n_vecs = 1;
	EXPECT_FAILS(EFAULT, RECV(&args, sizeof(args), 0));
	bad_vec.base = PTR(self->read_only);
	bad_vec.len = sizeof(payload);
	args.vecs = PTR(&bad_vec);
	EXPECT_FAILS(EFAULT, RECV(&args, sizeof(args), 0));
	bad_vec.base = PTR(self->unmapped);
	EXPECT_FAILS(EFAULT, RECV(&args, sizeof(args), 0));
	args.vecs = PTR(&vec);
	args.handles = PTR(self->read_only);
	EXPECT_FAILS(EFAULT, RECV(&args, sizeof(args), 0));
	args.handles = PTR(ids);

	/* Too small: EMSGSIZE with the sizes needed. */
	vec.base = PTR(small);
	vec.len = sizeof(small);
	EXPECT_FAILS(EMSGSIZE, RECV(&args, sizeof(args), 0));
	EXPECT_EQ(100ULL, args.n_bytes);
	EXPECT_EQ(2ULL, args.n_handles);
	vec.base = PTR(buf);
	vec.len = sizeof(buf);
	args.n_handles = 1;
	EXPECT_FAILS(EMSGSIZE, RECV(&args, sizeof(args), 0));
	EXPECT_EQ(100ULL, args.n_bytes);
	EXPECT_EQ(2ULL, args.n_handles);
	/* Two vectors, together one byte short. */
	vec.len = 60;
	bad_vec.base = PTR(buf + 60);
	bad_vec.len = 39;
	many[0] = vec;
	many[1] = bad_vec;
	args.vecs = PTR(many);
	args.n_vecs = 2;
	args.n_handles = 2;
	EXPECT_FAILS(EMSGSIZE, RECV(&args, sizeof(args), 0));
	EXPECT_EQ(100ULL, args.n_bytes);
#undef RECV

	/* After all that, the message is there, whole. */
	expect_entry(_metadata, self->owner, BUS1_MSG_DATA, self->node, &m);
	EXPECT_EQ(100ULL, m.r.n_bytes);
	EXPECT_EQ(0, memcmp(payload, m.data, sizeof(payload)));
	ASSERT_EQ(2ULL, m.r.n_handles);
	EXPECT_EQ(2, peer_value(self->owner, "bus1-peer-held-handles", false));
	expect_intact(_metadata, self->owner, self->holder, self->node,
		      self->handle);
}

/*
 * Reports whether the thread @tid is asleep (state S in /proc), which for
 * the threads below means: waiting in bus1_recv().
 */
static bool is_sleeping(pid_t tid)
{
	char path[64], buf[512], *p;
	ssize_t len;
	int fd;

	snprintf(path, sizeof(path), "/proc/self/task/%d/stat", tid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	len = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (len <= 0)
		return false;
	buf[len] = '\0';
	p = strrchr(buf, ')');
	return p && p[1] == ' ' && p[2] == 'S';
}

struct receiver {
	pthread_t thread;
	int peer;
	pid_t tid;		/* set before the receive starts */
	int ret;
	struct rmsg m;
};

static void *receive(void *arg)
{
	struct receiver *r = arg;

	__atomic_store_n(&r->tid, sys_gettid(), __ATOMIC_SEQ_CST);
	r->ret = recv_msg(r->peer, &r->m);
	return NULL;
}

/* Starts a receiver thread, and returns once it waits for a message. */
static int start_receiver(struct receiver *r, int peer)
{
	memset(r, 0, sizeof(*r));
	r->peer = peer;
	if (pthread_create(&r->thread, NULL, receive, r))
		return -1;
	while (!__atomic_load_n(&r->tid, __ATOMIC_SEQ_CST))
		sched_yield();
	while (!is_sleeping(r->tid))
		sched_yield();
	return 0;
}

/*
 * A blocking receive waits for the next message; poll() reports a peer
 * readable exactly when a message is queued, and always writable.
 */
TEST_F(bus1, recv_blocking_and_poll)
{
	__u64 node, handle;
	struct pollfd pfd;
	struct receiver r;
	int p;

	p = sys_bus1_open(0);
	ASSERT_LE(0, p);
	node = node_new(p);
	handle = handle_new(p, node, self->holder);
	ASSERT_NE(BUS1_ID_INVALID, handle);

	pfd.fd = p;
	pfd.events = POLLIN | POLLOUT;
	ASSERT_EQ(1, poll(&pfd, 1, 0));
	EXPECT_EQ(POLLOUT, pfd.revents);

	ASSERT_EQ(0, start_receiver(&r, p));
	ASSERT_EQ(1, send_str(self->holder, handle, "wake up"));
	ASSERT_EQ(0, pthread_join(r.thread, NULL));
	ASSERT_EQ(0, r.ret);
	EXPECT_EQ(node, r.m.r.id);
	EXPECT_EQ(0, memcmp(r.m.data, "wake up", 7));

	ASSERT_EQ(1, send_str(self->holder, handle, "poll"));
	ASSERT_EQ(1, poll(&pfd, 1, 0));
	EXPECT_EQ(POLLIN | POLLOUT, pfd.revents & (POLLIN | POLLOUT));
	expect_data(_metadata, p, node, "poll");
	ASSERT_EQ(1, poll(&pfd, 1, 0));
	EXPECT_EQ(POLLOUT, pfd.revents);
	close(p);
}

static int signals;

static void on_signal(int sig)
{
	(void)sig;
	__atomic_fetch_add(&signals, 1, __ATOMIC_SEQ_CST);
}

/* A signal ends a waiting receive with EINTR, or restarts it (SA_RESTART). */
TEST_F(bus1, recv_signal)
{
	__u64 node, handle;
	struct sigaction sa;
	struct receiver r;
	int p;

	p = sys_bus1_open(0);
	ASSERT_LE(0, p);
	node = node_new(p);
	handle = handle_new(p, node, self->holder);
	ASSERT_NE(BUS1_ID_INVALID, handle);

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	ASSERT_EQ(0, sigaction(SIGUSR1, &sa, NULL));
	ASSERT_EQ(0, start_receiver(&r, p));
	ASSERT_EQ(0, pthread_kill(r.thread, SIGUSR1));
	ASSERT_EQ(0, pthread_join(r.thread, NULL));
	EXPECT_EQ(-EINTR, r.ret);
	EXPECT_EQ(1, __atomic_load_n(&signals, __ATOMIC_SEQ_CST));

	sa.sa_flags = SA_RESTART;
	ASSERT_EQ(0, sigaction(SIGUSR1, &sa, NULL));
	ASSERT_EQ(0, start_receiver(&r, p));
	ASSERT_EQ(0, pthread_kill(r.thread, SIGUSR1));
	while (__atomic_load_n(&signals, __ATOMIC_SEQ_CST) < 2)
		sched_yield();
	/* The handler ran; the receive waits again. */
	while (!is_sleeping(r.tid))
		sched_yield();
	ASSERT_EQ(1, send_str(self->holder, handle, "restarted"));
	ASSERT_EQ(0, pthread_join(r.thread, NULL));
	ASSERT_EQ(0, r.ret);
	EXPECT_EQ(node, r.m.r.id);
	EXPECT_EQ(0, memcmp(r.m.data, "restarted", 9));
	close(p);
}

/*
 * bus1_handle_release(): references are counted, a message sent before
 * the last release is received before the NODE_RELEASE, a handle in a
 * queued message keeps the node referenced, and handing the node out
 * again withdraws a pending notification.
 */
TEST_F(bus1, release)
{
	__u64 bnode, to_b, received;
	struct rmsg m;
	int b;

	/* A second reference. */
	EXPECT_EQ(self->handle, handle_new(self->owner, self->node,
					   self->holder));
	ASSERT_EQ(0, release(self->holder, self->handle));
	expect_empty(_metadata, self->owner);
	ASSERT_EQ(1, send_str(self->holder, self->handle, "still"));
	ASSERT_EQ(0, release(self->holder, self->handle));
	EXPECT_EQ(-ENXIO, release(self->holder, self->handle));
	EXPECT_EQ(-ENXIO, send_str(self->holder, self->handle, "gone"));
	expect_data(_metadata, self->owner, self->node, "still");
	expect_notification(_metadata, self->owner, BUS1_MSG_NODE_RELEASE,
			    self->node);
	expect_empty(_metadata, self->owner);

	/* Handed out again before the owner received the notification. */
	self->handle = handle_new(self->owner, self->node, self->holder);
	ASSERT_NE(BUS1_ID_INVALID, self->handle);
	ASSERT_EQ(0, release(self->holder, self->handle));
	self->handle = handle_new(self->owner, self->node, self->holder);
	ASSERT_NE(BUS1_ID_INVALID, self->handle);
	expect_empty(_metadata, self->owner);

	/* A handle in a queued message is a reference. */
	b = sys_bus1_open(BUS1_OPEN_NONBLOCK);
	ASSERT_LE(0, b);
	bnode = node_new(b);
	to_b = handle_new(b, bnode, self->holder);
	ASSERT_NE(BUS1_ID_INVALID, to_b);
	ASSERT_EQ(1, send_msg(self->holder, &to_b, 1, "", 0, &self->handle, 1,
			      NULL, 0, NULL, 0));
	ASSERT_EQ(0, release(self->holder, self->handle));
	expect_empty(_metadata, self->owner);
	expect_entry(_metadata, b, BUS1_MSG_DATA, bnode, &m);
	ASSERT_EQ(1ULL, m.r.n_handles);
	received = m.handles[0];
	expect_empty(_metadata, self->owner);
	ASSERT_EQ(0, release(b, received));
	expect_notification(_metadata, self->owner, BUS1_MSG_NODE_RELEASE,
			    self->node);

	/* So is one in a message that is dropped unreceived. */
	self->handle = handle_new(self->owner, self->node, self->holder);
	ASSERT_EQ(1, send_msg(self->holder, &to_b, 1, "", 0, &self->handle, 1,
			      NULL, 0, NULL, 0));
	ASSERT_EQ(0, release(self->holder, self->handle));
	expect_empty(_metadata, self->owner);
	close(b);
	expect_notification(_metadata, self->owner, BUS1_MSG_NODE_RELEASE,
			    self->node);
	expect_empty(_metadata, self->owner);
}

/* bus1_handle_release(): every documented error, without effect. */
TEST_F(bus1, release_errors)
{
	__u64 unknown = UNKNOWN_ID;

	save_state(&self->saved, self->owner, self->holder);
	EXPECT_FAILS(EINVAL, sys_bus1_handle_release(self->holder,
						     &self->handle, 1));
	EXPECT_FAILS(EINVAL, sys_bus1_handle_release(self->holder,
						     &self->handle, 1U << 31));
	EXPECT_FAILS(EBADF, sys_bus1_handle_release(-1, &self->handle, 0));
	EXPECT_FAILS(EBADF, sys_bus1_handle_release(self->closed,
						    &self->handle, 0));
	EXPECT_FAILS(EBADF, sys_bus1_handle_release(self->pipe[0],
						    &self->handle, 0));
	EXPECT_FAILS(EBADF, sys_bus1_handle_release(self->path,
						    &self->handle, 0));
	EXPECT_FAILS(EFAULT, sys_bus1_handle_release(self->holder, NULL, 0));
	EXPECT_FAILS(EFAULT, sys_bus1_handle_release(self->holder,
						     self->unmapped, 0));
	EXPECT_FAILS(ENXIO, sys_bus1_handle_release(self->holder, &unknown,
						    0));
	EXPECT_FAILS(EPERM, sys_bus1_handle_release(self->owner, &self->node,
						    0));
	expect_intact(_metadata, self->owner, self->holder, self->node,
		      self->handle);
}

/*
 * bus1_nodes_destroy(): the owner and every holder are notified on their
 * own ids, after the messages sent before; nothing is accepted after;
 * handles to it arrive as BUS1_ID_INVALID; several nodes are one batch.
 */
TEST(destroy_notifies)
{
	__u64 node, node2, h1, h2, h2b, carrier, ids[2];
	int owner, p1, p2, i;
	struct rmsg m;

	owner = sys_bus1_open(BUS1_OPEN_NONBLOCK);
	p1 = sys_bus1_open(BUS1_OPEN_NONBLOCK);
	p2 = sys_bus1_open(BUS1_OPEN_NONBLOCK);
	ASSERT_LE(0, owner);
	ASSERT_LE(0, p1);
	ASSERT_LE(0, p2);
	node = node_new(owner);
	h1 = handle_new(owner, node, p1);
	h2 = handle_new(owner, node, p2);
	ASSERT_NE(BUS1_ID_INVALID, h1);
	ASSERT_NE(BUS1_ID_INVALID, h2);

	ASSERT_EQ(1, send_str(p1, h1, "before"));
	ASSERT_EQ(0, destroy(owner, node));
	EXPECT_EQ(-EHOSTUNREACH, send_str(p2, h2, "after"));
	EXPECT_EQ(BUS1_ID_INVALID, handle_new(p2, h2, p1));
	expect_data(_metadata, owner, node, "before");
	expect_notification(_metadata, owner, BUS1_MSG_NODE_DESTROY, node);
	expect_notification(_metadata, p1, BUS1_MSG_NODE_DESTROY, h1);
	expect_notification(_metadata, p2, BUS1_MSG_NODE_DESTROY, h2);
	/* No release follows a destruction. */
	expect_empty(_metadata, owner);
	EXPECT_EQ(-ENXIO, destroy(owner, node));
	EXPECT_EQ(-ENXIO, send_str(owner, node, "x"));

	/* A handle to the destroyed node arrives as BUS1_ID_INVALID. */
	node2 = node_new(p1);
	carrier = handle_new(p1, node2, p2);
	ASSERT_NE(BUS1_ID_INVALID, carrier);
	ASSERT_EQ(1, send_msg(p2, &carrier, 1, "", 0, &h2, 1, NULL, 0, NULL,
			      0));
	expect_entry(_metadata, p1, BUS1_MSG_DATA, node2, &m);
	ASSERT_EQ(1ULL, m.r.n_handles);
	EXPECT_EQ(BUS1_ID_INVALID, m.handles[0]);
	/* Holders still release their dead handles, once. */
	EXPECT_EQ(0, release(p1, h1));
	EXPECT_EQ(-ENXIO, release(p1, h1));
	EXPECT_EQ(0, release(p2, h2));
	expect_empty(_metadata, owner);

	/* Two nodes in one call: one transaction, in every queue. */
	ids[0] = node_new(owner);
	ids[1] = node_new(owner);
	h1 = handle_new(owner, ids[0], p1);
	h2 = handle_new(owner, ids[0], p2);
	h2b = handle_new(owner, ids[1], p2);
	ASSERT_NE(BUS1_ID_INVALID, h1);
	ASSERT_NE(BUS1_ID_INVALID, h2);
	ASSERT_NE(BUS1_ID_INVALID, h2b);
	ASSERT_EQ(0, sys_bus1_nodes_destroy(owner, ids, 2, 0));
	for (i = 0; i < 2; i++) {
		ASSERT_EQ(0, recv_msg(owner, &m));
		EXPECT_EQ((__u64)BUS1_MSG_NODE_DESTROY, m.r.type);
		EXPECT_EQ(i ? 0ULL : BUS1_RECV_FLAG_CONTINUE, m.r.flags);
		EXPECT_TRUE(m.r.id == ids[0] || m.r.id == ids[1]);
		ASSERT_EQ(0, recv_msg(p2, &m));
		EXPECT_EQ((__u64)BUS1_MSG_NODE_DESTROY, m.r.type);
		EXPECT_EQ(i ? 0ULL : BUS1_RECV_FLAG_CONTINUE, m.r.flags);
		EXPECT_TRUE(m.r.id == h2 || m.r.id == h2b);
	}
	ASSERT_EQ(0, recv_msg(p1, &m));
	EXPECT_EQ((__u64)BUS1_MSG_NODE_DESTROY, m.r.type);
	EXPECT_EQ(h1, m.r.id);
	EXPECT_EQ(0ULL, m.r.flags);
	expect_empty(_metadata, owner);
	expect_empty(_metadata, p1);
	expect_empty(_metadata, p2);
	close(owner);
	close(p1);
	close(p2);
}

/* bus1_nodes_destroy(): every documented error; no node is destroyed. */
TEST_F(bus1, destroy_errors)
{
	static __u64 many[BUS1_NODES_DESTROY_MAX + 1];
	__u64 ids[2], other;
	unsigned int i;

	other = node_new(self->owner);
	ASSERT_NE(BUS1_ID_INVALID, other);
	for (i = 0; i < ARRAY_SIZE(many); i++)
		many[i] = self->node;
	save_state(&self->saved, self->owner, self->holder);
	ids[0] = self->node;
	ids[1] = other;
	EXPECT_FAILS(EINVAL, sys_bus1_nodes_destroy(self->owner, ids, 2, 1));
	EXPECT_FAILS(EINVAL, sys_bus1_nodes_destroy(self->owner, ids, 2,
						    1U << 31));
	EXPECT_FAILS(EINVAL, sys_bus1_nodes_destroy(self->owner, ids, 0, 0));
	EXPECT_FAILS(EINVAL, sys_bus1_nodes_destroy(self->owner, many,
						    BUS1_NODES_DESTROY_MAX + 1,
						    0));
	EXPECT_FAILS(EBADF, sys_bus1_nodes_destroy(-1, ids, 2, 0));
	EXPECT_FAILS(EBADF, sys_bus1_nodes_destroy(self->closed, ids, 2, 0));
	EXPECT_FAILS(EBADF, sys_bus1_nodes_destroy(self->pipe[0], ids, 2, 0));
	EXPECT_FAILS(EBADF, sys_bus1_nodes_destroy(self->path, ids, 2, 0));
	EXPECT_FAILS(EFAULT, sys_bus1_nodes_destroy(self->owner, NULL, 1, 0));
	EXPECT_FAILS(EFAULT, sys_bus1_nodes_destroy(self->owner,
						    self->unmapped, 1, 0));
	/* The ids are checked first: all or none. */
	ids[1] = self->node;
	EXPECT_FAILS(ENOTUNIQ, sys_bus1_nodes_destroy(self->owner, ids, 2, 0));
	ids[1] = UNKNOWN_ID;
	EXPECT_FAILS(ENXIO, sys_bus1_nodes_destroy(self->owner, ids, 2, 0));
	ids[0] = UNKNOWN_ID;
	ids[1] = other;
	EXPECT_FAILS(ENXIO, sys_bus1_nodes_destroy(self->owner, ids, 2, 0));
	/* A handle is not the holder's to destroy. */
	EXPECT_FAILS(EPERM, sys_bus1_nodes_destroy(self->holder, &self->handle,
						   1, 0));
	expect_intact(_metadata, self->owner, self->holder, self->node,
		      self->handle);
	ASSERT_EQ(0, destroy(self->owner, other));
}

/*
 * bus1_peer_reset(): like a close and a new open, keeping the descriptor
 * and the peer id; the others get what a close tells them; ids are not
 * reused.
 */
TEST(reset)
{
	__u64 mine, to_mine, theirs, to_theirs, fresh, to_fresh;
	int p, holder, owner, fds[2];
	long long peer_id;

	p = sys_bus1_open(BUS1_OPEN_NONBLOCK);
	holder = sys_bus1_open(BUS1_OPEN_NONBLOCK);
	owner = sys_bus1_open(BUS1_OPEN_NONBLOCK);
	ASSERT_LE(0, p);
	ASSERT_LE(0, holder);
	ASSERT_LE(0, owner);
	peer_id = peer_value(p, "bus1-peer-id", false);
	ASSERT_LE(0, peer_id);
	mine = node_new(p);
	to_mine = handle_new(p, mine, holder);
	theirs = node_new(owner);
	to_theirs = handle_new(owner, theirs, p);
	ASSERT_NE(BUS1_ID_INVALID, to_mine);
	ASSERT_NE(BUS1_ID_INVALID, to_theirs);
	ASSERT_EQ(1, send_msg(holder, &to_mine, 1, "queued", 6, &to_mine, 1,
			      NULL, 0, NULL, 0));
	EXPECT_EQ(1, peer_value(p, "bus1-queue-messages", false));

	EXPECT_EQ(-EINVAL, sys_bus1_peer_reset(p, 1));
	EXPECT_EQ(-EINVAL, sys_bus1_peer_reset(p, 1U << 31));
	EXPECT_EQ(-EBADF, sys_bus1_peer_reset(-1, 0));
	EXPECT_EQ(-EBADF, sys_bus1_peer_reset(sysconf(_SC_OPEN_MAX) - 1, 0));
	ASSERT_EQ(0, pipe2(fds, O_CLOEXEC));
	EXPECT_EQ(-EBADF, sys_bus1_peer_reset(fds[0], 0));
	close(fds[0]);
	close(fds[1]);
	EXPECT_EQ(1, peer_value(p, "bus1-queue-messages", false));
	EXPECT_EQ(1, peer_value(p, "bus1-peer-nodes", false));

	ASSERT_EQ(0, sys_bus1_peer_reset(p, 0));

	/* The others hear what a close would tell them. */
	expect_notification(_metadata, holder, BUS1_MSG_NODE_DESTROY, to_mine);
	EXPECT_EQ(-EHOSTUNREACH, send_str(holder, to_mine, "x"));
	expect_notification(_metadata, owner, BUS1_MSG_NODE_RELEASE, theirs);
	/* The peer itself: nothing queued, no ids, the same peer id. */
	expect_empty(_metadata, p);
	EXPECT_EQ(0, peer_value(p, "bus1-queue-messages", false));
	EXPECT_EQ(0, peer_value(p, "bus1-peer-nodes", false));
	EXPECT_EQ(0, peer_value(p, "bus1-peer-held-handles", false));
	EXPECT_EQ(peer_id, peer_value(p, "bus1-peer-id", false));
	EXPECT_EQ(-ENXIO, release(p, to_theirs));
	EXPECT_EQ(-ENXIO, destroy(p, mine));
	EXPECT_EQ(-ENXIO, send_str(p, to_theirs, "x"));

	/* Still usable, with new ids. */
	fresh = node_new(p);
	to_fresh = handle_new(p, fresh, holder);
	ASSERT_NE(BUS1_ID_INVALID, to_fresh);
	EXPECT_NE(mine, fresh);
	EXPECT_NE(to_theirs, fresh);
	EXPECT_NE(to_mine, to_fresh);
	ASSERT_EQ(1, send_str(holder, to_fresh, "after"));
	expect_data(_metadata, p, fresh, "after");
	expect_empty(_metadata, holder);
	expect_empty(_metadata, owner);
	close(p);
	close(holder);
	close(owner);
}

/* Closing a peer: its nodes are destroyed, its handles released. */
TEST_F(bus1, close)
{
	__u64 hnode, to_hnode;
	struct rmsg m;
	bool released = false, destroyed = false;
	int i;

	hnode = node_new(self->holder);
	to_hnode = handle_new(self->holder, hnode, self->owner);
	ASSERT_NE(BUS1_ID_INVALID, to_hnode);
	/* A message on the holder's queue carries a handle to the node. */
	ASSERT_EQ(1, send_msg(self->owner, &to_hnode, 1, "", 0, &self->node,
			      1, NULL, 0, NULL, 0));
	ASSERT_EQ(1, send_str(self->holder, self->handle, "last words"));
	close(self->holder);
	self->holder = sys_bus1_open(BUS1_OPEN_NONBLOCK);
	ASSERT_LE(0, self->holder);

	expect_data(_metadata, self->owner, self->node, "last words");
	for (i = 0; i < 2; i++) {
		ASSERT_EQ(0, recv_msg(self->owner, &m));
		if (m.r.type == BUS1_MSG_NODE_RELEASE && m.r.id == self->node)
			released = true;
		if (m.r.type == BUS1_MSG_NODE_DESTROY && m.r.id == to_hnode)
			destroyed = true;
	}
	EXPECT_TRUE(released);
	EXPECT_TRUE(destroyed);
	expect_empty(_metadata, self->owner);
	EXPECT_EQ(-EHOSTUNREACH, send_str(self->owner, to_hnode, "x"));
	EXPECT_EQ(0, release(self->owner, to_hnode));
}

/*
 * Order: a message committed before a destruction is received before the
 * NODE_DESTROY, and one sent after it returned is received after, in every
 * queue both reach.
 */
TEST(order_destroy_after_messages)
{
	int o, a, b, s, round;
	__u64 n, na, nb, an, bn, dsts[3];

	o = sys_bus1_open(BUS1_OPEN_NONBLOCK);
	a = sys_bus1_open(BUS1_OPEN_NONBLOCK);
	b = sys_bus1_open(BUS1_OPEN_NONBLOCK);
	s = sys_bus1_open(BUS1_OPEN_NONBLOCK);
	ASSERT_LE(0, o);
	ASSERT_LE(0, a);
	ASSERT_LE(0, b);
	ASSERT_LE(0, s);
	na = node_new(a);
	nb = node_new(b);
	dsts[1] = handle_new(a, na, s);
	dsts[2] = handle_new(b, nb, s);
	ASSERT_NE(BUS1_ID_INVALID, dsts[1]);
	ASSERT_NE(BUS1_ID_INVALID, dsts[2]);

	for (round = 0; round < 16; round++) {
		n = node_new(o);
		an = handle_new(o, n, a);
		bn = handle_new(o, n, b);
		dsts[0] = handle_new(o, n, s);
		ASSERT_NE(BUS1_ID_INVALID, an);
		ASSERT_NE(BUS1_ID_INVALID, bn);
		ASSERT_NE(BUS1_ID_INVALID, dsts[0]);

		ASSERT_EQ(3, send_msg(s, dsts, 3, "m1", 2, NULL, 0, NULL, 0,
				      NULL, 0));
		ASSERT_EQ(1, send_str(a, an, "a1"));
		ASSERT_EQ(0, destroy(o, n));
		ASSERT_EQ(2, send_msg(s, &dsts[1], 2, "m2", 2, NULL, 0, NULL,
				      0, NULL, 0));
		EXPECT_EQ(-EHOSTUNREACH, send_str(a, an, "a2"));

		expect_data(_metadata, o, n, "m1");
		expect_data(_metadata, o, n, "a1");
		expect_notification(_metadata, o, BUS1_MSG_NODE_DESTROY, n);
		expect_empty(_metadata, o);
		expect_data(_metadata, a, na, "m1");
		expect_notification(_metadata, a, BUS1_MSG_NODE_DESTROY, an);
		expect_data(_metadata, a, na, "m2");
		expect_empty(_metadata, a);
		expect_data(_metadata, b, nb, "m1");
		expect_notification(_metadata, b, BUS1_MSG_NODE_DESTROY, bn);
		expect_data(_metadata, b, nb, "m2");
		expect_empty(_metadata, b);
		expect_notification(_metadata, s, BUS1_MSG_NODE_DESTROY,
				    dsts[0]);
		expect_empty(_metadata, s);
		ASSERT_EQ(0, release(a, an));
		ASSERT_EQ(0, release(b, bn));
		ASSERT_EQ(0, release(s, dsts[0]));
	}
	close(o);
	close(a);
	close(b);
	close(s);
}

/* What the concurrency tests send: who, and the how-manieth message. */
struct tag {
	__u32 sender;
	__u32 seq;
};

#define N_CONCURRENT	2000

/*
 * Two processes send N_CONCURRENT messages each to one peer, which receives
 * them as they come: every message exactly once, each sender's in order,
 * with the sender's pid.
 */
TEST(concurrent_senders)
{
	__u32 next[2] = { 0, 0 };
	int receiver, senders[2], i, bad = 0, status;
	__u64 node, handles[2];
	pid_t pids[2];
	struct tag t;
	struct rmsg m;

	receiver = sys_bus1_open(0);
	ASSERT_LE(0, receiver);
	node = node_new(receiver);
	for (i = 0; i < 2; i++) {
		senders[i] = sys_bus1_open(0);
		ASSERT_LE(0, senders[i]);
		handles[i] = handle_new(receiver, node, senders[i]);
		ASSERT_NE(BUS1_ID_INVALID, handles[i]);
	}
	for (i = 0; i < 2; i++) {
		pids[i] = fork();
		ASSERT_LE(0, pids[i]);
		if (pids[i] == 0) {
			t.sender = i;
			for (t.seq = 0; t.seq < N_CONCURRENT; t.seq++) {
				if (send_bytes(senders[i], handles[i], &t,
					       sizeof(t)) != 1)
					_exit(1);
			}
			_exit(0);
		}
	}

	for (i = 0; i < 2 * N_CONCURRENT; i++) {
		ASSERT_EQ(0, recv_msg(receiver, &m));
		ASSERT_EQ(sizeof(t), m.r.n_bytes);
		memcpy(&t, m.data, sizeof(t));
		ASSERT_GT(2U, t.sender);
		if (t.seq != next[t.sender] || m.r.pid != pids[t.sender] ||
		    m.r.id != node)
			bad++;
		next[t.sender] = t.seq + 1;
	}
	for (i = 0; i < 2; i++) {
		ASSERT_EQ(pids[i], waitpid(pids[i], &status, 0));
		EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
		EXPECT_EQ((__u32)N_CONCURRENT, next[i]);
	}
	EXPECT_EQ(0, bad);
	ASSERT_EQ(0, fcntl(receiver, F_SETFL, O_NONBLOCK));
	expect_empty(_metadata, receiver);
	close(receiver);
	close(senders[0]);
	close(senders[1]);
}

struct multicaster {
	pthread_t thread;
	int peer;
	__u32 id;
	__u64 dsts[2];
	int failed;
};

static void *multicast(void *arg)
{
	struct multicaster *mc = arg;
	struct tag t = { .sender = mc->id };

	for (t.seq = 0; t.seq < N_CONCURRENT; t.seq++) {
		if (send_msg(mc->peer, mc->dsts, 2, &t, sizeof(t), NULL, 0,
			     NULL, 0, NULL, 0) != 2)
			mc->failed++;
	}
	return NULL;
}

/*
 * Two threads multicast N_CONCURRENT messages each to the same two peers:
 * both receive every message once, each sender's in order, and all of
 * them in the same order.
 */
TEST(concurrent_multicast_order)
{
	static struct tag logs[2][2 * N_CONCURRENT];
	struct multicaster mc[2];
	int receivers[2], i, j, bad = 0;
	__u32 next[2];
	__u64 nodes[2];
	struct rmsg m;

	for (i = 0; i < 2; i++) {
		receivers[i] = sys_bus1_open(BUS1_OPEN_NONBLOCK);
		ASSERT_LE(0, receivers[i]);
		nodes[i] = node_new(receivers[i]);
		ASSERT_NE(BUS1_ID_INVALID, nodes[i]);
	}
	for (i = 0; i < 2; i++) {
		memset(&mc[i], 0, sizeof(mc[i]));
		mc[i].peer = sys_bus1_open(BUS1_OPEN_NONBLOCK);
		ASSERT_LE(0, mc[i].peer);
		mc[i].id = i;
		for (j = 0; j < 2; j++) {
			mc[i].dsts[j] = handle_new(receivers[j], nodes[j],
						   mc[i].peer);
			ASSERT_NE(BUS1_ID_INVALID, mc[i].dsts[j]);
		}
	}
	for (i = 0; i < 2; i++)
		ASSERT_EQ(0, pthread_create(&mc[i].thread, NULL, multicast,
					    &mc[i]));
	for (i = 0; i < 2; i++) {
		ASSERT_EQ(0, pthread_join(mc[i].thread, NULL));
		EXPECT_EQ(0, mc[i].failed);
	}

	for (i = 0; i < 2; i++) {
		next[0] = 0;
		next[1] = 0;
		for (j = 0; j < 2 * N_CONCURRENT; j++) {
			ASSERT_EQ(0, recv_msg(receivers[i], &m));
			ASSERT_EQ(sizeof(struct tag), m.r.n_bytes);
			memcpy(&logs[i][j], m.data, sizeof(struct tag));
			ASSERT_GT(2U, logs[i][j].sender);
			if (logs[i][j].seq != next[logs[i][j].sender]++)
				bad++;
		}
		expect_empty(_metadata, receivers[i]);
	}
	EXPECT_EQ(0, bad);
	/* Any two transactions in the same order, in both queues. */
	EXPECT_EQ(0, memcmp(logs[0], logs[1], sizeof(logs[0])));
	for (i = 0; i < 2; i++) {
		close(receivers[i]);
		close(mc[i].peer);
	}
}

/*
 * The limits on nodes, held handles and queued messages: up to each
 * works, one more fails with EDQUOT and no effect, and room made is
 * usable again.  The limits are taken from fdinfo.
 */
TEST_F_TIMEOUT(bus1, limits, 300)
{
	long long room, used, limit;
	__u64 id, extra, handle;
	int other, i;
	struct rmsg m;

	lower_limits(self->sysctl_saved, 256);
	/* Nodes of the owner, each handed to the holder while it may hold it. */
	room = peer_value(self->owner, "bus1-peer-nodes", true) -
	       peer_value(self->owner, "bus1-peer-nodes", false);
	limit = peer_value(self->owner, "bus1-user-nodes", true) -
		peer_value(self->owner, "bus1-user-nodes", false);
	if (limit < room)
		room = limit;
	if (room <= 0 || room > (1 << 20))
		SKIP(return, "node limit %lld", room);
	handle = 0;
	for (i = 0; i < room; i++) {
		id = node_new(self->owner);
		ASSERT_NE(BUS1_ID_INVALID, id);
		if (handle != BUS1_ID_INVALID)
			handle = handle_new(self->owner, id, self->holder);
	}
	save_state(&self->saved, self->owner, self->holder);
	EXPECT_FAILS(EDQUOT, sys_bus1_node_create(self->owner, &id, 0));
	/* Room for one more. */
	ASSERT_EQ(0, destroy(self->owner, self->node));
	expect_notification(_metadata, self->owner, BUS1_MSG_NODE_DESTROY,
			    self->node);
	expect_notification(_metadata, self->holder, BUS1_MSG_NODE_DESTROY,
			    self->handle);
	ASSERT_EQ(0, release(self->holder, self->handle));
	self->node = node_new(self->owner);
	ASSERT_NE(BUS1_ID_INVALID, self->node);
	used = peer_value(self->holder, "bus1-peer-held-handles", false);
	limit = peer_value(self->holder, "bus1-peer-held-handles", true);
	self->handle = handle_new(self->owner, self->node, self->holder);
	if (used < limit)
		ASSERT_NE(BUS1_ID_INVALID, self->handle);

	/* Handles held by the holder, which holds as many as it may. */
	other = sys_bus1_open(BUS1_OPEN_NONBLOCK);
	ASSERT_LE(0, other);
	extra = node_new(other);
	ASSERT_NE(BUS1_ID_INVALID, extra);
	if (peer_value(self->holder, "bus1-peer-held-handles", false) ==
	    limit) {
		save_state(&self->saved, self->owner, self->holder);
		EXPECT_FAILS(EDQUOT, sys_bus1_handle_transfer(other, &extra,
							      self->holder,
							      &id, 0));
	} else {
		TH_LOG("the holder's handle limit was not reached");
	}
	ASSERT_EQ(0, sys_bus1_peer_reset(self->owner, 0));
	ASSERT_EQ(0, sys_bus1_peer_reset(self->holder, 0));
	expect_empty(_metadata, self->owner);
	expect_empty(_metadata, self->holder);
	EXPECT_EQ(0, peer_value(self->holder, "bus1-peer-held-handles", false));

	/* Messages queued on the owner. */
	self->node = node_new(self->owner);
	self->handle = handle_new(self->owner, self->node, self->holder);
	ASSERT_NE(BUS1_ID_INVALID, self->handle);
	room = peer_value(self->owner, "bus1-queue-messages", true);
	limit = peer_value(self->owner, "bus1-user-messages", true) -
		peer_value(self->owner, "bus1-user-messages", false);
	if (limit < room)
		room = limit;
	/* An empty message costs 256 bytes (bus1(7)). */
	limit = peer_value(self->owner, "bus1-queue-bytes", true) / 256;
	if (limit < room)
		room = limit;
	if (room <= 0 || room > (1 << 18))
		SKIP(return, "message limit %lld", room);
	for (i = 0; i < room; i++)
		ASSERT_EQ(1, send_bytes(self->holder, self->handle, "", 0));
	save_state(&self->saved, self->owner, self->holder);
	EXPECT_FAILS(EDQUOT, send_bytes(self->holder, self->handle, "", 0));
	ASSERT_EQ(0, recv_msg(self->owner, &m));
	EXPECT_EQ(1, send_bytes(self->holder, self->handle, "", 0));
	ASSERT_EQ(0, sys_bus1_peer_reset(self->owner, 0));
	EXPECT_EQ(0, peer_value(self->owner, "bus1-queue-messages", false));
	close(other);
}

int main(int argc, char **argv)
{
	int fd, no_such_call;

	/* How the kernel fails a system call it does not have. */
	syscall(-1);
	no_such_call = errno;
	fd = sys_bus1_open(0);
	if (fd == -no_such_call)
		ksft_exit_skip("bus1 is not available (CONFIG_BUS1=n)\n");
	if (fd >= 0)
		close(fd);
	return test_harness_run(argc, argv);
}
