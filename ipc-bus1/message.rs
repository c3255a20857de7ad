// SPDX-License-Identifier: GPL-2.0

//! Messages and notifications.
//!
//! A queue holds entries of three kinds: data messages sent with
//! `bus1_send(2)` and the two notifications, node destruction and node
//! release.  Each entry names the receiver-side id it arrives on.
//!
//! A data message owns its payload and one in-flight reference for each
//! handle it carries.  An in-flight reference keeps the node's handle count
//! up while the message is queued, so passing one's last handle on in a
//! message does not make the node look released; the reference is turned
//! into a handle of the receiver when the message is received, or given back
//! when the message is dropped unreceived.  Likewise it holds a reference
//! to each file it carries (see `files.rs`), and the credentials of its
//! sender (see `creds.rs`).

use kernel::{
    fs::File,
    prelude::*,
    sync::{aref::ARef, Arc, UniqueArc},
    uapi,
};

use crate::{
    creds::Creds,
    limits::MESSAGE_OVERHEAD,
    node::InflightRef,
    quota::{Charge, Usage},
    stats,
};

/// What a message carries.
pub(crate) struct Message {
    pub(crate) payload: KVVec<u8>,
    /// `None` for a handle whose node was already destroyed when sent.
    pub(crate) handles: KVec<Option<InflightRef>>,
    pub(crate) files: KVec<ARef<File>>,
    pub(crate) creds: Creds,
}

impl Message {
    /// A message with room for `n_handles` handles, added by the sender's
    /// transaction once it cannot fail any more.
    pub(crate) fn new(
        payload: KVVec<u8>,
        n_handles: usize,
        files: KVec<ARef<File>>,
    ) -> Result<UniqueArc<Self>> {
        let handles = KVec::with_capacity(n_handles, GFP_KERNEL_ACCOUNT)?;
        let creds = Creds::current();
        // Counted first: a failed allocation drops the value, uncounting it.
        stats::MESSAGES.inc();
        Ok(UniqueArc::new(
            Self {
                payload,
                handles,
                files,
                creds,
            },
            GFP_KERNEL_ACCOUNT,
        )?)
    }

    /// What the message costs its receivers (see `quota.rs`), sent by a
    /// peer of the user `sender` (a raw kuid) with `n_handles` handles.
    pub(crate) fn charge(&self, sender: u32, n_handles: usize) -> Charge {
        Charge {
            sender,
            usage: Usage {
                messages: 1,
                bytes: self.payload.len() as u64 + MESSAGE_OVERHEAD,
                handles: n_handles as u64,
                fds: self.files.len() as u64,
            },
        }
    }
}

impl Drop for Message {
    fn drop(&mut self) {
        stats::MESSAGES.dec();
    }
}

/// One queued entry.
pub(crate) enum Entry {
    Data { id: u64, message: Arc<Message> },
    NodeDestroy { id: u64 },
    NodeRelease { id: u64 },
}

impl Entry {
    /// The `BUS1_MSG_*` type reported to user space.
    pub(crate) fn kind(&self) -> u64 {
        u64::from(match self {
            Self::Data { .. } => uapi::BUS1_MSG_DATA,
            Self::NodeDestroy { .. } => uapi::BUS1_MSG_NODE_DESTROY,
            Self::NodeRelease { .. } => uapi::BUS1_MSG_NODE_RELEASE,
        })
    }

    /// The receiver-side id the entry arrives on.
    pub(crate) fn id(&self) -> u64 {
        match self {
            Self::Data { id, .. } | Self::NodeDestroy { id } | Self::NodeRelease { id } => *id,
        }
    }
}
