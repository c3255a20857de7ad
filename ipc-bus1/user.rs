// SPDX-License-Identifier: GPL-2.0

//! User memory.
//!
//! Helpers for the argument conventions of the bus1 system calls: arrays of
//! `__u64` ids and `int`s, payload vectors (`struct bus1_vec`), and the
//! extensible argument structures, read with `copy_struct_from_user()`
//! semantics into the uapi types of `include/uapi/linux/bus1.h`.

use kernel::{
    prelude::*,
    transmute,
    uaccess::{UserPtr, UserSlice},
    uapi,
};

const WORD: usize = size_of::<u64>();

/// Largest argument structure accepted from a newer user space.
const STRUCT_SIZE_MAX: usize = 4096;

fn user(addr: u64, len: usize) -> UserSlice {
    UserSlice::new(UserPtr::from_addr(addr as usize), len)
}

/// Declares a wrapper of a uapi structure that can be read from and written
/// to user space as bytes.
macro_rules! uapi_struct {
    ($(#[$doc:meta])* $name:ident, $uapi:ty) => {
        $(#[$doc])*
        #[repr(transparent)]
        #[derive(Clone, Copy, Default)]
        pub(crate) struct $name(pub(crate) $uapi);

        // SAFETY: The uapi structure has only `__u64`, `__u32` and `__s32`
        // fields, naturally aligned and without padding (the header says so
        // and the user-space crate checks the sizes), so every bit pattern
        // is a valid value.
        unsafe impl transmute::FromBytes for $name {}

        // SAFETY: As above: no padding, so every byte is initialized.
        unsafe impl transmute::AsBytes for $name {}
    };
}

uapi_struct!(
    /// `struct bus1_message`, what `bus1_send(2)` reads.
    MessageArgs,
    uapi::bus1_message
);
uapi_struct!(
    /// `struct bus1_recv`, what `bus1_recv(2)` reads and writes back.
    RecvArgs,
    uapi::bus1_recv
);
uapi_struct!(
    /// `struct bus1_vec`, one piece of a payload.
    PayloadVec,
    uapi::bus1_vec
);

/// Reads an extensible structure: `size` below `min` is `EINVAL`; a shorter
/// structure reads as zero-extended; a longer one must have only zero bytes
/// past what the kernel knows, else `E2BIG`.
pub(crate) fn read_struct<T: transmute::FromBytes + transmute::AsBytes + Default>(
    addr: u64,
    size: usize,
    min: usize,
) -> Result<T> {
    if size < min {
        return Err(EINVAL);
    }
    if size > STRUCT_SIZE_MAX {
        return Err(E2BIG);
    }
    let mut value = T::default();
    let bytes = transmute::AsBytes::as_bytes_mut(&mut value);
    let known = size.min(bytes.len());
    let mut reader = user(addr, size).reader();
    reader.read_slice(&mut bytes[..known])?;
    let mut tail = [0u8; 64];
    while !reader.is_empty() {
        let n = reader.len().min(tail.len());
        reader.read_slice(&mut tail[..n])?;
        if tail[..n].iter().any(|&b| b != 0) {
            return Err(E2BIG);
        }
    }
    Ok(value)
}

/// Writes a structure back, as far as the caller's `size` reaches.
pub(crate) fn write_struct<T: transmute::AsBytes>(addr: u64, size: usize, value: &T) -> Result {
    let bytes = transmute::AsBytes::as_bytes(value);
    let n = size.min(bytes.len());
    user(addr, n).writer().write_slice(&bytes[..n])
}

pub(crate) fn write_u64(addr: u64, value: u64) -> Result {
    user(addr, WORD).writer().write(&value)
}

/// Reads one `__u64`.
pub(crate) fn read_u64(addr: u64) -> Result<u64> {
    let mut value = 0u64;
    user(addr, WORD).reader().read_slice(value.as_mut_bytes())?;
    Ok(value)
}

/// Reads `n` `__u64`s.
pub(crate) fn read_u64s(addr: u64, n: usize) -> Result<KVec<u64>> {
    let mut words = KVec::new();
    words.resize(n, 0, GFP_KERNEL)?;
    user(addr, n * WORD)
        .reader()
        .read_slice(words.as_mut_bytes())?;
    Ok(words)
}

pub(crate) fn write_u64s(addr: u64, words: &[u64]) -> Result {
    user(addr, words.len() * WORD)
        .writer()
        .write_slice(words.as_bytes())
}

/// Reads `n` `int`s (file descriptors).
pub(crate) fn read_i32s(addr: u64, n: usize) -> Result<KVec<i32>> {
    let mut values = KVec::new();
    values.resize(n, 0, GFP_KERNEL)?;
    user(addr, size_of_val(&values[..]))
        .reader()
        .read_slice(values.as_mut_bytes())?;
    Ok(values)
}

/// Writes `values` (errnos, file descriptors).
pub(crate) fn write_i32s(addr: u64, values: &[i32]) -> Result {
    user(addr, size_of_val(values))
        .writer()
        .write_slice(values.as_bytes())
}

/// Reads `n` `struct bus1_vec` and checks their total length.
pub(crate) fn read_vecs(addr: u64, n: u64) -> Result<(KVec<PayloadVec>, usize)> {
    if n > u64::from(uapi::BUS1_VECS_MAX) {
        return Err(EINVAL);
    }
    let mut vecs = KVec::new();
    vecs.resize(n as usize, PayloadVec::default(), GFP_KERNEL)?;
    let mut reader = user(addr, n as usize * size_of::<PayloadVec>()).reader();
    let mut total: u64 = 0;
    for vec in vecs.iter_mut() {
        *vec = reader.read()?;
        total = total.checked_add(vec.0.len).ok_or(EINVAL)?;
    }
    Ok((vecs, usize::try_from(total).map_err(|_| EINVAL)?))
}

/// Gathers the payload the vectors describe.
pub(crate) fn gather(addr: u64, n: u64) -> Result<KVVec<u8>> {
    let (vecs, total) = read_vecs(addr, n)?;
    if total > uapi::BUS1_PAYLOAD_MAX as usize {
        return Err(EMSGSIZE);
    }
    let mut payload = KVVec::with_capacity(total, GFP_KERNEL_ACCOUNT)?;
    for vec in vecs.iter() {
        user(vec.0.base, vec.0.len as usize).read_all(&mut payload, GFP_KERNEL_ACCOUNT)?;
    }
    Ok(payload)
}

/// Scatters `data` over vectors (already read, with room for it).
pub(crate) fn scatter(vecs: &[PayloadVec], mut data: &[u8]) -> Result {
    for vec in vecs {
        if data.is_empty() {
            break;
        }
        let n = (vec.0.len as usize).min(data.len());
        user(vec.0.base, n).writer().write_slice(&data[..n])?;
        data = &data[n..];
    }
    Ok(())
}
