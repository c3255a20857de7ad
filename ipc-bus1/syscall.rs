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

use crate::{
    files,
    peer::ID_INVALID,
    peer_file::peer_from_fd,
    trace,
    transaction::Outcome,
    user::{self, MessageArgs, RecvArgs},
};

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
    let src_id = user::read_u64(src_id_ptr)?;
    let node = src.lookup(src_id)?;
    if node.is_destroyed() {
        return Err(EHOSTUNREACH);
    }
    if !Arc::ptr_eq(dst, &src) {
        src.may_transfer_handle(dst)?;
    }
    user::write_u64(dst_id_ptr, ID_INVALID)?;
    // Only the owner may give out a node nobody else holds any more.
    let by_owner = Arc::ptr_eq(&node.owner, &src);
    let id = dst.acquire(&node, by_owner)?;
    trace::handle_transfer(&src, src_id, dst, id);
    user::write_u64(dst_id_ptr, id)?;
    Ok(0)
}

/// `bus1_handle_release(2)`.
pub(crate) fn handle_release(peer: i32, id_ptr: u64, flags: u32) -> Result<i32> {
    if flags != 0 {
        return Err(EINVAL);
    }
    let peer = peer_from_fd(peer)?;
    let id = user::read_u64(id_ptr)?;
    peer.release(id)?;
    trace::handle_release(&peer, id);
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
    let MessageArgs(msg) =
        user::read_struct(msg_ptr, msg_size, uapi::BUS1_MESSAGE_SIZE_VER0 as usize)?;
    if msg.n_handles > u64::from(uapi::BUS1_HANDLES_MAX)
        || msg.n_fds > u64::from(uapi::BUS1_FDS_MAX)
    {
        return Err(EINVAL);
    }
    // What a seccomp filter sees in the flags must be what the message
    // carries.
    if (flags & uapi::BUS1_SEND_HANDLES != 0) != (msg.n_handles != 0)
        || (flags & uapi::BUS1_SEND_FDS != 0) != (msg.n_fds != 0)
    {
        return Err(EINVAL);
    }
    let dsts = user::read_u64s(dsts_ptr, n_dsts as usize)?;
    if has_duplicates(&dsts)? {
        return Err(ENOTUNIQ);
    }
    let mut outcomes = KVVec::from_elem(Outcome::Cancelled, dsts.len(), GFP_KERNEL)?;
    let errors_ptr = msg.errors;
    let mut errnos = KVVec::new();
    if errors_ptr != 0 {
        // Written before anything happens, so that a bad address fails
        // the call without effect; "cancelled" until told otherwise.
        errnos = KVVec::from_elem(errno_of(Outcome::Cancelled), dsts.len(), GFP_KERNEL)?;
        user::write_i32s(errors_ptr, &errnos)?;
    }
    let handles = user::read_u64s(msg.handles, msg.n_handles as usize)?;
    let fds = user::read_i32s(msg.fds, msg.n_fds as usize)?;
    let files = files::collect(&fds)?;
    let payload = user::gather(msg.vecs, msg.n_vecs)?;
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

/// `bus1_recv(2)`.
pub(crate) fn recv(peer: i32, args_ptr: u64, args_size: usize, flags: u32) -> Result<i32> {
    if flags != 0 {
        return Err(EINVAL);
    }
    let peer = peer_from_fd(peer)?;
    let nonblock = peer.nonblock();
    let RecvArgs(args) =
        user::read_struct(args_ptr, args_size, uapi::BUS1_RECV_SIZE_VER0 as usize)?;
    let (vecs, room) = user::read_vecs(args.vecs, args.n_vecs)?;
    peer.recv(
        nonblock,
        |msg| {
            // What the caller learns; a caller with a structure too old to
            // have `fds` has no room for descriptors (and sees none of the
            // fields it does not have).
            let (uid, gid, pid, tid) = msg.creds.unwrap_or((u32::MAX, u32::MAX, 0, 0));
            let out = RecvArgs(uapi::bus1_recv {
                n_handles: msg.n_handles as u64,
                n_bytes: msg.payload.len() as u64,
                type_: msg.kind,
                id: msg.id,
                flags: if msg.continues {
                    u64::from(uapi::BUS1_RECV_FLAG_CONTINUE)
                } else {
                    0
                },
                n_fds: msg.n_fds as u64,
                uid,
                gid,
                pid,
                tid,
                ..args
            });
            if msg.payload.len() > room
                || out.0.n_handles > args.n_handles
                || out.0.n_fds > args.n_fds
            {
                // Report the sizes needed, nothing else; the message stays
                // queued.
                let needed = RecvArgs(uapi::bus1_recv {
                    n_handles: out.0.n_handles,
                    n_bytes: out.0.n_bytes,
                    n_fds: out.0.n_fds,
                    ..args
                });
                user::write_struct(args_ptr, args_size, &needed)?;
                return Err(EMSGSIZE);
            }
            let reserved = files::Reserved::new(msg.n_fds)?;
            user::scatter(&vecs, msg.payload)?;
            // Placeholders: the ids are written once the handles are taken,
            // which must then not fail on a bad address.
            let placeholders = KVec::from_elem(ID_INVALID, msg.n_handles, GFP_KERNEL)?;
            user::write_u64s(args.handles, &placeholders)?;
            user::write_i32s(args.fds, &reserved.numbers()?)?;
            user::write_struct(args_ptr, args_size, &out)?;
            Ok(reserved)
        },
        |ids| user::write_u64s(args.handles, ids),
    )?;
    Ok(0)
}
