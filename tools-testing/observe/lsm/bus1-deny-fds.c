// SPDX-License-Identifier: GPL-2.0
/*
 * bus1-deny-fds - load and attach the BPF LSM policy of bus1-deny-fds.bpf.c
 * (file descriptors do not cross users) until SIGINT or SIGTERM, then
 * print what the hooks saw and detach.
 *
 *   bus1-deny-fds [--hooks send,file]
 *
 * --hooks names the enforcing hooks to attach: "send" (lsm/bus1_send),
 * "file" (lsm/bus1_transfer_file) or both (the default).  The counting
 * hook lsm/bus1_transfer_handle is always attached.
 *
 * Prints "bus1-deny-fds: attached hooks=..." once the policy is in force,
 * and at the end one line of counters:
 *
 *   bus1-deny-fds: send_checked=N send_denied=N file_checked=N file_denied=N handle_checked=N
 *
 * Needs a kernel with CONFIG_BPF_LSM and "bpf" in the active LSMs
 * (CONFIG_LSM or the lsm= boot parameter).
 */
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <bpf/libbpf.h>

#include "bus1-deny-fds.skel.h"

/* From linux/lsm.h and the syscall tables of Linux 6.8 and later. */
#ifndef __NR_lsm_list_modules
#define __NR_lsm_list_modules 461
#endif
#define LSM_ID_BPF 109

static int print_libbpf(enum libbpf_print_level level, const char *fmt,
			va_list args)
{
	if (level == LIBBPF_DEBUG)
		return 0;
	return vfprintf(stderr, fmt, args);
}

static void usage(void)
{
	fprintf(stderr, "usage: bus1-deny-fds [--hooks send|file|send,file]\n");
	exit(2);
}

/* Says so when the BPF LSM is not among the active security modules. */
static void lsm_hint(void)
{
	unsigned long long ids[32];
	unsigned int size = sizeof(ids);
	long i, n = syscall(__NR_lsm_list_modules, ids, &size, 0);

	for (i = 0; i < n; i++)
		if (ids[i] == LSM_ID_BPF)
			return;
	if (n >= 0)
		fprintf(stderr,
			"bus1-deny-fds: the BPF LSM is not active; boot with lsm=...,bpf (CONFIG_LSM)\n");
}

int main(int argc, char **argv)
{
	bool send = true, file = true;
	struct bus1_deny_fds_bpf *skel;
	sigset_t set;
	int err, sig;

	if (argc == 3 && !strcmp(argv[1], "--hooks")) {
		send = strstr(argv[2], "send") != NULL;
		file = strstr(argv[2], "file") != NULL;
		if (!send && !file)
			usage();
	} else if (argc != 1) {
		usage();
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	libbpf_set_print(print_libbpf);

	/* Signals are taken with sigwait(); block them before anything runs. */
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	sigprocmask(SIG_BLOCK, &set, NULL);

	skel = bus1_deny_fds_bpf__open();
	if (!skel) {
		fprintf(stderr, "bus1-deny-fds: open: %s\n", strerror(errno));
		return 1;
	}
	bpf_program__set_autoload(skel->progs.bus1_deny_fds_send, send);
	bpf_program__set_autoload(skel->progs.bus1_deny_fds_file, file);
	err = bus1_deny_fds_bpf__load(skel);
	if (err) {
		fprintf(stderr, "bus1-deny-fds: load: %s\n", strerror(-err));
		goto out;
	}
	err = bus1_deny_fds_bpf__attach(skel);
	if (err) {
		fprintf(stderr, "bus1-deny-fds: attach: %s\n", strerror(-err));
		lsm_hint();
		goto out;
	}
	printf("bus1-deny-fds: attached hooks=%s%s%s\n", send ? "send" : "",
	       send && file ? "," : "", file ? "file" : "");

	do
		err = sigwait(&set, &sig);
	while (err == EINTR);

	printf("bus1-deny-fds: send_checked=%llu send_denied=%llu file_checked=%llu file_denied=%llu handle_checked=%llu\n",
	       (unsigned long long)skel->bss->send_checked,
	       (unsigned long long)skel->bss->send_denied,
	       (unsigned long long)skel->bss->file_checked,
	       (unsigned long long)skel->bss->file_denied,
	       (unsigned long long)skel->bss->handle_checked);
out:
	/* Detaches the programs: the policy ends with the loader. */
	bus1_deny_fds_bpf__destroy(skel);
	return err ? 1 : 0;
}
