// SPDX-License-Identifier: GPL-2.0
//! Concurrent mode: several processes, each with several threads, each
//! thread acting as one of several users, drive bus1 at once with random
//! operations; afterwards invariants are checked on what every thread
//! journaled.
//!
//! The parent opens every peer before forking (as the user of the thread
//! that will drive it, so it is charged to that user), gives it a "home"
//! node and gives every peer a handle to every other peer's home node.
//! Each thread then drives three peers: two *stable* ones (one
//! non-blocking, one blocking) that are never reset or closed before the
//! end, and one *volatile* one that it resets or closes and reopens now
//! and then (its queue may be dropped, so it is left out of the loss
//! check).  Operations: unicasts and multicasts (with and without
//! `BUS1_SEND_CONTINUE`, with and without an errors array) whose payloads
//! name (thread, sequence number, cause), carrying handles and pipe ends;
//! sends of refused descriptors (a bus1 peer, an `AF_UNIX` socket), which
//! must fail with `EOPNOTSUPP`; receives, blocking ones with a per-thread
//! timer armed whose signal (installed without `SA_RESTART`) ends any
//! wait; node creation, handle transfers and releases, destructions,
//! floods of nodes and handles up to their limits; and invalid calls (bad
//! ids, fds, flags, sizes, `NULL` and unmapped pointers) whose results are
//! only recorded.  Small quotas are set in `/proc/sys/bus1/` for the run
//! (and restored after it), so `EDQUOT` is common; it is never a loss.
//!
//! Every thread journals what it sent (and what each send reported
//! delivered), received, destroyed, reset and closed.  When every thread of
//! every process is done (a barrier over pipes), each thread drains its
//! peers and checks that its queues account nothing any more and that the
//! kernel's node and handle counts are what it accounted; the processes
//! write their journals to `/tmp` and exit, and the parent reads them (one
//! thread's at a time, so that long runs fit in memory) and checks:
//!
//! * every message a send reported delivered to a stable peer was received
//!   there exactly once, and nothing was received that was not delivered;
//! * any two receivers received their common transactions (messages and
//!   destructions) in the same order, back to back for one transaction,
//!   with `BUS1_RECV_FLAG_CONTINUE` on all but its last entry;
//! * causality: what a thread sent or destroyed after receiving something
//!   reached every common receiver after it;
//! * no message arrived on an id after that id's `BUS1_MSG_NODE_DESTROY`;
//! * the sender's credentials, carried descriptors and handles arrived as
//!   sent;
//! * after every peer is closed, a fresh peer of each user shows the user's
//!   pools and objects as before the run, and the debugfs object counts are
//!   back to where they were.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fs::{self, File};
use std::io::{BufWriter, Read, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Barrier;

use bus1::sys::{
    self, BUS1_FDS_MAX, BUS1_HANDLES_MAX, BUS1_ID_INVALID, BUS1_MESSAGE_SIZE_VER0, BUS1_MSG_DATA,
    BUS1_MSG_NODE_DESTROY, BUS1_MSG_NODE_RELEASE, BUS1_OPEN_CLOEXEC, BUS1_OPEN_NONBLOCK,
    BUS1_PAYLOAD_MAX, BUS1_RECV_FLAG_CONTINUE, BUS1_RECV_SIZE_VER0, BUS1_SEND_CONTINUE,
    BUS1_SEND_FDS, BUS1_SEND_HANDLES, Bus1Message, Bus1Recv, Bus1Vec, nr,
};
use bus1::{Errno, Peer, fdinfo_field};
use nix::libc;

use crate::coverage::Coverage;
use crate::rng::Rng;
use crate::sysctl;

pub struct Config {
    pub seed: u64,
    pub ops: u64,
    pub threads: usize,
    pub processes: usize,
    pub uids: Vec<u32>,
}

pub struct Report {
    pub ops: u64,
    pub coverage: Coverage,
    pub summary: String,
}

// Indices into `coverage::CALLS`.
const OPEN: usize = 0;
const NODE_CREATE: usize = 1;
const TRANSFER: usize = 2;
const RELEASE: usize = 3;
const DESTROY: usize = 4;
const SEND: usize = 5;
const RECV: usize = 6;
const RESET: usize = 7;

/// First payload word of every message the fuzzer sends.
const MAGIC: u64 = 0xb051_c0c0_f022_0001;
/// Payload header: magic, event, cause, handles, fds, uid, pid/tid.
const HEADER_WORDS: usize = 7;
/// Ids no peer reaches in a run (ids count up from 1).
const BAD_ID: u64 = 1 << 40;
/// The timer signal that ends blocking receives.
const ALARM: libc::c_int = libc::SIGUSR2;
/// Owned nodes a peer keeps at most (home included) by choice.
const MAX_OWNED: usize = 12;
/// Instances 0 and 1 of every thread are its stable peers; 2.. are the
/// incarnations of its volatile peer.
const STABLE: u64 = 2;
/// Violations kept per worker and reported in total.
const MAX_REPORTED: usize = 30;

/// Journal record tags.  Every record is a run of u64 words.
///
/// * `J_RECV inst kind id flags a b`: an entry received on peer `inst`; for
///   data `a` is the event, for a destruction `(a, b)` is the node.
/// * `J_SEND event nc nu (inst node)*nc (inst node)*nu`: a send that
///   succeeded, with its certain and possible deliveries.
/// * `J_FAILED event errno`: a send that failed as a whole.
/// * `J_DESTROY txn n (inst node)*n`: nodes destroyed in one transaction
///   (`bus1_nodes_destroy()`, or a reset or close of their owner).
/// * `J_RESET inst`, `J_CLOSE inst`: the volatile peer was reset or closed.
const J_RECV: u64 = 1;
const J_SEND: u64 = 2;
const J_DESTROY: u64 = 3;
const J_RESET: u64 = 4;
const J_CLOSE: u64 = 5;
const J_FAILED: u64 = 6;

/// A node, named across peers: (owner's peer instance, node id).
type Ident = (u64, u64);

fn inst_of(g: usize, k: u64) -> u64 {
    ((g as u64) << 32) | k
}

fn is_stable(inst: u64) -> bool {
    inst & 0xffff_ffff < STABLE
}

fn inst_name(inst: u64) -> String {
    let (g, k) = (inst >> 32, inst & 0xffff_ffff);
    match k {
        0 => format!("thread {g} peer S0"),
        1 => format!("thread {g} peer S1"),
        k => format!("thread {g} volatile peer #{}", k - STABLE),
    }
}

fn event_name(e: u64) -> String {
    format!(
        "{:#x} (thread {}, #{})",
        e,
        (e >> 40).wrapping_sub(1),
        e & ((1 << 40) - 1)
    )
}

fn errno_i32(e: Errno) -> i32 {
    e as i32
}

/// A raw bus1 system call.
///
/// # Safety
///
/// Every pointer argument is either valid for what the call does with it
/// or deliberately points where the kernel can neither read nor write
/// (`NULL`, a `PROT_NONE` page, a kernel address) or only read (a
/// read-only page, only ever as an output).
unsafe fn raw(nr: usize, args: [usize; 6]) -> Result<usize, Errno> {
    // SAFETY: passed on from the caller.
    unsafe { sys::call(nr, args) }
}

/// Sets this thread's effective uid and gid (`setresuid()` and
/// `setresgid()` as raw system calls act on the calling thread only; the
/// real and saved ids stay 0, so the thread can become root again).
fn become_user(uid: u32) -> Result<(), String> {
    let keep = -1 as libc::c_long;
    // SAFETY: the three calls take integers only.
    let ok = unsafe {
        libc::syscall(libc::SYS_setresuid, keep, 0 as libc::c_long, keep) == 0
            && libc::syscall(libc::SYS_setresgid, keep, uid as libc::c_long, keep) == 0
            && libc::syscall(libc::SYS_setresuid, keep, uid as libc::c_long, keep) == 0
    };
    if ok {
        Ok(())
    } else {
        Err(format!("setresuid/setresgid to {uid}: {}", Errno::last()))
    }
}

fn gettid() -> u32 {
    // SAFETY: gettid takes no arguments.
    unsafe { libc::syscall(libc::SYS_gettid) as u32 }
}

/// Addresses the kernel must refuse: `none` is a `PROT_NONE` page, `ro` a
/// read-only one.
#[derive(Clone, Copy)]
struct Pages {
    none: usize,
    ro: usize,
}

impl Pages {
    fn map() -> Result<Self, String> {
        let map = |prot| {
            // SAFETY: a new anonymous mapping, touching no existing memory.
            let p = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    4096,
                    prot,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                    -1,
                    0,
                )
            };
            if p == libc::MAP_FAILED {
                Err(format!("mmap: {}", Errno::last()))
            } else {
                Ok(p as usize)
            }
        };
        Ok(Self {
            none: map(libc::PROT_NONE)?,
            ro: map(libc::PROT_READ)?,
        })
    }

    /// An address the kernel cannot read from.
    fn unreadable(&self, rng: &mut Rng) -> usize {
        *rng.pick(&[0, self.none, 0xffff_8000_0000_0000, 8])
    }

    /// An address the kernel cannot write to.
    fn unwritable(&self, rng: &mut Rng) -> usize {
        *rng.pick(&[0, self.none, self.ro, 0xffff_8000_0000_0000])
    }
}

/// A per-thread POSIX timer that sends `ALARM` to its thread, so that a
/// blocking receive always ends.
struct Timer(libc::timer_t);

impl Timer {
    fn new() -> Result<Self, String> {
        // SAFETY: all-zero is a valid sigevent.
        let mut sev: libc::sigevent = unsafe { std::mem::zeroed() };
        sev.sigev_notify = libc::SIGEV_THREAD_ID;
        sev.sigev_signo = ALARM;
        sev.sigev_notify_thread_id = gettid() as libc::c_int;
        let mut timer: libc::timer_t = std::ptr::null_mut();
        // SAFETY: `sev` and `timer` are valid for the call.
        if unsafe { libc::timer_create(libc::CLOCK_MONOTONIC, &mut sev, &mut timer) } != 0 {
            return Err(format!("timer_create: {}", Errno::last()));
        }
        Ok(Self(timer))
    }

    /// Fires after `first_us`, then every `every_us` until disarmed (a
    /// periodic timer: a signal that arrives just before the receive
    /// blocks is followed by another one).
    fn arm(&self, first_us: u64, every_us: u64) {
        let ts = |us: u64| libc::timespec {
            tv_sec: (us / 1_000_000) as libc::time_t,
            tv_nsec: ((us % 1_000_000) * 1000) as libc::c_long,
        };
        let spec = libc::itimerspec {
            it_interval: ts(every_us),
            it_value: ts(first_us),
        };
        // SAFETY: `spec` is valid; the old value is not asked for.
        unsafe { libc::timer_settime(self.0, 0, &spec, std::ptr::null_mut()) };
    }

    fn disarm(&self) {
        self.arm(0, 0);
    }
}

impl Drop for Timer {
    fn drop(&mut self) {
        // SAFETY: the timer was created by `new()` and is deleted once.
        unsafe { libc::timer_delete(self.0) };
    }
}

extern "C" fn on_alarm(_: libc::c_int) {}

/// Installs the alarm handler without `SA_RESTART`: a blocked
/// `bus1_recv()` fails with `EINTR`.
fn install_alarm_handler() -> Result<(), String> {
    use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};
    let action = SigAction::new(
        SigHandler::Handler(on_alarm),
        SaFlags::empty(),
        SigSet::empty(),
    );
    // SAFETY: the handler does nothing, which is async-signal-safe.
    unsafe { sigaction(Signal::SIGUSR2, &action) }
        .map(drop)
        .map_err(|e| format!("sigaction: {e}"))
}

/// One handle a peer holds, as the worker accounts it.
struct Handle {
    ident: Ident,
    refs: u32,
    /// Its node's destruction was received.
    dead: bool,
    /// Set up by the parent: one reference is never released.
    pinned: bool,
}

/// One peer a worker drives and what it knows about it.
struct PeerState {
    peer: Option<Peer>,
    inst: u64,
    blocking: bool,
    volatile: bool,
    home: Option<u64>,
    /// Live owned nodes.
    owned: Vec<u64>,
    /// Every node id this peer instance ever owned (since its last reset).
    owned_ever: HashSet<u64>,
    handles: HashMap<u64, Handle>,
    /// Handles with references whose node is not known dead.
    live: Vec<u64>,
    by_ident: HashMap<Ident, u64>,
}

impl PeerState {
    fn new(peer: Peer, inst: u64, blocking: bool, volatile: bool) -> Self {
        Self {
            peer: Some(peer),
            inst,
            blocking,
            volatile,
            home: None,
            owned: vec![],
            owned_ever: HashSet::new(),
            handles: HashMap::new(),
            live: vec![],
            by_ident: HashMap::new(),
        }
    }

    fn fd(&self) -> RawFd {
        self.peer.as_ref().map_or(-1, |p| p.as_raw_fd())
    }

    fn add_owned(&mut self, id: u64) {
        self.owned.push(id);
        self.owned_ever.insert(id);
    }

    /// The node `id` names here, if known.
    fn ident_of(&self, id: u64) -> Option<Ident> {
        if self.owned_ever.contains(&id) {
            Some((self.inst, id))
        } else {
            self.handles.get(&id).map(|h| h.ident)
        }
    }

    /// Ids this peer can send to or carry: live owned nodes and handles.
    fn targets(&self) -> Vec<u64> {
        self.owned.iter().chain(&self.live).copied().collect()
    }

    fn drop_live(&mut self, id: u64) {
        if let Some(i) = self.live.iter().position(|&x| x == id) {
            self.live.swap_remove(i);
        }
    }

    /// Forgets everything but the instance (after a reset).
    fn clear(&mut self) {
        self.home = None;
        self.owned.clear();
        self.owned_ever.clear();
        self.handles.clear();
        self.live.clear();
        self.by_ident.clear();
    }
}

/// Buffers of a receive.
struct RecvArea {
    buf: Vec<u8>,
    handles: Vec<u64>,
    fds: Vec<RawFd>,
}

/// A `bus1_message` followed by a field the kernel does not know.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct MessageTail {
    msg: Bus1Message,
    tail: u64,
}

/// A `bus1_recv` followed by a field the kernel does not know.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct RecvTail {
    args: Bus1Recv,
    tail: u64,
}

/// How a receive ended.
enum Got {
    Entry,
    Empty,
    Interrupted,
    Failed,
}

/// What a worker gives back.
struct Outcome {
    g: usize,
    ops: u64,
    journal: Vec<u64>,
    coverage: Coverage,
    stats: BTreeMap<&'static str, u64>,
    violations: Vec<String>,
    n_violations: u64,
    surprises: Vec<String>,
}

/// What the parent hands a worker.
struct WorkerSetup {
    g: usize,
    uid: u32,
    ops: u64,
    rng: Rng,
    peers: Vec<PeerState>,
}

struct Worker {
    g: usize,
    uid: u32,
    pid: u32,
    tid: u32,
    rng: Rng,
    peers: Vec<PeerState>,
    seq: u64,
    incarnation: u64,
    /// The last data event this thread received.
    last_event: u64,
    journal: Vec<u64>,
    coverage: Coverage,
    stats: BTreeMap<&'static str, u64>,
    violations: Vec<String>,
    n_violations: u64,
    surprises: Vec<String>,
    timer: Option<Timer>,
    pipe: [OwnedFd; 2],
    unix: [OwnedFd; 2],
    pages: Pages,
    area: RecvArea,
}

impl Worker {
    fn new(setup: WorkerSetup, pages: Pages) -> Self {
        // Failing here ends the process (the panic hook), which the parent
        // reports.
        let pipe = nix::unistd::pipe().expect("pipe");
        let unix = nix::sys::socket::socketpair(
            nix::sys::socket::AddressFamily::Unix,
            nix::sys::socket::SockType::Stream,
            None,
            nix::sys::socket::SockFlag::SOCK_CLOEXEC,
        )
        .expect("socketpair");
        Self {
            g: setup.g,
            uid: setup.uid,
            pid: std::process::id(),
            tid: gettid(),
            rng: setup.rng,
            peers: setup.peers,
            seq: 0,
            incarnation: 0,
            last_event: 0,
            journal: vec![],
            coverage: Coverage::default(),
            stats: BTreeMap::new(),
            violations: vec![],
            n_violations: 0,
            surprises: vec![],
            timer: None,
            pipe: [pipe.0, pipe.1],
            unix: [unix.0, unix.1],
            pages,
            area: RecvArea {
                buf: vec![0; 4096],
                handles: vec![0; 64],
                fds: vec![-1; 16],
            },
        }
    }

    fn stat(&mut self, name: &'static str) {
        *self.stats.entry(name).or_default() += 1;
    }

    fn violation(&mut self, what: String) {
        self.n_violations += 1;
        if self.violations.len() < MAX_REPORTED {
            self.violations.push(format!("thread {}: {what}", self.g));
        }
    }

    /// An invalid call succeeded: recorded, not judged.
    fn surprise(&mut self, what: String) {
        self.stat("surprises");
        if self.surprises.len() < 10 {
            self.surprises.push(format!("thread {}: {what}", self.g));
        }
    }

    fn new_event(&mut self) -> u64 {
        self.seq += 1;
        ((self.g as u64 + 1) << 40) | self.seq
    }

    fn peer(&self, pi: usize) -> &Peer {
        self.peers[pi].peer.as_ref().expect("open peer")
    }

    fn open_peers(&self) -> Vec<usize> {
        (0..self.peers.len())
            .filter(|&i| self.peers[i].peer.is_some())
            .collect()
    }

    fn pick_peer(&mut self) -> usize {
        let open = self.open_peers();
        *self.rng.pick(&open)
    }

    /// Up to `n` distinct elements of `from`.
    fn choose(&mut self, from: &[u64], n: usize) -> Vec<u64> {
        let mut pool = from.to_vec();
        let n = n.min(pool.len());
        for i in 0..n {
            let j = i + self.rng.index(pool.len() - i);
            pool.swap(i, j);
        }
        pool.truncate(n);
        pool
    }

    fn payload(&mut self, event: u64, carried: &[Ident], n_fds: usize) -> Vec<u8> {
        let mut words = vec![
            MAGIC,
            event,
            self.last_event,
            carried.len() as u64,
            n_fds as u64,
            u64::from(self.uid),
            (u64::from(self.pid) << 32) | u64::from(self.tid),
        ];
        for &(inst, node) in carried {
            words.extend([inst, node]);
        }
        let mut bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
        let pad = self.rng.index(160);
        bytes.resize(bytes.len() + pad, 0xa5);
        bytes
    }

    /// Random cut points: the payload in up to three vectors.
    fn split<'a>(&mut self, payload: &'a [u8]) -> Vec<&'a [u8]> {
        let mut parts = vec![];
        let mut rest = payload;
        for _ in 0..self.rng.index(3) {
            let cut = self.rng.index(rest.len() + 1);
            parts.push(&rest[..cut]);
            rest = &rest[cut..];
        }
        parts.push(rest);
        parts
    }

    fn journal_send(&mut self, event: u64, certain: &[Ident], uncertain: &[Ident]) {
        self.journal
            .extend([J_SEND, event, certain.len() as u64, uncertain.len() as u64]);
        for &(i, n) in certain.iter().chain(uncertain) {
            self.journal.extend([i, n]);
        }
    }

    fn journal_destroy(&mut self, txn: u64, idents: &[Ident]) {
        self.journal.extend([J_DESTROY, txn, idents.len() as u64]);
        for &(i, n) in idents {
            self.journal.extend([i, n]);
        }
    }

    // ---- operations ----

    fn op(&mut self) {
        match self.rng.below(1000) {
            0..=239 => self.op_send(false),
            240..=359 => self.op_send(true),
            360..=689 => self.op_recv(),
            690..=724 => self.op_create(),
            725..=759 => self.op_transfer(),
            760..=794 => self.op_release(),
            795..=829 => self.op_destroy(),
            830..=834 => self.op_reset(),
            835..=839 => self.op_reopen(),
            840..=846 => self.op_refused_fd(),
            847..=849 => self.op_flood(),
            850..=904 => self.op_invalid(),
            _ => self.op_recv(),
        }
    }

    fn op_send(&mut self, multi: bool) {
        let pi = self.pick_peer();
        let n = if multi { 2 + self.rng.index(5) } else { 1 };
        let flags = if self.rng.chance(if multi { 50 } else { 10 }) {
            BUS1_SEND_CONTINUE
        } else {
            0
        };
        self.send_from(pi, n, flags, None);
    }

    /// A valid send from peer `pi` to `n` of its targets; `carry` forces a
    /// carried handle.
    fn send_from(&mut self, pi: usize, n: usize, flags: u32, carry: Option<u64>) {
        let targets = self.peers[pi].targets();
        let dsts = self.choose(&targets, n);
        if dsts.is_empty() {
            return;
        }
        let mut handles = match carry {
            Some(id) => vec![id],
            None if self.rng.chance(20) => {
                let k = 1 + self.rng.index(3);
                self.choose(&targets, k)
            }
            None => vec![],
        };
        handles.dedup();
        let fds: Vec<RawFd> = if self.rng.chance(8) {
            if self.rng.chance(50) {
                vec![self.pipe[0].as_raw_fd()]
            } else {
                vec![self.pipe[0].as_raw_fd(), self.pipe[1].as_raw_fd()]
            }
        } else {
            vec![]
        };
        let ps = &self.peers[pi];
        let carried: Vec<Ident> = handles.iter().filter_map(|&h| ps.ident_of(h)).collect();
        let idents: Vec<Option<Ident>> = dsts.iter().map(|&d| ps.ident_of(d)).collect();
        if carried.len() != handles.len() {
            return;
        }
        let event = self.new_event();
        let payload = self.payload(event, &carried, fds.len());
        let parts = self.split(&payload);
        let with_errors = self.rng.chance(if flags & BUS1_SEND_CONTINUE != 0 {
            90
        } else {
            50
        });
        let mut errors = vec![-1i32; dsts.len()];
        let peer = self.peer(pi);
        let res = peer.multicast_with_fds(
            &dsts,
            &parts,
            &handles,
            &fds,
            flags,
            with_errors.then_some(&mut errors[..]),
        );
        self.coverage.record(SEND, &res);
        self.stat("sends");
        if dsts.len() > 1 {
            self.stat("multicasts");
        }
        if !handles.is_empty() {
            self.stat("sends with handles");
        }
        if !fds.is_empty() {
            self.stat("sends with fds");
        }
        let errors = with_errors.then_some(&errors[..]);
        self.account_send(event, flags, &dsts, &idents, res, errors);
    }

    /// Checks a send's result against its errors array and journals what
    /// was delivered.
    fn account_send(
        &mut self,
        event: u64,
        flags: u32,
        dsts: &[u64],
        idents: &[Option<Ident>],
        res: Result<usize, Errno>,
        errors: Option<&[i32]>,
    ) {
        let refusals = [Errno::ENXIO, Errno::EHOSTUNREACH, Errno::EDQUOT].map(errno_i32);
        let partial = flags & BUS1_SEND_CONTINUE != 0;
        let what = || {
            format!(
                "send {} to {dsts:?} (flags {flags:#x}) returned {res:?}, errors {errors:?}",
                event_name(event)
            )
        };
        match res {
            Ok(n) => {
                let mut certain = vec![];
                let mut uncertain = vec![];
                if let Some(errors) = errors {
                    let zeros = errors.iter().filter(|&&e| e == 0).count();
                    let bad = errors.iter().any(|&e| e != 0 && !refusals.contains(&e));
                    if zeros != n || bad || (!partial && n != dsts.len()) {
                        self.violation(format!("inconsistent result: {}", what()));
                    }
                    for (i, &e) in errors.iter().enumerate() {
                        if e == 0 {
                            certain.extend(idents[i]);
                        }
                    }
                } else if !partial || n == dsts.len() {
                    if n != dsts.len() {
                        self.violation(format!("inconsistent result: {}", what()));
                    }
                    certain.extend(idents.iter().flatten());
                } else {
                    uncertain.extend(idents.iter().flatten());
                }
                *self.stats.entry("deliveries").or_default() += n as u64;
                self.journal_send(event, &certain, &uncertain);
            }
            Err(e) => {
                if e == Errno::EDQUOT {
                    self.stat("EDQUOT");
                }
                if let Some(errors) = errors {
                    let refused = refusals.contains(&errno_i32(e));
                    if refused
                        && (errors.contains(&0) || (!partial && !errors.contains(&errno_i32(e))))
                    {
                        self.violation(format!("inconsistent result: {}", what()));
                    }
                }
                self.journal.extend([J_FAILED, event, e as u64]);
            }
        }
    }

    /// Whether `poll()` reports the peer readable now.
    fn readable(&mut self, pi: usize) -> bool {
        let mut pfd = libc::pollfd {
            fd: self.peers[pi].fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        loop {
            // SAFETY: `pfd` is valid for one entry.
            let r = unsafe { libc::poll(&mut pfd, 1, 0) };
            if r >= 0 {
                return r > 0 && pfd.revents & libc::POLLIN != 0;
            }
            if Errno::last() != Errno::EINTR {
                return false;
            }
        }
    }

    fn op_recv(&mut self) {
        let pi = self.pick_peer();
        let n = 1 + self.rng.index(6);
        for i in 0..n {
            if self.peers[pi].blocking {
                // Block now and then (the timer ends the wait), else
                // receive only what is there.
                let block = i == 0 && self.timer.is_some() && self.rng.chance(30);
                if !block && !self.readable(pi) {
                    break;
                }
            }
            let small = self.rng.chance(4);
            match self.recv_once(pi, small) {
                Got::Entry => {}
                _ => break,
            }
        }
    }

    /// The receive system call on peer `pi`, with the timer armed if the
    /// peer blocks.
    fn recv_call(&mut self, pi: usize, args: usize, size: usize, flags: u32) -> Result<(), Errno> {
        let fd = self.peers[pi].fd();
        let armed = self.peers[pi].blocking;
        if armed {
            let first = 200 + self.rng.below(1800);
            // Never block without the timer.
            if self.timer.is_none() && !self.readable(pi) {
                return Err(Errno::EAGAIN);
            }
            if let Some(t) = &self.timer {
                t.arm(first, 1000);
            }
        }
        // SAFETY: `args` points to a structure of `size` bytes whose
        // pointers are valid or deliberately invalid (see `raw()`).
        let res = unsafe {
            raw(
                nr::BUS1_RECV,
                [fd as usize, args, size, flags as usize, 0, 0],
            )
        };
        if armed && let Some(t) = &self.timer {
            t.disarm();
        }
        self.coverage.record(RECV, &res);
        match res {
            Ok(_) => Ok(()),
            Err(e) => {
                match e {
                    Errno::EINTR => self.stat("EINTR"),
                    Errno::EAGAIN => self.stat("EAGAIN"),
                    Errno::EMSGSIZE => self.stat("EMSGSIZE"),
                    _ => {}
                }
                Err(e)
            }
        }
    }

    /// One valid receive (with small buffers if `small`).
    fn recv_once(&mut self, pi: usize, small: bool) -> Got {
        let mut area = std::mem::replace(
            &mut self.area,
            RecvArea {
                buf: vec![],
                handles: vec![],
                fds: vec![],
            },
        );
        let (n_buf, n_handles, n_fds) = if small {
            match self.rng.below(3) {
                0 => (8, area.handles.len(), area.fds.len()),
                1 => (area.buf.len(), 0, area.fds.len()),
                _ => (area.buf.len(), area.handles.len(), 0),
            }
        } else {
            (area.buf.len(), area.handles.len(), area.fds.len())
        };
        let vec = Bus1Vec {
            base: area.buf.as_mut_ptr() as u64,
            len: n_buf as u64,
        };
        let mut args = Bus1Recv {
            vecs: &vec as *const Bus1Vec as u64,
            n_vecs: 1,
            handles: area.handles.as_mut_ptr() as u64,
            n_handles: n_handles as u64,
            fds: area.fds.as_mut_ptr() as u64,
            n_fds: n_fds as u64,
            ..Default::default()
        };
        let res = self.recv_call(
            pi,
            &mut args as *mut Bus1Recv as usize,
            std::mem::size_of::<Bus1Recv>(),
            0,
        );
        let got = match res {
            Ok(()) => {
                self.received(
                    pi,
                    &args,
                    Some(&area.buf[..n_buf]),
                    &area.handles,
                    &area.fds,
                    true,
                );
                Got::Entry
            }
            Err(Errno::EAGAIN) => Got::Empty,
            Err(Errno::EINTR) => Got::Interrupted,
            Err(Errno::EMSGSIZE) if small => Got::Failed,
            Err(e) => {
                self.violation(format!(
                    "receive on {} failed: {e}",
                    inst_name(self.peers[pi].inst)
                ));
                Got::Failed
            }
        };
        self.area = area;
        got
    }

    /// Takes in what a receive on `pi` reported: `buf` is the payload area
    /// (`None`: not readable), `handles` and `fds` the arrays passed (empty:
    /// not usable), `creds` whether the structure had room for them.
    fn received(
        &mut self,
        pi: usize,
        args: &Bus1Recv,
        buf: Option<&[u8]>,
        handles: &[u64],
        fds: &[RawFd],
        creds: bool,
    ) {
        self.stat("receives");
        let inst = self.peers[pi].inst;
        let here = inst_name(inst);
        let n_fds = if creds { args.n_fds as usize } else { 0 };
        if n_fds > fds.len() {
            self.violation(format!(
                "{here}: {n_fds} descriptors into an array of {}",
                fds.len()
            ));
        }
        for &fd in &fds[..n_fds.min(fds.len())] {
            self.check_received_fd(fd, &here);
        }
        let id = args.id;
        match args.r#type {
            BUS1_MSG_DATA => {
                self.stat("data received");
                let n = args.n_bytes as usize;
                let Some(payload) = buf.filter(|b| n <= b.len()).map(|b| &b[..n]) else {
                    self.violation(format!(
                        "{here}: a receive succeeded with {n} payload bytes it could not write"
                    ));
                    return;
                };
                let Some(msg) = Parsed::parse(payload) else {
                    self.violation(format!("{here}: unknown payload {payload:02x?}"));
                    return;
                };
                if !self.peers[pi].owned_ever.contains(&id) {
                    self.violation(format!(
                        "{here}: {} arrived on id {id}, not a node of this peer",
                        event_name(msg.event)
                    ));
                }
                if args.n_handles as usize != msg.carried.len() || n_fds != msg.n_fds && creds {
                    self.violation(format!(
                        "{here}: {} carried {} handles and {} fds, received {} and {n_fds}",
                        event_name(msg.event),
                        msg.carried.len(),
                        msg.n_fds,
                        args.n_handles
                    ));
                }
                if creds
                    && (args.uid != msg.uid
                        || args.gid != msg.uid
                        || args.pid as u32 != msg.pid
                        || args.tid as u32 != msg.tid)
                {
                    self.violation(format!(
                        "{here}: {} from uid {} pid {} tid {} arrived with uid {} gid {} pid {} tid {}",
                        event_name(msg.event),
                        msg.uid,
                        msg.pid,
                        msg.tid,
                        args.uid,
                        args.gid,
                        args.pid,
                        args.tid
                    ));
                }
                let n_handles = (args.n_handles as usize).min(msg.carried.len());
                if n_handles > handles.len() {
                    self.violation(format!(
                        "{here}: {n_handles} handles into an array of {}",
                        handles.len()
                    ));
                } else {
                    for (k, &h) in handles[..n_handles].iter().enumerate() {
                        if h != BUS1_ID_INVALID {
                            self.acquired(pi, msg.carried[k], h, "received");
                        }
                    }
                }
                self.journal
                    .extend([J_RECV, inst, BUS1_MSG_DATA, id, args.flags, msg.event, 0]);
                self.last_event = msg.event;
            }
            BUS1_MSG_NODE_DESTROY => {
                self.stat("destructions received");
                let ps = &mut self.peers[pi];
                let ident = if ps.owned_ever.contains(&id) {
                    if ps.owned.contains(&id) {
                        let text = format!("{here}: own node {id} destroyed by nobody");
                        self.violation(text);
                    }
                    Some((inst, id))
                } else if let Some(h) = ps.handles.get_mut(&id) {
                    h.dead = true;
                    let (ident, refs) = (h.ident, h.refs);
                    ps.drop_live(id);
                    // A holder still releases its dead handle.
                    for _ in 0..refs {
                        self.release_one(pi, id);
                    }
                    Some(ident)
                } else {
                    None
                };
                let Some((a, b)) = ident else {
                    self.violation(format!("{here}: destruction on unknown id {id}"));
                    return;
                };
                self.journal
                    .extend([J_RECV, inst, BUS1_MSG_NODE_DESTROY, id, args.flags, a, b]);
            }
            BUS1_MSG_NODE_RELEASE => {
                self.stat("releases received");
                if !self.peers[pi].owned_ever.contains(&id) {
                    self.violation(format!(
                        "{here}: release notification on id {id}, not owned"
                    ));
                }
                self.journal
                    .extend([J_RECV, inst, BUS1_MSG_NODE_RELEASE, id, args.flags, 0, 0]);
            }
            kind => self.violation(format!("{here}: entry of unknown type {kind}")),
        }
    }

    /// A received descriptor: a pipe end with close-on-exec; closed.
    fn check_received_fd(&mut self, fd: RawFd, here: &str) {
        // SAFETY: all-zero is a valid stat buffer.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: `st` is valid; fstat on any number is harmless.
        let is_fifo =
            unsafe { libc::fstat(fd, &mut st) } == 0 && st.st_mode & libc::S_IFMT == libc::S_IFIFO;
        // SAFETY: F_GETFD takes no pointer.
        let cloexec = unsafe { libc::fcntl(fd, libc::F_GETFD) };
        if !is_fifo || cloexec < 0 || cloexec & libc::FD_CLOEXEC == 0 {
            self.violation(format!(
                "{here}: received descriptor {fd} is not a close-on-exec pipe end"
            ));
        }
        if is_fifo {
            // SAFETY: the receive installed the descriptor for us.
            drop(unsafe { OwnedFd::from_raw_fd(fd) });
        }
    }

    /// Peer `pi` got id `id` for node `ident` (by a receive or transfer).
    fn acquired(&mut self, pi: usize, ident: Ident, id: u64, how: &str) {
        let here = inst_name(self.peers[pi].inst);
        if ident.0 == self.peers[pi].inst {
            if id != ident.1 {
                self.violation(format!("{here}: {how} own node {} as id {id}", ident.1));
            }
            return;
        }
        if let Some(&old) = self.peers[pi].by_ident.get(&ident) {
            let refs = self.peers[pi].handles.get(&old).map_or(0, |h| h.refs);
            if old != id && refs > 0 {
                self.violation(format!(
                    "{here}: {how} id {id} for a node it holds as {old} ({refs} refs)"
                ));
            }
        }
        let ps = &mut self.peers[pi];
        let h = ps.handles.entry(id).or_insert(Handle {
            ident,
            refs: 0,
            dead: false,
            pinned: false,
        });
        let (old_ident, dead) = (h.ident, h.dead);
        h.refs += 1;
        let refs = h.refs;
        ps.by_ident.insert(ident, id);
        if refs == 1 && !dead {
            ps.live.push(id);
        }
        if old_ident != ident {
            self.violation(format!(
                "{here}: {how} id {id} for node {ident:?}, but it names {old_ident:?}"
            ));
        }
        if dead {
            self.violation(format!(
                "{here}: {how} id {id} for node {ident:?} after its destruction arrived"
            ));
        }
    }

    /// Releases one reference the worker knows `pi` holds on `id`.
    fn release_one(&mut self, pi: usize, id: u64) {
        let res = self.peer(pi).release(id);
        self.coverage.record(RELEASE, &res);
        let ps = &mut self.peers[pi];
        let Some(h) = ps.handles.get_mut(&id) else {
            return;
        };
        match res {
            Ok(()) => {
                h.refs -= 1;
                if h.refs == 0 {
                    ps.drop_live(id);
                }
            }
            Err(e) => {
                let refs = h.refs;
                let here = inst_name(ps.inst);
                self.violation(format!(
                    "{here}: release of handle {id} with {refs} references failed: {e}"
                ));
            }
        }
    }

    fn op_create(&mut self) {
        let pi = self.pick_peer();
        if self.peers[pi].owned.len() >= MAX_OWNED && !self.rng.chance(10) {
            return;
        }
        let res = self.peer(pi).create_node();
        self.coverage.record(NODE_CREATE, &res);
        match res {
            Ok(id) => {
                self.stat("nodes created");
                self.peers[pi].add_owned(id);
            }
            Err(Errno::EDQUOT) => self.stat("EDQUOT"),
            Err(e) => self.violation(format!("node creation failed: {e}")),
        }
    }

    /// Gives peer `qi` (itself if `qi == pi`) a reference to what `id`
    /// names in `pi`.
    fn transfer(&mut self, pi: usize, id: u64, qi: usize) -> Result<u64, Errno> {
        let src = self.peer(pi);
        let dst = (qi != pi).then(|| self.peer(qi));
        let res = src.transfer(id, dst);
        self.coverage.record(TRANSFER, &res);
        match res {
            Ok(new) => {
                self.stat("transfers");
                if let Some(ident) = self.peers[pi].ident_of(id) {
                    self.acquired(qi, ident, new, "transferred");
                }
            }
            Err(Errno::EDQUOT) => self.stat("EDQUOT"),
            Err(_) => {}
        }
        res
    }

    fn op_transfer(&mut self) {
        let pi = self.pick_peer();
        let targets = self.peers[pi].targets();
        if targets.is_empty() {
            return;
        }
        let id = *self.rng.pick(&targets);
        let qi = self.pick_peer();
        let _ = self.transfer(pi, id, qi);
    }

    fn op_release(&mut self) {
        let pi = self.pick_peer();
        let ps = &self.peers[pi];
        let extra: Vec<u64> = ps
            .live
            .iter()
            .copied()
            .filter(|id| ps.handles[id].refs > u32::from(ps.handles[id].pinned))
            .collect();
        if extra.is_empty() {
            return;
        }
        let id = *self.rng.pick(&extra);
        self.release_one(pi, id);
        self.stat("releases");
    }

    fn op_destroy(&mut self) {
        let pi = self.pick_peer();
        let ps = &self.peers[pi];
        // Stable peers keep their home node; volatile ones may lose it.
        let candidates: Vec<u64> = ps
            .owned
            .iter()
            .copied()
            .filter(|&id| ps.volatile || Some(id) != ps.home)
            .collect();
        let n = 1 + self.rng.index(3);
        let ids = self.choose(&candidates, n);
        if ids.is_empty() {
            return;
        }
        let res = self.peer(pi).destroy(&ids);
        self.coverage.record(DESTROY, &res);
        match res {
            Ok(()) => self.destroyed(pi, &ids),
            Err(e) => self.violation(format!("destruction of own nodes {ids:?} failed: {e}")),
        }
    }

    /// Nodes `ids` of `pi` were destroyed in one transaction.
    fn destroyed(&mut self, pi: usize, ids: &[u64]) {
        self.stat("destructions");
        let txn = self.new_event();
        let inst = self.peers[pi].inst;
        let idents: Vec<Ident> = ids.iter().map(|&id| (inst, id)).collect();
        self.journal_destroy(txn, &idents);
        let ps = &mut self.peers[pi];
        ps.owned.retain(|id| !ids.contains(id));
        if ps.home.is_some_and(|h| ids.contains(&h)) {
            ps.home = None;
        }
    }

    /// The volatile peer's nodes, as they are destroyed by a reset or
    /// close: one transaction.
    fn journal_teardown(&mut self, vi: usize, tag: u64) {
        let inst = self.peers[vi].inst;
        self.journal.extend([tag, inst]);
        let idents: Vec<Ident> = self.peers[vi].owned.iter().map(|&id| (inst, id)).collect();
        if !idents.is_empty() {
            let txn = self.new_event();
            self.journal_destroy(txn, &idents);
        }
    }

    /// Node and handle quotas: nodes created on the other peers and handed
    /// to one until a limit refuses, then destroyed, one transaction per
    /// owner.
    fn op_flood(&mut self) {
        self.stat("floods");
        let open = self.open_peers();
        let qi = *self.rng.pick(&open);
        let mut sources: Vec<usize> = open.iter().copied().filter(|&i| i != qi).collect();
        if sources.is_empty() {
            sources.push(qi);
        }
        let mut made: Vec<Vec<u64>> = vec![vec![]; sources.len()];
        let mut full = vec![false; sources.len()];
        let mut handle_refused = false;
        for step in 0..64 {
            let k = step % sources.len();
            if full.iter().all(|&f| f) || (handle_refused && self.rng.chance(20)) {
                break;
            }
            if full[k] {
                continue;
            }
            let si = sources[k];
            let res = self.peer(si).create_node();
            self.coverage.record(NODE_CREATE, &res);
            match res {
                Ok(id) => {
                    self.peers[si].add_owned(id);
                    made[k].push(id);
                    if si != qi && !handle_refused {
                        handle_refused = self.transfer(si, id, qi) == Err(Errno::EDQUOT);
                    }
                }
                Err(e) => {
                    if e == Errno::EDQUOT {
                        self.stat("EDQUOT");
                    }
                    full[k] = true;
                }
            }
        }
        for (k, ids) in made.iter().enumerate() {
            if ids.is_empty() {
                continue;
            }
            let si = sources[k];
            let res = self.peer(si).destroy(ids);
            self.coverage.record(DESTROY, &res);
            match res {
                Ok(()) => self.destroyed(si, ids),
                Err(e) => self.violation(format!("destruction of own nodes {ids:?} failed: {e}")),
            }
        }
    }

    fn op_reset(&mut self) {
        let vi = 2;
        if self.peers[vi].peer.is_none() {
            return;
        }
        let res = self.peer(vi).reset();
        self.coverage.record(RESET, &res);
        match res {
            Ok(()) => self.after_reset(vi),
            Err(e) => self.violation(format!("reset failed: {e}")),
        }
    }

    fn after_reset(&mut self, vi: usize) {
        self.stat("resets");
        self.journal_teardown(vi, J_RESET);
        self.peers[vi].clear();
        self.bootstrap(vi);
    }

    fn op_reopen(&mut self) {
        let vi = 2;
        if self.peers[vi].peer.is_some() {
            self.journal_teardown(vi, J_CLOSE);
            self.peers[vi].peer = None;
        }
        let blocking = self.rng.chance(50);
        let flags = if blocking { 0 } else { BUS1_OPEN_NONBLOCK }
            | if self.rng.chance(50) {
                BUS1_OPEN_CLOEXEC
            } else {
                0
            };
        let res = Peer::open(flags);
        self.coverage.record(OPEN, &res);
        match res {
            Ok(peer) => {
                self.stat("reopens");
                self.incarnation += 1;
                let inst = inst_of(self.g, STABLE + self.incarnation);
                self.peers[vi] = PeerState::new(peer, inst, blocking, true);
                self.bootstrap(vi);
            }
            Err(e) => self.violation(format!("bus1_open failed: {e}")),
        }
    }

    /// Connects a new or reset volatile peer: a home node that the stable
    /// peers get handles to (and announce), and handles of the first
    /// stable peer.
    fn bootstrap(&mut self, vi: usize) {
        let res = self.peer(vi).create_node();
        self.coverage.record(NODE_CREATE, &res);
        let Ok(home) = res else {
            return;
        };
        self.peers[vi].add_owned(home);
        self.peers[vi].home = Some(home);
        for si in 0..2 {
            let _ = self.transfer(vi, home, si);
        }
        let targets = self.peers[0].targets();
        for id in self.choose(&targets, 4) {
            let _ = self.transfer(0, id, vi);
        }
        if let Some(&h) = self.peers[0].by_ident.get(&(self.peers[vi].inst, home)) {
            self.send_from(0, 1, 0, Some(h));
        }
    }

    fn op_refused_fd(&mut self) {
        let pi = self.pick_peer();
        let targets = self.peers[pi].targets();
        let n = 1 + self.rng.index(2);
        let dsts = self.choose(&targets, n);
        if dsts.is_empty() {
            return;
        }
        let fd = if self.rng.chance(50) {
            let qi = self.pick_peer();
            self.peers[qi].fd()
        } else {
            self.unix[self.rng.index(2)].as_raw_fd()
        };
        let event = self.new_event();
        let payload = self.payload(event, &[], 1);
        let idents: Vec<Option<Ident>> = dsts.iter().map(|&d| self.peers[pi].ident_of(d)).collect();
        let peer = self.peer(pi);
        let res = peer.multicast_with_fds(&dsts, &[&payload], &[], &[fd], 0, None);
        self.coverage.record(SEND, &res);
        self.stat("refused fds");
        if res != Err(Errno::EOPNOTSUPP) {
            self.violation(format!(
                "sending a bus1 peer or AF_UNIX socket returned {res:?}, not EOPNOTSUPP"
            ));
        }
        self.account_send(event, 0, &dsts, &idents, res, None);
    }

    // ---- invalid calls ----

    fn bad_fd(&mut self) -> usize {
        *self.rng.pick(&[
            self.pipe[0].as_raw_fd() as usize,
            1_000_000,
            -7isize as usize,
        ])
    }

    fn op_invalid(&mut self) {
        self.stat("invalid calls");
        match self.rng.below(9) {
            8 => self.invalid_reset(),
            0 => self.invalid_open(),
            1 => self.invalid_create(),
            2 => self.invalid_transfer(),
            3 => self.invalid_release(),
            4 => self.invalid_destroy(),
            5 | 6 => self.invalid_send(),
            _ => self.invalid_recv(),
        }
    }

    fn invalid_open(&mut self) {
        let flags = 1u32 << (2 + self.rng.index(30));
        let res = sys::bus1_open(flags);
        self.coverage.record(OPEN, &res);
        if let Ok(fd) = res {
            self.surprise(format!("bus1_open({flags:#x}) succeeded"));
            // SAFETY: the call returned a new descriptor.
            drop(unsafe { OwnedFd::from_raw_fd(fd) });
        }
    }

    fn invalid_reset(&mut self) {
        // Unknown flags only on the volatile peer: a stable one must keep
        // its queue even if the call wrongly succeeds.
        let vi = 2;
        let (fd, flags) = if self.peers[vi].peer.is_some() && self.rng.chance(50) {
            (self.peers[vi].fd() as usize, 1usize << self.rng.index(32))
        } else {
            (self.bad_fd(), 0)
        };
        // SAFETY: no pointers.
        let res = unsafe { raw(nr::BUS1_PEER_RESET, [fd, flags, 0, 0, 0, 0]) };
        self.coverage.record(RESET, &res);
        if res.is_ok() {
            self.surprise(format!("bus1_peer_reset({fd}, {flags:#x}) succeeded"));
            if fd == self.peers[vi].fd() as usize {
                self.after_reset(vi);
            }
        }
    }

    fn invalid_create(&mut self) {
        let pi = self.pick_peer();
        let mut id = 0u64;
        let (fd, ptr, flags, what) = match self.rng.below(3) {
            0 => (
                self.peers[pi].fd() as usize,
                &mut id as *mut u64 as usize,
                1 << self.rng.index(32),
                "flags",
            ),
            1 => (
                self.peers[pi].fd() as usize,
                self.pages.unwritable(&mut self.rng),
                0,
                "pointer",
            ),
            _ => (self.bad_fd(), &mut id as *mut u64 as usize, 0, "fd"),
        };
        // SAFETY: `ptr` is `id` or deliberately unwritable.
        let res = unsafe { raw(nr::BUS1_NODE_CREATE, [fd, ptr, flags, 0, 0, 0]) };
        self.coverage.record(NODE_CREATE, &res);
        if res.is_ok() {
            self.surprise(format!("bus1_node_create with bad {what} succeeded"));
            if ptr == &mut id as *mut u64 as usize && fd == self.peers[pi].fd() as usize {
                self.peers[pi].add_owned(id);
            }
        }
    }

    fn invalid_transfer(&mut self) {
        let pi = self.pick_peer();
        let qi = self.pick_peer();
        let targets = self.peers[pi].targets();
        let mut src_id = if targets.is_empty() {
            BAD_ID
        } else {
            *self.rng.pick(&targets)
        };
        let mut dst_id = 0u64;
        let mut src = self.peers[pi].fd() as usize;
        let mut dst = self.peers[qi].fd() as usize;
        let mut src_ptr = &mut src_id as *mut u64 as usize;
        let mut dst_ptr = &mut dst_id as *mut u64 as usize;
        let mut flags = 0;
        let what = match self.rng.below(6) {
            0 => {
                flags = 1 << self.rng.index(32);
                "flags"
            }
            1 => {
                src_id = BAD_ID + self.rng.below(1000);
                "source id"
            }
            2 => {
                dst = self.bad_fd();
                "destination fd"
            }
            3 => {
                src = self.bad_fd();
                "source fd"
            }
            4 => {
                src_ptr = self.pages.unreadable(&mut self.rng);
                "source pointer"
            }
            _ => {
                dst_ptr = self.pages.unwritable(&mut self.rng);
                "destination pointer"
            }
        };
        // SAFETY: the pointers are the locals or deliberately invalid.
        let res = unsafe {
            raw(
                nr::BUS1_HANDLE_TRANSFER,
                [src, src_ptr, dst, dst_ptr, flags, 0],
            )
        };
        self.coverage.record(TRANSFER, &res);
        if res.is_ok() {
            self.surprise(format!("bus1_handle_transfer with bad {what} succeeded"));
            if what == "flags"
                && let Some(ident) = self.peers[pi].ident_of(src_id)
            {
                self.acquired(qi, ident, dst_id, "transferred");
            }
        }
    }

    fn invalid_release(&mut self) {
        let pi = self.pick_peer();
        let ps = &self.peers[pi];
        let owned = ps.owned.first().copied();
        let extra: Vec<u64> = ps
            .live
            .iter()
            .copied()
            .filter(|id| ps.handles[id].refs > u32::from(ps.handles[id].pinned))
            .collect();
        let mut id = BAD_ID + self.rng.below(1000);
        let mut fd = self.peers[pi].fd() as usize;
        let mut ptr = &id as *const u64 as usize;
        let mut flags = 0;
        let what = match self.rng.below(5) {
            0 => "unknown id",
            1 => match owned {
                Some(o) => {
                    id = o;
                    "owned node"
                }
                None => "unknown id",
            },
            2 => match extra.first() {
                Some(&h) => {
                    id = h;
                    flags = 1 << self.rng.index(32);
                    "flags"
                }
                None => "unknown id",
            },
            3 => {
                ptr = self.pages.unreadable(&mut self.rng);
                "pointer"
            }
            _ => {
                fd = self.bad_fd();
                "fd"
            }
        };
        if what != "pointer" {
            ptr = &id as *const u64 as usize;
        }
        // SAFETY: `ptr` is `id` or deliberately unreadable.
        let res = unsafe { raw(nr::BUS1_HANDLE_RELEASE, [fd, ptr, flags, 0, 0, 0]) };
        self.coverage.record(RELEASE, &res);
        if res.is_ok() {
            self.surprise(format!("bus1_handle_release with bad {what} succeeded"));
            if what == "flags"
                && let Some(h) = self.peers[pi].handles.get_mut(&id)
            {
                h.refs -= 1;
            }
        }
    }

    fn invalid_destroy(&mut self) {
        let pi = self.pick_peer();
        let ps = &self.peers[pi];
        let extra: Vec<u64> = ps
            .owned
            .iter()
            .copied()
            .filter(|&id| Some(id) != ps.home)
            .collect();
        let a_handle = ps.live.first().copied();
        let mut ids = vec![BAD_ID + self.rng.below(1000)];
        let mut n = 1usize;
        let mut fd = self.peers[pi].fd() as usize;
        let mut flags = 0;
        let mut bad_ptr = None;
        let what = match self.rng.below(8) {
            0 => {
                n = 0;
                "count 0"
            }
            1 => {
                ids = vec![BAD_ID; 1025];
                n = 1025;
                "count 1025"
            }
            2 => match extra.first() {
                Some(&o) => {
                    ids = vec![o, o];
                    n = 2;
                    "duplicate"
                }
                None => "unknown id",
            },
            3 => match a_handle {
                Some(h) => {
                    ids = vec![h];
                    "handle id"
                }
                None => "unknown id",
            },
            4 => match extra.first() {
                Some(&o) => {
                    ids = vec![o];
                    flags = 1 << self.rng.index(32);
                    "flags"
                }
                None => "unknown id",
            },
            5 => {
                bad_ptr = Some(self.pages.unreadable(&mut self.rng));
                "pointer"
            }
            6 => {
                fd = self.bad_fd();
                "fd"
            }
            _ => "unknown id",
        };
        let ptr = bad_ptr.unwrap_or(ids.as_ptr() as usize);
        // SAFETY: `ptr` is `ids` (with `n` elements) or deliberately
        // unreadable.
        let res = unsafe { raw(nr::BUS1_NODES_DESTROY, [fd, ptr, n, flags, 0, 0]) };
        self.coverage.record(DESTROY, &res);
        if res.is_ok() {
            self.surprise(format!("bus1_nodes_destroy with bad {what} succeeded"));
            let own: Vec<u64> = ids
                .iter()
                .copied()
                .filter(|id| self.peers[pi].owned.contains(id))
                .collect::<BTreeSet<u64>>()
                .into_iter()
                .collect();
            if !own.is_empty() && fd == self.peers[pi].fd() as usize {
                self.destroyed(pi, &own);
            }
        }
    }

    fn invalid_send(&mut self) {
        let pi = self.pick_peer();
        let targets = self.peers[pi].targets();
        let k = 1 + self.rng.index(3);
        let mut dsts = self.choose(&targets, k);
        if dsts.is_empty() {
            return;
        }
        let ps = &self.peers[pi];
        let idents: Vec<Option<Ident>> = dsts.iter().map(|&d| ps.ident_of(d)).collect();
        let mut fd = ps.fd() as usize;
        let event = self.new_event();
        let payload = self.payload(event, &[], 0);
        let mut vec = Bus1Vec {
            base: payload.as_ptr() as u64,
            len: payload.len() as u64,
        };
        let mut many_vecs: Vec<Bus1Vec> = vec![];
        let bad_handles = [BAD_ID + self.rng.below(1000)];
        let bad_fds = [*self.rng.pick(&[-1, 1_000_000, -42])];
        let mut m = MessageTail::default();
        let mut size = std::mem::size_of::<Bus1Message>();
        let mut flags = 0u32;
        let mut dst_ptr = None;
        let mut msg_ptr = None;
        // A valid message, unless the variant breaks it below.
        let mut valid = false;
        let variant = self.rng.below(21);
        let what = match variant {
            0 => {
                flags = 1 << (3 + self.rng.index(29));
                "flags"
            }
            1 => {
                dsts.push(BAD_ID + self.rng.below(1000));
                "unknown destination"
            }
            2 => {
                dsts.push(dsts[0]);
                "duplicate destination"
            }
            3 => "no destination",
            4 => {
                dsts.resize(1025, BAD_ID);
                "1025 destinations"
            }
            5 => {
                dst_ptr = Some(self.pages.unreadable(&mut self.rng));
                "destination pointer"
            }
            6 => {
                msg_ptr = Some(self.pages.unreadable(&mut self.rng));
                "message pointer"
            }
            7 => {
                vec.base = self.pages.unreadable(&mut self.rng) as u64;
                "payload pointer"
            }
            8 => {
                m.msg.vecs = self.pages.unreadable(&mut self.rng) as u64;
                "vector pointer"
            }
            9 => {
                // Not NULL: that means no array.
                m.msg.errors = *self.rng.pick(&[self.pages.none, self.pages.ro]) as u64;
                "errors pointer"
            }
            10 => {
                m.msg.handles = 0;
                m.msg.n_handles = 1;
                flags |= BUS1_SEND_HANDLES;
                "handles pointer"
            }
            11 => {
                flags |= BUS1_SEND_HANDLES;
                "handles flag"
            }
            12 => {
                flags |= BUS1_SEND_FDS;
                "fds flag"
            }
            13 => {
                size = self.rng.index(BUS1_MESSAGE_SIZE_VER0);
                "short size"
            }
            14 => {
                size = std::mem::size_of::<MessageTail>();
                m.tail = 1 + self.rng.below(1000);
                "unknown tail"
            }
            15 => {
                size = std::mem::size_of::<MessageTail>();
                valid = true;
                "zero tail"
            }
            16 => {
                size = BUS1_MESSAGE_SIZE_VER0;
                valid = true;
                "version 0 size"
            }
            17 => {
                fd = self.bad_fd();
                "fd"
            }
            18 => {
                m.msg.fds = bad_fds.as_ptr() as u64;
                m.msg.n_fds = 1;
                flags |= BUS1_SEND_FDS;
                "carried fd"
            }
            19 => {
                m.msg.handles = bad_handles.as_ptr() as u64;
                m.msg.n_handles = if self.rng.chance(50) {
                    1
                } else {
                    u64::from(BUS1_HANDLES_MAX) + 1
                };
                if m.msg.n_handles > 1 {
                    m.msg.fds = bad_fds.as_ptr() as u64;
                    m.msg.n_fds = u64::from(BUS1_FDS_MAX) + 1;
                    flags |= BUS1_SEND_FDS;
                }
                flags |= BUS1_SEND_HANDLES;
                "carried handle"
            }
            _ => {
                if self.rng.chance(50) {
                    vec.len = u64::from(BUS1_PAYLOAD_MAX) + 1;
                    "payload size"
                } else {
                    many_vecs = vec![vec; 1025];
                    "1025 vectors"
                }
            }
        };
        let n = if variant == 3 { 0 } else { dsts.len() };
        let mut errors = vec![-1i32; dsts.len()];
        if variant != 8 {
            if many_vecs.is_empty() {
                m.msg.vecs = &vec as *const Bus1Vec as u64;
                m.msg.n_vecs = 1;
            } else {
                m.msg.vecs = many_vecs.as_ptr() as u64;
                m.msg.n_vecs = many_vecs.len() as u64;
            }
        } else {
            m.msg.n_vecs = 1;
        }
        if variant != 9 {
            m.msg.errors = errors.as_mut_ptr() as u64;
        }
        let dst_ptr = dst_ptr.unwrap_or(dsts.as_ptr() as usize);
        let msg_ptr = msg_ptr.unwrap_or(&m as *const MessageTail as usize);
        // SAFETY: every pointer is a live local for its length, or
        // deliberately invalid; `errors` has room for every destination.
        let res = unsafe {
            raw(
                nr::BUS1_SEND,
                [fd, dst_ptr, n, msg_ptr, size, flags as usize],
            )
        };
        self.coverage.record(SEND, &res);
        let res = res.map(|n| n as i64 as usize);
        if valid {
            self.stat("sends");
            let errs = &errors[..dsts.len()];
            self.account_send(event, flags, &dsts, &idents, res, Some(errs));
            return;
        }
        match res {
            Ok(delivered) => {
                self.surprise(format!("bus1_send with bad {what} returned {delivered}"));
                let all: Vec<Ident> = idents.iter().flatten().copied().collect();
                self.journal_send(event, &[], &all);
            }
            Err(e) => self.journal.extend([J_FAILED, event, e as u64]),
        }
    }

    fn invalid_recv(&mut self) {
        let pi = self.pick_peer();
        let mut area = std::mem::replace(
            &mut self.area,
            RecvArea {
                buf: vec![],
                handles: vec![],
                fds: vec![],
            },
        );
        let mut vec = Bus1Vec {
            base: area.buf.as_mut_ptr() as u64,
            len: area.buf.len() as u64,
        };
        let mut r = RecvTail::default();
        let mut size = std::mem::size_of::<Bus1Recv>();
        let mut flags = 0u32;
        let mut args_ptr = None;
        let (mut buf_ok, mut handles_ok, mut fds_ok, mut creds) = (true, true, true, true);
        let variant = self.rng.below(12);
        r.args.handles = area.handles.as_mut_ptr() as u64;
        r.args.n_handles = area.handles.len() as u64;
        r.args.fds = area.fds.as_mut_ptr() as u64;
        r.args.n_fds = area.fds.len() as u64;
        r.args.n_vecs = 1;
        let many = vec![vec; 1025];
        let what = match variant {
            0 => {
                flags = 1 << self.rng.index(32);
                "flags"
            }
            1 => {
                args_ptr = Some(self.pages.unwritable(&mut self.rng));
                "argument pointer"
            }
            2 => {
                size = self.rng.index(BUS1_RECV_SIZE_VER0);
                "short size"
            }
            3 => {
                size = std::mem::size_of::<RecvTail>();
                r.tail = 1 + self.rng.below(1000);
                "unknown tail"
            }
            4 => {
                size = std::mem::size_of::<RecvTail>();
                "zero tail"
            }
            5 => {
                size = BUS1_RECV_SIZE_VER0;
                creds = false;
                "version 0 size"
            }
            6 => {
                vec.base = self.pages.unwritable(&mut self.rng) as u64;
                buf_ok = false;
                "payload pointer"
            }
            7 => {
                r.args.handles = self.pages.unwritable(&mut self.rng) as u64;
                handles_ok = false;
                "handles pointer"
            }
            8 => {
                r.args.fds = self.pages.unwritable(&mut self.rng) as u64;
                fds_ok = false;
                "fds pointer"
            }
            9 => {
                buf_ok = false;
                "vector pointer"
            }
            10 => {
                r.args.vecs = many.as_ptr() as u64;
                r.args.n_vecs = many.len() as u64;
                "1025 vectors"
            }
            _ => "fd",
        };
        if variant == 9 {
            r.args.vecs = self.pages.unreadable(&mut self.rng) as u64;
        } else if variant != 10 {
            r.args.vecs = &vec as *const Bus1Vec as u64;
        }
        let ptr = args_ptr.unwrap_or(&mut r as *mut RecvTail as usize);
        let res = if variant == 11 {
            let fd = self.bad_fd();
            // SAFETY: `r` and its buffers are valid.
            let res = unsafe { raw(nr::BUS1_RECV, [fd, ptr, size, 0, 0, 0]) };
            self.coverage.record(RECV, &res);
            res.map(drop)
        } else {
            self.recv_call(pi, ptr, size, flags)
        };
        if res.is_ok() {
            if args_ptr.is_some() {
                self.violation(format!(
                    "bus1_recv with bad {what} succeeded: an entry of {} is lost",
                    inst_name(self.peers[pi].inst)
                ));
            } else {
                let buf = buf_ok.then_some(&area.buf[..]);
                let handles: &[u64] = if handles_ok { &area.handles } else { &[] };
                let fds: &[RawFd] = if fds_ok { &area.fds } else { &[] };
                if !matches!(variant, 4..=9) {
                    self.surprise(format!("bus1_recv with bad {what} succeeded"));
                }
                let args = r.args;
                self.received(pi, &args, buf, handles, fds, creds);
            }
        }
        self.area = area;
    }

    // ---- the end ----

    /// Receives everything queued on every peer (no one sends any more).
    fn drain(&mut self) {
        for pi in self.open_peers() {
            let mut interrupted = 0;
            loop {
                if self.peers[pi].blocking && !self.readable(pi) {
                    break;
                }
                match self.recv_once(pi, false) {
                    Got::Entry => interrupted = 0,
                    Got::Interrupted => {
                        interrupted += 1;
                        if interrupted > 1000 {
                            let here = inst_name(self.peers[pi].inst);
                            self.violation(format!(
                                "{here}: poll() reports it readable, but receives block"
                            ));
                            break;
                        }
                    }
                    Got::Empty | Got::Failed => break,
                }
            }
        }
    }

    /// After the drain: queues account nothing, and the peers' node and
    /// handle counts are what the worker accounted.
    fn check_fdinfo(&mut self) {
        for pi in self.open_peers() {
            let ps = &self.peers[pi];
            let here = inst_name(ps.inst);
            let fd = ps.peer.as_ref().expect("open").as_fd();
            let used = |name: &str| -> Result<u64, String> {
                let value = fdinfo_field(fd, name).map_err(|e| format!("{name}: {e}"))?;
                value
                    .split_whitespace()
                    .next()
                    .and_then(|w| w.parse().ok())
                    .ok_or_else(|| format!("{name}: {value:?}"))
            };
            let mut problems = vec![];
            for name in [
                "bus1-queue-messages",
                "bus1-queue-bytes",
                "bus1-queue-handles",
                "bus1-queue-fds",
            ] {
                match used(name) {
                    Ok(0) => {}
                    Ok(n) => problems.push(format!("{name} {n} after the drain")),
                    Err(e) => problems.push(e),
                }
            }
            let nodes = ps.owned.len() as u64;
            let handles = ps.handles.values().filter(|h| h.refs > 0).count() as u64;
            for (name, want) in [
                ("bus1-peer-nodes", nodes),
                ("bus1-peer-held-handles", handles),
            ] {
                match used(name) {
                    Ok(n) if n == want => {}
                    Ok(n) => problems.push(format!("{name} {n}, accounted {want}")),
                    Err(e) => problems.push(e),
                }
            }
            for p in problems {
                self.violation(format!("{here}: {p}"));
            }
        }
    }

    fn run(mut self, ops: u64, barriers: &[Barrier; 2]) -> Outcome {
        if let Err(e) = become_user(self.uid) {
            self.violation(e);
        }
        match Timer::new() {
            Ok(t) => self.timer = Some(t),
            Err(e) => self.violation(e),
        }
        for _ in 0..ops {
            self.op();
        }
        // Everyone in this process is done; then everyone everywhere.
        barriers[0].wait();
        barriers[1].wait();
        self.drain();
        if let Err(e) = become_user(0) {
            self.violation(e);
        }
        self.check_fdinfo();
        self.timer = None;
        for ps in &mut self.peers {
            ps.peer = None;
        }
        Outcome {
            g: self.g,
            ops,
            journal: self.journal,
            coverage: self.coverage,
            stats: self.stats,
            violations: self.violations,
            n_violations: self.n_violations,
            surprises: self.surprises,
        }
    }
}

/// A payload as the fuzzer writes it.
struct Parsed {
    event: u64,
    carried: Vec<Ident>,
    n_fds: usize,
    uid: u32,
    pid: u32,
    tid: u32,
}

impl Parsed {
    fn parse(bytes: &[u8]) -> Option<Self> {
        let word = |i: usize| -> Option<u64> {
            Some(u64::from_le_bytes(
                bytes.get(8 * i..8 * i + 8)?.try_into().ok()?,
            ))
        };
        if word(0)? != MAGIC {
            return None;
        }
        let n_handles = word(3)? as usize;
        if n_handles > 256 {
            return None;
        }
        let carried = (0..n_handles)
            .map(|k| Some((word(HEADER_WORDS + 2 * k)?, word(HEADER_WORDS + 2 * k + 1)?)))
            .collect::<Option<Vec<_>>>()?;
        let ids = word(6)?;
        Some(Self {
            event: word(1)?,
            carried,
            n_fds: word(4)? as usize,
            uid: word(5)? as u32,
            pid: (ids >> 32) as u32,
            tid: ids as u32,
        })
    }
}

// ---- the parent ----

const DEBUGFS: &str = "/sys/kernel/debug";

/// (peers, nodes, messages) from debugfs.
fn objects() -> Result<[i64; 3], String> {
    let path = format!("{DEBUGFS}/bus1/objects");
    if fs::metadata(&path).is_err() {
        let _ = nix::mount::mount(
            Some("debugfs"),
            DEBUGFS,
            Some("debugfs"),
            nix::mount::MsFlags::empty(),
            None::<&str>,
        );
    }
    let text = fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
    let count = |kind: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(kind)?.trim().parse().ok())
            .ok_or_else(|| format!("no {kind} in {path}: {text:?}"))
    };
    Ok([count("peers")?, count("nodes")?, count("messages")?])
}

/// What a fresh peer of `uid` shows of its user: pools and objects.
fn user_usage(uid: u32, cov: &mut Coverage) -> Result<Vec<(String, u64)>, String> {
    become_user(uid)?;
    let res = Peer::open(0);
    become_user(0)?;
    cov.record(OPEN, &res);
    let peer = res.map_err(|e| format!("bus1_open as {uid}: {e}"))?;
    let mut out = vec![];
    for name in [
        "bus1-user-messages",
        "bus1-user-bytes",
        "bus1-user-handles",
        "bus1-user-fds",
        "bus1-user-nodes",
        "bus1-user-held-handles",
    ] {
        let value = fdinfo_field(peer.as_fd(), name).map_err(|e| format!("{name}: {e}"))?;
        let used = value
            .split_whitespace()
            .next()
            .and_then(|w| w.parse().ok())
            .ok_or_else(|| format!("{name}: {value:?}"))?;
        out.push((name.to_owned(), used));
    }
    Ok(out)
}

/// Opens every worker's peers, each as its worker's user, with a home
/// node, and gives every peer a handle to every other home node.
fn setup(
    n: usize,
    uids: &[u32],
    rng: &mut Rng,
    cov: &mut Coverage,
) -> Result<Vec<Vec<PeerState>>, String> {
    let mut all: Vec<Vec<PeerState>> = vec![];
    for g in 0..n {
        let uid = uids[g % uids.len()];
        let mut peers = vec![];
        for k in 0..3 {
            let blocking = match k {
                0 => false,
                1 => true,
                _ => rng.chance(50),
            };
            let flags = if blocking { 0 } else { BUS1_OPEN_NONBLOCK } | BUS1_OPEN_CLOEXEC;
            become_user(uid)?;
            let res = Peer::open(flags);
            become_user(0)?;
            cov.record(OPEN, &res);
            let peer = res.map_err(|e| format!("bus1_open as {uid}: {e}"))?;
            let res = peer.create_node();
            cov.record(NODE_CREATE, &res);
            let home = res.map_err(|e| format!("bus1_node_create: {e}"))?;
            let mut ps = PeerState::new(peer, inst_of(g, k), blocking, k >= STABLE);
            ps.add_owned(home);
            ps.home = Some(home);
            peers.push(ps);
        }
        all.push(peers);
    }
    let flat: Vec<(usize, usize)> = (0..n).flat_map(|g| (0..3).map(move |k| (g, k))).collect();
    for &(g, k) in &flat {
        for &(h, l) in &flat {
            if (g, k) == (h, l) {
                continue;
            }
            let home = all[g][k].home.expect("home");
            let ident = (all[g][k].inst, home);
            let res = all[g][k]
                .peer
                .as_ref()
                .expect("open")
                .transfer(home, all[h][l].peer.as_ref());
            cov.record(TRANSFER, &res);
            let id = res.map_err(|e| format!("bus1_handle_transfer: {e}"))?;
            let q = &mut all[h][l];
            q.handles.insert(
                id,
                Handle {
                    ident,
                    refs: 1,
                    dead: false,
                    pinned: true,
                },
            );
            q.live.push(id);
            q.by_ident.insert(ident, id);
        }
    }
    Ok(all)
}

/// Small limits, some tighter than others, above what the setup uses.
fn small_limits(rng: &mut Rng, n_peers: u64, max_user_peers: u64) -> Vec<(&'static str, u64)> {
    let messages = *rng.pick(&[16, 48, 160]);
    let bytes = messages * rng.pick(&[300, 600]);
    let handles = *rng.pick(&[8, 32, 128]);
    let fds = *rng.pick(&[2, 8, 32]);
    let user = *rng.pick(&[2, 4]);
    let nodes = 1 + rng.pick(&[6, 16, 32]);
    let held = n_peers - 1 + rng.pick(&[4, 16, 64]);
    let values = [
        messages,
        bytes,
        handles,
        fds,
        messages * user,
        bytes * user,
        handles * user,
        fds * user,
        nodes,
        held,
        max_user_peers + rng.pick(&[16, 48, 128]),
        max_user_peers * (n_peers - 1) + rng.pick(&[16, 64, 256]),
    ];
    sysctl::NAMES.iter().copied().zip(values).collect()
}

struct Pipes {
    ready_r: Vec<Option<OwnedFd>>,
    ready_w: Vec<Option<OwnedFd>>,
    go_r: Vec<Option<OwnedFd>>,
    go_w: Vec<Option<OwnedFd>>,
}

/// Where process `p` of the run of parent `parent` writes its results.
fn file_base(parent: u32, p: usize) -> String {
    format!("/tmp/bus1-fuzz-concurrent-{parent}-{p}")
}

/// A child: runs its workers, waits for the others at the barrier, and
/// writes journals, coverage and findings to files.  Never returns.
fn child(p: usize, setups: Vec<WorkerSetup>, ready: OwnedFd, go: OwnedFd, base: String) -> ! {
    std::panic::set_hook(Box::new(|info| {
        eprintln!("bus1-fuzz concurrent: child panicked: {info}");
        // SAFETY: ends the process at once, as intended.
        unsafe { libc::_exit(101) }
    }));
    let code = match child_body(p, setups, ready, go, &base) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("bus1-fuzz concurrent: process {p}: {e}");
            1
        }
    };
    // SAFETY: ends the child without running the parent's destructors.
    unsafe { libc::_exit(code) }
}

fn child_body(
    p: usize,
    setups: Vec<WorkerSetup>,
    ready: OwnedFd,
    go: OwnedFd,
    base: &str,
) -> Result<(), String> {
    install_alarm_handler()?;
    let pages = Pages::map()?;
    let barriers = [
        Barrier::new(setups.len() + 1),
        Barrier::new(setups.len() + 1),
    ];
    let outcomes: Vec<Outcome> = std::thread::scope(|s| {
        let handles: Vec<_> = setups
            .into_iter()
            .map(|setup| {
                let barriers = &barriers;
                // The worker is made in its thread: its timer is the
                // thread's.
                s.spawn(move || {
                    let ops = setup.ops;
                    Worker::new(setup, pages).run(ops, barriers)
                })
            })
            .collect();
        barriers[0].wait();
        // The cross-process barrier: tell the parent, wait for its word.
        let mut ready = File::from(ready);
        let mut go = File::from(go);
        let told = ready.write_all(&[p as u8]);
        let mut byte = [0u8];
        let heard = go.read_exact(&mut byte);
        barriers[1].wait();
        if let Err(e) = told.and(heard) {
            eprintln!("bus1-fuzz concurrent: process {p}: barrier: {e}");
        }
        handles
            .into_iter()
            .map(|h| h.join().expect("worker"))
            .collect()
    });
    // Journals: per worker g, ops, length, words.
    let mut out = BufWriter::new(
        File::create(format!("{base}.journal")).map_err(|e| format!("{base}.journal: {e}"))?,
    );
    let mut info = String::new();
    let mut coverage = Coverage::default();
    for o in &outcomes {
        let head = [o.g as u64, o.ops, o.journal.len() as u64];
        for w in head.iter().chain(&o.journal) {
            out.write_all(&w.to_le_bytes()).map_err(|e| e.to_string())?;
        }
        coverage.merge(&o.coverage);
        for (k, v) in &o.stats {
            info += &format!("stat {v} {k}\n");
        }
        info += &format!("violations {}\n", o.n_violations);
        for v in &o.violations {
            info += &format!("violation {}\n", v.replace('\n', " "));
        }
        for s in &o.surprises {
            info += &format!("surprise {}\n", s.replace('\n', " "));
        }
    }
    out.flush().map_err(|e| e.to_string())?;
    fs::write(format!("{base}.cov"), coverage.serialize()).map_err(|e| e.to_string())?;
    fs::write(format!("{base}.info"), info).map_err(|e| e.to_string())?;
    Ok(())
}

/// What the children wrote.
#[derive(Default)]
struct Collected {
    journals: OnDisk,
    ops: u64,
    stats: BTreeMap<String, u64>,
    violations: Vec<String>,
    n_violations: u64,
    surprises: Vec<String>,
}

/// The files of the children, removed when the run ends.
struct Files(Vec<String>);

impl Drop for Files {
    fn drop(&mut self) {
        for base in &self.0 {
            for ext in ["journal", "cov", "info"] {
                let _ = fs::remove_file(format!("{base}.{ext}"));
            }
        }
    }
}

fn collect(base: &str, into: &mut Collected, cov: &mut Coverage) -> Result<(), String> {
    use std::io::{Seek, SeekFrom};
    let path = format!("{base}.journal");
    let mut file = File::open(&path).map_err(|e| format!("{path}: {e}"))?;
    let size = file.metadata().map_err(|e| format!("{path}: {e}"))?.len();
    let mut offset = 0u64;
    while offset + 24 <= size {
        let mut head = [0u8; 24];
        file.read_exact(&mut head)
            .map_err(|e| format!("{path}: {e}"))?;
        let word = |k: usize| u64::from_le_bytes(head[8 * k..8 * k + 8].try_into().expect("8"));
        let (g, ops, len) = (word(0) as usize, word(1), word(2));
        offset += 24;
        if offset + 8 * len > size {
            return Err(format!("{path}: journal of thread {g} cut short"));
        }
        into.journals.0.push(Segment {
            path: path.clone(),
            g,
            offset,
            words: len as usize,
        });
        into.ops += ops;
        offset += 8 * len;
        file.seek(SeekFrom::Start(offset))
            .map_err(|e| format!("{path}: {e}"))?;
    }
    let text = fs::read_to_string(format!("{base}.cov")).map_err(|e| e.to_string())?;
    cov.merge(&Coverage::parse(&text));
    let text = fs::read_to_string(format!("{base}.info")).map_err(|e| e.to_string())?;
    for line in text.lines() {
        let (kind, rest) = line.split_once(' ').unwrap_or((line, ""));
        match kind {
            "stat" => {
                let (v, k) = rest.split_once(' ').unwrap_or(("0", rest));
                *into.stats.entry(k.to_owned()).or_default() += v.parse::<u64>().unwrap_or(0);
            }
            "violations" => into.n_violations += rest.parse::<u64>().unwrap_or(0),
            "violation" => into.violations.push(rest.to_owned()),
            "surprise" => into.surprises.push(rest.to_owned()),
            _ => {}
        }
    }
    Ok(())
}

pub fn run(cfg: &Config) -> Result<Report, String> {
    run_inner(cfg).map_err(|e| format!("seed {}: {e}", cfg.seed))
}

fn run_inner(cfg: &Config) -> Result<Report, String> {
    use nix::sys::wait::{WaitStatus, waitpid};
    use nix::unistd::{ForkResult, fork};

    let threads = cfg.threads.max(1);
    let processes = cfg.processes.max(1);
    let uids = if cfg.uids.is_empty() {
        vec![0]
    } else {
        cfg.uids.clone()
    };
    let n = threads * processes;
    let mut master = Rng::new(cfg.seed);
    let mut cov = Coverage::default();

    let base_objects = objects()?;
    let distinct: BTreeSet<u32> = uids.iter().copied().collect();
    let mut base_users = BTreeMap::new();
    for &uid in &distinct {
        base_users.insert(uid, user_usage(uid, &mut cov)?);
    }

    let mut all = setup(n, &uids, &mut master, &mut cov)?;
    let n_peers = 3 * n as u64;
    let max_user_peers = distinct
        .iter()
        .map(|u| 3 * (0..n).filter(|g| uids[g % uids.len()] == *u).count() as u64)
        .max()
        .unwrap_or(0);
    let limit_values = small_limits(&mut master, n_peers, max_user_peers);
    // Small limits for the run; the old values come back on drop.
    let limits = sysctl::Saved::new()?;
    for &(name, value) in &limit_values {
        sysctl::write(name, value)?;
    }

    let mut setups: Vec<Option<WorkerSetup>> = vec![];
    for (g, peers) in all.drain(..).enumerate() {
        let ops = cfg.ops / n as u64 + u64::from((g as u64) < cfg.ops % n as u64);
        setups.push(Some(WorkerSetup {
            g,
            uid: uids[g % uids.len()],
            ops,
            rng: master.fork(g as u64),
            peers,
        }));
    }
    let mut pipes = Pipes {
        ready_r: vec![],
        ready_w: vec![],
        go_r: vec![],
        go_w: vec![],
    };
    for _ in 0..processes {
        let (r, w) = nix::unistd::pipe().map_err(|e| format!("pipe: {e}"))?;
        pipes.ready_r.push(Some(r));
        pipes.ready_w.push(Some(w));
        let (r, w) = nix::unistd::pipe().map_err(|e| format!("pipe: {e}"))?;
        pipes.go_r.push(Some(r));
        pipes.go_w.push(Some(w));
    }

    let parent = std::process::id();
    let mut children = vec![];
    let mut failure = None;
    for p in 0..processes {
        // SAFETY: this process is single-threaded here.
        match unsafe { fork() } {
            Ok(ForkResult::Child) => {
                let mine: Vec<WorkerSetup> = (p * threads..(p + 1) * threads)
                    .filter_map(|g| setups[g].take())
                    .collect();
                // Everything else is closed: the peers of other processes
                // must die with them, and the pipes must show EOF.
                let ready = pipes.ready_w[p].take().expect("pipe");
                let go = pipes.go_r[p].take().expect("pipe");
                drop(setups);
                drop(pipes);
                child(p, mine, ready, go, file_base(parent, p));
            }
            Ok(ForkResult::Parent { child }) => children.push(child),
            Err(e) => {
                failure = Some(format!("fork: {e}"));
                break;
            }
        }
    }
    drop(setups);
    let _files = Files((0..children.len()).map(|p| file_base(parent, p)).collect());
    pipes.ready_w.clear();
    pipes.go_r.clear();

    // The barrier: every process is done with its operations.
    if failure.is_none() {
        for (p, r) in pipes.ready_r.iter_mut().enumerate() {
            let mut byte = [0u8];
            if let Err(e) = File::from(r.take().expect("pipe")).read_exact(&mut byte) {
                failure = Some(format!("process {p} ended before the barrier ({e})"));
                break;
            }
        }
    }
    if failure.is_some() {
        for &c in &children {
            let _ = nix::sys::signal::kill(c, nix::sys::signal::Signal::SIGKILL);
        }
    } else {
        for w in pipes.go_w.iter_mut() {
            let _ = File::from(w.take().expect("pipe")).write_all(&[1]);
        }
    }
    for (p, &c) in children.iter().enumerate() {
        match waitpid(c, None) {
            Ok(WaitStatus::Exited(_, 0)) => {}
            other => {
                failure.get_or_insert(format!("process {p} ended with {other:?}"));
            }
        }
    }
    // The children's files are read even after a failure, for the record.
    let mut collected = Collected::default();
    for p in 0..children.len() {
        if let Err(e) = collect(&file_base(parent, p), &mut collected, &mut cov) {
            failure.get_or_insert(format!("process {p}: {e}"));
        }
    }
    if let Some(f) = failure {
        return Err(f);
    }

    // Every peer is closed: the users' pools and the objects are back.
    let mut problems = vec![];
    for &uid in &distinct {
        let now = user_usage(uid, &mut cov)?;
        if now != base_users[&uid] {
            problems.push(format!(
                "user {uid} after the run: {now:?}, before: {:?}",
                base_users[&uid]
            ));
        }
    }
    let end_objects = objects()?;
    if end_objects != base_objects {
        problems.push(format!(
            "debugfs objects (peers, nodes, messages) {end_objects:?}, before the run {base_objects:?}"
        ));
    }
    // SAFETY: PR_SET_DUMPABLE takes integers; changing euid cleared it.
    unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 1, 0, 0, 0) };
    drop(limits);

    let checking = std::time::Instant::now();
    let checked = check(&collected.journals, &mut problems)?;
    let checking = checking.elapsed().as_secs_f64();
    let mut all_problems = collected.violations.clone();
    if collected.n_violations > collected.violations.len() as u64 {
        all_problems.push(format!(
            "... {} violations seen by the threads in all",
            collected.n_violations
        ));
    }
    all_problems.extend(problems);
    if !all_problems.is_empty() {
        return Err(all_problems.join("\n"));
    }

    let s = |k: &str| collected.stats.get(k).copied().unwrap_or(0);
    let mut summary = format!(
        "{} sends ({} multicasts, {} with handles, {} with fds, {} deliveries), {} refused fds, \
         {} receives ({} data, {} destructions, {} releases), {} EDQUOT, {} EINTR, {} EAGAIN, \
         {} EMSGSIZE, {} nodes created, {} transfers, {} releases, {} destructions ({} floods), \
         {} resets, \
         {} reopens, {} invalid calls ({} succeeded); {} deliveries to stable peers received \
         exactly once, {} pairs in order over {} receivers, {} causal pairs (checked in \
         {checking:.1}s);{}",
        s("sends"),
        s("multicasts"),
        s("sends with handles"),
        s("sends with fds"),
        s("deliveries"),
        s("refused fds"),
        s("receives"),
        s("data received"),
        s("destructions received"),
        s("releases received"),
        s("EDQUOT"),
        s("EINTR"),
        s("EAGAIN"),
        s("EMSGSIZE"),
        s("nodes created"),
        s("transfers"),
        s("releases"),
        s("destructions"),
        s("floods"),
        s("resets"),
        s("reopens"),
        s("invalid calls"),
        s("surprises"),
        checked.stable_deliveries,
        checked.pairs,
        checked.receivers,
        checked.causal,
        limits_shown(&limit_values),
    );
    for sur in collected.surprises.iter().take(5) {
        summary += &format!("\n  invalid call succeeded: {sur}");
    }
    Ok(Report {
        ops: collected.ops,
        coverage: cov,
        summary,
    })
}

fn limits_shown(values: &[(&str, u64)]) -> String {
    values
        .iter()
        .map(|(k, v)| format!(" {}={v}", k.trim_start_matches("max_")))
        .collect()
}

// ---- the checks ----

/// One record of a journal.
enum Rec<'a> {
    Recv {
        inst: u64,
        kind: u64,
        id: u64,
        flags: u64,
        a: u64,
        b: u64,
    },
    Send {
        event: u64,
        certain: &'a [u64],
        uncertain: &'a [u64],
    },
    Failed {
        event: u64,
        errno: u64,
    },
    Destroy {
        txn: u64,
        idents: &'a [u64],
    },
    Reset {
        inst: u64,
    },
    Close {
        inst: u64,
    },
}

/// The records of a journal; `None` ends a malformed one.
fn records(words: &[u64]) -> impl Iterator<Item = Rec<'_>> {
    let mut i = 0;
    std::iter::from_fn(move || {
        let w = |k: usize| words.get(i + k).copied();
        let (rec, len) = match w(0)? {
            J_RECV => (
                Rec::Recv {
                    inst: w(1)?,
                    kind: w(2)?,
                    id: w(3)?,
                    flags: w(4)?,
                    a: w(5)?,
                    b: w(6)?,
                },
                7,
            ),
            J_SEND => {
                let (nc, nu) = (w(2)? as usize, w(3)? as usize);
                let start = i + 4;
                let mid = start + 2 * nc;
                let end = mid + 2 * nu;
                (
                    Rec::Send {
                        event: w(1)?,
                        certain: words.get(start..mid)?,
                        uncertain: words.get(mid..end)?,
                    },
                    end - i,
                )
            }
            J_FAILED => (
                Rec::Failed {
                    event: w(1)?,
                    errno: w(2)?,
                },
                3,
            ),
            J_DESTROY => {
                let n = w(2)? as usize;
                (
                    Rec::Destroy {
                        txn: w(1)?,
                        idents: words.get(i + 3..i + 3 + 2 * n)?,
                    },
                    3 + 2 * n,
                )
            }
            J_RESET => (Rec::Reset { inst: w(1)? }, 2),
            J_CLOSE => (Rec::Close { inst: w(1)? }, 2),
            _ => return None,
        };
        i += len;
        Some(rec)
    })
}

#[derive(Default)]
struct Checked {
    stable_deliveries: u64,
    pairs: u64,
    causal: u64,
    receivers: usize,
}

/// The threads' journals, one at a time: `each()` calls `f` with every
/// thread's number and words.
trait Journals {
    fn each(&self, f: &mut dyn FnMut(usize, &[u64])) -> Result<(), String>;
}

impl Journals for Vec<(usize, Vec<u64>)> {
    fn each(&self, f: &mut dyn FnMut(usize, &[u64])) -> Result<(), String> {
        for (g, words) in self {
            f(*g, words);
        }
        Ok(())
    }
}

/// One thread's journal in a child's file.
struct Segment {
    path: String,
    g: usize,
    offset: u64,
    words: usize,
}

/// Journals read from the files for each pass, so that a long run does
/// not keep them all in memory.
#[derive(Default)]
struct OnDisk(Vec<Segment>);

impl Journals for OnDisk {
    fn each(&self, f: &mut dyn FnMut(usize, &[u64])) -> Result<(), String> {
        use std::io::{Seek, SeekFrom};
        for s in &self.0 {
            let err = |e: std::io::Error| format!("{}: {e}", s.path);
            let mut file = File::open(&s.path).map_err(err)?;
            file.seek(SeekFrom::Start(s.offset)).map_err(err)?;
            let mut bytes = vec![0u8; 8 * s.words];
            file.read_exact(&mut bytes).map_err(err)?;
            let words: Vec<u64> = bytes
                .chunks_exact(8)
                .map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes")))
                .collect();
            drop(bytes);
            f(s.g, &words);
        }
        Ok(())
    }
}

/// The previous entry of a receiver's log, still to be judged against
/// the next.
#[derive(Clone, Copy)]
struct LogEntry {
    /// The transaction, 0 if unknown.
    txn: u64,
    continues: bool,
}

/// What is tracked of one receiver while its thread's journal is read.
#[derive(Default)]
struct Receiver {
    /// Ids whose destruction arrived.
    dead: HashSet<u64>,
    prev: Option<LogEntry>,
    /// Its transactions in order, one element per transaction.
    seq: Vec<u64>,
    seen: HashSet<u64>,
}

/// Records the problems `check()` finds, the first ones in full.
struct Problems<'a> {
    list: &'a mut Vec<String>,
    count: u64,
}

impl Problems<'_> {
    fn add(&mut self, text: String) {
        self.count += 1;
        if self.list.len() < MAX_REPORTED {
            self.list.push(text);
        }
    }
}

/// A delivery or receipt, packed into one sortable number: event (56
/// bits), receiver index (24), node (46), kind (2: certain, possible,
/// received).
fn pack(event: u64, receiver: u32, node: u64, kind: u8) -> Option<u128> {
    if event >> 56 != 0 || receiver >> 24 != 0 || node >> 46 != 0 {
        return None;
    }
    Some(
        (u128::from(event) << 72)
            | (u128::from(receiver) << 48)
            | (u128::from(node) << 2)
            | u128::from(kind),
    )
}

/// The (thread, sequence number) of an event, to index dense tables.
fn event_slot(e: u64) -> (usize, usize) {
    (
        ((e >> 40) as usize).wrapping_sub(1),
        (e & ((1 << 40) - 1)) as usize,
    )
}

fn check(journals: &dyn Journals, list: &mut Vec<String>) -> Result<Checked, String> {
    let mut checked = Checked::default();
    let mut problems = Problems { list, count: 0 };

    // Receivers by index.
    let mut index: HashMap<u64, u32> = HashMap::new();
    let mut insts: Vec<u64> = vec![];

    // Pass 1: deliveries and receipts; destructions.
    let mut items: Vec<u128> = vec![];
    let mut destroyed_by: HashMap<Ident, u64> = HashMap::new();
    let mut failed: HashMap<u64, u64> = HashMap::new();
    journals.each(&mut |g, words| {
        let mut idx = |inst: u64| -> u32 {
            *index.entry(inst).or_insert_with(|| {
                insts.push(inst);
                insts.len() as u32 - 1
            })
        };
        let mut consumed = 0usize;
        for rec in records(words) {
            let mut add = |event: u64, inst: u64, node: u64, kind: u8| match pack(
                event,
                idx(inst),
                node,
                kind,
            ) {
                Some(item) => items.push(item),
                None => problems.add(format!(
                    "thread {g}: {} with node {node} on {} out of range",
                    event_name(event),
                    inst_name(inst)
                )),
            };
            match rec {
                Rec::Send {
                    event,
                    certain,
                    uncertain,
                } => {
                    consumed += 4 + certain.len() + uncertain.len();
                    for (pairs, kind) in [(certain, 0u8), (uncertain, 1)] {
                        for p in pairs.chunks_exact(2) {
                            add(event, p[0], p[1], kind);
                        }
                    }
                }
                Rec::Recv {
                    inst, kind, id, a, ..
                } => {
                    consumed += 7;
                    if kind == BUS1_MSG_DATA {
                        add(a, inst, id, 2);
                    } else {
                        idx(inst);
                    }
                }
                Rec::Failed { event, errno } => {
                    consumed += 3;
                    failed.insert(event, errno);
                }
                Rec::Destroy { txn, idents } => {
                    consumed += 3 + idents.len();
                    for p in idents.chunks_exact(2) {
                        destroyed_by.insert((p[0], p[1]), txn);
                    }
                }
                Rec::Reset { .. } | Rec::Close { .. } => consumed += 2,
            }
        }
        if consumed != words.len() {
            problems.add(format!("thread {g}: malformed journal at word {consumed}"));
        }
    })?;
    items.sort_unstable();
    let unpack = |x: u128| {
        (
            (x >> 72) as u64,
            ((x >> 48) & 0xff_ffff) as u32,
            ((x >> 2) & ((1 << 46) - 1)) as u64,
            (x & 3) as u8,
        )
    };
    for group in items.chunk_by(|x, y| x >> 2 == y >> 2) {
        let (event, i, node, _) = unpack(group[0]);
        let count = |k: u8| group.iter().filter(|&&x| unpack(x).3 == k).count();
        let (certain, uncertain, received) = (count(0), count(1), count(2));
        let inst = insts[i as usize];
        let stable = is_stable(inst);
        if stable {
            checked.stable_deliveries += certain as u64;
        }
        let failure = failed
            .get(&event)
            .map(|&e| format!(" (its send failed with {})", Errno::from_raw(e as i32)))
            .unwrap_or_default();
        if received > certain + uncertain {
            problems.add(format!(
                "{} received {} {received} times on node {node}, delivered there {certain} \
                 times (+{uncertain} possibly){failure}",
                inst_name(inst),
                event_name(event)
            ));
        } else if stable && received < certain {
            problems.add(format!(
                "{}: {} lost: delivered to node {node} {certain} times, received {received}",
                inst_name(inst),
                event_name(event)
            ));
        }
    }
    drop(items);
    drop(failed);

    // Pass 2: each receiver's log on its own, its sequence of
    // transactions, and each thread's causes.
    let mut seqs: Vec<Vec<u64>> = vec![vec![]; insts.len()];
    let mut effects: Vec<(u64, u64)> = vec![];
    journals.each(&mut |_, words| {
        let mut recent: Vec<u64> = vec![];
        let mut last_by_inst: HashMap<u64, u64> = HashMap::new();
        let mut receivers: HashMap<u64, Receiver> = HashMap::new();
        let mut causes = |effect: u64, recent: &[u64], last: &HashMap<u64, u64>| {
            let mut cs: Vec<u64> = recent.iter().chain(last.values()).copied().collect();
            cs.sort_unstable();
            cs.dedup();
            effects.extend(cs.into_iter().filter(|&c| c != effect).map(|c| (effect, c)));
        };
        // One transaction's entries come back to back, flagged.
        let judge = |problems: &mut Problems, inst: u64, prev: LogEntry, next: Option<LogEntry>| {
            if prev.txn == 0 {
                return;
            }
            let name = inst_name(inst);
            let same = next.is_some_and(|n| n.txn == prev.txn);
            let end_ok = next.is_none() && !is_stable(inst);
            if prev.continues && !same && !end_ok {
                problems.add(format!(
                    "{name}: entry of {} flagged to continue, but the next is not of it",
                    event_name(prev.txn)
                ));
            }
            if !prev.continues && same {
                problems.add(format!(
                    "{name}: entry of {} not flagged to continue, but the next is of it",
                    event_name(prev.txn)
                ));
            }
        };
        for rec in records(words) {
            match rec {
                Rec::Recv {
                    inst,
                    kind,
                    id,
                    flags,
                    a,
                    b,
                } => {
                    let txn = match kind {
                        BUS1_MSG_DATA => a,
                        BUS1_MSG_NODE_DESTROY => destroyed_by.get(&(a, b)).copied().unwrap_or(0),
                        _ => 0,
                    };
                    let entry = LogEntry {
                        txn,
                        continues: flags & BUS1_RECV_FLAG_CONTINUE != 0,
                    };
                    let r = receivers.entry(inst).or_default();
                    let name = || inst_name(inst);
                    match kind {
                        BUS1_MSG_DATA if r.dead.contains(&id) => problems.add(format!(
                            "{}: {} on id {id} after its destruction",
                            name(),
                            event_name(txn)
                        )),
                        BUS1_MSG_NODE_DESTROY if !r.dead.insert(id) => {
                            problems.add(format!("{}: id {id} destroyed twice", name()));
                        }
                        _ => {}
                    }
                    if let Some(prev) = r.prev.replace(entry) {
                        judge(&mut problems, inst, prev, Some(entry));
                    }
                    if txn != 0 {
                        if r.seq.last() != Some(&txn) {
                            if !r.seen.insert(txn) {
                                problems.add(format!(
                                    "{}: entries of {} not back to back",
                                    name(),
                                    event_name(txn)
                                ));
                            }
                            r.seq.push(txn);
                        }
                        recent.retain(|&t| t != txn);
                        recent.push(txn);
                        if recent.len() > 3 {
                            recent.remove(0);
                        }
                        last_by_inst.insert(inst, txn);
                    }
                }
                Rec::Send {
                    event,
                    certain,
                    uncertain,
                } => {
                    if !certain.is_empty() || !uncertain.is_empty() {
                        causes(event, &recent, &last_by_inst);
                    }
                }
                Rec::Destroy { txn, .. } => causes(txn, &recent, &last_by_inst),
                Rec::Reset { inst } | Rec::Close { inst } => {
                    // The rest of the queue is dropped: no next entry.
                    if let Some(prev) = receivers.get_mut(&inst).and_then(|r| r.prev.take()) {
                        judge(&mut problems, inst, prev, None);
                    }
                    if matches!(rec, Rec::Close { .. }) {
                        last_by_inst.remove(&inst);
                    }
                }
                Rec::Failed { .. } => {}
            }
        }
        for (inst, r) in receivers {
            if let Some(prev) = r.prev {
                judge(&mut problems, inst, prev, None);
            }
            if let Some(&i) = index.get(&inst) {
                seqs[i as usize] = r.seq;
            }
        }
    })?;
    drop(destroyed_by);
    checked.receivers = seqs.iter().filter(|s| !s.is_empty()).count();

    // Where each transaction was received: (txn, receiver, position),
    // sorted, found through a dense table per thread.
    let mut occurrences: Vec<(u64, u32, u32)> = vec![];
    for (i, seq) in seqs.iter().enumerate() {
        for (pos, &t) in seq.iter().enumerate() {
            occurrences.push((t, i as u32, pos as u32));
        }
    }
    occurrences.sort_unstable();
    let mut starts: Vec<Vec<u32>> = vec![];
    for (k, o) in occurrences.iter().enumerate() {
        if k > 0 && occurrences[k - 1].0 == o.0 {
            continue;
        }
        let (g, n) = event_slot(o.0);
        if g >= 1 << 16 {
            continue;
        }
        if starts.len() <= g {
            starts.resize(g + 1, vec![]);
        }
        if starts[g].len() <= n {
            starts[g].resize(n + 1, u32::MAX);
        }
        starts[g][n] = k as u32;
    }
    let receivers_of = |txn: u64| -> &[(u64, u32, u32)] {
        let (g, n) = event_slot(txn);
        match starts.get(g).and_then(|s| s.get(n)) {
            Some(&k) if k != u32::MAX => {
                let rest = &occurrences[k as usize..];
                &rest[..rest.partition_point(|x| x.0 == txn)]
            }
            _ => &[],
        }
    };

    // Global order: along each receiver's sequence, every other receiver
    // has the common transactions in increasing positions.
    for (i, seq) in seqs.iter().enumerate() {
        let mut last: HashMap<u32, (u32, u64)> = HashMap::new();
        for &t in seq {
            for &(_, j, pj) in receivers_of(t) {
                if j as usize == i {
                    continue;
                }
                if let Some(&(prev_pj, prev)) = last.get(&j) {
                    checked.pairs += 1;
                    if prev_pj >= pj {
                        problems.add(format!(
                            "{} and {} disagree: {} before {} for the first, after it for \
                             the second",
                            inst_name(insts[i]),
                            inst_name(insts[j as usize]),
                            event_name(prev),
                            event_name(t)
                        ));
                    }
                }
                last.insert(j, (pj, t));
            }
        }
    }

    // Causality: every receiver of an effect and of one of its causes
    // got the cause first.
    effects.sort_unstable();
    effects.dedup();
    for (i, seq) in seqs.iter().enumerate() {
        let pos_of = |txn: u64| {
            receivers_of(txn)
                .iter()
                .find(|x| x.1 as usize == i)
                .map(|x| x.2)
        };
        for (pe, &e) in seq.iter().enumerate() {
            let start = effects.partition_point(|x| x.0 < e);
            for &(_, c) in effects[start..].iter().take_while(|x| x.0 == e) {
                if let Some(pc) = pos_of(c) {
                    checked.causal += 1;
                    if pc as usize >= pe {
                        problems.add(format!(
                            "{} received {} before its cause {}",
                            inst_name(insts[i]),
                            event_name(e),
                            event_name(c)
                        ));
                    }
                }
            }
        }
    }
    if problems.count > problems.list.len() as u64 {
        let n = problems.count;
        problems
            .list
            .push(format!("... {n} problems in the journals in all"));
    }
    Ok(checked)
}

#[cfg(test)]
mod tests {
    //! The checks catch what they are meant to, on made-up journals.

    use super::*;

    const A: u64 = 0; // thread 0, S0
    const B: u64 = 1 << 32; // thread 1, S0
    const C: u64 = 2 << 32; // thread 2, S0
    const V: u64 = (2 << 32) | STABLE; // thread 2, a volatile peer

    fn ev(g: u64, n: u64) -> u64 {
        ((g + 1) << 40) | n
    }

    #[derive(Default)]
    struct J(Vec<u64>);

    impl J {
        fn send(mut self, event: u64, to: &[(u64, u64)]) -> Self {
            self.0.extend([J_SEND, event, to.len() as u64, 0]);
            for &(i, n) in to {
                self.0.extend([i, n]);
            }
            self
        }
        fn data(mut self, inst: u64, id: u64, event: u64, flags: u64) -> Self {
            self.0
                .extend([J_RECV, inst, BUS1_MSG_DATA, id, flags, event, 0]);
            self
        }
        fn destroyed(mut self, inst: u64, id: u64, node: Ident, flags: u64) -> Self {
            self.0.extend([
                J_RECV,
                inst,
                BUS1_MSG_NODE_DESTROY,
                id,
                flags,
                node.0,
                node.1,
            ]);
            self
        }
        fn destroy(mut self, txn: u64, nodes: &[Ident]) -> Self {
            self.0.extend([J_DESTROY, txn, nodes.len() as u64]);
            for &(i, n) in nodes {
                self.0.extend([i, n]);
            }
            self
        }
    }

    fn problems(journals: Vec<J>) -> (Vec<String>, Checked) {
        let journals: Vec<(usize, Vec<u64>)> =
            journals.into_iter().map(|j| j.0).enumerate().collect();
        let mut problems = vec![];
        let checked = check(&journals, &mut problems).expect("in memory");
        (problems, checked)
    }

    fn assert_caught(journals: Vec<J>, what: &str) {
        let (p, _) = problems(journals);
        assert!(
            p.iter().any(|p| p.contains(what)),
            "expected a problem with {what:?}, got {p:?}"
        );
    }

    /// Thread 3 multicasts e1 and then e2 to A, B and C (node 1 each).
    fn two_multicasts() -> J {
        let to = [(A, 1), (B, 1), (C, 1)];
        J::default().send(ev(3, 1), &to).send(ev(3, 2), &to)
    }

    #[test]
    fn consistent_journals_pass() {
        let (e1, e2) = (ev(3, 1), ev(3, 2));
        let (p, checked) = problems(vec![
            J::default().data(A, 1, e1, 0).data(A, 1, e2, 0),
            J::default().data(B, 1, e1, 0).data(B, 1, e2, 0),
            J::default().data(C, 1, e1, 0).data(C, 1, e2, 0),
            two_multicasts(),
        ]);
        assert!(p.is_empty(), "{p:?}");
        assert_eq!(checked.stable_deliveries, 6);
        assert_eq!(checked.pairs, 6);
        assert_eq!(checked.receivers, 3);
    }

    #[test]
    fn a_lost_message_is_caught() {
        let (e1, e2) = (ev(3, 1), ev(3, 2));
        assert_caught(
            vec![
                J::default().data(A, 1, e1, 0).data(A, 1, e2, 0),
                J::default().data(B, 1, e1, 0),
                J::default().data(C, 1, e1, 0).data(C, 1, e2, 0),
                two_multicasts(),
            ],
            "lost",
        );
    }

    #[test]
    fn a_volatile_peer_may_lose_but_not_duplicate() {
        let e1 = ev(3, 1);
        let (p, _) = problems(vec![
            J::default(),
            J::default(),
            J::default(),
            J::default().send(e1, &[(V, 1)]),
        ]);
        assert!(p.is_empty(), "{p:?}");
        assert_caught(
            vec![
                J::default(),
                J::default(),
                J::default().data(V, 1, e1, 0).data(V, 1, e1, 0),
                J::default().send(e1, &[(V, 1)]),
            ],
            "received",
        );
    }

    #[test]
    fn a_duplicate_or_unsent_message_is_caught() {
        let (e1, e2) = (ev(3, 1), ev(3, 2));
        let ok_b = || J::default().data(B, 1, e1, 0).data(B, 1, e2, 0);
        let ok_c = || J::default().data(C, 1, e1, 0).data(C, 1, e2, 0);
        assert_caught(
            vec![
                J::default()
                    .data(A, 1, e1, 0)
                    .data(A, 1, e2, 0)
                    .data(A, 1, e2, 0),
                ok_b(),
                ok_c(),
                two_multicasts(),
            ],
            "received",
        );
        let mut failed = two_multicasts();
        failed.0.extend([J_FAILED, ev(3, 3), Errno::EDQUOT as u64]);
        assert_caught(
            vec![
                J::default()
                    .data(A, 1, e1, 0)
                    .data(A, 1, e2, 0)
                    .data(A, 1, ev(3, 3), 0),
                ok_b(),
                ok_c(),
                failed,
            ],
            "its send failed with EDQUOT",
        );
    }

    #[test]
    fn disagreeing_receivers_are_caught() {
        let (e1, e2) = (ev(3, 1), ev(3, 2));
        assert_caught(
            vec![
                J::default().data(A, 1, e1, 0).data(A, 1, e2, 0),
                J::default().data(B, 1, e2, 0).data(B, 1, e1, 0),
                J::default().data(C, 1, e1, 0).data(C, 1, e2, 0),
                two_multicasts(),
            ],
            "disagree",
        );
    }

    #[test]
    fn an_effect_before_its_cause_is_caught() {
        // Thread 0 receives e1 on A, then sends e9 to C, which receives
        // e9 first.
        let (e1, e9) = (ev(3, 1), ev(0, 9));
        let good = |c: J| {
            vec![
                J::default().data(A, 1, e1, 0).send(e9, &[(C, 1)]),
                J::default().data(B, 1, e1, 0),
                c,
                J::default().send(e1, &[(A, 1), (B, 1), (C, 1)]),
            ]
        };
        let (p, checked) = problems(good(J::default().data(C, 1, e1, 0).data(C, 1, e9, 0)));
        assert!(p.is_empty(), "{p:?}");
        assert_eq!(checked.causal, 1);
        assert_caught(
            good(J::default().data(C, 1, e9, 0).data(C, 1, e1, 0)),
            "before its cause",
        );
    }

    #[test]
    fn destructions_are_ordered_and_end_the_node() {
        // Thread 1 sends e1 to node 5 of A, which thread 0 then destroys:
        // A gets e1, then the destruction; B gets it on its handle 7.
        let d = ev(0, 2);
        let e1 = ev(1, 1);
        let owner = |a: J| {
            vec![
                a,
                J::default().send(e1, &[(A, 5)]).destroyed(B, 7, (A, 5), 0),
            ]
        };
        let (p, _) = problems(owner(
            J::default()
                .destroy(d, &[(A, 5)])
                .data(A, 5, e1, 0)
                .destroyed(A, 5, (A, 5), 0),
        ));
        assert!(p.is_empty(), "{p:?}");
        assert_caught(
            owner(
                J::default()
                    .destroy(d, &[(A, 5)])
                    .destroyed(A, 5, (A, 5), 0)
                    .data(A, 5, e1, 0),
            ),
            "after its destruction",
        );
    }

    #[test]
    fn batches_are_back_to_back_and_flagged() {
        // e1 to two nodes of A: two entries, the first flagged.
        let e1 = ev(1, 1);
        let e2 = ev(1, 2);
        let sender = || J::default().send(e1, &[(A, 1), (A, 2)]).send(e2, &[(A, 1)]);
        let flag = BUS1_RECV_FLAG_CONTINUE;
        let (p, _) = problems(vec![
            J::default()
                .data(A, 1, e1, flag)
                .data(A, 2, e1, 0)
                .data(A, 1, e2, 0),
            sender(),
        ]);
        assert!(p.is_empty(), "{p:?}");
        assert_caught(
            vec![
                J::default()
                    .data(A, 1, e1, 0)
                    .data(A, 2, e1, 0)
                    .data(A, 1, e2, 0),
                sender(),
            ],
            "not flagged",
        );
        assert_caught(
            vec![
                J::default()
                    .data(A, 1, e1, flag)
                    .data(A, 1, e2, 0)
                    .data(A, 2, e1, 0),
                sender(),
            ],
            "back to back",
        );
    }
}
