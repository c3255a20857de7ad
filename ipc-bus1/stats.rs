// SPDX-License-Identifier: GPL-2.0

//! Object accounting.
//!
//! bus1 counts its live objects by kind so that a leak is visible from user
//! space: `/sys/kernel/debug/bus1/objects` prints one `<kind> <count>` line
//! per kind.  Tests create and destroy many objects and check that every
//! count returns to where it started.
//!
//! The counters are statistics only: nothing in bus1 makes decisions on
//! them, so relaxed atomics are enough.

use core::fmt;
use kernel::{
    debugfs,
    prelude::*,
    sync::atomic::{Atomic, Relaxed},
};

/// Number of live objects of one kind.
pub(crate) struct ObjectCount(Atomic<i64>);

impl ObjectCount {
    const fn new() -> Self {
        Self(Atomic::new(0))
    }

    pub(crate) fn inc(&self) {
        self.0.add(1, Relaxed);
    }

    pub(crate) fn dec(&self) {
        self.0.add(-1, Relaxed);
    }

    fn get(&self) -> i64 {
        self.0.load(Relaxed)
    }
}

/// Live `Peer` objects.
pub(crate) static PEERS: ObjectCount = ObjectCount::new();
/// Live `Node` objects.
pub(crate) static NODES: ObjectCount = ObjectCount::new();
/// Live `Message` objects (queued, or being received).
pub(crate) static MESSAGES: ObjectCount = ObjectCount::new();

/// The contents of the `objects` debugfs file.
struct Objects;

impl fmt::Debug for Objects {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "peers {}", PEERS.get())?;
        writeln!(f, "nodes {}", NODES.get())?;
        write!(f, "messages {}", MESSAGES.get())
    }
}

/// The `bus1` debugfs directory; removed when dropped.
pub(crate) struct Debugfs {
    _objects: Option<Pin<KBox<debugfs::File<Objects>>>>,
    _dir: debugfs::Dir,
}

impl Debugfs {
    /// Creates `/sys/kernel/debug/bus1/`.  Debugfs is a debugging aid: when
    /// it cannot be created bus1 works on without it.
    pub(crate) fn register() -> Self {
        let dir = debugfs::Dir::new(c"bus1");
        let objects = KBox::pin_init(dir.read_only_file(c"objects", Objects), GFP_KERNEL).ok();
        Self {
            _objects: objects,
            _dir: dir,
        }
    }
}
