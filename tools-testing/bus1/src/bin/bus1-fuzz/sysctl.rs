// SPDX-License-Identifier: GPL-2.0
//! The bus1 limits in `/proc/sys/bus1/`: both modes set small ones for a
//! run, and put the old values back afterwards.

use std::fs;

/// Every bus1 sysctl, in the order of `Documentation/userspace-api/bus1.rst`.
pub const NAMES: [&str; 12] = [
    "max_peer_messages",
    "max_peer_bytes",
    "max_peer_handles",
    "max_peer_fds",
    "max_user_messages",
    "max_user_bytes",
    "max_user_handles",
    "max_user_fds",
    "max_peer_nodes",
    "max_peer_held_handles",
    "max_user_nodes",
    "max_user_held_handles",
];

fn path(name: &str) -> String {
    format!("/proc/sys/bus1/{name}")
}

pub fn write(name: &str, value: u64) -> Result<(), String> {
    fs::write(path(name), format!("{value}\n")).map_err(|e| format!("{}: {e}", path(name)))
}

/// The values of every bus1 sysctl when it was made; they come back when
/// it is dropped.
pub struct Saved(Vec<(&'static str, String)>);

impl Saved {
    pub fn new() -> Result<Self, String> {
        NAMES
            .iter()
            .map(|&n| {
                Ok((
                    n,
                    fs::read_to_string(path(n)).map_err(|e| format!("{}: {e}", path(n)))?,
                ))
            })
            .collect::<Result<_, String>>()
            .map(Saved)
    }
}

impl Drop for Saved {
    fn drop(&mut self) {
        for (name, old) in &self.0 {
            if let Err(e) = fs::write(path(name), old) {
                eprintln!("bus1-fuzz: restoring {}: {e}", path(name));
            }
        }
    }
}
