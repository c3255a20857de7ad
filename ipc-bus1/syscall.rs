// SPDX-License-Identifier: GPL-2.0

//! System calls.
//!
//! One function per bus1 system call.  Each checks every argument (flags,
//! sizes, counts, file descriptors, user memory it must read) before it
//! changes anything, so that a failing call has no visible effect, and then
//! calls into the peer.  Results are written back to user space in two
//! steps: the destination is written once before the change (so a bad
//! pointer fails the call without effect), and with the result after; the
//! second write fails only if another thread of the caller changed the
//! mapping meanwhile (the exceptions are documented in `bus1.h`).

use kernel::{prelude::*, sync::Arc, uapi};

use crate::{files, peer::ID_INVALID, peer_file::peer_from_fd, transaction::Outcome, user};

/// Whether `ids` names something twice.
fn has_duplicates(ids: &[u64]) -> Result<bool> {
    // The common case, one id, needs no sorted copy.
    if ids.len() < 2 {
        return Ok(false);
    }
    let mut sorted = KVVec::with_capacity(ids.len(), GFP_KERNEL)?;
    sorted.extend_from_slice(ids, GFP_KERNEL)?;
    sorted.sort_unstable();
    Ok(sorted.windows(2).any(|w| w[0] == w[1]))
}

/// `bus1_node_create(2)`.
pub(crate) fn node_create(peer: i32, id_ptr: u64, flags: u32) -> Result<i32> {
    if flags != 0 {
        return Err(EINVAL);
    }
    let peer = peer_from_fd(peer)?;
    user::write_u64(id_ptr, ID_INVALID)?;
    let id = peer.create_node()?;
    user::write_u64(id_ptr, id)?;
    Ok(0)
}

/// `bus1_handle_transfer(2)`.
pub(crate) fn handle_transfer(
    src_peer: i32,
    src_id_ptr: u64,
    dst_peer: i32,
    dst_id_ptr: u64,
    flags: u32,
) -> Result<i32> {
    if flags != 0 {
        return Err(EINVAL);
    }
    let src = peer_from_fd(src_peer)?;
    let dst_fd = match dst_peer {
        -1 => None,
        fd => Some(peer_from_fd(fd)?),
    };
    let dst = dst_fd.as_ref().unwrap_or(&src);
    let node = src.lookup(user::read_u64(src_id_ptr)?)?;
    if node.is_destroyed() {
        return Err(EHOSTUNREACH);
    }
    user::write_u64(dst_id_ptr, ID_INVALID)?;
    // Only the owner may give out a node nobody else holds any more.
    let by_owner = Arc::ptr_eq(&node.owner, &src);
    let id = dst.acquire(&node, by_owner)?;
    user::write_u64(dst_id_ptr, id)?;
    Ok(0)
}

/// `bus1_handle_release(2)`.
pub(crate) fn handle_release(peer: i32, id_ptr: u64, flags: u32) -> Result<i32> {
    if flags != 0 {
        return Err(EINVAL);
    }
    let peer = peer_from_fd(peer)?;
    peer.release(user::read_u64(id_ptr)?)?;
    Ok(0)
}

/// `bus1_nodes_destroy(2)`.
pub(crate) fn nodes_destroy(peer: i32, ids_ptr: u64, n_ids: u32, flags: u32) -> Result<i32> {
    if flags != 0 || n_ids == 0 || n_ids > uapi::BUS1_NODES_DESTROY_MAX {
        return Err(EINVAL);
    }
    let peer = peer_from_fd(peer)?;
    let ids = user::read_u64s(ids_ptr, n_ids as usize)?;
    if has_duplicates(&ids)? {
        return Err(ENOTUNIQ);
    }
    peer.destroy(&ids)?;
    Ok(0)
}

/// `bus1_peer_reset(2)`.
pub(crate) fn peer_reset(peer: i32, flags: u32) -> Result<i32> {
    if flags != 0 {
        return Err(EINVAL);
    }
    let peer = peer_from_fd(peer)?;
    peer.reset();
    Ok(0)
}

/// Words of `struct bus1_message`.
const MSG_VECS: usize = 0;
const MSG_N_VECS: usize = 1;
const MSG_HANDLES: usize = 2;
const MSG_N_HANDLES: usize = 3;
const MSG_ERRORS: usize = 4;
const MSG_FDS: usize = 5;
const MSG_N_FDS: usize = 6;
const MSG_WORDS: usize = 7;

/// The errno reported for each destination in `bus1_message.errors`.
fn errno_of(outcome: Outcome) -> i32 {
    match outcome {
        Outcome::Delivered => 0,
        Outcome::Cancelled => -ECANCELED.to_errno(),
        Outcome::Refused(e) => -e.to_errno(),
    }
}

/// `bus1_send(2)`.
pub(crate) fn send(
    peer: i32,
    dsts_ptr: u64,
    n_dsts: u32,
    msg_ptr: u64,
    msg_size: usize,
    flags: u32,
) -> Result<i32> {
    let known = uapi::BUS1_SEND_CONTINUE | uapi::BUS1_SEND_HANDLES | uapi::BUS1_SEND_FDS;
    if flags & !known != 0 || n_dsts == 0 || n_dsts > uapi::BUS1_DESTINATIONS_MAX {
        return Err(EINVAL);
    }
    let partial = flags & uapi::BUS1_SEND_CONTINUE != 0;
    let peer = peer_from_fd(peer)?;
    let msg: [u64; MSG_WORDS] =
        user::read_struct(msg_ptr, msg_size, uapi::BUS1_MESSAGE_SIZE_VER0 as usize)?;
    if msg[MSG_N_HANDLES] > u64::from(uapi::BUS1_HANDLES_MAX)
        || msg[MSG_N_FDS] > u64::from(uapi::BUS1_FDS_MAX)
    {
        return Err(EINVAL);
    }
    // What a seccomp filter sees in the flags must be what the message
    // carries.
    if (flags & uapi::BUS1_SEND_HANDLES != 0) != (msg[MSG_N_HANDLES] != 0)
        || (flags & uapi::BUS1_SEND_FDS != 0) != (msg[MSG_N_FDS] != 0)
    {
        return Err(EINVAL);
    }
    let dsts = user::read_u64s(dsts_ptr, n_dsts as usize)?;
    if has_duplicates(&dsts)? {
        return Err(ENOTUNIQ);
    }
    let mut outcomes = KVVec::from_elem(Outcome::Cancelled, dsts.len(), GFP_KERNEL)?;
    let errors_ptr = msg[MSG_ERRORS];
    let mut errnos = KVVec::new();
    if errors_ptr != 0 {
        // Written before anything happens, so that a bad address fails
        // the call without effect; "cancelled" until told otherwise.
        errnos = KVVec::from_elem(errno_of(Outcome::Cancelled), dsts.len(), GFP_KERNEL)?;
        user::write_i32s(errors_ptr, &errnos)?;
    }
    let handles = user::read_u64s(msg[MSG_HANDLES], msg[MSG_N_HANDLES] as usize)?;
    let fds = user::read_i32s(msg[MSG_FDS], msg[MSG_N_FDS] as usize)?;
    let files = files::collect(&fds)?;
    let payload = user::gather(msg[MSG_VECS], msg[MSG_N_VECS])?;
    let sent = peer.send(&dsts, payload, &handles, files, partial, &mut outcomes);
    if errors_ptr != 0 {
        for (errno, outcome) in errnos.iter_mut().zip(outcomes.iter()) {
            *errno = errno_of(*outcome);
        }
        // The array was written before the send, so this fails only if
        // another thread unmapped it meanwhile: the send happened, and its
        // result is what the caller must see (documented in bus1.h).
        let _ = user::write_i32s(errors_ptr, &errnos);
    }
    // At most BUS1_DESTINATIONS_MAX.
    Ok(sent? as i32)
}

/// Words of `struct bus1_recv`.
const RECV_VECS: usize = 0;
const RECV_N_VECS: usize = 1;
const RECV_HANDLES: usize = 2;
const RECV_N_HANDLES: usize = 3;
const RECV_FDS: usize = 8;
const RECV_N_FDS: usize = 9;
const RECV_WORDS: usize = 12;

/// Two `__u32` or `__s32` fields that share a word, in memory order.
fn pair(first: u32, second: u32) -> u64 {
    let mut bytes = [0u8; 8];
    bytes[..4].copy_from_slice(&first.to_ne_bytes());
    bytes[4..].copy_from_slice(&second.to_ne_bytes());
    u64::from_ne_bytes(bytes)
}

/// `bus1_recv(2)`.
pub(crate) fn recv(peer: i32, args_ptr: u64, args_size: usize, flags: u32) -> Result<i32> {
    if flags != 0 {
        return Err(EINVAL);
    }
    let peer = peer_from_fd(peer)?;
    let nonblock = peer.nonblock();
    let args: [u64; RECV_WORDS] =
        user::read_struct(args_ptr, args_size, uapi::BUS1_RECV_SIZE_VER0 as usize)?;
    let (vecs, room) = user::read_vecs(args[RECV_VECS], args[RECV_N_VECS])?;
    let handle_room = args[RECV_N_HANDLES];
    let fd_room = args[RECV_N_FDS];

    let handles_ptr = args[RECV_HANDLES];
    peer.recv(
        nonblock,
        |msg| {
            // The output words: n_handles, n_bytes, type, id, flags.
            let out = [
                msg.n_handles as u64,
                msg.payload.len() as u64,
                msg.kind,
                msg.id,
                if msg.continues {
                    u64::from(uapi::BUS1_RECV_FLAG_CONTINUE)
                } else {
                    0
                },
            ];
            // And n_fds, {uid, gid}, {pid, tid}; no sender for a notification.
            let (uid, gid, pid, tid) = msg.creds.unwrap_or((u32::MAX, u32::MAX, 0, 0));
            let out_fds = [
                msg.n_fds as u64,
                pair(uid, gid),
                pair(pid as u32, tid as u32),
            ];
            if msg.payload.len() > room
                || msg.n_handles as u64 > handle_room
                || msg.n_fds as u64 > fd_room
            {
                // Report what is needed; the message stays queued.  A caller
                // with a structure too old to have room for file descriptors
                // has no room for them.
                user::write_struct_words(args_ptr, args_size, RECV_N_HANDLES, &out[..2])?;
                user::write_struct_words(args_ptr, args_size, RECV_N_FDS, &out_fds[..1])?;
                return Err(EMSGSIZE);
            }
            let reserved = files::Reserved::new(msg.n_fds)?;
            user::scatter(&vecs, msg.payload)?;
            // Placeholders: the ids are written once the handles are taken,
            // which must then not fail on a bad address.
            let placeholders = KVec::from_elem(ID_INVALID, msg.n_handles, GFP_KERNEL)?;
            user::write_u64s(handles_ptr, &placeholders)?;
            user::write_i32s(args[RECV_FDS], &reserved.numbers()?)?;
            user::write_struct_words(args_ptr, args_size, RECV_N_HANDLES, &out)?;
            user::write_struct_words(args_ptr, args_size, RECV_N_FDS, &out_fds)?;
            Ok(reserved)
        },
        |ids| user::write_u64s(handles_ptr, ids),
    )?;
    Ok(0)
}
