#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# The fuzzer's long run: 10,000,000 operations (half differential, half
# concurrent with 2 processes x 4 threads of 3 users) in the checking
# kernel (KASAN, UBSAN, lockdep, kmemleak), then a kmemleak scan.  boot.sh
# fails the run on any kernel report.  Hours, not minutes: see README.
#
#   test-debug.sh [--ops N] [--seed S] [--variant kasan|""]
#
# --variant "" runs it in the bus1 kernel instead (faster, no checkers).
. "$(dirname "$0")/lib.sh"

ops=10000000
seed=$(od -An -N6 -tu8 /dev/urandom | tr -d ' ')
variant=kasan
while [ $# -gt 0 ]; do
	case $1 in
	--ops) ops=$2; shift 2 ;;
	--seed) seed=$2; shift 2 ;;
	--variant) variant=$2; shift 2 ;;
	*) die "unknown argument $1" ;;
	esac
done

"$BUS1_ROOT/scripts/build.sh" ${variant:+--variant "$variant"}
(cd "$BUS1_ROOT/tools-testing" && cargo build -q --release --bin bus1-fuzz)
fuzz=$BUS1_ROOT/tools-testing/target/release/bus1-fuzz
script=$(mktemp /tmp/bus1-debug.XXXXXX)
trap 'rm -f "$script"' EXIT
cat >"$script" <<EOS
#!/bin/sh
"$fuzz" --long --ops $ops --seed $seed || exit 1
mountpoint -q /sys/kernel/debug || mount -t debugfs none /sys/kernel/debug
[ -e /sys/kernel/debug/kmemleak ] || exit 0
# Two scans: kmemleak reports an object only once it stayed unreferenced.
echo scan >/sys/kernel/debug/kmemleak; echo scan >/sys/kernel/debug/kmemleak
leaks=\$(cat /sys/kernel/debug/kmemleak)
[ -z "\$leaks" ] || { echo "kmemleak: suspected memory leaks:"; echo "\$leaks"; exit 1; }
echo "kmemleak: no leaks"
EOS
chmod +x "$script"
log "fuzzing: $ops operations, seed $seed, ${variant:-bus1} kernel"
exec "$BUS1_ROOT/scripts/boot.sh" ${variant:+--variant "$variant"} --timeout 86400 -- "$script"
