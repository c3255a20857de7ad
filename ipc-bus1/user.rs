// SPDX-License-Identifier: GPL-2.0

//! User memory.
//!
//! Helpers for the argument conventions of the bus1 system calls: arrays of
//! `__u64`, payload vectors (`struct bus1_vec`), and extensible structures
//! read with `copy_struct_from_user()` semantics.  The structures consist
//! of `__u64` words only, so they are handled as word arrays.

use kernel::{
    prelude::*,
    uaccess::{UserPtr, UserSlice},
    uapi,
};

const WORD: usize = size_of::<u64>();

/// Largest argument structure accepted from a newer user space.
const STRUCT_SIZE_MAX: usize = 4096;

fn user(addr: u64, len: usize) -> UserSlice {
    UserSlice::new(UserPtr::from_addr(addr as usize), len)
}

/// Reads an extensible structure of `N` words: `size` below `min` is
/// `EINVAL`; a shorter structure reads as zero-extended; a longer one must
/// have only zero bytes past what the kernel knows, else `E2BIG`.
pub(crate) fn read_struct<const N: usize>(addr: u64, size: usize, min: usize) -> Result<[u64; N]> {
    if size < min {
        return Err(EINVAL);
    }
    if size > STRUCT_SIZE_MAX {
        return Err(E2BIG);
    }
    let mut words = [0u64; N];
    let known = size.min(N * WORD);
    let mut reader = user(addr, size).reader();
    reader.read_slice(&mut words.as_mut_bytes()[..known])?;
    let mut tail = [0u8; 64];
    while !reader.is_empty() {
        let n = reader.len().min(tail.len());
        reader.read_slice(&mut tail[..n])?;
        if tail[..n].iter().any(|&b| b != 0) {
            return Err(E2BIG);
        }
    }
    Ok(words)
}

/// Writes the words `first..` of a structure back, as far as the caller's
/// `size` reaches.
pub(crate) fn write_struct_words(addr: u64, size: usize, first: usize, words: &[u64]) -> Result {
    let start = first * WORD;
    let end = (start + words.len() * WORD).min(size);
    if end <= start {
        return Ok(());
    }
    let mut writer = user(addr + start as u64, end - start).writer();
    writer.write_slice(&words.as_bytes()[..end - start])
}

pub(crate) fn write_u64(addr: u64, value: u64) -> Result {
    user(addr, WORD).writer().write(&value)
}

/// Reads `n` words.
/// Reads one `__u64`.
pub(crate) fn read_u64(addr: u64) -> Result<u64> {
    let mut value = 0u64;
    user(addr, WORD).reader().read_slice(value.as_mut_bytes())?;
    Ok(value)
}

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

/// Reads `n` `struct bus1_vec` (base, length) and checks their total.
pub(crate) fn read_vecs(addr: u64, n: u64) -> Result<(KVec<u64>, usize)> {
    if n > u64::from(uapi::BUS1_VECS_MAX) {
        return Err(EINVAL);
    }
    let words = read_u64s(addr, n as usize * 2)?;
    let mut total: u64 = 0;
    for len in words.iter().skip(1).step_by(2) {
        total = total.checked_add(*len).ok_or(EINVAL)?;
    }
    Ok((words, usize::try_from(total).map_err(|_| EINVAL)?))
}

/// Gathers the payload the vectors describe.
pub(crate) fn gather(addr: u64, n: u64) -> Result<KVVec<u8>> {
    let (vecs, total) = read_vecs(addr, n)?;
    if total > uapi::BUS1_PAYLOAD_MAX as usize {
        return Err(EMSGSIZE);
    }
    let mut payload = KVVec::with_capacity(total, GFP_KERNEL_ACCOUNT)?;
    for vec in vecs.chunks_exact(2) {
        user(vec[0], vec[1] as usize).read_all(&mut payload, GFP_KERNEL_ACCOUNT)?;
    }
    Ok(payload)
}

/// Scatters `data` over vectors (already read, with room for it).
pub(crate) fn scatter(vecs: &[u64], mut data: &[u8]) -> Result {
    for vec in vecs.chunks_exact(2) {
        if data.is_empty() {
            break;
        }
        let n = (vec[1] as usize).min(data.len());
        user(vec[0], n).writer().write_slice(&data[..n])?;
        data = &data[n..];
    }
    Ok(())
}
