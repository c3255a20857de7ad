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

    /// The first entry, if a reader can take it, where it is, and whether
    /// another entry of the same transaction follows it.
    ///
    /// All entries a transaction has in one queue are committed at the same
    /// time and sort next to each other; while one of them is still staged,
    /// it sorts before the committed ones (its tentative time is below the
    /// commit time), so the queue is not readable.  Hence the entry after
    /// a readable first entry tells whether the transaction continues.
    ///
    /// The entry is marked as being read until `pop()` or `end_read()`.
    pub(crate) fn peek(&mut self) -> Option<(Stamp, &Entry, bool)> {
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
        Some((*stamp, entry, continues))
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

#[kunit_tests(bus1_queue)]
mod tests {
    use super::*;
    use crate::{limits, quota::User};
    use kernel::sync::Arc;

    /// The receiving peer's user (a raw kuid).
    const OWNER: u32 = 1000;

    fn new_queue() -> Result<(Queue, Arc<User>)> {
        let user = User::new(OWNER)?;
        Ok((Queue::new(Account::new(user.clone())), user))
    }

    fn slot() -> Result<Slot> {
        RBTreeNodeReservation::new(GFP_KERNEL)
    }

    fn stamp(time: u64, sender: u64, seq: u64, part: u64) -> Stamp {
        Stamp {
            time,
            sender,
            seq,
            part,
        }
    }

    fn note(id: u64) -> Entry {
        Entry::NodeRelease { id }
    }

    /// A message of `bytes` bytes from a peer of the queue's own user.
    fn charge(bytes: u64) -> Charge {
        Charge {
            sender: OWNER,
            usage: used(1, bytes),
        }
    }

    fn used(messages: u64, bytes: u64) -> Usage {
        Usage {
            messages,
            bytes,
            handles: 0,
            fds: 0,
        }
    }

    fn errno(refusal: Refusal) -> Error {
        match refusal {
            Refusal::Refused(e) => e,
            Refusal::NeedSlots => EAGAIN,
        }
    }

    fn stage_charged(
        q: &mut Queue,
        (sender, seq, part): (u64, u64, u64),
        raise: bool,
        charge: &Charge,
    ) -> Result<Stamp> {
        let id = EntryId { sender, seq, part };
        q.stage(id, slot()?, raise, charge, &mut ShareSlots::default())
            .map_err(|(_, refusal)| errno(refusal))
    }

    /// Stages a place for a notification (nothing charged).
    fn stage(q: &mut Queue, sender: u64, seq: u64, part: u64, raise: bool) -> Result<Stamp> {
        stage_charged(q, (sender, seq, part), raise, &Charge::default())
    }

    fn push_charged(
        q: &mut Queue,
        (sender, seq): (u64, u64),
        id: u64,
        charge: &Charge,
    ) -> Result<(bool, Stamp)> {
        q.push(
            sender,
            seq,
            note(id),
            slot()?,
            charge,
            &mut ShareSlots::default(),
        )
        .map_err(|(_, _, refusal)| errno(refusal))
    }

    /// Pushes a notification with id `id` (nothing charged).
    fn push(q: &mut Queue, sender: u64, seq: u64, id: u64) -> Result<(bool, Stamp)> {
        push_charged(q, (sender, seq), id, &Charge::default())
    }

    /// What a reader sees: the id of the first entry and whether its
    /// transaction continues.
    fn first(q: &mut Queue) -> Option<(u64, bool)> {
        q.peek()
            .map(|(_, entry, continues)| (entry.id(), continues))
    }

    fn popped(q: &mut Queue) -> Option<Stamp> {
        q.pop().map(|node| node.to_key_value().0)
    }

    /// Whether the queue holds exactly `stamps`, in this order.
    fn holds(q: &Queue, stamps: &[Stamp]) -> bool {
        q.entries.keys().eq(stamps.iter())
    }

    #[test]
    fn stamps_sort_by_time_sender_seq_part() -> Result {
        assert!(stamp(1, 9, 9, 9) < stamp(2, 0, 0, 0));
        assert!(stamp(2, 1, 9, 9) < stamp(2, 2, 0, 0));
        assert!(stamp(2, 2, 1, 9) < stamp(2, 2, 2, 0));
        assert!(stamp(2, 2, 2, 0) < stamp(2, 2, 2, 1));
        assert!(stamp(3, 1, 1, 0).same_transaction(&stamp(3, 1, 1, 7)));
        assert!(!stamp(3, 1, 1, 0).same_transaction(&stamp(4, 1, 1, 0)));
        assert!(!stamp(3, 1, 1, 0).same_transaction(&stamp(3, 2, 1, 0)));
        assert!(!stamp(3, 1, 1, 0).same_transaction(&stamp(3, 1, 2, 0)));
        // Staged without raising the clock, all four are at time 1 and
        // sort by sender, sequence and part.
        let (mut q, _user) = new_queue()?;
        assert_eq!(stage(&mut q, 3, 1, 0, false)?, stamp(1, 3, 1, 0));
        assert_eq!(stage(&mut q, 1, 2, 1, false)?, stamp(1, 1, 2, 1));
        assert_eq!(stage(&mut q, 1, 2, 0, false)?, stamp(1, 1, 2, 0));
        assert_eq!(stage(&mut q, 2, 0, 0, false)?, stamp(1, 2, 0, 0));
        assert!(holds(
            &q,
            &[
                stamp(1, 1, 2, 0),
                stamp(1, 1, 2, 1),
                stamp(1, 2, 0, 0),
                stamp(1, 3, 1, 0),
            ]
        ));
        assert_eq!(q.clock, 0);
        Ok(())
    }

    #[test]
    fn push_takes_the_next_tick_and_pops_in_order() -> Result {
        let (mut q, user) = new_queue()?;
        for i in 0..3 {
            let (readable, pushed) = push_charged(&mut q, (5, i), 10 + i, &charge(300))?;
            assert!(readable);
            assert_eq!(pushed, stamp(i + 1, 5, i, 0));
        }
        assert_eq!(q.clock, 3);
        assert!(q.usage() == used(3, 900));
        assert!(user.used() == used(3, 900));
        for i in 0..3 {
            assert_eq!(first(&mut q), Some((10 + i, false)));
            assert_eq!(popped(&mut q), Some(stamp(i + 1, 5, i, 0)));
            assert!(q.usage() == used(2 - i, 600 - 300 * i));
        }
        assert!(!q.is_readable());
        assert_eq!(first(&mut q), None);
        assert!(user.used() == Usage::default());
        Ok(())
    }

    #[test]
    fn staged_entry_blocks_later_committed_ones() -> Result {
        let (mut q, _user) = new_queue()?;
        let t = stage(&mut q, 1, 1, 0, false)?;
        assert_eq!(t, stamp(1, 1, 1, 0));
        // U is committed behind the staged T: nobody may see it yet.
        let (readable, u) = push(&mut q, 2, 1, 20)?;
        assert!(!readable);
        assert_eq!(u, stamp(1, 2, 1, 0));
        assert!(!q.is_readable());
        assert_eq!(first(&mut q), None);
        assert_eq!(popped(&mut q), None);
        // T commits above its tentative time and moves behind U.
        q.raise_clock(2);
        assert!(matches!(q.commit(t, 2, note(10)), Ok(true)));
        assert!(holds(&q, &[stamp(1, 2, 1, 0), stamp(2, 1, 1, 0)]));
        assert_eq!(first(&mut q), Some((20, false)));
        assert_eq!(popped(&mut q), Some(u));
        assert_eq!(first(&mut q), Some((10, false)));
        assert_eq!(popped(&mut q), Some(stamp(2, 1, 1, 0)));
        Ok(())
    }

    #[test]
    fn raised_clock_orders_later_stagings_after() -> Result {
        let (mut q, _user) = new_queue()?;
        let t = stage(&mut q, 9, 1, 0, false)?;
        q.raise_clock(10);
        // A lower time never lowers the clock.
        q.raise_clock(5);
        assert_eq!(q.clock, 10);
        assert!(matches!(q.commit(t, 10, note(90)), Ok(true)));
        // Later stagings sort after T, even from a lower sender id; staging
        // without `raise` leaves the clock, with it takes the clock along.
        assert_eq!(stage(&mut q, 1, 1, 0, false)?, stamp(11, 1, 1, 0));
        assert_eq!(q.clock, 10);
        assert_eq!(stage(&mut q, 1, 2, 0, true)?, stamp(11, 1, 2, 0));
        assert_eq!(q.clock, 11);
        assert_eq!(push(&mut q, 1, 3, 30)?, (true, stamp(12, 1, 3, 0)));
        assert_eq!(q.clock, 12);
        // The staged entries behind T do not hide it.
        assert_eq!(first(&mut q), Some((90, false)));
        assert_eq!(popped(&mut q), Some(stamp(10, 9, 1, 0)));
        assert!(!q.is_readable());
        Ok(())
    }

    #[test]
    fn unstaging_unblocks_and_uncharges() -> Result {
        let (mut q, user) = new_queue()?;
        let t = stage_charged(&mut q, (1, 1, 0), false, &charge(500))?;
        let (readable, _) = push_charged(&mut q, (2, 1), 20, &charge(300))?;
        assert!(!readable);
        assert!(q.usage() == used(2, 800));
        assert!(user.used() == used(2, 800));
        // T gives up: U becomes readable, T's charge comes back.
        assert!(q.unstage(t).is_some());
        assert!(q.usage() == used(1, 300));
        assert!(user.used() == used(1, 300));
        assert!(q.is_readable());
        assert_eq!(first(&mut q), Some((20, false)));
        // A second unstage finds nothing and gives nothing back.
        assert!(q.unstage(t).is_none());
        assert!(q.usage() == used(1, 300));
        assert!(!q.contains(t));
        Ok(())
    }

    #[test]
    fn transaction_is_read_only_once_all_committed() -> Result {
        let (mut q, _user) = new_queue()?;
        let p0 = stage(&mut q, 1, 1, 0, false)?;
        let p1 = stage(&mut q, 1, 1, 1, false)?;
        q.raise_clock(2);
        // Part 1 committed, part 0 still staged at time 1 before it.
        assert!(matches!(q.commit(p1, 2, note(11)), Ok(false)));
        assert_eq!(first(&mut q), None);
        assert!(matches!(q.commit(p0, 2, note(10)), Ok(true)));
        assert!(holds(&q, &[stamp(2, 1, 1, 0), stamp(2, 1, 1, 1)]));
        // The reader learns that the transaction continues.
        assert_eq!(first(&mut q), Some((10, true)));
        assert_eq!(popped(&mut q), Some(stamp(2, 1, 1, 0)));
        assert_eq!(first(&mut q), Some((11, false)));
        Ok(())
    }

    #[test]
    fn pop_takes_only_the_peeked_first_entry() -> Result {
        let (mut q, _user) = new_queue()?;
        let (_, a) = push(&mut q, 1, 1, 10)?;
        push(&mut q, 1, 2, 11)?;
        // Nothing peeked: nothing popped.
        assert_eq!(popped(&mut q), None);
        assert_eq!(first(&mut q), Some((10, false)));
        q.end_read();
        assert_eq!(popped(&mut q), None);
        assert!(q.contains(a));
        assert_eq!(first(&mut q), Some((10, false)));
        assert_eq!(popped(&mut q), Some(a));
        assert!(!q.contains(a));
        // One peek, one pop.
        assert_eq!(popped(&mut q), None);
        assert_eq!(first(&mut q), Some((11, false)));
        Ok(())
    }

    #[test]
    fn withdraw_spares_the_entry_being_read() -> Result {
        let (mut q, _user) = new_queue()?;
        let (_, a) = push(&mut q, 1, 1, 10)?;
        let (_, b) = push(&mut q, 1, 2, 11)?;
        assert_eq!(first(&mut q), Some((10, false)));
        // `a` is being read: it stays; `b` is not.
        assert!(q.withdraw(a).is_none());
        assert!(q.contains(a));
        assert!(q.withdraw(b).is_some());
        assert!(!q.contains(b));
        assert_eq!(popped(&mut q), Some(a));
        // Received: nothing left to withdraw.
        assert!(q.withdraw(a).is_none());
        // A receiver that gives up no longer protects its entry.
        let (_, c) = push(&mut q, 1, 3, 12)?;
        assert_eq!(first(&mut q), Some((12, false)));
        q.end_read();
        assert!(q.withdraw(c).is_some());
        assert!(!q.is_readable());
        assert!(q.entries.is_empty());
        Ok(())
    }

    #[test]
    fn queues_agree_on_interleaved_transactions() -> Result {
        let (mut a, _ua) = new_queue()?;
        let (mut b, _ub) = new_queue()?;
        a.raise_clock(5);
        // T (sender 1) and U (sender 2) both go to A (part 0) and B
        // (part 1); their stagings interleave.
        let ta = stage(&mut a, 1, 1, 0, false)?;
        let ub = stage(&mut b, 2, 1, 1, false)?;
        let ua = stage(&mut a, 2, 1, 0, false)?;
        let tb = stage(&mut b, 1, 1, 1, false)?;
        assert!(ta.time == 6 && ua.time == 6 && ub.time == 1 && tb.time == 1);
        // U finishes first; T, still staged before it, hides it everywhere.
        let u_time = ua.time.max(ub.time) + 1;
        a.raise_clock(u_time);
        b.raise_clock(u_time);
        assert!(matches!(a.commit(ua, u_time, note(20)), Ok(false)));
        assert!(matches!(b.commit(ub, u_time, note(21)), Ok(false)));
        assert_eq!(first(&mut a), None);
        assert_eq!(first(&mut b), None);
        let t_time = ta.time.max(tb.time) + 1;
        a.raise_clock(t_time);
        b.raise_clock(t_time);
        assert!(matches!(a.commit(ta, t_time, note(10)), Ok(true)));
        assert!(matches!(b.commit(tb, t_time, note(11)), Ok(true)));
        // Both at time 7: the sender breaks the tie the same way in both.
        assert!(holds(&a, &[stamp(7, 1, 1, 0), stamp(7, 2, 1, 0)]));
        assert!(holds(&b, &[stamp(7, 1, 1, 1), stamp(7, 2, 1, 1)]));
        assert_eq!(first(&mut a), Some((10, false)));
        assert_eq!(first(&mut b), Some((11, false)));
        Ok(())
    }

    #[test]
    fn later_transaction_sorts_after_a_committed_one() -> Result {
        let (mut a, _ua) = new_queue()?;
        let (mut b, _ub) = new_queue()?;
        a.raise_clock(5);
        // U (sender 2) goes to A and B and commits at 7.
        let ua = stage(&mut a, 2, 1, 0, false)?;
        let ub = stage(&mut b, 2, 1, 1, false)?;
        let u_time = ua.time.max(ub.time) + 1;
        assert_eq!(u_time, 7);
        a.raise_clock(u_time);
        b.raise_clock(u_time);
        assert!(matches!(a.commit(ua, u_time, note(20)), Ok(true)));
        assert!(matches!(b.commit(ub, u_time, note(21)), Ok(true)));
        assert_eq!(first(&mut b), Some((21, false)));
        b.end_read();
        // T (sender 1) starts after U was seen: B's raised clock puts T
        // behind U there, as in A, though B's own clock was 0 before U.
        let ta = stage(&mut a, 1, 1, 0, false)?;
        let tb = stage(&mut b, 1, 1, 1, false)?;
        assert!(ta.time == 8 && tb.time == 8);
        a.raise_clock(9);
        b.raise_clock(9);
        assert!(matches!(a.commit(ta, 9, note(10)), Ok(true)));
        assert!(matches!(b.commit(tb, 9, note(11)), Ok(true)));
        assert!(holds(&a, &[stamp(7, 2, 1, 0), stamp(9, 1, 1, 0)]));
        assert!(holds(&b, &[stamp(7, 2, 1, 1), stamp(9, 1, 1, 1)]));
        assert_eq!(first(&mut a), Some((20, false)));
        assert_eq!(first(&mut b), Some((21, false)));
        Ok(())
    }

    #[test]
    fn closed_queue_refuses_and_gives_everything_back() -> Result {
        let (mut q, user) = new_queue()?;
        push_charged(&mut q, (1, 1), 10, &charge(300))?;
        push_charged(&mut q, (1, 2), 11, &charge(200))?;
        let t = stage_charged(&mut q, (2, 1, 0), false, &charge(100))?;
        assert_eq!(t, stamp(3, 2, 1, 0));
        assert!(user.used() == used(3, 600));
        assert_eq!(first(&mut q), Some((10, false)));
        let dropped = q.close();
        assert_eq!(dropped.iter().count(), 3);
        assert!(q.usage() == Usage::default());
        assert!(user.used() == Usage::default());
        assert_eq!(popped(&mut q), None);
        assert!(stage(&mut q, 3, 1, 0, false) == Err(EHOSTUNREACH));
        assert!(push(&mut q, 3, 2, 13) == Err(EHOSTUNREACH));
        // T's place is gone: its commit gives the entry back, its unstage
        // finds nothing (and gives back no charge a second time).
        assert!(matches!(
            q.commit(t, 4, note(12)),
            Err(Entry::NodeRelease { id: 12 })
        ));
        assert!(q.unstage(t).is_none());
        assert!(user.used() == Usage::default());
        // A reset: the clock is kept, times do not go back.
        q.reopen();
        assert_eq!(push(&mut q, 1, 3, 14)?, (true, stamp(3, 1, 3, 0)));
        Ok(())
    }

    #[test]
    fn refused_charge_leaves_the_queue_unchanged() -> Result {
        let (mut q, user) = new_queue()?;
        let too_many_fds = Charge {
            sender: OWNER,
            usage: Usage {
                fds: limits::peer().fds + 1,
                ..used(1, 256)
            },
        };
        let pushed = q.push(
            1,
            1,
            note(10),
            slot()?,
            &too_many_fds,
            &mut ShareSlots::default(),
        );
        // The entry comes back to the caller.
        assert!(matches!(
            pushed,
            Err((Entry::NodeRelease { id: 10 }, _, Refusal::Refused(e))) if e == EDQUOT
        ));
        // Another user's first message needs share slots first.
        let foreign = Charge {
            sender: OWNER + 1,
            usage: used(1, 256),
        };
        assert!(stage_charged(&mut q, (2, 1, 0), false, &foreign) == Err(EAGAIN));
        assert!(q.entries.is_empty());
        assert!(q.usage() == Usage::default() && user.used() == Usage::default());
        assert_eq!(q.clock, 0);
        let mut shares = ShareSlots::new()?;
        let staged = q.stage(
            EntryId {
                sender: 2,
                seq: 1,
                part: 0,
            },
            slot()?,
            false,
            &foreign,
            &mut shares,
        );
        assert!(matches!(staged, Ok(s) if s == stamp(1, 2, 1, 0)));
        assert!(q.usage() == used(1, 256) && user.used() == used(1, 256));
        Ok(())
    }
}
