// SPDX-License-Identifier: GPL-2.0
//! Sender credentials (in the booted kernel): taken at send time, seen in
//! the receiver's user and pid namespaces.

use std::fs;

use bus1::sys::BUS1_MSG_NODE_RELEASE;
use bus1::{Peer, Received};
use nix::sched::{CloneFlags, unshare};
use nix::unistd::{Gid, Uid, getpid, gettid, setresgid, setresuid};

use super::messaging::{connect, peer};
use super::{in_child, in_child_pid};

fn recv_creds(p: &Peer) -> Received {
    p.recv(&mut [0u8; 64], &mut []).map_err(|(e, _)| e).unwrap()
}

fn creds(r: &Received) -> (u32, u32, i32, i32) {
    (r.uid, r.gid, r.pid, r.tid)
}

/// The overflow ids an unmapped id shows as.
const NOBODY: u32 = 65534;

#[test]
fn a_message_carries_the_senders_ids_and_notifications_none() {
    let (owner, sender) = (peer(), peer());
    let (_, handle) = connect(&owner, &sender);
    sender.send(handle, &[b"me"], &[]).unwrap();
    let me = (0, 0, getpid().as_raw(), gettid().as_raw());
    assert_eq!(creds(&recv_creds(&owner)), me);
    // From another thread: same process, its own thread id.
    let tid = std::thread::scope(|s| {
        s.spawn(|| {
            sender.send(handle, &[], &[]).unwrap();
            gettid().as_raw()
        })
        .join()
        .unwrap()
    });
    assert_ne!(tid, me.3);
    assert_eq!(creds(&recv_creds(&owner)), (0, 0, me.2, tid));
    // Effective ids, as they were at send time.
    let code = in_child(|| {
        setresgid(Gid::from_raw(2001), Gid::from_raw(2002), Gid::from_raw(0)).unwrap();
        setresuid(Uid::from_raw(1001), Uid::from_raw(1002), Uid::from_raw(0)).unwrap();
        sender.send(handle, &[], &[]).unwrap();
        0
    });
    assert_eq!(code, 0);
    let r = recv_creds(&owner);
    assert_eq!((r.uid, r.gid), (1002, 2002));
    assert!(
        r.pid > 0 && r.pid != me.2,
        "the child's pid, after it exited"
    );
    assert_eq!(r.pid, r.tid);
    // Notifications have no sender.
    sender.release(handle).unwrap();
    let r = recv_creds(&owner);
    assert_eq!(r.kind, BUS1_MSG_NODE_RELEASE);
    assert_eq!(creds(&r), (u32::MAX, u32::MAX, 0, 0));
}

#[test]
fn ids_are_mapped_into_the_receivers_user_namespace() {
    let (owner, sender) = (peer(), peer());
    let (_, handle) = connect(&owner, &sender);
    sender.send(handle, &[b"root"], &[]).unwrap();
    let code = in_child(|| {
        setresgid(
            Gid::from_raw(2001),
            Gid::from_raw(2001),
            Gid::from_raw(2001),
        )
        .unwrap();
        setresuid(
            Uid::from_raw(1001),
            Uid::from_raw(1001),
            Uid::from_raw(1001),
        )
        .unwrap();
        sender.send(handle, &[b"1001"], &[]).unwrap();
        0
    });
    assert_eq!(code, 0);
    // The receiver moves into a user namespace where outside root is 5000
    // (and gid 0 is 6000), and nothing else is mapped.
    let code = in_child(|| {
        unshare(CloneFlags::CLONE_NEWUSER).unwrap();
        fs::write("/proc/self/uid_map", "5000 0 1\n").unwrap();
        fs::write("/proc/self/setgroups", "deny\n").unwrap();
        fs::write("/proc/self/gid_map", "6000 0 1\n").unwrap();
        let root = recv_creds(&owner);
        let other = recv_creds(&owner);
        let seen = ((root.uid, root.gid), (other.uid, other.gid));
        if seen == ((5000, 6000), (NOBODY, NOBODY)) {
            0
        } else {
            eprintln!("seen in the user namespace: {seen:?}");
            1
        }
    });
    assert_eq!(code, 0);
}

#[test]
fn pids_are_seen_in_the_receivers_pid_namespace() {
    let (owner, sender) = (peer(), peer());
    let (_, handle) = connect(&owner, &sender);
    sender.send(handle, &[b"outside"], &[]).unwrap();
    let outside = getpid().as_raw();
    // A child creates a pid namespace; its child G is pid 1 in there.
    let code = in_child(|| {
        unshare(CloneFlags::CLONE_NEWPID).unwrap();
        let mut g_pid = 0;
        let g = in_child_pid(&mut g_pid, || {
            // G does not see the outside sender...
            let r = recv_creds(&owner);
            if (r.pid, r.tid) != (0, 0) || getpid().as_raw() != 1 {
                eprintln!(
                    "outside sender seen as {:?} by pid {}",
                    (r.pid, r.tid),
                    getpid()
                );
                return 1;
            }
            // ... and sees itself as pid 1.
            sender.send(handle, &[b"inside"], &[]).unwrap();
            let r = recv_creds(&owner);
            if (r.pid, r.tid) != (1, 1) {
                eprintln!("own message seen as {:?}", (r.pid, r.tid));
                return 2;
            }
            sender.send(handle, &[b"for the parent"], &[]).unwrap();
            0
        });
        if g != 0 {
            return 10 + g;
        }
        // Outside, G has another pid, still known after G exited.
        let r = recv_creds(&owner);
        if (r.pid, r.tid) != (g_pid, g_pid) {
            eprintln!("G seen as {:?}, G is {g_pid}", (r.pid, r.tid));
            return 3;
        }
        0
    });
    assert_eq!(code, 0);
    assert_ne!(outside, 1);
}
