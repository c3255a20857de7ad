#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# Boot the built kernel and run one command inside it.
#
#   boot.sh [--variant NAME] [--timeout SECONDS] [--console FILE] -- COMMAND [ARGS...]
#
# The guest shares the host's root file system (virtme-ng over 9p), so host
# binaries run as they are.  The command's output and exit status become
# this script's; a guest that hangs or panics is stopped after the timeout
# and the end of its console is shown.
. "$(dirname "$0")/lib.sh"

timeout=${BOOT_TIMEOUT:-600}
console_copy=
while [ $# -gt 0 ]; do
	case $1 in
	--variant) BUILD_DIR=$TREE_CACHE/build-$2; shift 2 ;;
	--timeout) timeout=$2; shift 2 ;;
	--console) console_copy=$2; shift 2 ;;
	--) shift; break ;;
	*) break ;;
	esac
done
[ $# -gt 0 ] || die "usage: boot.sh [--variant NAME] [--timeout S] -- COMMAND..."

kernel=$BUILD_DIR/arch/x86/boot/bzImage
[ -f "$kernel" ] || die "no kernel at $kernel; run scripts/build.sh first"
export PATH=$VENV/bin:$PATH

# KVM is used only if a guest really runs under it: on some hosts /dev/kvm
# opens but guests abort or hang.  The probe result is kept per host kernel
# and QEMU version.
accel_args() {
	local key probe_file
	key="$(uname -r) $(qemu-system-x86_64 --version | head -n1)"
	probe_file=$BUS1_CACHE/kvm-probe
	if [ "$(head -n1 "$probe_file" 2>/dev/null)" != "$key" ]; then
		local result=tcg
		if [ -w /dev/kvm ] &&
			timeout 90 vng --run "$kernel" --memory 512M -- true </dev/null 2>/dev/null | cat >/dev/null; then
			result=kvm
		fi
		printf '%s\n%s\n' "$key" "$result" >"$probe_file"
	fi
	[ "$(sed -n 2p "$probe_file")" = kvm ] || echo --disable-kvm
}

run_dir=$(mktemp -d "${TMPDIR:-/tmp}/bus1-boot.XXXXXX")
trap 'rm -rf "$run_dir"' EXIT
# The command runs through a small script so that its output goes to a file
# of its own, apart from the kernel console.
{
	echo '#!/bin/sh'
	printf 'cd %q || exit 125\n' "$PWD"
	printf '%q ' "$@"
	printf '>%q 2>&1\n' "$run_dir/out"
	printf 'echo $? >%q\n' "$run_dir/rc"
} >"$run_dir/cmd.sh"
chmod +x "$run_dir/cmd.sh"

mode=$(accel_args)
# QEMU reopens its stdout: give it a pipe, never a file.
timeout --foreground -k 10 "$timeout" \
	vng --run "$kernel" $mode --cpus 2 --memory 2G --verbose --append "printk.time=1 ${BOOT_APPEND:-}" \
	--rwdir "$run_dir" --rwdir /tmp -- "$run_dir/cmd.sh" </dev/null 2>&1 |
	cat >"$run_dir/console"
status=${PIPESTATUS[0]}
[ -z "$console_copy" ] || cp "$run_dir/console" "$console_copy"

[ -f "$run_dir/out" ] && cat "$run_dir/out"
if [ ! -f "$run_dir/rc" ]; then
	if [ "$status" = 124 ]; then
		echo "boot.sh: guest did not finish within ${timeout}s (hang?); end of console:" >&2
	else
		echo "boot.sh: guest ended without finishing the command (vng exit $status); end of console:" >&2
	fi
	tail -n 60 "$run_dir/console" >&2
	exit 125
fi
rc=$(cat "$run_dir/rc")
problems='Kernel panic|BUG:|WARNING:|Oops|KASAN|UBSAN:|KFENCE|possible circular locking|possible recursive locking|suspected memory leak'
if grep -qE "$problems" "$run_dir/console"; then
	echo "boot.sh: the kernel reported a problem; console excerpt:" >&2
	grep -E -A 20 "$problems" "$run_dir/console" | head -n 80 >&2
	[ "$rc" != 0 ] || rc=126
fi
exit "$rc"
