// SPDX-License-Identifier: GPL-2.0

//! Peers.
//!
//! A peer is the endpoint a process communicates through.  It is created by
//! `bus1_open(2)` and lives as long as the file that represents it (see
//! `peer_file.rs`) or any in-kernel reference to it.
//!
//! A peer names the nodes it owns and the handles it holds by ids from one
//! per-peer counter, never reused.  Its `ids` map resolves an id to the node
//! it names; `by_node` finds the peer's handle to a given node, so that a
//! peer holds at most one handle per node and repeated acquisitions count up
//! that handle's references instead.
//!
//! Every peer also gets a 64-bit id from a global counter, shown in
//! `/proc/<pid>/fdinfo/<fd>` and in the trace events (`trace.rs`).
//!
//! A peer keeps the credentials of the task that opened it.  Security
//! modules decide on them (as Binder's hooks do on its processes'): whether
//! a message may go from one peer to another and carry handles and files.
//!
//! This file has the peer and its ids (nodes it owns, sends, destruction);
//! the submodules have the rest, one concept each: `handle` (references to
//! other peers' nodes), `receive` (`bus1_recv(2)`), `queueing` (the peer's
//! queue in the steps of a transaction) and `lifecycle` (close and reset).
//!
//! Locking: each peer has these locks, always taken in this order, and never
//! two locks of the same kind at once (not even of two different peers):
//!
//! 1. `recv_lock` (mutex, lock class "bus1_peer_recv"): one receiver
//!    copying out at a time, so that a message is copied out while it stays
//!    queued and taken off only when that worked (waiting for a message
//!    happens without it);
//! 2. `state` (mutex, "bus1_peer_state"): the `ids` and `by_node` maps;
//! 3. `nodes` (mutex, "bus1_peer_nodes"): the `NodeState` of each node the
//!    peer owns.  Taken by other peers too: a holder (in `state`) acquiring
//!    or releasing a handle locks the owner's `nodes`, and a reference
//!    count dropping to zero queues the release notification on the owner
//!    under it;
//! 4. `queue` (spinlock, "bus1_peer_queue"): the message queue.  Nothing
//!    is allocated or dropped under it; queue slots are allocated
//!    beforehand.
//! 5. The pool lock of the user the peer is charged to (spinlock, see
//!    `quota.rs`), taken inside `queue` to charge both pools at once.
//!
//! The registry of users (`quota.rs`) is only locked when a peer is
//! created or freed, with none of the above held.

use core::ptr::NonNull;

use kernel::{
    bindings,
    cred::Credential,
    fs::File,
    new_mutex, new_spinlock,
    prelude::*,
    rbtree::{RBTree, RBTreeNodeReservation},
    security, static_lock_class,
    sync::{
        aref::ARef,
        atomic::{Atomic, Relaxed},
        poll::{PollCondVar, PollCondVarBox},
        Arc, Mutex, MutexGuard, SpinLock,
    },
};

use crate::{
    limits,
    message::Message,
    node::{Node, OwnedNodes},
    queue::{Queue, Slot},
    quota::{Account, Usage, UserRef},
    stats, trace,
    transaction::{self, Delivery, Outcome},
};

mod handle;
mod lifecycle;
mod queueing;
mod receive;

pub(crate) use queueing::Withdrawn;

/// Source of peer ids; 64 bits cannot wrap in the life of a system.
static NEXT_PEER_ID: Atomic<u64> = Atomic::new(1);

/// What an id of a peer names.
enum Ref {
    /// A node the peer owns.
    Node(Arc<Node>),
    /// A handle to another peer's node, acquired `refs` times.
    Handle { node: Arc<Node>, refs: u64 },
}

impl Ref {
    fn node(&self) -> &Arc<Node> {
        match self {
            Self::Node(node) | Self::Handle { node, .. } => node,
        }
    }
}

/// What a peer refers to, under its `state` lock.
///
/// # Invariants
///
/// * Every id in `ids` is below `next_id`; ids are never reused.
/// * `by_node` has exactly one entry per `Ref::Handle` in `ids`, and the
///   node's state (while it is alive) has this peer as a holder under that
///   id.
/// * `nodes` and `handles` count the `Ref::Node` and `Ref::Handle` entries
///   of `ids`, and are included in the user's totals (`quota::User`).
/// * Once `closed`, the maps are empty and stay so.
struct PeerState {
    next_id: u64,
    ids: RBTree<u64, Ref>,
    /// (owner peer id, node id) -> this peer's handle id.
    by_node: RBTree<(u64, u64), u64>,
    /// Set when the peer's file is released; nothing is added after.
    closed: bool,
    /// Nodes in `ids`, counted against the limits.
    nodes: u64,
    /// Handles in `ids`, counted against the limits.
    handles: u64,
}

impl PeerState {
    /// Empties the maps, gives back what they counted to the peer's user,
    /// and hands them out to be dropped after the locks.
    fn take_all(&mut self, user: &UserRef) -> (RBTree<u64, Ref>, RBTree<(u64, u64), u64>) {
        user.user().give_back_objects(self.nodes, self.handles);
        self.nodes = 0;
        self.handles = 0;
        (
            core::mem::take(&mut self.ids),
            core::mem::take(&mut self.by_node),
        )
    }
}

/// `BUS1_ID_INVALID`: a handle whose node is gone.
pub(crate) const ID_INVALID: u64 = u64::MAX;

/// A bus1 peer.
#[pin_data(PinnedDrop)]
pub(crate) struct Peer {
    id: u64,
    /// The user the peer is charged to: who opened it.
    user: UserRef,
    /// The credentials of the task that opened the peer.
    cred: ARef<Credential>,
    next_seq: Atomic<u64>,
    #[pin]
    recv_lock: Mutex<()>,
    #[pin]
    state: Mutex<PeerState>,
    /// Guards the state of the nodes this peer owns (see `node.rs`).
    #[pin]
    nodes: Mutex<OwnedNodes>,
    #[pin]
    queue: SpinLock<Queue>,
    /// Woken when the queue becomes readable.  Boxed: it is freed with
    /// `kfree_rcu()`, where an embedded one would wait for a grace period
    /// in every peer's destructor.
    waitq: PollCondVarBox,
}

/// Records that destination `index` of a send refused it with `e`.
fn refuse(outcomes: &mut [Outcome], first: &mut Option<Error>, index: usize, e: Error) {
    outcomes[index] = Outcome::Refused(e);
    first.get_or_insert(e);
}

/// Allocates one queue slot.
fn new_slot() -> Result<Slot> {
    RBTreeNodeReservation::new(GFP_KERNEL_ACCOUNT)
}

/// Lets other tasks run in a long loop; must not be called under a spinlock.
pub(crate) fn cond_resched() {
    // SAFETY: `cond_resched()` may be called from any sleepable context;
    // the callers hold no spinlock.
    unsafe { kernel::bindings::cond_resched() };
}

impl Peer {
    /// Allocates a new peer with a fresh id.
    pub(crate) fn new() -> Result<Arc<Self>> {
        let waitq = PollCondVarBox::new(c"bus1_peer", static_lock_class!())?;
        let user = UserRef::current()?;
        let account = Account::new(user.user().clone());
        // SAFETY: `get_current_cred()` returns the current task's
        // credentials, never NULL, with a reference taken that the `ARef`
        // owns; `Credential` is a transparent wrapper of `struct cred`.
        let cred = unsafe {
            ARef::from_raw(NonNull::new_unchecked(
                bindings::get_current_cred().cast_mut().cast::<Credential>(),
            ))
        };
        let peer = Arc::pin_init(
            try_pin_init!(Self {
                id: NEXT_PEER_ID.fetch_add(1, Relaxed),
                user,
                cred,
                next_seq: Atomic::new(0),
                recv_lock <- new_mutex!((), "bus1_peer_recv"),
                state <- new_mutex!(PeerState {
                    next_id: 1,
                    ids: RBTree::new(),
                    by_node: RBTree::new(),
                    closed: false,
                    nodes: 0,
                    handles: 0,
                }, "bus1_peer_state"),
                nodes <- new_mutex!(OwnedNodes::new(), "bus1_peer_nodes"),
                queue <- new_spinlock!(Queue::new(account), "bus1_peer_queue"),
                waitq,
            }? Error),
            GFP_KERNEL_ACCOUNT,
        )?;
        // Counted once fully built: only then does `drop()` run.
        stats::PEERS.inc();
        Ok(peer)
    }

    /// Locks the state of the nodes this peer owns.
    pub(crate) fn lock_nodes(&self) -> MutexGuard<'_, OwnedNodes> {
        self.nodes.lock()
    }

    /// The lock `Node` states are `LockedBy`.
    pub(crate) fn nodes_lock(&self) -> &Mutex<OwnedNodes> {
        &self.nodes
    }

    /// The peer's system-wide unique id.
    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    /// The raw kuid of the user the peer is charged to.
    pub(crate) fn uid(&self) -> u32 {
        self.user.user().uid()
    }

    /// A transaction number, unique within this peer.
    pub(crate) fn next_seq(&self) -> u64 {
        self.next_seq.fetch_add(1, Relaxed)
    }

    pub(crate) fn waitq(&self) -> &PollCondVar {
        &self.waitq
    }

    pub(crate) fn is_readable(&self) -> bool {
        self.queue.lock().is_readable()
    }

    /// The node an id of this peer names (owned or through a handle).
    pub(crate) fn lookup(&self, id: u64) -> Result<Arc<Node>> {
        let state = self.state.lock();
        state.ids.get(&id).map(|r| r.node().clone()).ok_or(ENXIO)
    }

    /// Creates a node owned by this peer (`bus1_node_create(2)`); `EDQUOT`
    /// when the peer or its user has as many as the limits allow.
    pub(crate) fn create_node(self: &Arc<Self>) -> Result<u64> {
        let id_slot = RBTreeNodeReservation::new(GFP_KERNEL_ACCOUNT)?;
        let destroy_slot = new_slot()?;

        let mut state = self.state.lock();
        if state.closed {
            return Err(EBADF);
        }
        if state.nodes >= limits::peer_objects().nodes {
            return Err(EDQUOT);
        }
        let user = self.user.user();
        user.take_node()?;
        let id = state.next_id;
        // Allocated under the mutex, so that a failure uses up no id.
        let node = match Node::new(id, self.clone(), destroy_slot) {
            Ok(node) => node,
            Err(e) => {
                user.give_back_objects(1, 0);
                return Err(e);
            }
        };
        state.next_id += 1;
        state.nodes += 1;
        let _ = state.ids.insert(id_slot.into_node(id, Ref::Node(node)));
        Ok(id)
    }

    /// Sends a message to the nodes `dsts` names, in one transaction
    /// (`bus1_send(2)`); see `transaction::send()` for `partial` and
    /// `outcomes`.  `dsts` has no duplicates.
    pub(crate) fn send(
        &self,
        dsts: &[u64],
        payload: KVVec<u8>,
        handle_ids: &[u64],
        files: KVec<ARef<File>>,
        partial: bool,
        outcomes: &mut [Outcome],
    ) -> Result<usize> {
        let seq = self.next_seq();
        let sizes = (payload.len(), handle_ids.len(), files.len());
        let result = self.send_as(seq, dsts, payload, handle_ids, files, partial, outcomes);
        trace::send(self, seq, dsts, outcomes, sizes, partial, &result);
        result.map(|(delivered, _)| delivered)
    }

    /// Whether the security modules let this peer send a message with
    /// `n_bytes`, `n_handles` and `files` to the peer `to`.
    fn may_send(
        &self,
        to: &Peer,
        n_bytes: usize,
        n_handles: usize,
        files: &[ARef<File>],
    ) -> Result {
        // Within the limits of `bus1_send(2)`, checked by the caller.
        security::bus1_send(
            &self.cred,
            &to.cred,
            n_bytes,
            n_handles as u32,
            files.len() as u32,
        )?;
        if n_handles != 0 {
            security::bus1_transfer_handle(&self.cred, &to.cred)?;
        }
        for file in files {
            security::bus1_transfer_file(&self.cred, &to.cred, file)?;
        }
        Ok(())
    }

    /// Whether the security modules let this peer give `to` a handle.
    pub(crate) fn may_transfer_handle(&self, to: &Peer) -> Result {
        security::bus1_transfer_handle(&self.cred, &to.cred)
    }

    /// `send()` as transaction `seq`: returns how many destinations got the
    /// message and the commit time.
    #[allow(clippy::too_many_arguments)]
    fn send_as(
        &self,
        seq: u64,
        dsts: &[u64],
        payload: KVVec<u8>,
        handle_ids: &[u64],
        files: KVec<ARef<File>>,
        partial: bool,
        outcomes: &mut [Outcome],
    ) -> Result<(usize, u64)> {
        // Everything that can fail for the call as a whole is looked up and
        // allocated before the transaction: a failed send has no effect.
        let mut carried = KVec::with_capacity(handle_ids.len(), GFP_KERNEL)?;
        let mut targets = KVVec::with_capacity(dsts.len(), GFP_KERNEL)?;
        // The first refusal, which fails the call unless `partial`.
        let mut first_refusal = None;
        {
            let state = self.state.lock();
            let lookup = |id| state.ids.get(id).map(|r| r.node().clone());
            for id in handle_ids {
                // Within capacity: no allocation under the lock.
                carried.push((lookup(id).ok_or(ENXIO)?, None), GFP_KERNEL)?;
            }
            for (index, id) in dsts.iter().enumerate() {
                match lookup(id) {
                    Some(node) if !node.is_destroyed() => {
                        targets.push((index, node), GFP_KERNEL)?
                    }
                    Some(_) => refuse(outcomes, &mut first_refusal, index, EHOSTUNREACH),
                    None => refuse(outcomes, &mut first_refusal, index, ENXIO),
                }
            }
        }
        // The security modules decide per destination, without locks held
        // (a policy may sleep), and before anything is queued.
        let mut deliveries = KVVec::with_capacity(targets.len(), GFP_KERNEL)?;
        if partial || first_refusal.is_none() {
            for (index, node) in targets.drain_all() {
                match self.may_send(&node.owner, payload.len(), handle_ids.len(), &files) {
                    Ok(()) => {
                        deliveries.push(Delivery::new(index, node, new_slot()?), GFP_KERNEL)?
                    }
                    Err(e) => refuse(outcomes, &mut first_refusal, index, e),
                }
            }
        }
        if let Some(e) = first_refusal {
            if !partial || deliveries.is_empty() {
                return Err(e);
            }
        }
        for (_, spare) in carried.iter_mut() {
            *spare = Some(new_slot()?);
        }
        let message = Message::new(payload, handle_ids.len(), files)?;
        transaction::send(
            self,
            seq,
            &mut deliveries,
            message,
            &mut carried,
            partial,
            outcomes,
        )
    }

    /// Destroys the nodes `ids` names, owned by this peer, in one
    /// transaction (`bus1_nodes_destroy(2)`).  `ids` has no duplicates.
    pub(crate) fn destroy(&self, ids: &[u64]) -> Result {
        let mut state = self.state.lock();
        for id in ids {
            match state.ids.get(id) {
                None => return Err(ENXIO),
                Some(Ref::Handle { .. }) => return Err(EPERM),
                Some(Ref::Node(_)) => {}
            }
        }
        let mut victims = KVec::with_capacity(ids.len(), GFP_KERNEL)?;
        for id in ids {
            if let Some(r) = state.ids.get(id) {
                // Cannot fail: the capacity is there.
                victims.push(r.node().clone(), GFP_KERNEL)?;
            }
        }
        for id in ids {
            // Not the last reference: `victims` holds the node.
            drop(state.ids.remove(id));
        }
        state.nodes -= ids.len() as u64;
        self.user.user().give_back_objects(ids.len() as u64, 0);
        crate::transaction::destroy_nodes(self, |f| victims.iter().for_each(&mut *f));
        drop(state);
        drop(victims);
        Ok(())
    }

    /// What the peer's queue holds, and what all queues of its user hold.
    pub(crate) fn usage(&self) -> (Usage, Usage) {
        let peer = self.queue.lock().usage();
        (peer, self.user.user().used())
    }

    /// How many nodes and handles the peer has, and all peers of its user.
    pub(crate) fn objects(&self) -> (limits::Objects, limits::Objects) {
        let state = self.state.lock();
        let peer = limits::Objects {
            nodes: state.nodes,
            handles: state.handles,
        };
        (peer, self.user.user().objects())
    }
}

#[pinned_drop]
impl PinnedDrop for Peer {
    fn drop(self: Pin<&mut Self>) {
        stats::PEERS.dec();
    }
}
