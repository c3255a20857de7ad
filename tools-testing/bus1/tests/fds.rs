// SPDX-License-Identifier: GPL-2.0
//! File descriptor passing (in the booted kernel).

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};

use bus1::sys::{self, BUS1_MSG_DATA};
use bus1::{Errno, Peer};
use nix::fcntl::{FcntlArg, FdFlag, fcntl};
use nix::sys::resource::{Resource, getrlimit, setrlimit};
use nix::sys::socket::{AddressFamily, SockFlag, SockType, socket, socketpair};
use nix::unistd::{dup, pipe};

use super::accounting::pool;
use super::in_child;
use super::messaging::{connect, counts, peer, recv_err};

/// Receives one message with up to 4 descriptors; takes ownership of them.
fn recv_fds(p: &Peer) -> (bus1::Received, Vec<u8>, Vec<OwnedFd>) {
    let mut buf = vec![0u8; 256];
    let mut fds = [-1; 4];
    let r = p
        .recv_with_fds(&mut buf, &mut [], &mut fds)
        .map_err(|(e, _)| e)
        .unwrap();
    buf.truncate(r.n_bytes);
    // SAFETY: the kernel installed these descriptors for us.
    let owned = fds[..r.n_fds]
        .iter()
        .map(|&fd| unsafe { OwnedFd::from_raw_fd(fd) })
        .collect();
    (r, buf, owned)
}

fn is_cloexec(fd: &OwnedFd) -> bool {
    FdFlag::from_bits_truncate(fcntl(fd, FcntlArg::F_GETFD).unwrap()).contains(FdFlag::FD_CLOEXEC)
}

/// Whether the read end sees end-of-file, i.e. every write end is closed.
fn at_eof(read_end: &OwnedFd) -> bool {
    let mut file = File::from(read_end.try_clone().unwrap());
    let mut byte = [0u8; 1];
    file.read(&mut byte).unwrap() == 0
}

/// A pipe whose write end travels `copies` times, with `payload`, from a
/// sender to a receiver: (receiver, sender, sender's handle, read end).
/// The caller's write end is closed, so the read end sees end-of-file
/// once the message's files are gone.
fn pipe_in_flight(payload: &[u8], copies: usize) -> (Peer, Peer, u64, OwnedFd) {
    let (owner, sender) = (peer(), peer());
    let (_, handle) = connect(&owner, &sender);
    let (rd, wr) = pipe().unwrap();
    let fds = vec![wr.as_raw_fd(); copies];
    sender.send_with_fds(handle, &[payload], &[], &fds).unwrap();
    (owner, sender, handle, rd)
}

fn write_to(fd: &OwnedFd, bytes: &[u8]) {
    File::from(fd.try_clone().unwrap())
        .write_all(bytes)
        .unwrap();
}

fn read_from(fd: &OwnedFd, n: usize) -> Vec<u8> {
    let mut got = vec![0u8; n];
    File::from(fd.try_clone().unwrap())
        .read_exact(&mut got)
        .unwrap();
    got
}

#[test]
fn a_message_carries_files_installed_close_on_exec() {
    let base = counts();
    let (owner, sender, _, rd) = pipe_in_flight(b"fd", 1);
    assert_eq!(pool(&owner, "bus1-queue-fds").0, 1);
    let (r, data, fds) = recv_fds(&owner);
    assert_eq!((r.kind, &data[..], r.n_fds), (BUS1_MSG_DATA, &b"fd"[..], 1));
    assert_eq!(pool(&owner, "bus1-queue-fds").0, 0);
    assert!(is_cloexec(&fds[0]), "installed with O_CLOEXEC");
    // The new descriptor is the same pipe.
    write_to(&fds[0], b"through");
    assert_eq!(read_from(&rd, 7), b"through");
    drop(fds);
    assert!(at_eof(&rd));
    drop((owner, sender));
    assert_eq!(counts(), base);
}

#[test]
fn a_multicast_gives_every_receiver_its_own_descriptor() {
    let (a, b, sender) = (peer(), peer(), peer());
    let (_, ha) = connect(&a, &sender);
    let (_, hb) = connect(&b, &sender);
    let (rd, wr) = pipe().unwrap();
    let n = sender
        .multicast_with_fds(
            &[ha, hb],
            &[],
            &[],
            &[wr.as_raw_fd(), wr.as_raw_fd()],
            0,
            None,
        )
        .unwrap();
    assert_eq!(n, 2);
    drop(wr);
    let (_, _, fds_a) = recv_fds(&a);
    assert_eq!(fds_a.len(), 2);
    drop(fds_a);
    let (_, _, fds_b) = recv_fds(&b);
    assert_eq!(fds_b.len(), 2);
    write_to(&fds_b[1], b"b");
    drop(fds_b);
    assert_eq!(read_from(&rd, 1), b"b");
    assert!(at_eof(&rd), "all references given back");
}

#[test]
fn bus1_peers_and_unix_sockets_are_refused() {
    let base = counts();
    let (owner, sender) = (peer(), peer());
    let (_, handle) = connect(&owner, &sender);
    let (u1, _u2) = socketpair(
        AddressFamily::Unix,
        SockType::Stream,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .unwrap();
    let udp = socket(
        AddressFamily::Inet,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .unwrap();
    let (_rd, wr) = pipe().unwrap();
    let other = peer();
    for (what, fd, errno) in [
        ("its own peer", sender.as_raw_fd(), Errno::EOPNOTSUPP),
        ("another peer", other.as_raw_fd(), Errno::EOPNOTSUPP),
        ("an AF_UNIX socket", u1.as_raw_fd(), Errno::EOPNOTSUPP),
        ("a closed descriptor", 999, Errno::EBADF),
        ("a negative descriptor", -1, Errno::EBADF),
    ] {
        // With a good descriptor first: one bad one fails the whole message.
        assert_eq!(
            sender.send_with_fds(handle, &[b"x"], &[], &[wr.as_raw_fd(), fd]),
            Err(errno),
            "{what}"
        );
    }
    assert_eq!(recv_err(&owner), Errno::EAGAIN, "nothing was queued");
    // Other sockets travel.
    sender
        .send_with_fds(handle, &[], &[], &[udp.as_raw_fd()])
        .unwrap();
    assert_eq!(recv_fds(&owner).2.len(), 1);
    // Limits and bad pointers.
    let too_many: Vec<RawFd> = vec![wr.as_raw_fd(); sys::BUS1_FDS_MAX as usize + 1];
    assert_eq!(
        sender.send_with_fds(handle, &[], &[], &too_many),
        Err(Errno::EINVAL)
    );
    let max = &too_many[1..];
    sender.send_with_fds(handle, &[], &[], max).unwrap();
    let mut fds = vec![-1; max.len()];
    let r = owner
        .recv_with_fds(&mut [], &mut [], &mut fds)
        .map_err(|(e, _)| e)
        .unwrap();
    assert_eq!(r.n_fds, max.len());
    for fd in fds {
        // SAFETY: installed for us by the kernel.
        drop(unsafe { OwnedFd::from_raw_fd(fd) });
    }
    let msg = sys::Bus1Message {
        fds: 8,
        n_fds: 1,
        ..Default::default()
    };
    // SAFETY: the kernel must fail on the bad address without effect.
    let sent = unsafe {
        sender.send_raw(
            &[handle],
            &msg,
            sys::BUS1_MESSAGE_SIZE_VER1,
            sys::BUS1_SEND_FDS,
        )
    };
    assert_eq!(sent, Err(Errno::EFAULT));
    assert_eq!(recv_err(&owner), Errno::EAGAIN);
    drop((owner, sender, other));
    assert_eq!(counts(), base);
}

#[test]
fn no_room_for_descriptors_is_emsgsize_and_the_message_stays() {
    let (owner, _sender, _, _rd) = pipe_in_flight(b"m", 2);
    let mut one = [-1];
    let (e, needed) = owner
        .recv_with_fds(&mut [0u8; 8], &mut [], &mut one)
        .unwrap_err();
    assert_eq!((e, needed.n_fds, needed.n_bytes), (Errno::EMSGSIZE, 2, 1));
    // A caller with the old, shorter structure has no room either.
    let mut buf = [0u8; 8];
    let vec = sys::Bus1Vec {
        base: buf.as_mut_ptr() as u64,
        len: 8,
    };
    let mut args = sys::Bus1Recv {
        vecs: &vec as *const _ as u64,
        n_vecs: 1,
        ..Default::default()
    };
    // SAFETY: `args` and `buf` are valid.
    let old = unsafe { owner.recv_raw(&mut args, sys::BUS1_RECV_SIZE_VER0) };
    assert_eq!(old, Err(Errno::EMSGSIZE));
    assert_eq!(
        (args.n_bytes, args.n_fds),
        (1, 0),
        "VER0: n_fds not written"
    );
    assert_eq!(recv_fds(&owner).2.len(), 2, "the message stayed queued");
}

#[test]
fn a_full_descriptor_table_is_emfile_and_the_message_stays() {
    let (owner, _sender, _, rd) = pipe_in_flight(b"m", 1);
    let code = in_child(|| {
        let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
        setrlimit(Resource::RLIMIT_NOFILE, 64, hard).unwrap();
        let mut filler = Vec::new();
        while let Ok(fd) = dup(std::io::stdin().as_fd()) {
            filler.push(fd);
        }
        let mut fds = [-1];
        let emfile = owner.recv_with_fds(&mut [0u8; 8], &mut [], &mut fds);
        if emfile.map_err(|(e, _)| e) != Err(Errno::EMFILE) {
            return 1;
        }
        // Room for one: the message is still there.
        filler.pop();
        match owner.recv_with_fds(&mut [0u8; 8], &mut [], &mut fds) {
            Ok(r) if r.n_fds == 1 && fds[0] >= 0 => 0,
            other => {
                eprintln!("after EMFILE: {other:?}");
                2
            }
        }
    });
    assert_eq!(code, 0);
    assert!(at_eof(&rd), "the child's descriptor was the last reference");
}

#[test]
fn unreceived_files_are_released_with_the_queue() {
    let base = counts();
    let (owner, sender, _, rd) = pipe_in_flight(b"", 1);
    assert!(!at_eof_nonblocking(&rd));
    // A reset drops the queue, and the files with it.
    owner.reset().unwrap();
    assert!(at_eof(&rd));
    assert_eq!(pool(&owner, "bus1-queue-fds").0, 0);

    let (_, handle) = connect(&owner, &sender);
    let (rd, wr) = pipe().unwrap();
    sender
        .send_with_fds(handle, &[], &[], &[wr.as_raw_fd()])
        .unwrap();
    drop(wr);
    // So does a close.
    drop(owner);
    assert!(at_eof(&rd));
    drop(sender);
    assert_eq!(counts(), base);
}

/// `at_eof()` that does not block while a write end is still open.
fn at_eof_nonblocking(read_end: &OwnedFd) -> bool {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    let mut fds = [PollFd::new(read_end.as_fd(), PollFlags::POLLIN)];
    poll(&mut fds, PollTimeout::ZERO).unwrap() > 0 && at_eof(read_end)
}
