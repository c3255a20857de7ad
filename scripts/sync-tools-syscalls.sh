#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# Bring tools/'s copies of the system call tables in line with the kernel
# sources of TREE, as the perf maintainers do after a uapi change: copy
# every table that tools/perf/check-headers.sh finds different.
#
#   sync-tools-syscalls.sh TREE
#
# perf builds its syscall name tables from these copies
# (tools/perf/trace/beauty/syscalltbl.sh), so without this `perf trace`
# does not know the bus1 calls by name.  Idempotent: a file is written only
# when it differs.  Prints each file it updates.
#
# The alpha, parisc and arm64 compat copies in tools/perf are not touched:
# check-headers.sh looks for their originals under paths that no longer
# exist, so they are not kept in sync upstream either, and copying them
# would bring in calls older than bus1 (setxattrat ... fchroot), which is a
# sync of its own.
set -euo pipefail

tree=${1:?usage: sync-tools-syscalls.sh TREE}
[ -f "$tree/tools/perf/check-headers.sh" ] || {
	echo "error: $tree is not a kernel tree with tools/perf" >&2
	exit 1
}

# tools/ copy, kernel original (as in tools/perf/check-headers.sh).
PAIRS=(
	"tools/include/uapi/asm-generic/unistd.h include/uapi/asm-generic/unistd.h"
	"tools/scripts/syscall.tbl scripts/syscall.tbl"
	"tools/perf/arch/x86/entry/syscalls/syscall_32.tbl arch/x86/entry/syscalls/syscall_32.tbl"
	"tools/perf/arch/x86/entry/syscalls/syscall_64.tbl arch/x86/entry/syscalls/syscall_64.tbl"
	"tools/perf/arch/powerpc/entry/syscalls/syscall.tbl arch/powerpc/kernel/syscalls/syscall.tbl"
	"tools/perf/arch/s390/entry/syscalls/syscall.tbl arch/s390/kernel/syscalls/syscall.tbl"
	"tools/perf/arch/mips/entry/syscalls/syscall_n64.tbl arch/mips/kernel/syscalls/syscall_n64.tbl"
	"tools/perf/arch/arm/entry/syscalls/syscall.tbl arch/arm/tools/syscall.tbl"
	"tools/perf/arch/sh/entry/syscalls/syscall.tbl arch/sh/kernel/syscalls/syscall.tbl"
	"tools/perf/arch/sparc/entry/syscalls/syscall.tbl arch/sparc/kernel/syscalls/syscall.tbl"
	"tools/perf/arch/xtensa/entry/syscalls/syscall.tbl arch/xtensa/kernel/syscalls/syscall.tbl"
)

for pair in "${PAIRS[@]}"; do
	read -r copy orig <<<"$pair"
	[ -f "$tree/$orig" ] || { echo "error: no $orig in $tree" >&2; exit 1; }
	[ -f "$tree/$copy" ] || { echo "error: no $copy in $tree" >&2; exit 1; }
	if ! cmp -s "$tree/$orig" "$tree/$copy"; then
		cp -p "$tree/$orig" "$tree/$copy"
		echo "$copy"
	fi
done

# What check-headers.sh (run by every perf build) would still report about
# the tables: a table it checks that is missing above.
left=$(cd "$tree/tools/perf" && bash check-headers.sh 2>&1 |
	grep -E '\.tbl|asm-generic/unistd\.h' || true)
[ -z "$left" ] || {
	echo "error: check-headers.sh still reports:" >&2
	echo "$left" >&2
	exit 1
}
