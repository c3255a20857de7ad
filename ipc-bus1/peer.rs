// SPDX-License-Identifier: GPL-2.0

//! DOC: Peers
//!
//! A peer is the endpoint a process communicates through.  It is created by
//! `bus1_open(2)` and lives as long as the file that represents it (see
//! `peer_file.rs`) or any in-kernel reference to it.
//!
//! Every peer gets a 64-bit id from a global counter.  The id is never reused
//! while the system runs, so it identifies one peer unambiguously in
//! `/proc/<pid>/fdinfo/<fd>` and in traces.

use kernel::{
    prelude::*,
    sync::{
        atomic::{Atomic, Relaxed},
        Arc,
    },
};

use crate::stats;

/// Source of peer ids; 64 bits cannot wrap in the life of a system.
static NEXT_PEER_ID: Atomic<u64> = Atomic::new(1);

/// A bus1 peer.
pub(crate) struct Peer {
    id: u64,
}

impl Peer {
    /// Allocates a new peer with a fresh id.
    pub(crate) fn new() -> Result<Arc<Self>> {
        // Counted before the allocation: a failed `Arc::new()` drops the
        // value, and `drop()` uncounts it.
        stats::PEERS.inc();
        Ok(Arc::new(
            Self {
                id: NEXT_PEER_ID.fetch_add(1, Relaxed),
            },
            GFP_KERNEL,
        )?)
    }

    /// The peer's system-wide unique id.
    pub(crate) fn id(&self) -> u64 {
        self.id
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        stats::PEERS.dec();
    }
}
