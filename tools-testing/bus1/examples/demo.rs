// SPDX-License-Identifier: GPL-2.0
//! A short tour of bus1 in a booted kernel: prints what it does and what the
//! kernel shows of it (file descriptors, fdinfo, the syscall tracepoint,
//! the live object counter).

use std::fs;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd};

use bus1::sys::BUS1_SEND_CONTINUE;
use bus1::{BUS1_OPEN_CLOEXEC, BUS1_OPEN_NONBLOCK, Peer, sys};

const TRACEFS: &str = "/sys/kernel/tracing";
const DEBUGFS: &str = "/sys/kernel/debug";

fn mount_if_needed(fstype: &str, path: &str) {
    let mounted = fs::read_to_string("/proc/self/mounts")
        .map(|m| m.lines().any(|l| l.split_whitespace().nth(1) == Some(path)))
        .unwrap_or(false);
    if !mounted {
        let _ = nix::mount::mount(
            Some(fstype),
            path,
            Some(fstype),
            nix::mount::MsFlags::empty(),
            None::<&str>,
        );
    }
}

fn live_peers() -> String {
    fs::read_to_string(format!("{DEBUGFS}/bus1/objects"))
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|e| format!("(unavailable: {e})"))
}

fn set_tracing(on: bool) {
    for ev in ["sys_enter_bus1_open", "sys_exit_bus1_open"] {
        let _ = fs::write(
            format!("{TRACEFS}/events/syscalls/{ev}/enable"),
            if on { "1" } else { "0" },
        );
    }
}

/// The fdinfo lines of a peer's pools that are in use or limit messages.
fn quota_lines(p: &Peer) -> String {
    let info =
        fs::read_to_string(format!("/proc/self/fdinfo/{}", p.as_raw_fd())).unwrap_or_default();
    info.lines()
        .filter(|l| l.starts_with("bus1-queue-messages") || l.starts_with("bus1-user-messages"))
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect::<Vec<_>>()
        .join(", ")
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    mount_if_needed("tracefs", TRACEFS);
    mount_if_needed("debugfs", DEBUGFS);
    println!("bus1 demo (pid {})", std::process::id());
    println!("live objects before: {}", live_peers().replace('\n', ", "));

    let _ = fs::write(format!("{TRACEFS}/trace"), "");
    set_tracing(true);
    let a = Peer::open(BUS1_OPEN_CLOEXEC)?;
    let b = Peer::open(BUS1_OPEN_CLOEXEC | BUS1_OPEN_NONBLOCK)?;
    let bad = sys::bus1_open(0x80);
    set_tracing(false);

    for (name, peer) in [("a", &a), ("b", &b)] {
        let fd = peer.as_raw_fd();
        println!(
            "peer {name}: fd {fd} -> {}, peer id {}",
            fs::read_link(format!("/proc/self/fd/{fd}"))?.display(),
            peer.id()?
        );
    }
    println!("bus1_open(0x80) -> {bad:?} (unknown flag)");
    println!(
        "live objects with a and b open: {}",
        live_peers().replace('\n', ", ")
    );

    println!("syscall tracepoint hits:");
    let trace = fs::read_to_string(format!("{TRACEFS}/trace")).unwrap_or_default();
    for line in trace.lines().filter(|l| l.contains("bus1_open")) {
        println!("  {}", line.trim());
    }

    // Capabilities: b can talk to a only once a gives it a handle.
    let node = a.create_node()?;
    println!("a created node {node}");
    println!(
        "b sends to id {node} without a handle: {:?}",
        b.send(node, &[b"hi"], &[]).unwrap_err()
    );
    let handle = a.transfer(node, Some(&b))?;
    println!("a gave b a handle: b's id {handle}");
    b.send(handle, &[b"hello ", b"from b"], &[])?;
    let mut buf = [0u8; 64];
    let r = a.recv(&mut buf, &mut []).map_err(|(e, _)| e)?;
    println!(
        "a received type {} on node {}: {:?}",
        r.kind,
        r.id,
        String::from_utf8_lossy(&buf[..r.n_bytes])
    );

    // Notifications: releasing the last handle tells the owner, destroying
    // a node tells everybody.
    b.release(handle)?;
    let r = a.recv(&mut buf, &mut []).map_err(|(e, _)| e)?;
    println!("a received type {} (NODE_RELEASE) on node {}", r.kind, r.id);
    let handle = a.transfer(node, Some(&b))?;
    a.destroy(&[node])?;
    let r = b.recv(&mut buf, &mut []).map_err(|(e, _)| e)?;
    println!(
        "b received type {} (NODE_DESTROY) on its handle {}",
        r.kind, r.id
    );
    let r = a.recv(&mut buf, &mut []).map_err(|(e, _)| e)?;
    println!("a received type {} (NODE_DESTROY) on node {}", r.kind, r.id);
    println!(
        "b sends to the destroyed node: {:?}",
        b.send(handle, &[b"x"], &[]).unwrap_err()
    );

    // Multicast: one transaction to several nodes, all or nothing unless
    // BUS1_SEND_CONTINUE; one errno per destination.
    let c = Peer::open(BUS1_OPEN_NONBLOCK)?;
    let (to_a, to_c) = {
        let na = a.create_node()?;
        let nc = c.create_node()?;
        (a.transfer(na, Some(&b))?, c.transfer(nc, Some(&b))?)
    };
    let dsts = [to_a, handle, to_c];
    let mut errors = [0i32; 3];
    println!(
        "b multicasts to a, the destroyed node and c: {:?}, errors {:?}",
        b.multicast(&dsts, &[b"all"], &[], 0, Some(&mut errors))
            .unwrap_err(),
        errors
    );
    let n = b.multicast(&dsts, &[b"all"], &[], BUS1_SEND_CONTINUE, Some(&mut errors))?;
    println!("again with BUS1_SEND_CONTINUE: queued on {n}, errors {errors:?}");
    for (name, p) in [("a", &a), ("c", &c)] {
        let r = p.recv(&mut buf, &mut []).map_err(|(e, _)| e)?;
        println!(
            "{name} received type {} on node {}: {:?}",
            r.kind,
            r.id,
            String::from_utf8_lossy(&buf[..r.n_bytes])
        );
    }

    // A file descriptor travels: c gets its own descriptor for b's pipe,
    // with the sender's credentials; c's peer fd itself cannot travel.
    let (rd, wr) = nix::unistd::pipe()?;
    println!(
        "b sends its own peer fd: {:?}",
        b.send_with_fds(to_c, &[], &[], &[b.as_raw_fd()])
            .unwrap_err()
    );
    b.send_with_fds(to_c, &[b"a pipe"], &[], &[wr.as_raw_fd()])?;
    drop(wr);
    println!("c's quota with it queued: {}", quota_lines(&c));
    let mut fds = [-1];
    let r = c
        .recv_with_fds(&mut buf, &mut [], &mut fds)
        .map_err(|(e, _)| e)?;
    println!(
        "c received {:?} with fd {} from uid {} gid {} pid {} tid {}",
        String::from_utf8_lossy(&buf[..r.n_bytes]),
        fds[0],
        r.uid,
        r.gid,
        r.pid,
        r.tid
    );
    // SAFETY: the kernel installed this descriptor for us.
    let mut passed = fs::File::from(unsafe { std::os::fd::OwnedFd::from_raw_fd(fds[0]) });
    passed.write_all(b"written by c")?;
    drop(passed);
    let mut text = String::new();
    fs::File::from(rd).read_to_string(&mut text)?;
    println!("b reads from its pipe: {text:?}");
    println!("live objects: {}", live_peers().replace('\n', ", "));

    drop(c);
    drop(a);
    drop(b);
    println!(
        "live objects after close: {}",
        live_peers().replace('\n', ", ")
    );
    Ok(())
}
