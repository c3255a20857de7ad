// SPDX-License-Identifier: GPL-2.0

//! bus1: capability-based inter-process communication.
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

mod creds;
mod files;
mod limits;
mod message;
mod node;
mod peer;
mod peer_file;
mod queue;
mod quota;
mod stats;
mod syscall;
mod trace;
mod transaction;
mod user;

module! {
    type: Bus1,
    name: "bus1",
    authors: ["bus1 developers"],
    description: "bus1 capability-based IPC",
    license: "GPL",
}

struct Bus1 {
    _stats: stats::Debugfs,
    _sysctl: limits::Sysctl,
}

impl kernel::Module for Bus1 {
    fn init(_module: &'static ThisModule) -> Result<Self> {
        quota::init();
        Ok(Self {
            _stats: stats::Debugfs::register(),
            _sysctl: limits::Sysctl::register(),
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

// The entry points below only convert the C arguments.  User pointers are
// never dereferenced here; they become addresses for `user.rs`.
//
// SAFETY (all): called only by the system call of the same name, in process
// context; they have no further requirements.

/// Rust side of `bus1_node_create(2)`.
///
/// # Safety
///
/// See above.
#[export]
pub unsafe extern "C" fn bus1_sys_node_create(
    peer: c_int,
    id: *mut c_void,
    flags: c_uint,
) -> c_long {
    to_syscall_ret(syscall::node_create(peer, id as u64, flags))
}

/// Rust side of `bus1_handle_transfer(2)`.
///
/// # Safety
///
/// See above.
#[export]
pub unsafe extern "C" fn bus1_sys_handle_transfer(
    src_peer: c_int,
    src_id: *const c_void,
    dst_peer: c_int,
    dst_id: *mut c_void,
    flags: c_uint,
) -> c_long {
    to_syscall_ret(syscall::handle_transfer(
        src_peer,
        src_id as u64,
        dst_peer,
        dst_id as u64,
        flags,
    ))
}

/// Rust side of `bus1_handle_release(2)`.
///
/// # Safety
///
/// See above.
#[export]
pub unsafe extern "C" fn bus1_sys_handle_release(
    peer: c_int,
    id: *const c_void,
    flags: c_uint,
) -> c_long {
    to_syscall_ret(syscall::handle_release(peer, id as u64, flags))
}

/// Rust side of `bus1_nodes_destroy(2)`.
///
/// # Safety
///
/// See above.
#[export]
pub unsafe extern "C" fn bus1_sys_nodes_destroy(
    peer: c_int,
    ids: *const c_void,
    n_ids: c_uint,
    flags: c_uint,
) -> c_long {
    to_syscall_ret(syscall::nodes_destroy(peer, ids as u64, n_ids, flags))
}

/// Rust side of `bus1_send(2)`.
///
/// # Safety
///
/// See above.
#[export]
pub unsafe extern "C" fn bus1_sys_send(
    peer: c_int,
    destinations: *const c_void,
    n_destinations: c_uint,
    message: *const c_void,
    size: usize,
    flags: c_uint,
) -> c_long {
    to_syscall_ret(syscall::send(
        peer,
        destinations as u64,
        n_destinations,
        message as u64,
        size,
        flags,
    ))
}

/// Rust side of `bus1_recv(2)`.
///
/// # Safety
///
/// See above.
#[export]
pub unsafe extern "C" fn bus1_sys_recv(
    peer: c_int,
    args: *mut c_void,
    size: usize,
    flags: c_uint,
) -> c_long {
    to_syscall_ret(syscall::recv(peer, args as u64, size, flags))
}

/// Rust side of `bus1_peer_reset(2)`.
///
/// # Safety
///
/// See above.
#[export]
pub unsafe extern "C" fn bus1_sys_peer_reset(peer: c_int, flags: c_uint) -> c_long {
    to_syscall_ret(syscall::peer_reset(peer, flags))
}
