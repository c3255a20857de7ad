// SPDX-License-Identifier: GPL-2.0

//! DOC: Transactions with several destinations
//!
//! A transaction that puts entries into more than one queue goes through
//! the four steps described in `queue.rs`: stage everywhere, pick a commit
//! time above every tentative time, raise every destination's clock to it,
//! then commit everywhere.  Node destruction is such a transaction: the
//! owner and every holder of a handle get a destruction notification, all
//! with the same commit time, so that every peer sees the destruction at
//! the same place relative to every other transaction.
//!
//! Every entry of one transaction has its own `part` number, which keeps
//! the stamps of two entries in the same queue apart.
//!
//! The slots of all these notifications were allocated in advance (see
//! `node.rs`), so a destruction cannot fail, not even on peer close.

use kernel::sync::Arc;

use crate::{message::Entry, node::Node, peer::Peer, queue::Stamp};

/// Destroys nodes of `owner` in one transaction.  `each` calls its argument
/// for every node to destroy; it is called once per step.  The caller has
/// removed the nodes from the owner's ids already.
pub(crate) fn destroy_nodes<F>(owner: &Peer, each: F)
where
    F: Fn(&mut dyn FnMut(&Arc<Node>)),
{
    let sender = owner.id();
    let seq = owner.next_seq();
    let mut nodes = owner.nodes.lock();

    // 1. Stage.  Marking a node destroyed happens in the owner's queue lock,
    //    so that no message to it is committed after the notification.
    let mut part = 0;
    let mut max_time = 0;
    let mut note = |staged: Option<Stamp>| {
        if let Some(stamp) = staged {
            max_time = max_time.max(stamp.time);
        }
        staged
    };
    each(&mut |node| {
        let Some(state) = nodes.get_mut(&node.id) else {
            return;
        };
        state.destroy_stamp = match state.destroy_slot.take() {
            Some(slot) => {
                part += 1;
                note(owner.stage(
                    sender,
                    seq,
                    part,
                    Entry::NodeDestroy { id: node.id },
                    slot,
                    Some(node),
                ))
            }
            None => {
                node.mark_destroyed();
                None
            }
        };
        for holder in state.holders.iter_mut() {
            if let Some(slot) = holder.slot.take() {
                part += 1;
                holder.staged = note(holder.peer.stage(
                    sender,
                    seq,
                    part,
                    Entry::NodeDestroy { id: holder.id },
                    slot,
                    None,
                ));
            }
        }
    });

    // 2. The commit time, above every tentative one.
    let time = max_time + 1;

    // 3. Raise every clock before the first commit.
    each(&mut |node| {
        let Some(state) = nodes.get(&node.id) else {
            return;
        };
        if state.destroy_stamp.is_some() {
            owner.raise_clock(time);
        }
        for holder in state.holders.iter().filter(|h| h.staged.is_some()) {
            holder.peer.raise_clock(time);
        }
    });

    // 4. Commit, and forget the nodes' state: they are gone.
    each(&mut |node| {
        let Some(state) = nodes.get(&node.id) else {
            return;
        };
        if let Some(staged) = state.destroy_stamp {
            owner.commit(staged, time);
        }
        for holder in state.holders.iter() {
            if let Some(staged) = holder.staged {
                holder.peer.commit(staged, time);
            }
        }
        drop(nodes.remove(&node.id));
    });
}
