// SPDX-License-Identifier: GPL-2.0
//! Tests that run inside a booted kernel with bus1 (see scripts/test.sh).
//!
//! They need root (debugfs, tracefs, rlimits) and must run one at a time
//! (`--test-threads=1`): the object counters they check are system-wide.

use std::fs;
use std::os::fd::{AsFd, AsRawFd};
use std::process::Command;

use bus1::{BUS1_OPEN_CLOEXEC, BUS1_OPEN_NONBLOCK, Errno, Peer, sys};
use nix::fcntl::{FcntlArg, FdFlag, OFlag, fcntl};
use nix::sys::resource::{Resource, getrlimit, setrlimit};
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::{ForkResult, fork};

mod accounting;
mod bpf;
mod compat32;
mod creds;
mod fds;
mod filter;
mod hardening;
mod limits;
mod messaging;
mod multicast;
mod perf;
mod quota;
mod reset;
mod robust;
mod trace;

const DEBUGFS: &str = "/sys/kernel/debug";
const TRACEFS: &str = "/sys/kernel/tracing";

fn ensure_mounted(fstype: &str, path: &str) {
    let mounts = fs::read_to_string("/proc/self/mounts").unwrap();
    if !mounts
        .lines()
        .any(|l| l.split_whitespace().nth(1) == Some(path))
    {
        nix::mount::mount(
            Some(fstype),
            path,
            Some(fstype),
            nix::mount::MsFlags::empty(),
            None::<&str>,
        )
        .unwrap_or_else(|e| panic!("mount {fstype} on {path}: {e}"));
    }
}

/// Live bus1 objects of one kind, from debugfs.
pub(crate) fn live_objects(kind: &str) -> i64 {
    ensure_mounted("debugfs", DEBUGFS);
    let text = fs::read_to_string(format!("{DEBUGFS}/bus1/objects")).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(kind)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no '{kind}' in bus1/objects: {text:?}"))
}

fn fd_link(fd: i32) -> String {
    fs::read_link(format!("/proc/self/fd/{fd}"))
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

/// Records a measurement: appended to the file `BUS1_STATS_FILE` names
/// (scripts/test.sh shows it next to the results), else printed.
pub(crate) fn report(line: &str) {
    use std::io::Write;
    match std::env::var_os("BUS1_STATS_FILE") {
        Some(path) => {
            let mut file = fs::OpenOptions::new()
                .append(true)
                .create(true)
                .open(path)
                .unwrap();
            writeln!(file, "{line}").unwrap();
        }
        None => println!("{line}"),
    }
}

/// Runs `child` in a forked process and returns its exit code.
pub(crate) fn in_child(child: impl FnOnce() -> i32) -> i32 {
    in_child_pid(&mut 0, child)
}

/// `in_child()` that also tells the child's pid (in the caller's pid
/// namespace).
pub(crate) fn in_child_pid(pid: &mut i32, child: impl FnOnce() -> i32) -> i32 {
    // SAFETY: the test binary runs its tests on one thread; the child only
    // runs `child` and exits.
    match unsafe { fork() }.unwrap() {
        ForkResult::Child => {
            let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(child)).unwrap_or(101);
            // SAFETY: leave the child without running the parent's exit handlers.
            unsafe { nix::libc::_exit(code) }
        }
        ForkResult::Parent { child } => {
            *pid = child.as_raw();
            match waitpid(child, None).unwrap() {
                WaitStatus::Exited(_, code) => code,
                status => panic!("child ended with {status:?}"),
            }
        }
    }
}

#[test]
fn open_returns_bus1_peer_fd() {
    let peer = Peer::open(0).unwrap();
    assert!(peer.as_raw_fd() >= 0);
    assert_eq!(fd_link(peer.as_raw_fd()), "anon_inode:[bus1]");
    let fl = OFlag::from_bits_truncate(fcntl(&peer, FcntlArg::F_GETFL).unwrap());
    assert_eq!(fl & OFlag::O_ACCMODE, OFlag::O_RDWR);
}

#[test]
fn open_without_flags_is_blocking_and_inheritable() {
    let peer = Peer::open(0).unwrap();
    let fd_flags = FdFlag::from_bits_truncate(fcntl(&peer, FcntlArg::F_GETFD).unwrap());
    assert!(!fd_flags.contains(FdFlag::FD_CLOEXEC));
    let fl = OFlag::from_bits_truncate(fcntl(&peer, FcntlArg::F_GETFL).unwrap());
    assert!(!fl.contains(OFlag::O_NONBLOCK));
}

/// What a freshly exec'd program sees at descriptor `fd`.
fn link_after_exec(fd: i32) -> String {
    let out = Command::new("/bin/sh")
        .arg("-c")
        .arg(format!("readlink /proc/self/fd/{fd} || echo closed"))
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[test]
fn open_cloexec_closes_on_exec() {
    let peer = Peer::open(BUS1_OPEN_CLOEXEC).unwrap();
    let fd_flags = FdFlag::from_bits_truncate(fcntl(&peer, FcntlArg::F_GETFD).unwrap());
    assert!(fd_flags.contains(FdFlag::FD_CLOEXEC));
    assert_eq!(link_after_exec(peer.as_raw_fd()), "closed");

    // The control: without the flag the peer survives exec.
    let inherited = Peer::open(0).unwrap();
    assert_eq!(link_after_exec(inherited.as_raw_fd()), "anon_inode:[bus1]");
}

#[test]
fn open_nonblock_sets_o_nonblock() {
    let peer = Peer::open(BUS1_OPEN_NONBLOCK).unwrap();
    let fl = OFlag::from_bits_truncate(fcntl(&peer, FcntlArg::F_GETFL).unwrap());
    assert!(fl.contains(OFlag::O_NONBLOCK));
    let fd_flags = FdFlag::from_bits_truncate(fcntl(&peer, FcntlArg::F_GETFD).unwrap());
    assert!(!fd_flags.contains(FdFlag::FD_CLOEXEC));
}

#[test]
fn open_with_both_flags() {
    let peer = Peer::open(BUS1_OPEN_CLOEXEC | BUS1_OPEN_NONBLOCK).unwrap();
    let fl = OFlag::from_bits_truncate(fcntl(&peer, FcntlArg::F_GETFL).unwrap());
    assert!(fl.contains(OFlag::O_NONBLOCK));
    let fd_flags = FdFlag::from_bits_truncate(fcntl(&peer, FcntlArg::F_GETFD).unwrap());
    assert!(fd_flags.contains(FdFlag::FD_CLOEXEC));
}

#[test]
fn open_unknown_flags_fail_with_einval_and_no_effect() {
    let peers_before = live_objects("peers");
    // The lowest free descriptor before and after shows no fd was used up.
    let probe = Peer::open(0).unwrap().into_fd().as_raw_fd();
    let mut bad: Vec<u32> = (2..32).map(|bit| 1u32 << bit).collect();
    bad.extend([
        u32::MAX,
        BUS1_OPEN_CLOEXEC | 1 << 2,
        0x8000_0000 | BUS1_OPEN_NONBLOCK,
    ]);
    // O_CLOEXEC and O_NONBLOCK are not bus1 flags.
    bad.extend([
        OFlag::O_CLOEXEC.bits() as u32,
        OFlag::O_NONBLOCK.bits() as u32,
    ]);
    for flags in bad {
        assert_eq!(
            sys::bus1_open(flags).err(),
            Some(Errno::EINVAL),
            "flags {flags:#x}"
        );
    }
    assert_eq!(live_objects("peers"), peers_before);
    let peer = Peer::open(0).unwrap();
    assert_eq!(
        peer.as_raw_fd(),
        probe,
        "a failed bus1_open used up a descriptor"
    );
}

#[test]
fn fdinfo_shows_unique_increasing_peer_ids() {
    let a = Peer::open(0).unwrap();
    let b = Peer::open(0).unwrap();
    let (ida, idb) = (a.id().unwrap(), b.id().unwrap());
    assert!(ida > 0);
    assert!(idb > ida, "ids {ida} then {idb}");
    drop(a);
    // Ids are never reused, even after the peer is gone.
    let c = Peer::open(0).unwrap();
    assert!(c.id().unwrap() > idb);
}

#[test]
fn last_close_frees_the_peer() {
    let base = live_objects("peers");
    let peer = Peer::open(0).unwrap();
    assert_eq!(live_objects("peers"), base + 1);

    // A dup keeps the same peer alive after the first descriptor closes.
    let dup = nix::unistd::dup(&peer).unwrap();
    let id = peer.id().unwrap();
    drop(peer);
    assert_eq!(live_objects("peers"), base + 1);
    assert_eq!(
        bus1::fdinfo_field(dup.as_fd(), "bus1-peer-id").unwrap(),
        id.to_string()
    );
    drop(dup);
    assert_eq!(live_objects("peers"), base);
}

#[test]
fn peer_shared_with_child_lives_until_both_close() {
    let base = live_objects("peers");
    let peer = Peer::open(0).unwrap();
    let (rd, wr) = nix::unistd::pipe().unwrap();
    // SAFETY: single-threaded test; the child only uses the fds and exits.
    match unsafe { fork() }.unwrap() {
        ForkResult::Child => {
            drop(wr);
            // Keep the inherited peer until the parent says so.
            let mut byte = [0u8];
            let _ = nix::unistd::read(&rd, &mut byte);
            drop(peer);
            // SAFETY: exit the child directly.
            unsafe { nix::libc::_exit(0) }
        }
        ForkResult::Parent { child } => {
            drop(rd);
            drop(peer);
            assert_eq!(
                live_objects("peers"),
                base + 1,
                "child's reference must keep the peer"
            );
            nix::unistd::write(&wr, b"x").unwrap();
            waitpid(child, None).unwrap();
            assert_eq!(live_objects("peers"), base);
        }
    }
}

#[test]
fn ten_thousand_peers_do_not_leak() {
    let base = live_objects("peers");
    for _ in 0..10_000 {
        drop(Peer::open(BUS1_OPEN_CLOEXEC).unwrap());
    }
    assert_eq!(live_objects("peers"), base);

    // And many at once, freed together.
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    setrlimit(Resource::RLIMIT_NOFILE, hard.max(2048), hard.max(2048)).unwrap();
    let many: Vec<Peer> = (0..1000).map(|_| Peer::open(0).unwrap()).collect();
    assert_eq!(live_objects("peers"), base + 1000);
    drop(many);
    assert_eq!(live_objects("peers"), base);
    setrlimit(Resource::RLIMIT_NOFILE, soft, hard).unwrap();
}

#[test]
fn full_fd_table_fails_with_emfile_and_frees_the_peer() {
    let code = in_child(|| {
        let base = live_objects("peers");
        let limit = 64;
        setrlimit(Resource::RLIMIT_NOFILE, limit, limit).unwrap();
        let mut held = Vec::new();
        let err = loop {
            match Peer::open(0) {
                Ok(p) => held.push(p),
                Err(e) => break e,
            }
            assert!(held.len() <= limit as usize, "RLIMIT_NOFILE not enforced");
        };
        assert_eq!(err, Errno::EMFILE);
        // The peer allocated for the failed call was freed again.  (Reading
        // the counter needs a free descriptor.)
        held.pop();
        assert_eq!(live_objects("peers"), base + held.len() as i64);
        drop(held);
        assert_eq!(live_objects("peers"), base);
        0
    });
    assert_eq!(code, 0);
}

#[test]
fn sys_enter_tracepoint_names_the_argument() {
    ensure_mounted("tracefs", TRACEFS);
    let format = fs::read_to_string(format!(
        "{TRACEFS}/events/syscalls/sys_enter_bus1_open/format"
    ))
    .unwrap();
    assert!(format.contains("name: sys_enter_bus1_open"), "{format}");
    assert!(format.contains("field:unsigned int flags;"), "{format}");
    assert!(format.contains("print fmt: \"flags: 0x%08lx\""), "{format}");
}

#[test]
fn sys_enter_tracepoint_records_each_call() {
    ensure_mounted("tracefs", TRACEFS);
    let event = format!("{TRACEFS}/events/syscalls/sys_enter_bus1_open/enable");
    let exit_event = format!("{TRACEFS}/events/syscalls/sys_exit_bus1_open/enable");
    fs::write(format!("{TRACEFS}/trace"), "").unwrap();
    fs::write(&event, "1").unwrap();
    fs::write(&exit_event, "1").unwrap();
    let peer = Peer::open(BUS1_OPEN_CLOEXEC | BUS1_OPEN_NONBLOCK).unwrap();
    let _ = sys::bus1_open(1 << 7);
    fs::write(&event, "0").unwrap();
    fs::write(&exit_event, "0").unwrap();
    let trace = fs::read_to_string(format!("{TRACEFS}/trace")).unwrap();
    // Trace lines name the thread as "<comm>-<tid>".
    let tid = nix::unistd::gettid();
    let ours: Vec<&str> = trace
        .lines()
        .filter(|l| l.contains(&format!("-{tid} ")))
        .collect();
    assert_eq!(
        ours.iter()
            .map(|l| l.split(": ").skip(1).collect::<Vec<_>>().join(": "))
            .collect::<Vec<_>>(),
        [
            "sys_bus1_open(flags: 3)".to_owned(),
            format!("sys_bus1_open -> 0x{:x}", peer.as_raw_fd()),
            "sys_bus1_open(flags: 0x80)".to_owned(),
            // -EINVAL
            "sys_bus1_open -> 0xffffffffffffffea".to_owned(),
        ],
        "{trace}"
    );
}

/// A classic-BPF seccomp filter that fails `bus1_open` with EPERM when its
/// flags ask for a non-blocking peer, and allows everything else.
/// Installs a seccomp filter that fails system call `nr` with `EPERM` when
/// its argument `arg` (0-based) has any bit of `mask` set: a filter on what
/// bus1 passes in registers (flags of `bus1_open()`, of `bus1_send()`).
#[cfg(target_arch = "x86_64")]
pub(crate) fn seccomp_deny_flag(nr: usize, arg: u32, mask: u32) {
    use nix::libc::{self, sock_filter, sock_fprog};
    const fn stmt(code: u16, k: u32) -> sock_filter {
        sock_filter {
            code,
            jt: 0,
            jf: 0,
            k,
        }
    }
    const fn jump(code: u16, k: u32, jt: u8, jf: u8) -> sock_filter {
        sock_filter { code, jt, jf, k }
    }
    // Offsets in struct seccomp_data: nr, arch, then the low words of the
    // 64-bit args from 16 (little endian).
    const NR: u32 = 0;
    const ARCH: u32 = 4;
    const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
    let ld = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
    let jeq = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
    let jset = (libc::BPF_JMP | libc::BPF_JSET | libc::BPF_K) as u16;
    let ret = (libc::BPF_RET | libc::BPF_K) as u16;
    let filter = [
        stmt(ld, ARCH),
        jump(jeq, AUDIT_ARCH_X86_64, 0, 4),
        stmt(ld, NR),
        jump(jeq, nr as u32, 0, 2),
        stmt(ld, 16 + 8 * arg),
        jump(jset, mask, 1, 0),
        stmt(ret, libc::SECCOMP_RET_ALLOW),
        stmt(ret, libc::SECCOMP_RET_ERRNO | libc::EPERM as u32),
    ];
    let prog = sock_fprog {
        len: filter.len() as u16,
        filter: filter.as_ptr() as *mut sock_filter,
    };
    // SAFETY: plain prctl calls; `prog` points at a valid filter for the call.
    unsafe {
        assert_eq!(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), 0);
        assert_eq!(
            libc::prctl(
                libc::PR_SET_SECCOMP,
                libc::SECCOMP_MODE_FILTER,
                &prog as *const sock_fprog
            ),
            0,
            "PR_SET_SECCOMP: {}",
            Errno::last()
        );
    }
}

#[cfg(target_arch = "x86_64")]
#[test]
fn seccomp_filters_on_bus1_open_flags() {
    let code = in_child(|| {
        seccomp_deny_flag(sys::nr::BUS1_OPEN, 0, BUS1_OPEN_NONBLOCK);
        assert_eq!(Peer::open(BUS1_OPEN_NONBLOCK).err(), Some(Errno::EPERM));
        assert_eq!(
            Peer::open(BUS1_OPEN_NONBLOCK | BUS1_OPEN_CLOEXEC).err(),
            Some(Errno::EPERM)
        );
        let allowed = Peer::open(BUS1_OPEN_CLOEXEC).unwrap();
        assert_eq!(fd_link(allowed.as_raw_fd()), "anon_inode:[bus1]");
        0
    });
    assert_eq!(code, 0);
}

#[test]
fn peer_has_no_read_or_write() {
    let peer = Peer::open(0).unwrap();
    let mut buf = [0u8; 8];
    assert_eq!(nix::unistd::read(&peer, &mut buf), Err(Errno::EINVAL));
    assert_eq!(nix::unistd::write(&peer, b"x"), Err(Errno::EINVAL));
}

/// Runs only in the kernel built without bus1 (`configs/nobus1.config`),
/// where scripts/test.sh runs it with `--ignored`: the syscall numbers are
/// wired to `sys_ni_syscall` through COND_SYSCALL.
#[test]
#[ignore = "needs a kernel built with CONFIG_BUS1=n"]
fn without_config_bus1_open_fails_with_enosys() {
    assert_eq!(Peer::open(0).err(), Some(Errno::ENOSYS));
    assert_eq!(sys::bus1_open(u32::MAX).err(), Some(Errno::ENOSYS));
    // Every bus1 number, not only the first.
    for nr in sys::nr::BUS1_OPEN..=sys::nr::BUS1_PEER_RESET {
        // SAFETY: without bus1 the kernel touches no argument.
        assert_eq!(unsafe { sys::call(nr, [0; 6]) }, Err(Errno::ENOSYS), "{nr}");
    }
    assert!(
        !std::path::Path::new("/sys/kernel/tracing/events/syscalls/sys_enter_bus1_open").exists()
    );
}
