// SPDX-License-Identifier: GPL-2.0
//! Round-trip latency of bus1 unicast against a pipe pair and an AF_UNIX
//! SOCK_SEQPACKET socketpair, measured in the same boot, reported as ratios.
//!
//! Usage: bench [ROUND_TRIPS]   (default 5000)
//!
//! Two processes ping-pong a message of 0 bytes and of 4 KiB; each transport
//! gets the same warm-up and the same number of round trips.

use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixDatagram;
use std::time::Instant;

use bus1::Peer;
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

fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(5000);
    println!("round trips: {rounds} per transport and size (same boot)");
    println!(
        "{:>8} {:>12} {:>12} {:>12} {:>11} {:>11}",
        "size", "bus1 ns", "pipe ns", "unix ns", "bus1/pipe", "bus1/unix"
    );
    for size in [0usize, 4096] {
        let (a, b) = bus1_pair();
        let bus1 = ping_pong(a, move || Box::new(b), size, rounds);
        let (a, b) = pipe_pair();
        let pipe = ping_pong(a, move || Box::new(b), size, rounds);
        let (a, b) = unix_pair();
        let unix = ping_pong(a, move || Box::new(b), size, rounds);
        println!(
            "{:>8} {:>12.0} {:>12.0} {:>12.0} {:>11.2} {:>11.2}",
            size,
            bus1,
            pipe,
            unix,
            bus1 / pipe,
            bus1 / unix
        );
    }
}
