// SPDX-License-Identifier: GPL-2.0

//! File descriptor passing.
//!
//! A message can carry up to `BUS1_FDS_MAX` file descriptors.  The sender's
//! descriptors are resolved to files when the message is sent; the message
//! holds a reference to each file until it is received or dropped (a peer
//! closed or reset with the message unreceived releases them).
//!
//! Files that can hold other files cannot be passed (`EOPNOTSUPP`): bus1
//! peers (their queues hold messages with files), `AF_UNIX` sockets (their
//! queues hold `SCM_RIGHTS` files) and io_uring instances (their registered
//! files).  A queued message that holds such a file, which holds the
//! message's own receiver, is a reference cycle that nothing would ever
//! break; `AF_UNIX` needs a garbage collector for exactly this, and bus1
//! does not have one.  The kernel's own tests decide the kind
//! (`unix_get_socket()`, `io_is_uring_fops()`).  Binder device files and
//! `/dev/fuse` can hold files as well but are not recognised (no helper
//! tells them apart): a known gap, documented in bus1.rst.
//!
//! The receiver gets new descriptors, always with `O_CLOEXEC` (a process
//! that wants them inherited clears the flag).  They are reserved before
//! anything is copied out, so a full descriptor table fails the receive
//! with `EMFILE` and leaves the message queued, and installed only once the
//! message is taken off the queue, when nothing can fail any more.

use core::ptr::NonNull;

use kernel::{
    bindings,
    fs::{file::FileDescriptorReservation, File},
    prelude::*,
    sync::aref::ARef,
};

/// Whether `file` may travel in a message: not if it can hold other
/// files, which could make a cycle through a message that holds it.
fn is_passable(file: &File) -> bool {
    !crate::peer_file::is_peer_file(file) && !is_unix_socket(file) && !is_io_uring(file)
}

/// An `AF_UNIX` socket holds the files queued on it with `SCM_RIGHTS`.
#[cfg(CONFIG_UNIX)]
fn is_unix_socket(file: &File) -> bool {
    // SAFETY: `file` is a valid file; `unix_get_socket()` only compares its
    // inode's socket family and returns a pointer, not a reference.
    !unsafe { bindings::unix_get_socket(file.as_ptr()) }.is_null()
}

#[cfg(not(CONFIG_UNIX))]
fn is_unix_socket(_file: &File) -> bool {
    false
}

/// An io_uring instance holds its registered files.
#[cfg(CONFIG_IO_URING)]
fn is_io_uring(file: &File) -> bool {
    // SAFETY: `file` is a valid file; only its `f_op` is compared.
    unsafe { bindings::io_is_uring_fops(file.as_ptr()) }
}

#[cfg(not(CONFIG_IO_URING))]
fn is_io_uring(_file: &File) -> bool {
    false
}

/// Resolves the sender's descriptors `fds` to files: `EBADF` for one that
/// is not open, `EOPNOTSUPP` for one that cannot be passed.  `O_PATH`
/// descriptors are open descriptors too and can be passed.
pub(crate) fn collect(fds: &[i32]) -> Result<KVec<ARef<File>>> {
    let mut files = KVec::with_capacity(fds.len(), GFP_KERNEL_ACCOUNT)?;
    for &fd in fds {
        let fd = u32::try_from(fd).map_err(|_| EBADF)?;
        // SAFETY: FFI call without requirements on `fd`; unlike `fget()`,
        // `fget_raw()` also returns `O_PATH` files.
        let file = NonNull::new(unsafe { bindings::fget_raw(fd) }).ok_or(EBADF)?;
        // SAFETY: `fget_raw()` took a reference, which the `ARef` owns; the
        // cast is fine as `File` wraps `struct file` transparently.  bus1
        // never calls `fdget_pos()`, and this runs in a bus1 system call, so
        // no `fdget_pos()` is active on this thread and the file may be
        // shared with other threads (the invariant of `File`).
        let file: ARef<File> = unsafe { ARef::from_raw(file.cast()) };
        if !is_passable(&file) {
            return Err(EOPNOTSUPP);
        }
        files.push(file, GFP_KERNEL_ACCOUNT)?;
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
