// SPDX-License-Identifier: GPL-2.0
//! bpftrace scripts and the BPF LSM example of `tools-testing/observe` (in
//! the booted kernel): each runs against a workload with known numbers of
//! messages, bytes, refusals and descriptors, and its output must show
//! exactly those.
//!
//! No test depends on timing: a tool is started, the test waits for the
//! line it prints once its probes are attached (bpftrace's BEGIN probe
//! runs after all others are attached; the LSM loader prints after
//! attaching), runs the workload, and then stops the tool with SIGINT and
//! reads what it prints at the end: maps, read from the kernel then, and
//! counters.  Lines a bpftrace script prints per event are waited for
//! before it is stopped (bpftrace may drop the last ones when it ends).
//! The timeouts only end a test whose tool never gets there.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{IoSlice, IoSliceMut, Read};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bus1::sys::{self, BUS1_MSG_DATA, BUS1_SEND_CONTINUE};
use bus1::{Errno, Peer};
use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{Signal, kill};
use nix::sys::socket::{
    AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags, SockFlag, SockType, recvmsg,
    sendmsg, socketpair,
};
use nix::unistd::{Pid, Uid, pipe, setresuid};

use super::accounting::{Sysctl, pool};
use super::messaging::{connect, peer, recv, recv_err};
use super::{TRACEFS, ensure_mounted, in_child, report};

/// How long a tool may take to attach (bpftrace compiles its script with
/// LLVM, slow under emulation) or to finish after SIGINT: a guard against
/// a hang, never a wait for something to happen.
const TOOL_TIMEOUT: Duration = Duration::from_secs(600);

fn observe_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../observe")
}

/// Where scripts/build-observe.sh puts what it builds.
fn observe_build_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/observe")
}

/// A tool running in the background, its standard output read line by
/// line (its standard error goes to a file, shown when something fails).
struct Tool {
    name: String,
    child: Option<Child>,
    stdout: OwnedFd,
    pending: Vec<u8>,
    lines: Vec<String>,
    stderr_path: PathBuf,
}

impl Tool {
    /// Starts `cmd` and waits until it prints a line containing `ready`.
    fn start(name: &str, cmd: &mut Command, ready: &str) -> Self {
        let stderr_path = PathBuf::from(format!("/tmp/bus1-bpf-{}-{name}.err", std::process::id()));
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(File::create(&stderr_path).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("{name}: cannot start {cmd:?}: {e}"));
        let stdout = OwnedFd::from(child.stdout.take().unwrap());
        let mut tool = Self {
            name: name.to_owned(),
            child: Some(child),
            stdout,
            pending: Vec::new(),
            lines: Vec::new(),
            stderr_path,
        };
        tool.wait_for(ready, |l| l.contains(ready));
        tool
    }

    /// Reads lines until `done` is true for one, fails the test if the
    /// output ends first or the timeout passes.  `done` sees every line
    /// printed so far, each once, in order.
    fn wait_for(&mut self, what: &str, done: impl FnMut(&str) -> bool) {
        if !self.read_until(done) {
            self.fail(&format!("ended or timed out before printing {what}"));
        }
    }

    /// Reads lines until one satisfies `done` (true) or the output ends or
    /// the timeout passes (false).
    fn read_until(&mut self, mut done: impl FnMut(&str) -> bool) -> bool {
        let deadline = Instant::now() + TOOL_TIMEOUT;
        let mut checked = 0;
        loop {
            while checked < self.lines.len() {
                checked += 1;
                if done(&self.lines[checked - 1]) {
                    return true;
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            let mut fds = [PollFd::new(self.stdout.as_fd(), PollFlags::POLLIN)];
            let timeout = PollTimeout::try_from(left).unwrap_or(PollTimeout::MAX);
            match poll(&mut fds, timeout) {
                Ok(0) | Err(Errno::EINTR) => continue,
                Ok(_) => {}
                Err(e) => panic!("poll: {e}"),
            }
            let mut buf = [0u8; 4096];
            let n = match nix::unistd::read(&self.stdout, &mut buf) {
                Ok(n) => n,
                Err(Errno::EINTR) => continue,
                Err(e) => panic!("read: {e}"),
            };
            if n == 0 {
                return false;
            }
            self.pending.extend_from_slice(&buf[..n]);
            while let Some(end) = self.pending.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.pending.drain(..=end).collect();
                self.lines
                    .push(String::from_utf8_lossy(&line[..end]).into_owned());
            }
        }
    }

    fn stderr(&self) -> String {
        fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    fn fail(&mut self, what: &str) -> ! {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!(
            "{}: {what}\n--- stdout:\n{}\n--- stderr:\n{}",
            self.name,
            self.lines.join("\n"),
            self.stderr()
        );
    }

    /// Stops the tool with SIGINT and returns everything it printed; it
    /// must exit with status 0.
    fn stop(mut self) -> Vec<String> {
        let pid = Pid::from_raw(self.child.as_ref().unwrap().id() as i32);
        kill(pid, Signal::SIGINT).unwrap();
        if self.read_until(|_| false) {
            unreachable!();
        }
        if !self.pending.is_empty() {
            let rest = String::from_utf8_lossy(&self.pending).into_owned();
            self.lines.push(rest);
        }
        // Output ended: the tool closed it, or the guard ran out.
        let mut child = self.child.take().unwrap();
        let status = match child.try_wait().unwrap() {
            Some(status) => status,
            None => {
                let deadline = Instant::now() + TOOL_TIMEOUT;
                loop {
                    if let Some(status) = child.try_wait().unwrap() {
                        break status;
                    }
                    if Instant::now() > deadline {
                        self.child = Some(child);
                        self.fail("did not exit after SIGINT");
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        };
        if !status.success() {
            self.fail(&format!("exited with {status}"));
        }
        let _ = fs::remove_file(&self.stderr_path);
        // bpftrace prints the maps the END probe cleared as empty lines.
        while self.lines.last().is_some_and(|l| l.is_empty()) {
            self.lines.pop();
        }
        std::mem::take(&mut self.lines)
    }
}

impl Drop for Tool {
    /// A test that fails half-way must not leave a tool running: a
    /// leftover LSM policy would refuse the sends of later tests.
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Starts a bpftrace script of `tools-testing/observe/bpftrace`; its BEGIN
/// probe prints "<script>: tracing ..." once every probe is attached.
fn bpftrace(script: &str, extra_args: &[&str]) -> Tool {
    ensure_mounted("tracefs", TRACEFS);
    let path = observe_dir().join("bpftrace").join(format!("{script}.bt"));
    assert!(path.exists(), "{}", path.display());
    let mut cmd = Command::new("bpftrace");
    cmd.args(["-B", "line"]).args(extra_args).arg(&path);
    Tool::start(script, &mut cmd, &format!("{script}: tracing"))
}

/// The entries of map `@name` in bpftrace's output ("@name[k1, k2]: v" or
/// "@name: v"), keys as strings.
fn map_entries(lines: &[String], name: &str) -> BTreeMap<Vec<String>, u64> {
    let mut map = BTreeMap::new();
    for line in lines {
        let Some(rest) = line.strip_prefix(&format!("@{name}")) else {
            continue;
        };
        let (key, value) = if let Some(rest) = rest.strip_prefix('[') {
            let Some((key, value)) = rest.split_once("]: ") else {
                continue;
            };
            (key.split(", ").map(str::to_owned).collect(), value)
        } else if let Some(value) = rest.strip_prefix(": ") {
            (Vec::new(), value)
        } else {
            continue;
        };
        let value = value
            .trim()
            .parse()
            .unwrap_or_else(|e| panic!("{line:?}: {e}"));
        assert!(map.insert(key, value).is_none(), "{line:?} twice");
    }
    map
}

/// `map_entries()` restricted to the keys whose first element is one of
/// `firsts` (other bus1 users of the machine, if any, drop out).
fn entries_of(lines: &[String], name: &str, firsts: &[u64]) -> BTreeMap<Vec<String>, u64> {
    let firsts: Vec<String> = firsts.iter().map(u64::to_string).collect();
    map_entries(lines, name)
        .into_iter()
        .filter(|(k, _)| k.first().is_some_and(|f| firsts.contains(f)))
        .collect()
}

/// Builds an expected map from (key, value) pairs.
fn expect<const N: usize>(pairs: &[([&dyn ToString; N], u64)]) -> BTreeMap<Vec<String>, u64> {
    pairs
        .iter()
        .map(|(k, v)| (k.iter().map(|x| x.to_string()).collect(), *v))
        .collect()
}

/// The counts of a bpftrace histogram `@name` (the numbers of its
/// "[lo, hi)  N |@@@|" and "[v]  N |@@@|" lines).
fn hist_counts(lines: &[String], name: &str) -> Vec<u64> {
    let start = lines
        .iter()
        .position(|l| l.trim_end() == format!("@{name}:"))
        .unwrap_or_else(|| panic!("no histogram @{name} in {lines:#?}"));
    lines[start + 1..]
        .iter()
        .take_while(|l| l.starts_with('['))
        .map(|l| {
            let rest = &l[l.find([')', ']']).unwrap() + 1..];
            rest.split('|').next().unwrap().trim().parse().unwrap()
        })
        .collect()
}

fn id(p: &Peer) -> u64 {
    p.id().unwrap()
}

#[test]
fn bpftrace_traffic_counts_messages_and_bytes_per_peer() {
    let (s1, s2, r1, r2) = (peer(), peer(), peer(), peer());
    let (_, h11) = connect(&r1, &s1);
    let (_, h12) = connect(&r2, &s1);
    let (_, h21) = connect(&r1, &s2);
    let (doomed, h13) = connect(&r2, &s1);

    let tool = bpftrace("bus1-traffic", &[]);
    for _ in 0..3 {
        s1.send(h11, &[&[1; 10]], &[]).unwrap();
    }
    for _ in 0..2 {
        s1.send(h12, &[&[2; 3], &[3; 4]], &[]).unwrap();
    }
    assert_eq!(s1.multicast(&[h11, h12], &[b"multi"], &[], 0, None), Ok(2));
    for _ in 0..4 {
        s2.send(h21, &[b"x"], &[]).unwrap();
    }
    s2.send(h21, &[], &[]).unwrap();
    // Notifications are not traffic: the destruction queues one on r2 (the
    // owner) and one on s1 (the holder).
    r2.destroy(&[doomed]).unwrap();
    assert_eq!(s1.send(h13, &[b"lost"], &[]), Err(Errno::EHOSTUNREACH));
    assert_eq!(s1.send(1 << 40, &[b"lost"], &[]), Err(Errno::ENXIO));
    let out = tool.stop();

    let (s1, s2, r1, r2) = (id(&s1), id(&s2), id(&r1), id(&r2));
    // Keyed by any of the four: entries of r1 or r2 would be wrong.
    let ours = [s1, s2, r1, r2];
    assert_eq!(
        entries_of(&out, "send_calls", &ours),
        expect(&[([&s1], 6), ([&s2], 5)]),
        "{out:#?}"
    );
    assert_eq!(
        entries_of(&out, "send_bytes", &ours),
        expect(&[([&s1], 3 * 10 + 2 * 7 + 5), ([&s2], 4)]),
        "{out:#?}"
    );
    assert_eq!(
        entries_of(&out, "send_deliveries", &ours),
        expect(&[([&s1], 3 + 2 + 2), ([&s2], 5)]),
        "{out:#?}"
    );
    assert_eq!(
        entries_of(&out, "send_failed", &ours),
        expect(&[([&s1, &113], 1), ([&s1, &6], 1)]),
        "{out:#?}"
    );
    assert_eq!(
        entries_of(&out, "queued_msgs", &ours),
        expect(&[([&s1, &r1], 4), ([&s1, &r2], 3), ([&s2, &r1], 5)]),
        "{out:#?}"
    );
    assert_eq!(
        entries_of(&out, "queued_bytes", &ours),
        expect(&[([&s1, &r1], 35), ([&s1, &r2], 19), ([&s2, &r1], 4)]),
        "{out:#?}"
    );
    assert_eq!(out.last().map(String::as_str), Some("bus1-traffic: end"));
}

#[test]
fn bpftrace_latency_measures_each_received_entry() {
    let (s, r) = (peer(), peer());
    let (_, h) = connect(&r, &s);
    // Queued before the script starts: received, but not measured.
    s.send(h, &[b"early"], &[]).unwrap();
    s.send(h, &[b"early"], &[]).unwrap();
    let node = r.create_node().unwrap();
    let held = r.transfer(node, Some(&s)).unwrap();

    let tool = bpftrace("bus1-latency", &[]);
    for _ in 0..5 {
        s.send(h, &[b"timed"], &[]).unwrap();
    }
    for _ in 0..7 {
        assert_eq!(recv(&r).0.kind, BUS1_MSG_DATA);
    }
    // A notification is measured like a message.
    s.release(held).unwrap();
    assert_eq!(recv(&r).0.kind, sys::BUS1_MSG_NODE_RELEASE);
    // Three more, one received: two stay queued.
    for _ in 0..3 {
        s.send(h, &[b"late"], &[]).unwrap();
    }
    recv(&r);
    let out = tool.stop();

    let r = id(&r);
    assert_eq!(
        entries_of(&out, "queued", &[r]),
        expect(&[([&r], 5 + 1 + 3)]),
        "{out:#?}"
    );
    assert_eq!(
        entries_of(&out, "received", &[r]),
        expect(&[([&r], 5 + 1 + 1)]),
        "{out:#?}"
    );
    assert_eq!(
        entries_of(&out, "unmatched", &[r]),
        expect(&[([&r], 2)]),
        "{out:#?}"
    );
    let hist = hist_counts(&out, "latency_ns");
    assert_eq!(hist.iter().sum::<u64>(), 7, "{out:#?}");
    let stats = out
        .iter()
        .find_map(|l| l.strip_prefix("@latency_stats: "))
        .unwrap_or_else(|| panic!("{out:#?}"));
    let fields: BTreeMap<&str, u64> = stats
        .split(", ")
        .map(|f| {
            let (k, v) = f.split_once(' ').unwrap();
            (k, v.parse().unwrap())
        })
        .collect();
    assert_eq!(fields["count"], 7, "{stats}");
    assert!(fields["average"] > 0 && fields["total"] >= fields["average"] * 7);
    assert_eq!(out.last().map(String::as_str), Some("bus1-latency: end"));
    report(&format!("bpf: bus1-latency.bt over 7 receipts: {stats}"));
}

#[test]
fn bpftrace_refusals_by_errno_and_peer() {
    // Two messages fill a peer's queue.
    let _limit = Sysctl::set("max_peer_messages", 2);
    let (s, t, r1, r2) = (peer(), peer(), peer(), peer());
    let (n1, hs1) = connect(&r1, &s);
    let ht1 = r1.transfer(n1, Some(&t)).unwrap();
    let (_, hs2) = connect(&r2, &s);
    let (doomed, hsd) = connect(&r2, &s);
    r2.destroy(&[doomed]).unwrap();
    let unknown = 1 << 40;

    let tool = bpftrace("bus1-refusals", &[]);
    assert_eq!(s.send(hsd, &[b"x"], &[]), Err(Errno::EHOSTUNREACH));
    assert_eq!(s.send(unknown, &[b"x"], &[]), Err(Errno::ENXIO));
    let mut errors = [0; 4];
    assert_eq!(
        s.multicast(
            &[hs1, hsd, unknown + 1, hs2],
            &[b"x"],
            &[],
            BUS1_SEND_CONTINUE,
            Some(&mut errors)
        ),
        Ok(2)
    );
    assert_eq!(
        errors,
        [0, Errno::EHOSTUNREACH as i32, Errno::ENXIO as i32, 0]
    );
    // r1 is full after this one.
    s.send(hs1, &[b"x"], &[]).unwrap();
    assert_eq!(t.send(ht1, &[b"x"], &[]), Err(Errno::EDQUOT));
    // All or nothing: r1 refuses, r2 is cancelled (not a refusal).
    let mut errors = [0; 2];
    assert_eq!(
        s.multicast(&[hs2, hs1], &[b"x"], &[], 0, Some(&mut errors)),
        Err(Errno::EDQUOT)
    );
    assert_eq!(errors, [Errno::ECANCELED as i32, Errno::EDQUOT as i32]);
    let out = tool.stop();

    let (s, t) = (id(&s), id(&t));
    let refusals: BTreeMap<Vec<String>, u64> = map_entries(&out, "refusals")
        .into_iter()
        .filter(|(k, _)| k.len() == 3 && [s, t].map(|p| p.to_string()).contains(&k[2]))
        .collect();
    assert_eq!(
        refusals,
        expect(&[
            ([&113, &"EHOSTUNREACH", &s], 2),
            ([&6, &"ENXIO", &s], 2),
            ([&122, &"EDQUOT", &s], 1),
            ([&122, &"EDQUOT", &t], 1),
        ]),
        "{out:#?}"
    );
    assert_eq!(
        map_entries(&out, "refusals_by_errno"),
        expect(&[
            ([&113, &"EHOSTUNREACH"], 2),
            ([&6, &"ENXIO"], 2),
            ([&122, &"EDQUOT"], 2),
        ]),
        "{out:#?}"
    );
    assert_eq!(out.last().map(String::as_str), Some("bus1-refusals: end"));
}

#[test]
fn bpftrace_decodes_the_message_of_bus1_send() {
    let include = observe_build_dir().join("include");
    assert!(
        include.join("linux/bus1.h").exists(),
        "{}: run scripts/build-observe.sh first",
        include.display()
    );
    let (s, r) = (peer(), peer());
    let (_, h) = connect(&r, &s);
    let own = s.create_node().unwrap();
    let (rd, wr) = pipe().unwrap();

    let mut tool = bpftrace("bus1-send-decode", &["-I", include.to_str().unwrap()]);
    let mut errors = [-1; 1];
    assert_eq!(
        s.multicast_with_fds(
            &[h],
            &[b"hello ", b"bus1", b"!"],
            &[],
            &[wr.as_raw_fd()],
            BUS1_SEND_CONTINUE,
            Some(&mut errors),
        ),
        Ok(1)
    );
    s.send(h, &[b"with a handle"], &[own]).unwrap();
    assert_eq!(s.send(1 << 40, &[b"nowhere"], &[]), Err(Errno::ENXIO));
    // A structure of the first version has no fds fields: whatever follows
    // it is not read, by the kernel nor by the script.
    let payload = b"v0";
    let vec = sys::Bus1Vec {
        base: payload.as_ptr() as u64,
        len: 2,
    };
    let msg = sys::Bus1Message {
        vecs: &vec as *const _ as u64,
        n_vecs: 1,
        fds: 0xdead,
        n_fds: 7,
        ..Default::default()
    };
    // SAFETY: `msg` and `vec` are valid for what the kernel reads.
    let sent = unsafe { s.send_raw(&[h], &msg, sys::BUS1_MESSAGE_SIZE_VER0, 0) };
    assert_eq!(sent, Ok(1));
    let pid = std::process::id();
    let tid = nix::unistd::gettid();
    let comm = fs::read_to_string("/proc/thread-self/comm").unwrap();
    let prefix = format!(
        "bus1_send pid={pid} tid={tid} comm={} fd={} ",
        comm.trim(),
        s.as_raw_fd()
    );
    // The lines travel through bpftrace's per-CPU perf buffers, which it
    // does not reliably drain when it ends: wait for them to be printed
    // before stopping it.  (The other scripts print maps at the end.)
    let mut seen = 0;
    tool.wait_for("the lines of 4 calls", |l| {
        seen += usize::from(l.starts_with(&prefix));
        seen == 4
    });
    let out = tool.stop();

    let ours: Vec<&str> = out.iter().filter_map(|l| l.strip_prefix(&prefix)).collect();
    assert_eq!(
        ours,
        [
            format!(
                "dsts=1 dst0={h} flags=0x5 size=56 vecs=3 bytes=11 handles=0 handle0=0 fds=1 fd0={} errors=yes data=\"hello \" ret=1",
                wr.as_raw_fd()
            ),
            format!(
                "dsts=1 dst0={h} flags=0x2 size=56 vecs=1 bytes=13 handles=1 handle0={own} fds=0 fd0=-1 errors=no data=\"with a handle\" ret=1"
            ),
            format!(
                "dsts=1 dst0={} flags=0x0 size=56 vecs=1 bytes=7 handles=0 handle0=0 fds=0 fd0=-1 errors=no data=\"nowhere\" ret=-6",
                1u64 << 40
            ),
            format!(
                "dsts=1 dst0={h} flags=0x0 size=40 vecs=1 bytes=2 handles=0 handle0=0 fds=0 fd0=-1 errors=no data=\"v0\" ret=1"
            ),
        ],
        "{out:#?}"
    );
    assert_eq!(
        out.last().map(String::as_str),
        Some("bus1-send-decode: end")
    );
    drop(rd);
}

/// A peer opened by `uid` (in a child that passes it back over a socket):
/// bus1's security hooks see the credentials of whoever opened a peer.
fn peer_of_uid(uid: u32) -> Peer {
    let (ours, theirs) = socketpair(
        AddressFamily::Unix,
        SockType::Datagram,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .unwrap();
    let code = in_child(|| {
        let uid = Uid::from_raw(uid);
        setresuid(uid, uid, uid).unwrap();
        let p = peer();
        let fds = [p.as_raw_fd()];
        sendmsg::<()>(
            theirs.as_raw_fd(),
            &[IoSlice::new(b"p")],
            &[ControlMessage::ScmRights(&fds)],
            MsgFlags::empty(),
            None,
        )
        .unwrap();
        0
    });
    assert_eq!(code, 0);
    let mut byte = [0u8; 1];
    let mut iov = [IoSliceMut::new(&mut byte)];
    let mut space = nix::cmsg_space!(RawFd);
    let msg = recvmsg::<()>(
        ours.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .unwrap();
    let fd = msg
        .cmsgs()
        .unwrap()
        .find_map(|c| match c {
            ControlMessageOwned::ScmRights(fds) => fds.first().copied(),
            _ => None,
        })
        .expect("no peer from the child");
    // SAFETY: the descriptor just arrived and is ours alone.
    unsafe { Peer::from_raw_fd(fd) }
}

/// Receives one message with up to 4 descriptors, which are closed; returns
/// (payload, number of descriptors).
fn recv_and_close_fds(p: &Peer) -> (Vec<u8>, usize) {
    let mut buf = vec![0u8; 64];
    let mut fds = [-1; 4];
    let r = p
        .recv_with_fds(&mut buf, &mut [], &mut fds)
        .map_err(|(e, _)| e)
        .unwrap();
    for &fd in &fds[..r.n_fds] {
        // SAFETY: the kernel installed the descriptor for us.
        drop(unsafe { OwnedFd::from_raw_fd(fd) });
    }
    buf.truncate(r.n_bytes);
    (buf, r.n_fds)
}

/// Nothing queued on `p`: no message, no descriptor charged.
fn assert_empty(p: &Peer) {
    assert_eq!(pool(p, "bus1-queue-messages").0, 0);
    assert_eq!(pool(p, "bus1-queue-fds").0, 0);
    assert_eq!(recv_err(p), Errno::EAGAIN);
}

/// The counters the loader prints when it ends.
#[derive(Debug, Default, PartialEq, Eq)]
struct LsmCounts {
    send_checked: u64,
    send_denied: u64,
    file_checked: u64,
    file_denied: u64,
    handle_checked: u64,
}

/// The ids of the active security modules (`lsm_list_modules(2)`; the
/// kernel has no securityfs for /sys/kernel/security/lsm).
#[cfg(target_arch = "x86_64")]
fn active_lsms() -> Vec<u64> {
    const NR_LSM_LIST_MODULES: usize = 461;
    let mut ids = [0u64; 32];
    let mut size = std::mem::size_of_val(&ids) as u32;
    // SAFETY: `ids` holds `size` bytes, `size` is a valid u32.
    let n = unsafe {
        sys::call(
            NR_LSM_LIST_MODULES,
            [
                ids.as_mut_ptr() as usize,
                &mut size as *mut u32 as usize,
                0,
                0,
                0,
                0,
            ],
        )
    }
    .unwrap();
    ids[..n].to_vec()
}

fn bus1_deny_fds(hooks: &str) -> Tool {
    const LSM_ID_BPF: u64 = 109;
    let lsms = active_lsms();
    assert!(
        lsms.contains(&LSM_ID_BPF),
        "the BPF LSM is not active (LSM ids {lsms:?}): boot with lsm=...,bpf"
    );
    let loader = observe_build_dir().join("bus1-deny-fds");
    assert!(
        loader.exists(),
        "{}: run scripts/build-observe.sh (needs a vmlinux with BTF)",
        loader.display()
    );
    let mut cmd = Command::new(loader);
    cmd.args(["--hooks", hooks]);
    Tool::start(
        "bus1-deny-fds",
        &mut cmd,
        &format!("bus1-deny-fds: attached hooks={hooks}"),
    )
}

fn lsm_counts(out: &[String]) -> LsmCounts {
    let line = out
        .iter()
        .filter_map(|l| l.strip_prefix("bus1-deny-fds: "))
        .find(|l| l.starts_with("send_checked="))
        .unwrap_or_else(|| panic!("no counters in {out:#?}"));
    let values: BTreeMap<&str, u64> = line
        .split_whitespace()
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap();
            (k, v.parse().unwrap())
        })
        .collect();
    LsmCounts {
        send_checked: values["send_checked"],
        send_denied: values["send_denied"],
        file_checked: values["file_checked"],
        file_denied: values["file_denied"],
        handle_checked: values["handle_checked"],
    }
}

/// The policy of bus1-deny-fds enforced by `hooks` ("send", "file" or
/// "send,file"): descriptors do not pass between peers of root and peers
/// of uid 1001, in either direction; everything else does, and the
/// refusals end with the loader.  Returns what the hooks counted and, with
/// `refusals`, the refusals bus1-refusals.bt saw per sending peer
/// (errno, name, peer letter).
fn deny_fds_scenario(hooks: &str, refusals: bool) -> (LsmCounts, Vec<(u64, String, char)>) {
    let (a, b) = (peer(), peer());
    let (u, v) = (peer_of_uid(1001), peer_of_uid(1001));
    let nb = b.create_node().unwrap();
    let nu = u.create_node().unwrap();
    let a_b = b.transfer(nb, Some(&a)).unwrap();
    let a_u = u.transfer(nu, Some(&a)).unwrap();
    let v_b = b.transfer(nb, Some(&v)).unwrap();
    let v_u = u.transfer(nu, Some(&v)).unwrap();
    let na = a.create_node().unwrap();
    let (rd, write_end) = pipe().unwrap();
    fcntl(&rd, FcntlArg::F_SETFL(OFlag::O_NONBLOCK)).unwrap();
    let wr = [write_end.as_raw_fd()];
    let (eperm, ecanceled) = (Errno::EPERM as i32, Errno::ECANCELED as i32);

    // Without the policy a descriptor goes from root to uid 1001.
    a.send_with_fds(a_u, &[b"before"], &[], &wr).unwrap();
    assert_eq!(recv_and_close_fds(&u), (b"before".to_vec(), 1));

    let trace = refusals.then(|| bpftrace("bus1-refusals", &[]));
    let tool = bus1_deny_fds(hooks);
    // Across users, both ways: refused, nothing queued or charged.
    assert_eq!(
        a.send_with_fds(a_u, &[b"denied"], &[], &wr),
        Err(Errno::EPERM)
    );
    assert_empty(&u);
    assert_eq!(
        v.send_with_fds(v_b, &[b"denied"], &[], &wr),
        Err(Errno::EPERM)
    );
    assert_empty(&b);
    // With BUS1_SEND_CONTINUE only the other user's destination refuses.
    let mut errors = [-1; 2];
    assert_eq!(
        a.multicast_with_fds(
            &[a_b, a_u],
            &[b"partial"],
            &[],
            &wr,
            BUS1_SEND_CONTINUE,
            Some(&mut errors)
        ),
        Ok(1)
    );
    assert_eq!(errors, [0, eperm]);
    assert_empty(&u);
    assert_eq!(recv_and_close_fds(&b), (b"partial".to_vec(), 1));
    // Without it the whole send fails.
    assert_eq!(
        a.multicast_with_fds(&[a_b, a_u], &[b"all"], &[], &wr, 0, Some(&mut errors)),
        Err(Errno::EPERM)
    );
    assert_eq!(errors, [ecanceled, eperm]);
    assert_empty(&b);
    assert_empty(&u);
    // Within one user descriptors pass.
    a.send_with_fds(a_b, &[b"root"], &[], &wr).unwrap();
    assert_eq!(recv_and_close_fds(&b), (b"root".to_vec(), 1));
    v.send_with_fds(v_u, &[b"1001"], &[], &wr).unwrap();
    assert_eq!(recv_and_close_fds(&u), (b"1001".to_vec(), 1));
    // Across users, messages without descriptors pass, handles too.
    a.send(a_u, &[b"plain"], &[]).unwrap();
    assert_eq!(recv_and_close_fds(&u), (b"plain".to_vec(), 0));
    a.send(a_u, &[b"handle"], &[na]).unwrap();
    let (r, data, handles) = recv(&u);
    assert_eq!((&data[..], r.n_handles), (&b"handle"[..], 1));
    u.release(handles[0]).unwrap();
    v.send(v_b, &[b"plain"], &[]).unwrap();
    assert_eq!(recv_and_close_fds(&b), (b"plain".to_vec(), 0));
    a.transfer(na, Some(&u)).unwrap();
    let counts = lsm_counts(&tool.stop());
    let mut refused = Vec::new();
    if let Some(trace) = trace {
        let names = [(id(&a), 'a'), (id(&b), 'b'), (id(&u), 'u'), (id(&v), 'v')];
        for (key, n) in map_entries(&trace.stop(), "refusals") {
            let Some(&(_, letter)) = names.iter().find(|(p, _)| p.to_string() == key[2]) else {
                continue;
            };
            for _ in 0..n {
                refused.push((key[0].parse().unwrap(), key[1].clone(), letter));
            }
        }
    }

    // Without the loader the policy is gone.
    a.send_with_fds(a_u, &[b"after"], &[], &wr).unwrap();
    assert_eq!(recv_and_close_fds(&u), (b"after".to_vec(), 1));
    v.send_with_fds(v_b, &[b"after"], &[], &wr).unwrap();
    assert_eq!(recv_and_close_fds(&b), (b"after".to_vec(), 1));
    // No refused message kept a reference to the pipe: with our write end
    // closed it is at end-of-file.  (Non-blocking: EAGAIN if not.)
    drop(write_end);
    let mut byte = [0u8; 1];
    assert_eq!(File::from(rd).read(&mut byte).unwrap(), 0);
    (counts, refused)
}

// How often each hook runs in deny_fds_scenario(): bus1_send once per
// destination a send reaches after the id lookups: 1 + 1 refused sends, 2
// + 2 in the multicasts, 2 within one user, 3 without descriptors = 11,
// refused 4 times (once per send across users with a descriptor).  One
// descriptor per message: bus1_transfer_file as often as bus1_send for the
// 8 sends with a descriptor, unless bus1_send refused first.
// bus1_transfer_handle: once for the message with a handle, once for the
// bus1_handle_transfer(2).

#[test]
fn lsm_deny_fds_with_the_send_hook() {
    assert_eq!(
        deny_fds_scenario("send", false).0,
        LsmCounts {
            send_checked: 11,
            send_denied: 4,
            file_checked: 0,
            file_denied: 0,
            handle_checked: 2,
        }
    );
}

#[test]
fn lsm_deny_fds_with_the_file_hook() {
    assert_eq!(
        deny_fds_scenario("file", false).0,
        LsmCounts {
            send_checked: 0,
            send_denied: 0,
            file_checked: 8,
            file_denied: 4,
            handle_checked: 2,
        }
    );
}

#[test]
fn lsm_deny_fds_with_both_hooks() {
    // bus1_send refuses first: bus1_transfer_file sees only the 4 allowed
    // descriptors.  The refusals show in the trace event bus1_refuse, of
    // the sending peer, 3 times of root's peer a, once of uid 1001's v.
    let (counts, mut refused) = deny_fds_scenario("send,file", true);
    assert_eq!(
        counts,
        LsmCounts {
            send_checked: 11,
            send_denied: 4,
            file_checked: 4,
            file_denied: 0,
            handle_checked: 2,
        }
    );
    refused.sort();
    let eperm = |p| (1, "EPERM".to_owned(), p);
    assert_eq!(refused, [eperm('a'), eperm('a'), eperm('a'), eperm('v')]);
}
