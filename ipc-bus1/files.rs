// SPDX-License-Identifier: GPL-2.0

//! DOC: File descriptor passing
//!
//! A message can carry up to `BUS1_FDS_MAX` file descriptors.  The sender's
//! descriptors are resolved to files when the message is sent; the message
//! holds a reference to each file until it is received or dropped (a peer
//! closed or reset with the message unreceived releases them).
//!
//! bus1 peers and `AF_UNIX` sockets cannot be passed (`EOPNOTSUPP`): a
//! queued message that holds the file of its own receiver, or of a socket
//! whose queue holds that receiver, is a reference cycle that nothing would
//! ever break; `AF_UNIX` needs a garbage collector for exactly this, and
//! bus1 does not have one.
//!
//! The receiver gets new descriptors, always with `O_CLOEXEC` (a process
//! that wants them inherited clears the flag).  They are reserved before
//! anything is copied out, so a full descriptor table fails the receive
//! with `EMFILE` and leaves the message queued, and installed only once the
//! message is taken off the queue, when nothing can fail any more.

use kernel::{
    bindings,
    fs::{file::FileDescriptorReservation, File, LocalFile},
    prelude::*,
    sync::aref::ARef,
};

/// Whether `file` may travel in a message.
fn is_passable(file: &File) -> bool {
    if crate::peer_file::is_peer_file(file) {
        return false;
    }
    !is_unix_socket(file)
}

#[cfg(CONFIG_NET)]
fn is_unix_socket(file: &File) -> bool {
    // SAFETY: `file` is a valid file; `sock_from_file()` only compares its
    // `f_op` and returns its socket, which lives as long as the file.
    let sock = unsafe { bindings::sock_from_file(file.as_ptr()) };
    if sock.is_null() {
        return false;
    }
    // SAFETY: The socket of a file that we hold a reference to is valid, and
    // its `ops` (the family's operations) are set for the life of the file.
    let ops = unsafe { (*sock).ops };
    // SAFETY: As above; the operations are a static table of the family.
    !ops.is_null() && unsafe { (*ops).family } == bindings::AF_UNIX as c_int
}

#[cfg(not(CONFIG_NET))]
fn is_unix_socket(_file: &File) -> bool {
    false
}

/// Resolves the sender's descriptors `fds` to files: `EBADF` for one that
/// is not open, `EOPNOTSUPP` for one that cannot be passed.
pub(crate) fn collect(fds: &[i32]) -> Result<KVec<ARef<File>>> {
    let mut files = KVec::with_capacity(fds.len(), GFP_KERNEL)?;
    for &fd in fds {
        let fd = u32::try_from(fd).map_err(|_| EBADF)?;
        let file = LocalFile::fget(fd)?;
        // SAFETY: bus1 never calls `fdget_pos()`, and this runs in a bus1
        // system call, so there is no active `fdget_pos()` on this thread.
        let file = unsafe { LocalFile::assume_no_fdget_pos(file) };
        if !is_passable(&file) {
            return Err(EOPNOTSUPP);
        }
        files.push(file, GFP_KERNEL)?;
    }
    Ok(files)
}

/// Descriptors reserved in the receiver's table for the files of one
/// message; given back unless `install()` is called.
pub(crate) struct Reserved(KVec<FileDescriptorReservation>);

impl Reserved {
    /// Reserves `n` descriptors with `O_CLOEXEC`; `EMFILE` if the table is
    /// full.
    pub(crate) fn new(n: usize) -> Result<Self> {
        let mut reserved = KVec::with_capacity(n, GFP_KERNEL)?;
        for _ in 0..n {
            let fd = FileDescriptorReservation::get_unused_fd_flags(bindings::O_CLOEXEC)?;
            reserved.push(fd, GFP_KERNEL)?;
        }
        Ok(Self(reserved))
    }

    /// The descriptor numbers, as user space sees them.
    pub(crate) fn numbers(&self) -> Result<KVec<i32>> {
        let mut numbers = KVec::with_capacity(self.0.len(), GFP_KERNEL)?;
        for fd in self.0.iter() {
            // Descriptor numbers fit an int.
            numbers.push(fd.reserved_fd() as i32, GFP_KERNEL)?;
        }
        Ok(numbers)
    }

    /// Installs `files` (as many as reserved) in the reserved descriptors;
    /// cannot fail.
    pub(crate) fn install(self, files: &[ARef<File>]) {
        for (fd, file) in self.0.into_iter().zip(files.iter()) {
            fd.fd_install(file.clone());
        }
    }
}
