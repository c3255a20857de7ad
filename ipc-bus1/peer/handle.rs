// SPDX-License-Identifier: GPL-2.0

//! Handles: a peer's references to the nodes of other peers.
//!
//! A peer holds at most one handle per node, found through its `by_node`
//! map; acquiring it again counts up that handle's references.  A new
//! handle makes the peer a holder in the node's state (under the owner's
//! `nodes` lock) with its destruction notification allocated in advance,
//! and counts against the limits of the peer and its user.

use kernel::{prelude::*, rbtree::RBTreeNodeReservation, sync::Arc};

use super::{new_slot, Peer, Ref};
use crate::{
    limits,
    node::{Holder, HolderSlot, Node},
    queue::Slot,
};

/// Everything one acquisition of a handle may need, allocated before any
/// lock is taken.
pub(super) struct AcquireSlots {
    id: RBTreeNodeReservation<u64, Ref>,
    key: RBTreeNodeReservation<(u64, u64), u64>,
    holder: HolderSlot,
    /// The holder's destruction notification.
    destroy: Option<Slot>,
    /// The node's release notification, if its count leaves zero.
    release: Option<Slot>,
}

impl AcquireSlots {
    pub(super) fn new() -> Result<Self> {
        Ok(Self {
            id: RBTreeNodeReservation::new(GFP_KERNEL_ACCOUNT)?,
            key: RBTreeNodeReservation::new(GFP_KERNEL_ACCOUNT)?,
            holder: RBTreeNodeReservation::new(GFP_KERNEL_ACCOUNT)?,
            destroy: Some(new_slot()?),
            release: Some(new_slot()?),
        })
    }
}

impl Peer {
    /// Gives this peer a reference to `node`: its node id if it owns the
    /// node, else its handle, created or counted up.  `by_owner`: the
    /// reference comes from the node's owner (see `NodeState::get_ref()`).
    ///
    /// A new handle counts against the limits of the peer and its user
    /// (`EDQUOT`).
    pub(crate) fn acquire(self: &Arc<Self>, node: &Arc<Node>, by_owner: bool) -> Result<u64> {
        self.acquire_with(node, by_owner, true, AcquireSlots::new()?)
    }

    /// `acquire()` with its memory allocated beforehand.  Without `limited`
    /// (a handle received in a message, already charged to the receiver's
    /// queue when it was sent) a new handle is counted but never refused,
    /// and the call fails only with `EHOSTUNREACH` (the node is destroyed)
    /// or `ENXIO` (see `by_owner`).
    pub(super) fn acquire_with(
        self: &Arc<Self>,
        node: &Arc<Node>,
        by_owner: bool,
        limited: bool,
        mut slots: AcquireSlots,
    ) -> Result<u64> {
        if Arc::ptr_eq(&node.owner, self) {
            return if node.is_destroyed() {
                Err(EHOSTUNREACH)
            } else {
                Ok(node.id)
            };
        }
        let mut state = self.state.lock();
        if state.closed {
            return Err(EBADF);
        }
        // Under the owner's `nodes` lock a node is alive exactly when its
        // state is not removed: checked before every kind of acquisition.
        let mut nodes = node.owner.lock_nodes();
        let node_state = node.state_mut(&mut nodes).ok_or(EHOSTUNREACH)?;
        if let Some(&id) = state.by_node.get(&node.key()) {
            if let Some(Ref::Handle { refs, .. }) = state.ids.get_mut(&id) {
                *refs += 1;
                return Ok(id);
            }
        }
        let user = self.user.user();
        if limited {
            if state.handles >= limits::peer_objects().handles {
                return Err(EDQUOT);
            }
            user.take_handle()?;
        } else {
            // Counted all the same, so that the user's total is right.
            user.take_handle_unlimited();
        }
        if let Err(e) = node_state.get_ref(&node.owner, &mut slots.release, by_owner) {
            user.give_back_objects(0, 1);
            return Err(e);
        }
        let id = state.next_id;
        let holder = Holder {
            peer: self.clone(),
            id,
            slot: slots.destroy.take(),
            staged: None,
        };
        let _ = node_state
            .holders
            .insert(slots.holder.into_node((self.id, id), holder));
        drop(nodes);
        state.next_id += 1;
        state.handles += 1;
        let _ = state.ids.insert(slots.id.into_node(
            id,
            Ref::Handle {
                node: node.clone(),
                refs: 1,
            },
        ));
        let _ = state.by_node.insert(slots.key.into_node(node.key(), id));
        Ok(id)
    }

    /// Drops one reference of the handle `id` (`bus1_handle_release(2)`).
    pub(crate) fn release(&self, id: u64) -> Result {
        let mut state = self.state.lock();
        match state.ids.get_mut(&id) {
            None => return Err(ENXIO),
            Some(Ref::Node(_)) => return Err(EPERM),
            Some(Ref::Handle { refs, .. }) if *refs > 1 => {
                *refs -= 1;
                return Ok(());
            }
            Some(Ref::Handle { .. }) => {}
        }
        let Some(removed) = state.ids.remove(&id) else {
            return Err(ENXIO);
        };
        let node = removed.node().clone();
        let _ = state.by_node.remove(&node.key());
        state.handles -= 1;
        self.user.user().give_back_objects(0, 1);
        let holder = self.drop_holder(&node, id);
        drop(state);
        drop(holder);
        drop(removed);
        Ok(())
    }

    /// Removes this peer's handle `id` from `node`'s holders and gives its
    /// reference back (which notifies the owner if it was the last);
    /// returns the holder entry, to be dropped after the caller's locks.
    pub(super) fn drop_holder(&self, node: &Node, id: u64) -> Option<Holder> {
        let mut nodes = node.owner.lock_nodes();
        // Destroyed: the holders are gone already, nobody is told.
        let node_state = node.state_mut(&mut nodes)?;
        let holder = node_state.holders.remove(&(self.id, id));
        if holder.is_some() {
            node_state.put_ref(&node.owner, node.id);
        }
        holder
    }

    /// Undoes one `acquire()`; owned node ids need no undoing.
    pub(super) fn release_acquired(&self, id: u64) -> Result {
        match self.release(id) {
            Err(e) if e == EPERM => Ok(()),
            other => other,
        }
    }
}
