// SPDX-License-Identifier: GPL-2.0

//! A peer's queue in transactions.
//!
//! The steps of `queue.rs` (stage, raise, commit, push) as one peer's
//! queue takes part in a transaction: each takes the queue lock, checks
//! the destination node's liveness where the order requires it, and wakes
//! the receivers when the queue became readable.  Nothing is allocated or
//! dropped under the lock.

use kernel::prelude::*;

use super::Peer;
use crate::{
    message::Entry,
    node::Node,
    queue::{EntryId, Removed, Slot, Stamp},
    quota::{self, Charge, Refusal, ShareSlots},
    trace::{self, EntryInfo},
};

/// What became of a queued notification that was to be withdrawn.
pub(crate) enum Withdrawn {
    /// Taken off the queue; the caller drops it or reuses its memory.
    Removed(Removed),
    /// A receiver is copying it out: it stays.
    Reading,
    /// Already received.
    Received,
}

impl Peer {
    /// Queues an entry of a one-destination transaction, charged `charge`
    /// (see `Queue::stage()`), unless this peer refuses it or `refuse()`,
    /// checked under the queue lock, says no.  A refused entry comes back
    /// to be dropped by the caller, after the lock.
    pub(super) fn push(
        &self,
        sender: u64,
        seq: u64,
        entry: Entry,
        slot: Slot,
        charge: &Charge,
        refuse: impl Fn() -> bool,
    ) -> Result<Stamp, (Entry, Slot, Error)> {
        let info = EntryInfo::of(&entry);
        let pushed = quota::with_share_slots((entry, slot), |(entry, slot), shares| {
            let mut queue = self.queue.lock();
            if refuse() {
                return Err(((entry, slot), Refusal::Refused(EHOSTUNREACH)));
            }
            queue
                .push(sender, seq, entry, slot, charge, shares)
                .map_err(|(entry, slot, refusal)| ((entry, slot), refusal))
        });
        match pushed {
            Ok((readable, stamp)) => {
                trace::queue(self, &stamp, &info);
                if readable {
                    self.waitq.notify_all();
                }
                Ok(stamp)
            }
            Err(((entry, slot), e)) => Err((entry, slot, e)),
        }
    }

    /// Queues the entry of a one-destination message to `node`, owned by
    /// this peer, unless the node is destroyed (checked under the queue
    /// lock, where a destruction is staged); returns where.
    pub(crate) fn push_message(
        &self,
        node: &Node,
        sender: u64,
        seq: u64,
        entry: Entry,
        slot: Slot,
        charge: &Charge,
    ) -> Result<Stamp, (Entry, Slot, Error)> {
        self.push(sender, seq, entry, slot, charge, || node.is_destroyed())
    }

    /// Queues a notification on this peer and returns where; a closed peer
    /// drops it.  Notifications are never charged, so nothing allocates.
    pub(crate) fn queue_notification(&self, entry: Entry, slot: Slot) -> Option<Stamp> {
        let free = Charge::default();
        self.push(self.id, self.next_seq(), entry, slot, &free, || false)
            .ok()
    }

    /// Takes back a queued notification nobody has started to receive.
    pub(crate) fn withdraw_notification(&self, stamp: Stamp) -> Withdrawn {
        let mut queue = self.queue.lock();
        match queue.withdraw(stamp) {
            Some(removed) => Withdrawn::Removed(removed),
            None if queue.contains(stamp) => Withdrawn::Reading,
            None => Withdrawn::Received,
        }
    }

    /// Whether the entry at `stamp` is still in the queue.
    pub(crate) fn is_queued(&self, stamp: Stamp) -> bool {
        self.queue.lock().contains(stamp)
    }

    /// Step 1 of a transaction: stages a place in this peer's queue.  With
    /// `destroying`, marks that node destroyed in the same critical section.
    /// Returns `None` if the peer is gone.
    pub(crate) fn stage(
        &self,
        id: EntryId,
        slot: Slot,
        destroying: Option<&Node>,
    ) -> Option<Stamp> {
        let result = {
            let mut queue = self.queue.lock();
            if let Some(node) = destroying {
                node.mark_destroyed();
            }
            queue.stage(
                id,
                slot,
                false,
                &Charge::default(),
                &mut ShareSlots::default(),
            )
        };
        // A refused slot is freed here, after the lock.
        result.ok()
    }

    /// Step 1 for a message to `node`, owned by this peer, charged
    /// `charge` bytes: refused (the slot comes back, with the reason) if the
    /// node is destroyed, the peer gone or its quota used up.  With `raise`,
    /// the tentative stamp is final at once (one destination).
    pub(crate) fn stage_message(
        &self,
        node: &Node,
        id: EntryId,
        slot: Slot,
        raise: bool,
        charge: &Charge,
    ) -> Result<Stamp, (Slot, Error)> {
        quota::with_share_slots(slot, |slot, shares| {
            let mut queue = self.queue.lock();
            if node.is_destroyed() {
                return Err((slot, Refusal::Refused(EHOSTUNREACH)));
            }
            queue.stage(id, slot, raise, charge, shares)
        })
    }

    /// Step 3 of a transaction.
    pub(crate) fn raise_clock(&self, time: u64) {
        self.queue.lock().raise_clock(time);
    }

    /// Step 3 for a message to `node`, owned by this peer: raises the clock
    /// if the node is still alive, else takes the staged place back and
    /// returns `false`.  A destruction is marked under this same lock, so
    /// either it is seen here or it is staged after the raise and sorts
    /// after the message.
    pub(crate) fn confirm(&self, node: &Node, staged: Stamp, time: u64) -> bool {
        let removed = {
            let mut queue = self.queue.lock();
            if !node.is_destroyed() {
                queue.raise_clock(time);
                return true;
            }
            let removed = queue.unstage(staged);
            if queue.is_readable() {
                self.waitq.notify_all();
            }
            removed
        };
        drop(removed);
        false
    }

    /// Takes back a staged place of a transaction that gives up.
    pub(crate) fn unstage(&self, staged: Stamp) {
        let removed = {
            let mut queue = self.queue.lock();
            let removed = queue.unstage(staged);
            if queue.is_readable() {
                self.waitq.notify_all();
            }
            removed
        };
        drop(removed);
    }

    /// Step 4 of a transaction: `entry` takes the place staged at `staged`,
    /// at its final time.  If the peer closed meanwhile, the entry is
    /// dropped, as if it had been queued just before the close.
    pub(crate) fn commit(&self, staged: Stamp, time: u64, entry: Entry) {
        let info = EntryInfo::of(&entry);
        let result = self.queue.lock().commit(staged, time, entry);
        if result.is_ok() {
            trace::queue(self, &Stamp { time, ..staged }, &info);
        }
        match result {
            Ok(true) => self.waitq.notify_all(),
            Ok(false) => {}
            Err(entry) => drop(entry),
        }
    }
}
