// SPDX-License-Identifier: GPL-2.0
//! Filtering bus1 with seccomp, and reading it with strace (in the booted
//! kernel).
//!
//! Five example policies are written once, as data ([`POLICIES`]), and
//! compiled here into classic-BPF seccomp filters; the libseccomp example
//! (`tools-testing/observe/seccomp/bus1-seccomp.c`) builds the same five by
//! raw system call number, and `Documentation/userspace-api/bus1.rst`
//! ("Filtering with seccomp") quotes them.  Each policy is checked the same
//! way: a sandboxed process (the "probe") makes one call of every kind a
//! policy may care about ([`OPS`]) on peers the test prepared.  Exactly the
//! calls the policy denies -- written out by hand in [`EXPECTED`], not
//! derived from [`POLICIES`] -- must fail with the policy's errno, also
//! through the i386 and x32 entry points, and leave no trace; every other
//! call must do what it does without a filter (the message arrives, the
//! handle is transferred, ...).
//!
//! The strace test runs the probe under the wrapper
//! `tools-testing/observe/strace/bus1-strace` and checks that every bus1
//! call, also those of a forked child, appears by name with its arguments
//! decoded.
#![cfg(target_arch = "x86_64")]

use std::collections::HashMap;
use std::fmt::Write as _;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Output};

use bus1::sys::nr::{
    BUS1_HANDLE_RELEASE, BUS1_HANDLE_TRANSFER, BUS1_NODE_CREATE, BUS1_NODES_DESTROY, BUS1_OPEN,
    BUS1_PEER_RESET, BUS1_RECV, BUS1_SEND,
};
use bus1::sys::{
    self, BUS1_MSG_DATA, BUS1_MSG_NODE_DESTROY, BUS1_MSG_NODE_RELEASE, BUS1_SEND_CONTINUE,
    BUS1_SEND_FDS, BUS1_SEND_HANDLES, Bus1Message, Bus1Recv, Bus1Vec,
};
use bus1::{BUS1_OPEN_CLOEXEC, BUS1_OPEN_NONBLOCK, Errno, Peer};
use nix::libc::{self, sock_filter, sock_fprog};
use nix::unistd::{ForkResult, fork, gettid};

use super::in_child;

// ---------------------------------------------------------------------------
// The policies

/// What a policy denies.  Arguments count from 0 (`bus1_send()`'s flags are
/// argument 5) and only their low 32 bits are compared: every argument a
/// policy looks at is an `int` or `unsigned int`, for which the kernel
/// ignores the upper half of the register.
#[derive(Clone, Copy, Debug)]
enum Deny {
    /// Every call of the system call.
    Call(usize),
    /// Calls whose argument `arg` is not `value`.
    ArgNot { nr: usize, arg: u32, value: u32 },
    /// Calls whose argument `arg` has a bit of `mask` set.
    ArgHas { nr: usize, arg: u32, mask: u32 },
}

/// A seccomp policy: a call that matches an entry of `deny` fails with
/// `errno` without running; everything else is allowed.
struct Policy {
    name: &'static str,
    errno: Errno,
    deny: &'static [Deny],
}

/// The example policies.  bus1 returns `EACCES` itself only when a security
/// module refuses, so a caller can tell the policy's refusal from bus1's
/// errors.
const POLICIES: &[Policy] = &[
    // Unicast only: bus1_send()'s n_destinations (argument 2) must be 1.
    Policy {
        name: "unicast-only",
        errno: Errno::EACCES,
        deny: &[Deny::ArgNot {
            nr: BUS1_SEND,
            arg: 2,
            value: 1,
        }],
    },
    // No file descriptors in messages.
    Policy {
        name: "no-fds",
        errno: Errno::EACCES,
        deny: &[Deny::ArgHas {
            nr: BUS1_SEND,
            arg: 5,
            mask: BUS1_SEND_FDS,
        }],
    },
    // No handles passed on: not in messages, not by bus1_handle_transfer().
    Policy {
        name: "no-handles",
        errno: Errno::EACCES,
        deny: &[
            Deny::ArgHas {
                nr: BUS1_SEND,
                arg: 5,
                mask: BUS1_SEND_HANDLES,
            },
            Deny::Call(BUS1_HANDLE_TRANSFER),
        ],
    },
    // Receive only: bus1_recv() and bus1_handle_release() (dropping a
    // handle that arrived; closing the peer releases them all anyway).
    // Everything that creates peers, nodes or handles, sends, or destroys
    // and resets (which notifies other peers) is denied.
    Policy {
        name: "receive-only",
        errno: Errno::EACCES,
        deny: &[
            Deny::Call(BUS1_OPEN),
            Deny::Call(BUS1_NODE_CREATE),
            Deny::Call(BUS1_HANDLE_TRANSFER),
            Deny::Call(BUS1_NODES_DESTROY),
            Deny::Call(BUS1_SEND),
            Deny::Call(BUS1_PEER_RESET),
        ],
    },
    // No new peers: only the peers the process already has.
    Policy {
        name: "no-new-peers",
        errno: Errno::EACCES,
        deny: &[Deny::Call(BUS1_OPEN)],
    },
];

const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
const AUDIT_ARCH_I386: u32 = 0x4000_0003;
/// x32 calls are x86_64 calls with this bit in the number.
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

fn load(offset: u32) -> sock_filter {
    let code = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
    sock_filter {
        code,
        jt: 0,
        jf: 0,
        k: offset,
    }
}

fn jump(op: u32, k: u32, jt: u8, jf: u8) -> sock_filter {
    let code = (libc::BPF_JMP | op | libc::BPF_K) as u16;
    sock_filter { code, jt, jf, k }
}

fn ret(k: u32) -> sock_filter {
    let code = (libc::BPF_RET | libc::BPF_K) as u16;
    sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}

/// The classic-BPF program of `policy`.  `struct seccomp_data` holds the
/// call number at offset 0, the architecture at 4 and the arguments as
/// 64-bit values from 16 on (little endian: the low half first).
///
/// A process on x86_64 can enter the kernel as x86_64 (`syscall`), as i386
/// (`int 0x80`, or any 32-bit program) and as x32.  bus1 has the same
/// numbers on x86_64 and i386, so the rules serve both; x32 calls are
/// denied outright (bus1's x32 numbers would be the x86_64 ones plus
/// `X32_SYSCALL_BIT`), and any other architecture kills the process.
fn compile(policy: &Policy) -> Vec<sock_filter> {
    const NR: u32 = 0;
    const ARCH: u32 = 4;
    let arg = |n: u32| 16 + 8 * n;
    let (jeq, jset) = (libc::BPF_JEQ, libc::BPF_JSET);
    let deny = libc::SECCOMP_RET_ERRNO | policy.errno as u32;
    let mut prog = vec![
        load(ARCH),
        jump(jeq, AUDIT_ARCH_X86_64, 1, 0),
        jump(jeq, AUDIT_ARCH_I386, 0, 2),
        load(NR),
        jump(jset, X32_SYSCALL_BIT, 1, 2),
        ret(libc::SECCOMP_RET_KILL_PROCESS),
        ret(deny),
    ];
    // Each rule starts and ends with the number in the accumulator.
    for rule in policy.deny {
        match *rule {
            Deny::Call(nr) => prog.extend([jump(jeq, nr as u32, 0, 1), ret(deny)]),
            Deny::ArgNot { nr, arg: n, value } => prog.extend([
                jump(jeq, nr as u32, 0, 3),
                load(arg(n)),
                jump(jeq, value, 1, 0),
                ret(deny),
                load(NR),
            ]),
            Deny::ArgHas { nr, arg: n, mask } => prog.extend([
                jump(jeq, nr as u32, 0, 3),
                load(arg(n)),
                jump(jset, mask, 0, 1),
                ret(deny),
                load(NR),
            ]),
        }
    }
    prog.push(ret(libc::SECCOMP_RET_ALLOW));
    prog
}

/// Installs `policy` on the calling thread (and what it forks and execs).
fn install(policy: &Policy) {
    let prog = compile(policy);
    let fprog = sock_fprog {
        len: prog.len() as u16,
        filter: prog.as_ptr() as *mut sock_filter,
    };
    // SAFETY: plain prctl calls; `fprog` points at a valid program.
    unsafe {
        assert_eq!(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), 0);
        assert_eq!(
            libc::prctl(
                libc::PR_SET_SECCOMP,
                libc::SECCOMP_MODE_FILTER,
                &fprog as *const sock_fprog
            ),
            0,
            "PR_SET_SECCOMP: {}",
            Errno::last()
        );
    }
}

fn policy(name: &str) -> &'static Policy {
    POLICIES.iter().find(|p| p.name == name).unwrap()
}

// ---------------------------------------------------------------------------
// The probe: one call of each kind, made by the sandboxed side

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    /// `bus1_open(BUS1_OPEN_CLOEXEC)`.
    Open,
    /// A node on the sandboxed peer `b`.
    NodeCreate,
    /// `b` gives peer `d` a handle to its node `nb`.
    Transfer,
    /// "unicast" to `a`.
    Unicast,
    /// "multicast" to `a` and `c`.
    Multicast,
    /// "fd" to `a`, carrying /dev/null (`BUS1_SEND_FDS`).
    SendFd,
    /// "handle" to `a`, carrying `nb` (`BUS1_SEND_HANDLES`).
    SendHandle,
    /// "both" to `a`, carrying `nb` and /dev/null.
    SendBoth,
    /// Receives the "to-b" that `a` queued on `b` before.
    Recv,
    /// Releases `b`'s only handle to `a`'s node `na2`.
    Release,
    /// Destroys `b`'s node `nb2`.
    Destroy,
    /// Resets peer `r`, which owns a node.
    Reset,
    /// `bus1_open()` with an unknown flag (strace test: an errno).
    BadOpen,
    /// "child" to `a` with `BUS1_SEND_CONTINUE` (strace test).
    Continue,
}

/// The probe's calls, in order.
const OPS: [Op; 12] = [
    Op::Open,
    Op::NodeCreate,
    Op::Transfer,
    Op::Unicast,
    Op::Multicast,
    Op::SendFd,
    Op::SendHandle,
    Op::SendBoth,
    Op::Recv,
    Op::Release,
    Op::Destroy,
    Op::Reset,
];

/// The calls each policy must deny (all others must work).
const EXPECTED: &[(&str, &[Op])] = &[
    ("unicast-only", &[Op::Multicast]),
    ("no-fds", &[Op::SendFd, Op::SendBoth]),
    ("no-handles", &[Op::Transfer, Op::SendHandle, Op::SendBoth]),
    (
        "receive-only",
        &[
            Op::Open,
            Op::NodeCreate,
            Op::Transfer,
            Op::Unicast,
            Op::Multicast,
            Op::SendFd,
            Op::SendHandle,
            Op::SendBoth,
            Op::Destroy,
            Op::Reset,
        ],
    ),
    ("no-new-peers", &[Op::Open]),
];

fn expected_denials(name: &str) -> &'static [Op] {
    EXPECTED.iter().find(|(n, _)| *n == name).unwrap().1
}

/// What the sandboxed side has: its peer `b`, the peers `d` (a transfer
/// target) and `r` (to reset), and ids of `b`: handles to nodes of `a`
/// (`ha`, `h2`) and `c` (`hc`) and its own nodes `nb` and `nb2`.
#[derive(Clone, Copy, Debug)]
struct Sandbox {
    b: RawFd,
    d: RawFd,
    r: RawFd,
    ha: u64,
    hc: u64,
    h2: u64,
    nb: u64,
    nb2: u64,
}

impl Sandbox {
    fn to_env(self) -> String {
        let s = self;
        format!(
            "{} {} {} {} {} {} {} {}",
            s.b, s.d, s.r, s.ha, s.hc, s.h2, s.nb, s.nb2
        )
    }

    fn from_env(text: &str) -> Self {
        let v: Vec<u64> = text.split(' ').map(|w| w.parse().unwrap()).collect();
        let fd = |x: u64| x as RawFd;
        Self {
            b: fd(v[0]),
            d: fd(v[1]),
            r: fd(v[2]),
            ha: v[3],
            hc: v[4],
            h2: v[5],
            nb: v[6],
            nb2: v[7],
        }
    }
}

/// The memory the probe's calls point to.  Boxed: the addresses stay put.
struct Mem {
    /// Written by bus1_node_create() and bus1_handle_transfer().
    id: u64,
    nb: u64,
    h2: u64,
    nb2: u64,
    to_a: [u64; 1],
    to_ac: [u64; 2],
    carried: [u64; 1],
    fds: [RawFd; 1],
    vecs: [Bus1Vec; 6],
    msgs: [Bus1Message; 6],
    recv_buf: [u8; 16],
    recv_vec: Bus1Vec,
    recv: Bus1Recv,
}

impl Mem {
    fn new(s: &Sandbox, fd: RawFd) -> Box<Self> {
        let mut m = Box::new(Mem {
            id: 0,
            nb: s.nb,
            h2: s.h2,
            nb2: s.nb2,
            to_a: [s.ha],
            to_ac: [s.ha, s.hc],
            carried: [s.nb],
            fds: [fd],
            vecs: Default::default(),
            msgs: Default::default(),
            recv_buf: [0; 16],
            recv_vec: Bus1Vec::default(),
            recv: Bus1Recv::default(),
        });
        m.recv_vec = Bus1Vec {
            base: m.recv_buf.as_ptr() as u64,
            len: m.recv_buf.len() as u64,
        };
        m.recv.vecs = &m.recv_vec as *const Bus1Vec as u64;
        m.recv.n_vecs = 1;
        m
    }

    /// The registers of a bus1_send() of `payload` from `b` to `a` (and `c`
    /// for a multicast), carrying `nb` and /dev/null as `flags` say.
    fn send(
        &mut self,
        b: usize,
        slot: usize,
        payload: &'static [u8],
        multicast: bool,
        flags: u32,
    ) -> (usize, [usize; 6]) {
        self.vecs[slot] = Bus1Vec {
            base: payload.as_ptr() as u64,
            len: payload.len() as u64,
        };
        let handles = flags & BUS1_SEND_HANDLES != 0;
        let fds = flags & BUS1_SEND_FDS != 0;
        self.msgs[slot] = Bus1Message {
            vecs: &self.vecs[slot] as *const Bus1Vec as u64,
            n_vecs: 1,
            handles: if handles {
                self.carried.as_ptr() as u64
            } else {
                0
            },
            n_handles: u64::from(handles),
            errors: 0,
            fds: if fds { self.fds.as_ptr() as u64 } else { 0 },
            n_fds: u64::from(fds),
        };
        let (dsts, n) = if multicast {
            (self.to_ac.as_ptr(), 2)
        } else {
            (self.to_a.as_ptr(), 1)
        };
        let msg = &self.msgs[slot] as *const Bus1Message as usize;
        let size = std::mem::size_of::<Bus1Message>();
        (BUS1_SEND, [b, dsts as usize, n, msg, size, flags as usize])
    }

    /// The system call and registers of `op`.
    fn registers(&mut self, op: Op, s: &Sandbox) -> (usize, [usize; 6]) {
        let b = s.b as usize;
        let id = &mut self.id as *mut u64 as usize;
        match op {
            Op::Open => (BUS1_OPEN, [BUS1_OPEN_CLOEXEC as usize, 0, 0, 0, 0, 0]),
            Op::BadOpen => (
                BUS1_OPEN,
                [0x80 | BUS1_OPEN_CLOEXEC as usize, 0, 0, 0, 0, 0],
            ),
            Op::NodeCreate => (BUS1_NODE_CREATE, [b, id, 0, 0, 0, 0]),
            Op::Transfer => {
                let nb = &self.nb as *const u64 as usize;
                (BUS1_HANDLE_TRANSFER, [b, nb, s.d as usize, id, 0, 0])
            }
            Op::Unicast => self.send(b, 0, b"unicast", false, 0),
            Op::Multicast => self.send(b, 1, b"multicast", true, 0),
            Op::SendFd => self.send(b, 2, b"fd", false, BUS1_SEND_FDS),
            Op::SendHandle => self.send(b, 3, b"handle", false, BUS1_SEND_HANDLES),
            Op::SendBoth => self.send(b, 4, b"both", false, BUS1_SEND_HANDLES | BUS1_SEND_FDS),
            Op::Continue => self.send(b, 5, b"child", false, BUS1_SEND_CONTINUE),
            Op::Recv => {
                let args = &mut self.recv as *mut Bus1Recv as usize;
                (
                    BUS1_RECV,
                    [b, args, std::mem::size_of::<Bus1Recv>(), 0, 0, 0],
                )
            }
            Op::Release => {
                let h2 = &self.h2 as *const u64 as usize;
                (BUS1_HANDLE_RELEASE, [b, h2, 0, 0, 0, 0])
            }
            Op::Destroy => {
                let nb2 = &self.nb2 as *const u64 as usize;
                (BUS1_NODES_DESTROY, [b, nb2, 1, 0, 0, 0])
            }
            Op::Reset => (BUS1_PEER_RESET, [s.r as usize, 0, 0, 0, 0, 0]),
        }
    }
}

/// The ways into the kernel of a process on x86_64.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Entry {
    X86_64,
    I386,
    X32,
}

/// A system call through the i386 entry (`int 0x80`), as a 32-bit program
/// makes it: the number and arguments are truncated to 32 bits.
fn call_i386(nr: usize, args: [usize; 6]) -> Result<usize, Errno> {
    let ret: u32;
    // SAFETY: `int 0x80` returns with every register but eax preserved (r8
    // to r11 are declared clobbered for older kernels); rbx and rbp, which
    // cannot be operands, are saved on the stack.  The caller passes no
    // pointer the kernel could write through (see `run`).
    unsafe {
        std::arch::asm!(
            "push rbx",
            "push rbp",
            "mov ebx, {a0:e}",
            "mov ebp, {a5:e}",
            "int 0x80",
            "pop rbp",
            "pop rbx",
            a0 = in(reg) args[0] as u32,
            a5 = in(reg) args[5] as u32,
            inlateout("eax") nr as u32 => ret,
            in("ecx") args[1] as u32,
            in("edx") args[2] as u32,
            in("esi") args[3] as u32,
            in("edi") args[4] as u32,
            out("r8") _,
            out("r9") _,
            out("r10") _,
            out("r11") _,
        );
    }
    match ret as i32 {
        r @ -4095..=-1 => Err(Errno::from_raw(-r)),
        _ => Ok(ret as usize),
    }
}

/// Makes `op`'s call through `entry` and appends a report line:
/// `probe: TID ENTRY OP NR A0 .. A5 RESULT [got=PAYLOAD]`, RESULT being
/// `=VALUE` or `!ERRNO`.
fn run(op: Op, entry: Entry, s: &Sandbox, m: &mut Mem, out: &mut String) -> Result<usize, Errno> {
    let (nr, mut args) = m.registers(op, s);
    let res = match entry {
        // SAFETY: the pointers point into `m`, valid for what the call does.
        Entry::X86_64 => unsafe { sys::call(nr, args) },
        _ => {
            // Pointers (all above 4 GiB in this process) become NULL: no
            // filter looks at them, and a call a filter wrongly lets through
            // fails with EFAULT instead of touching memory.
            args = args.map(|a| if a > u32::MAX as usize { 0 } else { a });
            if entry == Entry::I386 {
                call_i386(nr, args)
            } else {
                // SAFETY: no pointers.
                unsafe { sys::call(nr | X32_SYSCALL_BIT as usize, args) }
            }
        }
    };
    let tid = gettid();
    let _ = write!(out, "probe: {tid} {entry:?} {op:?} {nr}");
    for a in args {
        let _ = write!(out, " {a}");
    }
    let _ = match res {
        Ok(v) => write!(out, " ={v}"),
        Err(e) => write!(out, " !{}", e as i32),
    };
    match (op, res) {
        (Op::Open, Ok(fd)) => {
            // SAFETY: a new descriptor nobody else owns.
            drop(unsafe { OwnedFd::from_raw_fd(fd as RawFd) });
        }
        (Op::Recv, Ok(_)) => {
            let r = &m.recv;
            let payload = &m.recv_buf[..(r.n_bytes as usize).min(m.recv_buf.len())];
            let kind = if r.r#type == BUS1_MSG_DATA {
                ""
            } else {
                "notification:"
            };
            let _ = write!(out, " got={kind}{}", String::from_utf8_lossy(payload));
        }
        _ => {}
    }
    out.push('\n');
    res
}

/// The sandboxed side: every call of [`OPS`]; with `compat`, each that
/// fails with that errno (a denial) again through the i386 and x32
/// entries.  Returns the report.
fn probe_calls(s: &Sandbox, compat: Option<Errno>) -> String {
    let devnull = File::open("/dev/null").unwrap();
    let mut m = Mem::new(s, devnull.as_raw_fd());
    let mut out = String::new();
    for op in OPS {
        let res = run(op, Entry::X86_64, s, &mut m, &mut out);
        if compat.is_some_and(|errno| res == Err(errno)) {
            for entry in [Entry::I386, Entry::X32] {
                let _ = run(op, entry, s, &mut m, &mut out);
            }
        }
    }
    out
}

/// The sandboxed side as a process of its own: the libseccomp and strace
/// tests run this test binary with `BUS1_FILTER_PROBE` set (`MODE SANDBOX`)
/// under `bus1-seccomp` or `bus1-strace`.  Modes: `calls` (the probe's
/// calls), `i386` (`bus1_open()` through `int 0x80`), `strace` (the calls,
/// then two more in a forked child).
#[test]
#[ignore = "the sandboxed side of other tests, which run it in a process of its own"]
fn probe() {
    let Ok(spec) = std::env::var("BUS1_FILTER_PROBE") else {
        return;
    };
    let (mode, sandbox) = spec.split_once(' ').unwrap_or((&spec, ""));
    let mut stdout = std::io::stdout();
    match mode {
        "calls" => print!("{}", probe_calls(&Sandbox::from_env(sandbox), None)),
        "i386" => {
            // The policy is expected to kill the process: no core dump.
            let _ = nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_CORE, 0, 0);
            println!("probe: i386 bus1_open next");
            stdout.flush().unwrap();
            let res = call_i386(BUS1_OPEN, [BUS1_OPEN_CLOEXEC as usize, 0, 0, 0, 0, 0]);
            println!("probe: i386 bus1_open returned {res:?}");
        }
        "strace" => {
            let s = Sandbox::from_env(sandbox);
            print!("{}", probe_calls(&s, None));
            stdout.flush().unwrap();
            // SAFETY: the child makes its calls, prints and exits.
            match unsafe { fork() }.unwrap() {
                ForkResult::Child => {
                    let devnull = File::open("/dev/null").unwrap();
                    let mut m = Mem::new(&s, devnull.as_raw_fd());
                    let mut out = String::new();
                    for op in [Op::BadOpen, Op::Continue] {
                        let _ = run(op, Entry::X86_64, &s, &mut m, &mut out);
                    }
                    let _ = stdout.write_all(out.as_bytes());
                    let _ = stdout.flush();
                    // SAFETY: leave without the parent's exit handlers.
                    unsafe { libc::_exit(0) }
                }
                ForkResult::Parent { child } => {
                    let status = nix::sys::wait::waitpid(child, None).unwrap();
                    assert_eq!(status, nix::sys::wait::WaitStatus::Exited(child, 0));
                }
            }
        }
        _ => panic!("unknown probe mode {mode:?}"),
    }
}

/// A call the probe reported.
#[derive(Debug)]
struct Reported {
    tid: i32,
    entry: String,
    op: String,
    nr: usize,
    args: [usize; 6],
    res: Result<usize, Errno>,
    got: Option<String>,
}

fn parse_report(text: &str) -> Vec<Reported> {
    let mut calls = Vec::new();
    for line in text.lines() {
        // libtest's "test filter::probe ... " may precede the first one.
        let Some((_, rest)) = line.split_once("probe: ") else {
            continue;
        };
        let (rest, got) = match rest.split_once(" got=") {
            Some((rest, got)) => (rest, Some(got.to_owned())),
            None => (rest, None),
        };
        let w: Vec<&str> = rest.split(' ').collect();
        if w.len() != 11 {
            continue;
        }
        let num = |s: &str| s.parse::<usize>().unwrap();
        let res = match w[10].split_at(1) {
            ("=", v) => Ok(num(v)),
            (_, e) => Err(Errno::from_raw(e.parse().unwrap())),
        };
        calls.push(Reported {
            tid: w[0].parse().unwrap(),
            entry: w[1].to_owned(),
            op: w[2].to_owned(),
            nr: num(w[3]),
            args: std::array::from_fn(|i| num(w[4 + i])),
            res,
            got,
        });
    }
    calls
}

/// The result a call of the probe has when it is allowed: `None` for any
/// file descriptor.
fn allowed_result(op: Op) -> Option<usize> {
    match op {
        Op::Open => None,
        Op::Multicast => Some(2),
        Op::Unicast | Op::SendFd | Op::SendHandle | Op::SendBoth | Op::Continue => Some(1),
        _ => Some(0),
    }
}

/// Checks the probe's report: the calls in `denied` failed with `errno`
/// (through every entry, with `compat`), all others worked.
fn check_report(calls: &[Reported], errno: Errno, denied: &[Op], compat: bool) -> Vec<String> {
    let mut problems = Vec::new();
    for op in OPS {
        let name = format!("{op:?}");
        let find = |entry: &str| calls.iter().find(|c| c.op == name && c.entry == entry);
        let Some(native) = find("X86_64") else {
            problems.push(format!("{op:?}: not reported"));
            continue;
        };
        if denied.contains(&op) {
            if native.res != Err(errno) {
                problems.push(format!(
                    "{op:?}: {:?}, expected {errno} (denied)",
                    native.res
                ));
            }
            for entry in ["I386", "X32"].iter().filter(|_| compat) {
                match find(entry) {
                    Some(c) if c.res == Err(errno) => {}
                    Some(c) => problems.push(format!(
                        "{op:?} through the {entry} entry: {:?}, expected {errno}",
                        c.res
                    )),
                    None => problems.push(format!("{op:?}: not tried through {entry}")),
                }
            }
        } else {
            let ok = match (native.res, allowed_result(op)) {
                (Ok(_), None) => true,
                (Ok(v), Some(want)) => v == want,
                (Err(_), _) => false,
            };
            if !ok {
                problems.push(format!(
                    "{op:?}: {:?}, expected it to work ({:?})",
                    native.res,
                    allowed_result(op)
                ));
            }
            if op == Op::Recv && native.got.as_deref() != Some("to-b") {
                problems.push(format!("Recv got {:?}, expected \"to-b\"", native.got));
            }
        }
    }
    problems
}

// ---------------------------------------------------------------------------
// The peers the probe works on, and what its calls leave behind

/// `b` is the sandboxed peer.  It holds handles `ha` and `h2` to nodes
/// `na` and `na2` of `a`, and `hc` to a node of `c`; it owns the nodes `nb`
/// (to which `a` holds a handle and has sent "to-b") and `nb2`.  `d` holds
/// nothing, `r` owns one node.  `a` and `c` are close-on-exec: only `b`,
/// `d` and `r` reach a probe that is a process of its own.
struct World {
    a: Peer,
    b: Peer,
    c: Peer,
    d: Peer,
    r: Peer,
    na2: u64,
    nb2: u64,
    sandbox: Sandbox,
}

impl World {
    fn new() -> Self {
        let open = |flags| Peer::open(BUS1_OPEN_NONBLOCK | flags).unwrap();
        let (a, c) = (open(BUS1_OPEN_CLOEXEC), open(BUS1_OPEN_CLOEXEC));
        let (b, d, r) = (open(0), open(0), open(0));
        let connect = |owner: &Peer| {
            let node = owner.create_node().unwrap();
            (node, owner.transfer(node, Some(&b)).unwrap())
        };
        let (_, ha) = connect(&a);
        let (na2, h2) = connect(&a);
        let (_, hc) = connect(&c);
        let nb = b.create_node().unwrap();
        let hb = b.transfer(nb, Some(&a)).unwrap();
        a.send(hb, &[b"to-b"], &[]).unwrap();
        let nb2 = b.create_node().unwrap();
        r.create_node().unwrap();
        let sandbox = Sandbox {
            b: b.as_raw_fd(),
            d: d.as_raw_fd(),
            r: r.as_raw_fd(),
            ha,
            hc,
            h2,
            nb,
            nb2,
        };
        Self {
            a,
            b,
            c,
            d,
            r,
            na2,
            nb2,
            sandbox,
        }
    }

    /// Checks what the probe's calls did: exactly the allowed ones had
    /// their effects, the denied ones none.
    fn check_effects(&self, denied: &[Op]) -> Vec<String> {
        let ran = |op: Op| !denied.contains(&op);
        let mut problems = Vec::new();
        let mut expect = |what: &str, got: Vec<String>, want: Vec<String>| {
            if got != want {
                problems.push(format!("{what}: {got:?}, expected {want:?}"));
            }
        };
        let mut to_a = Vec::new();
        for (op, text) in [
            (Op::Unicast, "unicast handles=0 fds=0"),
            (Op::Multicast, "multicast handles=0 fds=0"),
            (Op::SendFd, "fd handles=0 fds=1"),
            (Op::SendHandle, "handle handles=1 fds=0"),
            (Op::SendBoth, "both handles=1 fds=1"),
        ] {
            if ran(op) {
                to_a.push(text.to_owned());
            }
        }
        if ran(Op::Release) {
            to_a.push(format!("release {}", self.na2));
        }
        expect("a's queue", queue(&self.a), to_a);
        let to_c = ["multicast handles=0 fds=0".to_owned()];
        let to_c = if ran(Op::Multicast) { &to_c[..] } else { &[] };
        expect("c's queue", queue(&self.c), to_c.to_vec());
        let mut to_b = Vec::new();
        if !ran(Op::Recv) {
            to_b.push("to-b handles=0 fds=0".to_owned());
        }
        if ran(Op::Destroy) {
            to_b.push(format!("destroy {}", self.nb2));
        }
        expect("b's queue", queue(&self.b), to_b);
        let count = |n: bool| usize::from(n).to_string();
        let nodes = 2 + usize::from(ran(Op::NodeCreate)) - usize::from(ran(Op::Destroy));
        expect(
            "b's nodes",
            vec![objects(&self.b, "nodes")],
            vec![nodes.to_string()],
        );
        let held = 3 - usize::from(ran(Op::Release));
        expect(
            "b's handles",
            vec![objects(&self.b, "held-handles")],
            vec![held.to_string()],
        );
        expect(
            "d's handles",
            vec![objects(&self.d, "held-handles")],
            vec![count(ran(Op::Transfer))],
        );
        expect(
            "r's nodes",
            vec![objects(&self.r, "nodes")],
            vec![count(!ran(Op::Reset))],
        );
        problems
    }
}

/// Everything queued on `p`, described; received descriptors are closed.
fn queue(p: &Peer) -> Vec<String> {
    let mut got = Vec::new();
    loop {
        let (mut buf, mut handles, mut fds) = ([0u8; 64], [0u64; 4], [-1; 4]);
        match p.recv_with_fds(&mut buf, &mut handles, &mut fds) {
            Ok(r) => {
                for &fd in &fds[..r.n_fds] {
                    // SAFETY: a descriptor the receive installed for us.
                    drop(unsafe { OwnedFd::from_raw_fd(fd) });
                }
                got.push(match r.kind {
                    BUS1_MSG_DATA => format!(
                        "{} handles={} fds={}",
                        String::from_utf8_lossy(&buf[..r.n_bytes]),
                        r.n_handles,
                        r.n_fds
                    ),
                    BUS1_MSG_NODE_RELEASE => format!("release {}", r.id),
                    BUS1_MSG_NODE_DESTROY => format!("destroy {}", r.id),
                    kind => format!("type {kind}"),
                });
            }
            Err((Errno::EAGAIN, _)) => return got,
            Err((e, _)) => panic!("bus1_recv: {e}"),
        }
    }
}

/// The nodes or held handles of peer `p` (`bus1-peer-*` in fdinfo).
fn objects(p: &Peer, what: &str) -> String {
    let line = bus1::fdinfo_field(p.as_fd(), &format!("bus1-peer-{what}")).unwrap();
    line.split_whitespace().next().unwrap().to_owned()
}

// ---------------------------------------------------------------------------
// The policies, compiled here

/// Runs the probe in a child under the policy `name` and checks its report
/// and the effects.
fn check_policy(name: &str) {
    let policy = policy(name);
    let denied = expected_denials(name);
    let world = World::new();
    let sandbox = world.sandbox;
    let (rd, wr) = nix::unistd::pipe().unwrap();
    let code = in_child(|| {
        install(policy);
        let report = probe_calls(&sandbox, Some(policy.errno));
        // A few KiB: fits the pipe, which is read once the child is gone.
        File::from(wr.try_clone().unwrap())
            .write_all(report.as_bytes())
            .unwrap();
        0
    });
    drop(wr);
    let mut report = String::new();
    File::from(rd).read_to_string(&mut report).unwrap();
    assert_eq!(code, 0, "probe under {name}:\n{report}");
    let mut problems = check_report(&parse_report(&report), policy.errno, denied, true);
    problems.extend(world.check_effects(denied));
    assert!(
        problems.is_empty(),
        "policy {name}:\n  {}\nreport:\n{report}",
        problems.join("\n  ")
    );
}

/// The control: without a filter every call of the probe works, so the
/// denials below are the policies'.  It also shows why a filter must look
/// at the architecture: through `int 0x80` the i386 entry reaches bus1
/// with the same numbers.
#[test]
fn without_a_policy_every_probe_call_works() {
    let world = World::new();
    let sandbox = world.sandbox;
    let (rd, wr) = nix::unistd::pipe().unwrap();
    let code = in_child(|| {
        let mut report = probe_calls(&sandbox, None);
        let args = [BUS1_OPEN_CLOEXEC as usize, 0, 0, 0, 0, 0];
        let i386 = call_i386(BUS1_OPEN, args).map(|_| "fd");
        // SAFETY: no pointers.
        let x32 = unsafe { sys::call(BUS1_OPEN | X32_SYSCALL_BIT as usize, args) }.map(|_| "fd");
        let _ = writeln!(report, "i386 bus1_open: {i386:?}");
        let _ = writeln!(report, "x32 bus1_open: {x32:?}");
        File::from(wr.try_clone().unwrap())
            .write_all(report.as_bytes())
            .unwrap();
        0
    });
    drop(wr);
    let mut report = String::new();
    File::from(rd).read_to_string(&mut report).unwrap();
    assert_eq!(code, 0, "{report}");
    let mut problems = check_report(&parse_report(&report), Errno::EACCES, &[], false);
    problems.extend(world.check_effects(&[]));
    assert!(problems.is_empty(), "{}\n{report}", problems.join("\n"));
    assert!(report.contains("i386 bus1_open: Ok(\"fd\")"), "{report}");
    // Without CONFIG_X86_X32_ABI the x32 entry has no bus1 (nor anything).
    assert!(
        report.contains("x32 bus1_open: Err(ENOSYS)") || report.contains("x32 bus1_open: Ok"),
        "{report}"
    );
}

/// (a) Only unicasts: a multicast is denied.
#[test]
fn seccomp_policy_unicast_only() {
    check_policy("unicast-only");
}

/// (b) No file descriptors in messages.
#[test]
fn seccomp_policy_no_fd_passing() {
    check_policy("no-fds");
}

/// (c) No handles passed on, in messages or by transfer.
#[test]
fn seccomp_policy_no_handle_passing() {
    check_policy("no-handles");
}

/// (d) Receive only: bus1_recv() and bus1_handle_release().
#[test]
fn seccomp_policy_receive_only() {
    check_policy("receive-only");
}

/// (e) No new peers.
#[test]
fn seccomp_policy_no_new_peers() {
    check_policy("no-new-peers");
}

// ---------------------------------------------------------------------------
// The libseccomp example

const SECCOMP_TOOL: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../target/observe/bus1-seccomp"
);

/// Arguments that make this test binary run [`probe`] only.
const PROBE_ARGS: [&str; 5] = [
    "--exact",
    "filter::probe",
    "--ignored",
    "--nocapture",
    "--test-threads=1",
];

fn run_probe(program: &str, args: &[&str], mode: &str) -> Output {
    let me = std::env::current_exe().unwrap();
    Command::new(program)
        .args(args)
        .arg(&me)
        .args(PROBE_ARGS)
        .env("BUS1_FILTER_PROBE", mode)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"))
}

/// `bus1-seccomp` (libseccomp, raw numbers) installs each policy and execs
/// the probe: the same calls are denied and work as with the filters
/// compiled here; libseccomp has no names for the calls; and a call through
/// the i386 entry, which libseccomp cannot filter by raw number, kills the
/// process (the filter's action for a foreign architecture).
#[test]
fn libseccomp_example_installs_each_policy() {
    assert!(
        std::path::Path::new(SECCOMP_TOOL).exists(),
        "{SECCOMP_TOOL} is missing: run scripts/build-observe.sh"
    );
    for (name, denied) in EXPECTED {
        let world = World::new();
        let mode = format!("calls {}", world.sandbox.to_env());
        let out = run_probe(SECCOMP_TOOL, &["-v", name], &mode);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "{name}: {}\n{stdout}{stderr}",
            out.status
        );
        // -v: how each call was resolved (by name, or its raw number).
        for (call, nr) in [
            ("bus1_open", BUS1_OPEN),
            ("bus1_node_create", BUS1_NODE_CREATE),
            ("bus1_handle_transfer", BUS1_HANDLE_TRANSFER),
            ("bus1_handle_release", BUS1_HANDLE_RELEASE),
            ("bus1_nodes_destroy", BUS1_NODES_DESTROY),
            ("bus1_send", BUS1_SEND),
            ("bus1_recv", BUS1_RECV),
            ("bus1_peer_reset", BUS1_PEER_RESET),
        ] {
            let line = format!("seccomp_syscall_resolve_name(\"{call}\")");
            assert!(
                stderr
                    .lines()
                    .any(|l| l.contains(&line) && l.ends_with(&format!("using {nr}"))),
                "{name}: no '{line} ... using {nr}' in:\n{stderr}"
            );
        }
        let mut problems = check_report(&parse_report(&stdout), Errno::EACCES, denied, false);
        problems.extend(world.check_effects(denied));
        assert!(
            problems.is_empty(),
            "bus1-seccomp {name}:\n  {}\n{stdout}{stderr}",
            problems.join("\n  ")
        );
    }
    let out = run_probe(SECCOMP_TOOL, &["no-new-peers"], "i386");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("probe: i386 bus1_open next"), "{stdout}");
    assert_eq!(
        out.status.signal(),
        Some(libc::SIGSYS),
        "{}\n{stdout}",
        out.status
    );
}

// ---------------------------------------------------------------------------
// strace

const STRACE_WRAPPER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../observe/strace/bus1-strace");

/// `flags` as `NAME|NAME|0xREST`, or `0`.
fn flag_names(flags: usize, names: &[(u32, &str)]) -> String {
    let mut rest = flags as u32;
    let mut parts = Vec::new();
    for &(bit, name) in names {
        if rest & bit != 0 {
            parts.push(name.to_owned());
            rest &= !bit;
        }
    }
    if rest != 0 || parts.is_empty() {
        parts.push(if rest == 0 {
            "0".to_owned()
        } else {
            format!("{rest:#x}")
        });
    }
    parts.join("|")
}

/// What bus1-strace shows for a reported call (with single spaces).
fn strace_text(c: &Reported) -> String {
    let a = c.args;
    let fd = |x: usize| (x as u32 as i32).to_string();
    let ptr = |x: usize| {
        if x == 0 {
            "NULL".to_owned()
        } else {
            format!("{x:#x}")
        }
    };
    let none = |x: usize| flag_names(x, &[]);
    let call = match c.nr {
        BUS1_OPEN => {
            let names = [
                (BUS1_OPEN_CLOEXEC, "BUS1_OPEN_CLOEXEC"),
                (BUS1_OPEN_NONBLOCK, "BUS1_OPEN_NONBLOCK"),
            ];
            format!("bus1_open(flags={})", flag_names(a[0], &names))
        }
        BUS1_NODE_CREATE => format!(
            "bus1_node_create(peer={}, id={}, flags={})",
            fd(a[0]),
            ptr(a[1]),
            none(a[2])
        ),
        BUS1_HANDLE_TRANSFER => format!(
            "bus1_handle_transfer(src_peer={}, src_id={}, dst_peer={}, dst_id={}, flags={})",
            fd(a[0]),
            ptr(a[1]),
            fd(a[2]),
            ptr(a[3]),
            none(a[4])
        ),
        BUS1_HANDLE_RELEASE => format!(
            "bus1_handle_release(peer={}, id={}, flags={})",
            fd(a[0]),
            ptr(a[1]),
            none(a[2])
        ),
        BUS1_NODES_DESTROY => format!(
            "bus1_nodes_destroy(peer={}, ids={}, n_ids={}, flags={})",
            fd(a[0]),
            ptr(a[1]),
            a[2],
            none(a[3])
        ),
        BUS1_SEND => {
            let names = [
                (BUS1_SEND_CONTINUE, "BUS1_SEND_CONTINUE"),
                (BUS1_SEND_HANDLES, "BUS1_SEND_HANDLES"),
                (BUS1_SEND_FDS, "BUS1_SEND_FDS"),
            ];
            format!(
                "bus1_send(peer={}, destinations={}, n_destinations={}, message={}, size={}, flags={})",
                fd(a[0]),
                ptr(a[1]),
                a[2],
                ptr(a[3]),
                a[4],
                flag_names(a[5], &names)
            )
        }
        BUS1_RECV => format!(
            "bus1_recv(peer={}, args={}, size={}, flags={})",
            fd(a[0]),
            ptr(a[1]),
            a[2],
            none(a[3])
        ),
        BUS1_PEER_RESET => format!("bus1_peer_reset(peer={}, flags={})", fd(a[0]), none(a[1])),
        nr => panic!("not a bus1 call: {nr}"),
    };
    let ret = match c.res {
        Ok(v) => v.to_string(),
        Err(e) => format!("-1 {e:?} ({})", e.desc()),
    };
    format!("{call} = {ret}")
}

/// strace's output as (pid, text) lines, whitespace runs made single
/// spaces, and a call that another process interrupted (`... <unfinished
/// ...>`, then `<... NAME resumed>...`) joined into one line again.  The
/// pid is there once strace traces more than one process.
fn strace_lines(trace: &str) -> Vec<(Option<i32>, String)> {
    let mut lines: Vec<(Option<i32>, String)> = Vec::new();
    let mut pending: HashMap<Option<i32>, usize> = HashMap::new();
    for line in trace.lines() {
        let (pid, text) = match line.strip_prefix("[pid ").and_then(|l| l.split_once("] ")) {
            Some((pid, text)) => (pid.trim().parse().ok(), text),
            None => (None, line),
        };
        if let Some(head) = text.strip_suffix(" <unfinished ...>") {
            pending.insert(pid, lines.len());
            lines.push((pid, head.to_owned()));
            continue;
        }
        if let Some((_, tail)) = text
            .strip_prefix("<... ")
            .and_then(|t| t.split_once(" resumed>"))
        {
            if let Some(i) = pending.remove(&pid).or_else(|| pending.remove(&None)) {
                lines[i].1.push_str(tail);
                continue;
            }
        }
        lines.push((pid, text.to_owned()));
    }
    lines
        .into_iter()
        .map(|(pid, text)| (pid, text.split_whitespace().collect::<Vec<_>>().join(" ")))
        .collect()
}

/// `bus1-strace -f` names every bus1 call of the probe and of the child it
/// forks, with the arguments decoded (fds, pointers, counts, symbolic
/// flags) and the results (a count, an fd, an errno); no call is left as
/// `syscall_0x1d9(...)`.
#[test]
fn strace_wrapper_names_and_decodes_every_call() {
    let world = World::new();
    let mode = format!("strace {}", world.sandbox.to_env());
    let out = run_probe(STRACE_WRAPPER, &["-f"], &mode);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let trace = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{}\n{stdout}\n{trace}", out.status);
    let calls = parse_report(&stdout);
    let parent = calls.first().expect("no calls reported").tid;
    let child: Vec<&Reported> = calls.iter().filter(|c| c.tid != parent).collect();
    assert_eq!(
        (calls.len(), child.len()),
        (OPS.len() + 2, 2),
        "the probe's report:\n{stdout}"
    );
    let mut lines: Vec<(Option<i32>, String)> = strace_lines(&trace)
        .into_iter()
        .filter(|(_, text)| text.starts_with("bus1_"))
        .collect();
    let mut problems = Vec::new();
    for c in &calls {
        let want = strace_text(c);
        // The child's lines carry its pid: strace traces two processes then.
        let pid_ok = |pid: Option<i32>| pid == Some(c.tid) || (pid.is_none() && c.tid == parent);
        match lines
            .iter()
            .position(|(pid, text)| *text == want && pid_ok(*pid))
        {
            Some(i) => drop(lines.remove(i)),
            None => problems.push(format!("[pid {}] {want}", c.tid)),
        }
    }
    for (pid, text) in &lines {
        problems.push(format!("unexpected: {pid:?} {text}"));
    }
    for nr in BUS1_OPEN..=BUS1_PEER_RESET {
        if trace.contains(&format!("syscall_{nr:#x}(")) {
            problems.push(format!("syscall_{nr:#x} left undecoded"));
        }
    }
    assert!(
        problems.is_empty(),
        "not in the trace as expected:\n  {}\ntrace:\n{trace}",
        problems.join("\n  ")
    );
}

/// The demo (`examples/demo`, built by scripts/test.sh) under
/// `bus1-strace -f -e trace=none`: strace 6.1 traces the calls it has no
/// name for whatever `-e trace=` says, so exactly the demo's bus1 calls
/// appear, named and decoded, in the demo's fixed order.  Pointers (which
/// move with ASLR) are compared as `PTR`.
#[test]
fn strace_f_on_the_demo_names_every_call() {
    const DEMO: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../target/release/examples/demo"
    );
    const EXPECTED: &[&str] = &[
        "bus1_open(flags=BUS1_OPEN_CLOEXEC) = 6",
        "bus1_open(flags=BUS1_OPEN_CLOEXEC|BUS1_OPEN_NONBLOCK) = 7",
        "bus1_open(flags=0x80) = -1 EINVAL (Invalid argument)",
        "bus1_node_create(peer=6, id=PTR, flags=0) = 0",
        "bus1_send(peer=7, destinations=PTR, n_destinations=1, message=PTR, size=56, flags=0) = -1 ENXIO (No such device or address)",
        "bus1_handle_transfer(src_peer=6, src_id=PTR, dst_peer=7, dst_id=PTR, flags=0) = 0",
        "bus1_send(peer=7, destinations=PTR, n_destinations=1, message=PTR, size=56, flags=0) = 1",
        "bus1_recv(peer=6, args=PTR, size=96, flags=0) = 0",
        "bus1_handle_release(peer=7, id=PTR, flags=0) = 0",
        "bus1_recv(peer=6, args=PTR, size=96, flags=0) = 0",
        "bus1_handle_transfer(src_peer=6, src_id=PTR, dst_peer=7, dst_id=PTR, flags=0) = 0",
        "bus1_nodes_destroy(peer=6, ids=PTR, n_ids=1, flags=0) = 0",
        "bus1_recv(peer=7, args=PTR, size=96, flags=0) = 0",
        "bus1_recv(peer=6, args=PTR, size=96, flags=0) = 0",
        "bus1_send(peer=7, destinations=PTR, n_destinations=1, message=PTR, size=56, flags=0) = -1 EHOSTUNREACH (No route to host)",
        "bus1_open(flags=BUS1_OPEN_NONBLOCK) = 8",
        "bus1_node_create(peer=6, id=PTR, flags=0) = 0",
        "bus1_node_create(peer=8, id=PTR, flags=0) = 0",
        "bus1_handle_transfer(src_peer=6, src_id=PTR, dst_peer=7, dst_id=PTR, flags=0) = 0",
        "bus1_handle_transfer(src_peer=8, src_id=PTR, dst_peer=7, dst_id=PTR, flags=0) = 0",
        "bus1_send(peer=7, destinations=PTR, n_destinations=3, message=PTR, size=56, flags=0) = -1 EHOSTUNREACH (No route to host)",
        "bus1_send(peer=7, destinations=PTR, n_destinations=3, message=PTR, size=56, flags=BUS1_SEND_CONTINUE) = 2",
        "bus1_recv(peer=6, args=PTR, size=96, flags=0) = 0",
        "bus1_recv(peer=8, args=PTR, size=96, flags=0) = 0",
        "bus1_send(peer=7, destinations=PTR, n_destinations=1, message=PTR, size=56, flags=BUS1_SEND_FDS) = -1 EOPNOTSUPP (Operation not supported)",
        "bus1_send(peer=7, destinations=PTR, n_destinations=1, message=PTR, size=56, flags=BUS1_SEND_FDS) = 1",
        "bus1_recv(peer=8, args=PTR, size=96, flags=0) = 0",
    ];
    assert!(
        std::path::Path::new(DEMO).exists(),
        "{DEMO} missing: scripts/test.sh builds it (cargo build --release --example demo)"
    );
    let out = Command::new(STRACE_WRAPPER)
        .args(["-f", "-e", "trace=none", DEMO])
        .output()
        .unwrap();
    let trace = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{}\n{trace}", out.status);
    // Pointers as PTR, runs of spaces (strace's alignment) as one.
    let masked: Vec<String> = trace
        .lines()
        .filter(|l| l.starts_with("bus1_") || l.contains("syscall_0x"))
        .map(|l| {
            let words: Vec<String> = l
                .split_whitespace()
                .map(|w| {
                    let (head, tail) = w.split_at(w.find("0x7f").unwrap_or(w.len()));
                    if tail.is_empty() {
                        w.to_owned()
                    } else {
                        let end = tail.find(|c: char| !c.is_ascii_hexdigit() && c != 'x');
                        format!("{head}PTR{}", end.map_or("", |e| &tail[e..]))
                    }
                })
                .collect();
            words.join(" ")
        })
        .collect();
    assert_eq!(masked, EXPECTED, "trace:\n{trace}");
}
