// SPDX-License-Identifier: GPL-2.0
//! The hardening pass (in the booted kernel): every bus1 system call with
//! bad input — flags, structure sizes, pointers (NULL, unmapped,
//! read-only), file descriptors, ids and counts past every limit — returns
//! its documented errno and has no visible effect: no object, message,
//! charge, id or notification appears or goes away.

use std::fs;
use std::os::fd::{AsRawFd, OwnedFd};
use std::ptr::NonNull;

use bus1::sys::{self, nr};
use bus1::{Errno, Peer};
use nix::fcntl::{OFlag, open};
use nix::sys::mman::{MapFlags, ProtFlags, mmap_anonymous};
use nix::sys::stat::Mode;
use nix::unistd::pipe;

use super::messaging::{connect, counts, id_ptr, peer, recv, recv_err};
use super::report;

/// Everything a call could visibly change: live objects, both peers'
/// fdinfo (ids, quota use) and the user's pool.
fn snapshot(peers: &[&Peer]) -> (String, (i64, i64, i64)) {
    let mut info = String::new();
    for p in peers {
        info += &fs::read_to_string(format!("/proc/self/fdinfo/{}", p.as_raw_fd())).unwrap();
    }
    // The file position and flags lines are not bus1's.
    let info = info
        .lines()
        .filter(|l| l.starts_with("bus1-"))
        .collect::<Vec<_>>()
        .join("\n");
    (info, counts())
}

/// One page mapped with `prot`, never unmapped (the test process is short).
pub(crate) fn page(prot: ProtFlags) -> usize {
    let len = std::num::NonZeroUsize::new(4096).unwrap();
    // SAFETY: a fresh anonymous mapping, aliasing nothing.
    let p: NonNull<std::ffi::c_void> =
        unsafe { mmap_anonymous(None, len, prot, MapFlags::MAP_PRIVATE) }.unwrap();
    p.as_ptr() as usize
}

fn call(nr: usize, args: [usize; 6]) -> Result<usize, Errno> {
    // SAFETY: the kernel must check every address; the addresses passed
    // below are either valid for what the call writes, or bad on purpose.
    unsafe { sys::call(nr, args) }
}

#[test]
fn every_call_fails_with_its_errno_and_no_effect() {
    let (owner, holder) = (peer(), peer());
    let (node, handle) = connect(&owner, &holder);
    // A destroyed node, still named by a handle of `holder`.
    let (dead, dead_handle) = connect(&owner, &holder);
    owner.destroy(&[dead]).unwrap();
    // One message queued on `owner`, that every failing receive must keep.
    // The NODE_DESTROY of `dead` first: notifications are not charged, so
    // only the message shows in fdinfo.
    assert_eq!(recv(&owner).0.kind, sys::BUS1_MSG_NODE_DESTROY);
    assert_eq!(recv(&holder).0.kind, sys::BUS1_MSG_NODE_DESTROY);
    holder.send(handle, &[b"kept"], &[]).unwrap();

    let (o, h) = (owner.as_raw_fd() as usize, holder.as_raw_fd() as usize);
    let (pipe_rd, _pipe_wr) = pipe().unwrap();
    let path_fd: OwnedFd = open(
        format!("/proc/self/fd/{}", owner.as_raw_fd()).as_str(),
        OFlag::O_PATH,
        Mode::empty(),
    )
    .unwrap();
    let bad_fds = [
        // (-1 is "the source peer" for the destination of a transfer.)
        ("fd -2", usize::MAX - 1),
        ("a closed fd", 999),
        ("a pipe", pipe_rd.as_raw_fd() as usize),
        ("an O_PATH fd of a peer", path_fd.as_raw_fd() as usize),
    ];
    let unmapped = page(ProtFlags::PROT_NONE);
    let read_only = page(ProtFlags::PROT_READ);
    let bad_ptrs = [("NULL", 0usize), ("an unmapped page", unmapped)];
    let out_ptrs = [bad_ptrs[0], bad_ptrs[1], ("a read-only page", read_only)];

    let mut id = 0u64;
    let idp = &mut id as *mut u64 as usize;
    let ids = |v: &[u64]| v.to_vec();
    let node_ids = ids(&[node]);
    let dsts = ids(&[handle]);
    let payload = [0u8; 8];
    let vec = sys::Bus1Vec {
        base: payload.as_ptr() as u64,
        len: 8,
    };
    let good_msg = sys::Bus1Message {
        vecs: &vec as *const _ as u64,
        n_vecs: 1,
        ..Default::default()
    };
    let msg_with = |f: &dyn Fn(&mut sys::Bus1Message)| {
        let mut m = good_msg;
        f(&mut m);
        Box::new(m)
    };
    let msize = sys::BUS1_MESSAGE_SIZE_VER1;
    let rsize = sys::BUS1_RECV_SIZE_VER1;
    let mut buf = [0u8; 64];
    let recv_vec = sys::Bus1Vec {
        base: buf.as_mut_ptr() as u64,
        len: 64,
    };
    let good_recv = sys::Bus1Recv {
        vecs: &recv_vec as *const _ as u64,
        n_vecs: 1,
        ..Default::default()
    };
    let recv_with = |f: &dyn Fn(&mut sys::Bus1Recv)| {
        let mut r = good_recv;
        f(&mut r);
        Box::new(r)
    };
    let big = vec![0u8; 8192];
    let ro_vec = Box::new(sys::Bus1Vec {
        base: read_only as u64,
        len: 64,
    });
    let unmapped_vec = Box::new(sys::Bus1Vec {
        base: unmapped as u64,
        len: 8,
    });
    let too_long = Box::new(sys::Bus1Vec {
        base: payload.as_ptr() as u64,
        len: u64::from(sys::BUS1_PAYLOAD_MAX) + 1,
    });

    // (what, syscall, arguments, errno)
    let mut cases: Vec<(String, usize, [usize; 6], Errno)> = Vec::new();
    let mut case = |what: String, nr: usize, args: [usize; 6], errno: Errno| {
        cases.push((what, nr, args, errno));
    };

    for flag in [1usize << 2, 1 << 31] {
        case(
            format!("open flags {flag:#x}"),
            nr::BUS1_OPEN,
            [flag, 0, 0, 0, 0, 0],
            Errno::EINVAL,
        );
    }
    for (what, fd) in bad_fds {
        case(
            format!("node_create on {what}"),
            nr::BUS1_NODE_CREATE,
            [fd, idp, 0, 0, 0, 0],
            Errno::EBADF,
        );
        case(
            format!("transfer from {what}"),
            nr::BUS1_HANDLE_TRANSFER,
            [fd, id_ptr(node), h, idp, 0, 0],
            Errno::EBADF,
        );
        case(
            format!("transfer to {what}"),
            nr::BUS1_HANDLE_TRANSFER,
            [o, id_ptr(node), fd, idp, 0, 0],
            Errno::EBADF,
        );
        case(
            format!("release on {what}"),
            nr::BUS1_HANDLE_RELEASE,
            [fd, id_ptr(handle), 0, 0, 0, 0],
            Errno::EBADF,
        );
        case(
            format!("destroy on {what}"),
            nr::BUS1_NODES_DESTROY,
            [fd, node_ids.as_ptr() as usize, 1, 0, 0, 0],
            Errno::EBADF,
        );
        case(
            format!("send on {what}"),
            nr::BUS1_SEND,
            [
                fd,
                dsts.as_ptr() as usize,
                1,
                &good_msg as *const _ as usize,
                msize,
                0,
            ],
            Errno::EBADF,
        );
        case(
            format!("recv on {what}"),
            nr::BUS1_RECV,
            [fd, &good_recv as *const _ as usize, rsize, 0, 0, 0],
            Errno::EBADF,
        );
        case(
            format!("reset on {what}"),
            nr::BUS1_PEER_RESET,
            [fd, 0, 0, 0, 0, 0],
            Errno::EBADF,
        );
    }
    for (what, p) in out_ptrs {
        case(
            format!("node_create id at {what}"),
            nr::BUS1_NODE_CREATE,
            [o, p, 0, 0, 0, 0],
            Errno::EFAULT,
        );
        case(
            format!("transfer dst_id at {what}"),
            nr::BUS1_HANDLE_TRANSFER,
            [o, id_ptr(node), h, p, 0, 0],
            Errno::EFAULT,
        );
    }
    for (what, p) in bad_ptrs {
        case(
            format!("transfer src_id at {what}"),
            nr::BUS1_HANDLE_TRANSFER,
            [o, p, h, idp, 0, 0],
            Errno::EFAULT,
        );
        case(
            format!("release id at {what}"),
            nr::BUS1_HANDLE_RELEASE,
            [h, p, 0, 0, 0, 0],
            Errno::EFAULT,
        );
        case(
            format!("destroy ids at {what}"),
            nr::BUS1_NODES_DESTROY,
            [o, p, 1, 0, 0, 0],
            Errno::EFAULT,
        );
        case(
            format!("send destinations at {what}"),
            nr::BUS1_SEND,
            [h, p, 1, &good_msg as *const _ as usize, msize, 0],
            Errno::EFAULT,
        );
        case(
            format!("send message at {what}"),
            nr::BUS1_SEND,
            [h, dsts.as_ptr() as usize, 1, p, msize, 0],
            Errno::EFAULT,
        );
        case(
            format!("recv args at {what}"),
            nr::BUS1_RECV,
            [o, p, rsize, 0, 0, 0],
            Errno::EFAULT,
        );
    }
    // Unknown ids, ids of the wrong kind, destroyed nodes.
    case(
        "transfer of an unknown id".into(),
        nr::BUS1_HANDLE_TRANSFER,
        [o, id_ptr(12345), h, idp, 0, 0],
        Errno::ENXIO,
    );
    case(
        "transfer of a destroyed node".into(),
        nr::BUS1_HANDLE_TRANSFER,
        [h, id_ptr(dead_handle), o, idp, 0, 0],
        Errno::EHOSTUNREACH,
    );
    case(
        "release of an unknown id".into(),
        nr::BUS1_HANDLE_RELEASE,
        [h, id_ptr(12345), 0, 0, 0, 0],
        Errno::ENXIO,
    );
    case(
        "release of an owned node".into(),
        nr::BUS1_HANDLE_RELEASE,
        [o, id_ptr(node), 0, 0, 0, 0],
        Errno::EPERM,
    );
    let unknown_last = Box::new([node, 12345]);
    case(
        "destroy with an unknown id last".into(),
        nr::BUS1_NODES_DESTROY,
        [o, unknown_last.as_ptr() as usize, 2, 0, 0, 0],
        Errno::ENXIO,
    );
    let with_handle = Box::new([handle]);
    case(
        "destroy of a handle".into(),
        nr::BUS1_NODES_DESTROY,
        [h, with_handle.as_ptr() as usize, 1, 0, 0, 0],
        Errno::EPERM,
    );
    let twice = Box::new([node, node]);
    case(
        "destroy of an id twice".into(),
        nr::BUS1_NODES_DESTROY,
        [o, twice.as_ptr() as usize, 2, 0, 0, 0],
        Errno::ENOTUNIQ,
    );
    case(
        "destroy of 0 ids".into(),
        nr::BUS1_NODES_DESTROY,
        [o, node_ids.as_ptr() as usize, 0, 0, 0, 0],
        Errno::EINVAL,
    );
    let many = vec![node; sys::BUS1_NODES_DESTROY_MAX as usize + 1];
    case(
        "destroy of 1025 ids".into(),
        nr::BUS1_NODES_DESTROY,
        [o, many.as_ptr() as usize, many.len(), 0, 0, 0],
        Errno::EINVAL,
    );
    // Sends: destinations, message structure, its arrays and counts.
    let send = |m: &sys::Bus1Message, size: usize, d: &[u64], flags: usize| {
        [
            h,
            d.as_ptr() as usize,
            d.len(),
            m as *const _ as usize,
            size,
            flags,
        ]
    };
    let unknown_dst = Box::new([handle, 12345]);
    case(
        "send to an unknown id".into(),
        nr::BUS1_SEND,
        send(&good_msg, msize, &unknown_dst[..], 0),
        Errno::ENXIO,
    );
    let dead_dst = Box::new([handle, dead_handle]);
    case(
        "send to a destroyed node".into(),
        nr::BUS1_SEND,
        send(&good_msg, msize, &dead_dst[..], 0),
        Errno::EHOSTUNREACH,
    );
    let dup_dst = Box::new([handle, handle]);
    case(
        "send to an id twice".into(),
        nr::BUS1_SEND,
        send(&good_msg, msize, &dup_dst[..], 0),
        Errno::ENOTUNIQ,
    );
    case(
        "send to 0 destinations".into(),
        nr::BUS1_SEND,
        send(&good_msg, msize, &[], 0),
        Errno::EINVAL,
    );
    let many_dsts = vec![handle; sys::BUS1_DESTINATIONS_MAX as usize + 1];
    case(
        "send to 1025 destinations".into(),
        nr::BUS1_SEND,
        send(&good_msg, msize, &many_dsts, 0),
        Errno::EINVAL,
    );
    case(
        "send flags 1<<3".into(),
        nr::BUS1_SEND,
        send(&good_msg, msize, &dsts, 8),
        Errno::EINVAL,
    );
    case(
        "send message size 8".into(),
        nr::BUS1_SEND,
        send(&good_msg, 8, &dsts, 0),
        Errno::EINVAL,
    );
    case(
        "send message size 4097".into(),
        nr::BUS1_SEND,
        [h, dsts.as_ptr() as usize, 1, big.as_ptr() as usize, 4097, 0],
        Errno::E2BIG,
    );
    let mut tail = [0u8; 128];
    tail[120] = 1;
    case(
        "send message with a non-zero tail".into(),
        nr::BUS1_SEND,
        [h, dsts.as_ptr() as usize, 1, tail.as_ptr() as usize, 128, 0],
        Errno::E2BIG,
    );
    let kept: Vec<Box<sys::Bus1Message>> = vec![
        msg_with(&|m| m.vecs = unmapped as u64),
        msg_with(&|m| m.vecs = &*unmapped_vec as *const _ as u64),
        msg_with(&|m| m.n_vecs = u64::from(sys::BUS1_VECS_MAX) + 1),
        msg_with(&|m| m.vecs = &*too_long as *const _ as u64),
        msg_with(&|m| {
            m.handles = unmapped as u64;
            m.n_handles = 1;
        }),
        msg_with(&|m| m.n_handles = u64::from(sys::BUS1_HANDLES_MAX) + 1),
        msg_with(&|m| {
            m.handles = unknown_dst[1..].as_ptr() as u64;
            m.n_handles = 1;
        }),
        msg_with(&|m| m.errors = read_only as u64),
        msg_with(&|m| {
            m.fds = unmapped as u64;
            m.n_fds = 1;
        }),
        msg_with(&|m| m.n_fds = u64::from(sys::BUS1_FDS_MAX) + 1),
    ];
    let expected = [
        Errno::EFAULT,
        Errno::EFAULT,
        Errno::EINVAL,
        Errno::EMSGSIZE,
        Errno::EFAULT,
        Errno::EINVAL,
        Errno::ENXIO,
        Errno::EFAULT,
        Errno::EFAULT,
        Errno::EINVAL,
    ];
    let what = [
        "vectors at an unmapped page",
        "a vector into an unmapped page",
        "1025 vectors",
        "a payload of 4 MiB + 1",
        "handles at an unmapped page",
        "257 handles",
        "an unknown handle",
        "the errors array at a read-only page",
        "fds at an unmapped page",
        "257 fds",
    ];
    for ((m, errno), what) in kept.iter().zip(expected).zip(what) {
        // The flags tell what the message carries, as they must.
        let mut flags = 0;
        if m.n_handles != 0 {
            flags |= sys::BUS1_SEND_HANDLES as usize;
        }
        if m.n_fds != 0 {
            flags |= sys::BUS1_SEND_FDS as usize;
        }
        case(
            format!("send with {what}"),
            nr::BUS1_SEND,
            send(m, msize, &dsts, flags),
            errno,
        );
    }
    // Flags that do not tell what the message carries (what seccomp sees).
    let with_handle = msg_with(&|m| {
        m.handles = dsts.as_ptr() as u64;
        m.n_handles = 1;
    });
    let fd_list = Box::new([pipe_rd.as_raw_fd()]);
    let with_fd = msg_with(&|m| {
        m.fds = fd_list.as_ptr() as u64;
        m.n_fds = 1;
    });
    for (what, m, flags) in [
        ("handles without BUS1_SEND_HANDLES", &with_handle, 0),
        ("BUS1_SEND_HANDLES without handles", &Box::new(good_msg), 2),
        ("fds without BUS1_SEND_FDS", &with_fd, 0),
        ("BUS1_SEND_FDS without fds", &Box::new(good_msg), 4),
        ("handles flagged as fds", &with_handle, 4),
    ] {
        case(
            format!("send with {what}"),
            nr::BUS1_SEND,
            send(m, msize, &dsts, flags),
            Errno::EINVAL,
        );
    }
    // Receives: structure, vectors, output arrays.
    case(
        "recv flags 1".into(),
        nr::BUS1_RECV,
        [o, &good_recv as *const _ as usize, rsize, 1, 0, 0],
        Errno::EINVAL,
    );
    case(
        "recv size 8".into(),
        nr::BUS1_RECV,
        [o, &good_recv as *const _ as usize, 8, 0, 0, 0],
        Errno::EINVAL,
    );
    case(
        "recv size 4097".into(),
        nr::BUS1_RECV,
        [o, big.as_ptr() as usize, 4097, 0, 0, 0],
        Errno::E2BIG,
    );
    let bad_recvs: Vec<(&str, Box<sys::Bus1Recv>, Errno)> = vec![
        (
            "vectors at an unmapped page",
            recv_with(&|r| r.vecs = unmapped as u64),
            Errno::EFAULT,
        ),
        (
            "a vector into a read-only page",
            recv_with(&|r| r.vecs = &*ro_vec as *const _ as u64),
            Errno::EFAULT,
        ),
        (
            "1025 vectors",
            recv_with(&|r| r.n_vecs = u64::from(sys::BUS1_VECS_MAX) + 1),
            Errno::EINVAL,
        ),
    ];
    let bad_recvs_ptrs: Vec<(String, usize, Errno)> = bad_recvs
        .iter()
        .map(|(w, r, e)| (format!("recv with {w}"), &**r as *const _ as usize, *e))
        .collect();
    for (what, args, errno) in bad_recvs_ptrs {
        case(what, nr::BUS1_RECV, [o, args, rsize, 0, 0, 0], errno);
    }
    // The arguments on a read-only (zero) page: readable, but the sizes
    // needed (no room for the payload) cannot be written back.
    case(
        "recv args on a read-only page".into(),
        nr::BUS1_RECV,
        [o, read_only, rsize, 0, 0, 0],
        Errno::EFAULT,
    );
    case(
        "reset flags 1".into(),
        nr::BUS1_PEER_RESET,
        [o, 1, 0, 0, 0, 0],
        Errno::EINVAL,
    );

    let next_ids = (owner.create_node().unwrap(), holder.create_node().unwrap());
    let before = snapshot(&[&owner, &holder]);
    let mut wrong = Vec::new();
    for (what, nr, args, errno) in &cases {
        let got = call(*nr, *args);
        if got != Err(*errno) {
            wrong.push(format!("{what}: {got:?}, expected {errno}"));
        }
        let now = snapshot(&[&owner, &holder]);
        if now != before {
            wrong.push(format!("{what}: visible effect\n{:?}\n{:?}", before, now));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    // No id was used up, the message is still first and alone, nothing was
    // queued on the holder.
    assert_eq!(owner.create_node().unwrap(), next_ids.0 + 1);
    assert_eq!(holder.create_node().unwrap(), next_ids.1 + 1);
    assert_eq!(recv(&owner).1, b"kept");
    assert_eq!(recv_err(&owner), Errno::EAGAIN);
    assert_eq!(recv_err(&holder), Errno::EAGAIN);
    report(&format!(
        "hardening: {} bad calls, each with its errno and no effect",
        cases.len()
    ));
}
