#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# Prove that every patch of the series builds on its own: apply the first
# 1, 2, ... N patches in turn and build each state, in a tree and build
# directory of their own (incremental from one state to the next).
#
# Needs the main build's .config (run scripts/build.sh first).  The first run
# is a full kernel build (~12 min on 2 cores); later runs are incremental.
. "$(dirname "$0")/lib.sh"

[ -f "$BUILD_DIR/.config" ] || die "no $BUILD_DIR/.config: run scripts/build.sh first"
mapfile -t series < <(ls "$BUS1_ROOT"/patches/[0-9][0-9][0-9][0-9]-*.patch | grep -v '/0000-')

am=$TREE_CACHE/am-series
WORK_TREE=$TREE_CACHE/src-series
BUILD_DIR_MAIN=$BUILD_DIR
BUILD_DIR=$TREE_CACHE/build-series
exec 9>"$TREE_CACHE/build.lock"
flock -n 9 || { log "waiting for another build to finish"; flock 9; }

git -C "$KERNEL_GIT" worktree prune
[ -e "$am/.git" ] || git -C "$KERNEL_GIT" worktree add -q --detach "$am" "$BASE_TAG"
[ -e "$WORK_TREE/.git" ] || git -C "$KERNEL_GIT" worktree add -q --detach "$WORK_TREE" "$BASE_TAG"
git -C "$am" am --abort >/dev/null 2>&1 || true
git -C "$am" checkout -q -f --detach "$BASE_TAG"
git -C "$am" clean -q -fdx
mkdir -p "$BUILD_DIR"
cmp -s "$BUILD_DIR_MAIN/.config" "$BUILD_DIR/.config" || cp "$BUILD_DIR_MAIN/.config" "$BUILD_DIR/.config"

for i in "${!series[@]}"; do
	patch=${series[$i]}
	git -C "$am" -c user.name="bus1 harness" -c user.email=bus1@localhost am -q "$patch" ||
		die "$(basename "$patch") does not apply"
	git -C "$WORK_TREE" checkout -q -f --detach "$(git -C "$am" rev-parse HEAD)"
	log "building with patches 1..$((i + 1)): $(basename "$patch")"
	start=$SECONDS
	kmake -s olddefconfig
	kmake bzImage 2>&1 | sed -E '/^  [A-Z0-9_]+ +/d' >&2 ||
		die "the kernel does not build with patches 1..$((i + 1))"
	log "patches 1..$((i + 1)) build ($((SECONDS - start)) s)"
done
