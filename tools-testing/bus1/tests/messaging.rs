// SPDX-License-Identifier: GPL-2.0
//! Nodes, handles, messages and notifications (in the booted kernel).

use std::os::fd::AsRawFd;

use bus1::sys::{
    self, BUS1_ID_INVALID, BUS1_MSG_DATA, BUS1_MSG_NODE_DESTROY, BUS1_MSG_NODE_RELEASE,
};
use bus1::{BUS1_OPEN_NONBLOCK, Errno, Peer, Received};

use super::{in_child, live_objects};

/// The address of a `u64` holding `id`, for the raw calls that take ids by
/// address (leaked: the tests are short-lived).
pub(crate) fn id_ptr(id: u64) -> usize {
    Box::leak(Box::new(id)) as *const u64 as usize
}

pub(crate) fn peer() -> Peer {
    Peer::open(BUS1_OPEN_NONBLOCK).unwrap()
}

/// Receives one message that must fit into 4 KiB and 16 handles.
pub(crate) fn recv(p: &Peer) -> (Received, Vec<u8>, Vec<u64>) {
    let mut buf = vec![0u8; 4096];
    let mut handles = vec![0u64; 16];
    let r = p.recv(&mut buf, &mut handles).map_err(|(e, _)| e).unwrap();
    buf.truncate(r.n_bytes);
    handles.truncate(r.n_handles);
    (r, buf, handles)
}

pub(crate) fn recv_err(p: &Peer) -> Errno {
    let mut buf = [0u8; 64];
    p.recv(&mut buf, &mut [])
        .map(|r| panic!("unexpected {r:?}"))
        .unwrap_err()
        .0
}

/// A node on `owner` and a handle to it on `holder`.
pub(crate) fn connect(owner: &Peer, holder: &Peer) -> (u64, u64) {
    let node = owner.create_node().unwrap();
    let handle = owner.transfer(node, Some(holder)).unwrap();
    (node, handle)
}

pub(crate) fn counts() -> (i64, i64, i64) {
    (
        live_objects("peers"),
        live_objects("nodes"),
        live_objects("messages"),
    )
}

#[test]
fn node_ids_are_unique_and_never_reused() {
    let p = peer();
    let a = p.create_node().unwrap();
    let b = p.create_node().unwrap();
    assert!(b > a);
    p.destroy(&[a]).unwrap();
    let c = p.create_node().unwrap();
    assert!(c > b, "id {c} after {b}");
}

#[test]
fn send_through_a_handle_and_receive_on_the_node() {
    let (owner, holder) = (peer(), peer());
    let (node, handle) = connect(&owner, &holder);
    holder.send(handle, &[b"hello ", b"bus1"], &[]).unwrap();
    let (r, data, handles) = recv(&owner);
    assert_eq!((r.kind, r.id), (BUS1_MSG_DATA, node));
    assert_eq!(data, b"hello bus1");
    assert!(handles.is_empty());
    assert_eq!(recv_err(&owner), Errno::EAGAIN);
}

#[test]
fn only_a_holder_can_send() {
    let (owner, stranger) = (peer(), peer());
    let node = owner.create_node().unwrap();
    // The stranger has no id for the node: it cannot name it.
    assert_eq!(stranger.send(node, &[b"x"], &[]), Err(Errno::ENXIO));
    assert_eq!(recv_err(&owner), Errno::EAGAIN);
}

#[test]
fn repeated_transfer_counts_up_one_handle() {
    let (owner, holder) = (peer(), peer());
    let node = owner.create_node().unwrap();
    let h1 = owner.transfer(node, Some(&holder)).unwrap();
    let h2 = owner.transfer(node, Some(&holder)).unwrap();
    assert_eq!(h1, h2, "one handle per node and peer");
    // The owner refers to its node by the node id.
    assert_eq!(holder.transfer(h1, Some(&owner)).unwrap(), node);
    assert_eq!(owner.transfer(node, None).unwrap(), node);
    // -1 as destination: the holder acquires its own handle once more.
    assert_eq!(holder.transfer(h1, None).unwrap(), h1);
    holder.release(h1).unwrap();
    holder.release(h1).unwrap();
    assert_eq!(recv_err(&owner), Errno::EAGAIN, "one reference is left");
    holder.send(h1, &[b"still"], &[]).unwrap();
    holder.release(h1).unwrap();
    assert_eq!(holder.send(h1, &[b"gone"], &[]), Err(Errno::ENXIO));
    assert_eq!(holder.release(h1), Err(Errno::ENXIO));
    let (r, data, _) = recv(&owner);
    assert_eq!((r.kind, data.as_slice()), (BUS1_MSG_DATA, &b"still"[..]));
    let (r, _, _) = recv(&owner);
    assert_eq!((r.kind, r.id), (BUS1_MSG_NODE_RELEASE, node));
}

#[test]
fn handles_travel_in_messages_and_are_usable() {
    let (a, b, c) = (peer(), peer(), peer());
    let (b_node, a_to_b) = connect(&b, &a);
    let (c_node, a_to_c) = connect(&c, &a);
    // a passes its handle to c's node on to b.
    a.send(a_to_b, &[b"meet c"], &[a_to_c]).unwrap();
    let (r, data, handles) = recv(&b);
    assert_eq!(
        (r.id, data.as_slice(), handles.len()),
        (b_node, &b"meet c"[..], 1)
    );
    let b_to_c = handles[0];
    // The received id is a full handle: send, transfer, release.
    b.send(b_to_c, &[b"hi c"], &[]).unwrap();
    let (r, data, _) = recv(&c);
    assert_eq!((r.id, data.as_slice()), (c_node, &b"hi c"[..]));
    let c_self = b.transfer(b_to_c, Some(&c)).unwrap();
    assert_eq!(c_self, c_node);
    b.release(b_to_c).unwrap();
    a.release(a_to_c).unwrap();
    let (r, _, _) = recv(&c);
    assert_eq!((r.kind, r.id), (BUS1_MSG_NODE_RELEASE, c_node));
}

#[test]
fn in_flight_handle_keeps_the_node_referenced() {
    let (owner, a, b) = (peer(), peer(), peer());
    let (node, a_h) = connect(&owner, &a);
    let (_, a_to_b) = connect(&b, &a);
    a.send(a_to_b, &[], &[a_h]).unwrap();
    a.release(a_h).unwrap();
    // The message still carries a reference: no release notification yet.
    assert_eq!(recv_err(&owner), Errno::EAGAIN);
    let (_, _, handles) = recv(&b);
    b.release(handles[0]).unwrap();
    let (r, _, _) = recv(&owner);
    assert_eq!((r.kind, r.id), (BUS1_MSG_NODE_RELEASE, node));
}

#[test]
fn destroy_notifies_owner_and_every_holder_after_earlier_messages() {
    let (owner, h1, h2) = (peer(), peer(), peer());
    let node = owner.create_node().unwrap();
    let id1 = owner.transfer(node, Some(&h1)).unwrap();
    let id2 = owner.transfer(node, Some(&h2)).unwrap();
    h1.send(id1, &[b"before"], &[]).unwrap();
    owner.destroy(&[node]).unwrap();
    assert_eq!(h2.send(id2, &[b"after"], &[]), Err(Errno::EHOSTUNREACH));
    assert_eq!(h2.transfer(id2, Some(&h1)), Err(Errno::EHOSTUNREACH));
    let (r, data, _) = recv(&owner);
    assert_eq!((r.kind, data.as_slice()), (BUS1_MSG_DATA, &b"before"[..]));
    let (r, _, _) = recv(&owner);
    assert_eq!((r.kind, r.id), (BUS1_MSG_NODE_DESTROY, node));
    for (p, id) in [(&h1, id1), (&h2, id2)] {
        let (r, _, _) = recv(p);
        assert_eq!((r.kind, r.id), (BUS1_MSG_NODE_DESTROY, id));
    }
    assert_eq!(recv_err(&owner), Errno::EAGAIN, "no release after destroy");
    // The dead handle can still be released, once.
    h1.release(id1).unwrap();
    assert_eq!(h1.release(id1), Err(Errno::ENXIO));
}

#[test]
fn destroy_is_atomic_and_validates_every_id() {
    let (owner, holder) = (peer(), peer());
    let (a, handle) = connect(&owner, &holder);
    let b = owner.create_node().unwrap();
    assert_eq!(owner.destroy(&[a, b, a]), Err(Errno::ENOTUNIQ));
    assert_eq!(owner.destroy(&[a, 999_999]), Err(Errno::ENXIO));
    assert_eq!(
        holder.destroy(&[handle]),
        Err(Errno::EPERM),
        "not the owner"
    );
    assert_eq!(owner.destroy(&[]), Err(Errno::EINVAL));
    // Nothing was destroyed by the failed calls.
    holder.send(handle, &[b"alive"], &[]).unwrap();
    assert_eq!(recv(&owner).0.kind, BUS1_MSG_DATA);
    owner.destroy(&[a, b]).unwrap();
    assert_eq!(owner.destroy(&[a]), Err(Errno::ENXIO), "double destroy");
    let kinds: Vec<u64> = (0..2).map(|_| recv(&owner).0.kind).collect();
    assert_eq!(kinds, [BUS1_MSG_NODE_DESTROY; 2]);
}

#[test]
fn handle_to_a_destroyed_node_arrives_invalid() {
    let (owner, a, b) = (peer(), peer(), peer());
    let (node, a_h) = connect(&owner, &a);
    let (_, a_to_b) = connect(&b, &a);
    owner.destroy(&[node]).unwrap();
    a.send(a_to_b, &[b"dead"], &[a_h]).unwrap();
    let (_, _, handles) = recv(&b);
    assert_eq!(handles, [BUS1_ID_INVALID]);
}

#[test]
fn release_of_an_owned_node_is_refused() {
    let p = peer();
    let node = p.create_node().unwrap();
    assert_eq!(p.release(node), Err(Errno::EPERM));
    assert_eq!(p.release(12345), Err(Errno::ENXIO));
}

#[test]
fn too_small_buffers_report_sizes_and_keep_the_message() {
    let (owner, holder) = (peer(), peer());
    let (_, handle) = connect(&owner, &holder);
    let other = peer();
    let (_, extra) = connect(&other, &holder);
    holder
        .send(handle, &[&[7u8; 100]], &[extra, extra])
        .unwrap();
    let mut small = [0u8; 10];
    let (e, needed) = owner.recv(&mut small, &mut [0u64; 8]).unwrap_err();
    assert_eq!(
        (e, needed.n_bytes, needed.n_handles),
        (Errno::EMSGSIZE, 100, 2)
    );
    let (e, needed) = owner.recv(&mut [0u8; 100], &mut [0u64; 1]).unwrap_err();
    assert_eq!(
        (e, needed.n_bytes, needed.n_handles),
        (Errno::EMSGSIZE, 100, 2)
    );
    let (r, data, handles) = recv(&owner);
    assert_eq!((r.n_bytes, data, handles.len()), (100, vec![7u8; 100], 2));
    assert_eq!(handles[0], handles[1], "one handle per node");
}

#[test]
fn payload_sizes_zero_to_large() {
    let (owner, holder) = (peer(), peer());
    let (_, handle) = connect(&owner, &holder);
    for size in [0usize, 1, 4096, 65536, sys::BUS1_PAYLOAD_MAX as usize] {
        let mut data = vec![0xa5u8; size];
        for (i, b) in data.iter_mut().enumerate().step_by(4093) {
            *b = i as u8;
        }
        holder.send(handle, &[&data], &[]).unwrap();
        let mut buf = vec![0u8; size];
        let r = owner.recv(&mut buf, &mut []).map_err(|(e, _)| e).unwrap();
        assert_eq!(r.n_bytes, size);
        assert!(buf == data, "payload of {size} bytes differs");
    }
    let big = vec![0u8; sys::BUS1_PAYLOAD_MAX as usize + 1];
    assert_eq!(holder.send(handle, &[&big], &[]), Err(Errno::EMSGSIZE));
}

#[test]
fn blocking_recv_wakes_up_and_poll_tells_readability() {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    let owner = Peer::open(0).unwrap();
    let holder = peer();
    let (node, handle) = connect(&owner, &holder);
    let mut fds = [PollFd::new(
        std::os::fd::AsFd::as_fd(&owner),
        PollFlags::POLLIN,
    )];
    assert_eq!(poll(&mut fds, PollTimeout::ZERO).unwrap(), 0);
    let sender = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(200));
        holder.send(handle, &[b"wake"], &[]).unwrap();
        holder
    });
    // Blocks until the message arrives.
    let (r, data, _) = recv(&owner);
    assert_eq!((r.id, data.as_slice()), (node, &b"wake"[..]));
    let holder = sender.join().unwrap();
    holder.send(handle, &[b"poll"], &[]).unwrap();
    assert_eq!(poll(&mut fds, PollTimeout::ZERO).unwrap(), 1);
    assert!(fds[0].revents().unwrap().contains(PollFlags::POLLIN));
    recv(&owner);
    assert_eq!(poll(&mut fds, PollTimeout::ZERO).unwrap(), 0);
}

extern "C" fn on_alarm(_: nix::libc::c_int) {}

#[test]
fn signal_interrupts_a_blocking_recv() {
    use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};
    let code = in_child(|| {
        let owner = Peer::open(0).unwrap();
        let _node = owner.create_node().unwrap();
        // Without SA_RESTART the wait ends in EINTR.
        let act = SigAction::new(
            SigHandler::Handler(on_alarm),
            SaFlags::empty(),
            SigSet::empty(),
        );
        // SAFETY: the handler does nothing.
        unsafe { sigaction(Signal::SIGALRM, &act) }.unwrap();
        nix::unistd::alarm::set(1);
        let mut buf = [0u8; 8];
        assert_eq!(owner.recv(&mut buf, &mut []).unwrap_err().0, Errno::EINTR);
        0
    });
    assert_eq!(code, 0);
}

#[test]
fn sa_restart_restarts_a_blocking_recv() {
    use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};
    let code = in_child(|| {
        let owner = Peer::open(0).unwrap();
        let holder = peer();
        let (node, handle) = connect(&owner, &holder);
        let act = SigAction::new(
            SigHandler::Handler(on_alarm),
            SaFlags::SA_RESTART,
            SigSet::empty(),
        );
        // SAFETY: the handler does nothing.
        unsafe { sigaction(Signal::SIGALRM, &act) }.unwrap();
        nix::unistd::alarm::set(1);
        let sender = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(2500));
            holder.send(handle, &[b"after the signal"], &[]).unwrap();
        });
        // The signal arrives after 1 s; the call restarts and gets the
        // message sent after 2.5 s.
        let (r, data, _) = recv(&owner);
        assert_eq!((r.id, data.as_slice()), (node, &b"after the signal"[..]));
        sender.join().unwrap();
        0
    });
    assert_eq!(code, 0);
}

#[test]
fn every_call_rejects_unknown_flags() {
    let (owner, holder) = (peer(), peer());
    let (node, handle) = connect(&owner, &holder);
    let (o, h) = (owner.as_raw_fd() as usize, holder.as_raw_fd() as usize);
    let mut id = 0u64;
    let idp = &mut id as *mut u64 as usize;
    let msg = sys::Bus1Message::default();
    let mut args = sys::Bus1Recv::default();
    let nodes = [node];
    let dsts = [handle];
    // Bits 0 to 2 are bus1_send()'s; no call knows the others.
    for flag in [1usize << 3, 1 << 7, 1 << 31] {
        let calls: [(usize, [usize; 6]); 7] = [
            (sys::nr::BUS1_NODE_CREATE, [o, idp, flag, 0, 0, 0]),
            (
                sys::nr::BUS1_HANDLE_TRANSFER,
                [o, id_ptr(node), h, idp, flag, 0],
            ),
            (
                sys::nr::BUS1_HANDLE_RELEASE,
                [h, id_ptr(handle), flag, 0, 0, 0],
            ),
            (
                sys::nr::BUS1_NODES_DESTROY,
                [o, nodes.as_ptr() as usize, 1, flag, 0, 0],
            ),
            (
                sys::nr::BUS1_SEND,
                [
                    h,
                    dsts.as_ptr() as usize,
                    1,
                    &msg as *const _ as usize,
                    sys::BUS1_MESSAGE_SIZE_VER0,
                    flag,
                ],
            ),
            (
                sys::nr::BUS1_RECV,
                [o, &mut args as *mut _ as usize, 64, flag, 0, 0],
            ),
            (sys::nr::BUS1_PEER_RESET, [o, flag, 0, 0, 0, 0]),
        ];
        for (nr, call) in calls {
            // SAFETY: valid pointers; the flags must be rejected first.
            assert_eq!(
                unsafe { sys::call(nr, call) },
                Err(Errno::EINVAL),
                "syscall {nr} flags {flag:#x}"
            );
        }
    }
    // Nothing happened: the node lives, the handle works, no message.
    assert_eq!(recv_err(&owner), Errno::EAGAIN);
    holder.send(handle, &[b"ok"], &[]).unwrap();
    assert_eq!(recv(&owner).1, b"ok");
}

#[test]
fn closing_a_peer_notifies_and_frees_everything() {
    let base = counts();
    let (owner, holder) = (peer(), peer());
    let (node, handle) = connect(&owner, &holder);
    let (_, holder_node_h) = connect(&holder, &owner);
    // Messages queued on the closing peer, one carrying a handle.
    owner.send(holder_node_h, &[b"unread"], &[node]).unwrap();
    holder.send(handle, &[b"unread too"], &[]).unwrap();
    drop(holder);
    // The owner's node lost its holder: released (after the queued data).
    let (r, _, _) = recv(&owner);
    assert_eq!(r.kind, BUS1_MSG_DATA);
    let kinds: Vec<(u64, u64)> = std::iter::from_fn(|| {
        let mut buf = [0u8; 64];
        owner
            .recv(&mut buf, &mut [0; 4])
            .ok()
            .map(|r| (r.kind, r.id))
    })
    .collect();
    assert!(kinds.contains(&(BUS1_MSG_NODE_RELEASE, node)), "{kinds:?}");
    assert!(
        kinds.contains(&(BUS1_MSG_NODE_DESTROY, holder_node_h)),
        "{kinds:?}"
    );
    drop(owner);
    assert_eq!(
        counts(),
        base,
        "peers, nodes, messages back to where they were"
    );
}

#[test]
fn bad_arguments_fail_without_effect() {
    let base = counts();
    let (owner, holder) = (peer(), peer());
    let (node, handle) = connect(&owner, &holder);
    let file = std::fs::File::open("/proc/self/stat").unwrap();
    // An address that is never mapped (not a dangling pointer to be
    // dereferenced: the kernel must fail with EFAULT).
    let bad_ptr = 8usize;
    // SAFETY (all raw calls below): the kernel must reject them before
    // touching any pointer that is not valid.
    unsafe {
        // Unknown flags.
        {
            let mut id = 0u64;
            assert_eq!(
                sys::call(
                    sys::nr::BUS1_NODE_CREATE,
                    [
                        owner.as_raw_fd() as usize,
                        &mut id as *mut _ as usize,
                        1,
                        0,
                        0,
                        0
                    ]
                ),
                Err(Errno::EINVAL)
            );
        }
        assert_eq!(
            sys::call(
                sys::nr::BUS1_HANDLE_RELEASE,
                [holder.as_raw_fd() as usize, id_ptr(handle), 4, 0, 0, 0]
            ),
            Err(Errno::EINVAL)
        );
        // Bad pointers: no node is created.
        let nodes = live_objects("nodes");
        assert_eq!(
            sys::call(
                sys::nr::BUS1_NODE_CREATE,
                [owner.as_raw_fd() as usize, bad_ptr, 0, 0, 0, 0]
            ),
            Err(Errno::EFAULT)
        );
        assert_eq!(
            sys::call(
                sys::nr::BUS1_NODE_CREATE,
                [owner.as_raw_fd() as usize, 0, 0, 0, 0, 0]
            ),
            Err(Errno::EFAULT)
        );
        assert_eq!(live_objects("nodes"), nodes);
        assert_eq!(
            sys::call(
                sys::nr::BUS1_NODES_DESTROY,
                [owner.as_raw_fd() as usize, bad_ptr, 1, 0, 0, 0]
            ),
            Err(Errno::EFAULT)
        );
        // Wrong descriptors.
        let mut id = 0u64;
        for fd in [file.as_raw_fd() as usize, 999, usize::MAX] {
            assert_eq!(
                sys::call(
                    sys::nr::BUS1_NODE_CREATE,
                    [fd, &mut id as *mut _ as usize, 0, 0, 0, 0]
                ),
                Err(Errno::EBADF)
            );
        }
        assert_eq!(
            sys::call(
                sys::nr::BUS1_HANDLE_TRANSFER,
                [
                    owner.as_raw_fd() as usize,
                    id_ptr(node),
                    file.as_raw_fd() as usize,
                    &mut id as *mut _ as usize,
                    0,
                    0
                ]
            ),
            Err(Errno::EBADF)
        );
        // Ids of another peer mean nothing here (the owner has only `node`).
        let other = holder.create_node().unwrap();
        assert_ne!(other, node);
        assert_eq!(owner.release(other), Err(Errno::ENXIO));
        assert_eq!(owner.send(other, &[b"x"], &[]), Err(Errno::ENXIO));
        assert_eq!(owner.destroy(&[other]), Err(Errno::ENXIO));
        // Huge counts.
        assert_eq!(
            sys::call(
                sys::nr::BUS1_NODES_DESTROY,
                [
                    owner.as_raw_fd() as usize,
                    &node as *const _ as usize,
                    1025,
                    0,
                    0,
                    0
                ]
            ),
            Err(Errno::EINVAL)
        );
        let msg = sys::Bus1Message {
            n_handles: 257,
            ..Default::default()
        };
        let v0 = sys::BUS1_MESSAGE_SIZE_VER0;
        assert_eq!(holder.send_raw(&[handle], &msg, v0, 0), Err(Errno::EINVAL));
        let msg = sys::Bus1Message {
            n_vecs: 1025,
            ..Default::default()
        };
        assert_eq!(holder.send_raw(&[handle], &msg, v0, 0), Err(Errno::EINVAL));
        let empty = sys::Bus1Message::default();
        assert_eq!(
            holder.send_raw(&[handle, handle], &empty, v0, 0),
            Err(Errno::ENOTUNIQ)
        );
        assert_eq!(holder.send_raw(&[], &empty, v0, 0), Err(Errno::EINVAL));
        let too_many = vec![handle; sys::BUS1_DESTINATIONS_MAX as usize + 1];
        assert_eq!(
            holder.send_raw(&too_many, &empty, v0, 0),
            Err(Errno::EINVAL)
        );
        // Struct sizes: too small, and unknown non-zero tails.
        assert_eq!(
            holder.send_raw(&[handle], &empty, v0 - 8, 0),
            Err(Errno::EINVAL)
        );
        let mut big = [0u64; 8];
        assert_eq!(
            holder.send_raw(&[handle], big.as_ptr().cast(), 64, 0),
            Ok(1)
        );
        big[7] = 1;
        assert_eq!(
            holder.send_raw(&[handle], big.as_ptr().cast(), 64, 0),
            Err(Errno::E2BIG)
        );
        #[allow(clippy::manual_dangling_ptr)]
        let bad = bad_ptr as *const _;
        assert_eq!(holder.send_raw(&[handle], bad, v0, 0), Err(Errno::EFAULT));
        let msg = sys::Bus1Message {
            n_vecs: 1,
            vecs: bad_ptr as u64,
            ..Default::default()
        };
        assert_eq!(holder.send_raw(&[handle], &msg, v0, 0), Err(Errno::EFAULT));
        let msg = sys::Bus1Message {
            errors: bad_ptr as u64,
            ..Default::default()
        };
        assert_eq!(holder.send_raw(&[handle], &msg, v0, 0), Err(Errno::EFAULT));
        let mut args = sys::Bus1Recv::default();
        assert_eq!(owner.recv_raw(&mut args, 8), Err(Errno::EINVAL));
        #[allow(clippy::manual_dangling_ptr)]
        let bad = bad_ptr as *mut _;
        assert_eq!(owner.recv_raw(bad, 64), Err(Errno::EFAULT));
    }
    // Exactly the one valid empty message arrived.  A bad vector array
    // fails the receive and keeps it queued.
    let mut args = sys::Bus1Recv {
        n_vecs: 1,
        vecs: bad_ptr as u64,
        ..Default::default()
    };
    // SAFETY: the kernel must fail on the bad vector array without effect.
    assert_eq!(unsafe { owner.recv_raw(&mut args, 64) }, Err(Errno::EFAULT));
    let (r, data, _) = recv(&owner);
    assert_eq!((r.kind, data.len()), (BUS1_MSG_DATA, 0));
    assert_eq!(recv_err(&owner), Errno::EAGAIN);
    holder.send(handle, &[b"x"], &[]).unwrap();
    let vec = sys::Bus1Vec {
        base: bad_ptr as u64,
        len: 1,
    };
    let mut args = sys::Bus1Recv {
        n_vecs: 1,
        vecs: &vec as *const _ as u64,
        ..Default::default()
    };
    // SAFETY: as above.
    assert_eq!(unsafe { owner.recv_raw(&mut args, 64) }, Err(Errno::EFAULT));
    assert_eq!(recv(&owner).1, b"x", "the message stayed queued");
    drop((owner, holder));
    assert_eq!(counts(), base);
}
