// SPDX-License-Identifier: GPL-2.0
//! A minimal Binder client and server, the third baseline of the round-trip
//! benchmark: the server is the context manager (handle 0) of a private
//! binderfs instance and answers every two-way transaction with a reply
//! carrying the same payload.  Each side does one BINDER_WRITE_READ per
//! message where it can (the pending command is written together with the
//! read of the next one), as libbinder does.

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::path::Path;

const fn ioc(dir: u64, ty: u8, nr: u8, size: usize) -> u64 {
    (dir << 30) | ((size as u64) << 16) | ((ty as u64) << 8) | nr as u64
}
const WRITE: u64 = 1;
const READ: u64 = 2;
const TXN_SIZE: usize = std::mem::size_of::<Txn>();

const BINDER_WRITE_READ: u64 = ioc(READ | WRITE, b'b', 1, std::mem::size_of::<WriteRead>());
const BINDER_SET_CONTEXT_MGR: u64 = ioc(WRITE, b'b', 7, 4);
pub const BC_TRANSACTION: u32 = ioc(WRITE, b'c', 0, TXN_SIZE) as u32;
pub const BC_REPLY: u32 = ioc(WRITE, b'c', 1, TXN_SIZE) as u32;
const BC_FREE_BUFFER: u32 = ioc(WRITE, b'c', 3, 8) as u32;
const BC_ENTER_LOOPER: u32 = ioc(0, b'c', 12, 0) as u32;
const BR_ERROR: u32 = ioc(READ, b'r', 0, 4) as u32;
pub const BR_TRANSACTION: u32 = ioc(READ, b'r', 2, TXN_SIZE) as u32;
pub const BR_REPLY: u32 = ioc(READ, b'r', 3, TXN_SIZE) as u32;
const BR_TRANSACTION_COMPLETE: u32 = ioc(0, b'r', 6, 0) as u32;
const BR_NOOP: u32 = ioc(0, b'r', 12, 0) as u32;
const BR_SPAWN_LOOPER: u32 = ioc(0, b'r', 13, 0) as u32;

/// `struct binder_transaction_data` (64-bit layout).
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct Txn {
    target: u64,
    cookie: u64,
    code: u32,
    flags: u32,
    sender_pid: i32,
    sender_euid: u32,
    data_size: u64,
    offsets_size: u64,
    buffer: u64,
    offsets: u64,
}

/// `struct binder_write_read`.
#[repr(C)]
#[derive(Default)]
struct WriteRead {
    write_size: u64,
    write_consumed: u64,
    write_buffer: u64,
    read_size: u64,
    read_consumed: u64,
    read_buffer: u64,
}

const MAP_SIZE: usize = 1 << 20;

/// One process's connection to a binder device.
pub struct Binder {
    file: File,
    /// Commands not yet written.
    out: Vec<u8>,
    /// Payload of the pending transaction or reply.
    payload: Vec<u8>,
    read: Vec<u8>,
}

fn push_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_ne_bytes());
}

impl Binder {
    /// Mounts a private binderfs instance at `dir` (once per boot).
    pub fn mount(dir: &Path) {
        std::fs::create_dir_all(dir).unwrap();
        let device = dir.join("binder");
        if !device.exists() {
            nix::mount::mount(
                Some("binder"),
                dir,
                Some("binder"),
                nix::mount::MsFlags::empty(),
                None::<&str>,
            )
            .expect("mount binderfs (CONFIG_ANDROID_BINDER_IPC_RUST)");
        }
    }

    pub fn open(device: &Path) -> Self {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(device)
            .unwrap();
        // SAFETY: a fresh private read-only mapping of the binder device;
        // the kernel places received buffers there.  It stays mapped until
        // the process exits.
        let map = unsafe {
            nix::libc::mmap(
                std::ptr::null_mut(),
                MAP_SIZE,
                nix::libc::PROT_READ,
                nix::libc::MAP_PRIVATE,
                file.as_raw_fd(),
                0,
            )
        };
        assert_ne!(
            map,
            nix::libc::MAP_FAILED,
            "mmap of the binder device: {}",
            std::io::Error::last_os_error()
        );
        Self {
            file,
            out: Vec::with_capacity(256),
            payload: vec![],
            read: vec![0; 256],
        }
    }

    /// Becomes the context manager and a looper thread.
    pub fn serve(&mut self) {
        let zero: i32 = 0;
        // SAFETY: BINDER_SET_CONTEXT_MGR reads one __s32.
        let r = unsafe { nix::libc::ioctl(self.file.as_raw_fd(), BINDER_SET_CONTEXT_MGR, &zero) };
        assert_eq!(r, 0, "BINDER_SET_CONTEXT_MGR");
        push_u32(&mut self.out, BC_ENTER_LOOPER);
    }

    /// Queues a transaction to the context manager (`BC_TRANSACTION`) or a
    /// reply (`BC_REPLY`) carrying `payload`; written with the next read.
    pub fn send(&mut self, cmd: u32, payload: &[u8]) {
        self.payload.clear();
        self.payload.extend_from_slice(payload);
        let txn = Txn {
            data_size: payload.len() as u64,
            buffer: self.payload.as_ptr() as u64,
            offsets: self.payload.as_ptr() as u64,
            ..Default::default()
        };
        push_u32(&mut self.out, cmd);
        // SAFETY: `Txn` is plain old data.
        let bytes =
            unsafe { std::slice::from_raw_parts((&txn as *const Txn).cast::<u8>(), TXN_SIZE) };
        self.out.extend_from_slice(bytes);
    }

    fn write_read(&mut self, read: bool) -> usize {
        let mut wr = WriteRead {
            write_size: self.out.len() as u64,
            write_buffer: self.out.as_ptr() as u64,
            read_size: if read { self.read.len() as u64 } else { 0 },
            read_buffer: self.read.as_mut_ptr() as u64,
            ..Default::default()
        };
        // SAFETY: the write and read buffers are valid for their sizes, and
        // the payload a queued command points to is `self.payload`.
        let r = unsafe { nix::libc::ioctl(self.file.as_raw_fd(), BINDER_WRITE_READ, &mut wr) };
        assert_eq!(
            r,
            0,
            "BINDER_WRITE_READ: {}",
            std::io::Error::last_os_error()
        );
        assert_eq!(wr.write_consumed, wr.write_size);
        self.out.clear();
        wr.read_consumed as usize
    }

    /// Writes what is queued without reading.
    pub fn flush(&mut self) {
        if !self.out.is_empty() {
            self.write_read(false);
        }
    }

    /// Writes what is queued and waits for `want` (`BR_TRANSACTION` or
    /// `BR_REPLY`); copies its payload into `buf` and returns its length.
    pub fn recv(&mut self, want: u32, buf: &mut [u8]) -> usize {
        loop {
            let n = self.write_read(true);
            let mut at = 0;
            while at < n {
                let cmd = u32::from_ne_bytes(self.read[at..at + 4].try_into().unwrap());
                at += 4;
                match cmd {
                    BR_NOOP | BR_TRANSACTION_COMPLETE | BR_SPAWN_LOOPER => {}
                    BR_ERROR => panic!("binder BR_ERROR"),
                    c if c == want => {
                        // SAFETY: the kernel wrote a whole `Txn` after the
                        // command; read unaligned.
                        let txn: Txn =
                            unsafe { std::ptr::read_unaligned(self.read[at..].as_ptr().cast()) };
                        let len = txn.data_size as usize;
                        // SAFETY: the buffer lies in our binder mapping and
                        // holds `len` bytes until we free it.
                        let data =
                            unsafe { std::slice::from_raw_parts(txn.buffer as *const u8, len) };
                        buf[..len].copy_from_slice(data);
                        push_u32(&mut self.out, BC_FREE_BUFFER);
                        self.out.extend_from_slice(&txn.buffer.to_ne_bytes());
                        assert_eq!(at + TXN_SIZE, n, "one transaction per read");
                        return len;
                    }
                    other => panic!("unexpected binder return {other:#x}"),
                }
            }
        }
    }
}
