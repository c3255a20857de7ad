// SPDX-License-Identifier: GPL-2.0

//! Message queues and the global order.
//!
//! Every peer has one queue.  All transactions (messages and notifications)
//! are ordered globally, without a global lock, by the scheme of the
//! original bus1 design:
//!
//! 1. A transaction **stages** an entry in each destination queue, at a
//!    tentative timestamp above that queue's clock.
//! 2. It picks a commit timestamp above every tentative one.
//! 3. It raises the clock of every destination to the commit timestamp,
//!    *before* committing anywhere.
//! 4. It commits every entry at the commit timestamp.
//!
//! Entries sort by `(timestamp, sender, sequence, part)`; the last three
//! make the key unique and break ties the same way in every queue.  A reader takes
//! only the first entry, and only once it is committed.
//!
//! Why this gives one order: a transaction's final key is the same in all
//! its queues, so two transactions compare the same everywhere, provided no
//! reader takes an entry while an entry that will sort before it is still to
//! come.  A transaction T that is committed in queue Q has raised Q's clock
//! to its timestamp first, so anything staged in Q afterwards sorts after T;
//! anything staged before is already in Q and, while only staged, blocks the
//! reader until it is committed at its final (larger or equal) position.
//! Raising all clocks before the first commit extends this to causality: once
//! anyone can see T, every destination of T orders later stagings after T.
//! The same argument keeps a reader's first entry first: once committed, it
//! is at or below its queue's clock, and everything staged later sorts
//! above it, so the entry a reader copied out is the one it dequeues.
//!
//! A transaction with one destination stages at its final time right away
//! (the clock is raised with the staging), so it needs no steps 2 and 3.
//!
//! A transaction can still give up before step 4 (a destination node is
//! destroyed); it then removes what it staged, which only unblocks readers.
//! The check is repeated in step 3 under the queue lock that also stages a
//! destruction: a destruction staged after that raise sorts after the
//! transaction, and one staged before it is seen.  Since nothing is
//! committed before every destination passed step 3, nobody ever sees a
//! transaction that gave up.

use kernel::{
    prelude::*,
    rbtree::{RBTree, RBTreeNode, RBTreeNodeReservation},
};

use crate::{
    message::Entry,
    quota::{Account, Charge, Refusal, ShareSlots, Usage},
};

/// Position of an entry in a queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Stamp {
    /// Logical time: tentative while staged, final once committed.
    pub(crate) time: u64,
    /// Id of the peer that started the transaction.
    pub(crate) sender: u64,
    /// Transaction number within `sender`.
    pub(crate) seq: u64,
    /// Entry number within the transaction.
    pub(crate) part: u64,
}

/// Which entry of which transaction: the part of a stamp that never changes.
#[derive(Clone, Copy)]
pub(crate) struct EntryId {
    pub(crate) sender: u64,
    pub(crate) seq: u64,
    pub(crate) part: u64,
}

/// Storage for one queued entry, allocated before any lock is taken.
pub(crate) type Slot = RBTreeNodeReservation<Stamp, QueuedEntry>;

/// An entry in a queue and whether it is committed yet.
pub(crate) struct QueuedEntry {
    pub(crate) committed: bool,
    /// What the entry is charged to its receiver (nothing for
    /// notifications, whose slots are allocated in advance: they are never
    /// refused).
    charge: Charge,
    /// `None` while staged: the entry comes with the commit, so that what it
    /// carries (in-flight handle references) is taken only once the
    /// transaction can no longer fail.
    pub(crate) entry: Option<Entry>,
}

/// A peer's queue; always accessed under the peer's queue lock.
///
/// # Invariants
///
/// * No entry is staged at or below `clock` after `clock` was raised past
///   it (see the module documentation for why this gives one order).
/// * `reading`, if set, is the stamp of the first entry, which is
///   committed; it is neither withdrawn nor moved until the receiver pops
///   it or gives up.
/// * `account` holds exactly the charges of the entries in `entries`.
pub(crate) struct Queue {
    /// No timestamp at or below this can still be staged.
    clock: u64,
    entries: RBTree<Stamp, QueuedEntry>,
    /// A closed queue takes no more entries (its peer is gone).
    closed: bool,
    /// The first entry while a receiver copies it out: it is not withdrawn
    /// meanwhile, and it is the one the receiver dequeues.
    reading: Option<Stamp>,
    /// What is staged or queued here, charged to the receiving peer and
    /// its user (see `quota.rs`): a receiver that does not read makes its
    /// senders fail with `EDQUOT` instead of using up the kernel's memory.
    account: Account,
}

impl Stamp {
    /// Whether both entries belong to the same transaction, once committed.
    pub(crate) fn same_transaction(&self, other: &Stamp) -> bool {
        (self.time, self.sender, self.seq) == (other.time, other.sender, other.seq)
    }
}

/// A removed entry, to be dropped by the caller outside the queue lock.
pub(crate) type Removed = RBTreeNode<Stamp, QueuedEntry>;

impl Queue {
    pub(crate) fn new(account: Account) -> Self {
        Self {
            clock: 0,
            entries: RBTree::new(),
            closed: false,
            reading: None,
            account,
        }
    }

    /// What the queue holds, charged to its peer.
    pub(crate) fn usage(&self) -> Usage {
        self.account.used()
    }

    /// Takes `charge` from the receiver's quota, or tells why the queue
    /// refuses an entry.
    fn charge(&mut self, charge: &Charge, shares: &mut ShareSlots) -> Result<(), Refusal> {
        if self.closed {
            return Err(Refusal::Refused(EHOSTUNREACH));
        }
        self.account.charge(charge, shares)
    }

    /// Step 1: stages a place holder above the clock and returns its
    /// tentative stamp.  The entry itself comes with the commit.  With
    /// `raise`, the clock is raised to the stamp right away, which makes the
    /// tentative stamp final (for a transaction with one destination).
    ///
    /// `charge` is taken from the quota (see `charge()`); a queue that
    /// refuses gives the slot back with the reason.
    pub(crate) fn stage(
        &mut self,
        id: EntryId,
        slot: Slot,
        raise: bool,
        charge: &Charge,
        shares: &mut ShareSlots,
    ) -> Result<Stamp, (Slot, Refusal)> {
        if let Err(refusal) = self.charge(charge, shares) {
            return Err((slot, refusal));
        }
        let stamp = Stamp {
            time: self.clock + 1,
            sender: id.sender,
            seq: id.seq,
            part: id.part,
        };
        if raise {
            self.clock = stamp.time;
        }
        let node = slot.into_node(
            stamp,
            QueuedEntry {
                committed: false,
                charge: *charge,
                entry: None,
            },
        );
        // Stamps are unique: (sender, seq, part) is never used twice.
        let _ = self.entries.insert(node);
        Ok(stamp)
    }

    /// Takes back an entry staged by a transaction that gives up.  The
    /// queue may become readable: the entry blocked everything behind it.
    pub(crate) fn unstage(&mut self, staged: Stamp) -> Option<Removed> {
        let charge = self.entries.get(&staged)?.charge;
        self.account.uncharge(&charge);
        self.entries.remove_node(&staged)
    }

    /// Step 3: no later staging may sort at or below `time`.
    pub(crate) fn raise_clock(&mut self, time: u64) {
        if self.clock < time {
            self.clock = time;
        }
    }

    /// Step 4: puts `entry` in the place staged at `staged`, moved to its
    /// final time `time`.  Returns whether the queue is readable now, or
    /// gives the entry back if its place is gone (the queue was closed).
    pub(crate) fn commit(&mut self, staged: Stamp, time: u64, entry: Entry) -> Result<bool, Entry> {
        let Some(mut found) = self.entries.find_mut(&staged) else {
            return Err(entry);
        };
        let queued = QueuedEntry {
            committed: true,
            charge: found.get().charge,
            entry: Some(entry),
        };
        if time == staged.time {
            *found.get_mut() = queued;
        } else {
            // Reuses the node's memory: no allocation or free under the lock.
            let node = found
                .remove_node()
                .into_reservation()
                .into_node(Stamp { time, ..staged }, queued);
            let _ = self.entries.insert(node);
        }
        Ok(self.is_readable())
    }

    /// Stages and commits in one step, for a transaction with one
    /// destination whose entry is known up front; returns whether the
    /// queue became readable.  `charge` as for `stage()`.
    pub(crate) fn push(
        &mut self,
        sender: u64,
        seq: u64,
        entry: Entry,
        slot: Slot,
        charge: &Charge,
        shares: &mut ShareSlots,
    ) -> Result<(bool, Stamp), (Entry, Slot, Refusal)> {
        if let Err(refusal) = self.charge(charge, shares) {
            return Err((entry, slot, refusal));
        }
        self.clock += 1;
        let stamp = Stamp {
            time: self.clock,
            sender,
            seq,
            part: 0,
        };
        let queued = QueuedEntry {
            committed: true,
            charge: *charge,
            entry: Some(entry),
        };
        let _ = self.entries.insert(slot.into_node(stamp, queued));
        Ok((self.is_readable(), stamp))
    }

    /// Whether the entry at `stamp` is in the queue.
    pub(crate) fn contains(&self, stamp: Stamp) -> bool {
        self.entries.get(&stamp).is_some()
    }

    /// Removes a committed notification that nobody has started to
    /// receive (a release notification made stale by a new reference).
    pub(crate) fn withdraw(&mut self, stamp: Stamp) -> Option<Removed> {
        if self.reading == Some(stamp) {
            return None;
        }
        self.entries.remove_node(&stamp)
    }

    /// Whether the first entry is committed, so a reader can take it.
    pub(crate) fn is_readable(&self) -> bool {
        self.entries.values().next().is_some_and(|q| q.committed)
    }

    /// The first entry, if a reader can take it, and whether another entry
    /// of the same transaction follows it.
    ///
    /// All entries a transaction has in one queue are committed at the same
    /// time and sort next to each other; while one of them is still staged,
    /// it sorts before the committed ones (its tentative time is below the
    /// commit time), so the queue is not readable.  Hence the entry after
    /// a readable first entry tells whether the transaction continues.
    ///
    /// The entry is marked as being read until `pop()` or `end_read()`.
    pub(crate) fn peek(&mut self) -> Option<(&Entry, bool)> {
        let mut entries = self.entries.iter();
        let (stamp, queued) = entries.next()?;
        if !queued.committed {
            return None;
        }
        let entry = queued.entry.as_ref()?;
        let continues = entries
            .next()
            .is_some_and(|(next, _)| next.same_transaction(stamp));
        // INVARIANT: the first entry, committed.
        self.reading = Some(*stamp);
        Some((entry, continues))
    }

    /// A receiver gives up on the entry it peeked; it stays queued.
    pub(crate) fn end_read(&mut self) {
        self.reading = None;
    }

    /// Removes the entry the receiver peeked, which is still the first.
    /// The caller drops the returned node after releasing the queue lock.
    pub(crate) fn pop(&mut self) -> Option<Removed> {
        let reading = self.reading.take()?;
        let cursor = self.entries.cursor_front_mut()?;
        let (&stamp, first) = cursor.current();
        if stamp != reading || !first.committed {
            return None;
        }
        let charge = first.charge;
        let (_, node) = cursor.remove_current();
        self.account.uncharge(&charge);
        Some(node)
    }

    /// Closes the queue and hands out everything in it, to be dropped by the
    /// caller outside the lock.
    pub(crate) fn close(&mut self) -> RBTree<Stamp, QueuedEntry> {
        self.closed = true;
        self.reading = None;
        self.account.uncharge_all();
        core::mem::take(&mut self.entries)
    }

    /// Takes entries again after `close()` (a peer reset).  The clock is
    /// kept: times must never go back.
    pub(crate) fn reopen(&mut self) {
        self.closed = false;
    }
}
