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
    }

    fn ret(value: usize) -> Result<usize, Errno> {
        syscalls::Errno::from_ret(value).map_err(|e| Errno::from_raw(e.into_raw()))
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

    /// Gives up the peer object, returning its file descriptor.
    pub fn into_fd(self) -> OwnedFd {
        self.fd
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
            let expr: String = words.collect::<String>();
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
        let ours: BTreeMap<String, u64> = [
            ("BUS1_OPEN_CLOEXEC", super::sys::BUS1_OPEN_CLOEXEC as u64),
            ("BUS1_OPEN_NONBLOCK", super::sys::BUS1_OPEN_NONBLOCK as u64),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        assert_eq!(uapi, ours, "crate constants differ from uapi/bus1.h");
    }

    #[test]
    fn syscall_numbers_match_patch_series() {
        let script = include_str!("../../../scripts/gen-patches.sh");
        let line = script
            .lines()
            .find(|l| l.starts_with("NR_BUS1_OPEN="))
            .expect("NR_BUS1_OPEN in gen-patches.sh");
        let nr: usize = line["NR_BUS1_OPEN=".len()..].parse().unwrap();
        assert_eq!(nr, super::sys::nr::BUS1_OPEN);
    }
}
