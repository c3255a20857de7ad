// SPDX-License-Identifier: GPL-2.0
//! User-space interface to bus1, capability-based IPC offered as dedicated
//! Linux system calls.
//!
//! [`sys`] is the raw ABI (syscall numbers, constants, one unsafe function
//! per system call); [`Peer`] is the safe wrapper built on it.

use std::fs;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

pub use nix::errno::Errno;

/// The raw system call ABI, mirroring `include/uapi/linux/bus1.h`.
pub mod sys {
    use super::Errno;

    /// `bus1_open()`: set close-on-exec on the new file descriptor.
    pub const BUS1_OPEN_CLOEXEC: u32 = 1 << 0;
    /// `bus1_open()`: open the peer in non-blocking mode.
    pub const BUS1_OPEN_NONBLOCK: u32 = 1 << 1;

    /// System call numbers.  x86_64 and the architectures that use the
    /// generic table (`scripts/syscall.tbl`) share them.
    #[cfg(any(
        target_arch = "x86_64",
        target_arch = "aarch64",
        target_arch = "riscv64",
        target_arch = "loongarch64"
    ))]
    pub mod nr {
        pub const BUS1_OPEN: usize = 473;
        pub const BUS1_NODE_CREATE: usize = 474;
        pub const BUS1_HANDLE_TRANSFER: usize = 475;
        pub const BUS1_HANDLE_RELEASE: usize = 476;
        pub const BUS1_NODES_DESTROY: usize = 477;
        pub const BUS1_SEND: usize = 478;
        pub const BUS1_RECV: usize = 479;
        pub const BUS1_PEER_RESET: usize = 480;
    }

    pub const BUS1_ID_INVALID: u64 = u64::MAX;
    pub const BUS1_NODES_DESTROY_MAX: u32 = 1024;
    pub const BUS1_DESTINATIONS_MAX: u32 = 1024;
    pub const BUS1_VECS_MAX: u32 = 1024;
    pub const BUS1_HANDLES_MAX: u32 = 256;
    pub const BUS1_PAYLOAD_MAX: u32 = 1 << 22;
    pub const BUS1_FDS_MAX: u32 = 256;
    pub const BUS1_MSG_DATA: u64 = 1;
    pub const BUS1_MSG_NODE_DESTROY: u64 = 2;
    pub const BUS1_MSG_NODE_RELEASE: u64 = 3;
    pub const BUS1_MESSAGE_SIZE_VER0: usize = 40;
    pub const BUS1_MESSAGE_SIZE_VER1: usize = 56;
    pub const BUS1_RECV_SIZE_VER0: usize = 64;
    pub const BUS1_RECV_SIZE_VER1: usize = 96;
    /// `bus1_send()` flag: deliver to every destination that takes it.
    pub const BUS1_SEND_CONTINUE: u32 = 1 << 0;
    /// `bus1_send()` flag: the message carries handles (exactly then).
    pub const BUS1_SEND_HANDLES: u32 = 1 << 1;
    /// `bus1_send()` flag: the message carries file descriptors (exactly then).
    pub const BUS1_SEND_FDS: u32 = 1 << 2;
    /// `bus1_recv.flags`: the next entry belongs to the same transaction.
    pub const BUS1_RECV_FLAG_CONTINUE: u64 = 1 << 0;

    /// `struct bus1_vec`.
    #[repr(C)]
    #[derive(Clone, Copy, Debug, Default)]
    pub struct Bus1Vec {
        pub base: u64,
        pub len: u64,
    }

    /// `struct bus1_message`.
    #[repr(C)]
    #[derive(Clone, Copy, Debug, Default)]
    pub struct Bus1Message {
        pub vecs: u64,
        pub n_vecs: u64,
        pub handles: u64,
        pub n_handles: u64,
        pub errors: u64,
        pub fds: u64,
        pub n_fds: u64,
    }

    /// `struct bus1_recv`.
    #[repr(C)]
    #[derive(Clone, Copy, Debug, Default)]
    pub struct Bus1Recv {
        pub vecs: u64,
        pub n_vecs: u64,
        pub handles: u64,
        pub n_handles: u64,
        pub n_bytes: u64,
        pub r#type: u64,
        pub id: u64,
        pub flags: u64,
        pub fds: u64,
        pub n_fds: u64,
        pub uid: u32,
        pub gid: u32,
        pub pid: i32,
        pub tid: i32,
    }

    fn ret(value: usize) -> Result<usize, Errno> {
        syscalls::Errno::from_ret(value).map_err(|e| Errno::from_raw(e.into_raw()))
    }

    /// A raw system call with up to six arguments.
    ///
    /// # Safety
    ///
    /// Pointer arguments must be valid for what the call does with them.
    pub unsafe fn call(nr: usize, args: [usize; 6]) -> Result<usize, Errno> {
        // SAFETY: passed on from the caller.
        ret(unsafe {
            syscalls::raw::syscall6(nr, args[0], args[1], args[2], args[3], args[4], args[5])
        })
    }

    /// `int bus1_open(unsigned int flags)`.
    ///
    /// Returns a new file descriptor that the caller owns.
    pub fn bus1_open(flags: u32) -> Result<i32, Errno> {
        // SAFETY: bus1_open takes no pointers; any flag value is safe to pass.
        let fd = ret(unsafe { syscalls::raw::syscall1(nr::BUS1_OPEN, flags as usize) })?;
        Ok(fd as i32)
    }
}

/// A received message (what `bus1_recv()` reported).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Received {
    /// `BUS1_MSG_*`.
    pub kind: u64,
    /// The receiver's id the message arrived on.
    pub id: u64,
    /// Payload bytes (written to the buffer).
    pub n_bytes: usize,
    /// Handles (written to the handle array).
    pub n_handles: usize,
    /// `BUS1_RECV_FLAG_*`.
    pub flags: u64,
    /// File descriptors (written to the fd array).
    pub n_fds: usize,
    /// The sender's credentials, as the receiver sees them.
    pub uid: u32,
    pub gid: u32,
    pub pid: i32,
    pub tid: i32,
}

impl Received {
    /// Whether the next entry belongs to the same transaction.
    pub fn continues(&self) -> bool {
        self.flags & sys::BUS1_RECV_FLAG_CONTINUE != 0
    }
}

/// Flags for [`Peer::open`].
pub use sys::{BUS1_OPEN_CLOEXEC, BUS1_OPEN_NONBLOCK};

/// A bus1 peer: an endpoint with one message queue, owned through its file
/// descriptor.  Dropping the last file descriptor frees the peer.
#[derive(Debug)]
pub struct Peer {
    fd: OwnedFd,
}

impl Peer {
    /// Creates a new peer (`bus1_open(2)`).
    pub fn open(flags: u32) -> Result<Self, Errno> {
        let fd = sys::bus1_open(flags)?;
        // SAFETY: bus1_open returned a new file descriptor nobody else owns.
        Ok(Self {
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    /// The peer's system-wide unique id, from `/proc/self/fdinfo`.
    pub fn id(&self) -> std::io::Result<u64> {
        fdinfo_field(self.fd.as_fd(), "bus1-peer-id")?
            .parse()
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
    }

    fn fd(&self) -> usize {
        self.fd.as_raw_fd() as usize
    }

    /// `bus1_node_create()`: a new node owned by this peer.
    pub fn create_node(&self) -> Result<u64, Errno> {
        let mut id = 0u64;
        // SAFETY: `id` is a valid u64 to write to.
        unsafe {
            sys::call(
                sys::nr::BUS1_NODE_CREATE,
                [self.fd(), &mut id as *mut u64 as usize, 0, 0, 0, 0],
            )
        }?;
        Ok(id)
    }

    /// `bus1_handle_transfer()`: gives `dst` (this peer for `None`) a
    /// handle to the node `id` names here; returns `dst`'s id for it.
    pub fn transfer(&self, id: u64, dst: Option<&Peer>) -> Result<u64, Errno> {
        let dst_fd = dst.map_or(-1isize as usize, |p| p.fd());
        let mut dst_id = 0u64;
        // SAFETY: `id` is a valid u64 to read, `dst_id` one to write to.
        unsafe {
            sys::call(
                sys::nr::BUS1_HANDLE_TRANSFER,
                [
                    self.fd(),
                    &id as *const u64 as usize,
                    dst_fd,
                    &mut dst_id as *mut u64 as usize,
                    0,
                    0,
                ],
            )
        }?;
        Ok(dst_id)
    }

    /// `bus1_handle_release()`.
    pub fn release(&self, id: u64) -> Result<(), Errno> {
        // SAFETY: `id` is a valid u64 to read.
        unsafe {
            sys::call(
                sys::nr::BUS1_HANDLE_RELEASE,
                [self.fd(), &id as *const u64 as usize, 0, 0, 0, 0],
            )
        }?;
        Ok(())
    }

    /// `bus1_peer_reset()`.
    pub fn reset(&self) -> Result<(), Errno> {
        // SAFETY: bus1_peer_reset takes no pointers.
        unsafe { sys::call(sys::nr::BUS1_PEER_RESET, [self.fd(), 0, 0, 0, 0, 0]) }?;
        Ok(())
    }

    /// `bus1_nodes_destroy()`.
    pub fn destroy(&self, ids: &[u64]) -> Result<(), Errno> {
        // SAFETY: `ids` is valid for `ids.len()` reads.
        unsafe {
            sys::call(
                sys::nr::BUS1_NODES_DESTROY,
                [self.fd(), ids.as_ptr() as usize, ids.len(), 0, 0, 0],
            )
        }?;
        Ok(())
    }

    /// `bus1_send()` of `parts` (the payload, concatenated) and `handles`
    /// to the node or handle `dst`.
    pub fn send(&self, dst: u64, parts: &[&[u8]], handles: &[u64]) -> Result<(), Errno> {
        self.multicast(&[dst], parts, handles, 0, None).map(drop)
    }

    /// `bus1_send()` to every id in `dsts` in one transaction, with `flags`
    /// (`BUS1_SEND_CONTINUE`); `errors`, if given, receives one errno per
    /// destination (0 for delivered).  Returns the number of destinations
    /// the message was queued on.
    pub fn multicast(
        &self,
        dsts: &[u64],
        parts: &[&[u8]],
        handles: &[u64],
        flags: u32,
        errors: Option<&mut [i32]>,
    ) -> Result<usize, Errno> {
        self.multicast_with_fds(dsts, parts, handles, &[], flags, errors)
    }

    /// `bus1_send()` of `parts`, `handles` and the file descriptors `fds`
    /// to `dst`.
    pub fn send_with_fds(
        &self,
        dst: u64,
        parts: &[&[u8]],
        handles: &[u64],
        fds: &[RawFd],
    ) -> Result<(), Errno> {
        self.multicast_with_fds(&[dst], parts, handles, fds, 0, None)
            .map(drop)
    }

    /// `multicast()` with file descriptors.
    pub fn multicast_with_fds(
        &self,
        dsts: &[u64],
        parts: &[&[u8]],
        handles: &[u64],
        fds: &[RawFd],
        flags: u32,
        errors: Option<&mut [i32]>,
    ) -> Result<usize, Errno> {
        let vecs: Vec<sys::Bus1Vec> = parts
            .iter()
            .map(|p| sys::Bus1Vec {
                base: p.as_ptr() as u64,
                len: p.len() as u64,
            })
            .collect();
        let errors = match errors {
            Some(errors) => {
                assert!(errors.len() >= dsts.len(), "one errno per destination");
                errors.as_mut_ptr() as u64
            }
            None => 0,
        };
        let msg = sys::Bus1Message {
            vecs: vecs.as_ptr() as u64,
            n_vecs: vecs.len() as u64,
            handles: handles.as_ptr() as u64,
            n_handles: handles.len() as u64,
            errors,
            fds: fds.as_ptr() as u64,
            n_fds: fds.len() as u64,
        };
        // The flags that show a seccomp filter what the message carries.
        let mut flags = flags;
        if !handles.is_empty() {
            flags |= sys::BUS1_SEND_HANDLES;
        }
        if !fds.is_empty() {
            flags |= sys::BUS1_SEND_FDS;
        }
        // SAFETY: every pointer is valid for the lengths given with it.
        unsafe { self.send_raw(dsts, &msg, std::mem::size_of_val(&msg), flags) }
    }

    /// `bus1_send()` with a caller-built message structure.
    ///
    /// # Safety
    ///
    /// The pointers in `msg` (and `msg` itself, for `size` bytes) must be
    /// valid for what the kernel reads.
    pub unsafe fn send_raw(
        &self,
        dsts: &[u64],
        msg: *const sys::Bus1Message,
        size: usize,
        flags: u32,
    ) -> Result<usize, Errno> {
        // SAFETY: passed on from the caller.
        unsafe {
            sys::call(
                sys::nr::BUS1_SEND,
                [
                    self.fd(),
                    dsts.as_ptr() as usize,
                    dsts.len(),
                    msg as usize,
                    size,
                    flags as usize,
                ],
            )
        }
    }

    /// `bus1_recv()` into `buf` and `handles`.  On `EMSGSIZE` the sizes
    /// needed are in the returned error's companion `needed`.
    pub fn recv(&self, buf: &mut [u8], handles: &mut [u64]) -> Result<Received, (Errno, Received)> {
        self.recv_with_fds(buf, handles, &mut [])
    }

    /// `bus1_recv()` into `buf`, `handles` and `fds` (the new descriptors
    /// of the message, installed with `O_CLOEXEC`; the caller owns them).
    pub fn recv_with_fds(
        &self,
        buf: &mut [u8],
        handles: &mut [u64],
        fds: &mut [RawFd],
    ) -> Result<Received, (Errno, Received)> {
        let vec = sys::Bus1Vec {
            base: buf.as_mut_ptr() as u64,
            len: buf.len() as u64,
        };
        let mut args = sys::Bus1Recv {
            vecs: &vec as *const _ as u64,
            n_vecs: 1,
            handles: handles.as_mut_ptr() as u64,
            n_handles: handles.len() as u64,
            fds: fds.as_mut_ptr() as u64,
            n_fds: fds.len() as u64,
            ..Default::default()
        };
        // SAFETY: `args` and the buffers it points to are valid and writable.
        let res = unsafe { self.recv_raw(&mut args, std::mem::size_of_val(&args)) };
        let received = Received {
            kind: args.r#type,
            id: args.id,
            n_bytes: args.n_bytes as usize,
            n_handles: args.n_handles as usize,
            flags: args.flags,
            n_fds: args.n_fds as usize,
            uid: args.uid,
            gid: args.gid,
            pid: args.pid,
            tid: args.tid,
        };
        match res {
            Ok(()) => Ok(received),
            Err(e) => Err((e, received)),
        }
    }

    /// `bus1_recv()` with a caller-built argument structure.
    ///
    /// # Safety
    ///
    /// `args` (for `size` bytes) and the buffers it points to must be valid.
    pub unsafe fn recv_raw(&self, args: *mut sys::Bus1Recv, size: usize) -> Result<(), Errno> {
        // SAFETY: passed on from the caller.
        unsafe {
            sys::call(
                sys::nr::BUS1_RECV,
                [self.fd(), args as usize, size, 0, 0, 0],
            )
        }?;
        Ok(())
    }

    /// Gives up the peer object, returning its file descriptor.
    pub fn into_fd(self) -> OwnedFd {
        self.fd
    }
}

impl FromRawFd for Peer {
    /// # Safety
    ///
    /// `fd` must be an open bus1 peer descriptor that the new object owns.
    unsafe fn from_raw_fd(fd: RawFd) -> Self {
        // SAFETY: passed on from the caller.
        Self {
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
        }
    }
}

impl AsFd for Peer {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for Peer {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// Reads the value of `name:` from `/proc/self/fdinfo/<fd>`.
pub fn fdinfo_field(fd: BorrowedFd<'_>, name: &str) -> std::io::Result<String> {
    let info = fs::read_to_string(format!("/proc/self/fdinfo/{}", fd.as_raw_fd()))?;
    info.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
        .map(|value| value.trim().to_owned())
        .ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::NotFound, format!("no {name} in fdinfo"))
        })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    /// Every `#define BUS1_*` of the uapi header, evaluated.
    fn uapi_constants() -> BTreeMap<String, u64> {
        let header = include_str!("../../../uapi/bus1.h");
        let mut map = BTreeMap::new();
        for line in header.lines() {
            let mut words = line.split_whitespace();
            let (Some("#define"), Some(name)) = (words.next(), words.next()) else {
                continue;
            };
            if !name.starts_with("BUS1_") {
                continue;
            }
            let expr: String = words.take_while(|w| !w.starts_with("/*")).collect();
            map.insert(name.to_owned(), eval(&expr));
        }
        map
    }

    /// Evaluates the forms the header uses: `N`, `NU`, `(1U << N)`.
    fn eval(expr: &str) -> u64 {
        let expr = expr.trim_matches(|c| c == '(' || c == ')');
        let num = |s: &str| -> u64 {
            let s = s.trim().trim_end_matches(['U', 'L']);
            match s.strip_prefix("0x") {
                Some(hex) => u64::from_str_radix(hex, 16).unwrap(),
                None => s.parse().unwrap(),
            }
        };
        match expr.split_once("<<") {
            Some((a, b)) => num(a) << num(b),
            None => num(expr),
        }
    }

    #[test]
    fn constants_match_uapi_header() {
        let uapi = uapi_constants();
        use super::sys::*;
        let ours: BTreeMap<String, u64> = [
            ("BUS1_OPEN_CLOEXEC", BUS1_OPEN_CLOEXEC as u64),
            ("BUS1_OPEN_NONBLOCK", BUS1_OPEN_NONBLOCK as u64),
            ("BUS1_ID_INVALID", BUS1_ID_INVALID),
            ("BUS1_NODES_DESTROY_MAX", BUS1_NODES_DESTROY_MAX as u64),
            ("BUS1_DESTINATIONS_MAX", BUS1_DESTINATIONS_MAX as u64),
            ("BUS1_VECS_MAX", BUS1_VECS_MAX as u64),
            ("BUS1_HANDLES_MAX", BUS1_HANDLES_MAX as u64),
            ("BUS1_PAYLOAD_MAX", BUS1_PAYLOAD_MAX as u64),
            ("BUS1_FDS_MAX", BUS1_FDS_MAX as u64),
            ("BUS1_MSG_DATA", BUS1_MSG_DATA),
            ("BUS1_MSG_NODE_DESTROY", BUS1_MSG_NODE_DESTROY),
            ("BUS1_MSG_NODE_RELEASE", BUS1_MSG_NODE_RELEASE),
            ("BUS1_MESSAGE_SIZE_VER0", BUS1_MESSAGE_SIZE_VER0 as u64),
            ("BUS1_MESSAGE_SIZE_VER1", BUS1_MESSAGE_SIZE_VER1 as u64),
            ("BUS1_RECV_SIZE_VER0", BUS1_RECV_SIZE_VER0 as u64),
            ("BUS1_RECV_SIZE_VER1", BUS1_RECV_SIZE_VER1 as u64),
            ("BUS1_SEND_CONTINUE", BUS1_SEND_CONTINUE as u64),
            ("BUS1_SEND_HANDLES", BUS1_SEND_HANDLES as u64),
            ("BUS1_SEND_FDS", BUS1_SEND_FDS as u64),
            ("BUS1_RECV_FLAG_CONTINUE", BUS1_RECV_FLAG_CONTINUE),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        assert_eq!(uapi, ours, "crate constants differ from uapi/bus1.h");
    }

    #[test]
    fn struct_sizes_match_uapi() {
        use super::sys::*;
        assert_eq!(std::mem::size_of::<Bus1Message>(), BUS1_MESSAGE_SIZE_VER1);
        assert_eq!(std::mem::size_of::<Bus1Recv>(), BUS1_RECV_SIZE_VER1);
        assert_eq!(
            std::mem::offset_of!(Bus1Message, fds),
            BUS1_MESSAGE_SIZE_VER0
        );
        assert_eq!(std::mem::offset_of!(Bus1Recv, fds), BUS1_RECV_SIZE_VER0);
        assert_eq!(std::mem::size_of::<Bus1Vec>(), 16);
    }

    #[test]
    fn syscall_numbers_match_patch_series() {
        use super::sys::nr::*;
        let script = include_str!("../../../scripts/gen-patches.sh");
        let line = script
            .lines()
            .find(|l| l.starts_with("NR_BUS1_OPEN="))
            .expect("NR_BUS1_OPEN in gen-patches.sh");
        let first: usize = line["NR_BUS1_OPEN=".len()..].parse().unwrap();
        // The order of SYSCALLS=(...) in gen-patches.sh.
        let list = script
            .split("SYSCALLS=(")
            .nth(1)
            .unwrap()
            .split(')')
            .next()
            .unwrap();
        let names: Vec<&str> = list.split_whitespace().collect();
        let ours = [
            ("bus1_open", BUS1_OPEN),
            ("bus1_node_create", BUS1_NODE_CREATE),
            ("bus1_handle_transfer", BUS1_HANDLE_TRANSFER),
            ("bus1_handle_release", BUS1_HANDLE_RELEASE),
            ("bus1_nodes_destroy", BUS1_NODES_DESTROY),
            ("bus1_send", BUS1_SEND),
            ("bus1_recv", BUS1_RECV),
            ("bus1_peer_reset", BUS1_PEER_RESET),
        ];
        assert_eq!(names.len(), ours.len());
        for (i, name) in names.iter().enumerate() {
            let (n, nr) = ours.iter().find(|(n, _)| n == name).expect(name);
            assert_eq!(*nr, first + i, "{n}");
        }
    }
}
