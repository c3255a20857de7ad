// SPDX-License-Identifier: GPL-2.0
//! Every documented limit, at the limit (works) and one past it (fails
//! without effect), in the booted kernel.

use bus1::Errno;
use bus1::sys::{self, BUS1_MSG_NODE_DESTROY};

use super::messaging::{connect, counts, peer, recv_err};

#[test]
fn a_message_carries_exactly_the_handle_limit() {
    let base = counts();
    let (owner, sender) = (peer(), peer());
    let (_, handle) = connect(&owner, &sender);
    let max = sys::BUS1_HANDLES_MAX as usize;
    let carried: Vec<u64> = (0..=max).map(|_| sender.create_node().unwrap()).collect();
    assert_eq!(sender.send(handle, &[b"h"], &carried), Err(Errno::EINVAL));
    assert_eq!(recv_err(&owner), Errno::EAGAIN);
    sender.send(handle, &[b"h"], &carried[..max]).unwrap();
    let mut ids = vec![0u64; max];
    let mut buf = [0u8; 8];
    // One slot short: EMSGSIZE with the count needed, the message stays.
    assert_eq!(
        owner.recv(&mut buf, &mut ids[..max - 1]).map(|_| ()),
        Err((
            Errno::EMSGSIZE,
            bus1::Received {
                kind: 0,
                id: 0,
                n_bytes: 1,
                n_handles: max,
                flags: 0,
                n_fds: 0,
                uid: 0,
                gid: 0,
                pid: 0,
                tid: 0,
            }
        ))
    );
    let r = owner.recv(&mut buf, &mut ids).map_err(|(e, _)| e).unwrap();
    assert_eq!(r.n_handles, max);
    let mut unique = ids.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), max, "one handle per carried node");
    // Each received handle reaches its node.
    owner.send(ids[max - 1], &[b"back"], &[]).unwrap();
    let r = sender.recv(&mut buf, &mut []).map_err(|(e, _)| e).unwrap();
    assert_eq!(r.id, carried[max - 1]);
    drop((owner, sender));
    assert_eq!(counts(), base);
}

#[test]
fn send_and_receive_with_exactly_the_vector_limit() {
    let (owner, sender) = (peer(), peer());
    let (_, handle) = connect(&owner, &sender);
    let max = sys::BUS1_VECS_MAX as usize;
    let data: Vec<u8> = (0..max).map(|i| i as u8).collect();
    let parts: Vec<&[u8]> = data.chunks(1).collect();
    assert_eq!(parts.len(), max);
    sender.send(handle, &parts, &[]).unwrap();
    let mut out = vec![0u8; max];
    let mut vecs: Vec<sys::Bus1Vec> = out
        .chunks_mut(1)
        .map(|c| sys::Bus1Vec {
            base: c.as_mut_ptr() as u64,
            len: 1,
        })
        .collect();
    let mut args = sys::Bus1Recv {
        vecs: vecs.as_mut_ptr() as u64,
        n_vecs: max as u64 + 1,
        ..Default::default()
    };
    let size = std::mem::size_of_val(&args);
    // SAFETY: `vecs` holds `max` valid one-byte vectors; one past the limit
    // must be refused before anything is read.
    assert_eq!(
        unsafe { owner.recv_raw(&mut args, size) },
        Err(Errno::EINVAL)
    );
    args.n_vecs = max as u64;
    // SAFETY: as above, within the limit.
    unsafe { owner.recv_raw(&mut args, size) }.unwrap();
    assert_eq!(args.n_bytes as usize, max);
    assert!(out == data, "scattered over {max} vectors");
    drop(vecs);
}

#[test]
fn destroy_exactly_the_node_limit_in_one_call() {
    let base = counts();
    let (owner, holder) = (peer(), peer());
    let max = sys::BUS1_NODES_DESTROY_MAX as usize;
    let nodes: Vec<u64> = (0..max).map(|_| connect(&owner, &holder).0).collect();
    owner.destroy(&nodes).unwrap();
    let mut buf = [0u8; 8];
    for p in [&owner, &holder] {
        for i in 0..max {
            let r = p.recv(&mut buf, &mut []).map_err(|(e, _)| e).unwrap();
            assert_eq!(
                (r.kind, r.continues()),
                (BUS1_MSG_NODE_DESTROY, i + 1 < max)
            );
        }
        assert_eq!(recv_err(p), Errno::EAGAIN);
    }
    drop((owner, holder));
    assert_eq!(counts(), base);
}

#[test]
fn argument_structures_up_to_a_page() {
    let (owner, sender) = (peer(), peer());
    let (_, handle) = connect(&owner, &sender);
    // A newer caller's structure: zero past the known fields is fine up to
    // 4096 bytes; one byte more is E2BIG, with no effect.
    let page = vec![0u64; 4096 / 8 + 1];
    // SAFETY: `page` is valid for 4104 bytes.
    unsafe {
        assert_eq!(
            sender.send_raw(&[handle], page.as_ptr().cast(), 4096, 0),
            Ok(1)
        );
        assert_eq!(
            sender.send_raw(&[handle], page.as_ptr().cast(), 4097, 0),
            Err(Errno::E2BIG)
        );
    }
    let mut args = vec![0u64; 4096 / 8 + 1];
    // SAFETY: `args` is valid for 4104 bytes and has no buffers (0 room).
    unsafe {
        assert_eq!(
            owner.recv_raw(args.as_mut_ptr().cast(), 4097),
            Err(Errno::E2BIG)
        );
        owner.recv_raw(args.as_mut_ptr().cast(), 4096).unwrap();
    }
    assert_eq!(
        recv_err(&owner),
        Errno::EAGAIN,
        "exactly one message was sent"
    );
}
