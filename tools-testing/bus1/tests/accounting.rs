// SPDX-License-Identifier: GPL-2.0
//! Per-user accounting and fair share (in the booted kernel): what is
//! queued on a peer is charged to the peer and to the user who opened it,
//! and a sender of another user gets only a share of what is free.

use std::fs;
use std::os::fd::AsFd;

use bus1::{Errno, Peer, fdinfo_field};
use nix::unistd::{Uid, setresuid};

use super::in_child;
use super::messaging::{connect, peer};

/// Sets a /proc/sys/bus1 value for the length of a test.
pub(crate) struct Sysctl {
    path: String,
    old: String,
}

impl Sysctl {
    pub(crate) fn set(name: &str, value: u64) -> Self {
        let path = format!("/proc/sys/bus1/{name}");
        let old = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        fs::write(&path, format!("{value}\n")).unwrap();
        Self { path, old }
    }
}

impl Drop for Sysctl {
    fn drop(&mut self) {
        fs::write(&self.path, &self.old).unwrap();
    }
}

/// (used, limit) of one accounting line of a peer's fdinfo.
pub(crate) fn pool(p: &Peer, name: &str) -> (u64, u64) {
    let value = fdinfo_field(p.as_fd(), name).unwrap();
    let mut words = value.split_whitespace().map(|w| w.parse().unwrap());
    (words.next().unwrap(), words.next().unwrap())
}

/// Sends empty messages to `handle` until the first refusal; returns how
/// many were queued and the refusal.
fn flood(from: &Peer, handle: u64) -> (u64, Errno) {
    let mut sent = 0;
    loop {
        match from.send(handle, &[], &[]) {
            Ok(()) => sent += 1,
            Err(e) => return (sent, e),
        }
        assert!(sent < 1 << 20, "no end to the flood");
    }
}

/// In a child running as `uid`: opens a peer (charged to `uid`), gets a
/// handle to each of `nodes` of `owner` and floods each in turn; exits 0 if
/// the counts are `expected`, each flood ending in EDQUOT.
fn flood_as(uid: u32, owner: &Peer, nodes: &[u64], expected: &[u64]) -> i32 {
    in_child(|| {
        let uid = Uid::from_raw(uid);
        setresuid(uid, uid, uid).unwrap();
        let me = peer();
        let mut counts = Vec::new();
        for &node in nodes {
            // `owner`'s fd came with the fork: fds are capabilities.
            let handle = owner.transfer(node, Some(&me)).unwrap();
            let (sent, refusal) = flood(&me, handle);
            assert_eq!(refusal, Errno::EDQUOT);
            counts.push(sent);
        }
        if counts == expected {
            0
        } else {
            eprintln!("uid {uid}: queued {counts:?}, expected {expected:?}");
            1
        }
    })
}

#[test]
fn a_hostile_user_cannot_starve_a_peer_or_its_user() {
    // Small limits keep the floods short; the rules are the same.
    let _peer_max = Sysctl::set("max_peer_messages", 1024);
    let _user_max = Sysctl::set("max_user_messages", 2048);
    // Three peers of root.
    let (p1, p2, p3) = (peer(), peer(), peer());
    let nodes = [
        p1.create_node().unwrap(),
        p2.create_node().unwrap(),
        p3.create_node().unwrap(),
    ];

    // uid 1001 floods all three.  Per peer it gets half of the 1024: 512
    // (its share must stay within what remains free).  In the user pool its
    // share grows to 1024 = half of 2048, so the third peer gets nothing.
    assert_eq!(flood_as(1001, &p1, &nodes[..1], &[512]), 0);
    assert_eq!(pool(&p1, "bus1-queue-messages"), (512, 1024));
    assert_eq!(flood_as(1001, &p2, &nodes[1..2], &[512]), 0);
    assert_eq!(pool(&p2, "bus1-user-messages"), (1024, 2048));
    assert_eq!(flood_as(1001, &p3, &nodes[2..], &[0]), 0);

    // A second user still gets through: to p1 half of what is free there
    // (256 of 512), to p3 half of what is free in the user pool (256 of
    // 1024 - 256 = 768, counting its own share as taken).
    assert_eq!(flood_as(1002, &p1, &nodes[..1], &[256]), 0);
    assert_eq!(flood_as(1002, &p3, &nodes[2..], &[256]), 0);
    assert_eq!(pool(&p3, "bus1-user-messages"), (1024 + 256 + 256, 2048));

    // The owner's own user is bounded by the limits only: p1 fills up to
    // 1024, then the user pool (2048) stops it at p3.
    let me = peer();
    let to_p1 = p1.transfer(nodes[0], Some(&me)).unwrap();
    assert_eq!(flood(&me, to_p1), (1024 - 512 - 256, Errno::EDQUOT));
    assert_eq!(pool(&p1, "bus1-queue-messages"), (1024, 1024));
    let to_p3 = p3.transfer(nodes[2], Some(&me)).unwrap();
    assert_eq!(flood(&me, to_p3), (2048 - 1792, Errno::EDQUOT));
    assert_eq!(pool(&p1, "bus1-user-messages"), (2048, 2048));

    // Draining gives everything back, to both pools.  (The children's
    // handles were released on exit, but no release notification is
    // queued: `me` holds the node, and the owner handing it to `me`
    // withdrew the pending one.)
    let mut drained = 0;
    while p1.recv(&mut [0u8; 8], &mut []).is_ok() {
        drained += 1;
    }
    assert_eq!(drained, 1024);
    assert_eq!(pool(&p1, "bus1-queue-messages").0, 0);
    assert_eq!(pool(&p2, "bus1-user-messages").0, 2048 - 1024);
    // ... and the hostile user may send again, within its share.
    assert_eq!(flood_as(1001, &p1, &nodes[..1], &[256]), 0);
    drop((p2, p3));
    assert_eq!(
        pool(&p1, "bus1-user-messages"),
        (256, 2048),
        "closing gives back"
    );
}

#[test]
fn the_limits_are_sysctls_shown_in_fdinfo() {
    let p = peer();
    for (name, line) in [
        ("max_peer_messages", "bus1-queue-messages"),
        ("max_peer_bytes", "bus1-queue-bytes"),
        ("max_peer_handles", "bus1-queue-handles"),
        ("max_peer_fds", "bus1-queue-fds"),
        ("max_user_messages", "bus1-user-messages"),
        ("max_user_bytes", "bus1-user-bytes"),
        ("max_user_handles", "bus1-user-handles"),
        ("max_user_fds", "bus1-user-fds"),
    ] {
        let default: u64 = fs::read_to_string(format!("/proc/sys/bus1/{name}"))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert_eq!(pool(&p, line), (0, default), "{name}");
        let changed = Sysctl::set(name, 12345);
        assert_eq!(pool(&p, line), (0, 12345), "{name}");
        drop(changed);
        assert_eq!(pool(&p, line).1, default, "{name} restored");
    }
    // Only root may change them.
    let code = in_child(|| {
        setresuid(
            Uid::from_raw(1001),
            Uid::from_raw(1001),
            Uid::from_raw(1001),
        )
        .unwrap();
        match fs::write("/proc/sys/bus1/max_peer_messages", "1\n") {
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => 0,
            other => {
                eprintln!("write as uid 1001: {other:?}");
                1
            }
        }
    });
    assert_eq!(code, 0);
}

#[test]
fn carried_handles_are_charged_until_received() {
    let _max = Sysctl::set("max_peer_handles", 300);
    let (owner, sender) = (peer(), peer());
    let (_, handle) = connect(&owner, &sender);
    let nodes: Vec<u64> = (0..256).map(|_| sender.create_node().unwrap()).collect();
    sender.send(handle, &[b"x"], &nodes).unwrap();
    assert_eq!(pool(&owner, "bus1-queue-handles"), (256, 300));
    assert_eq!(pool(&owner, "bus1-user-handles").0, 256);
    // 256 more do not fit: refused as a whole, nothing queued.
    assert_eq!(sender.send(handle, &[b"y"], &nodes), Err(Errno::EDQUOT));
    assert_eq!(sender.send(handle, &[b"z"], &nodes[..44]), Ok(()));
    assert_eq!(pool(&owner, "bus1-queue-handles").0, 300);
    assert_eq!(pool(&owner, "bus1-queue-messages").0, 2);
    // A message without handles is not refused for the handles.
    sender.send(handle, &[b"w"], &[]).unwrap();
    let mut buf = [0u8; 16];
    let mut ids = vec![0u64; 256];
    owner.recv(&mut buf, &mut ids).map_err(|(e, _)| e).unwrap();
    assert_eq!(pool(&owner, "bus1-queue-handles").0, 44);
    drop(owner);
    assert_eq!(
        pool(&sender, "bus1-user-handles").0,
        0,
        "closing gives back"
    );
}

#[test]
fn a_users_own_messages_count_in_its_pool() {
    let (owner, sender) = (peer(), peer());
    let (_, handle) = connect(&owner, &sender);
    let before = pool(&owner, "bus1-user-messages").0;
    sender.send(handle, &[b"x"], &[]).unwrap();
    assert_eq!(pool(&owner, "bus1-queue-messages").0, 1);
    assert_eq!(pool(&owner, "bus1-user-messages").0, before + 1);
    assert_eq!(
        pool(&sender, "bus1-user-messages").0,
        before + 1,
        "one pool per user"
    );
}
