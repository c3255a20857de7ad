// SPDX-License-Identifier: GPL-2.0

//! Resource accounting.
//!
//! A queued message costs kernel memory until its receiver takes it, so
//! the **receiver** pays: at send time, the message is charged to two
//! pools of the receiving side, the receiving peer's and that of the user
//! who opened that peer (its effective uid at `bus1_open(2)`; all peers of
//! one user draw from one user pool).  A message costs one message, its
//! payload plus `MESSAGE_OVERHEAD` bytes, the handles and the file
//! descriptors it carries.  The charge is given back when the receiver
//! dequeues the message or drops it unreceived (close, reset).  A charge
//! that does not fit fails with `EDQUOT` and queues nothing.
//! Notifications cost nothing: their memory is set aside in advance.
//!
//! Fair share: in each pool, a sender whose user is not the pool's owner
//! may hold at most what remains free after its charge,
//! `share + charge <= limit - (used + charge)`.  One foreign user thus gets
//! at most half of what was free, the next one half of the rest, and so
//! on: a hostile user that floods a peer cannot take its last free half,
//! so other users can still send to it, and the pool of the owner's other
//! peers is never used up by strangers.  The owner's own peers are bounded
//! by the limit alone.
//!
//! The limits are sysctls (see `limits.rs`); `/proc/<pid>/fdinfo/<fd>` of
//! a peer shows both pools' use and limits.

use kernel::{
    new_spinlock,
    prelude::*,
    rbtree::{RBTree, RBTreeNode, RBTreeNodeReservation},
    sync::{
        atomic::{Atomic, Relaxed},
        global_lock, Arc, SpinLock,
    },
    task::Kuid,
};

use crate::limits;

/// Amounts of the four accounted resources.
#[derive(Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Usage {
    pub(crate) messages: u64,
    pub(crate) bytes: u64,
    pub(crate) handles: u64,
    pub(crate) fds: u64,
}

impl Usage {
    fn zip(self, other: Usage, f: impl Fn(u64, u64) -> u64) -> Usage {
        Usage {
            messages: f(self.messages, other.messages),
            bytes: f(self.bytes, other.bytes),
            handles: f(self.handles, other.handles),
            fds: f(self.fds, other.fds),
        }
    }

    fn plus(self, other: Usage) -> Usage {
        self.zip(other, u64::saturating_add)
    }

    fn minus(self, other: Usage) -> Usage {
        self.zip(other, u64::saturating_sub)
    }

    fn as_array(&self) -> [u64; 4] {
        [self.messages, self.bytes, self.handles, self.fds]
    }

    /// Whether `self` is at most `bound` in every resource that `charge`
    /// uses (a charge must not fail on what it does not ask for).
    fn within(&self, bound: &Usage, charge: &Usage) -> bool {
        let (v, b, c) = (self.as_array(), bound.as_array(), charge.as_array());
        (0..4).all(|i| c[i] == 0 || v[i] <= b[i])
    }
}

/// What one queued entry holds of its receiver's pools, and on whose
/// behalf (the sending peer's user, as a raw kuid).
#[derive(Clone, Copy, Default)]
pub(crate) struct Charge {
    pub(crate) sender: u32,
    pub(crate) usage: Usage,
}

impl Charge {
    fn is_free(&self) -> bool {
        self.usage == Usage::default()
    }
}

/// Why a charge was not taken.
pub(crate) enum Refusal {
    /// For good, with this errno.
    Refused(Error),
    /// A pool has no share entry for the sender yet: allocate `ShareSlots`
    /// outside the locks and try again.
    NeedSlots,
}

/// Storage for a sender's share entry in one pool.
type ShareSlot = RBTreeNodeReservation<u32, Usage>;

/// Share entries for both pools of a receiver, allocated before its locks
/// are taken; what a charge does not use is freed after them.
#[derive(Default)]
pub(crate) struct ShareSlots {
    peer: Option<ShareSlot>,
    user: Option<ShareSlot>,
}

impl ShareSlots {
    pub(crate) fn new() -> Result<Self> {
        Ok(Self {
            peer: Some(RBTreeNodeReservation::new(GFP_KERNEL_ACCOUNT)?),
            user: Some(RBTreeNodeReservation::new(GFP_KERNEL_ACCOUNT)?),
        })
    }
}

/// Runs `attempt` (which takes the queue lock and charges) until it no
/// longer asks for share slots, allocating them between attempts, outside
/// the locks.  `held` is what an attempt consumes and gives back when it is
/// refused; unused slots are freed on return, after the attempt's locks.
pub(crate) fn with_share_slots<T, H>(
    mut held: H,
    mut attempt: impl FnMut(H, &mut ShareSlots) -> Result<T, (H, Refusal)>,
) -> Result<T, (H, Error)> {
    let mut shares = ShareSlots::default();
    loop {
        match attempt(held, &mut shares) {
            Ok(done) => return Ok(done),
            Err((back, Refusal::Refused(e))) => return Err((back, e)),
            Err((back, Refusal::NeedSlots)) => {
                held = back;
                shares = match ShareSlots::new() {
                    Ok(shares) => shares,
                    Err(e) => return Err((held, e)),
                };
            }
        }
    }
}

/// One pool: what is charged to it, in total and by sender.
pub(crate) struct Pool {
    /// The raw kuid whose senders are bounded by the limit alone.
    owner: u32,
    used: Usage,
    /// What each other user holds.  Entries stay when they drop to zero
    /// (freeing is not allowed under the pool's lock); there is at most one
    /// for each user that ever sent to the pool.
    shares: RBTree<u32, Usage>,
}

impl Pool {
    pub(crate) fn new(owner: u32) -> Self {
        Self {
            owner,
            used: Usage::default(),
            shares: RBTree::new(),
        }
    }

    pub(crate) fn used(&self) -> Usage {
        self.used
    }

    /// Whether `charge` fits under `limit` by the rules above.
    fn check(
        &self,
        charge: &Charge,
        limit: &Usage,
        slot: &Option<ShareSlot>,
    ) -> Result<(), Refusal> {
        let used = self.used.plus(charge.usage);
        if !used.within(limit, &charge.usage) {
            return Err(Refusal::Refused(EDQUOT));
        }
        if charge.sender == self.owner {
            return Ok(());
        }
        let share = match self.shares.get(&charge.sender) {
            Some(share) => *share,
            None if slot.is_some() => Usage::default(),
            None => return Err(Refusal::NeedSlots),
        };
        let free_after = limit.minus(used);
        if !share.plus(charge.usage).within(&free_after, &charge.usage) {
            return Err(Refusal::Refused(EDQUOT));
        }
        Ok(())
    }

    /// Takes a charge that passed `check()`.
    fn take(&mut self, charge: &Charge, slot: &mut Option<ShareSlot>) {
        self.used = self.used.plus(charge.usage);
        if charge.sender == self.owner {
            return;
        }
        if let Some(share) = self.shares.get_mut(&charge.sender) {
            *share = share.plus(charge.usage);
        } else if let Some(slot) = slot.take() {
            let _ = self
                .shares
                .insert(slot.into_node(charge.sender, charge.usage));
        }
    }

    fn give_back(&mut self, charge: &Charge) {
        self.used = self.used.minus(charge.usage);
        if let Some(share) = self.shares.get_mut(&charge.sender) {
            *share = share.minus(charge.usage);
        }
    }

    /// Gives back everything `part` holds: `part` is a pool whose charges
    /// were all charged to this one too, with the same owner (a peer's pool
    /// within its user's), so the shares match sender by sender.
    fn give_back_pool(&mut self, part: &Pool) {
        self.used = self.used.minus(part.used);
        for (sender, held) in part.shares.iter() {
            if let Some(share) = self.shares.get_mut(sender) {
                *share = share.minus(*held);
            }
        }
    }

    /// Forgets every charge, keeping the share entries.
    fn clear(&mut self) {
        self.used = Usage::default();
        for share in self.shares.values_mut() {
            *share = Usage::default();
        }
    }
}

/// A user that has bus1 peers open, with the pool its peers share.
#[pin_data]
pub(crate) struct User {
    uid: u32,
    #[pin]
    pool: SpinLock<Pool>,
    /// Nodes owned by the user's peers together.
    nodes: Atomic<u64>,
    /// Handles held by the user's peers together.
    handles: Atomic<u64>,
}

/// Counts one more object of a user, unless that would exceed `limit`.
fn take_object(counter: &Atomic<u64>, limit: u64) -> Result {
    let mut used = counter.load(Relaxed);
    loop {
        if used >= limit {
            return Err(EDQUOT);
        }
        match counter.cmpxchg(used, used + 1, Relaxed) {
            Ok(_) => return Ok(()),
            Err(now) => used = now,
        }
    }
}

impl User {
    /// A user with nothing charged yet; `owner` is its raw kuid.
    pub(crate) fn new(owner: u32) -> Result<Arc<Self>> {
        Arc::pin_init(
            try_pin_init!(User {
                uid: owner,
                pool <- new_spinlock!(Pool::new(owner)),
                nodes: Atomic::new(0),
                handles: Atomic::new(0),
            }? Error),
            GFP_KERNEL,
        )
    }

    /// Counts a new node of one of the user's peers (`EDQUOT` at the limit).
    pub(crate) fn take_node(&self) -> Result {
        take_object(&self.nodes, limits::user_objects().nodes)
    }

    /// Counts a new handle of one of the user's peers (`EDQUOT` at the
    /// limit).
    pub(crate) fn take_handle(&self) -> Result {
        take_object(&self.handles, limits::user_objects().handles)
    }

    /// Counts a new handle that is never refused (received in a message).
    pub(crate) fn take_handle_unlimited(&self) {
        self.handles.fetch_add(1, Relaxed);
    }

    /// Gives back `nodes` nodes and `handles` handles.
    pub(crate) fn give_back_objects(&self, nodes: u64, handles: u64) {
        self.nodes.fetch_sub(nodes, Relaxed);
        self.handles.fetch_sub(handles, Relaxed);
    }

    /// How many nodes and handles the user's peers have.
    pub(crate) fn objects(&self) -> limits::Objects {
        limits::Objects {
            nodes: self.nodes.load(Relaxed),
            handles: self.handles.load(Relaxed),
        }
    }

    /// The raw kuid.
    pub(crate) fn uid(&self) -> u32 {
        self.uid
    }

    /// What the user's peers hold together.
    pub(crate) fn used(&self) -> Usage {
        self.pool.lock().used()
    }
}

/// A user with the number of its peers.
struct Registered {
    user: Arc<User>,
    peers: usize,
}

global_lock! {
    // SAFETY: Initialized by `init()` in the module initializer, before the
    // first peer can be opened.
    unsafe(uninit) static USERS: Mutex<Option<RBTree<u32, Registered>>> = None;
}

/// Sets up the user registry; called once, at boot.
pub(crate) fn init() {
    // SAFETY: Called once, from the module initializer, before any use.
    unsafe { USERS.init() };
}

/// A peer's membership in its user's accounting; leaving drops the user
/// once its last peer is gone.
pub(crate) struct UserRef(Arc<User>);

impl UserRef {
    /// Joins the pool of the caller's effective uid.
    pub(crate) fn current() -> Result<Self> {
        let uid = Kuid::current_euid().into_raw().val;
        let user = User::new(uid)?;
        let node = RBTreeNode::new(
            uid,
            Registered {
                user: user.clone(),
                peers: 1,
            },
            GFP_KERNEL,
        )?;
        let mut users = USERS.lock();
        let users = users.get_or_insert_with(RBTree::new);
        if let Some(known) = users.get_mut(&uid) {
            known.peers += 1;
            let known = known.user.clone();
            // The unused `user` and `node` are freed after the lock.
            return Ok(Self(known));
        }
        let _ = users.insert(node);
        Ok(Self(user))
    }

    pub(crate) fn user(&self) -> &Arc<User> {
        &self.0
    }
}

impl Drop for UserRef {
    fn drop(&mut self) {
        let gone = {
            let mut users = USERS.lock();
            let Some(users) = users.as_mut() else {
                return;
            };
            match users.get_mut(&self.0.uid) {
                Some(known) if known.peers > 1 => {
                    known.peers -= 1;
                    None
                }
                Some(_) => users.remove(&self.0.uid),
                None => None,
            }
        };
        drop(gone);
    }
}

/// The receiving side of a queue: the peer's pool and its user's.  Lives
/// under the queue lock; the user's pool lock nests inside it.
pub(crate) struct Account {
    pool: Pool,
    user: Arc<User>,
}

impl Account {
    pub(crate) fn new(user: Arc<User>) -> Self {
        Self {
            pool: Pool::new(user.uid),
            user,
        }
    }

    /// Charges both pools, or neither.
    pub(crate) fn charge(
        &mut self,
        charge: &Charge,
        slots: &mut ShareSlots,
    ) -> Result<(), Refusal> {
        if charge.is_free() {
            return Ok(());
        }
        let mut user_pool = self.user.pool.lock();
        self.pool.check(charge, &limits::peer(), &slots.peer)?;
        user_pool.check(charge, &limits::user(), &slots.user)?;
        self.pool.take(charge, &mut slots.peer);
        user_pool.take(charge, &mut slots.user);
        Ok(())
    }

    pub(crate) fn uncharge(&mut self, charge: &Charge) {
        if charge.is_free() {
            return;
        }
        self.user.pool.lock().give_back(charge);
        self.pool.give_back(charge);
    }

    /// Gives back everything the queue holds (it is emptied): the user's
    /// pool gets back the peer pool's totals, one step per sender rather
    /// than per entry.
    pub(crate) fn uncharge_all(&mut self) {
        self.user.pool.lock().give_back_pool(&self.pool);
        self.pool.clear();
    }

    /// What the peer's queue holds.
    pub(crate) fn used(&self) -> Usage {
        self.pool.used()
    }
}

#[kunit_tests(bus1_quota)]
mod tests {
    use super::*;

    /// The pool's owner and two other users (raw kuids).
    const OWNER: u32 = 1000;
    const ALICE: u32 = 2000;
    const BOB: u32 = 3000;

    fn usage(messages: u64, bytes: u64, handles: u64, fds: u64) -> Usage {
        Usage {
            messages,
            bytes,
            handles,
            fds,
        }
    }

    fn charge(sender: u32, messages: u64, bytes: u64, handles: u64, fds: u64) -> Charge {
        Charge {
            sender,
            usage: usage(messages, bytes, handles, fds),
        }
    }

    /// A small limit for the pool tests.
    fn limit() -> Usage {
        usage(100, 1000, 100, 10)
    }

    fn slot() -> Result<Option<ShareSlot>> {
        Ok(Some(RBTreeNodeReservation::new(GFP_KERNEL)?))
    }

    /// Checks and takes `charge`, as `Account::charge()` does for one pool.
    fn take(
        pool: &mut Pool,
        charge: &Charge,
        limit: &Usage,
        slot: &mut Option<ShareSlot>,
    ) -> Result<(), Refusal> {
        pool.check(charge, limit, slot)?;
        pool.take(charge, slot);
        Ok(())
    }

    fn is_edquot(result: Result<(), Refusal>) -> bool {
        matches!(result, Err(Refusal::Refused(e)) if e == EDQUOT)
    }

    fn needs_slots(result: Result<(), Refusal>) -> bool {
        matches!(result, Err(Refusal::NeedSlots))
    }

    fn share(pool: &Pool, sender: u32) -> Option<Usage> {
        pool.shares.get(&sender).copied()
    }

    #[test]
    fn owner_is_bounded_by_limit_alone() {
        let mut pool = Pool::new(OWNER);
        let limit = usage(8, 1000, 8, 4);
        let mut none = None;
        for _ in 0..8 {
            assert!(take(&mut pool, &charge(OWNER, 1, 100, 0, 0), &limit, &mut none).is_ok());
        }
        assert!(pool.used() == usage(8, 800, 0, 0));
        // The ninth message is one too many; nothing is taken.
        assert!(is_edquot(take(
            &mut pool,
            &charge(OWNER, 1, 100, 0, 0),
            &limit,
            &mut none
        )));
        assert!(pool.used() == usage(8, 800, 0, 0));
        // The owner never gets a share entry, so it never needs a slot.
        assert!(pool.shares.is_empty());
    }

    #[test]
    fn every_resource_is_limited() {
        let limit = usage(8, 1000, 8, 4);
        let at_limit = [
            charge(OWNER, 8, 0, 0, 0),
            charge(OWNER, 0, 1000, 0, 0),
            charge(OWNER, 0, 0, 8, 0),
            charge(OWNER, 0, 0, 0, 4),
        ];
        let above = [
            charge(OWNER, 9, 0, 0, 0),
            charge(OWNER, 0, 1001, 0, 0),
            charge(OWNER, 0, 0, 9, 0),
            charge(OWNER, 0, 0, 0, 5),
        ];
        for (fits, too_much) in at_limit.iter().zip(above.iter()) {
            let mut pool = Pool::new(OWNER);
            assert!(is_edquot(take(&mut pool, too_much, &limit, &mut None)));
            assert!(pool.used() == Usage::default());
            assert!(take(&mut pool, fits, &limit, &mut None).is_ok());
            assert!(pool.used() == fits.usage);
        }
    }

    #[test]
    fn only_charged_resources_can_refuse() {
        let mut pool = Pool::new(OWNER);
        assert!(take(&mut pool, &charge(OWNER, 1, 256, 0, 4), &limit(), &mut None).is_ok());
        // The fd limit is lowered below what is queued: what is queued
        // stays, a message without fds still fits, one with an fd does not.
        let lowered = usage(100, 1000, 100, 2);
        assert!(take(&mut pool, &charge(OWNER, 1, 256, 1, 0), &lowered, &mut None).is_ok());
        assert!(is_edquot(take(
            &mut pool,
            &charge(OWNER, 1, 256, 0, 1),
            &lowered,
            &mut None
        )));
        assert!(pool.used() == usage(2, 512, 1, 4));
    }

    #[test]
    fn foreign_users_get_half_of_what_is_free() -> Result {
        let limit = limit();
        let mut pool = Pool::new(OWNER);
        // Alice: `share + charge <= limit - (used + charge)` allows 500 of
        // 1000 free bytes, in one charge or several.
        assert!(is_edquot(take(
            &mut pool,
            &charge(ALICE, 1, 501, 0, 0),
            &limit,
            &mut slot()?
        )));
        assert!(take(
            &mut pool,
            &charge(ALICE, 1, 300, 0, 0),
            &limit,
            &mut slot()?
        )
        .is_ok());
        assert!(take(&mut pool, &charge(ALICE, 1, 200, 0, 0), &limit, &mut None).is_ok());
        assert!(is_edquot(take(
            &mut pool,
            &charge(ALICE, 1, 1, 0, 0),
            &limit,
            &mut None
        )));
        assert!(share(&pool, ALICE) == Some(usage(2, 500, 0, 0)));
        // Bob: half of the remaining 500.
        assert!(is_edquot(take(
            &mut pool,
            &charge(BOB, 1, 251, 0, 0),
            &limit,
            &mut slot()?
        )));
        assert!(take(&mut pool, &charge(BOB, 1, 250, 0, 0), &limit, &mut slot()?).is_ok());
        assert!(is_edquot(take(
            &mut pool,
            &charge(BOB, 1, 1, 0, 0),
            &limit,
            &mut None
        )));
        // The owner may take the rest, up to the limit.
        assert!(take(&mut pool, &charge(OWNER, 1, 250, 0, 0), &limit, &mut None).is_ok());
        assert!(is_edquot(take(
            &mut pool,
            &charge(OWNER, 1, 1, 0, 0),
            &limit,
            &mut None
        )));
        assert!(pool.used() == usage(4, 1000, 0, 0));
        // Alice's bytes come back: she may hold half of the 500 now free.
        pool.give_back(&charge(ALICE, 2, 500, 0, 0));
        assert!(share(&pool, ALICE) == Some(Usage::default()));
        assert!(is_edquot(take(
            &mut pool,
            &charge(ALICE, 1, 251, 0, 0),
            &limit,
            &mut None
        )));
        assert!(take(&mut pool, &charge(ALICE, 1, 250, 0, 0), &limit, &mut None).is_ok());
        assert!(pool.used() == usage(3, 750, 0, 0));
        Ok(())
    }

    #[test]
    fn share_entry_needs_a_slot_once() -> Result {
        let limit = limit();
        let mut pool = Pool::new(OWNER);
        let mut none = None;
        assert!(needs_slots(take(
            &mut pool,
            &charge(ALICE, 1, 10, 0, 0),
            &limit,
            &mut none
        )));
        assert!(pool.used() == Usage::default());
        let mut spare = slot()?;
        assert!(take(&mut pool, &charge(ALICE, 1, 10, 0, 0), &limit, &mut spare).is_ok());
        // The slot became Alice's entry; it stays when her share is zero.
        assert!(spare.is_none());
        pool.give_back(&charge(ALICE, 1, 10, 0, 0));
        assert!(share(&pool, ALICE) == Some(Usage::default()));
        assert!(take(&mut pool, &charge(ALICE, 1, 10, 0, 0), &limit, &mut none).is_ok());
        assert!(share(&pool, ALICE) == Some(usage(1, 10, 0, 0)));
        // A charge refused by the fair share (500 > 1000 - 510) does not
        // use the slot.
        let mut spare = slot()?;
        assert!(is_edquot(take(
            &mut pool,
            &charge(BOB, 1, 500, 0, 0),
            &limit,
            &mut spare
        )));
        assert!(spare.is_some() && share(&pool, BOB).is_none());
        assert!(pool.used() == usage(1, 10, 0, 0));
        Ok(())
    }

    #[test]
    fn giving_back_returns_to_zero() -> Result {
        let limit = limit();
        let mut pool = Pool::new(OWNER);
        let charges = [
            charge(OWNER, 1, 300, 2, 1),
            charge(ALICE, 1, 200, 1, 2),
            charge(OWNER, 1, 100, 0, 0),
            charge(ALICE, 1, 50, 3, 0),
        ];
        for c in charges.iter() {
            assert!(take(&mut pool, c, &limit, &mut slot()?).is_ok());
        }
        assert!(pool.used() == usage(4, 650, 6, 3));
        assert!(share(&pool, ALICE) == Some(usage(2, 250, 4, 2)));
        for c in charges.iter().rev() {
            pool.give_back(c);
        }
        assert!(pool.used() == Usage::default());
        assert!(share(&pool, ALICE) == Some(Usage::default()));
        Ok(())
    }

    #[test]
    fn peer_pool_is_given_back_sender_by_sender() -> Result {
        let limit = limit();
        let (mut peer, mut user) = (Pool::new(OWNER), Pool::new(OWNER));
        let queued = [
            charge(ALICE, 1, 300, 0, 0),
            charge(OWNER, 1, 200, 1, 0),
            charge(BOB, 1, 100, 0, 1),
        ];
        for c in queued.iter() {
            assert!(take(&mut peer, c, &limit, &mut slot()?).is_ok());
            assert!(take(&mut user, c, &limit, &mut slot()?).is_ok());
        }
        // Another peer of the same user holds something of Alice's.
        assert!(take(&mut user, &charge(ALICE, 1, 50, 0, 0), &limit, &mut None).is_ok());
        user.give_back_pool(&peer);
        peer.clear();
        assert!(user.used() == usage(1, 50, 0, 0));
        assert!(share(&user, ALICE) == Some(usage(1, 50, 0, 0)));
        assert!(share(&user, BOB) == Some(Usage::default()));
        assert!(peer.used() == Usage::default());
        assert!(share(&peer, ALICE) == Some(Usage::default()));
        Ok(())
    }

    #[test]
    fn account_charges_both_pools_or_neither() -> Result {
        // The defaults: a user may hold four times what one peer may.
        let (peer_bytes, user_bytes) = (limits::peer().bytes, limits::user().bytes);
        assert_eq!(peer_bytes, 64 << 20);
        assert_eq!(user_bytes, 256 << 20);
        let user = User::new(OWNER)?;
        let mut peers = [
            Account::new(user.clone()),
            Account::new(user.clone()),
            Account::new(user.clone()),
            Account::new(user.clone()),
        ];
        let full = charge(OWNER, 1, peer_bytes, 0, 0);
        for account in peers.iter_mut() {
            assert!(account.charge(&full, &mut ShareSlots::default()).is_ok());
        }
        assert!(is_edquot(
            peers[0].charge(&charge(OWNER, 1, 1, 0, 0), &mut ShareSlots::default())
        ));
        assert!(user.used() == usage(4, 256 << 20, 0, 0));
        // A fifth peer has room of its own, but its user has none.
        let mut fifth = Account::new(user.clone());
        let small = charge(OWNER, 1, 256, 0, 0);
        assert!(is_edquot(fifth.charge(&small, &mut ShareSlots::default())));
        assert!(fifth.used() == Usage::default());
        assert!(user.used() == usage(4, 256 << 20, 0, 0));
        peers[1].uncharge(&full);
        assert!(fifth.charge(&small, &mut ShareSlots::default()).is_ok());
        assert!(user.used() == usage(4, (192 << 20) + 256, 0, 0));
        // Emptying the queues gives everything back.
        for account in peers.iter_mut() {
            account.uncharge_all();
        }
        fifth.uncharge(&small);
        assert!(user.used() == Usage::default());
        Ok(())
    }

    #[test]
    fn account_fair_share_for_other_users() -> Result {
        // The default fd limits: 4096 per peer, 16384 per user.
        assert_eq!(limits::peer().fds, 4096);
        assert_eq!(limits::user().fds, 16384);
        let user = User::new(OWNER)?;
        let (mut first, mut second) = (Account::new(user.clone()), Account::new(user.clone()));
        // No share entries yet: the caller must allocate them first.
        let mut slots = ShareSlots::default();
        let half = charge(ALICE, 1, 256, 0, 2048);
        assert!(needs_slots(first.charge(&half, &mut slots)));
        let mut slots = ShareSlots::new()?;
        assert!(is_edquot(
            first.charge(&charge(ALICE, 1, 256, 0, 2049), &mut slots)
        ));
        assert!(first.charge(&half, &mut slots).is_ok());
        assert!(slots.peer.is_none() && slots.user.is_none());
        assert!(is_edquot(
            first.charge(&charge(ALICE, 1, 256, 0, 1), &mut ShareSlots::new()?)
        ));
        // The user's pool has room for Alice in another peer: her share
        // there, 4096 fds, is at most the 12288 left free.
        let mut slots = ShareSlots::new()?;
        assert!(second.charge(&half, &mut slots).is_ok());
        assert!(slots.peer.is_none() && slots.user.is_some());
        assert!(user.used() == usage(2, 512, 0, 4096));
        // The owner is bounded by the peer's limit alone.
        let rest = charge(OWNER, 1, 256, 0, 2048);
        assert!(first.charge(&rest, &mut ShareSlots::default()).is_ok());
        assert!(first.used() == usage(2, 512, 0, 4096));
        first.uncharge(&half);
        first.uncharge(&rest);
        second.uncharge(&half);
        assert!(user.used() == Usage::default());
        assert!(first.used() == Usage::default() && second.used() == Usage::default());
        Ok(())
    }

    #[test]
    fn free_charges_are_never_refused() -> Result {
        let user = User::new(OWNER)?;
        let mut account = Account::new(user.clone());
        let fds = limits::peer().fds;
        assert!(account
            .charge(&charge(OWNER, 1, 256, 0, fds), &mut ShareSlots::default())
            .is_ok());
        // A notification (nothing charged), even from another user without
        // a share entry, fits a full queue and leaves the pools alone.
        let free = Charge {
            sender: ALICE,
            usage: Usage::default(),
        };
        assert!(account.charge(&free, &mut ShareSlots::default()).is_ok());
        account.uncharge(&free);
        assert!(account.used() == usage(1, 256, 0, fds));
        assert!(user.used() == usage(1, 256, 0, fds));
        account.uncharge_all();
        assert!(account.used() == Usage::default() && user.used() == Usage::default());
        Ok(())
    }

    #[test]
    fn object_counters_stop_at_the_limit() -> Result {
        let user = User::new(OWNER)?;
        let max = limits::user_objects();
        assert_eq!(max.nodes, 65536);
        assert_eq!(max.handles, 65536);
        user.take_node()?;
        user.take_handle()?;
        assert!(user.objects().nodes == 1 && user.objects().handles == 1);
        // Just below the limits (as if the user's peers had made the rest).
        user.nodes.store(max.nodes - 1, Relaxed);
        user.handles.store(max.handles - 1, Relaxed);
        user.take_node()?;
        user.take_handle()?;
        assert!(user.take_node() == Err(EDQUOT));
        assert!(user.take_handle() == Err(EDQUOT));
        assert_eq!(user.objects().nodes, max.nodes);
        assert_eq!(user.objects().handles, max.handles);
        // Received handles are counted past the limit; the limit holds.
        user.take_handle_unlimited();
        assert_eq!(user.objects().handles, max.handles + 1);
        assert!(user.take_handle() == Err(EDQUOT));
        user.give_back_objects(1, 2);
        assert_eq!(user.objects().nodes, max.nodes - 1);
        assert_eq!(user.objects().handles, max.handles - 1);
        user.take_node()?;
        user.take_handle()?;
        assert!(user.take_node() == Err(EDQUOT));
        user.give_back_objects(max.nodes, max.handles);
        assert!(user.objects().nodes == 0 && user.objects().handles == 0);
        Ok(())
    }
}
