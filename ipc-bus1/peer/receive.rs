// SPDX-License-Identifier: GPL-2.0

//! Receiving: `bus1_recv(2)`.
//!
//! A receiver copies the first committed entry out while it stays queued
//! (under `recv_lock`, so one receiver at a time), and dequeues it only
//! once that worked.  The handles a message carries become the receiver's
//! only after everything that can fail has succeeded.

use kernel::{prelude::*, sync::Arc};

use super::{handle::AcquireSlots, Peer, ID_INVALID};
use crate::{
    creds::SeenCreds,
    files,
    message::{Entry, Message},
    trace::{self, EntryInfo},
};

/// What `Peer::recv()` hands to its caller to copy out.
pub(crate) struct Received<'a> {
    pub(crate) kind: u64,
    pub(crate) id: u64,
    pub(crate) payload: &'a [u8],
    pub(crate) n_handles: usize,
    pub(crate) n_fds: usize,
    /// The sender's, for a data message.
    pub(crate) creds: Option<SeenCreds>,
    /// Another entry of the same transaction follows in the queue.
    pub(crate) continues: bool,
}

impl Peer {
    /// Receives the next message (`bus1_recv(2)`): waits unless
    /// `nonblock`, copies it out while it stays queued, and dequeues it
    /// only once that worked.
    ///
    /// `copy_out` does everything that can fail: it checks the sizes,
    /// reserves the descriptors for the message's files, copies the payload
    /// and checks that the caller's handle array can be written.  Only then
    /// does the receiver become a holder of the handles the message carries,
    /// so a receive that fails leaves no trace (in particular no handle that
    /// a concurrent destruction would notify).  `write_ids` then stores the
    /// handle ids; it fails only if another thread of the caller changed the
    /// mapping meanwhile, and then the handles are given back and the
    /// message stays queued.  The reserved descriptors are installed once
    /// the message is dequeued.
    pub(crate) fn recv(
        self: &Arc<Self>,
        nonblock: bool,
        copy_out: impl FnOnce(&Received<'_>) -> Result<files::Reserved>,
        write_ids: impl FnOnce(&[u64]) -> Result,
    ) -> Result {
        // Wait without holding `recv_lock`, so that every waiter can be
        // interrupted; then take the first entry under it.
        let (_receiver, stamp, info, message, continues) = loop {
            {
                let mut queue = self.queue.lock();
                while !queue.is_readable() {
                    if nonblock {
                        return Err(EAGAIN);
                    }
                    if self.waitq.wait_interruptible(&mut queue) {
                        return Err(ERESTARTSYS);
                    }
                }
            }
            let receiver = self.recv_lock.lock();
            let first = self.queue.lock().peek().map(|(stamp, entry, continues)| {
                let message = match entry {
                    Entry::Data { message, .. } => Some(message.clone()),
                    _ => None,
                };
                (stamp, EntryInfo::of(entry), message, continues)
            });
            // Another receiver may have taken it in between.
            if let Some((stamp, info, message, continues)) = first {
                break (receiver, stamp, info, message, continues);
            }
        };

        let result = self.copy_out(&info, message.as_deref(), continues, copy_out, write_ids);
        let taken = {
            let mut queue = self.queue.lock();
            match result {
                Ok(_) => queue.pop(),
                Err(_) => {
                    queue.end_read();
                    None
                }
            }
        };
        let reserved = result?;
        trace::recv(self, &stamp, &info);
        if let Some(message) = &message {
            reserved.install(&message.files);
        }
        drop(taken);
        drop(message);
        Ok(())
    }

    /// The part of `recv()` between peeking and dequeuing.
    fn copy_out(
        self: &Arc<Self>,
        info: &EntryInfo,
        message: Option<&Message>,
        continues: bool,
        copy_out: impl FnOnce(&Received<'_>) -> Result<files::Reserved>,
        write_ids: impl FnOnce(&[u64]) -> Result,
    ) -> Result<files::Reserved> {
        let (payload, inflight, n_fds) = match message {
            Some(m) => (&m.payload[..], &m.handles[..], m.files.len()),
            None => (&[][..], &[][..], 0),
        };
        let received = Received {
            kind: info.kind(),
            id: info.id(),
            payload,
            n_handles: inflight.len(),
            n_fds,
            creds: message.map(|m| m.creds.seen_by_current()),
            continues,
        };
        let mut ids = KVec::with_capacity(inflight.len(), GFP_KERNEL)?;
        let mut slots = KVec::with_capacity(inflight.len(), GFP_KERNEL)?;
        for _ in inflight {
            slots.push(AcquireSlots::new()?, GFP_KERNEL)?;
        }
        let reserved = copy_out(&received)?;

        // Nothing fails from here on but a racing change of the mapping.
        for (r, slots) in inflight.iter().zip(slots) {
            // The message's in-flight reference keeps the count above zero,
            // so this fails only for a destroyed node.
            let id = r
                .as_ref()
                .and_then(|r| self.acquire_with(r.node(), false, false, slots).ok())
                .unwrap_or(ID_INVALID);
            ids.push(id, GFP_KERNEL)?;
        }
        if let Err(e) = write_ids(&ids) {
            for &id in ids.iter().filter(|&&id| id != ID_INVALID) {
                let _ = self.release_acquired(id);
            }
            return Err(e);
        }
        Ok(reserved)
    }
}
