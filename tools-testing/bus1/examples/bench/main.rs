// SPDX-License-Identifier: GPL-2.0
//! bus1 benchmarks, each measured in one boot and reported as ratios:
//!
//! 1. Round-trip latency of bus1 unicast against a pipe pair, an AF_UNIX
//!    SOCK_SEQPACKET socketpair and a Binder transaction with its reply
//!    (Rust Binder, private binderfs): two processes ping-pong a message of
//!    0 bytes and of 4 KiB; each transport gets the same warm-up and the
//!    same number of round trips.
//! 2. Multicast fan-out: one bus1_send() to N = 1 ... 64 peers (and their N
//!    receives), against N = 1 and against N unicast sends.
//! 3. Scaling: round trips per second of two disjoint ping-pong pairs
//!    against one pair (threads), for bus1 and the two baselines.  Pairs
//!    that share no peer share no lock, so on two CPUs the ratio should be
//!    close to the baselines'.
//!
//! Usage: bench [ROUND_TRIPS]   (default 5000)

use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixDatagram;
use std::sync::Barrier;
use std::thread;
use std::time::{Duration, Instant};

use bus1::Peer;

mod binder;
use binder::Binder;
use nix::sys::socket::{AddressFamily, SockFlag, SockType, socketpair};
use nix::sys::wait::waitpid;
use nix::unistd::{ForkResult, fork};

/// One side of a ping-pong: send `msg`, receive into `buf`.
trait Endpoint {
    fn send(&mut self, msg: &[u8]);
    fn recv(&mut self, buf: &mut [u8]) -> usize;
}

struct Bus1End {
    peer: Peer,
    to: u64,
}

impl Endpoint for Bus1End {
    fn send(&mut self, msg: &[u8]) {
        self.peer.send(self.to, &[msg], &[]).unwrap();
    }
    fn recv(&mut self, buf: &mut [u8]) -> usize {
        self.peer
            .recv(buf, &mut [])
            .map_err(|(e, _)| e)
            .unwrap()
            .n_bytes
    }
}

struct PipeEnd {
    rd: std::fs::File,
    wr: std::fs::File,
}

impl Endpoint for PipeEnd {
    fn send(&mut self, msg: &[u8]) {
        // A length prefix keeps message boundaries on the byte stream.
        self.wr
            .write_all(&(msg.len() as u32).to_ne_bytes())
            .unwrap();
        self.wr.write_all(msg).unwrap();
    }
    fn recv(&mut self, buf: &mut [u8]) -> usize {
        let mut len = [0u8; 4];
        self.rd.read_exact(&mut len).unwrap();
        let len = u32::from_ne_bytes(len) as usize;
        self.rd.read_exact(&mut buf[..len]).unwrap();
        len
    }
}

struct UnixEnd(UnixDatagram);

impl Endpoint for UnixEnd {
    fn send(&mut self, msg: &[u8]) {
        self.0.send(msg).unwrap();
    }
    fn recv(&mut self, buf: &mut [u8]) -> usize {
        self.0.recv(buf).unwrap()
    }
}

/// Forks; the child echoes `rounds` messages on `child_end`, the parent
/// measures `rounds` round trips on `parent_end`.  Returns ns per round trip.
fn ping_pong(
    mut parent_end: impl Endpoint,
    child_end: impl FnOnce() -> Box<dyn Endpoint>,
    size: usize,
    rounds: usize,
) -> f64 {
    let msg = vec![0x5au8; size];
    let mut buf = vec![0u8; size.max(1)];
    let warmup = rounds / 10 + 1;
    // SAFETY: single-threaded here; the child only echoes and exits.
    match unsafe { fork() }.unwrap() {
        ForkResult::Child => {
            let mut end = child_end();
            for _ in 0..warmup + rounds {
                let n = end.recv(&mut buf);
                end.send(&buf[..n]);
            }
            // SAFETY: leave without running the parent's exit handlers.
            unsafe { nix::libc::_exit(0) }
        }
        ForkResult::Parent { child } => {
            for _ in 0..warmup {
                parent_end.send(&msg);
                parent_end.recv(&mut buf);
            }
            let start = Instant::now();
            for _ in 0..rounds {
                parent_end.send(&msg);
                let n = parent_end.recv(&mut buf);
                assert_eq!(n, size);
            }
            let elapsed = start.elapsed();
            waitpid(child, None).unwrap();
            elapsed.as_nanos() as f64 / rounds as f64
        }
    }
}

/// Binder round trips: a forked context manager echoes every transaction
/// in its reply.  Returns ns per round trip.
fn binder_ping_pong(device: &std::path::Path, size: usize, rounds: usize) -> f64 {
    let msg = vec![0x5au8; size];
    let mut buf = vec![0u8; size.max(1)];
    let warmup = rounds / 10 + 1;
    let (ready_rd, ready_wr) = nix::unistd::pipe().unwrap();
    // SAFETY: single-threaded here; the child only serves and exits.
    match unsafe { fork() }.unwrap() {
        ForkResult::Child => {
            let mut server = Binder::open(device);
            server.serve();
            server.flush();
            std::fs::File::from(ready_wr).write_all(b"r").unwrap();
            for _ in 0..warmup + rounds {
                let n = server.recv(binder::BR_TRANSACTION, &mut buf);
                server.send(binder::BC_REPLY, &buf[..n]);
            }
            server.flush();
            // SAFETY: leave without running the parent's exit handlers.
            unsafe { nix::libc::_exit(0) }
        }
        ForkResult::Parent { child } => {
            drop(ready_wr);
            std::fs::File::from(ready_rd)
                .read_exact(&mut [0u8])
                .unwrap();
            let mut client = Binder::open(device);
            let mut round_trip = |buf: &mut [u8]| {
                client.send(binder::BC_TRANSACTION, &msg);
                client.recv(binder::BR_REPLY, buf)
            };
            for _ in 0..warmup {
                round_trip(&mut buf);
            }
            let start = Instant::now();
            for _ in 0..rounds {
                assert_eq!(round_trip(&mut buf), size);
            }
            let elapsed = start.elapsed();
            client.flush();
            waitpid(child, None).unwrap();
            elapsed.as_nanos() as f64 / rounds as f64
        }
    }
}

fn bus1_pair() -> (Bus1End, Bus1End) {
    let a = Peer::open(0).unwrap();
    let b = Peer::open(0).unwrap();
    let a_node = a.create_node().unwrap();
    let b_node = b.create_node().unwrap();
    let a_to_b = b.transfer(b_node, Some(&a)).unwrap();
    let b_to_a = a.transfer(a_node, Some(&b)).unwrap();
    (
        Bus1End {
            peer: a,
            to: a_to_b,
        },
        Bus1End {
            peer: b,
            to: b_to_a,
        },
    )
}

fn pipe_pair() -> (PipeEnd, PipeEnd) {
    let (r1, w1) = nix::unistd::pipe().unwrap();
    let (r2, w2) = nix::unistd::pipe().unwrap();
    let file = |fd: OwnedFd| std::fs::File::from(fd);
    (
        PipeEnd {
            rd: file(r2),
            wr: file(w1),
        },
        PipeEnd {
            rd: file(r1),
            wr: file(w2),
        },
    )
}

fn unix_pair() -> (UnixEnd, UnixEnd) {
    let (a, b) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .unwrap();
    let sock = |fd: OwnedFd| UnixEnd(UnixDatagram::from(fd));
    (sock(a), sock(b))
}

/// Round trips per second of `pairs` concurrent ping-pong pairs of
/// threads, `rounds` round trips each.
fn pairs_throughput<E: Endpoint + Send>(
    make: &dyn Fn() -> (E, E),
    pairs: usize,
    rounds: usize,
) -> f64 {
    let ends: Vec<(E, E)> = (0..pairs).map(|_| make()).collect();
    let start = Barrier::new(2 * pairs + 1);
    let elapsed = thread::scope(|s| {
        let mut pingers = vec![];
        for (mut a, mut b) in ends {
            let start = &start;
            s.spawn(move || {
                let mut buf = [0u8; 64];
                start.wait();
                for _ in 0..rounds {
                    let n = b.recv(&mut buf);
                    b.send(&buf[..n]);
                }
            });
            pingers.push(s.spawn(move || {
                let mut buf = [0u8; 64];
                start.wait();
                for _ in 0..rounds {
                    a.send(b"ping");
                    a.recv(&mut buf);
                }
            }));
        }
        start.wait();
        let t = Instant::now();
        for p in pingers {
            p.join().unwrap();
        }
        t.elapsed()
    });
    (pairs * rounds) as f64 / elapsed.as_secs_f64()
}

/// One multicast to `n` peers and their `n` receives, against `n` unicasts:
/// returns (ns per multicast send, ns per multicast incl. receives,
/// ns per n unicast sends incl. receives).
fn fan_out(n: usize, rounds: usize) -> (f64, f64, f64) {
    let sender = Peer::open(0).unwrap();
    let receivers: Vec<Peer> = (0..n).map(|_| Peer::open(0).unwrap()).collect();
    let handles: Vec<u64> = receivers
        .iter()
        .map(|r| {
            let node = r.create_node().unwrap();
            r.transfer(node, Some(&sender)).unwrap()
        })
        .collect();
    let mut buf = [0u8; 64];
    let drain = |buf: &mut [u8]| {
        for r in &receivers {
            r.recv(buf, &mut []).map_err(|(e, _)| e).unwrap();
        }
    };
    let (mut send_only, mut multicast, mut unicasts) =
        (Duration::ZERO, Duration::ZERO, Duration::ZERO);
    for round in 0..rounds / 10 + 1 + rounds {
        let measured = round > rounds / 10;
        let t = Instant::now();
        assert_eq!(
            sender.multicast(&handles, &[b"fan-out"], &[], 0, None),
            Ok(n)
        );
        let sent = t.elapsed();
        drain(&mut buf);
        let all = t.elapsed();
        let t = Instant::now();
        for &h in &handles {
            sender.send(h, &[b"fan-out"], &[]).unwrap();
        }
        drain(&mut buf);
        if measured {
            send_only += sent;
            multicast += all;
            unicasts += t.elapsed();
        }
    }
    let per = |d: Duration| d.as_nanos() as f64 / rounds as f64;
    (per(send_only), per(multicast), per(unicasts))
}

fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(5000);
    let binderfs = std::path::Path::new("/tmp/bus1-bench-binderfs");
    Binder::mount(binderfs);
    let device = binderfs.join("binder");
    println!("round trips: {rounds} per transport and size (same boot)");
    println!(
        "{:>6} {:>9} {:>9} {:>9} {:>9} {:>10} {:>10} {:>12}",
        "size",
        "bus1 ns",
        "pipe ns",
        "unix ns",
        "binder ns",
        "bus1/pipe",
        "bus1/unix",
        "bus1/binder"
    );
    for size in [0usize, 4096] {
        let (a, b) = bus1_pair();
        let bus1 = ping_pong(a, move || Box::new(b), size, rounds);
        let (a, b) = pipe_pair();
        let pipe = ping_pong(a, move || Box::new(b), size, rounds);
        let (a, b) = unix_pair();
        let unix = ping_pong(a, move || Box::new(b), size, rounds);
        let binder = binder_ping_pong(&device, size, rounds);
        println!(
            "{:>6} {:>9.0} {:>9.0} {:>9.0} {:>9.0} {:>10.2} {:>10.2} {:>12.2}",
            size,
            bus1,
            pipe,
            unix,
            binder,
            bus1 / pipe,
            bus1 / unix,
            bus1 / binder
        );
    }
    println!();
    let fan_rounds = (rounds / 10).max(50);
    println!("multicast fan-out: {fan_rounds} sends per width (each peer receives every message)");
    println!(
        "{:>6} {:>10} {:>12} {:>9} {:>14} {:>15} {:>15}",
        "peers",
        "send ns",
        "send+recv ns",
        "vs 1",
        "extra peer/1",
        "n unicasts ns",
        "multi/unicasts"
    );
    let mut one = None;
    for n in [1usize, 2, 4, 8, 16, 32, 64] {
        let (send, total, unicasts) = fan_out(n, fan_rounds);
        let base = *one.get_or_insert(total);
        let extra = if n > 1 {
            format!("{:.2}", (total - base) / (n - 1) as f64 / base)
        } else {
            "-".into()
        };
        println!(
            "{:>6} {:>10.0} {:>12.0} {:>9.2} {:>14} {:>15.0} {:>15.2}",
            n,
            send,
            total,
            total / base,
            extra,
            unicasts,
            total / unicasts
        );
    }

    println!();
    println!(
        "two disjoint ping-pong pairs vs one (threads, {rounds} round trips per pair, 4-byte messages)"
    );
    println!(
        "{:>8} {:>14} {:>14} {:>9}",
        "", "1 pair rt/s", "2 pairs rt/s", "2/1"
    );
    let rows: [(&str, f64, f64); 3] = [
        (
            "bus1",
            pairs_throughput(&bus1_pair, 1, rounds),
            pairs_throughput(&bus1_pair, 2, rounds),
        ),
        (
            "pipe",
            pairs_throughput(&pipe_pair, 1, rounds),
            pairs_throughput(&pipe_pair, 2, rounds),
        ),
        (
            "unix",
            pairs_throughput(&unix_pair, 1, rounds),
            pairs_throughput(&unix_pair, 2, rounds),
        ),
    ];
    for (name, one, two) in rows {
        println!("{name:>8} {one:>14.0} {two:>14.0} {:>9.2}", two / one);
    }
}
