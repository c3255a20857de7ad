#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# Build perf from the patched tree, so that `perf trace` knows the bus1
# system calls by name.  Prints the path of the perf binary.
#
# The files perf's source package is made of (tools/perf/MANIFEST) and the
# kernel's syscall tables are copied from the patched tree (build.sh sets
# it up) to $TREE_CACHE/perf-src, tools/'s syscall tables are synced there
# with sync-tools-syscalls.sh (a no-op once the series carries the sync),
# and perf is built with a minimal feature set into $TREE_CACHE/perf.
# Copies keep their times, so rebuilds are incremental.  Needs
# libtraceevent-dev (perf trace), libelf-dev and pkg-config.
. "$(dirname "$0")/lib.sh"

src=$TREE_CACHE/perf-src
out=$TREE_CACHE/perf
[ -f "$WORK_TREE/tools/perf/MANIFEST" ] || die "no patched tree in $WORK_TREE (run scripts/build.sh)"
pkg-config --exists libtraceevent ||
	die "perf trace needs libtraceevent: apt-get install libtraceevent-dev"

# What perf's source tarball holds, and the originals of tools/'s tables.
mapfile -t paths < <(cd "$WORK_TREE" && {
	for p in $(grep -v '^#' tools/perf/MANIFEST); do
		[ -e "$p" ] && echo "$p"
	done
	ls arch/*/entry/syscalls/*.tbl arch/*/kernel/syscalls/*.tbl arch/*/tools/*.tbl
	echo include/uapi/asm-generic/unistd.h
} | sort -u)
mkdir -p "$src" "$out"
tar -C "$WORK_TREE" -cf - "${paths[@]}" | tar -C "$src" -xf -
"$BUS1_ROOT/scripts/sync-tools-syscalls.sh" "$src" >/dev/null
# The version perf reports, as in perf's source tarball: the kernel's and
# the patched tree's commit.
version=$(awk -F' *= *' '$1 ~ /^(VERSION|PATCHLEVEL|SUBLEVEL|EXTRAVERSION)$/ { v[$1] = $2 }
	END { printf "%s.%s.%s%s", v["VERSION"], v["PATCHLEVEL"], v["SUBLEVEL"], v["EXTRAVERSION"] }' \
	"$WORK_TREE/Makefile")-g$(git -C "$WORK_TREE" log -1 --abbrev=12 --format=%h)
echo "#define PERF_VERSION \"$version\"" | cmp -s - "$src/PERF-VERSION-FILE" ||
	echo "#define PERF_VERSION \"$version\"" >"$src/PERF-VERSION-FILE"

# Only what `perf trace`, `perf record` and `perf script` of tracepoints
# need; every optional library is left out.
PERF_ARGS=(
	NO_LIBPYTHON=1 NO_LIBPERL=1 NO_JEVENTS=1 NO_LIBBPF=1 BUILD_BPF_SKEL=0
	NO_LIBDW=1 NO_LIBUNWIND=1 NO_LIBDEBUGINFOD=1 NO_SLANG=1 NO_GTK2=1
	NO_LIBNUMA=1 NO_LIBAUDIT=1 NO_LIBCRYPTO=1 NO_LIBCAP=1 NO_DEMANGLE=1
	NO_BABELTRACE2=1 NO_CAPSTONE=1 NO_LIBPFM4=1 NO_LIBLLVM=1 NO_SDT=1
	NO_LZMA=1 NO_LIBZSTD=1 NO_JVMTI=1 NO_RUST=1 NO_SHELLCHECK=1
)
log "building perf (O=$out)"
start=$SECONDS
nice make -s -C "$src/tools/perf" O="$out" -j"${PERF_JOBS:-2}" "${PERF_ARGS[@]}" >&2
[ -x "$out/perf" ] || die "no $out/perf"
"$out/perf" version --build-options | grep -q 'libtraceevent: \[ on' ||
	die "$out/perf was built without libtraceevent: no perf trace"
log "perf built in $((SECONDS - start)) s"
echo "$out/perf"
