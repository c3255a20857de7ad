// SPDX-License-Identifier: GPL-2.0
//! The reference model: bus1's documented semantics, in plain Rust, for one
//! caller making one call at a time.
//!
//! The model is written from `Documentation/userspace-api/bus1.rst`, the
//! man pages and the uapi header, not from the kernel code: what it
//! predicts is what the documentation promises.  Where the documentation
//! leaves a choice open, the model states the choice it checks:
//!
//! * ids: each peer counts its ids from 1, one per new node or handle;
//! * errors are checked in the order of the argument list, flags first,
//!   then the peer descriptor, then what the pointers hold (the man pages
//!   list the checks per call);
//! * a single caller sees one queue order: entries in the order their
//!   transactions happened, the entries of one transaction in the order of
//!   its destinations (a destruction: node by node, the owner first, then
//!   the holders by peer age and handle id);
//! * a peer's close or reset destroys its nodes in one transaction (by id),
//!   then releases its handles (by id), then drops its queue;
//! * new file descriptors take the lowest free numbers.
//!
//! Memory faults are modelled by where a pointer points (`Ptr`): valid
//! memory, `NULL`, an unmapped page, or a read-only page of zeros.

use std::collections::{BTreeMap, BTreeSet};

use bus1::Errno;

pub const ID_INVALID: u64 = u64::MAX;
pub const MSG_DATA: u64 = 1;
pub const MSG_NODE_DESTROY: u64 = 2;
pub const MSG_NODE_RELEASE: u64 = 3;
/// What a message costs on top of its payload (bus1.rst).
pub const MESSAGE_OVERHEAD: u64 = 256;
pub const PAYLOAD_MAX: u64 = 1 << 22;
pub const STRUCT_SIZE_MAX: usize = 4096;

/// Where a pointer argument points.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ptr {
    Ok,
    Null,
    Unmapped,
    /// A read-only page: reads give what the caller put there, writes
    /// fault.
    ReadOnly,
}

impl Ptr {
    pub fn readable(self) -> bool {
        matches!(self, Ptr::Ok | Ptr::ReadOnly)
    }
    pub fn writable(self) -> bool {
        self == Ptr::Ok
    }
}

/// A peer descriptor argument.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FdArg {
    /// The peer in this slot (a descriptor that is not open if the slot is
    /// empty).
    Slot(usize),
    /// An open descriptor that is not a bus1 peer (a pipe).
    NotBus1,
    /// A negative number other than -1.
    Negative,
}

/// A file descriptor a message carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FdKind {
    /// One of the passable files the fuzzer keeps open (`/dev/null`, a
    /// pipe's ends, an `O_PATH` descriptor), by index.
    File(usize),
    /// A peer (refused: it can hold files).
    Peer(usize),
    /// An `AF_UNIX` socket (refused).
    Unix,
    /// A number that is not open.
    NotOpen,
    Negative,
}

/// The size argument of a structure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Size {
    /// The first version of the structure.
    Ver0,
    /// The current one.
    Ver1,
    /// One byte short of the first version.
    Short,
    /// Larger than the kernel knows, with a zero tail.
    TailZero,
    /// Larger, with a non-zero byte in the tail.
    TailSet,
    /// Larger than the kernel accepts at all.
    Huge,
}

impl Size {
    /// The byte count passed for a structure with versions `ver0`, `ver1`.
    pub fn bytes(self, ver0: usize, ver1: usize) -> usize {
        match self {
            Size::Ver0 => ver0,
            Size::Ver1 => ver1,
            Size::Short => ver0 - 1,
            Size::TailZero | Size::TailSet => ver1 + 16,
            Size::Huge => STRUCT_SIZE_MAX + 8,
        }
    }
}

/// One piece of a payload (or of a receive buffer).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VecSpec {
    pub len: u64,
    pub ptr: Ptr,
}

/// One operation of a sequence.  Everything is concrete (ids are numbers,
/// peers are slots), so a sequence replays the same on a fresh start.
#[derive(Clone, Debug)]
pub enum Op {
    Open {
        slot: usize,
        flags: u32,
        uid: u32,
    },
    Close {
        slot: usize,
    },
    /// Closes the `index`-th descriptor received so far and still open.
    CloseReceived {
        index: usize,
    },
    NodeCreate {
        peer: FdArg,
        id_ptr: Ptr,
        flags: u32,
    },
    Transfer {
        src: FdArg,
        src_id: u64,
        src_ptr: Ptr,
        /// `None`: -1, the source peer itself.
        dst: Option<FdArg>,
        /// `None`: the same `__u64` as `src_id`.
        dst_ptr: Option<Ptr>,
        flags: u32,
    },
    Release {
        peer: FdArg,
        id: u64,
        ptr: Ptr,
        flags: u32,
    },
    Destroy {
        peer: FdArg,
        ids: Vec<u64>,
        /// The count passed (may differ from `ids.len()` to be invalid).
        n: u32,
        ptr: Ptr,
        flags: u32,
    },
    Reset {
        peer: FdArg,
        flags: u32,
    },
    Send(Box<SendOp>),
    Recv(Box<RecvOp>),
    /// Compares the peer's fdinfo counters and poll state with the model.
    Inspect {
        slot: usize,
    },
}

#[derive(Clone, Debug)]
pub struct SendOp {
    pub peer: FdArg,
    /// The effective uid the call is made with.
    pub uid: u32,
    pub dsts: Vec<u64>,
    pub n_dsts: u32,
    pub dsts_ptr: Ptr,
    pub size: Size,
    pub msg_ptr: Ptr,
    pub vecs: Vec<VecSpec>,
    /// Seed of the payload bytes.
    pub fill: u8,
    pub n_vecs: u64,
    pub vecs_ptr: Ptr,
    pub handles: Vec<u64>,
    pub n_handles: u64,
    pub handles_ptr: Ptr,
    pub fds: Vec<FdKind>,
    pub n_fds: u64,
    pub fds_ptr: Ptr,
    /// `None`: no errors array.
    pub errors: Option<Ptr>,
    pub flags: u32,
}

#[derive(Clone, Debug)]
pub struct RecvOp {
    pub peer: FdArg,
    pub size: Size,
    pub args_ptr: Ptr,
    pub vecs: Vec<VecSpec>,
    pub n_vecs: u64,
    pub vecs_ptr: Ptr,
    pub handles_cap: u64,
    pub handles_ptr: Ptr,
    pub fds_cap: u64,
    pub fds_ptr: Ptr,
    pub flags: u32,
}

/// The payload bytes of piece `i` of a send with `fill`.
pub fn payload_byte(fill: u8, piece: usize, offset: usize) -> u8 {
    fill.wrapping_add((piece as u8).wrapping_mul(31))
        .wrapping_add(offset as u8)
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    pub messages: u64,
    pub bytes: u64,
    pub handles: u64,
    pub fds: u64,
}

impl Usage {
    fn arr(&self) -> [u64; 4] {
        [self.messages, self.bytes, self.handles, self.fds]
    }
    fn from(a: [u64; 4]) -> Usage {
        Usage {
            messages: a[0],
            bytes: a[1],
            handles: a[2],
            fds: a[3],
        }
    }
    fn plus(self, o: Usage) -> Usage {
        let (a, b) = (self.arr(), o.arr());
        Usage::from(std::array::from_fn(|i| a[i].saturating_add(b[i])))
    }
    fn minus(self, o: Usage) -> Usage {
        let (a, b) = (self.arr(), o.arr());
        Usage::from(std::array::from_fn(|i| a[i].saturating_sub(b[i])))
    }
    /// At most `bound` in every resource `charge` asks for.
    fn within(&self, bound: &Usage, charge: &Usage) -> bool {
        let (v, b, c) = (self.arr(), bound.arr(), charge.arr());
        (0..4).all(|i| c[i] == 0 || v[i] <= b[i])
    }
}

/// The sysctl limits in force.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub peer: Usage,
    pub user: Usage,
    pub peer_nodes: u64,
    pub peer_handles: u64,
    pub user_nodes: u64,
    pub user_handles: u64,
}

/// One accounting pool (a peer's queue, or all queues of a user) with the
/// fair share of bus1.rst.
#[derive(Clone, Debug, Default)]
struct Pool {
    owner: u32,
    used: Usage,
    shares: BTreeMap<u32, Usage>,
}

impl Pool {
    fn fits(&self, sender: u32, charge: &Usage, limit: &Usage) -> bool {
        let used = self.used.plus(*charge);
        if !used.within(limit, charge) {
            return false;
        }
        if sender == self.owner {
            return true;
        }
        let share = self.shares.get(&sender).copied().unwrap_or_default();
        share.plus(*charge).within(&limit.minus(used), charge)
    }
    fn take(&mut self, sender: u32, charge: &Usage) {
        self.used = self.used.plus(*charge);
        if sender != self.owner {
            let share = self.shares.entry(sender).or_default();
            *share = share.plus(*charge);
        }
    }
    fn give_back(&mut self, sender: u32, charge: &Usage) {
        self.used = self.used.minus(*charge);
        if let Some(share) = self.shares.get_mut(&sender) {
            *share = share.minus(*charge);
        }
    }
}

type Inst = u64;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct NodeKey {
    owner: Inst,
    id: u64,
}

#[derive(Clone, Debug)]
struct Entry {
    serial: u64,
    txn: u64,
    kind: u64,
    id: u64,
    msg: Option<u64>,
    charge: Option<(u32, Usage)>,
}

#[derive(Clone, Debug)]
struct Msg {
    payload: Vec<u8>,
    carried: Vec<Option<NodeKey>>,
    files: Vec<usize>,
    creds: (u32, u32, i32, i32),
    /// Queue entries still referring to the message.
    entries: usize,
}

#[derive(Clone, Debug)]
enum Ref {
    Node,
    Handle { node: NodeKey, refs: u64 },
}

#[derive(Clone, Debug)]
struct Peer {
    uid: u32,
    nonblock: bool,
    fd: i32,
    next_id: u64,
    ids: BTreeMap<u64, Ref>,
    by_node: BTreeMap<NodeKey, u64>,
    queue: Vec<Entry>,
    pool: Pool,
    nodes: u64,
    handles: u64,
}

#[derive(Clone, Debug, Default)]
struct Node {
    alive: bool,
    refs: u64,
    holders: BTreeSet<(Inst, u64)>,
    release_queued: Option<u64>,
}

/// What a successful (or `EMSGSIZE`) receive reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecvOut {
    pub kind: u64,
    pub id: u64,
    pub flags: u64,
    pub n_bytes: u64,
    pub n_handles: u64,
    pub n_fds: u64,
    /// uid, gid, pid, tid (only with a structure that has them).
    pub creds: Option<(u32, u32, i32, i32)>,
    pub payload: Vec<u8>,
    pub handle_ids: Vec<u64>,
    pub fd_numbers: Vec<i32>,
    /// Which passable file each descriptor is (`FdKind::File` index).
    pub fd_files: Vec<usize>,
}

/// What the model expects of one operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expect {
    /// Not run: the operation does not apply (a slot that is empty or
    /// taken); the same on both sides.
    Skip,
    Ret(Result<i64, Errno>),
    /// `bus1_node_create()`, `bus1_handle_transfer()`: the id written.
    Id(Result<u64, Errno>),
    Send {
        ret: Result<i64, Errno>,
        /// The errors array after the call (`None`: left alone).
        errors: Option<Vec<i32>>,
    },
    Recv {
        ret: Result<i64, Errno>,
        /// On success, everything reported; on `EMSGSIZE`, the sizes.
        out: Option<RecvOut>,
    },
    Inspect(Vec<(String, u64)>),
}

/// The caller's identity, for the credentials a message carries.
#[derive(Clone, Copy, Debug)]
pub struct Caller {
    pub gid: u32,
    pub pid: i32,
    pub tid: i32,
}

#[derive(Clone, Debug)]
pub struct Model {
    pub slots: Vec<Option<Inst>>,
    peers: BTreeMap<Inst, Peer>,
    nodes: BTreeMap<NodeKey, Node>,
    msgs: BTreeMap<u64, Msg>,
    user_pools: BTreeMap<u32, Pool>,
    next_inst: Inst,
    next_serial: u64,
    next_txn: u64,
    next_msg: u64,
    pub limits: Limits,
    /// Open descriptors of the process, and the soft limit.
    pub open_fds: BTreeSet<i32>,
    pub fd_limit: i32,
    /// Descriptors received and still open, with the file each is.
    pub received: Vec<(i32, usize)>,
    caller: Caller,
}

fn ok<E>(r: Result<(), E>) -> Result<i64, E> {
    r.map(|()| 0)
}

/// What reading an extensible structure gives (`copy_struct_from_user()`
/// semantics): its size in bytes, or the errno.
fn read_struct(size: Size, ptr: Ptr, ver0: usize, ver1: usize) -> Result<usize, Errno> {
    let bytes = size.bytes(ver0, ver1);
    if bytes < ver0 {
        return Err(Errno::EINVAL);
    }
    if bytes > STRUCT_SIZE_MAX {
        return Err(Errno::E2BIG);
    }
    if !ptr.readable() {
        return Err(Errno::EFAULT);
    }
    if size == Size::TailSet {
        return Err(Errno::E2BIG);
    }
    Ok(bytes)
}

/// The `n` pieces of a payload or buffer array at `ptr` and their total
/// length (a read-only page holds zeros: empty pieces), or the errno.
fn read_vecs(vecs: &[VecSpec], n: u64, ptr: Ptr) -> Result<(Vec<VecSpec>, u64), Errno> {
    if n > 1024 {
        return Err(Errno::EINVAL);
    }
    if n > 0 && !ptr.readable() {
        return Err(Errno::EFAULT);
    }
    let vecs: Vec<VecSpec> = if ptr == Ptr::ReadOnly {
        vec![
            VecSpec {
                len: 0,
                ptr: Ptr::Null
            };
            n as usize
        ]
    } else {
        vecs[..n as usize].to_vec()
    };
    let total = vecs
        .iter()
        .try_fold(0u64, |t, v| t.checked_add(v.len))
        .ok_or(Errno::EINVAL)?;
    Ok((vecs, total))
}

impl Model {
    pub fn new(
        slots: usize,
        limits: Limits,
        open_fds: BTreeSet<i32>,
        fd_limit: i32,
        caller: Caller,
    ) -> Self {
        Self {
            slots: vec![None; slots],
            peers: BTreeMap::new(),
            nodes: BTreeMap::new(),
            msgs: BTreeMap::new(),
            user_pools: BTreeMap::new(),
            next_inst: 1,
            next_serial: 1,
            next_txn: 1,
            next_msg: 1,
            limits,
            open_fds,
            fd_limit,
            received: vec![],
            caller,
        }
    }

    // --- what the generator may ask -----------------------------------------

    pub fn slot_open(&self, slot: usize) -> bool {
        self.slots[slot].is_some()
    }

    pub fn ids_of(&self, slot: usize) -> Vec<(u64, bool, bool)> {
        let Some(inst) = self.slots[slot] else {
            return vec![];
        };
        let p = &self.peers[&inst];
        p.ids
            .iter()
            .map(|(&id, r)| match r {
                Ref::Node => (id, true, true),
                Ref::Handle { node, .. } => (id, false, self.nodes[node].alive),
            })
            .collect()
    }

    pub fn next_id_of(&self, slot: usize) -> u64 {
        self.slots[slot].map_or(1, |i| self.peers[&i].next_id)
    }

    pub fn queue_len(&self, slot: usize) -> usize {
        self.slots[slot].map_or(0, |i| self.peers[&i].queue.len())
    }

    /// What the first entry of the slot's queue needs: bytes, handles, fds.
    pub fn first_needs(&self, slot: usize) -> Option<(u64, u64, u64)> {
        let e = self.peers[&self.slots[slot]?].queue.first()?;
        Some(match e.msg {
            Some(m) => {
                let m = &self.msgs[&m];
                (
                    m.payload.len() as u64,
                    m.carried.len() as u64,
                    m.files.len() as u64,
                )
            }
            None => (0, 0, 0),
        })
    }

    pub fn nonblock(&self, slot: usize) -> bool {
        self.slots[slot].is_some_and(|i| self.peers[&i].nonblock)
    }

    fn free_fds(&self, n: usize) -> Vec<i32> {
        (0..self.fd_limit)
            .filter(|fd| !self.open_fds.contains(fd))
            .take(n)
            .collect()
    }

    fn peer_arg(&self, a: FdArg) -> Result<Inst, Errno> {
        match a {
            FdArg::Slot(s) => self.slots[s].ok_or(Errno::EBADF),
            FdArg::NotBus1 | FdArg::Negative => Err(Errno::EBADF),
        }
    }

    fn user_objects(&self, uid: u32) -> (u64, u64) {
        self.peers
            .values()
            .filter(|p| p.uid == uid)
            .fold((0, 0), |(n, h), p| (n + p.nodes, h + p.handles))
    }

    fn serial(&mut self) -> u64 {
        self.next_serial += 1;
        self.next_serial
    }

    fn txn(&mut self) -> u64 {
        self.next_txn += 1;
        self.next_txn
    }

    fn push(
        &mut self,
        inst: Inst,
        txn: u64,
        kind: u64,
        id: u64,
        msg: Option<u64>,
        charge: Option<(u32, Usage)>,
    ) -> u64 {
        let serial = self.serial();
        self.peers
            .get_mut(&inst)
            .expect("open peer")
            .queue
            .push(Entry {
                serial,
                txn,
                kind,
                id,
                msg,
                charge,
            });
        serial
    }

    // --- reference counts and release notifications -------------------------

    /// Takes a reference on an alive node; only the owner may raise the
    /// count from zero, and doing so withdraws an unreceived release
    /// notification.
    fn get_ref(&mut self, key: NodeKey, by_owner: bool) -> Result<(), Errno> {
        let node = self.nodes.get_mut(&key).expect("known node");
        if node.refs == 0 {
            if !by_owner {
                return Err(Errno::ENXIO);
            }
            if let Some(serial) = node.release_queued.take() {
                if let Some(owner) = self.peers.get_mut(&key.owner) {
                    owner.queue.retain(|e| e.serial != serial);
                }
            }
        }
        self.nodes.get_mut(&key).expect("known node").refs += 1;
        Ok(())
    }

    fn put_ref(&mut self, key: NodeKey) {
        let node = self.nodes.get_mut(&key).expect("known node");
        if !node.alive {
            return;
        }
        node.refs = node.refs.saturating_sub(1);
        if node.refs != 0 {
            return;
        }
        if let Some(serial) = node.release_queued {
            if self.peers[&key.owner]
                .queue
                .iter()
                .any(|e| e.serial == serial)
            {
                return;
            }
        }
        let txn = self.txn();
        let serial = self.push(key.owner, txn, MSG_NODE_RELEASE, key.id, None, None);
        self.nodes.get_mut(&key).expect("known node").release_queued = Some(serial);
    }

    /// Gives `inst` a reference to the alive node `key`; returns its id.
    fn acquire(
        &mut self,
        inst: Inst,
        key: NodeKey,
        by_owner: bool,
        limited: bool,
    ) -> Result<u64, Errno> {
        if key.owner == inst {
            return if self.nodes[&key].alive {
                Ok(key.id)
            } else {
                Err(Errno::EHOSTUNREACH)
            };
        }
        if !self.nodes[&key].alive {
            return Err(Errno::EHOSTUNREACH);
        }
        let p = &self.peers[&inst];
        if let Some(&id) = p.by_node.get(&key) {
            if let Some(Ref::Handle { refs, .. }) =
                self.peers.get_mut(&inst).expect("peer").ids.get_mut(&id)
            {
                *refs += 1;
            }
            return Ok(id);
        }
        if limited
            && (p.handles >= self.limits.peer_handles
                || self.user_objects(p.uid).1 >= self.limits.user_handles)
        {
            return Err(Errno::EDQUOT);
        }
        self.get_ref(key, by_owner)?;
        let p = self.peers.get_mut(&inst).expect("peer");
        let id = p.next_id;
        p.next_id += 1;
        p.handles += 1;
        p.ids.insert(id, Ref::Handle { node: key, refs: 1 });
        p.by_node.insert(key, id);
        self.nodes
            .get_mut(&key)
            .expect("node")
            .holders
            .insert((inst, id));
        Ok(id)
    }

    /// Drops one reference of handle `id` of `inst`.
    fn release(&mut self, inst: Inst, id: u64) -> Result<(), Errno> {
        let p = self.peers.get_mut(&inst).expect("peer");
        let key = match p.ids.get_mut(&id) {
            None => return Err(Errno::ENXIO),
            Some(Ref::Node) => return Err(Errno::EPERM),
            Some(Ref::Handle { refs, .. }) if *refs > 1 => {
                *refs -= 1;
                return Ok(());
            }
            Some(Ref::Handle { node, .. }) => *node,
        };
        p.ids.remove(&id);
        p.by_node.remove(&key);
        p.handles -= 1;
        self.drop_holder(inst, key, id);
        Ok(())
    }

    fn drop_holder(&mut self, inst: Inst, key: NodeKey, id: u64) {
        let node = self.nodes.get_mut(&key).expect("node");
        if node.alive && node.holders.remove(&(inst, id)) {
            self.put_ref(key);
        }
    }

    /// Destroys `keys` (alive nodes of `owner`) in one transaction.
    fn destroy_nodes(&mut self, owner: Inst, keys: &[NodeKey], owner_open: bool) {
        let txn = self.txn();
        for &key in keys {
            if !self.nodes[&key].alive {
                continue;
            }
            if owner_open {
                self.push(owner, txn, MSG_NODE_DESTROY, key.id, None, None);
            }
            let holders: Vec<(Inst, u64)> = self.nodes[&key].holders.iter().copied().collect();
            for (holder, id) in holders {
                self.push(holder, txn, MSG_NODE_DESTROY, id, None, None);
            }
            let node = self.nodes.get_mut(&key).expect("node");
            node.alive = false;
            node.holders.clear();
        }
    }

    fn uncharge(&mut self, inst: Inst, sender: u32, charge: &Usage) {
        let p = self.peers.get_mut(&inst).expect("peer");
        p.pool.give_back(sender, charge);
        let uid = p.uid;
        self.user_pools
            .get_mut(&uid)
            .expect("user pool")
            .give_back(sender, charge);
    }

    fn put_message(&mut self, m: u64) {
        let msg = self.msgs.get_mut(&m).expect("message");
        msg.entries -= 1;
        if msg.entries == 0 {
            let msg = self.msgs.remove(&m).expect("message");
            for key in msg.carried.into_iter().flatten() {
                self.put_ref(key);
            }
        }
    }

    /// Close (`reopen` false) or reset of a peer.
    fn give_up(&mut self, inst: Inst, reopen: bool) {
        let p = self.peers.get_mut(&inst).expect("peer");
        let queued = std::mem::take(&mut p.queue);
        let ids = std::mem::take(&mut p.ids);
        p.by_node.clear();
        p.nodes = 0;
        p.handles = 0;
        // The queue is closed: charges come back now, the owner gets no
        // notification of its own.
        for e in &queued {
            if let Some((sender, charge)) = e.charge {
                self.uncharge(inst, sender, &charge);
            }
        }
        let owned: Vec<NodeKey> = ids
            .iter()
            .filter(|(_, r)| matches!(r, Ref::Node))
            .map(|(&id, _)| NodeKey { owner: inst, id })
            .collect();
        self.destroy_nodes(inst, &owned, false);
        for (id, r) in &ids {
            if let Ref::Handle { node, .. } = r {
                self.drop_holder(inst, *node, *id);
            }
        }
        if !reopen {
            let p = self.peers.remove(&inst).expect("peer");
            self.open_fds.remove(&p.fd);
        }
        for e in queued {
            if let Some(m) = e.msg {
                self.put_message(m);
            }
        }
    }

    // --- the operations -----------------------------------------------------

    pub fn apply(&mut self, op: &Op) -> Expect {
        match op {
            Op::Open { slot, flags, uid } => {
                if self.slots[*slot].is_some() {
                    return Expect::Skip;
                }
                Expect::Ret(self.open(*slot, *flags, *uid))
            }
            Op::Close { slot } => match self.slots[*slot].take() {
                None => Expect::Skip,
                Some(inst) => {
                    self.give_up(inst, false);
                    Expect::Ret(Ok(0))
                }
            },
            Op::CloseReceived { index } => {
                if *index >= self.received.len() {
                    return Expect::Skip;
                }
                let (fd, _) = self.received.remove(*index);
                self.open_fds.remove(&fd);
                Expect::Ret(Ok(0))
            }
            Op::NodeCreate {
                peer,
                id_ptr,
                flags,
            } => Expect::Id(self.node_create(*peer, *id_ptr, *flags)),
            Op::Transfer {
                src,
                src_id,
                src_ptr,
                dst,
                dst_ptr,
                flags,
            } => Expect::Id(self.transfer(*src, *src_id, *src_ptr, *dst, *dst_ptr, *flags)),
            Op::Release {
                peer,
                id,
                ptr,
                flags,
            } => Expect::Ret(ok(self.release_call(*peer, *id, *ptr, *flags))),
            Op::Destroy {
                peer,
                ids,
                n,
                ptr,
                flags,
            } => Expect::Ret(ok(self.destroy(*peer, ids, *n, *ptr, *flags))),
            Op::Reset { peer, flags } => Expect::Ret(ok(self.reset(*peer, *flags))),
            Op::Send(s) => self.send(s),
            Op::Recv(r) => self.recv(r),
            Op::Inspect { slot } => match self.slots[*slot] {
                None => Expect::Skip,
                Some(inst) => Expect::Inspect(self.counters(inst)),
            },
        }
    }

    fn open(&mut self, slot: usize, flags: u32, uid: u32) -> Result<i64, Errno> {
        if flags & !3 != 0 {
            return Err(Errno::EINVAL);
        }
        let Some(&fd) = self.free_fds(1).first() else {
            return Err(Errno::EMFILE);
        };
        let inst = self.next_inst;
        self.next_inst += 1;
        self.open_fds.insert(fd);
        self.user_pools.entry(uid).or_insert_with(|| Pool {
            owner: uid,
            ..Default::default()
        });
        self.peers.insert(
            inst,
            Peer {
                uid,
                nonblock: flags & 2 != 0,
                fd,
                next_id: 1,
                ids: BTreeMap::new(),
                by_node: BTreeMap::new(),
                queue: vec![],
                pool: Pool {
                    owner: uid,
                    ..Default::default()
                },
                nodes: 0,
                handles: 0,
            },
        );
        self.slots[slot] = Some(inst);
        Ok(fd as i64)
    }

    fn node_create(&mut self, peer: FdArg, id_ptr: Ptr, flags: u32) -> Result<u64, Errno> {
        if flags != 0 {
            return Err(Errno::EINVAL);
        }
        let inst = self.peer_arg(peer)?;
        if !id_ptr.writable() {
            return Err(Errno::EFAULT);
        }
        let p = &self.peers[&inst];
        if p.nodes >= self.limits.peer_nodes || self.user_objects(p.uid).0 >= self.limits.user_nodes
        {
            return Err(Errno::EDQUOT);
        }
        let p = self.peers.get_mut(&inst).expect("peer");
        let id = p.next_id;
        p.next_id += 1;
        p.nodes += 1;
        p.ids.insert(id, Ref::Node);
        self.nodes.insert(
            NodeKey { owner: inst, id },
            Node {
                alive: true,
                ..Default::default()
            },
        );
        Ok(id)
    }

    fn lookup(&self, inst: Inst, id: u64) -> Option<NodeKey> {
        match self.peers[&inst].ids.get(&id)? {
            Ref::Node => Some(NodeKey { owner: inst, id }),
            Ref::Handle { node, .. } => Some(*node),
        }
    }

    fn transfer(
        &mut self,
        src: FdArg,
        src_id: u64,
        src_ptr: Ptr,
        dst: Option<FdArg>,
        dst_ptr: Option<Ptr>,
        flags: u32,
    ) -> Result<u64, Errno> {
        if flags != 0 {
            return Err(Errno::EINVAL);
        }
        let src = self.peer_arg(src)?;
        let dst = match dst {
            None => src,
            Some(d) => self.peer_arg(d)?,
        };
        if !src_ptr.readable() {
            return Err(Errno::EFAULT);
        }
        // A read-only page holds zeros.
        let src_id = if src_ptr == Ptr::ReadOnly { 0 } else { src_id };
        let key = self.lookup(src, src_id).ok_or(Errno::ENXIO)?;
        if !self.nodes[&key].alive {
            return Err(Errno::EHOSTUNREACH);
        }
        if !dst_ptr.unwrap_or(src_ptr).writable() {
            return Err(Errno::EFAULT);
        }
        self.acquire(dst, key, key.owner == src, true)
    }

    fn release_call(&mut self, peer: FdArg, id: u64, ptr: Ptr, flags: u32) -> Result<(), Errno> {
        if flags != 0 {
            return Err(Errno::EINVAL);
        }
        let inst = self.peer_arg(peer)?;
        if !ptr.readable() {
            return Err(Errno::EFAULT);
        }
        self.release(inst, if ptr == Ptr::ReadOnly { 0 } else { id })
    }

    fn destroy(
        &mut self,
        peer: FdArg,
        ids: &[u64],
        n: u32,
        ptr: Ptr,
        flags: u32,
    ) -> Result<(), Errno> {
        if flags != 0 || n == 0 || n > 1024 {
            return Err(Errno::EINVAL);
        }
        let inst = self.peer_arg(peer)?;
        if !ptr.readable() {
            return Err(Errno::EFAULT);
        }
        let ids: Vec<u64> = if ptr == Ptr::ReadOnly {
            vec![0; n as usize]
        } else {
            ids[..n as usize].to_vec()
        };
        let unique: BTreeSet<u64> = ids.iter().copied().collect();
        if unique.len() != ids.len() {
            return Err(Errno::ENOTUNIQ);
        }
        for id in &ids {
            match self.peers[&inst].ids.get(id) {
                None => return Err(Errno::ENXIO),
                Some(Ref::Handle { .. }) => return Err(Errno::EPERM),
                Some(Ref::Node) => {}
            }
        }
        let p = self.peers.get_mut(&inst).expect("peer");
        for id in &ids {
            p.ids.remove(id);
        }
        p.nodes -= ids.len() as u64;
        let keys: Vec<NodeKey> = ids.iter().map(|&id| NodeKey { owner: inst, id }).collect();
        self.destroy_nodes(inst, &keys, true);
        Ok(())
    }

    fn reset(&mut self, peer: FdArg, flags: u32) -> Result<(), Errno> {
        if flags != 0 {
            return Err(Errno::EINVAL);
        }
        let inst = self.peer_arg(peer)?;
        self.give_up(inst, true);
        Ok(())
    }

    fn send(&mut self, s: &SendOp) -> Expect {
        let fail = |e| Expect::Send {
            ret: Err(e),
            errors: None,
        };
        if s.flags & !7 != 0 || s.n_dsts == 0 || s.n_dsts > 1024 {
            return fail(Errno::EINVAL);
        }
        let partial = s.flags & 1 != 0;
        let inst = match self.peer_arg(s.peer) {
            Ok(i) => i,
            Err(e) => return fail(e),
        };
        if let Err(e) = read_struct(s.size, s.msg_ptr, 40, 56) {
            return fail(e);
        }
        let n_fds = if s.size == Size::Ver0 { 0 } else { s.n_fds };
        if s.n_handles > 256 || n_fds > 256 {
            return fail(Errno::EINVAL);
        }
        if (s.flags & 2 != 0) != (s.n_handles != 0) || (s.flags & 4 != 0) != (n_fds != 0) {
            return fail(Errno::EINVAL);
        }
        if !s.dsts_ptr.readable() {
            return fail(Errno::EFAULT);
        }
        let dsts: Vec<u64> = if s.dsts_ptr == Ptr::ReadOnly {
            vec![0; s.n_dsts as usize]
        } else {
            s.dsts[..s.n_dsts as usize].to_vec()
        };
        if dsts.iter().collect::<BTreeSet<_>>().len() != dsts.len() {
            return fail(Errno::ENOTUNIQ);
        }
        let cancelled = Errno::ECANCELED as i32;
        let mut errors = match s.errors {
            // A NULL `errors` is no array.
            Some(Ptr::Null) | None => None,
            Some(p) if !p.writable() => return fail(Errno::EFAULT),
            Some(_) => Some(vec![cancelled; dsts.len()]),
        };
        let early = |e, errors: &Option<Vec<i32>>| Expect::Send {
            ret: Err(e),
            errors: errors.clone(),
        };
        if s.n_handles > 0 && !s.handles_ptr.readable() {
            return early(Errno::EFAULT, &errors);
        }
        let handles: Vec<u64> = if s.handles_ptr == Ptr::ReadOnly {
            vec![0; s.n_handles as usize]
        } else {
            s.handles[..s.n_handles as usize].to_vec()
        };
        if n_fds > 0 && !s.fds_ptr.readable() {
            return early(Errno::EFAULT, &errors);
        }
        let mut files = vec![];
        for kind in &s.fds[..n_fds as usize] {
            match kind {
                FdKind::File(i) => files.push(*i),
                FdKind::Peer(slot) if self.slots[*slot].is_some() => {
                    return early(Errno::EOPNOTSUPP, &errors);
                }
                FdKind::Unix => return early(Errno::EOPNOTSUPP, &errors),
                FdKind::Peer(_) | FdKind::NotOpen | FdKind::Negative => {
                    return early(Errno::EBADF, &errors);
                }
            }
        }
        let (vecs, total) = match read_vecs(&s.vecs, s.n_vecs, s.vecs_ptr) {
            Ok(v) => v,
            Err(e) => return early(e, &errors),
        };
        if total > PAYLOAD_MAX {
            return early(Errno::EMSGSIZE, &errors);
        }
        let mut payload = vec![];
        for (i, v) in vecs.iter().enumerate() {
            if v.len == 0 {
                continue;
            }
            match v.ptr {
                Ptr::Ok => payload.extend((0..v.len as usize).map(|o| payload_byte(s.fill, i, o))),
                Ptr::ReadOnly => payload.extend(std::iter::repeat_n(0u8, v.len as usize)),
                Ptr::Null | Ptr::Unmapped => return early(Errno::EFAULT, &errors),
            }
        }

        // The transaction: carried handles first, then the destinations.
        let mut carried = vec![];
        for &id in &handles {
            match self.lookup(inst, id) {
                Some(key) => carried.push(key),
                None => return early(Errno::ENXIO, &errors),
            }
        }
        let mut targets = vec![];
        let mut first_refusal = None;
        for (i, &id) in dsts.iter().enumerate() {
            let refusal = match self.lookup(inst, id) {
                Some(key) if self.nodes[&key].alive => {
                    targets.push((i, key));
                    continue;
                }
                Some(_) => Errno::EHOSTUNREACH,
                None => Errno::ENXIO,
            };
            if let Some(errors) = errors.as_mut() {
                errors[i] = refusal as i32;
            }
            first_refusal.get_or_insert(refusal);
        }
        if let Some(e) = first_refusal {
            if !partial || targets.is_empty() {
                return early(e, &errors);
            }
        }
        let sender_uid = self.peers[&inst].uid;
        let charge = Usage {
            messages: 1,
            bytes: payload.len() as u64 + MESSAGE_OVERHEAD,
            handles: handles.len() as u64,
            fds: files.len() as u64,
        };
        let mut taken = vec![];
        let mut stage_refusal = None;
        for &(i, key) in &targets {
            let dst = &self.peers[&key.owner];
            let fits = dst.pool.fits(sender_uid, &charge, &self.limits.peer)
                && self.user_pools[&dst.uid].fits(sender_uid, &charge, &self.limits.user);
            if fits {
                let dst = self.peers.get_mut(&key.owner).expect("peer");
                dst.pool.take(sender_uid, &charge);
                let uid = dst.uid;
                self.user_pools
                    .get_mut(&uid)
                    .expect("pool")
                    .take(sender_uid, &charge);
                taken.push((i, key));
                continue;
            }
            if let Some(errors) = errors.as_mut() {
                errors[i] = Errno::EDQUOT as i32;
            }
            stage_refusal.get_or_insert(Errno::EDQUOT);
            if !partial {
                for &(_, key) in &taken {
                    self.uncharge(key.owner, sender_uid, &charge);
                }
                return early(Errno::EDQUOT, &errors);
            }
        }
        if taken.is_empty() {
            return early(stage_refusal.unwrap_or(Errno::EHOSTUNREACH), &errors);
        }
        // Committed: the in-flight references, then the entries.
        let mut inflight = vec![];
        for key in carried {
            let alive = self.nodes[&key].alive;
            inflight.push(if alive && self.get_ref(key, key.owner == inst).is_ok() {
                Some(key)
            } else {
                None
            });
        }
        let m = self.next_msg;
        self.next_msg += 1;
        self.msgs.insert(
            m,
            Msg {
                payload,
                carried: inflight,
                files,
                creds: (s.uid, self.caller.gid, self.caller.pid, self.caller.tid),
                entries: taken.len(),
            },
        );
        let txn = self.txn();
        for &(i, key) in &taken {
            self.push(
                key.owner,
                txn,
                MSG_DATA,
                key.id,
                Some(m),
                Some((sender_uid, charge)),
            );
            if let Some(errors) = errors.as_mut() {
                errors[i] = 0;
            }
        }
        Expect::Send {
            ret: Ok(taken.len() as i64),
            errors,
        }
    }

    fn recv(&mut self, r: &RecvOp) -> Expect {
        let fail = |e| Expect::Recv {
            ret: Err(e),
            out: None,
        };
        if r.flags != 0 {
            return fail(Errno::EINVAL);
        }
        let inst = match self.peer_arg(r.peer) {
            Ok(i) => i,
            Err(e) => return fail(e),
        };
        let size = match read_struct(r.size, r.args_ptr, 64, 96) {
            Ok(size) => size,
            Err(e) => return fail(e),
        };
        let fds_cap = if r.size == Size::Ver0 { 0 } else { r.fds_cap };
        let (vecs, room) = match read_vecs(&r.vecs, r.n_vecs, r.vecs_ptr) {
            Ok(v) => v,
            Err(e) => return fail(e),
        };
        let p = &self.peers[&inst];
        let Some(first) = p.queue.first().cloned() else {
            return fail(if p.nonblock {
                Errno::EAGAIN
            } else {
                Errno::EINTR
            });
        };
        let continues = p.queue.get(1).is_some_and(|e| e.txn == first.txn);
        let msg = first.msg.map(|m| self.msgs[&m].clone());
        let (payload, carried, files, creds) = match &msg {
            Some(m) => (
                m.payload.clone(),
                m.carried.clone(),
                m.files.clone(),
                m.creds,
            ),
            None => (vec![], vec![], vec![], (u32::MAX, u32::MAX, 0, 0)),
        };
        let mut out = RecvOut {
            kind: first.kind,
            id: first.id,
            flags: u64::from(continues),
            n_bytes: payload.len() as u64,
            n_handles: carried.len() as u64,
            n_fds: files.len() as u64,
            creds: (size >= 96).then_some(creds),
            payload: vec![],
            handle_ids: vec![],
            fd_numbers: vec![],
            fd_files: vec![],
        };
        if out.n_bytes > room || out.n_handles > r.handles_cap || out.n_fds > fds_cap {
            if !r.args_ptr.writable() {
                return fail(Errno::EFAULT);
            }
            return Expect::Recv {
                ret: Err(Errno::EMSGSIZE),
                out: Some(RecvOut {
                    kind: 0,
                    id: 0,
                    flags: 0,
                    creds: None,
                    n_fds: if size >= 96 { out.n_fds } else { 0 },
                    ..out
                }),
            };
        }
        let numbers = self.free_fds(files.len());
        if numbers.len() < files.len() {
            return fail(Errno::EMFILE);
        }
        let mut left = payload.len() as u64;
        for v in &vecs {
            if left == 0 {
                break;
            }
            let n = v.len.min(left);
            if n > 0 && !v.ptr.writable() {
                return fail(Errno::EFAULT);
            }
            left -= n;
        }
        if (!carried.is_empty() && !r.handles_ptr.writable())
            || (!files.is_empty() && !r.fds_ptr.writable())
        {
            return fail(Errno::EFAULT);
        }
        if !r.args_ptr.writable() {
            return fail(Errno::EFAULT);
        }
        // Nothing fails from here on.
        for c in &carried {
            let id = match c {
                Some(key) => self.acquire(inst, *key, false, false).unwrap_or(ID_INVALID),
                None => ID_INVALID,
            };
            out.handle_ids.push(id);
        }
        self.peers.get_mut(&inst).expect("peer").queue.remove(0);
        if let Some((sender, charge)) = first.charge {
            self.uncharge(inst, sender, &charge);
        }
        for (&fd, &file) in numbers.iter().zip(&files) {
            self.open_fds.insert(fd);
            self.received.push((fd, file));
        }
        if let Some(m) = first.msg {
            self.put_message(m);
        }
        out.payload = payload;
        out.fd_numbers = numbers;
        out.fd_files = files;
        Expect::Recv {
            ret: Ok(0),
            out: Some(out),
        }
    }

    /// The fdinfo counters of a peer, as `bus1-<name>` → used, and whether
    /// it is readable.
    fn counters(&self, inst: Inst) -> Vec<(String, u64)> {
        let p = &self.peers[&inst];
        let user = &self.user_pools[&p.uid];
        let (un, uh) = self.user_objects(p.uid);
        let mut v = vec![];
        for (pool, u) in [("queue", p.pool.used), ("user", user.used)] {
            for (name, n) in [
                ("messages", u.messages),
                ("bytes", u.bytes),
                ("handles", u.handles),
                ("fds", u.fds),
            ] {
                v.push((format!("bus1-{pool}-{name}"), n));
            }
        }
        v.push(("bus1-peer-nodes".into(), p.nodes));
        v.push(("bus1-peer-held-handles".into(), p.handles));
        v.push(("bus1-user-nodes".into(), un));
        v.push(("bus1-user-held-handles".into(), uh));
        v.push(("readable".into(), u64::from(!p.queue.is_empty())));
        v.push(("open-fds".into(), self.open_fds.len() as u64));
        v
    }
}
