#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# Set up what is missing, build the patched kernel, boot it and run the demo.
. "$(dirname "$0")/lib.sh"

"$BUS1_ROOT/scripts/build.sh"
log "building the demo"
(cd "$BUS1_ROOT/tools-testing" && cargo build -q --release --example demo)
log "booting the bus1 kernel"
exec "$BUS1_ROOT/scripts/boot.sh" -- "$BUS1_ROOT/tools-testing/target/release/examples/demo"
