// SPDX-License-Identifier: GPL-2.0
//! Differential mode: one thread, random operations, every result compared
//! with the reference model (`model.rs`).
//!
//! The run is split into epochs.  Each epoch starts from nothing (every
//! peer and received descriptor closed), picks small random limits for the
//! sysctls (so that quotas run out often) and then does random operations
//! over a few peer slots, as root and as other users.  The first
//! difference between the kernel and the model stops the run: the epoch's
//! operations are replayed, shortened while the difference stays, and
//! printed.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use bus1::{Errno, sys};
use nix::libc;

use crate::coverage::Coverage;
use crate::model::{
    Caller, Expect, FdArg, FdKind, ID_INVALID, Limits, Model, Op, PAYLOAD_MAX, Ptr, RecvOp,
    RecvOut, SendOp, Size, Usage, VecSpec, payload_byte,
};
use crate::rng::Rng;
use crate::sysctl;

pub struct Config {
    pub seed: u64,
    pub ops: u64,
    pub uids: Vec<u32>,
}

pub struct Report {
    pub ops: u64,
    pub coverage: Coverage,
    pub summary: String,
}

/// Peer slots of one epoch.
const SLOTS: usize = 5;
/// Operations per epoch: short enough to shrink a difference quickly.
const EPOCH_OPS: u64 = 1500;
/// A descriptor number that is never open.
const NOT_OPEN_FD: RawFd = 9999;
/// What the kernel writes nowhere: a fresh errors array holds this.
const SENTINEL: i32 = 0x7eee_eeee;
/// Descriptors the process may open beyond those open at the start.
const SPARE_FDS: i32 = 14;

fn limits_values(l: &Limits) -> [u64; 12] {
    [
        l.peer.messages,
        l.peer.bytes,
        l.peer.handles,
        l.peer.fds,
        l.user.messages,
        l.user.bytes,
        l.user.handles,
        l.user.fds,
        l.peer_nodes,
        l.peer_handles,
        l.user_nodes,
        l.user_handles,
    ]
}

/// Small limits, so that every quota runs out now and then.
fn random_limits(rng: &mut Rng) -> Limits {
    let peer = Usage {
        messages: 3 + rng.below(12),
        bytes: 600 + rng.below(6000),
        handles: 2 + rng.below(10),
        fds: 1 + rng.below(6),
    };
    let times = 2 + rng.below(3);
    Limits {
        peer,
        user: Usage {
            messages: peer.messages * times,
            bytes: peer.bytes * times,
            handles: peer.handles * times,
            fds: peer.fds * times,
        },
        peer_nodes: 3 + rng.below(8),
        peer_handles: 3 + rng.below(8),
        user_nodes: 6 + rng.below(12),
        user_handles: 6 + rng.below(12),
    }
}

/// The process's memory and files the operations point at.
struct Env {
    /// A page that is not mapped.
    unmapped: u64,
    /// Read-only pages of zeros.
    ro: u64,
    /// A page whose protection is switched to read-only around a call.
    ro_args: *mut u8,
    /// Passable files (`FdKind::File`), with their identity.
    files: Vec<(OwnedFd, (u64, u64))>,
    unix: OwnedFd,
    /// A descriptor that is not a peer.
    not_bus1: RawFd,
    slots: Vec<Option<RawFd>>,
    received: Vec<RawFd>,
    caller: Caller,
}

fn mmap(pages: usize, prot: i32) -> Result<*mut u8, String> {
    // SAFETY: an anonymous private mapping at an address the kernel picks.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            pages * 4096,
            prot,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(format!("mmap: {}", Errno::last()));
    }
    Ok(p.cast())
}

fn identity(fd: RawFd) -> (u64, u64) {
    // SAFETY: `st` is plain data that fstat fills in.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `st` is valid for writing.
    if unsafe { libc::fstat(fd, &mut st) } != 0 {
        return (u64::MAX, u64::MAX);
    }
    // The two ends of a pipe are one inode: the access mode tells them
    // apart.
    // SAFETY: F_GETFL takes no pointer.
    let mode = unsafe { libc::fcntl(fd, libc::F_GETFL) } & libc::O_ACCMODE;
    (st.st_dev, st.st_ino << 2 | mode as u64)
}

extern "C" fn on_alarm(_: libc::c_int) {}

/// Arms a periodic SIGALRM every `usecs` (0 disarms).  Periodic, so that a
/// receive that blocks is interrupted even if one signal came just before.
fn alarm_every(usecs: i64) {
    let t = libc::timeval {
        tv_sec: usecs / 1_000_000,
        tv_usec: usecs % 1_000_000,
    };
    let it = libc::itimerval {
        it_interval: t,
        it_value: t,
    };
    // SAFETY: valid timer value; the old value is not wanted.
    unsafe { libc::setitimer(libc::ITIMER_REAL, &it, std::ptr::null_mut()) };
}

/// Acts as `uid` (effective uid only, this thread only); root stays the
/// real and saved uid, so the way back is open.
fn set_euid(uid: u32) {
    // SAFETY: setresuid takes no pointers; -1 keeps a value.
    unsafe { libc::syscall(libc::SYS_setresuid, -1i64, uid as i64, -1i64) };
}

impl Env {
    fn new() -> Result<Self, String> {
        let unmapped = mmap(1, libc::PROT_NONE)? as u64;
        let ro = mmap(4, libc::PROT_READ)? as u64;
        let ro_args = mmap(1, libc::PROT_READ | libc::PROT_WRITE)?;
        let mut files = vec![];
        let open = |path: &str, flags: i32| -> Result<OwnedFd, String> {
            let c = std::ffi::CString::new(path).expect("path");
            // SAFETY: a valid C string.
            let fd = unsafe { libc::open(c.as_ptr(), flags | libc::O_CLOEXEC) };
            if fd < 0 {
                return Err(format!("open {path}: {}", Errno::last()));
            }
            // SAFETY: a new descriptor this object owns.
            Ok(unsafe { OwnedFd::from_raw_fd(fd) })
        };
        for fd in [open("/dev/null", libc::O_RDWR)?, open("/", libc::O_PATH)?] {
            let id = identity(fd.as_raw_fd());
            files.push((fd, id));
        }
        let (r, w) = nix::unistd::pipe().map_err(|e| format!("pipe: {e}"))?;
        let not_bus1 = r.as_raw_fd();
        for fd in [r, w] {
            let id = identity(fd.as_raw_fd());
            files.push((fd, id));
        }
        let (unix, _) = nix::sys::socket::socketpair(
            nix::sys::socket::AddressFamily::Unix,
            nix::sys::socket::SockType::Stream,
            None,
            nix::sys::socket::SockFlag::SOCK_CLOEXEC,
        )
        .map_err(|e| format!("socketpair: {e}"))?;
        // SAFETY: installs a handler that does nothing, without SA_RESTART,
        // so a blocked receive ends with EINTR.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_alarm as extern "C" fn(libc::c_int) as usize;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(libc::SIGALRM, &sa, std::ptr::null_mut());
        }
        Ok(Env {
            unmapped,
            ro,
            ro_args,
            files,
            unix,
            not_bus1,
            slots: vec![None; SLOTS],
            received: vec![],
            caller: Caller {
                gid: nix::unistd::getegid().as_raw(),
                pid: std::process::id() as i32,
                tid: nix::unistd::gettid().as_raw(),
            },
        })
    }

    /// Closes every peer and received descriptor: the start of an epoch.
    fn clear(&mut self) {
        for fd in self.slots.iter_mut().filter_map(Option::take) {
            // SAFETY: the fuzzer owns its peer descriptors.
            drop(unsafe { OwnedFd::from_raw_fd(fd) });
        }
        for fd in self.received.drain(..) {
            // SAFETY: received descriptors are the fuzzer's.
            drop(unsafe { OwnedFd::from_raw_fd(fd) });
        }
    }

    fn open_fds(&self) -> Result<BTreeSet<i32>, String> {
        let mut fds = BTreeSet::new();
        for e in std::fs::read_dir("/proc/self/fd").map_err(|e| format!("/proc/self/fd: {e}"))? {
            let e = e.map_err(|e| e.to_string())?;
            if let Ok(fd) = e.file_name().to_string_lossy().parse::<i32>() {
                fds.insert(fd);
            }
        }
        // The directory's own descriptor is closed again by now.
        Ok(fds
            .into_iter()
            .filter(|&fd| identity(fd).0 != u64::MAX)
            .collect())
    }

    fn fd(&self, a: FdArg) -> usize {
        (match a {
            FdArg::Slot(s) => self.slots[s].unwrap_or(NOT_OPEN_FD),
            FdArg::NotBus1 => self.not_bus1,
            FdArg::Negative => -7,
        }) as isize as usize
    }

    /// The address for `ptr`, given the valid one.
    fn addr(&self, ptr: Ptr, valid: u64) -> u64 {
        match ptr {
            Ptr::Ok => valid,
            Ptr::Null => 0,
            Ptr::Unmapped => self.unmapped,
            Ptr::ReadOnly => self.ro,
        }
    }

    /// Puts `bytes` on the read-only page (writable for a moment).
    fn ro_place(&self, bytes: &[u8]) -> u64 {
        // SAFETY: the page is ours; it is made writable, written within its
        // size, and made read-only again.
        unsafe {
            libc::mprotect(
                self.ro_args.cast(),
                4096,
                libc::PROT_READ | libc::PROT_WRITE,
            );
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.ro_args, bytes.len().min(4096));
            libc::mprotect(self.ro_args.cast(), 4096, libc::PROT_READ);
        }
        self.ro_args as u64
    }

    fn fd_kind(&self, k: FdKind) -> i32 {
        match k {
            FdKind::File(i) => self.files[i].0.as_raw_fd(),
            FdKind::Peer(s) => self.slots[s].unwrap_or(NOT_OPEN_FD),
            FdKind::Unix => self.unix.as_raw_fd(),
            FdKind::NotOpen => NOT_OPEN_FD,
            FdKind::Negative => -2,
        }
    }

    /// Runs one operation on the kernel and describes the result the way
    /// the model does.
    fn exec(&mut self, op: &Op, expect: &Expect, cov: &mut Coverage) -> Expect {
        let call = |nr: usize, a: [usize; 6]| -> Result<usize, Errno> {
            // SAFETY: the fuzzer passes bad pointers on purpose; the kernel
            // must fail them with EFAULT.  Valid ones point to live buffers.
            unsafe { sys::call(nr, a) }
        };
        let ret = |r: Result<usize, Errno>| r.map(|v| v as i64);
        match op {
            Op::Open { slot, flags, uid } => {
                if self.slots[*slot].is_some() {
                    return Expect::Skip;
                }
                set_euid(*uid);
                let r = call(sys::nr::BUS1_OPEN, [*flags as usize, 0, 0, 0, 0, 0]);
                set_euid(0);
                cov.record(0, &r);
                if let Ok(fd) = r {
                    self.slots[*slot] = Some(fd as RawFd);
                }
                Expect::Ret(ret(r))
            }
            Op::Close { slot } => match self.slots[*slot].take() {
                None => Expect::Skip,
                Some(fd) => {
                    // SAFETY: the fuzzer owns its peer descriptors.
                    drop(unsafe { OwnedFd::from_raw_fd(fd) });
                    Expect::Ret(Ok(0))
                }
            },
            Op::CloseReceived { index } => {
                if *index >= self.received.len() {
                    return Expect::Skip;
                }
                let fd = self.received.remove(*index);
                // SAFETY: received descriptors are the fuzzer's.
                drop(unsafe { OwnedFd::from_raw_fd(fd) });
                Expect::Ret(Ok(0))
            }
            Op::NodeCreate {
                peer,
                id_ptr,
                flags,
            } => {
                let mut id = 0xdead_u64;
                let a = self.addr(*id_ptr, &mut id as *mut u64 as u64);
                let r = call(
                    sys::nr::BUS1_NODE_CREATE,
                    [self.fd(*peer), a as usize, *flags as usize, 0, 0, 0],
                );
                cov.record(1, &r);
                Expect::Id(r.map(|_| id))
            }
            Op::Transfer {
                src,
                src_id,
                src_ptr,
                dst,
                dst_ptr,
                flags,
            } => {
                let mut cells = [*src_id, 0xdead_u64];
                let base = cells.as_mut_ptr() as u64;
                let sa = self.addr(*src_ptr, base);
                let da = match dst_ptr {
                    None => sa,
                    Some(p) => self.addr(*p, base + 8),
                };
                let dfd = dst.map_or(usize::MAX, |d| self.fd(d));
                let r = call(
                    sys::nr::BUS1_HANDLE_TRANSFER,
                    [
                        self.fd(*src),
                        sa as usize,
                        dfd,
                        da as usize,
                        *flags as usize,
                        0,
                    ],
                );
                cov.record(2, &r);
                let out = if dst_ptr.is_none() {
                    cells[0]
                } else {
                    cells[1]
                };
                Expect::Id(r.map(|_| out))
            }
            Op::Release {
                peer,
                id,
                ptr,
                flags,
            } => {
                let cell = *id;
                let a = self.addr(*ptr, &cell as *const u64 as u64);
                let r = call(
                    sys::nr::BUS1_HANDLE_RELEASE,
                    [self.fd(*peer), a as usize, *flags as usize, 0, 0, 0],
                );
                cov.record(3, &r);
                Expect::Ret(ret(r))
            }
            Op::Destroy {
                peer,
                ids,
                n,
                ptr,
                flags,
            } => {
                let a = self.addr(*ptr, ids.as_ptr() as u64);
                let r = call(
                    sys::nr::BUS1_NODES_DESTROY,
                    [
                        self.fd(*peer),
                        a as usize,
                        *n as usize,
                        *flags as usize,
                        0,
                        0,
                    ],
                );
                cov.record(4, &r);
                Expect::Ret(ret(r))
            }
            Op::Reset { peer, flags } => {
                let r = call(
                    sys::nr::BUS1_PEER_RESET,
                    [self.fd(*peer), *flags as usize, 0, 0, 0, 0],
                );
                cov.record(7, &r);
                Expect::Ret(ret(r))
            }
            Op::Send(s) => self.send(s, cov),
            Op::Recv(r) => self.recv(r, expect, cov),
            Op::Inspect { slot } => match self.slots[*slot] {
                None => Expect::Skip,
                Some(fd) => Expect::Inspect(inspect(fd)),
            },
        }
    }

    fn send(&mut self, s: &SendOp, cov: &mut Coverage) -> Expect {
        let payloads: Vec<Vec<u8>> = s
            .vecs
            .iter()
            .enumerate()
            .map(|(i, v)| match v.ptr {
                Ptr::Ok if v.len <= PAYLOAD_MAX => (0..v.len as usize)
                    .map(|o| payload_byte(s.fill, i, o))
                    .collect(),
                _ => vec![],
            })
            .collect();
        let vecs: Vec<sys::Bus1Vec> = s
            .vecs
            .iter()
            .zip(&payloads)
            .map(|(v, p)| sys::Bus1Vec {
                base: self.addr(v.ptr, p.as_ptr() as u64),
                len: v.len,
            })
            .collect();
        let fds: Vec<i32> = s.fds.iter().map(|&k| self.fd_kind(k)).collect();
        let mut errors = vec![SENTINEL; s.dsts.len().max(1)];
        let msg = sys::Bus1Message {
            vecs: self.addr(s.vecs_ptr, vecs.as_ptr() as u64),
            n_vecs: s.n_vecs,
            handles: self.addr(s.handles_ptr, s.handles.as_ptr() as u64),
            n_handles: s.n_handles,
            errors: s
                .errors
                .map_or(0, |p| self.addr(p, errors.as_mut_ptr() as u64)),
            fds: self.addr(s.fds_ptr, fds.as_ptr() as u64),
            n_fds: s.n_fds,
        };
        // The structure, then a tail of 16 bytes (zero, or not).
        let mut bytes = [0u8; 72];
        // SAFETY: `Bus1Message` is plain data of 56 bytes.
        unsafe {
            std::ptr::copy_nonoverlapping(
                (&msg as *const sys::Bus1Message).cast::<u8>(),
                bytes.as_mut_ptr(),
                56,
            )
        };
        if s.size == Size::TailSet {
            bytes[70] = 1;
        }
        let size = s.size.bytes(40, 56);
        let msg_addr = self.addr(s.msg_ptr, bytes.as_ptr() as u64);
        set_euid(s.uid);
        let r = call_raw(
            sys::nr::BUS1_SEND,
            [
                self.fd(s.peer),
                self.addr(s.dsts_ptr, s.dsts.as_ptr() as u64) as usize,
                s.n_dsts as usize,
                msg_addr as usize,
                size,
                s.flags as usize,
            ],
        );
        set_euid(0);
        cov.record(5, &r);
        let written = s.errors == Some(Ptr::Ok) && errors.iter().any(|&e| e != SENTINEL);
        Expect::Send {
            ret: r.map(|v| v as i64),
            errors: written.then(|| errors[..s.dsts.len()].to_vec()),
        }
    }

    fn recv(&mut self, r: &RecvOp, expect: &Expect, cov: &mut Coverage) -> Expect {
        let mut bufs: Vec<Vec<u8>> = r
            .vecs
            .iter()
            .map(|v| {
                if v.ptr == Ptr::Ok {
                    vec![0u8; v.len as usize]
                } else {
                    vec![]
                }
            })
            .collect();
        let vecs: Vec<sys::Bus1Vec> = r
            .vecs
            .iter()
            .zip(bufs.iter_mut())
            .map(|(v, b)| sys::Bus1Vec {
                base: self.addr(v.ptr, b.as_mut_ptr() as u64),
                len: v.len,
            })
            .collect();
        // The generator keeps the capacities small.
        let mut handles = vec![0xdead_u64; r.handles_cap as usize];
        let mut fds = vec![-5i32; r.fds_cap as usize];
        let args = sys::Bus1Recv {
            vecs: self.addr(r.vecs_ptr, vecs.as_ptr() as u64),
            n_vecs: r.n_vecs,
            handles: self.addr(r.handles_ptr, handles.as_mut_ptr() as u64),
            n_handles: r.handles_cap,
            fds: self.addr(r.fds_ptr, fds.as_mut_ptr() as u64),
            n_fds: r.fds_cap,
            ..Default::default()
        };
        let mut bytes = [0u8; 112];
        // SAFETY: `Bus1Recv` is plain data of 96 bytes.
        unsafe {
            std::ptr::copy_nonoverlapping(
                (&args as *const sys::Bus1Recv).cast::<u8>(),
                bytes.as_mut_ptr(),
                96,
            )
        };
        if r.size == Size::TailSet {
            bytes[110] = 1;
        }
        let size = r.size.bytes(64, 96);
        let addr = match r.args_ptr {
            Ptr::ReadOnly => self.ro_place(&bytes),
            p => self.addr(p, bytes.as_mut_ptr() as u64),
        };
        // A receive the model expects to block gets a signal to end it;
        // any other gets one long after it should have returned, so that
        // a kernel that blocks where it must not ends the run with a
        // difference instead of a hang.
        let blocking = matches!(r.peer, FdArg::Slot(s) if self.slots[s].is_some());
        let interrupt = matches!(
            expect,
            Expect::Recv {
                ret: Err(Errno::EINTR),
                ..
            }
        );
        if blocking {
            alarm_every(if interrupt { 2000 } else { 20_000_000 });
        }
        let res = call_raw(
            sys::nr::BUS1_RECV,
            [self.fd(r.peer), addr as usize, size, r.flags as usize, 0, 0],
        );
        if blocking {
            alarm_every(0);
        }
        cov.record(6, &res);
        // SAFETY: `bytes` holds a `Bus1Recv` (96 bytes) the kernel wrote to.
        let got: sys::Bus1Recv = unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast()) };
        let full = size >= 96;
        let out = match res {
            Ok(_) => {
                let mut payload = vec![];
                for b in &bufs {
                    payload.extend_from_slice(b);
                }
                payload.truncate(got.n_bytes as usize);
                // A first-version structure has no descriptor fields.
                let got_fds = if full { got.n_fds } else { 0 };
                let n_fds = got_fds.min(fds.len() as u64) as usize;
                let numbers = fds[..n_fds].to_vec();
                let files = numbers.iter().map(|&fd| self.file_index(fd)).collect();
                self.received
                    .extend(numbers.iter().copied().filter(|&fd| fd >= 0));
                Some(RecvOut {
                    kind: got.r#type,
                    id: got.id,
                    flags: got.flags,
                    n_bytes: got.n_bytes,
                    n_handles: got.n_handles,
                    n_fds: got_fds,
                    creds: full.then_some((got.uid, got.gid, got.pid, got.tid)),
                    payload,
                    handle_ids: handles[..(got.n_handles.min(handles.len() as u64) as usize)]
                        .to_vec(),
                    fd_numbers: numbers,
                    fd_files: files,
                })
            }
            Err(Errno::EMSGSIZE) => Some(RecvOut {
                kind: got.r#type,
                id: got.id,
                flags: got.flags,
                n_bytes: got.n_bytes,
                n_handles: got.n_handles,
                n_fds: if full { got.n_fds } else { 0 },
                creds: None,
                payload: vec![],
                handle_ids: vec![],
                fd_numbers: vec![],
                fd_files: vec![],
            }),
            Err(_) => None,
        };
        Expect::Recv {
            ret: res.map(|v| v as i64),
            out,
        }
    }

    fn file_index(&self, fd: RawFd) -> usize {
        let id = identity(fd);
        self.files
            .iter()
            .position(|(_, f)| *f == id)
            .unwrap_or(usize::MAX)
    }
}

fn call_raw(nr: usize, a: [usize; 6]) -> Result<usize, Errno> {
    // SAFETY: see `Env::exec()`.
    unsafe { sys::call(nr, a) }
}

/// The used values of a peer's fdinfo counters, and whether it polls
/// readable.
fn inspect(fd: RawFd) -> Vec<(String, u64)> {
    // Reading /proc needs a descriptor, and the table may be full up to
    // the fuzzer's limit: lift the limit for the moment.
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: valid rlimit structures.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
        let lifted = libc::rlimit {
            rlim_cur: limit.rlim_cur + 16,
            ..limit
        };
        libc::setrlimit(libc::RLIMIT_NOFILE, &lifted);
    }
    let v = inspect_unlimited(fd);
    // SAFETY: as above.
    unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) };
    v
}

fn inspect_unlimited(fd: RawFd) -> Vec<(String, u64)> {
    let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}")).unwrap_or_default();
    let mut v: Vec<(String, u64)> = info
        .lines()
        .filter_map(|l| {
            let (name, rest) = l.split_once(':')?;
            if !name.starts_with("bus1-") || name == "bus1-peer-id" {
                return None;
            }
            Some((
                name.to_owned(),
                rest.split_whitespace().next()?.parse().ok()?,
            ))
        })
        .collect();
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd; no waiting.
    unsafe { libc::poll(&mut pfd, 1, 0) };
    v.push((
        "readable".into(),
        u64::from(pfd.revents & libc::POLLIN != 0),
    ));
    // The process's descriptors (less the directory's own).
    let fds = std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count() as u64);
    v.push(("open-fds".into(), fds.saturating_sub(1)));
    v
}

// --- generating operations ------------------------------------------------------

struct Gen<'a> {
    rng: &'a mut Rng,
    model: &'a Model,
    uids: &'a [u32],
    files: usize,
}

impl Gen<'_> {
    /// A peer argument: usually an open slot, sometimes not a peer.
    fn peer(&mut self) -> FdArg {
        let open: Vec<usize> = (0..SLOTS).filter(|&s| self.model.slot_open(s)).collect();
        match self.rng.below(100) {
            0 => FdArg::NotBus1,
            1 => FdArg::Negative,
            2 => FdArg::Slot(self.rng.index(SLOTS)),
            _ if !open.is_empty() => FdArg::Slot(*self.rng.pick(&open)),
            _ => FdArg::Slot(self.rng.index(SLOTS)),
        }
    }

    fn slot_of(a: FdArg) -> Option<usize> {
        match a {
            FdArg::Slot(s) => Some(s),
            _ => None,
        }
    }

    /// An id of `peer`: mostly one it has, sometimes not.
    fn id(&mut self, peer: FdArg, want_node: Option<bool>) -> u64 {
        let Some(slot) = Self::slot_of(peer) else {
            return 1;
        };
        let ids: Vec<u64> = self
            .model
            .ids_of(slot)
            .into_iter()
            .filter(|&(_, node, _)| want_node.is_none_or(|w| w == node))
            .map(|(id, _, _)| id)
            .collect();
        match self.rng.below(100) {
            0..3 => self.model.next_id_of(slot),
            3..5 => 0,
            5..7 => ID_INVALID,
            7..9 => 1 + self.rng.below(40),
            _ if !ids.is_empty() => *self.rng.pick(&ids),
            _ => 1 + self.rng.below(8),
        }
    }

    /// A pointer that is valid most of the time.
    fn ptr(&mut self, fault: bool, read_only_ok: bool) -> Ptr {
        if !fault {
            return Ptr::Ok;
        }
        match self.rng.below(if read_only_ok { 3 } else { 2 }) {
            0 => Ptr::Null,
            1 => Ptr::Unmapped,
            _ => Ptr::ReadOnly,
        }
    }

    fn size(&mut self, fault: bool) -> Size {
        if !fault {
            return if self.rng.chance(10) {
                Size::Ver0
            } else {
                Size::Ver1
            };
        }
        *self.rng.pick(&[
            Size::Short,
            Size::TailZero,
            Size::TailSet,
            Size::Huge,
            Size::Ver0,
        ])
    }

    fn flags(&mut self, fault: bool) -> u32 {
        if fault { 1 << self.rng.below(32) } else { 0 }
    }

    fn op(&mut self) -> Op {
        // One operation in ten has one thing wrong with it.
        let fault = self.rng.chance(10);
        let received = self.model.received.len();
        let empty: Vec<usize> = (0..SLOTS).filter(|&s| !self.model.slot_open(s)).collect();
        let mut w = [2u64, 1, 2, 8, 10, 7, 4, 1, 25, 25, 4];
        if empty.len() > 2 {
            w[0] = 30;
        }
        if received > 12 {
            w[2] = 20;
        }
        let total: u64 = w.iter().sum();
        let mut pick = self.rng.below(total);
        let mut kind = 0;
        while pick >= w[kind] {
            pick -= w[kind];
            kind += 1;
        }
        match kind {
            0 => Op::Open {
                slot: if empty.is_empty() {
                    0
                } else {
                    *self.rng.pick(&empty)
                },
                flags: if fault {
                    1 << self.rng.below(32)
                } else {
                    [0, 1, 2, 3][self.rng.index(4)] & if self.rng.chance(30) { 3 } else { 1 }
                },
                uid: *self.rng.pick(self.uids),
            },
            1 => Op::Close {
                slot: self.rng.index(SLOTS),
            },
            2 => Op::CloseReceived {
                index: self.rng.index(received.max(1)),
            },
            3 => {
                let f = if fault { self.rng.below(3) } else { 9 };
                Op::NodeCreate {
                    peer: if f == 0 {
                        *self.rng.pick(&[FdArg::NotBus1, FdArg::Negative])
                    } else {
                        self.peer()
                    },
                    id_ptr: self.ptr(f == 1, true),
                    flags: self.flags(f == 2),
                }
            }
            4 => {
                let f = if fault { self.rng.below(4) } else { 9 };
                let src = self.peer();
                let dst = match self.rng.below(10) {
                    0 => None,
                    _ => Some(self.peer()),
                };
                Op::Transfer {
                    src,
                    src_id: self.id(src, None),
                    src_ptr: self.ptr(f == 0, true),
                    dst,
                    dst_ptr: if self.rng.chance(10) {
                        None
                    } else {
                        Some(self.ptr(f == 1, true))
                    },
                    flags: self.flags(f == 2),
                }
            }
            5 => {
                let peer = self.peer();
                let f = if fault { self.rng.below(2) } else { 9 };
                Op::Release {
                    peer,
                    id: self.id(peer, Some(false)),
                    ptr: self.ptr(f == 0, true),
                    flags: self.flags(f == 1),
                }
            }
            6 => {
                let peer = self.peer();
                let k = 1 + self.rng.below(3) as usize;
                let mut ids: Vec<u64> = (0..k).map(|_| self.id(peer, Some(true))).collect();
                if !fault {
                    ids.sort_unstable();
                    ids.dedup();
                }
                let f = if fault { self.rng.below(3) } else { 9 };
                Op::Destroy {
                    peer,
                    n: match f {
                        0 => *self.rng.pick(&[0, 1025]),
                        _ => ids.len() as u32,
                    },
                    ids,
                    ptr: self.ptr(f == 1, true),
                    flags: self.flags(f == 2),
                }
            }
            7 => {
                let bad_flags = fault && self.rng.chance(50);
                Op::Reset {
                    peer: self.peer(),
                    flags: self.flags(bad_flags),
                }
            }
            8 => Op::Send(Box::new(self.send(fault))),
            9 => Op::Recv(Box::new(self.recv(fault))),
            _ => Op::Inspect {
                slot: self.rng.index(SLOTS),
            },
        }
    }

    fn send(&mut self, fault: bool) -> SendOp {
        let peer = self.peer();
        let f = if fault { self.rng.below(14) } else { 99 };
        let n = 1 + (self.rng.below(4) * self.rng.below(3)) as usize;
        let mut dsts: Vec<u64> = (0..n).map(|_| self.id(peer, None)).collect();
        dsts.sort_unstable();
        dsts.dedup();
        if f == 0 {
            dsts.push(dsts[0]);
        }
        let handles: Vec<u64> = if self.rng.chance(25) {
            (0..1 + self.rng.below(3))
                .map(|_| self.id(peer, None))
                .collect()
        } else {
            vec![]
        };
        let fds: Vec<FdKind> = if self.rng.chance(15) {
            (0..1 + self.rng.below(2))
                .map(|_| match self.rng.below(if f == 1 { 4 } else { 40 }) {
                    0 => FdKind::Peer(self.rng.index(SLOTS)),
                    1 => FdKind::Unix,
                    2 => FdKind::NotOpen,
                    3 => FdKind::Negative,
                    _ => FdKind::File(self.rng.index(self.files)),
                })
                .collect()
        } else {
            vec![]
        };
        let mut vecs: Vec<VecSpec> = (0..self.rng.below(4))
            .map(|_| VecSpec {
                len: match self.rng.below(10) {
                    0 => 0,
                    1..6 => self.rng.below(64),
                    6..9 => 64 + self.rng.below(1000),
                    _ => 1000 + self.rng.below(3000),
                },
                ptr: Ptr::Ok,
            })
            .collect();
        match f {
            2 if !vecs.is_empty() => {
                let i = self.rng.index(vecs.len());
                vecs[i].ptr = *self.rng.pick(&[Ptr::Null, Ptr::Unmapped, Ptr::ReadOnly]);
                vecs[i].len = vecs[i].len.clamp(1, 4096);
            }
            3 => vecs.push(VecSpec {
                len: PAYLOAD_MAX + 1 - vecs.iter().map(|v| v.len).sum::<u64>(),
                ptr: Ptr::Null,
            }),
            4 => vecs.extend(
                [VecSpec {
                    len: u64::MAX / 2 + 1,
                    ptr: Ptr::Null,
                }; 2],
            ),
            _ => {}
        }
        let size = self.size(f == 5);
        let n_fds = fds.len() as u64;
        let n_fds_eff = if size == Size::Ver0 { 0 } else { n_fds };
        let mut flags = if self.rng.chance(40) { 1 } else { 0 };
        if !handles.is_empty() {
            flags |= 2;
        }
        if n_fds_eff != 0 {
            flags |= 4;
        }
        if f == 6 {
            flags ^= *self.rng.pick(&[2, 4, 8, 1 << 31]);
        }
        let sub = self.rng.chance(50);
        SendOp {
            peer,
            uid: *self.rng.pick(self.uids),
            n_dsts: match f {
                7 => *self.rng.pick(&[0, 1025]),
                _ => dsts.len() as u32,
            },
            dsts,
            dsts_ptr: self.ptr(f == 8, true),
            size,
            msg_ptr: self.ptr(f == 9, false),
            n_vecs: if f == 10 { 1025 } else { vecs.len() as u64 },
            vecs,
            fill: self.rng.below(256) as u8,
            vecs_ptr: self.ptr(f == 11, true),
            n_handles: if f == 12 && !sub {
                257
            } else {
                handles.len() as u64
            },
            handles_ptr: self.ptr(f == 12 && sub, true),
            handles,
            n_fds: if f == 13 && !sub { 257 } else { n_fds },
            fds_ptr: self.ptr(f == 13 && sub, false),
            fds,
            errors: if f == 11 && self.rng.chance(50) {
                Some(self.ptr(true, true))
            } else if self.rng.chance(40) {
                Some(Ptr::Ok)
            } else {
                None
            },
            flags,
        }
    }

    fn recv(&mut self, fault: bool) -> RecvOp {
        let mut peer = self.peer();
        // A blocking receive on an empty queue waits for a signal: rare.
        let waits = |s: usize| {
            self.model.slot_open(s) && !self.model.nonblock(s) && self.model.queue_len(s) == 0
        };
        let others: Vec<usize> = (0..SLOTS)
            .filter(|&s| self.model.slot_open(s) && !waits(s))
            .collect();
        if let FdArg::Slot(s) = peer {
            if waits(s) && !others.is_empty() && !self.rng.chance(3) {
                peer = FdArg::Slot(*self.rng.pick(&others));
            }
        }
        let f = if fault { self.rng.below(9) } else { 99 };
        let needs = Self::slot_of(peer).and_then(|s| self.model.first_needs(s));
        let (bytes, handles, fds) = needs.unwrap_or((0, 0, 0));
        // Room for what comes, or (often enough to matter) not.
        let short = self.rng.chance(8);
        let room = if short && bytes > 0 {
            self.rng.below(bytes)
        } else {
            bytes + self.rng.below(64)
        };
        let mut vecs = vec![];
        let mut left = room;
        while left > 0 || vecs.is_empty() {
            let len = if self.rng.chance(50) {
                left
            } else {
                self.rng.below(left + 1)
            };
            vecs.push(VecSpec { len, ptr: Ptr::Ok });
            left -= len;
            if vecs.len() > 3 {
                vecs.push(VecSpec {
                    len: left,
                    ptr: Ptr::Ok,
                });
                break;
            }
        }
        match f {
            0 => {
                let i = self.rng.index(vecs.len());
                vecs[i].ptr = *self.rng.pick(&[Ptr::Null, Ptr::Unmapped, Ptr::ReadOnly]);
            }
            1 => vecs.extend(
                [VecSpec {
                    len: u64::MAX / 2 + 1,
                    ptr: Ptr::Null,
                }; 2],
            ),
            _ => {}
        }
        let handles_cap = if short && handles > 0 && self.rng.chance(50) {
            self.rng.below(handles)
        } else {
            handles + self.rng.below(3)
        };
        let fds_cap = if short && fds > 0 && self.rng.chance(50) {
            self.rng.below(fds)
        } else {
            fds + self.rng.below(3)
        };
        RecvOp {
            peer,
            size: self.size(f == 2),
            args_ptr: self.ptr(f == 3, true),
            n_vecs: if f == 4 { 1025 } else { vecs.len() as u64 },
            vecs,
            vecs_ptr: self.ptr(f == 5, true),
            handles_cap,
            handles_ptr: self.ptr(f == 6, true),
            fds_cap,
            fds_ptr: self.ptr(f == 7, true),
            flags: self.flags(f == 8),
        }
    }
}

// --- running, comparing, shrinking ----------------------------------------------

struct Runner {
    env: Env,
    base_fds: BTreeSet<i32>,
    fd_limit: i32,
    /// The sysctls as they were before the run.
    _saved: sysctl::Saved,
}

/// Where a sequence first differs from the model.
struct Difference {
    index: usize,
    expected: Expect,
    observed: Expect,
}

impl Runner {
    fn fresh_model(&mut self, limits: Limits) -> Result<Model, String> {
        self.env.clear();
        for (name, value) in sysctl::NAMES.iter().zip(limits_values(&limits)) {
            sysctl::write(name, value)?;
        }
        Ok(Model::new(
            SLOTS,
            limits,
            self.base_fds.clone(),
            self.fd_limit,
            self.env.caller,
        ))
    }

    /// Runs `ops` from a fresh start; the first difference, if any.
    fn replay(
        &mut self,
        limits: Limits,
        ops: &[Op],
        cov: &mut Coverage,
    ) -> Result<Option<Difference>, String> {
        let mut model = self.fresh_model(limits)?;
        for (index, op) in ops.iter().enumerate() {
            let expected = model.apply(op);
            let observed = self.env.exec(op, &expected, cov);
            if expected != observed {
                return Ok(Some(Difference {
                    index,
                    expected,
                    observed,
                }));
            }
        }
        Ok(None)
    }

    /// Shortens a failing sequence while it still fails (with any
    /// difference), in at most `budget` replays.
    fn shrink(
        &mut self,
        limits: Limits,
        mut ops: Vec<Op>,
    ) -> Result<(Vec<Op>, Difference), String> {
        let mut scratch = Coverage::default();
        let mut last = self
            .replay(limits, &ops, &mut scratch)?
            .ok_or("the difference did not show again on replay (not reproducible)")?;
        ops.truncate(last.index + 1);
        let mut budget = 300;
        let mut chunk = ops.len().div_ceil(2);
        while chunk >= 1 && budget > 0 {
            let mut start = 0;
            let mut removed = false;
            while start < ops.len() && budget > 0 {
                let end = (start + chunk).min(ops.len());
                let mut candidate = ops[..start].to_vec();
                candidate.extend_from_slice(&ops[end..]);
                budget -= 1;
                if let Some(d) = self.replay(limits, &candidate, &mut scratch)? {
                    candidate.truncate(d.index + 1);
                    ops = candidate;
                    last = d;
                    removed = true;
                } else {
                    start = end;
                }
            }
            if !removed {
                chunk /= 2;
            }
        }
        Ok((ops, last))
    }
}

pub fn run(cfg: &Config) -> Result<Report, String> {
    let env = Env::new()?;
    let saved = sysctl::Saved::new()?;
    let base_fds = env.open_fds()?;
    let fd_limit = base_fds.iter().max().copied().unwrap_or(2) + 1 + SPARE_FDS;
    let mut old = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: valid rlimit structures.
    unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut old) };
    let limit = libc::rlimit {
        rlim_cur: fd_limit as u64,
        rlim_max: old.rlim_max,
    };
    // SAFETY: as above.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
        return Err(format!("setrlimit(RLIMIT_NOFILE): {}", Errno::last()));
    }
    let mut runner = Runner {
        env,
        base_fds,
        fd_limit,
        _saved: saved,
    };
    let result = run_epochs(cfg, &mut runner);
    runner.env.clear();
    drop(runner);
    // SAFETY: as above.
    unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &old) };
    result
}

fn run_epochs(cfg: &Config, runner: &mut Runner) -> Result<Report, String> {
    let mut rng = Rng::new(cfg.seed);
    let mut cov = Coverage::default();
    let mut done = 0u64;
    let mut epochs = 0u64;
    let mut received = 0u64;
    let mut quota = 0u64;
    while done < cfg.ops {
        epochs += 1;
        let mut erng = rng.fork(epochs);
        let limits = random_limits(&mut erng);
        let mut model = runner.fresh_model(limits)?;
        let mut ops = vec![];
        let n = EPOCH_OPS.min(cfg.ops - done);
        for _ in 0..n {
            let op = Gen {
                rng: &mut erng,
                model: &model,
                uids: &cfg.uids,
                files: runner.env.files.len(),
            }
            .op();
            ops.push(op.clone());
            let expected = model.apply(&op);
            let observed = runner.env.exec(&op, &expected, &mut cov);
            done += 1;
            match &observed {
                Expect::Recv { ret: Ok(_), .. } => received += 1,
                Expect::Send {
                    ret: Err(Errno::EDQUOT),
                    ..
                }
                | Expect::Id(Err(Errno::EDQUOT)) => quota += 1,
                _ => {}
            }
            if expected != observed {
                let first = format!(
                    "epoch {epochs}, operation {} of the epoch: {op:?}\n  model:  {expected:?}\n  kernel: {observed:?}",
                    ops.len()
                );
                let shrunk = runner.shrink(limits, ops);
                let mut text = format!("{first}\nlimits: {limits:?}\n");
                match shrunk {
                    Ok((ops, d)) => {
                        let _ =
                            writeln!(text, "shortest sequence found ({} operations):", ops.len());
                        for (i, op) in ops.iter().enumerate() {
                            let _ = writeln!(text, "  {i:3}: {op:?}");
                        }
                        let _ = write!(
                            text,
                            "  model:  {:?}\n  kernel: {:?}",
                            d.expected, d.observed
                        );
                    }
                    Err(e) => text.push_str(&e),
                }
                return Err(text);
            }
        }
    }
    Ok(Report {
        ops: done,
        coverage: cov,
        summary: format!(
            "{epochs} epochs, {received} messages received, {quota} EDQUOT, every result as the model predicts"
        ),
    })
}
