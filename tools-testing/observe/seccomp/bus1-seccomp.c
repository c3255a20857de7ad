// SPDX-License-Identifier: GPL-2.0
/*
 * bus1-seccomp - run a command under an example seccomp policy for bus1,
 * built with libseccomp.
 *
 *	bus1-seccomp [-v] POLICY COMMAND [ARG...]
 *
 * The policies are those of Documentation/userspace-api/bus1.rst
 * ("Filtering with seccomp") and tools-testing/bus1/tests/filter.rs, which
 * runs this program.  A denied call fails with EACCES and has no effect;
 * every other call is allowed.
 *
 * libseccomp 2.5 has no names for the bus1 calls:
 * seccomp_syscall_resolve_name("bus1_send") fails (-v shows it), and
 * SCMP_SYS(bus1_send) does not compile.  The rules therefore use the raw
 * numbers, which seccomp_rule_add() accepts for the native architecture
 * (a number libseccomp resolves by name is used when it does).  That is
 * also the limit: libseccomp translates a rule to each further
 * architecture of a filter through the call's name, so once another one is
 * added (seccomp_arch_add(ctx, SCMP_ARCH_X86)), rules with these numbers
 * fail (EFAULT, EOPNOTSUPP for seccomp_rule_add_exact()).  The filter is
 * for x86_64 only, and a call through any other ABI -- i386 (int 0x80, a
 * 32-bit program) or x32 -- takes the bad-architecture action, which is set
 * to kill the process here (libseccomp's default kills only the thread).
 * A hand-written BPF filter can apply the rules to i386 too: bus1 has the
 * same numbers 473-480 there, and x32 would add 0x40000000 (filter.rs does
 * that).
 */
#include <errno.h>
#include <seccomp.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <linux/bus1.h>

/* The x86_64 numbers, the same on i386 and in asm-generic. */
#ifndef __NR_bus1_open
#define __NR_bus1_open			473
#define __NR_bus1_node_create		474
#define __NR_bus1_handle_transfer	475
#define __NR_bus1_handle_release	476
#define __NR_bus1_nodes_destroy		477
#define __NR_bus1_send			478
#define __NR_bus1_recv			479
#define __NR_bus1_peer_reset		480
#endif

/*
 * The number of a bus1 call: libseccomp's, if it knows the name, else the
 * raw number.
 */
static int nr(const char *name, int raw)
{
	int resolved = seccomp_syscall_resolve_name(name);

	return resolved == __NR_SCMP_ERROR ? raw : resolved;
}

#define NR(call) nr(#call, __NR_##call)

static const struct {
	const char *name;
	int raw;
} calls[] = {
#define CALL(call) { #call, __NR_##call }
	CALL(bus1_open), CALL(bus1_node_create), CALL(bus1_handle_transfer),
	CALL(bus1_handle_release), CALL(bus1_nodes_destroy), CALL(bus1_send),
	CALL(bus1_recv), CALL(bus1_peer_reset),
#undef CALL
};

/*
 * The policies.  Each adds the rules that deny; the arguments compared are
 * all int or unsigned int, hence the 32-bit comparisons SCMP_A*_32().
 */

/* bus1_send() with n_destinations (argument 2) other than 1. */
static int unicast_only(scmp_filter_ctx ctx, uint32_t deny)
{
	return seccomp_rule_add(ctx, deny, NR(bus1_send), 1,
				SCMP_A2_32(SCMP_CMP_NE, 1));
}

/* bus1_send() with BUS1_SEND_FDS in its flags (argument 5). */
static int no_fds(scmp_filter_ctx ctx, uint32_t deny)
{
	return seccomp_rule_add(ctx, deny, NR(bus1_send), 1,
				SCMP_A5_32(SCMP_CMP_MASKED_EQ, BUS1_SEND_FDS,
					   BUS1_SEND_FDS));
}

/* bus1_send() with BUS1_SEND_HANDLES, and bus1_handle_transfer(). */
static int no_handles(scmp_filter_ctx ctx, uint32_t deny)
{
	int r;

	r = seccomp_rule_add(ctx, deny, NR(bus1_send), 1,
			     SCMP_A5_32(SCMP_CMP_MASKED_EQ, BUS1_SEND_HANDLES,
					BUS1_SEND_HANDLES));
	return r ?: seccomp_rule_add(ctx, deny, NR(bus1_handle_transfer), 0);
}

/* Everything but bus1_recv() and bus1_handle_release(). */
static int receive_only(scmp_filter_ctx ctx, uint32_t deny)
{
	const int denied[] = {
		NR(bus1_open), NR(bus1_node_create), NR(bus1_handle_transfer),
		NR(bus1_nodes_destroy), NR(bus1_send), NR(bus1_peer_reset),
	};
	unsigned int i;
	int r = 0;

	for (i = 0; !r && i < sizeof(denied) / sizeof(denied[0]); i++)
		r = seccomp_rule_add(ctx, deny, denied[i], 0);
	return r;
}

/* bus1_open(): only the peers the process has. */
static int no_new_peers(scmp_filter_ctx ctx, uint32_t deny)
{
	return seccomp_rule_add(ctx, deny, NR(bus1_open), 0);
}

static const struct policy {
	const char *name;
	const char *what;
	int (*add)(scmp_filter_ctx ctx, uint32_t deny);
} policies[] = {
	{ "unicast-only", "bus1_send() to other than one destination",
	  unicast_only },
	{ "no-fds", "bus1_send() with BUS1_SEND_FDS", no_fds },
	{ "no-handles",
	  "bus1_send() with BUS1_SEND_HANDLES, bus1_handle_transfer()",
	  no_handles },
	{ "receive-only", "all but bus1_recv(), bus1_handle_release()",
	  receive_only },
	{ "no-new-peers", "bus1_open()", no_new_peers },
};

#define N_POLICIES (sizeof(policies) / sizeof(policies[0]))

static int usage(void)
{
	unsigned int i;

	fprintf(stderr, "usage: bus1-seccomp [-v] POLICY COMMAND [ARG...]\n"
		"denies with EACCES, by policy:\n");
	for (i = 0; i < N_POLICIES; i++)
		fprintf(stderr, "  %-14s %s\n", policies[i].name,
			policies[i].what);
	return 2;
}

int main(int argc, char **argv)
{
	const struct policy *policy = NULL;
	const struct scmp_version *v;
	scmp_filter_ctx ctx;
	int verbose = 0;
	unsigned int i;
	int r;

	if (argc > 1 && !strcmp(argv[1], "-v")) {
		verbose = 1;
		argv++;
		argc--;
	}
	if (argc < 3)
		return usage();
	for (i = 0; i < N_POLICIES; i++)
		if (!strcmp(argv[1], policies[i].name))
			policy = &policies[i];
	if (!policy)
		return usage();

	v = seccomp_version();
	if (verbose) {
		fprintf(stderr, "bus1-seccomp: libseccomp %u.%u.%u, policy %s\n",
			v->major, v->minor, v->micro, policy->name);
		for (i = 0; i < sizeof(calls) / sizeof(calls[0]); i++) {
			r = seccomp_syscall_resolve_name(calls[i].name);
			fprintf(stderr, "bus1-seccomp: seccomp_syscall_resolve_name(\"%s\") = %d%s: using %d\n",
				calls[i].name, r,
				r == __NR_SCMP_ERROR ? " (__NR_SCMP_ERROR)" : "",
				nr(calls[i].name, calls[i].raw));
		}
	}

	ctx = seccomp_init(SCMP_ACT_ALLOW);
	if (!ctx) {
		fprintf(stderr, "bus1-seccomp: seccomp_init failed\n");
		return 1;
	}
	/* i386 and x32 calls: kill the whole process, not one thread. */
	r = seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH,
			     SCMP_ACT_KILL_PROCESS);
	if (!r)
		r = policy->add(ctx, SCMP_ACT_ERRNO(EACCES));
	if (!r && verbose)
		r = seccomp_export_pfc(ctx, STDERR_FILENO);
	/* Sets no_new_privs (SCMP_FLTATR_CTL_NNP) and loads the filter. */
	if (!r)
		r = seccomp_load(ctx);
	seccomp_release(ctx);
	if (r) {
		fprintf(stderr, "bus1-seccomp: %s: %s\n", policy->name,
			strerror(-r));
		return 1;
	}

	execvp(argv[2], argv + 2);
	fprintf(stderr, "bus1-seccomp: %s: %s\n", argv[2], strerror(errno));
	return 127;
}
