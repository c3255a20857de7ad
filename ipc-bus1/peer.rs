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
//! `/proc/<pid>/fdinfo/<fd>`.
//!
//! Locking: each peer has these locks, always taken in this order, and never
//! two locks of the same kind at once (not even of two different peers):
//!
//! 1. `recv_lock` (mutex): one receiver copying out at a time, so that a
//!    message is copied out while it stays queued and taken off only when
//!    that worked (waiting for a message happens without it);
//! 2. `state` (mutex): the `ids` and `by_node` maps;
//! 3. `nodes` (mutex): the `NodeState` of each node the peer owns;
//! 4. `queue` (spinlock): the message queue.  Nothing is allocated or
//!    dropped under it; queue slots are allocated beforehand.
//! 5. The pool lock of the user the peer is charged to (spinlock, see
//!    `quota.rs`), taken inside `queue` to charge both pools at once.
//!
//! The registry of users (`quota.rs`) is only locked when a peer is
//! created or freed, with none of the above held.

use kernel::{
    fs::File,
    new_mutex, new_spinlock,
    prelude::*,
    rbtree::{RBTree, RBTreeNodeReservation},
    static_lock_class,
    sync::{
        aref::ARef,
        atomic::{Atomic, Relaxed},
        poll::{PollCondVar, PollCondVarBox},
        Arc, Mutex, SpinLock,
    },
};

use crate::{
    creds::SeenCreds,
    files, limits,
    message::{Entry, Message},
    node::{Holder, HolderSlot, Node, NodeState},
    queue::{EntryId, Queue, Removed, Slot, Stamp},
    quota::{self, Account, Charge, Refusal, ShareSlots, Usage, UserRef},
    stats,
    transaction::{self, Delivery, Outcome},
};

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
    next_seq: Atomic<u64>,
    #[pin]
    recv_lock: Mutex<()>,
    #[pin]
    state: Mutex<PeerState>,
    /// State of the nodes this peer owns, by node id.
    #[pin]
    pub(crate) nodes: Mutex<RBTree<u64, NodeState>>,
    #[pin]
    queue: SpinLock<Queue>,
    /// Woken when the queue becomes readable.  Boxed: it is freed with
    /// `kfree_rcu()`, where an embedded one would wait for a grace period
    /// in every peer's destructor.
    waitq: PollCondVarBox,
}

/// What `Peer::recv()` hands to its caller to copy out.
pub(crate) struct Received<'a> {
    pub(crate) kind: u64,
    pub(crate) id: u64,
    pub(crate) payload: &'a [u8],
    pub(crate) n_handles: usize,
    pub(crate) n_fds: usize,
    /// The sender's, for a data message.
    pub(crate) creds: Option<SeenCreds>,
    /// Another entry of the same transaction follows in the queue.
    pub(crate) continues: bool,
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

/// Everything one acquisition of a handle may need, allocated before any
/// lock is taken.
pub(crate) struct AcquireSlots {
    id: RBTreeNodeReservation<u64, Ref>,
    key: RBTreeNodeReservation<(u64, u64), u64>,
    holder: HolderSlot,
    /// The holder's destruction notification.
    destroy: Option<Slot>,
    /// The node's release notification, if its count leaves zero.
    release: Option<Slot>,
}

impl AcquireSlots {
    pub(crate) fn new() -> Result<Self> {
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
    /// Allocates a new peer with a fresh id.
    pub(crate) fn new() -> Result<Arc<Self>> {
        let waitq = PollCondVarBox::new(c"bus1_peer", static_lock_class!())?;
        let user = UserRef::current()?;
        let account = Account::new(user.user().clone());
        let peer = Arc::pin_init(
            try_pin_init!(Self {
                id: NEXT_PEER_ID.fetch_add(1, Relaxed),
                user,
                next_seq: Atomic::new(0),
                recv_lock <- new_mutex!(()),
                state <- new_mutex!(PeerState {
                    next_id: 1,
                    ids: RBTree::new(),
                    by_node: RBTree::new(),
                    closed: false,
                    nodes: 0,
                    handles: 0,
                }),
                nodes <- new_mutex!(RBTree::new()),
                queue <- new_spinlock!(Queue::new(account)),
                waitq,
            }? Error),
            GFP_KERNEL_ACCOUNT,
        )?;
        // Counted once fully built: only then does `drop()` run.
        stats::PEERS.inc();
        Ok(peer)
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
        let state_slot = RBTreeNodeReservation::new(GFP_KERNEL_ACCOUNT)?;
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
        let node = match Node::new(id, self.clone()) {
            Ok(node) => node,
            Err(e) => {
                user.give_back_objects(1, 0);
                return Err(e);
            }
        };
        state.next_id += 1;
        state.nodes += 1;
        let _ = self
            .nodes
            .lock()
            .insert(state_slot.into_node(id, NodeState::new(destroy_slot)));
        let _ = state.ids.insert(id_slot.into_node(id, Ref::Node(node)));
        Ok(id)
    }

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
    fn acquire_with(
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
        // Under the owner's `nodes` lock a node is alive exactly when it
        // has a state there: checked before every kind of acquisition.
        let mut nodes = node.owner.nodes.lock();
        let node_state = nodes.get_mut(&node.id).ok_or(EHOSTUNREACH)?;
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
    fn drop_holder(&self, node: &Node, id: u64) -> Option<Holder> {
        let mut nodes = node.owner.nodes.lock();
        // Destroyed: the holders are gone already, nobody is told.
        let node_state = nodes.get_mut(&node.id)?;
        let holder = node_state.holders.remove(&(self.id, id));
        if holder.is_some() {
            node_state.put_ref(&node.owner, node.id);
        }
        holder
    }

    /// Queues an entry of a one-destination transaction, charged `charge`
    /// (see `Queue::stage()`), unless this peer refuses it or `refuse()`,
    /// checked under the queue lock, says no.  A refused entry comes back
    /// to be dropped by the caller, after the lock.
    fn push(
        &self,
        sender: u64,
        seq: u64,
        entry: Entry,
        slot: Slot,
        charge: &Charge,
        refuse: impl Fn() -> bool,
    ) -> Result<Stamp, (Entry, Slot, Error)> {
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
    /// lock, where a destruction is staged).
    pub(crate) fn push_message(
        &self,
        node: &Node,
        sender: u64,
        seq: u64,
        entry: Entry,
        slot: Slot,
        charge: &Charge,
    ) -> Result<(), (Entry, Slot, Error)> {
        self.push(sender, seq, entry, slot, charge, || node.is_destroyed())
            .map(drop)
    }

    /// Queues a notification on this peer and returns where; a closed peer
    /// drops it.  Notifications are never charged, so nothing allocates.
    pub(crate) fn queue_notification(&self, entry: Entry, slot: Slot) -> Option<Stamp> {
        let free = Charge::default();
        self.push(self.id, self.next_seq(), entry, slot, &free, || false)
            .ok()
    }

    /// Takes back a queued notification nobody has started to receive.
    pub(crate) fn withdraw_notification(&self, stamp: Stamp) -> Option<Removed> {
        self.queue.lock().withdraw(stamp)
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
        // Everything that can fail for the call as a whole is looked up and
        // allocated before the transaction: a failed send has no effect.
        let mut carried = KVec::with_capacity(handle_ids.len(), GFP_KERNEL)?;
        let mut targets = KVVec::with_capacity(dsts.len(), GFP_KERNEL)?;
        let mut first_refusal = None;
        {
            let state = self.state.lock();
            let lookup = |id| state.ids.get(id).map(|r| r.node().clone());
            for id in handle_ids {
                // Within capacity: no allocation under the lock.
                carried.push((lookup(id).ok_or(ENXIO)?, None), GFP_KERNEL)?;
            }
            for (index, id) in dsts.iter().enumerate() {
                let refusal = match lookup(id) {
                    Some(node) if !node.is_destroyed() => {
                        targets.push((index, node), GFP_KERNEL)?;
                        continue;
                    }
                    Some(_) => EHOSTUNREACH,
                    None => ENXIO,
                };
                outcomes[index] = Outcome::Refused(refusal);
                first_refusal.get_or_insert(refusal);
            }
        }
        if let Some(e) = first_refusal {
            if !partial || targets.is_empty() {
                return Err(e);
            }
        }
        let mut deliveries = KVVec::with_capacity(targets.len(), GFP_KERNEL)?;
        for (index, node) in targets.drain_all() {
            deliveries.push(Delivery::new(index, node, new_slot()?), GFP_KERNEL)?;
        }
        for (_, spare) in carried.iter_mut() {
            *spare = Some(new_slot()?);
        }
        let message = Message::new(payload, handle_ids.len(), files)?;
        transaction::send(
            self,
            &mut deliveries,
            message,
            &mut carried,
            partial,
            outcomes,
        )
    }

    /// Receives the next message (`bus1_recv(2)`): waits unless
    /// `nonblock`, copies it out while it stays queued, and dequeues it
    /// only once that worked.
    ///
    /// `copy_out` does everything that can fail: it checks the sizes,
    /// reserves the descriptors for the message's files, copies the payload
    /// and checks that the caller's handle array can be written.  Only then
    /// does the receiver become a holder of the handles the message carries,
    /// so a receive that fails leaves no trace (in particular no handle that
    /// a concurrent destruction would notify).  `write_ids` then stores the
    /// handle ids; it fails only if another thread of the caller changed the
    /// mapping meanwhile, and then the handles are given back and the
    /// message stays queued.  The reserved descriptors are installed once
    /// the message is dequeued.
    pub(crate) fn recv(
        self: &Arc<Self>,
        nonblock: bool,
        copy_out: impl FnOnce(&Received<'_>) -> Result<files::Reserved>,
        write_ids: impl FnOnce(&[u64]) -> Result,
    ) -> Result {
        // Wait without holding `recv_lock`, so that every waiter can be
        // interrupted; then take the first entry under it.
        let (_receiver, kind, id, message, continues) = loop {
            {
                let mut queue = self.queue.lock();
                while !queue.is_readable() {
                    if nonblock {
                        return Err(EAGAIN);
                    }
                    if self.waitq.wait_interruptible(&mut queue) {
                        return Err(ERESTARTSYS);
                    }
                }
            }
            let receiver = self.recv_lock.lock();
            let first = self.queue.lock().peek().map(|(entry, continues)| {
                let message = match entry {
                    Entry::Data { message, .. } => Some(message.clone()),
                    _ => None,
                };
                (entry.kind(), entry.id(), message, continues)
            });
            // Another receiver may have taken it in between.
            if let Some((kind, id, message, continues)) = first {
                break (receiver, kind, id, message, continues);
            }
        };

        let result = self.copy_out(kind, id, message.as_deref(), continues, copy_out, write_ids);
        let taken = {
            let mut queue = self.queue.lock();
            match result {
                Ok(_) => queue.pop(),
                Err(_) => {
                    queue.end_read();
                    None
                }
            }
        };
        let reserved = result?;
        if let Some(message) = &message {
            reserved.install(&message.files);
        }
        drop(taken);
        drop(message);
        Ok(())
    }

    /// The part of `recv()` between peeking and dequeuing.
    fn copy_out(
        self: &Arc<Self>,
        kind: u64,
        id: u64,
        message: Option<&Message>,
        continues: bool,
        copy_out: impl FnOnce(&Received<'_>) -> Result<files::Reserved>,
        write_ids: impl FnOnce(&[u64]) -> Result,
    ) -> Result<files::Reserved> {
        let (payload, inflight, n_fds) = match message {
            Some(m) => (&m.payload[..], &m.handles[..], m.files.len()),
            None => (&[][..], &[][..], 0),
        };
        let received = Received {
            kind,
            id,
            payload,
            n_handles: inflight.len(),
            n_fds,
            creds: message.map(|m| m.creds.seen_by_current()),
            continues,
        };
        let mut ids = KVec::with_capacity(inflight.len(), GFP_KERNEL)?;
        let mut slots = KVec::with_capacity(inflight.len(), GFP_KERNEL)?;
        for _ in inflight {
            slots.push(AcquireSlots::new()?, GFP_KERNEL)?;
        }
        let reserved = copy_out(&received)?;

        // Nothing fails from here on but a racing change of the mapping.
        for (r, slots) in inflight.iter().zip(slots.into_iter()) {
            // The message's in-flight reference keeps the count above zero,
            // so this fails only for a destroyed node.
            let id = r
                .as_ref()
                .and_then(|r| self.acquire_with(r.node(), false, false, slots).ok())
                .unwrap_or(ID_INVALID);
            ids.push(id, GFP_KERNEL)?;
        }
        if let Err(e) = write_ids(&ids) {
            for &id in ids.iter().filter(|&&id| id != ID_INVALID) {
                let _ = self.release_acquired(id);
            }
            return Err(e);
        }
        Ok(reserved)
    }

    /// Undoes one `acquire()`; owned node ids need no undoing.
    fn release_acquired(&self, id: u64) -> Result {
        match self.release(id) {
            Err(e) if e == EPERM => Ok(()),
            other => other,
        }
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
        let result = self.queue.lock().commit(staged, time, entry);
        match result {
            Ok(true) => self.waitq.notify_all(),
            Ok(false) => {}
            Err(entry) => drop(entry),
        }
    }
}

#[pinned_drop]
impl PinnedDrop for Peer {
    fn drop(self: Pin<&mut Self>) {
        stats::PEERS.dec();
    }
}
