#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# Run every test: the checks of the patch series on the host, the user-space
# crate's host tests, and the bus1 tests inside the booted kernel.
#
#   test.sh              everything; ends with "N passed, N failed"
#   test.sh FILTER       only the in-kernel tests whose name contains FILTER
#
# Exit status is non-zero when anything failed.
. "$(dirname "$0")/lib.sh"

filter=${1:-}
passed=0
failed=0
failures=()
logs=$BUS1_CACHE/test-logs
rm -rf "$logs"
mkdir -p "$logs"

# check NAME COMMAND...: one host-side test; its output goes to a log that is
# shown only when it fails.
check() {
	local name=$1 log
	shift
	log=$logs/$(echo "$name" | tr -c 'a-zA-Z0-9_\n-' _).log
	local start=$SECONDS
	if "$@" >"$log" 2>&1; then
		passed=$((passed + 1))
		printf 'ok    %-55s %4ds\n' "$name" $((SECONDS - start))
	else
		failed=$((failed + 1))
		failures+=("$name")
		printf 'FAIL  %-55s %4ds\n' "$name" $((SECONDS - start))
		tail -n 40 "$log" | sed 's/^/      | /'
	fi
}

summary() {
	echo
	((${#failures[@]} == 0)) || printf 'failed: %s\n' "${failures[@]}"
	echo "$passed passed, $failed failed"
	[ "$failed" = 0 ]
}

# --- host-side checks of the series -------------------------------------------
patches_up_to_date() {
	local tmp
	tmp=$(mktemp -d)
	"$BUS1_ROOT/scripts/gen-patches.sh" "$tmp"
	diff -ru "$BUS1_ROOT/patches" "$tmp" || {
		echo "patches/ differs from the sources: run scripts/gen-patches.sh"
		rm -rf "$tmp"
		return 1
	}
	rm -rf "$tmp"
}

checkpatch_strict() {
	local out
	# Run from the kernel tree: inside this repository checkpatch would
	# take the tracked .patch files for source files.
	out=$(cd "$WORK_TREE" && scripts/checkpatch.pl --strict --show-types \
		$(ls "$BUS1_ROOT"/patches/[0-9][0-9][0-9][0-9]-*.patch | grep -v /0000-) 2>&1 || true)
	echo "$out"
	# Clean means no error, warning or check in any patch.
	! echo "$out" | grep -qE '^(ERROR|WARNING|CHECK):'
}

man_pages_check() {
	local page warnings
	for page in "$BUS1_ROOT"/Documentation/man/*.[0-9]; do
		warnings=$(groff -man -ww -z "$page" 2>&1)
		[ -z "$warnings" ] || { echo "$page: $warnings"; return 1; }
	done
}

rustfmt_check() {
	rustfmt --edition 2021 --check --config-path "$WORK_TREE/.rustfmt.toml" \
		"$BUS1_ROOT"/ipc-bus1/*.rs "$BUS1_ROOT"/ipc-bus1/peer/*.rs
}

clippy_check() {
	# A build directory of its own: CLIPPY=1 changes the command line of
	# every Rust object, which would make the main build redo rust/ twice.
	local out dir=$TREE_CACHE/build-clippy
	mkdir -p "$dir"
	cmp -s "$BUILD_DIR/.config" "$dir/.config" || cp "$BUILD_DIR/.config" "$dir/.config"
	# Lint every time, not only when bus1.o is out of date.
	rm -f "$dir/ipc/bus1/bus1.o"
	out=$(BUILD_DIR=$dir kmake CLIPPY=1 CLIPPY_DRIVER=/usr/bin/clippy-driver ipc/bus1/ 2>&1)
	echo "$out"
	echo "$out" | grep -q 'CLIPPY .*ipc/bus1/bus1.o' &&
		! echo "$out" | grep -qE '^(warning|error)'
}

# Functions run by check() run with errexit off (they are an `if`
# condition), hence the explicit &&.
crate_host_tests() {
	cd "$BUS1_ROOT/tools-testing" &&
		cargo fmt --check &&
		cargo clippy -q --all-targets -- -D warnings &&
		cargo test -q --lib
}

if [ -z "$filter" ]; then
	"$BUS1_ROOT/scripts/setup-toolchain.sh"
	# patches/ is generated against the pinned base only.
	[ -n "${KERNEL_SRC:-}" ] || check "patches/ is generated from the sources" patches_up_to_date
fi
if ! "$BUS1_ROOT/scripts/build.sh" >"$logs/build.log" 2>&1; then
	failed=$((failed + 1))
	failures+=("series applies with git am and the kernel builds")
	tail -n 60 "$logs/build.log"
	summary
	exit 1
fi
if [ -z "$filter" ]; then
	check "series applies with git am and the kernel builds" true
	check "checkpatch.pl --strict is clean" checkpatch_strict
	check "man pages render without warnings" man_pages_check
	check "ipc/bus1 is rustfmt clean" rustfmt_check
	check "ipc/bus1 is clippy clean (CLIPPY=1)" clippy_check
	check "user-space crate: fmt, clippy, host tests" crate_host_tests
fi

# --- in-kernel tests ---------------------------------------------------------------
cd "$BUS1_ROOT/tools-testing"
test_bin=$(cargo test -q --no-run --test kernel --message-format=json 2>"$logs/cargo.log" |
	sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -n1)
if [ -z "$test_bin" ]; then
	cat "$logs/cargo.log"
	failed=$((failed + 1))
	failures+=("build of the in-kernel tests")
	summary
	exit 1
fi

# run_kernel_tests LABEL VARIANT TEST-ARGS...: boot a kernel (VARIANT "" is
# the bus1 kernel) and run the in-kernel test binary in it; every libtest
# result counts as one test.
run_kernel_tests() {
	local label=$1 variant=$2 status=0 start=$SECONDS out kpass kfail stats
	shift 2
	out=$logs/kernel-tests${variant:+-$variant}.log
	# The guest can write to /tmp only.
	stats=$(mktemp /tmp/bus1-stats.XXXXXX)
	log "booting the ${variant:-bus1} kernel for $label"
	"$BUS1_ROOT/scripts/boot.sh" ${variant:+--variant "$variant"} -- \
		env BUS1_STATS_FILE="$stats" BUS1_COMPAT32="$compat32" "$test_bin" --test-threads=1 "$@" >"$out" 2>&1 || status=$?
	grep -E '^test .* \.\.\. ' "$out" | sed "s/^test /$label: /"
	if [ -s "$stats" ]; then sed "s/^/$label: measured: /" "$stats"; fi
	kpass=$(grep -cE '^test .* \.\.\. ok$' "$out" || true)
	kfail=$(grep -cE '^test .* \.\.\. FAILED$' "$out" || true)
	passed=$((passed + kpass))
	failed=$((failed + kfail))
	if ((kfail > 0)); then
		sed -n '/^failures:$/,/^test result/p' "$out" | sed 's/^/      | /'
		mapfile -t -O "${#failures[@]}" failures < <(sed -n "s/^test \(.*\) \.\.\. FAILED$/$label: \1/p" "$out")
	fi
	if ! grep -q '^test result:' "$out" || { [ "$status" != 0 ] && ((kfail == 0)); }; then
		failed=$((failed + 1))
		failures+=("$label: boot and run (exit $status)")
		tail -n 60 "$out" | sed 's/^/      | /'
	fi
	rm -f "$stats"
	echo "$label: $kpass passed, $kfail failed, boot+run $((SECONDS - start))s"
}

# The 32-bit program that compat32.rs runs in the guest (i386 ABI on the
# x86_64 kernel).
compat32=$BUS1_ROOT/tools-testing/target/bus1-compat32
if [ -z "$filter" ]; then
	check "32-bit test program builds (gcc -m32)" "$BUS1_ROOT/scripts/build-compat32.sh"
else
	"$BUS1_ROOT/scripts/build-compat32.sh" >/dev/null || true
fi

run_kernel_tests kernel "" ${filter:+"$filter"}
if [ -z "$filter" ]; then
	if "$BUS1_ROOT/scripts/build.sh" --variant nobus1 >"$logs/build-nobus1.log" 2>&1; then
		run_kernel_tests nobus1 nobus1 --ignored --exact without_config_bus1_open_fails_with_enosys
	else
		failed=$((failed + 1))
		failures+=("kernel without bus1 builds")
		tail -n 40 "$logs/build-nobus1.log"
	fi
fi
summary
