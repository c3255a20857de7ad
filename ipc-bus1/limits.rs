// SPDX-License-Identifier: GPL-2.0

//! Limits and their sysctls.
//!
//! What may be queued on a peer, and on all peers of one user together, is
//! bounded (see `quota.rs`).  The bounds are tunable by the administrator
//! under `/proc/sys/bus1/`:
//!
//! * `max_peer_messages`, `max_peer_bytes`, `max_peer_handles`,
//!   `max_peer_fds`: what one peer's queue may hold;
//! * `max_user_messages`, `max_user_bytes`, `max_user_handles`,
//!   `max_user_fds`: what the queues of all peers opened by one user may
//!   hold together;
//! * `max_peer_nodes`, `max_peer_held_handles`: how many nodes one peer may
//!   own and how many handles it may hold;
//! * `max_user_nodes`, `max_user_held_handles`: the same for all peers of
//!   one user together.
//!
//! A new value applies to every later charge; what is queued already stays.
//! The values are `unsigned int`s, so a byte limit is at most 4 GiB - 1.

use kernel::{
    bindings,
    prelude::*,
    sync::atomic::{Atomic, Relaxed},
};

use crate::quota::Usage;

/// What a queued message costs beyond its payload (entry, message, slot).
pub(crate) const MESSAGE_OVERHEAD: u64 = 256;

// The defaults: a user's peers together may hold four times what one peer
// may, so that one full peer leaves room for the user's other peers.
static MAX_PEER_MESSAGES: Atomic<u32> = Atomic::new(65536);
static MAX_PEER_BYTES: Atomic<u32> = Atomic::new(64 << 20);
static MAX_PEER_HANDLES: Atomic<u32> = Atomic::new(65536);
static MAX_PEER_FDS: Atomic<u32> = Atomic::new(4096);
static MAX_USER_MESSAGES: Atomic<u32> = Atomic::new(4 * 65536);
static MAX_USER_BYTES: Atomic<u32> = Atomic::new(256 << 20);
static MAX_USER_HANDLES: Atomic<u32> = Atomic::new(4 * 65536);
static MAX_USER_FDS: Atomic<u32> = Atomic::new(4 * 4096);
static MAX_PEER_NODES: Atomic<u32> = Atomic::new(16384);
static MAX_PEER_HELD_HANDLES: Atomic<u32> = Atomic::new(16384);
static MAX_USER_NODES: Atomic<u32> = Atomic::new(65536);
static MAX_USER_HELD_HANDLES: Atomic<u32> = Atomic::new(65536);

/// Limits on what a peer or user keeps: nodes it owns, handles it holds.
#[derive(Clone, Copy)]
pub(crate) struct Objects {
    pub(crate) nodes: u64,
    pub(crate) handles: u64,
}

/// How many nodes and handles one peer may have.
pub(crate) fn peer_objects() -> Objects {
    Objects {
        nodes: MAX_PEER_NODES.load(Relaxed).into(),
        handles: MAX_PEER_HELD_HANDLES.load(Relaxed).into(),
    }
}

/// How many nodes and handles all peers of one user may have together.
pub(crate) fn user_objects() -> Objects {
    Objects {
        nodes: MAX_USER_NODES.load(Relaxed).into(),
        handles: MAX_USER_HELD_HANDLES.load(Relaxed).into(),
    }
}

fn usage_of(
    messages: &Atomic<u32>,
    bytes: &Atomic<u32>,
    handles: &Atomic<u32>,
    fds: &Atomic<u32>,
) -> Usage {
    Usage {
        messages: messages.load(Relaxed).into(),
        bytes: bytes.load(Relaxed).into(),
        handles: handles.load(Relaxed).into(),
        fds: fds.load(Relaxed).into(),
    }
}

/// What one peer's queue may hold.
pub(crate) fn peer() -> Usage {
    usage_of(
        &MAX_PEER_MESSAGES,
        &MAX_PEER_BYTES,
        &MAX_PEER_HANDLES,
        &MAX_PEER_FDS,
    )
}

/// What the queues of one user's peers may hold together.
pub(crate) fn user() -> Usage {
    usage_of(
        &MAX_USER_MESSAGES,
        &MAX_USER_BYTES,
        &MAX_USER_HANDLES,
        &MAX_USER_FDS,
    )
}

/// The `ctl_table` in a `static` needs `Sync`; it is only read, by the
/// sysctl core, and the values it points to are atomics.
#[cfg(CONFIG_SYSCTL)]
struct SysctlTable([bindings::ctl_table; 12]);

// SAFETY: The table itself is never written; the `data` pointers point to
// `Atomic<u32>`s, which the sysctl core reads and writes as plain
// `unsigned int`s (as it does for every sysctl) and bus1 reads atomically.
#[cfg(CONFIG_SYSCTL)]
unsafe impl Sync for SysctlTable {}

/// One `unsigned int` sysctl, read-write for root.
#[cfg(CONFIG_SYSCTL)]
const fn entry(name: &'static CStr, value: &'static Atomic<u32>) -> bindings::ctl_table {
    bindings::ctl_table {
        procname: name.to_bytes_with_nul().as_ptr(),
        // `Atomic<u32>` has the size and layout of a `u32`.
        data: value.as_ptr().cast(),
        maxlen: core::mem::size_of::<u32>() as c_int,
        mode: 0o644,
        proc_handler: Some(bindings::proc_douintvec),
        poll: core::ptr::null_mut(),
        extra1: core::ptr::null_mut(),
        extra2: core::ptr::null_mut(),
    }
}

#[cfg(CONFIG_SYSCTL)]
static SYSCTL_TABLE: SysctlTable = SysctlTable([
    entry(c"max_peer_messages", &MAX_PEER_MESSAGES),
    entry(c"max_peer_bytes", &MAX_PEER_BYTES),
    entry(c"max_peer_handles", &MAX_PEER_HANDLES),
    entry(c"max_peer_fds", &MAX_PEER_FDS),
    entry(c"max_user_messages", &MAX_USER_MESSAGES),
    entry(c"max_user_bytes", &MAX_USER_BYTES),
    entry(c"max_user_handles", &MAX_USER_HANDLES),
    entry(c"max_user_fds", &MAX_USER_FDS),
    entry(c"max_peer_nodes", &MAX_PEER_NODES),
    entry(c"max_peer_held_handles", &MAX_PEER_HELD_HANDLES),
    entry(c"max_user_nodes", &MAX_USER_NODES),
    entry(c"max_user_held_handles", &MAX_USER_HELD_HANDLES),
]);

/// The registration of `/proc/sys/bus1/`, undone on drop.
pub(crate) struct Sysctl(*mut bindings::ctl_table_header);

// SAFETY: The header is only passed to `unregister_sysctl_table()`, which
// may be called from any thread.
unsafe impl Send for Sysctl {}
// SAFETY: `&Sysctl` gives no access to the header.
unsafe impl Sync for Sysctl {}

impl Sysctl {
    /// Registers `/proc/sys/bus1/`.  Without it bus1 still works with the
    /// defaults, so a failure is only reported.
    #[cfg(CONFIG_SYSCTL)]
    pub(crate) fn register() -> Self {
        let table = &SYSCTL_TABLE.0;
        // SAFETY: The path is a NUL-terminated string and the table is a
        // `static` of `table.len()` valid entries whose data lives forever.
        let header = unsafe {
            bindings::register_sysctl_sz(c"bus1".as_char_ptr(), table.as_ptr(), table.len())
        };
        if header.is_null() {
            pr_warn!("cannot register /proc/sys/bus1, using the default limits\n");
        }
        Self(header)
    }

    /// Without `CONFIG_SYSCTL`, the defaults are the limits.
    #[cfg(not(CONFIG_SYSCTL))]
    pub(crate) fn register() -> Self {
        Self(core::ptr::null_mut())
    }
}

impl Drop for Sysctl {
    fn drop(&mut self) {
        #[cfg(CONFIG_SYSCTL)]
        if !self.0.is_null() {
            // SAFETY: The header came from `register_sysctl_sz()` and is
            // unregistered only here.
            unsafe { bindings::unregister_sysctl_table(self.0) };
        }
    }
}
