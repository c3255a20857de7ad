// SPDX-License-Identifier: GPL-2.0
//! Peer reset (in the booted kernel): like a close and a new open, keeping
//! the file descriptor, the peer id and the uniqueness of ids.

use std::os::fd::AsFd;
use std::thread;
use std::time::Duration;

use bus1::sys::{BUS1_MSG_DATA, BUS1_MSG_NODE_DESTROY, BUS1_MSG_NODE_RELEASE};
use bus1::{Errno, Peer, fdinfo_field};

use super::live_objects;
use super::messaging::{connect, counts, peer, recv, recv_err};

#[test]
fn reset_drops_queue_nodes_and_handles_and_notifies_the_others() {
    let base = counts();
    let (p, holder, owner) = (peer(), peer(), peer());
    let peer_id = fdinfo_field(p.as_fd(), "bus1-peer-id").unwrap();
    // p owns a node that `holder` holds, and holds a handle to `owner`'s.
    let (mine, to_mine) = connect(&p, &holder);
    let (theirs, to_theirs) = connect(&owner, &p);
    holder.send(to_mine, &[b"queued"], &[to_mine]).unwrap();
    let messages = live_objects("messages");

    p.reset().unwrap();

    // The others hear what a close would tell them.
    let (r, _, _) = recv(&holder);
    assert_eq!((r.kind, r.id), (BUS1_MSG_NODE_DESTROY, to_mine));
    assert_eq!(holder.send(to_mine, &[b"x"], &[]), Err(Errno::EHOSTUNREACH));
    let (r, _, _) = recv(&owner);
    assert_eq!((r.kind, r.id), (BUS1_MSG_NODE_RELEASE, theirs));
    // The peer itself: an empty queue, no ids, the same peer id.
    assert_eq!(recv_err(&p), Errno::EAGAIN);
    assert_eq!(
        live_objects("messages"),
        messages - 1,
        "the queued message is freed"
    );
    assert_eq!(p.release(to_theirs), Err(Errno::ENXIO));
    assert_eq!(p.destroy(&[mine]), Err(Errno::ENXIO));
    assert_eq!(fdinfo_field(p.as_fd(), "bus1-peer-id").unwrap(), peer_id);
    assert_eq!(
        fdinfo_field(p.as_fd(), "bus1-queue-messages")
            .unwrap()
            .split_whitespace()
            .next(),
        Some("0")
    );
    // Still usable, and ids are never reused.
    let (fresh, to_fresh) = connect(&p, &holder);
    assert!(
        fresh > mine.max(to_theirs),
        "new id {fresh} after {mine}, {to_theirs}"
    );
    holder.send(to_fresh, &[b"after"], &[]).unwrap();
    let (r, data, _) = recv(&p);
    assert_eq!(
        (r.kind, r.id, data.as_slice()),
        (BUS1_MSG_DATA, fresh, &b"after"[..])
    );
    drop((p, holder, owner));
    assert_eq!(counts(), base);
}

#[test]
fn a_blocked_receiver_waits_through_a_reset() {
    let p = Peer::open(0).unwrap();
    let sender = peer();
    let (_, old) = connect(&p, &sender);
    thread::scope(|s| {
        let receiver = s.spawn(|| {
            let mut buf = [0u8; 16];
            let r = p.recv(&mut buf, &mut []).map_err(|(e, _)| e).unwrap();
            (r.id, buf[..r.n_bytes].to_vec())
        });
        thread::sleep(Duration::from_millis(100));
        p.reset().unwrap();
        assert_eq!(recv(&sender).0.kind, BUS1_MSG_NODE_DESTROY);
        assert_eq!(sender.send(old, &[b"old"], &[]), Err(Errno::EHOSTUNREACH));
        let (node, handle) = connect(&p, &sender);
        sender.send(handle, &[b"new"], &[]).unwrap();
        assert_eq!(receiver.join().unwrap(), (node, b"new".to_vec()));
    });
}

#[test]
fn reset_validates_its_arguments() {
    let p = peer();
    let node = p.create_node().unwrap();
    let file = std::fs::File::open("/proc/self/stat").unwrap();
    use std::os::fd::AsRawFd;
    // SAFETY: no pointers.
    unsafe {
        assert_eq!(
            bus1::sys::call(
                bus1::sys::nr::BUS1_PEER_RESET,
                [file.as_raw_fd() as usize, 0, 0, 0, 0, 0]
            ),
            Err(Errno::EBADF)
        );
        assert_eq!(
            bus1::sys::call(
                bus1::sys::nr::BUS1_PEER_RESET,
                [p.as_raw_fd() as usize, 1, 0, 0, 0, 0]
            ),
            Err(Errno::EINVAL)
        );
    }
    // Nothing happened: the node is still there.
    assert_eq!(p.destroy(&[node]), Ok(()));
}
