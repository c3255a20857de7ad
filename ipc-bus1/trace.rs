// SPDX-License-Identifier: GPL-2.0

//! Trace events.
//!
//! The events of `include/trace/events/bus1.h`, emitted through the
//! tracepoints the C side defines (`events.c`).  Every transaction shows up
//! with its key, which is the same in all queues it reaches: the sending
//! peer, its sequence number there and the commit time.  `bus1_send` and
//! `bus1_node_destroy` say which transaction a peer started, `bus1_queue`
//! where each of its entries went, `bus1_recv` when each was taken, and
//! `bus1_refuse` which destination of a send did not get it and why.  A
//! recorded trace thus shows every message from its sender to each receiver
//! and, by sorting the keys, the one order all receivers agree on.
//!
//! A disabled tracepoint costs one patched jump; the wrappers below only
//! read fields that are at hand.

use kernel::{ffi::c_int, prelude::*, tracepoint::declare_trace, uapi};

use crate::{message::Entry, peer::Peer, queue::Stamp, transaction::Outcome};

// The events take what they show as plain values, hence the many arguments.
declare_trace! {
    #[allow(clippy::too_many_arguments)]
    unsafe fn bus1_send(peer: u64, seq: u64, time: u64, n_dsts: u32, ret: c_int, n_bytes: u64,
                        n_handles: u32, n_fds: u32, flags: u32);
    unsafe fn bus1_refuse(peer: u64, seq: u64, index: u32, id: u64, error: c_int);
    #[allow(clippy::too_many_arguments)]
    unsafe fn bus1_queue(peer: u64, time: u64, sender: u64, seq: u64, part: u64, kind: u32,
                         id: u64, n_bytes: u64, n_handles: u32, n_fds: u32);
    #[allow(clippy::too_many_arguments)]
    unsafe fn bus1_recv(peer: u64, time: u64, sender: u64, seq: u64, part: u64, kind: u32,
                        id: u64, n_bytes: u64, n_handles: u32, n_fds: u32);
    unsafe fn bus1_node_destroy(peer: u64, id: u64, seq: u64, time: u64, holders: u32);
    unsafe fn bus1_handle_transfer(src_peer: u64, src_id: u64, dst_peer: u64, dst_id: u64);
    unsafe fn bus1_handle_release(peer: u64, id: u64);
}

/// What the queue and receive events tell about an entry, read before the
/// entry is handed to the queue.
#[derive(Clone, Copy)]
pub(crate) struct EntryInfo {
    kind: u32,
    id: u64,
    n_bytes: u64,
    n_handles: u32,
    n_fds: u32,
}

impl EntryInfo {
    /// The `BUS1_MSG_*` type of the entry.
    pub(crate) fn kind(&self) -> u64 {
        self.kind.into()
    }

    /// The receiver-side id the entry arrives on.
    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    pub(crate) fn of(entry: &Entry) -> Self {
        let (n_bytes, n_handles, n_fds) = match entry {
            Entry::Data { message, .. } => (
                message.payload.len() as u64,
                message.handles.len() as u32,
                message.files.len() as u32,
            ),
            _ => (0, 0, 0),
        };
        Self {
            kind: entry.kind() as u32,
            id: entry.id(),
            n_bytes,
            n_handles,
            n_fds,
        }
    }
}

/// The result of `bus1_send(2)` as the event reports it.
fn ret_of(result: &Result<(usize, u64)>) -> c_int {
    match result {
        Ok((delivered, _)) => *delivered as c_int,
        Err(e) => e.to_errno(),
    }
}

/// A `bus1_send(2)` by `peer` as transaction `seq`, with one `bus1_refuse`
/// per destination that did not get it.  `dsts` are the caller's handle
/// ids; `result` is the number delivered and the commit time.
#[allow(clippy::too_many_arguments)]
pub(crate) fn send(
    peer: &Peer,
    seq: u64,
    dsts: &[u64],
    outcomes: &[Outcome],
    sizes: (usize, usize, usize),
    partial: bool,
    result: &Result<(usize, u64)>,
) {
    let (n_bytes, n_handles, n_fds) = sizes;
    let mut flags = 0;
    if partial {
        flags |= uapi::BUS1_SEND_CONTINUE;
    }
    if n_handles != 0 {
        flags |= uapi::BUS1_SEND_HANDLES;
    }
    if n_fds != 0 {
        flags |= uapi::BUS1_SEND_FDS;
    }
    let time = result.as_ref().map_or(0, |&(_, time)| time);
    // SAFETY: The tracepoint takes plain values; it may be called from any
    // context.
    unsafe {
        bus1_send(
            peer.id(),
            seq,
            time,
            dsts.len() as u32,
            ret_of(result),
            n_bytes as u64,
            n_handles as u32,
            n_fds as u32,
            flags,
        )
    };
    for (index, (id, outcome)) in dsts.iter().zip(outcomes).enumerate() {
        if let Outcome::Refused(e) = outcome {
            // SAFETY: As above.
            unsafe { bus1_refuse(peer.id(), seq, index as u32, *id, e.to_errno()) };
        }
    }
}

/// An entry committed to the queue of `peer` at `stamp`.
pub(crate) fn queue(peer: &Peer, stamp: &Stamp, info: &EntryInfo) {
    // SAFETY: The tracepoint takes plain values; it may be called from any
    // context.
    unsafe {
        bus1_queue(
            peer.id(),
            stamp.time,
            stamp.sender,
            stamp.seq,
            stamp.part,
            info.kind,
            info.id,
            info.n_bytes,
            info.n_handles,
            info.n_fds,
        )
    };
}

/// An entry received from the queue of `peer`, where it was at `stamp`.
pub(crate) fn recv(peer: &Peer, stamp: &Stamp, info: &EntryInfo) {
    // SAFETY: As in `queue()`.
    unsafe {
        bus1_recv(
            peer.id(),
            stamp.time,
            stamp.sender,
            stamp.seq,
            stamp.part,
            info.kind,
            info.id,
            info.n_bytes,
            info.n_handles,
            info.n_fds,
        )
    };
}

/// Node `id` of `owner` destroyed by transaction `seq` at `time`.
pub(crate) fn node_destroy(owner: &Peer, id: u64, seq: u64, time: u64, holders: usize) {
    // SAFETY: As in `queue()`.
    unsafe { bus1_node_destroy(owner.id(), id, seq, time, holders as u32) };
}

/// `bus1_handle_transfer(2)` gave `dst` handle `dst_id` to the node `src`
/// knows as `src_id`.
pub(crate) fn handle_transfer(src: &Peer, src_id: u64, dst: &Peer, dst_id: u64) {
    // SAFETY: As in `queue()`.
    unsafe { bus1_handle_transfer(src.id(), src_id, dst.id(), dst_id) };
}

/// `bus1_handle_release(2)` dropped a reference of handle `id` of `peer`.
pub(crate) fn handle_release(peer: &Peer, id: u64) {
    // SAFETY: As in `queue()`.
    unsafe { bus1_handle_release(peer.id(), id) };
}
