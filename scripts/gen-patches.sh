#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# Generate the bus1 patch series from the sources in this repository.
#
#   gen-patches.sh [OUTDIR]     (default: patches/)
#
# The series is built as commits on top of the kernel base in a scratch
# worktree, then exported with `git format-patch`.  Dates, identities and
# commit ids are fixed so the output depends on the sources only: running it
# twice gives the same bytes, which is what `scripts/test.sh` checks.
. "$(dirname "$0")/lib.sh"

out=${1:-$BUS1_ROOT/patches}
series=$BUS1_ROOT/scripts/series
kedit=$BUS1_ROOT/scripts/kedit.py

# Syscall numbers are ABI: fixed here, checked to be free in the base.
# NR_BUS1_OPEN is the first; the others follow in this order.
NR_BUS1_OPEN=473
SYSCALLS=(bus1_open bus1_node_create bus1_handle_transfer bus1_handle_release
	bus1_nodes_destroy bus1_send bus1_recv bus1_peer_reset)

"$BUS1_ROOT/scripts/fetch-kernel.sh"

gen=$BUS1_CACHE/gen
# One generation at a time: they share the scratch worktree.
exec 8>"$BUS1_CACHE/gen.lock"
flock 8
if [ ! -e "$gen/.git" ]; then
	git -C "$KERNEL_GIT" worktree prune
	git -C "$KERNEL_GIT" worktree add -q --detach "$gen" "$BASE_TAG"
fi
cd "$gen"
git checkout -q -f -B bus1-series "$BASE_TAG"
git clean -q -fdx

export GIT_AUTHOR_NAME=$SERIES_AUTHOR_NAME GIT_COMMITTER_NAME=$SERIES_AUTHOR_NAME
export GIT_AUTHOR_EMAIL=$SERIES_AUTHOR_EMAIL GIT_COMMITTER_EMAIL=$SERIES_AUTHOR_EMAIL
export GIT_AUTHOR_DATE=$SERIES_DATE GIT_COMMITTER_DATE=$SERIES_DATE

commit() {
	local msg=$1
	shift
	git add -f -- "$@"
	git -c core.hooksPath=/dev/null commit -q -s -F "$series/$msg"
}

# A syscall table line: the entry point starts at column $4 when the name
# leaves room, else one tab after it, as in the existing tables.
table_entry() {
	local nr=$1 abi=$2 name=$3 col=$((16 + ${#3})) tabs=""
	while ((col < $4)); do
		tabs+=$'\t'
		col=$(((col / 8 + 1) * 8))
	done
	printf '%s\t%s\t%s%s' "$nr" "$abi" "$name" "${tabs:-$'\t'}sys_$name"
}

syscall_free() {
	! grep -qE "^$1[[:space:]]" "$2" || die "syscall number $1 is taken in $2"
}

# --- 1: Rust helpers bus1 needs ----------------------------------------------
python3 "$kedit" rust/helpers/task.c before '^#endif /\* CONFIG_USER_NS \*/' '
__rust_helper uid_t rust_helper_from_kuid_munged(struct user_namespace *to, kuid_t uid)
{
	return from_kuid_munged(to, uid);
}

__rust_helper gid_t rust_helper_from_kgid_munged(struct user_namespace *to, kgid_t gid)
{
	return from_kgid_munged(to, gid);
}'
python3 "$kedit" rust/helpers/task.c before '^__rust_helper struct user_namespace \*rust_helper_current_user_ns\(' \
	'__rust_helper kgid_t rust_helper_current_egid(void)
{
	return current_egid();
}

__rust_helper int rust_helper_cond_resched(void)
{
	return cond_resched();
}
'
python3 "$kedit" rust/helpers/cred.c before '^__rust_helper void rust_helper_put_cred\(' \
	'__rust_helper const struct cred *rust_helper_get_current_cred(void)
{
	return get_current_cred();
}
'
commit rust-helpers.txt rust/helpers/task.c rust/helpers/cred.c

# --- 2: LSM hooks for bus1 ----------------------------------------------------------
lsm=$series/lsm
python3 "$kedit" include/linux/lsm_hook_defs.h before '^LSM_HOOK\(int, 0, ptrace_access_check,' \
	"$(cat "$lsm/lsm_hook_defs.h.txt")"
python3 "$kedit" include/linux/security.h before '^int security_ptrace_access_check\(' \
	"$(cat "$lsm/security.h-decl.txt")"
python3 "$kedit" include/linux/security.h before '^static inline int security_ptrace_access_check\(' \
	"$(cat "$lsm/security.h-stub.txt")"$'\n'
python3 "$kedit" security/security.c after '^EXPORT_SYMBOL_GPL\(security_binder_transfer_file\);$' \
	$'\n'"$(cat "$lsm/security.c.txt")"
python3 "$kedit" rust/helpers/security.c before '^#endif$' "$(cat "$lsm/rust-helpers-security.c.txt")"
python3 "$kedit" rust/kernel/security.rs before '^/// A security context string\.$' \
	"$(cat "$lsm/security.rs.txt")"$'\n'
commit lsm-hooks.txt include/linux/lsm_hook_defs.h include/linux/security.h security/security.c \
	rust/helpers/security.c rust/kernel/security.rs

# --- 3: trace events ----------------------------------------------------------------
cp "$BUS1_ROOT/ipc-bus1/include/trace/events/bus1.h" include/trace/events/bus1.h
# The bus1 entry starts here, with its first file.
python3 "$kedit" MAINTAINERS maintainers "$(cat "$series/maintainers.txt")"
commit trace-events.txt include/trace/events/bus1.h MAINTAINERS

# --- 4: the subsystem with its first system call -----------------------------
mkdir -p ipc/bus1/peer
cp "$BUS1_ROOT"/ipc-bus1/{Kconfig,Makefile,bus1.h,syscalls.c,events.c,*.rs} ipc/bus1/
cp "$BUS1_ROOT"/ipc-bus1/peer/*.rs ipc/bus1/peer/
cp "$BUS1_ROOT/uapi/bus1.h" include/uapi/linux/bus1.h
python3 "$kedit" init/Kconfig before '^config WATCH_QUEUE$' 'source "ipc/bus1/Kconfig"
'
python3 "$kedit" ipc/Makefile after '^obj-' 'obj-$(CONFIG_BUS1) += bus1/'
python3 "$kedit" include/linux/syscalls.h before '^struct iattr;$' \
	'struct bus1_message;
struct bus1_recv;'
python3 "$kedit" include/linux/syscalls.h before '^asmlinkage long sys_msgget\(' \
	"$(cat "$series/syscalls.h.txt")"
python3 "$kedit" kernel/sys_ni.c before '^COND_SYSCALL\(msgget\);' \
	"$(printf 'COND_SYSCALL(%s);\n' "${SYSCALLS[@]}" | head -c -1)"
python3 "$kedit" rust/bindings/bindings_helper.h before '^#include <linux/auxiliary_bus.h>' \
	'#include <linux/anon_inodes.h>'
python3 "$kedit" rust/bindings/bindings_helper.h before '^#if IS_ENABLED\(CONFIG_ANDROID_BINDER_IPC_RUST\)' \
	'#if IS_ENABLED(CONFIG_BUS1)
#include "../../ipc/bus1/bus1.h"
#endif
'
python3 "$kedit" rust/uapi/uapi_helper.h before '^#include <uapi/linux/ethtool.h>' \
	'#include <uapi/linux/bus1.h>'
python3 "$kedit" MAINTAINERS after '^F:	include/trace/events/bus1.h$' \
	'F:	include/uapi/linux/bus1.h
F:	ipc/bus1/'
commit subsystem.txt ipc/bus1 include/uapi/linux/bus1.h init/Kconfig ipc/Makefile \
	include/linux/syscalls.h kernel/sys_ni.c rust/bindings/bindings_helper.h \
	rust/uapi/uapi_helper.h MAINTAINERS

# --- 5: syscall numbers ---------------------------------------------------------
# Every architecture's table, as Documentation/process/adding-syscalls.rst
# asks: table, ABI column, column of the entry point, number offset (alpha
# numbers its calls 110 above the others).  No bus1 call needs a compat
# entry point: there are no 64-bit scalars and no pointer-sized fields.
TABLES=(
	"arch/x86/entry/syscalls/syscall_64.tbl common 40 0"
	"arch/x86/entry/syscalls/syscall_32.tbl i386 40 0"
	"scripts/syscall.tbl common 48 0"
	"arch/arm/tools/syscall.tbl common 48 0"
	"arch/arm64/tools/syscall_32.tbl common 48 0"
	"arch/alpha/kernel/syscalls/syscall.tbl common 48 110"
	"arch/m68k/kernel/syscalls/syscall.tbl common 48 0"
	"arch/microblaze/kernel/syscalls/syscall.tbl common 48 0"
	"arch/mips/kernel/syscalls/syscall_n32.tbl n32 48 0"
	"arch/mips/kernel/syscalls/syscall_n64.tbl n64 48 0"
	"arch/mips/kernel/syscalls/syscall_o32.tbl o32 48 0"
	"arch/parisc/kernel/syscalls/syscall.tbl common 48 0"
	"arch/powerpc/kernel/syscalls/syscall.tbl common 48 0"
	"arch/s390/kernel/syscalls/syscall.tbl common 48 0"
	"arch/sh/kernel/syscalls/syscall.tbl common 48 0"
	"arch/sparc/kernel/syscalls/syscall.tbl common 48 0"
	"arch/xtensa/kernel/syscalls/syscall.tbl common 48 0"
)
table_files=()
for table in "${TABLES[@]}"; do
	read -r file abi col offset <<<"$table"
	nr=$((NR_BUS1_OPEN + offset))
	lines=()
	for name in "${SYSCALLS[@]}"; do
		syscall_free $nr "$file"
		lines+=("$(table_entry $nr "$abi" "$name" "$col")")
		nr=$((nr + 1))
	done
	prev=$((NR_BUS1_OPEN + offset - 1))
	python3 "$kedit" "$file" after "^$prev\\s+$abi" "$(printf '%s\n' "${lines[@]}" | head -c -1)"
	table_files+=("$file")
done
nr=$NR_BUS1_OPEN
unistd="/* ipc/bus1/syscalls.c */"
for name in "${SYSCALLS[@]}"; do
	unistd+=$'\n'"#define __NR_$name $nr"$'\n'"__SYSCALL(__NR_$name, sys_$name)"
	nr=$((nr + 1))
done
python3 "$kedit" include/uapi/asm-generic/unistd.h before '^#undef __NR_syscalls' "$unistd"$'\n'
python3 "$kedit" include/uapi/asm-generic/unistd.h sub \
	'^#define __NR_syscalls [0-9]+' "#define __NR_syscalls $nr"
commit syscall-numbers.txt "${table_files[@]}" include/uapi/asm-generic/unistd.h

# --- 6: documentation -----------------------------------------------------------
cp "$BUS1_ROOT/Documentation/userspace-api/bus1.rst" Documentation/userspace-api/bus1.rst
python3 "$kedit" Documentation/userspace-api/index.rst after '^   rseq$' '   bus1'
python3 "$kedit" MAINTAINERS before '^F:	include/trace/events/bus1.h$' \
	'F:	Documentation/userspace-api/bus1.rst'
commit documentation.txt Documentation/userspace-api MAINTAINERS

# --- 7: kselftests --------------------------------------------------------------
mkdir -p tools/testing/selftests/bus1
cp "$BUS1_ROOT"/tools-testing/selftests/bus1/{Makefile,config,.gitignore,bus1_test.c} \
	tools/testing/selftests/bus1/
python3 "$kedit" tools/testing/selftests/Makefile after '^TARGETS \+= breakpoints$' 'TARGETS += bus1'
python3 "$kedit" MAINTAINERS after '^F:	ipc/bus1/$' 'F:	tools/testing/selftests/bus1/'
commit selftests.txt tools/testing/selftests/bus1 tools/testing/selftests/Makefile MAINTAINERS

# --- 8: perf's copies of the syscall tables -------------------------------------------
# As the perf maintainers sync tools/ after a uapi change; last, so that it
# can be taken or dropped on its own.
mapfile -t synced < <("$BUS1_ROOT/scripts/sync-tools-syscalls.sh" .)
((${#synced[@]})) || die "tools/ is in sync already: the series adds no syscall?"
commit tools-sync.txt "${synced[@]}"

# --- export ---------------------------------------------------------------------
git config branch.bus1-series.description "$(cat "$series/cover-letter.txt")"
mkdir -p "$out"
rm -f "$out"/*.patch
git format-patch -q --zero-commit --no-signature --cover-letter \
	--cover-from-description=subject --subject-prefix="RFC PATCH" \
	-o "$out" "$BASE_TAG..bus1-series"
log "wrote $(ls "$out"/*.patch | wc -l) files to ${out#"$BUS1_ROOT"/}"
