#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# Run every test: the checks of the patch series on the host, the user-space
# crate's host tests, the bus1 tests inside the booted kernel, and in the
# checking kernel (KASAN, UBSAN, lockdep, kmemleak) the tests again, KUnit,
# the kselftest and the fuzzer.
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
# condition), hence the explicit &&.  The in-kernel tests are a test target
# with `test = false` (they must not run on the host), which --all-targets
# leaves out: clippy checks them by name.
crate_host_tests() {
	cd "$BUS1_ROOT/tools-testing" &&
		cargo fmt --check &&
		cargo clippy -q --all-targets -- -D warnings &&
		cargo clippy -q --test kernel -- -D warnings &&
		cargo test -q --lib &&
		cargo test -q --bin bus1-fuzz
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
	check "user-space crate: fmt, clippy, host tests (with the fuzzer's checker)" crate_host_tests
fi

# --- in-kernel tests ---------------------------------------------------------------
cd "$BUS1_ROOT/tools-testing"
test_bin=$(cargo test -q --no-run --test kernel --message-format=json 2>"$logs/cargo.log" |
	sed -n 's/.*"executable":"\([^"]*\/deps\/kernel-[^"]*\)".*/\1/p' | tail -n1)
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
		env BUS1_STATS_FILE="$stats" BUS1_COMPAT32="$compat32" BUS1_PERF="$perf" \
		"$test_bin" --test-threads=1 "$@" >"$out" 2>&1 || status=$?
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

# The libseccomp policy and the BPF LSM program, and the demo that filter.rs
# runs under bus1-strace.
build_examples() {
	"$BUS1_ROOT/scripts/build-observe.sh" &&
		(cd "$BUS1_ROOT/tools-testing" && cargo build -q --release --example demo)
}

# The 32-bit program that compat32.rs runs in the guest (i386 ABI on the
# x86_64 kernel), and the observing and filtering examples (libseccomp
# policy, BPF LSM program) that the filter and bpf tests run.
compat32=$BUS1_ROOT/tools-testing/target/bus1-compat32
if [ -z "$filter" ]; then
	check "32-bit test program builds (gcc -m32)" "$BUS1_ROOT/scripts/build-compat32.sh"
	check "observing and filtering examples and the demo build" build_examples
else
	"$BUS1_ROOT/scripts/build-compat32.sh" >/dev/null || true
	build_examples >/dev/null 2>&1 || true
fi
# perf built from the patched tree, with tools/'s syscall tables synced as in
# the last patch of the series: the perf tests run its `perf trace`.
perf=false
if perf=$("$BUS1_ROOT/scripts/build-perf.sh" 2>"$logs/build-perf.log"); then
	[ -n "$filter" ] || check "perf builds from the patched tree (tools/ synced)" true
else
	perf=false
	[ -n "$filter" ] || check "perf builds from the patched tree (tools/ synced)" false
	tail -n 20 "$logs/build-perf.log"
fi

run_kernel_tests kernel "" ${filter:+"$filter"}

# --- the checking kernel -----------------------------------------------------------
# One boot of the KASAN kernel (configs/kasan.config) runs the in-kernel tests
# again, the kselftest and the fuzzer, then has kmemleak scan; KUnit ran at
# boot.  Every KTAP and libtest result counts as a test, each fuzzer mode as
# one; boot.sh fails the run on any KASAN, UBSAN, lockdep or BUG report.
fuzz_ops=${BUS1_FUZZ_OPS:-200000}
# Tests whose point is volume (tens of thousands of messages, nodes or
# holders, a memory cgroup filled up) run in the bus1 kernel only: under
# KASAN and TCG each takes minutes.  The stress test runs shorter.
# The BPF and perf tests too: the checking kernel has no BTF (see
# configs/kasan.config), and they test the tools, not bus1's memory safety.
kasan_skip="--skip bpf:: --skip perf:: --skip quota::a_flood_of_empty_messages --skip quota::a_full_destination
	--skip robust::nodes_and_handles_are_limited --skip robust::the_flood_of_the_issue
	--skip robust::memory_is_charged --skip robust::a_node_with_100000_holders"
kasan_skip=$(echo $kasan_skip)
run_checking_kernel() {
	local dir script start=$SECONDS status=0 kselftest fuzz seed
	dir=$(mktemp -d /tmp/bus1-kasan.XXXXXX)
	if ! "$BUS1_ROOT/scripts/build.sh" --variant kasan >"$logs/build-kasan.log" 2>&1; then
		failed=$((failed + 1))
		failures+=("KASAN kernel builds")
		tail -n 40 "$logs/build-kasan.log"
		return
	fi
	if ! kselftest=$("$BUS1_ROOT/scripts/build-kselftest.sh" 2>"$logs/kselftest-build.log"); then
		failed=$((failed + 1))
		failures+=("kselftest builds (make -C tools/testing/selftests TARGETS=bus1)")
		tail -n 20 "$logs/kselftest-build.log"
		kselftest=false
	fi
	if ! (cd "$BUS1_ROOT/tools-testing" && cargo build -q --release --bin bus1-fuzz) >"$logs/fuzz-build.log" 2>&1; then
		failed=$((failed + 1))
		failures+=("fuzzer builds")
		tail -n 20 "$logs/fuzz-build.log"
	fi
	fuzz=$BUS1_ROOT/tools-testing/target/release/bus1-fuzz
	seed=${BUS1_FUZZ_SEED:-$(od -An -N6 -tu8 /dev/urandom | tr -d ' ')}
	script=$dir/run.sh
	cat >"$script" <<EOS
#!/bin/sh
cd "$dir"
env BUS1_COMPAT32="$compat32" BUS1_STRESS_ROUNDS=2000 "$test_bin" --test-threads=1 ${filter:+"$filter"} $kasan_skip >tests.log 2>&1
if [ -z "$filter" ]; then
	"$kselftest" >kselftest.log 2>&1
	"$fuzz" --ops $fuzz_ops --seed $seed >fuzz.log 2>&1
fi
mountpoint -q /sys/kernel/debug || mount -t debugfs none /sys/kernel/debug
# Two scans: kmemleak reports an object only once it stayed unreferenced.
echo scan >/sys/kernel/debug/kmemleak
echo scan >/sys/kernel/debug/kmemleak
cat /sys/kernel/debug/kmemleak >kmemleak.log
EOS
	chmod +x "$script"
	log "booting the KASAN kernel for the tests, the kselftest and the fuzzer"
	"$BUS1_ROOT/scripts/boot.sh" --variant kasan --timeout 3600 --console "$dir/console" -- "$script" \
		>"$logs/kasan-boot.log" 2>&1 || status=$?
	cp "$dir"/*.log "$dir/console" "$logs/" 2>/dev/null || true
	mv "$logs/tests.log" "$logs/kasan-tests.log" 2>/dev/null || true

	# KUnit, from the console: every test case of every suite.
	local kpass kfail
	kpass=$(grep -cE '^\[[ 0-9.]+\]     ok [0-9]+ ' "$dir/console" || true)
	kfail=$(grep -cE '^\[[ 0-9.]+\]     not ok [0-9]+ ' "$dir/console" || true)
	sed -nE 's/^\[[ 0-9.]+\] # ([a-z0-9_]+): (pass:.*)/kunit: \1: \2/p' "$dir/console"
	passed=$((passed + kpass))
	failed=$((failed + kfail))
	((kfail == 0)) || failures+=("kunit: $kfail failed (see $logs/console)")
	((kpass > 0)) || { failed=$((failed + 1)); failures+=("kunit: no results on the console"); }

	# The in-kernel tests again, under KASAN.
	local tpass tfail
	grep -E '^test .* \.\.\. ' "$dir/tests.log" 2>/dev/null | sed "s/^test /kasan: /" | grep -v ' ok$' || true
	tpass=$(grep -cE '^test .* \.\.\. ok$' "$dir/tests.log" 2>/dev/null || true)
	tfail=$(grep -cE '^test .* \.\.\. FAILED$' "$dir/tests.log" 2>/dev/null || true)
	passed=$((passed + tpass))
	failed=$((failed + tfail))
	echo "kasan: $tpass in-kernel tests passed, $tfail failed"
	if ((tfail > 0)); then
		mapfile -t -O "${#failures[@]}" failures < <(sed -n 's/^test \(.*\) \.\.\. FAILED$/kasan: \1/p' "$dir/tests.log")
	fi

	if [ -z "$filter" ]; then
		# The kselftest's KTAP: "ok N name" / "not ok N name".
		local spass sfail
		spass=$(grep -cE '^ok [0-9]+ ' "$dir/kselftest.log" 2>/dev/null || true)
		sfail=$(grep -cE '^not ok [0-9]+ ' "$dir/kselftest.log" 2>/dev/null || true)
		grep -E '^# (PASSED|FAILED|Totals)' "$dir/kselftest.log" 2>/dev/null | sed 's/^/kselftest: /'
		passed=$((passed + spass))
		failed=$((failed + sfail))
		((sfail == 0 && spass > 0)) || {
			failures+=("kselftest: $spass passed, $sfail failed")
			((sfail > 0)) || failed=$((failed + 1))
			grep -E '^not ok|^# .*(Expected|FAIL)' "$dir/kselftest.log" | head -n 20 | sed 's/^/      | /'
		}

		# The fuzzer: one test per mode, one for the errnos it saw.
		local mode
		grep -E '^fuzz ' "$dir/fuzz.log" 2>/dev/null | grep -v ': FAILED' || true
		for mode in differential concurrent; do
			if grep -q "^fuzz $mode: ok" "$dir/fuzz.log" 2>/dev/null; then
				passed=$((passed + 1))
			else
				failed=$((failed + 1))
				failures+=("fuzz $mode (seed $seed)")
				sed -n "/^fuzz $mode: FAILED/,/^fuzz /p" "$dir/fuzz.log" | head -n 60 | sed 's/^/      | /'
			fi
		done
		grep -E '^bus1_' "$dir/fuzz.log" 2>/dev/null | sed 's/^/fuzz coverage: /' || true
		if grep -q '^fuzz coverage:.*never hit' "$dir/fuzz.log" 2>/dev/null &&
			! grep -q 'UNDOCUMENTED' "$dir/fuzz.log"; then
			passed=$((passed + 1))
		else
			failed=$((failed + 1))
			failures+=("fuzz: only documented errnos")
		fi
	fi

	# kmemleak after everything.
	if [ -s "$dir/kmemleak.log" ]; then
		failed=$((failed + 1))
		failures+=("kmemleak: suspected leaks")
		head -n 40 "$dir/kmemleak.log" | sed 's/^/      | /'
	elif [ -f "$dir/kmemleak.log" ]; then
		passed=$((passed + 1))
		echo "kasan: kmemleak: no leaks"
	fi
	if [ "$status" != 0 ]; then
		failed=$((failed + 1))
		failures+=("KASAN kernel: boot and run (exit $status)")
		tail -n 40 "$logs/kasan-boot.log" | sed 's/^/      | /'
	fi
	rm -rf "$dir"
	echo "kasan: boot+run $((SECONDS - start))s"
}
run_checking_kernel

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
