#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# Apply patches/ to the kernel base and build bzImage.
#
#   build.sh [--variant kasan|nobus1] [make targets...]
#
# The series is applied with `git am` in a scratch worktree; the build
# worktree then checks out the result, which rewrites only the files that
# differ from the last build, so make rebuilds incrementally.
# A variant is a second kernel in a build directory of its own: "kasan" is
# the Clang-built checking kernel of configs/kasan.config (KASAN, UBSAN,
# lockdep, kmemleak, KUnit), "nobus1" is built without bus1.  A fragment's
# "#make: ARGS" lines are passed to every make of that variant.
. "$(dirname "$0")/lib.sh"

fragments=("$BUS1_ROOT/configs/bus1.config")
if [ "${1:-}" = --variant ]; then
	[ -f "$BUS1_ROOT/configs/$2.config" ] || die "unknown variant $2 (no configs/$2.config)"
	fragments+=("$BUS1_ROOT/configs/$2.config")
	BUILD_DIR=$TREE_CACHE/build-$2
	shift 2
fi
targets=("${@:-bzImage}")
mapfile -t KMAKE_ARGS < <(sed -n 's/^#make: *//p' "${fragments[@]}" | tr ' ' '\n' | sed '/^$/d')

"$BUS1_ROOT/scripts/setup-toolchain.sh"
"$BUS1_ROOT/scripts/fetch-kernel.sh"

# All variants build from one patched tree: one build at a time.
exec 9>"$TREE_CACHE/build.lock"
flock -n 9 || { log "waiting for another build to finish"; flock 9; }

# --- apply the series ---------------------------------------------------------
am=$BUS1_CACHE/am
git -C "$KERNEL_GIT" worktree prune
[ -e "$am/.git" ] || git -C "$KERNEL_GIT" worktree add -q --detach "$am" "$BASE_TAG"
git -C "$am" am --abort >/dev/null 2>&1 || true
git -C "$am" checkout -q -f --detach "$BASE_TAG"
git -C "$am" clean -q -fdx
# patches/ is generated against the pinned base; for the user's own tree the
# series is generated against that tree instead.
patch_dir=$BUS1_ROOT/patches
if [ -n "${KERNEL_SRC:-}" ]; then
	patch_dir=$TREE_CACHE/patches
	"$BUS1_ROOT/scripts/gen-patches.sh" "$patch_dir"
fi
mapfile -t series < <(ls "$patch_dir"/[0-9][0-9][0-9][0-9]-*.patch | grep -v '/0000-')
git -C "$am" -c user.name="bus1 harness" -c user.email=bus1@localhost \
	am -q "${series[@]}" || die "git am of patches/ onto $BASE_TAG failed"
head=$(git -C "$am" rev-parse HEAD)

[ -e "$WORK_TREE/.git" ] || git -C "$KERNEL_GIT" worktree add -q --detach "$WORK_TREE" "$BASE_TAG"
git -C "$WORK_TREE" checkout -q -f --detach "$head"
log "applied ${#series[@]} patches onto $BASE_TAG"

# --- configure ----------------------------------------------------------------
mkdir -p "$BUILD_DIR"
config_key=$(cat "${fragments[@]}" | sha256sum | cut -d' ' -f1)
if [ "$(cat "$BUILD_DIR/.bus1-config-key" 2>/dev/null)" != "$config_key" ] ||
	[ ! -f "$BUILD_DIR/.config" ]; then
	log "configuring (tinyconfig + ${fragments[*]##*/})"
	kmake -s rustavailable >/dev/null || die "Rust is not available to the kernel build"
	kmake -s tinyconfig >/dev/null
	"$WORK_TREE/scripts/kconfig/merge_config.sh" -m -O "$BUILD_DIR" \
		"$BUILD_DIR/.config" "${fragments[@]}" >/dev/null
	kmake -s olddefconfig >/dev/null
	# The last fragment wins, as in merge_config.sh.
	missing=$(cat "${fragments[@]}" | grep -E '^(CONFIG_[A-Z0-9_]+=|# CONFIG_[A-Z0-9_]+ is not set)' |
		tac | awk '{ n = $0; sub(/^# /, "", n); sub(/[= ].*/, "", n); if (!seen[n]++) print }' |
		while read -r opt; do
			case $opt in
			# Off also holds when the option is not offered at all.
			'# '*) ! grep -q "^${opt:2:-11}=" "$BUILD_DIR/.config" || echo "$opt" ;;
			*) grep -qxF "$opt" "$BUILD_DIR/.config" || echo "$opt" ;;
			esac
		done)
	[ -z "$missing" ] || die "config options did not stick: $(echo $missing)"
	echo "$config_key" >"$BUILD_DIR/.bus1-config-key"
fi

# --- build --------------------------------------------------------------------
log "make ${targets[*]} (O=$BUILD_DIR)"
start=$SECONDS
# Only warnings and errors are shown, not the per-file "  CC  x.o" lines.
kmake "${targets[@]}" 2>&1 | sed -E '/^  [A-Z0-9_]+ +/d' >&2 ||
	die "kernel build failed"
log "built in $((SECONDS - start)) s: $BUILD_DIR/arch/x86/boot/bzImage"
