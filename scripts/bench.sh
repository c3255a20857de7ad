#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# Build the kernel if needed, boot it and run the benchmarks in one boot.
#
#   bench.sh [ROUND_TRIPS]
. "$(dirname "$0")/lib.sh"

"$BUS1_ROOT/scripts/build.sh"
(cd "$BUS1_ROOT/tools-testing" && cargo build -q --release --example bench)
exec "$BUS1_ROOT/scripts/boot.sh" -- "$BUS1_ROOT/tools-testing/target/release/examples/bench" "$@"
