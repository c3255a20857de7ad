// SPDX-License-Identifier: GPL-2.0
/*
 * The bus1 tracepoints (include/trace/events/bus1.h), defined here for the
 * Rust code, which calls them through rust_do_trace_*() (see trace.rs).
 */
#define CREATE_TRACE_POINTS
#define CREATE_RUST_TRACE_POINTS
#include <trace/events/bus1.h>
