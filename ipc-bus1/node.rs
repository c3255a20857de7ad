// SPDX-License-Identifier: GPL-2.0

//! Nodes.
//!
//! A node is owned by exactly one peer and is the target of messages: what
//! is sent to a node is queued on its owner.  Other peers reach a node only
//! through handles (see `peer.rs`), and the owner learns, by a release
//! notification, when the last handle (or in-flight reference) is gone.
//!
//! The `Node` object itself is immutable but for its destruction flag and
//! its `NodeState`: the reference count, the peers holding a handle to it
//! and the preallocated notification slots.  The state is guarded by the
//! owner's `nodes` lock (`LockedBy`), so every node of a peer changes under
//! one lock, and only through `Node::state_mut()`.  When the destruction is
//! committed the state is emptied and marked removed: under that lock,
//! "its state is not removed" and "is alive" are the same thing.
//!
//! Notifications must never fail, not even on the close of a peer, so the
//! queue slot of every notification a node can cause is allocated in
//! advance: the owner's destruction notification when the node is created,
//! each holder's when its handle is created, and the release notification
//! whenever the reference count leaves zero.
//!
//! Release notifications are bounded: at most one per node is pending in
//! the owner's queue.  Only the owner can raise the count from zero again
//! (everybody else has no reference left to pass on), and doing so
//! withdraws a pending release notification the owner has not started to
//! receive, as in the original bus1.

use kernel::{
    prelude::*,
    rbtree::{RBTree, RBTreeNodeReservation},
    sync::{
        atomic::{Acquire, Atomic, Release},
        Arc, LockedBy,
    },
};

use crate::{
    message::Entry,
    peer::{Peer, Withdrawn},
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
    /// The mutable state, under the owner's `nodes` lock.
    state: LockedBy<NodeState, OwnedNodes>,
}

/// What a peer's `nodes` lock guards: the `NodeState` of each node the
/// peer owns, kept in the node and reached with `Node::state_mut()`.
pub(crate) struct OwnedNodes {
    /// `LockedBy` tells owners apart by address: the type needs a size.
    _non_zst: u8,
}

impl OwnedNodes {
    pub(crate) fn new() -> Self {
        Self { _non_zst: 0 }
    }
}

impl Node {
    /// A node of `owner`, with its destruction notification `destroy_slot`.
    pub(crate) fn new(id: u64, owner: Arc<Peer>, destroy_slot: Slot) -> Result<Arc<Self>> {
        let state = LockedBy::new(owner.nodes_lock(), NodeState::new(destroy_slot));
        stats::NODES.inc();
        Ok(Arc::new(
            Self {
                id,
                owner,
                destroyed: Atomic::new(false),
                state,
            },
            GFP_KERNEL_ACCOUNT,
        )?)
    }

    /// The node's state, given its owner's locked `nodes` (from
    /// `self.owner.lock_nodes()`; any other peer's would panic in
    /// `LockedBy`), or `None` once the node's destruction is committed.
    pub(crate) fn state_mut<'a>(&'a self, nodes: &'a mut OwnedNodes) -> Option<&'a mut NodeState> {
        let state = self.state.access_mut(nodes);
        if state.removed {
            None
        } else {
            Some(state)
        }
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

    /// Takes one reference for an in-flight message sent by `sender`.
    /// `spare` is a slot for the release notification, consumed if the
    /// node needs one.
    ///
    /// Returns `None` when the node is already destroyed, or when nobody
    /// but the owner holds it any more and `sender` is not the owner (the
    /// sender's own handle was released while it sent).
    pub(crate) fn get_inflight(
        self: &Arc<Self>,
        sender: &Peer,
        spare: &mut Option<Slot>,
    ) -> Option<InflightRef> {
        let by_owner = core::ptr::eq(&*self.owner, sender);
        let mut nodes = self.owner.lock_nodes();
        let state = self.state_mut(&mut nodes)?;
        state.get_ref(&self.owner, spare, by_owner).ok()?;
        Some(InflightRef(self.clone()))
    }

    /// Drops one reference; the owner is notified when it was the last.
    pub(crate) fn put_ref(&self) {
        let mut nodes = self.owner.lock_nodes();
        if let Some(state) = self.state_mut(&mut nodes) {
            state.put_ref(&self.owner, self.id);
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

/// Key of a holder in `NodeState::holders`: (holder peer id, its handle id).
pub(crate) type HolderKey = (u64, u64);

/// Storage for one holder, allocated before any lock is taken.
pub(crate) type HolderSlot = RBTreeNodeReservation<HolderKey, Holder>;

/// The mutable state of a node, under its owner's `nodes` lock.
///
/// # Invariants
///
/// * `refs` counts the handles held by other peers plus the in-flight
///   references of queued messages.
/// * `release_slot` is `Some` whenever `refs` is non-zero: the release
///   notification can always be sent.
/// * At most one release notification of the node is in the owner's
///   queue, and `release_queued` is its stamp while it may be there.
pub(crate) struct NodeState {
    refs: u64,
    /// The peers holding a handle; a tree, so that a node with very many
    /// holders is still cheap to update.
    pub(crate) holders: RBTree<HolderKey, Holder>,
    /// The owner's destruction notification, and where it is staged
    /// during the destruction.
    pub(crate) destroy_slot: Option<Slot>,
    pub(crate) destroy_stamp: Option<Stamp>,
    /// The release notification, set aside for when `refs` drops to zero.
    release_slot: Option<Slot>,
    /// The release notification queued on the owner and maybe not yet
    /// received.
    release_queued: Option<Stamp>,
    /// Set when the destruction is committed; the rest is empty from then.
    removed: bool,
}

impl NodeState {
    pub(crate) fn new(destroy_slot: Slot) -> Self {
        Self {
            refs: 0,
            holders: RBTree::new(),
            destroy_slot: Some(destroy_slot),
            destroy_stamp: None,
            release_slot: None,
            release_queued: None,
            removed: false,
        }
    }

    /// The destruction is committed: forgets the holders and the slots
    /// (dropped here, under the owner's `nodes` mutex, never a spinlock).
    pub(crate) fn remove(&mut self) {
        // INVARIANT: a removed state is empty and never used again.
        self.removed = true;
        self.holders = RBTree::new();
        self.destroy_slot = None;
        self.release_slot = None;
    }

    /// Takes a reference, under the owner's `nodes` lock.
    ///
    /// Only the owner may raise the count from zero (`by_owner`): a peer
    /// that is not the owner can only pass on a reference it holds, and
    /// once the count dropped to zero it holds none (`ENXIO`).  Raising it
    /// from zero withdraws a release notification the owner has not
    /// received yet, so that at most one is ever pending.  Leaving zero
    /// takes a release slot from `spare`.
    pub(crate) fn get_ref(
        &mut self,
        owner: &Peer,
        spare: &mut Option<Slot>,
        by_owner: bool,
    ) -> Result {
        if self.refs == 0 {
            if !by_owner {
                return Err(ENXIO);
            }
            if let Some(stamp) = self.release_queued {
                match owner.withdraw_notification(stamp) {
                    Withdrawn::Removed(removed) => {
                        // Reuses the entry's memory; nothing is freed.
                        self.release_slot = Some(removed.into_reservation());
                        self.release_queued = None;
                    }
                    Withdrawn::Received => self.release_queued = None,
                    // Being received: it stays pending, see `put_ref()`.
                    Withdrawn::Reading => {}
                }
            }
        }
        if self.release_slot.is_none() {
            self.release_slot = Some(spare.take().ok_or(ENOMEM)?);
        }
        self.refs += 1;
        Ok(())
    }

    /// Drops a reference, under the owner's `nodes` lock; when it was the
    /// last, queues the release notification on the owner right away, so
    /// that a raise from zero can find and withdraw it.
    pub(crate) fn put_ref(&mut self, owner: &Peer, id: u64) {
        self.refs = self.refs.saturating_sub(1);
        if self.refs != 0 {
            return;
        }
        // One that a receiver had started to read when the count rose
        // again may still be queued (the receive failed, or has not ended):
        // it tells the truth again, and no second one is queued.
        if let Some(stamp) = self.release_queued {
            if owner.is_queued(stamp) {
                return;
            }
        }
        if let Some(slot) = self.release_slot.take() {
            self.release_queued = owner.queue_notification(Entry::NodeRelease { id }, slot);
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
