#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# Build the bus1 kselftest the way kernel reviewers do, from the patched
# tree: the uapi headers of the build (`make headers`), then
#   make -C tools/testing/selftests TARGETS=bus1
# Prints the path of the test program.  Needs a tree that build.sh has
# set up (it applies the series).
. "$(dirname "$0")/lib.sh"

out=$BUILD_DIR/kselftest
kmake -s headers >&2
make -s -C "$WORK_TREE/tools/testing/selftests" TARGETS=bus1 O="$out" \
	KHDR_INCLUDES="-isystem $BUILD_DIR/usr/include" >&2
[ -x "$out/kselftest/bus1/bus1_test" ] || die "no $out/kselftest/bus1/bus1_test"
echo "$out/kselftest/bus1/bus1_test"
