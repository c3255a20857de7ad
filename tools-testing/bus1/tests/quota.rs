// SPDX-License-Identifier: GPL-2.0
//! Queue quotas (in the booted kernel): a receiver that does not read makes
//! its senders fail with EDQUOT, nothing is lost, and space comes back as
//! it reads.

use std::os::fd::AsFd;

use bus1::sys::BUS1_SEND_CONTINUE;
use bus1::{Errno, Peer, fdinfo_field};

use super::messaging::{connect, counts, peer, recv, recv_err};

const EDQUOT: i32 = Errno::EDQUOT as i32;

/// (used, limit) of one quota line of the peer's fdinfo.
fn quota(p: &Peer, name: &str) -> (u64, u64) {
    let value = fdinfo_field(p.as_fd(), name).unwrap();
    let mut words = value.split_whitespace().map(|w| w.parse().unwrap());
    (words.next().unwrap(), words.next().unwrap())
}

#[test]
fn a_flood_of_empty_messages_ends_in_edquot_and_drains() {
    let base = counts();
    let (owner, sender) = (peer(), peer());
    let (_, handle) = connect(&owner, &sender);
    let (used, max) = quota(&owner, "bus1-queue-messages");
    assert_eq!(used, 0);
    let mut sent = 0;
    let refusal = loop {
        match sender.send(handle, &[], &[]) {
            Ok(()) => sent += 1,
            Err(e) => break e,
        }
        assert!(sent <= max, "more than {max} messages queued");
    };
    assert_eq!((refusal, sent), (Errno::EDQUOT, max));
    assert_eq!(quota(&owner, "bus1-queue-messages"), (max, max));
    // Notifications are not refused: the owner still learns of a release.
    let other = peer();
    let h2 = owner
        .transfer(connect(&owner, &other).0, Some(&sender))
        .unwrap();
    drop(other);
    sender.release(h2).unwrap();
    // Reading makes room again, one message per message read.
    recv(&owner);
    assert_eq!(quota(&owner, "bus1-queue-messages").0, max - 1);
    sender.send(handle, &[b"again"], &[]).unwrap();
    assert_eq!(sender.send(handle, &[], &[]), Err(Errno::EDQUOT));
    drop((owner, sender));
    assert_eq!(counts(), base, "queued messages freed on close");
}

#[test]
fn the_byte_quota_counts_payload_and_overhead() {
    let (owner, sender) = (peer(), peer());
    let (_, handle) = connect(&owner, &sender);
    let (_, max) = quota(&owner, "bus1-queue-bytes");
    let big = vec![7u8; 1 << 20];
    let mut sent = 0u64;
    while sender.send(handle, &[&big], &[]).is_ok() {
        sent += 1;
    }
    let (used, _) = quota(&owner, "bus1-queue-bytes");
    let per_message = used / sent;
    assert!(per_message > 1 << 20 && per_message < (1 << 20) + 4096);
    assert!(used <= max && used + per_message > max, "{used} of {max}");
    // A small message still fits where a big one does not.
    sender.send(handle, &[b"small"], &[]).unwrap();
    let mut buf = vec![0u8; 1 << 20];
    let r = owner.recv(&mut buf, &mut []).map_err(|(e, _)| e).unwrap();
    assert_eq!((r.n_bytes, buf[0]), (1 << 20, 7));
    assert_eq!(
        quota(&owner, "bus1-queue-bytes").0,
        used + 5 + per_message - (1 << 20) - per_message
    );
}

#[test]
fn a_full_destination_fails_a_multicast_or_is_skipped() {
    let (full, ok, sender) = (peer(), peer(), peer());
    let (_, to_full) = connect(&full, &sender);
    let (ok_node, to_ok) = connect(&ok, &sender);
    let (_, max) = quota(&full, "bus1-queue-messages");
    for _ in 0..max {
        sender.send(to_full, &[], &[]).unwrap();
    }
    let mut errors = [-1; 2];
    assert_eq!(
        sender.multicast(&[to_ok, to_full], &[b"m"], &[], 0, Some(&mut errors)),
        Err(Errno::EDQUOT)
    );
    assert_eq!(errors, [Errno::ECANCELED as i32, EDQUOT]);
    assert_eq!(recv_err(&ok), Errno::EAGAIN);
    assert_eq!(
        quota(&ok, "bus1-queue-messages").0,
        0,
        "the cancelled stage gave its charge back"
    );
    assert_eq!(
        sender.multicast(
            &[to_ok, to_full],
            &[b"m"],
            &[],
            BUS1_SEND_CONTINUE,
            Some(&mut errors)
        ),
        Ok(1)
    );
    assert_eq!(errors, [0, EDQUOT]);
    let (r, data, _) = recv(&ok);
    assert_eq!((r.id, data.as_slice()), (ok_node, &b"m"[..]));
    assert_eq!(quota(&full, "bus1-queue-messages"), (max, max));
}
