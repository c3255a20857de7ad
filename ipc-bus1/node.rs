// SPDX-License-Identifier: GPL-2.0

//! DOC: Nodes
//!
//! A node is owned by exactly one peer and is the target of messages: what
//! is sent to a node is queued on its owner.  Other peers reach a node only
//! through handles (see `peer.rs`), and the owner learns, by a release
//! notification, when the last handle (or in-flight reference) is gone.
//!
//! The `Node` object itself is immutable but for its destruction flag.  The
//! mutable state of a live node (its reference count, the peers holding a
//! handle to it and the preallocated notification slots) is a `NodeState`
//! in the owner's `nodes` map, protected by the owner's `nodes` lock.  When
//! the node is destroyed its state is removed from that map, so "has a
//! state" and "is alive" are the same thing under that lock.
//!
//! Notifications must never fail, not even on the close of a peer, so the
//! queue slot of every notification a node can cause is allocated in
//! advance: the owner's destruction notification when the node is created,
//! each holder's when its handle is created, and the release notification
//! whenever the reference count leaves zero.

use kernel::{
    prelude::*,
    sync::{
        atomic::{Acquire, Atomic, Release},
        Arc,
    },
};

use crate::{
    message::Entry,
    peer::Peer,
    queue::{Slot, Stamp},
    stats,
};

/// A node; see the module documentation.
pub(crate) struct Node {
    /// The owner's id for the node.
    pub(crate) id: u64,
    pub(crate) owner: Arc<Peer>,
    /// Set under the owner's queue lock when the destruction is staged:
    /// from then on nothing is queued to the node any more.
    destroyed: Atomic<bool>,
}

impl Node {
    pub(crate) fn new(id: u64, owner: Arc<Peer>) -> Result<Arc<Self>> {
        stats::NODES.inc();
        Ok(Arc::new(
            Self {
                id,
                owner,
                destroyed: Atomic::new(false),
            },
            GFP_KERNEL,
        )?)
    }

    pub(crate) fn is_destroyed(&self) -> bool {
        self.destroyed.load(Acquire)
    }

    /// Marks the node destroyed; called under the owner's queue lock.
    pub(crate) fn mark_destroyed(&self) {
        self.destroyed.store(true, Release);
    }

    /// Both identify a node across peers: (owner peer id, node id).
    pub(crate) fn key(&self) -> (u64, u64) {
        (self.owner.id(), self.id)
    }

    /// Takes one reference for an in-flight message.  `spare` is a slot for
    /// the release notification, consumed if the node needs one.
    ///
    /// Returns `None` when the node is already destroyed.
    pub(crate) fn get_inflight(self: &Arc<Self>, spare: &mut Option<Slot>) -> Option<InflightRef> {
        let mut nodes = self.owner.nodes.lock();
        let state = nodes.get_mut(&self.id)?;
        state.get_ref(spare);
        Some(InflightRef(self.clone()))
    }

    /// Drops one reference and notifies the owner when it was the last.
    pub(crate) fn put_ref(&self) {
        let slot = {
            let mut nodes = self.owner.nodes.lock();
            nodes.get_mut(&self.id).and_then(NodeState::put_ref)
        };
        if let Some(slot) = slot {
            // The owner is told under no lock of ours; a closed owner gives
            // the slot back and it is freed here.
            self.owner
                .deliver_notification(Entry::NodeRelease { id: self.id }, slot);
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        stats::NODES.dec();
    }
}

/// One peer holding a handle to a node.
pub(crate) struct Holder {
    pub(crate) peer: Arc<Peer>,
    /// The holder's id for its handle.
    pub(crate) id: u64,
    /// The holder's destruction notification, allocated in advance.
    pub(crate) slot: Option<Slot>,
    /// Where that notification is staged during the destruction.
    pub(crate) staged: Option<Stamp>,
}

/// The mutable state of a live node, in its owner's `nodes` map.
pub(crate) struct NodeState {
    /// Handles held by other peers plus in-flight references.
    refs: u64,
    pub(crate) holders: KVec<Holder>,
    /// The owner's destruction notification, and where it is staged
    /// during the destruction.
    pub(crate) destroy_slot: Option<Slot>,
    pub(crate) destroy_stamp: Option<Stamp>,
    /// The release notification; present whenever `refs` is non-zero.
    release_slot: Option<Slot>,
}

impl NodeState {
    pub(crate) fn new(destroy_slot: Slot) -> Self {
        Self {
            refs: 0,
            holders: KVec::new(),
            destroy_slot: Some(destroy_slot),
            destroy_stamp: None,
            release_slot: None,
        }
    }

    /// Takes a reference; leaving zero takes a release slot from `spare`.
    pub(crate) fn get_ref(&mut self, spare: &mut Option<Slot>) {
        if self.release_slot.is_none() {
            self.release_slot = spare.take();
        }
        self.refs += 1;
    }

    /// Drops a reference; returns the release slot when it was the last.
    pub(crate) fn put_ref(&mut self) -> Option<Slot> {
        self.refs = self.refs.saturating_sub(1);
        if self.refs == 0 {
            self.release_slot.take()
        } else {
            None
        }
    }
}

/// An in-flight reference to a node, carried by a queued message.  Dropping
/// it gives the reference back (and may notify the owner), so it must not be
/// dropped under a spinlock.
pub(crate) struct InflightRef(Arc<Node>);

impl InflightRef {
    pub(crate) fn node(&self) -> &Arc<Node> {
        &self.0
    }
}

impl Drop for InflightRef {
    fn drop(&mut self) {
        self.0.put_ref();
    }
}
