// SPDX-License-Identifier: GPL-2.0

//! Transactions with several destinations.
//!
//! A transaction that puts entries into more than one queue goes through
//! the four steps described in `queue.rs`: stage everywhere, pick a commit
//! time above every tentative time, raise every destination's clock to it,
//! then commit everywhere.  Every entry of one transaction has its own
//! `part` number, which keeps the stamps of two entries in the same queue
//! apart.
//!
//! A message sent to several nodes (a multicast) is such a transaction.  A
//! destination refuses the message when its node is destroyed or its owner
//! is gone; this is checked when staging and again when raising the clock,
//! under the destination's queue lock.  Without `partial`, the first
//! refusal makes the whole transaction give up: what was staged is taken
//! back, nothing was committed yet, so nobody ever sees the message.  With
//! `partial`, only the refusing destinations are dropped.  The in-flight
//! handle references the message carries are taken only after the last
//! check, when nothing can fail any more, so a failed send leaves no trace
//! (not even a release notification).  A message to one destination that
//! carries no handles has nothing to undo and is queued in one step.
//!
//! Node destruction is a transaction too: the owner and every holder of a
//! handle get a destruction notification, all with the same commit time,
//! so that every peer sees the destruction at the same place relative to
//! every other transaction.  The slots of all these notifications were
//! allocated in advance (see `node.rs`), so a destruction cannot fail, not
//! even on peer close.

use kernel::{
    prelude::*,
    sync::{Arc, UniqueArc},
};

use crate::{
    message::{Entry, Message},
    node::Node,
    peer::{cond_resched, Peer},
    queue::{EntryId, Slot, Stamp},
    trace,
};

/// What happened to the message at one destination.
#[derive(Clone, Copy)]
pub(crate) enum Outcome {
    /// Not delivered: the send failed as a whole.
    Cancelled,
    /// Queued at the destination.
    Delivered,
    /// The destination refused it.
    Refused(Error),
}

/// One destination of a message.
pub(crate) struct Delivery {
    /// Position of the destination in the caller's array.
    pub(crate) index: usize,
    pub(crate) node: Arc<Node>,
    pub(crate) slot: Option<Slot>,
    staged: Option<Stamp>,
}

impl Delivery {
    pub(crate) fn new(index: usize, node: Arc<Node>, slot: Slot) -> Self {
        Self {
            index,
            node,
            slot: Some(slot),
            staged: None,
        }
    }
}

/// A node whose handle a message carries, with a spare slot for a release
/// notification in case the in-flight reference is the node's first.
pub(crate) type Carried = (Arc<Node>, Option<Slot>);

/// Takes back everything `deliveries` staged.
fn give_up(deliveries: &mut [Delivery]) {
    for d in deliveries.iter_mut() {
        if let Some(staged) = d.staged.take() {
            d.node.owner.unstage(staged);
        }
    }
}

/// Sends `message` from `sender` to every destination in `deliveries` in
/// one transaction, number `seq` of `sender`; `carried` are the nodes of
/// the handles it carries.  Records the outcome of each destination in
/// `outcomes` and returns how many got the message and the commit time;
/// fails (with no effect) if a destination refuses and not `partial`, or if
/// none took it.
pub(crate) fn send(
    sender: &Peer,
    seq: u64,
    deliveries: &mut [Delivery],
    mut message: UniqueArc<Message>,
    carried: &mut [Carried],
    partial: bool,
    outcomes: &mut [Outcome],
) -> Result<(usize, u64)> {
    let charge = message.charge(sender.uid(), carried.len());
    if let ([d], []) = (&mut *deliveries, &*carried) {
        // One destination and no references to take: nothing needs
        // undoing, so the entry is staged and committed in one step.
        let Some(slot) = d.slot.take() else {
            return Err(EHOSTUNREACH);
        };
        let entry = Entry::Data {
            id: d.node.id,
            message: message.into(),
        };
        let pushed = d
            .node
            .owner
            .push_message(&d.node, sender.id(), seq, entry, slot, &charge);
        return match pushed {
            Ok(stamp) => {
                outcomes[d.index] = Outcome::Delivered;
                Ok((1, stamp.time))
            }
            Err((entry, slot, e)) => {
                // Dropped here, outside the queue lock.
                drop((entry, slot));
                outcomes[d.index] = Outcome::Refused(e);
                Err(e)
            }
        };
    }
    // One destination: the tentative stamp is the final one (its clock is
    // raised with the staging), so steps 2 and 3 fall away.
    let single = deliveries.len() == 1;
    let mut first_refusal = None;
    let mut refuse = |d: &mut Delivery, outcomes: &mut [Outcome], e: Error| {
        outcomes[d.index] = Outcome::Refused(e);
        first_refusal.get_or_insert(e);
        !partial
    };

    // 1. Stage.
    let mut max_time = 0;
    for part in 0..deliveries.len() {
        let d = &mut deliveries[part];
        let Some(slot) = d.slot.take() else {
            continue;
        };
        let id = EntryId {
            sender: sender.id(),
            seq,
            part: part as u64,
        };
        let staged = d
            .node
            .owner
            .stage_message(&d.node, id, slot, single, &charge);
        match staged {
            Ok(stamp) => {
                max_time = max_time.max(stamp.time);
                d.staged = Some(stamp);
            }
            Err((slot, e)) => {
                drop(slot);
                if refuse(d, outcomes, e) {
                    give_up(deliveries);
                    return Err(e);
                }
            }
        }
    }

    // 2. The commit time, above every tentative one.
    // 3. Raise every clock before the first commit, checking again that
    //    the destination is alive.
    let time = if single {
        max_time
    } else {
        let time = max_time + 1;
        for i in 0..deliveries.len() {
            let d = &mut deliveries[i];
            let Some(staged) = d.staged else {
                continue;
            };
            if !d.node.owner.confirm(&d.node, staged, time) {
                d.staged = None;
                if refuse(d, outcomes, EHOSTUNREACH) {
                    give_up(deliveries);
                    return Err(EHOSTUNREACH);
                }
            }
        }
        time
    };

    let delivered = deliveries.iter().filter(|d| d.staged.is_some()).count();
    if delivered == 0 {
        return Err(first_refusal.unwrap_or(EHOSTUNREACH));
    }

    // Nothing can fail from here on: take the in-flight references.
    for (node, spare) in carried.iter_mut() {
        // The capacity was reserved with the message.
        if let Err(e) = message
            .handles
            .push_within_capacity(node.get_inflight(sender, spare))
        {
            drop(e);
        }
    }
    let message: Arc<Message> = message.into();

    // 4. Commit.
    for d in deliveries.iter_mut() {
        if let Some(staged) = d.staged.take() {
            let entry = Entry::Data {
                id: d.node.id,
                message: message.clone(),
            };
            d.node.owner.commit(staged, time, entry);
            outcomes[d.index] = Outcome::Delivered;
        }
    }
    Ok((delivered, time))
}

/// Destroys nodes of `owner` in one transaction.  `each` calls its argument
/// for every node to destroy; it is called once per step.  The caller has
/// removed the nodes from the owner's ids already.
pub(crate) fn destroy_nodes<F>(owner: &Peer, each: F)
where
    F: Fn(&mut dyn FnMut(&Arc<Node>)),
{
    let sender = owner.id();
    let seq = owner.next_seq();
    let mut nodes = owner.lock_nodes();

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
        let Some(state) = node.state_mut(&mut nodes) else {
            return;
        };
        state.destroy_stamp = match state.destroy_slot.take() {
            Some(slot) => {
                part += 1;
                note(owner.stage(EntryId { sender, seq, part }, slot, Some(node)))
            }
            None => {
                node.mark_destroyed();
                None
            }
        };
        for holder in state.holders.values_mut() {
            if let Some(slot) = holder.slot.take() {
                part += 1;
                let id = EntryId { sender, seq, part };
                holder.staged = note(holder.peer.stage(id, slot, None));
            }
            // A node may have very many holders; only mutexes are held.
            cond_resched();
        }
    });

    // 2. The commit time, above every tentative one.
    let time = max_time + 1;

    // 3. Raise every clock before the first commit.
    each(&mut |node| {
        let Some(state) = node.state_mut(&mut nodes) else {
            return;
        };
        if state.destroy_stamp.is_some() {
            owner.raise_clock(time);
        }
        for holder in state.holders.values().filter(|h| h.staged.is_some()) {
            holder.peer.raise_clock(time);
            cond_resched();
        }
    });

    // 4. Commit, and forget the nodes' state: they are gone.
    each(&mut |node| {
        let Some(state) = node.state_mut(&mut nodes) else {
            return;
        };
        if let Some(staged) = state.destroy_stamp {
            owner.commit(staged, time, Entry::NodeDestroy { id: node.id });
        }
        let mut holders = 0;
        for holder in state.holders.values() {
            holders += 1;
            if let Some(staged) = holder.staged {
                holder
                    .peer
                    .commit(staged, time, Entry::NodeDestroy { id: holder.id });
            }
            cond_resched();
        }
        trace::node_destroy(owner, node.id, seq, time, holders);
        state.remove();
    });
}
