#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# Build the observing and filtering examples of tools-testing/observe (the
# libseccomp policy, the BPF LSM program and its loader, ...) against the
# uapi header as it is in this repository.  Every subdirectory with a
# Makefile is built with O=tools-testing/target/observe; the in-kernel
# tests run the results from there.  Prints the output directory.
. "$(dirname "$0")/lib.sh"

out=$BUS1_ROOT/tools-testing/target/observe
inc=$out/include
mkdir -p "$inc/linux"
cmp -s "$BUS1_ROOT/uapi/bus1.h" "$inc/linux/bus1.h" || cp "$BUS1_ROOT/uapi/bus1.h" "$inc/linux/bus1.h"
for mk in "$BUS1_ROOT"/tools-testing/observe/*/Makefile; do
	[ -f "$mk" ] || continue
	make -s -C "${mk%/Makefile}" O="$out" UAPI_INCLUDE="$inc" >&2
done
echo "$out"
