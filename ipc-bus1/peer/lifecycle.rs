// SPDX-License-Identifier: GPL-2.0

//! The end of a peer's contents: close and reset.
//!
//! Closing the last file of a peer, and `bus1_peer_reset(2)`, drop its
//! queue, destroy its nodes and release its handles, with the
//! notifications the other peers are owed.

use kernel::rbtree::RBTree;

use super::{cond_resched, Peer, Ref};

impl Peer {
    /// Releases everything of a peer whose file is closed: its queue, its
    /// nodes (destroyed, with notifications) and its handles (released,
    /// with notifications).
    pub(crate) fn disconnect(&self) {
        // Under `state`, so that a concurrent reset sees the peer closed.
        let (queued, (ids, by_node)) = {
            let mut state = self.state.lock();
            state.closed = true;
            (self.queue.lock().close(), state.take_all(&self.user))
        };
        self.give_up_all(&ids);
        drop(by_node);
        drop(ids);
        // Unreceived messages give back their in-flight references.
        drop(queued);
    }

    /// Resets the peer (`bus1_peer_reset(2)`): like a close, but the peer
    /// stays usable, with an empty queue, no nodes and no handles.  Ids
    /// are not reused, and the queue's clock keeps counting so that the
    /// global order holds across the reset.
    ///
    /// Receivers and everything that adds ids wait meanwhile (`recv_lock`
    /// and `state` are held); senders to the peer's nodes are refused, as
    /// the nodes are being destroyed, and the peer's own notifications of
    /// the reset are dropped with its queue.
    pub(crate) fn reset(&self) {
        let receiver = self.recv_lock.lock();
        let mut state = self.state.lock();
        if state.closed {
            return;
        }
        let queued = self.queue.lock().close();
        let (ids, by_node) = state.take_all(&self.user);
        self.give_up_all(&ids);
        self.queue.lock().reopen();
        drop(state);
        drop(receiver);
        drop(by_node);
        drop(ids);
        drop(queued);
    }

    /// Destroys every node in `ids` in one transaction and releases every
    /// handle, with the notifications to the other peers.
    fn give_up_all(&self, ids: &RBTree<u64, Ref>) {
        crate::transaction::destroy_nodes(self, |f| {
            for r in ids.values() {
                if let Ref::Node(node) = r {
                    f(node);
                }
            }
        });
        for (&id, r) in ids.iter() {
            if let Ref::Handle { node, .. } = r {
                drop(self.drop_holder(node, id));
                // A peer may hold very many handles; no spinlock is held.
                cond_resched();
            }
        }
    }
}
