#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# Show that the tests can fail: build kernels with a deliberately broken
# ordering core, quota, fd check or credential mapping ("mutants") and check
# that the tests meant to catch each break do fail.  Not part of
# scripts/test.sh (each mutant is a kernel rebuild and a boot); run it after
# changing queue.rs, transaction.rs, quota.rs, files.rs, creds.rs or their
# tests.
#
#   mutants.sh [RUNS] [NAME]   RUNS boots per mutant (default 2); only NAME
#
# A mutant whose filter is "fuzz" is one for the fuzzer: the whole in-kernel
# suite runs once (and is expected to miss it), then the fuzzer's
# differential mode with seeds 1..RUNS must catch it.
#
# The mutants are edits of the build tree's ipc/bus1 sources; the tree is
# restored by scripts/build.sh at the end.
. "$(dirname "$0")/lib.sh"

runs=${1:-2}
only=${2:-}
src=$WORK_TREE/ipc/bus1
# The same lock as scripts/build.sh: nobody else builds meanwhile.
exec 9>"$TREE_CACHE/build.lock"
flock -n 9 || { log "waiting for another build to finish"; flock 9; }

# name | file | sed expression | test filter | what it breaks
mutants=(
	"no-clock-raise|transaction.rs|s/d.node.owner.confirm(&d.node, staged, time)/d.node.owner.confirm(\&d.node, staged, 0)/|stress_global_order|step 3: clocks are never raised"
	"per-queue-commit-time|transaction.rs|s/d.node.owner.commit(staged, time, entry);/d.node.owner.commit(staged, if single { time } else { staged.time + 1 }, entry);/|stress_global_order|one commit time for all queues"
	"raise-at-commit|transaction.rs|s/d.node.owner.confirm(&d.node, staged, time)/d.node.owner.confirm(\&d.node, staged, 0)/;s/d.node.owner.commit(staged, time, entry);/d.node.owner.raise_clock(time); d.node.owner.commit(staged, time, entry);/|causality_holds_across_a_wide_multicast|all clocks raised before the first commit"
	"no-alive-check-at-raise|peer/queueing.rs|s/            if !node.is_destroyed() {/            if true {/|multicast_is_atomic_against_a_concurrent_destruction|the destination check in step 3"
	"no-fair-share|quota.rs|s/        if !share.plus(charge.usage).within(\&free_after, \&charge.usage) {/        if false {/|a_hostile_user_cannot_starve|the fair share of foreign senders"
	"no-user-pool|quota.rs|s/        user_pool.check(charge, \&limits::user(), \&slots.user)?;//|a_hostile_user_cannot_starve|the per-user limit"
	"unix-sockets-pass|files.rs|s/ \&\& !is_unix_socket(file)//|bus1_peers_and_unix_sockets_are_refused|refusing AF_UNIX sockets"
	"no-release-withdraw|queue.rs|s/        if self.reading == Some(stamp) {/        if true {/|at_most_one_release_notification|withdrawing a stale release notification"
	"unmapped-uid|creds.rs|s/bindings::from_kuid_munged(ns, self.euid),/self.euid.val,/|ids_are_mapped_into_the_receivers_user_namespace|mapping the uid into the receiver's namespace"
	"trace-staged-time|peer/queueing.rs|s/trace::queue(self, \&Stamp { time, ..staged }, \&info);/trace::queue(self, \&staged, \&info);/|trace_follows_concurrent_multicasts|the commit time in the bus1_queue event"
	# For the fuzzer (test filter "fuzz"): breaks the hand-written tests do
	# not see; the fuzzer must.
	"fds-not-charged|message.rs|s/                fds: self.files.len() as u64,/                fds: 0,/|fuzz|charging the file descriptors a message carries"
	"destroy-keeps-user-node|peer.rs|s/        self.user.user().give_back_objects(ids.len() as u64, 0);//|fuzz|giving back the user's node count when nodes are destroyed"
	"owner-gets-dead-node|peer/handle.rs|s/            return if node.is_destroyed() {/            return if false {/|fuzz|the destroyed check when a node's owner receives a handle to it"
	"received-handles-limited|peer/receive.rs|s/self.acquire_with(r.node(), false, false, slots)/self.acquire_with(r.node(), false, true, slots)/|fuzz|never refusing a received handle"
)

cd "$BUS1_ROOT/tools-testing"
test_bin=$(cargo test -q --no-run --test kernel --message-format=json 2>/dev/null |
	sed -n 's/.*"executable":"\([^"]*\/deps\/kernel-[^"]*\)".*/\1/p' | tail -n1)
[ -n "$test_bin" ] || die "cannot build the in-kernel tests"
cargo build -q --release --bin bus1-fuzz || die "cannot build the fuzzer"
fuzz=$BUS1_ROOT/tools-testing/target/release/bus1-fuzz

survivors=0
for m in "${mutants[@]}"; do
	IFS='|' read -r name file expr filter what <<<"$m"
	[ -z "$only" ] || [ "$only" = "$name" ] || continue
	git -C "$WORK_TREE" checkout -q -- "ipc/bus1/$file"
	sed -i "$expr" "$src/$file"
	git -C "$WORK_TREE" diff --quiet -- "ipc/bus1/$file" && die "mutant $name does not apply"
	kmake bzImage >"$BUS1_CACHE/mutant.log" 2>&1 || {
		tail -n 30 "$BUS1_CACHE/mutant.log"
		die "mutant $name does not build"
	}
	caught=0
	if [ "$filter" = fuzz ]; then
		# The hand-written tests, once: they should miss it (compat32 needs
		# its 32-bit program, which test.sh builds; it tests no accounting).
		out=$("$BUS1_ROOT/scripts/boot.sh" -- "$test_bin" --test-threads=1 --skip compat32:: 2>&1 || true)
		missed="missed by the in-kernel tests"
		if echo "$out" | grep -q '^test .* FAILED$'; then
			missed="also caught by the in-kernel tests: $(echo "$out" | sed -n 's/^test \(.*\) \.\.\. FAILED$/\1/p' | head -n 3 | tr '\n' ' ')"
		fi
		for i in $(seq "$runs"); do
			out=$("$BUS1_ROOT/scripts/boot.sh" -- "$fuzz" --mode differential --ops 50000 --seed "$i" 2>&1 || true)
			echo "$out" | grep -q '^fuzz differential: FAILED' && caught=$((caught + 1))
			echo "$out" | grep -E -A3 '^shortest sequence' | head -n 4 | cut -c1-160 | sed 's/^/      | /' || true
			echo "$out" | grep -E '^  (model|kernel):' | tail -n 2 | cut -c1-200 | sed 's/^/      | /' || true
		done
		what="$what; $missed"
	else
		for i in $(seq "$runs"); do
			out=$("$BUS1_ROOT/scripts/boot.sh" -- "$test_bin" --test-threads=1 "$filter" 2>&1 || true)
			if echo "$out" | grep -q '^test .* FAILED$'; then
				caught=$((caught + 1))
			fi
			echo "$out" | grep -E 'panicked|disagree|before their causes|left:' | head -n 3 | sed 's/^/      | /' || true
		done
	fi
	printf '%-26s caught %d/%d by %s (breaks: %s)\n' "$name" "$caught" "$runs" "$filter" "$what"
	((caught > 0)) || survivors=$((survivors + 1))
	git -C "$WORK_TREE" checkout -q -- "ipc/bus1/$file"
done
exec 9>&-
log "restoring the bus1 kernel"
"$BUS1_ROOT/scripts/build.sh" >/dev/null
((survivors == 0)) || die "$survivors mutant(s) survived: the tests do not catch them"
log "every mutant was caught"
