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
        let owner = uid;
        let user = Arc::pin_init(
            try_pin_init!(User {
                uid: owner,
                pool <- new_spinlock!(Pool::new(owner)),
                nodes: Atomic::new(0),
                handles: Atomic::new(0),
            }? Error),
            GFP_KERNEL,
        )?;
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
