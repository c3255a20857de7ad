// SPDX-License-Identifier: GPL-2.0
//! Which result every system call gave how often: the table the fuzzer
//! prints, with every errno each man page documents.

use std::collections::BTreeMap;

use bus1::Errno;

/// The system calls, in syscall-number order.
pub const CALLS: [&str; 8] = [
    "bus1_open",
    "bus1_node_create",
    "bus1_handle_transfer",
    "bus1_handle_release",
    "bus1_nodes_destroy",
    "bus1_send",
    "bus1_recv",
    "bus1_peer_reset",
];

/// The errnos each call documents (the ERRORS sections of the man pages).
pub fn documented(call: usize) -> &'static [Errno] {
    use Errno::*;
    match call {
        0 => &[EINVAL, EMFILE, ENFILE, ENOMEM, ENOSYS],
        1 => &[EBADF, EDQUOT, EFAULT, EINVAL, ENOMEM],
        2 => &[EBADF, EDQUOT, EFAULT, EINVAL, EHOSTUNREACH, ENXIO, ENOMEM],
        3 => &[EBADF, EFAULT, EINVAL, ENXIO, EPERM],
        4 => &[EBADF, EFAULT, EINVAL, ENOTUNIQ, ENXIO, EPERM],
        5 => &[
            EBADF,
            EFAULT,
            EINVAL,
            E2BIG,
            EHOSTUNREACH,
            EDQUOT,
            EOPNOTSUPP,
            EMSGSIZE,
            ENOTUNIQ,
            ENXIO,
            ENOMEM,
        ],
        6 => &[
            EBADF, EFAULT, EINVAL, E2BIG, EAGAIN, EINTR, EMSGSIZE, EMFILE,
        ],
        7 => &[EBADF, EINVAL],
        _ => &[],
    }
}

/// Result counts per call: errno 0 stands for success.
#[derive(Clone, Debug, Default)]
pub struct Coverage {
    counts: BTreeMap<(usize, i32), u64>,
}

impl Coverage {
    /// Counts one result of call number `call` (an index into `CALLS`).
    pub fn record<T>(&mut self, call: usize, result: &Result<T, Errno>) {
        let errno = match result {
            Ok(_) => 0,
            Err(e) => *e as i32,
        };
        *self.counts.entry((call, errno)).or_default() += 1;
    }

    pub fn merge(&mut self, other: &Coverage) {
        for (k, v) in &other.counts {
            *self.counts.entry(*k).or_default() += v;
        }
    }

    /// One "call errno count" line per entry, to pass counts between
    /// processes; `parse()` reads it back.
    pub fn serialize(&self) -> String {
        self.counts
            .iter()
            .map(|((c, e), n)| format!("{c} {e} {n}\n"))
            .collect()
    }

    pub fn parse(text: &str) -> Coverage {
        let mut cov = Coverage::default();
        for line in text.lines() {
            let f: Vec<i64> = line
                .split_whitespace()
                .filter_map(|w| w.parse().ok())
                .collect();
            if let [c, e, n] = f[..] {
                *cov.counts.entry((c as usize, e as i32)).or_default() += n as u64;
            }
        }
        cov
    }

    pub fn total(&self) -> u64 {
        self.counts.values().sum()
    }

    /// Documented errnos that no call returned.
    pub fn missing(&self) -> Vec<(usize, Errno)> {
        let mut missing = vec![];
        for call in 0..CALLS.len() {
            for &e in documented(call) {
                if !self.counts.contains_key(&(call, e as i32)) {
                    missing.push((call, e));
                }
            }
        }
        missing
    }

    /// Results that no man page documents.
    pub fn undocumented(&self) -> Vec<(usize, i32)> {
        self.counts
            .keys()
            .filter(|&&(call, e)| e != 0 && !documented(call).iter().any(|&d| d as i32 == e))
            .copied()
            .collect()
    }

    /// The table: one line per call, each documented errno with its count
    /// (`-` for never), then anything undocumented.
    pub fn table(&self) -> String {
        let mut out = String::new();
        for (call, name) in CALLS.iter().enumerate() {
            let count = |e: i32| self.counts.get(&(call, e)).copied().unwrap_or(0);
            let mut line = format!("{name:<21} ok {:<8}", count(0));
            for &e in documented(call) {
                let n = count(e as i32);
                let shown = if n == 0 {
                    "-".to_owned()
                } else {
                    n.to_string()
                };
                line.push_str(&format!(" {e:?}={shown}"));
            }
            for (c, e) in self.undocumented() {
                if c == call {
                    line.push_str(&format!(
                        " UNDOCUMENTED {:?}={}",
                        Errno::from_raw(e),
                        count(e)
                    ));
                }
            }
            out.push_str(&line);
            out.push('\n');
        }
        out
    }
}
