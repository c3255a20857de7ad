// SPDX-License-Identifier: GPL-2.0

//! Peer files.
//!
//! User space refers to a peer through a file descriptor of an anonymous
//! inode file named `[bus1]`.  The file's `private_data` owns one reference
//! to the `Peer`; the last `fput()` of the file (the last close, in any
//! process) calls `release()`, which gives that reference back.
//!
//! Whether a file is a bus1 peer is decided by its `f_op` pointing at
//! `PEER_FOPS`, which is why that table is a `static` with one address.

use kernel::{
    bindings,
    fs::{File, LocalFile},
    prelude::*,
    seq_file::{seq_print, SeqFile},
    sync::{aref::ARef, poll::PollTable, Arc},
    types::ForeignOwnable,
    uapi,
};

use crate::{limits, peer::Peer, quota::Usage};

/// `file_operations` in a `static` needs `Sync`; the table is never written.
struct FileOperations(bindings::file_operations);

// SAFETY: The table is immutable after compilation; the raw pointers it
// contains are only read (by the VFS).
unsafe impl Sync for FileOperations {}

static PEER_FOPS: FileOperations = FileOperations(bindings::file_operations {
    release: Some(release),
    poll: Some(poll),
    show_fdinfo: Some(show_fdinfo),
    // SAFETY: All-zero is a valid `file_operations`: every member is an
    // optional function pointer, a null module pointer or a flag word.
    ..unsafe { core::mem::MaybeUninit::zeroed().assume_init() }
});

const OPEN_FLAGS: u32 = uapi::BUS1_OPEN_CLOEXEC | uapi::BUS1_OPEN_NONBLOCK;

/// Creates a peer and installs a file descriptor for it (`bus1_open(2)`).
pub(crate) fn open(flags: u32) -> Result<i32> {
    if flags & !OPEN_FLAGS != 0 {
        return Err(EINVAL);
    }

    let mut file_flags = bindings::O_RDWR;
    if flags & uapi::BUS1_OPEN_CLOEXEC != 0 {
        file_flags |= bindings::O_CLOEXEC;
    }
    if flags & uapi::BUS1_OPEN_NONBLOCK != 0 {
        file_flags |= bindings::O_NONBLOCK;
    }

    let peer = Peer::new()?.into_foreign();

    // SAFETY: The name is a NUL-terminated string, `PEER_FOPS` lives
    // forever, and `peer` is a valid `private_data` for it (see `release()`).
    let fd = unsafe {
        bindings::anon_inode_getfd(
            c"[bus1]".as_char_ptr(),
            &PEER_FOPS.0,
            peer,
            file_flags as c_int,
        )
    };
    if fd < 0 {
        // SAFETY: `anon_inode_getfd()` creates no file when it fails, so the
        // reference from `into_foreign()` above was not consumed.
        drop(unsafe { Arc::<Peer>::from_foreign(peer) });
        return Err(Error::from_errno(fd));
    }
    Ok(fd)
}

/// Whether `file` is a bus1 peer.
pub(crate) fn is_peer_file(file: &File) -> bool {
    // SAFETY: `file` is a valid file; `f_op` is set for its life.
    core::ptr::eq(unsafe { (*file.as_ptr()).f_op }, &PEER_FOPS.0)
}

/// A peer used by a system call, through one of the caller's descriptors.
///
/// It holds a reference to the file for the whole call, as `fdget()` does
/// for every other system call: a close of the descriptor by another
/// thread meanwhile does not release the peer under the call (a receiver
/// blocked in `bus1_recv(2)` keeps waiting for messages, like a reader of a
/// pipe), and the release happens when the last call using it returns.
pub(crate) struct PeerFd {
    peer: Arc<Peer>,
    nonblock: bool,
    _file: ARef<LocalFile>,
}

impl PeerFd {
    /// Whether the file is in non-blocking mode.
    pub(crate) fn nonblock(&self) -> bool {
        self.nonblock
    }
}

impl core::ops::Deref for PeerFd {
    type Target = Arc<Peer>;

    fn deref(&self) -> &Arc<Peer> {
        &self.peer
    }
}

/// The peer behind a file descriptor of the caller.
///
/// `EBADF` for a descriptor that is not open or not a bus1 peer.
pub(crate) fn peer_from_fd(fd: i32) -> Result<PeerFd> {
    let fd = u32::try_from(fd).map_err(|_| EBADF)?;
    let file = LocalFile::fget(fd)?;
    let raw = file.as_ptr();
    // SAFETY: `file` holds a reference, so `raw` is a valid file.
    if !core::ptr::eq(unsafe { (*raw).f_op }, &PEER_FOPS.0) {
        return Err(EBADF);
    }
    // SAFETY: A file with `PEER_FOPS` has a peer in `private_data`, alive as
    // long as the file, which `file` keeps open during this borrow.
    let peer: Arc<Peer> = unsafe { Arc::<Peer>::borrow((*raw).private_data) }.into();
    Ok(PeerFd {
        peer,
        nonblock: file.flags() & bindings::O_NONBLOCK != 0,
        _file: file,
    })
}

/// Called on the last `fput()` of a peer file.
///
/// # Safety
///
/// `file` is a file created by `open()` and this is its last reference.
unsafe extern "C" fn release(_inode: *mut bindings::inode, file: *mut bindings::file) -> c_int {
    // SAFETY: The caller guarantees `file` is valid; its `private_data` was
    // set from `Arc::into_foreign()` in `open()` and is given back once, here.
    let peer = unsafe { Arc::<Peer>::from_foreign((*file).private_data) };
    peer.disconnect();
    drop(peer);
    0
}

/// Readable exactly when `bus1_recv(2)` would not block; always writable,
/// since `bus1_send(2)` never blocks (a destination that has no room
/// refuses with `EDQUOT` instead).
///
/// # Safety
///
/// `file` is a valid peer file and `wait` a valid (or null) poll table, both
/// for the duration of the call.
unsafe extern "C" fn poll(
    file: *mut bindings::file,
    wait: *mut bindings::poll_table_struct,
) -> bindings::__poll_t {
    // SAFETY: The VFS holds a reference to `file` during the call, so the
    // peer in its `private_data` is alive.
    let peer = unsafe { Arc::<Peer>::borrow((*file).private_data) };
    // SAFETY: As above, `file` is valid for the call.
    let file = unsafe { File::from_raw_file(file) };
    // SAFETY: The caller passes a valid or null poll table.
    let table = unsafe { PollTable::from_raw(wait) };
    table.register_wait(file, peer.waitq());
    let writable = bindings::POLLOUT | bindings::POLLWRNORM;
    if peer.is_readable() {
        bindings::POLLIN | bindings::POLLRDNORM | writable
    } else {
        writable
    }
}

/// Prints the peer's state into `/proc/<pid>/fdinfo/<fd>`.
///
/// # Safety
///
/// `m` is a valid `seq_file` owned by the caller and `file` a valid peer
/// file that stays alive for the duration of the call.
unsafe extern "C" fn show_fdinfo(m: *mut bindings::seq_file, file: *mut bindings::file) {
    // SAFETY: The VFS holds a reference to `file` during the call, so the
    // peer that its `private_data` owns is alive too.
    let peer = unsafe { Arc::<Peer>::borrow((*file).private_data) };
    // SAFETY: The caller passes a valid `seq_file` that only this thread
    // accesses during the call.
    let m = unsafe { SeqFile::from_raw(m) };
    seq_print!(m, "bus1-peer-id:\t{}\n", peer.id());
    // Use and limit of both pools the peer's queue is charged to.
    let (peer_used, user_used) = peer.usage();
    show_pool(m, "queue", &peer_used, &limits::peer());
    show_pool(m, "user", &user_used, &limits::user());
    // What the peer and its user keep: nodes owned and handles held.
    let (peer_objects, user_objects) = peer.objects();
    let (peer_max, user_max) = (limits::peer_objects(), limits::user_objects());
    for (name, used, limit) in [
        ("peer-nodes", peer_objects.nodes, peer_max.nodes),
        ("peer-held-handles", peer_objects.handles, peer_max.handles),
        ("user-nodes", user_objects.nodes, user_max.nodes),
        ("user-held-handles", user_objects.handles, user_max.handles),
    ] {
        seq_print!(m, "bus1-{}:\t{}\t{}\n", name, used, limit);
    }
}

/// One fdinfo line per resource of a pool: "bus1-<pool>-<resource>: used limit".
fn show_pool(m: &SeqFile, pool: &str, used: &Usage, limit: &Usage) {
    for (name, used, limit) in [
        ("messages", used.messages, limit.messages),
        ("bytes", used.bytes, limit.bytes),
        ("handles", used.handles, limit.handles),
        ("fds", used.fds, limit.fds),
    ] {
        seq_print!(m, "bus1-{}-{}:\t{}\t{}\n", pool, name, used, limit);
    }
}
