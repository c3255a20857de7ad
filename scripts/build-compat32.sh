#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# Build the 32-bit test program (tools-testing/compat32) with gcc -m32
# against the uapi header as it is in this repository; prints its path.
# The in-kernel test compat32.rs runs it (BUS1_COMPAT32 names it).
. "$(dirname "$0")/lib.sh"

out=$BUS1_ROOT/tools-testing/target/bus1-compat32
inc=$(mktemp -d)
trap 'rm -rf "$inc"' EXIT
mkdir -p "$inc/linux" "${out%/*}"
cp "$BUS1_ROOT/uapi/bus1.h" "$inc/linux/bus1.h"
gcc -m32 -static -O2 -Wall -Wextra -Werror -I "$inc" -o "$out" \
	"$BUS1_ROOT/tools-testing/compat32/bus1-compat32.c"
echo "$out"
