#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# Run the in-kernel tests in the debug kernel (lockdep, KFENCE, SLUB
# debugging, kmemleak, debug objects), then have kmemleak scan and report.
# boot.sh fails the run on any lockdep, KFENCE, BUG or WARNING report.
. "$(dirname "$0")/lib.sh"

"$BUS1_ROOT/scripts/build.sh" --variant debug
compat32=$("$BUS1_ROOT/scripts/build-compat32.sh")
cd "$BUS1_ROOT/tools-testing"
test_bin=$(cargo test -q --no-run --test kernel --message-format=json |
	sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -n1)
script=$(mktemp /tmp/bus1-debug.XXXXXX)
trap 'rm -f "$script"' EXIT
cat >"$script" <<EOS
#!/bin/sh
BUS1_COMPAT32="$compat32" "$test_bin" --test-threads=1 "\$@" || exit 1
mountpoint -q /sys/kernel/debug || mount -t debugfs none /sys/kernel/debug
# Two scans: kmemleak reports an object only when it stays unreferenced.
echo scan >/sys/kernel/debug/kmemleak; sleep 2; echo scan >/sys/kernel/debug/kmemleak
leaks=\$(cat /sys/kernel/debug/kmemleak)
[ -z "\$leaks" ] || { echo "kmemleak: suspected memory leaks:"; echo "\$leaks"; exit 1; }
echo "kmemleak: no leaks"
EOS
chmod +x "$script"
exec "$BUS1_ROOT/scripts/boot.sh" --variant debug --timeout 1200 -- "$script" "$@"
