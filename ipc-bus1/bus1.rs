// SPDX-License-Identifier: GPL-2.0

//! DOC: bus1 - capability-based inter-process communication
//!
//! bus1 is local IPC built from three kinds of objects:
//!
//! * A **peer** is what a process talks through: a file descriptor returned
//!   by `bus1_open(2)`, with one message queue.
//! * A **node** is an object owned by exactly one peer; messages sent to a
//!   node are queued on its owner.
//! * A **handle** is one peer's reference to one node.  A message can only be
//!   sent through a handle, and handles are passed on inside messages, so the
//!   capability to talk to a peer is always handed out explicitly.
//!
//! The user-space interface is a set of dedicated system calls (declared in
//! `syscalls.c`) rather than ioctls, so that every operation has its own
//! number, argument names in tracepoints, and can be filtered by seccomp.
//!
//! This file is the crate root: it registers the subsystem at boot and holds
//! the Rust side of each system call, which only translates between the C
//! calling convention and the `Result`-based functions of the other files.

use kernel::prelude::*;

mod peer;
mod peer_file;
mod stats;

module! {
    type: Bus1,
    name: "bus1",
    authors: ["bus1 developers"],
    description: "bus1 capability-based IPC",
    license: "GPL",
}

struct Bus1 {
    _stats: stats::Debugfs,
}

impl kernel::Module for Bus1 {
    fn init(_module: &'static ThisModule) -> Result<Self> {
        Ok(Self {
            _stats: stats::Debugfs::register(),
        })
    }
}

/// Converts a syscall result to the `long` the C glue returns.
fn to_syscall_ret(ret: Result<i32>) -> c_long {
    match ret {
        Ok(v) => v as c_long,
        Err(e) => e.to_errno() as c_long,
    }
}

/// Rust side of `bus1_open(2)`.
///
/// # Safety
///
/// Only to be called by the `bus1_open` system call; it has no requirements
/// beyond being called in process context.
#[export]
pub unsafe extern "C" fn bus1_sys_open(flags: c_uint) -> c_long {
    to_syscall_ret(peer_file::open(flags))
}
