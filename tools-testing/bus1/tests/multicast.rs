// SPDX-License-Identifier: GPL-2.0
//! Multicast (in the booted kernel): one message to several nodes in one
//! transaction, all-or-nothing or per destination, the batch flag, and the
//! global order of all transactions under concurrency.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{Read, Write};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::thread;
use std::time::{Duration, Instant};

use bus1::sys::{
    BUS1_DESTINATIONS_MAX, BUS1_MSG_DATA, BUS1_MSG_NODE_DESTROY, BUS1_MSG_NODE_RELEASE,
    BUS1_SEND_CONTINUE,
};
use bus1::{Errno, Peer};

use super::live_objects;
use super::messaging::{connect, counts, peer, recv, recv_err};

const ECANCELED: i32 = Errno::ECANCELED as i32;
const EHOSTUNREACH: i32 = Errno::EHOSTUNREACH as i32;
const ENXIO: i32 = Errno::ENXIO as i32;
/// An id no test peer ever hands out.
const UNKNOWN_ID: u64 = 1 << 40;

/// `n` owners, each with a node, and a sender holding a handle to each.
///
/// The owners have lower peer ids than the sender, so that where stamps tie
/// their own transactions (destructions) sort before the sender's.
fn fan_out(n: usize) -> (Peer, Vec<Peer>, Vec<u64>, Vec<u64>) {
    let owners: Vec<Peer> = (0..n).map(|_| peer()).collect();
    let sender = peer();
    let (nodes, handles) = owners.iter().map(|o| connect(o, &sender)).unzip();
    (sender, owners, nodes, handles)
}

#[test]
fn multicast_reaches_every_destination_once() {
    let base = counts();
    let (sender, owners, nodes, handles) = fan_out(3);
    let mut errors = [-1; 3];
    assert_eq!(
        sender.multicast(&handles, &[b"hello ", b"all"], &[], 0, Some(&mut errors)),
        Ok(3)
    );
    assert_eq!(errors, [0, 0, 0]);
    assert_eq!(
        live_objects("messages"),
        base.2 + 1,
        "one message, shared by its destinations"
    );
    for (owner, node) in owners.iter().zip(&nodes) {
        let (r, data, _) = recv(owner);
        assert_eq!((r.kind, r.id, r.flags), (BUS1_MSG_DATA, *node, 0));
        assert_eq!(data, b"hello all");
        assert_eq!(recv_err(owner), Errno::EAGAIN);
    }
    assert_eq!(live_objects("messages"), base.2);
    drop((sender, owners));
    assert_eq!(counts(), base);
}

#[test]
fn multicast_carries_handles_to_every_destination() {
    let (sender, owners, _, handles) = fan_out(2);
    let mine = sender.create_node().unwrap();
    assert_eq!(sender.multicast(&handles, &[b"h"], &[mine], 0, None), Ok(2));
    let received: Vec<u64> = owners.iter().map(|o| recv(o).2[0]).collect();
    // Each handle works on its own, and only the last release is reported.
    owners[0].send(received[0], &[b"back"], &[]).unwrap();
    let (r, data, _) = recv(&sender);
    assert_eq!(
        (r.kind, r.id, data.as_slice()),
        (BUS1_MSG_DATA, mine, &b"back"[..])
    );
    owners[0].release(received[0]).unwrap();
    assert_eq!(recv_err(&sender), Errno::EAGAIN);
    owners[1].release(received[1]).unwrap();
    let (r, _, _) = recv(&sender);
    assert_eq!((r.kind, r.id), (BUS1_MSG_NODE_RELEASE, mine));
}

#[test]
fn multicast_without_continue_is_all_or_nothing() {
    let base = counts();
    let (sender, owners, nodes, handles) = fan_out(3);
    let mine = sender.create_node().unwrap();
    owners[1].destroy(&[nodes[1]]).unwrap();
    assert_eq!(recv(&owners[1]).0.kind, BUS1_MSG_NODE_DESTROY);
    assert_eq!(recv(&sender).0.kind, BUS1_MSG_NODE_DESTROY);

    let mut errors = [-1; 3];
    assert_eq!(
        sender.multicast(&handles, &[b"x"], &[mine], 0, Some(&mut errors)),
        Err(Errno::EHOSTUNREACH)
    );
    assert_eq!(errors, [ECANCELED, EHOSTUNREACH, ECANCELED]);
    let mut errors = [-1; 2];
    assert_eq!(
        sender.multicast(
            &[handles[0], UNKNOWN_ID],
            &[b"x"],
            &[],
            0,
            Some(&mut errors)
        ),
        Err(Errno::ENXIO)
    );
    assert_eq!(errors, [ECANCELED, ENXIO]);
    // The call fails with the first refusal; every refusal is reported.
    let mut errors = [-1; 3];
    assert_eq!(
        sender.multicast(
            &[handles[2], handles[1], UNKNOWN_ID],
            &[b"x"],
            &[],
            0,
            Some(&mut errors)
        ),
        Err(Errno::EHOSTUNREACH)
    );
    assert_eq!(errors, [ECANCELED, EHOSTUNREACH, ENXIO]);

    // No trace: nothing queued anywhere, and the handle the failed sends
    // carried was never counted (no release notification).
    for owner in &owners {
        assert_eq!(recv_err(owner), Errno::EAGAIN);
    }
    assert_eq!(recv_err(&sender), Errno::EAGAIN);
    assert_eq!(live_objects("messages"), base.2);
    drop((sender, owners));
    assert_eq!(counts(), base);
}

#[test]
fn multicast_with_continue_delivers_where_it_can() {
    let base = counts();
    let (sender, owners, nodes, handles) = fan_out(3);
    owners[1].destroy(&[nodes[1]]).unwrap();
    assert_eq!(recv(&owners[1]).0.kind, BUS1_MSG_NODE_DESTROY);
    assert_eq!(recv(&sender).0.kind, BUS1_MSG_NODE_DESTROY);

    let dsts = [handles[0], handles[1], UNKNOWN_ID, handles[2]];
    let mut errors = [-1; 4];
    assert_eq!(
        sender.multicast(&dsts, &[b"x"], &[], BUS1_SEND_CONTINUE, Some(&mut errors)),
        Ok(2)
    );
    assert_eq!(errors, [0, EHOSTUNREACH, ENXIO, 0]);
    for i in [0, 2] {
        let (r, data, _) = recv(&owners[i]);
        assert_eq!((r.id, data.as_slice()), (nodes[i], &b"x"[..]));
    }
    assert_eq!(recv_err(&owners[1]), Errno::EAGAIN);

    // Without an errors array, the count tells.
    assert_eq!(
        sender.multicast(&handles[..2], &[b"y"], &[], BUS1_SEND_CONTINUE, None),
        Ok(1)
    );
    assert_eq!(recv(&owners[0]).1, b"y");
    // When no destination takes it, the call fails with the first refusal.
    let mut errors = [-1; 2];
    assert_eq!(
        sender.multicast(
            &[UNKNOWN_ID, handles[1]],
            &[b"z"],
            &[],
            BUS1_SEND_CONTINUE,
            Some(&mut errors)
        ),
        Err(Errno::ENXIO)
    );
    assert_eq!(errors, [ENXIO, EHOSTUNREACH]);
    for owner in &owners {
        assert_eq!(recv_err(owner), Errno::EAGAIN);
    }
    drop((sender, owners));
    assert_eq!(counts(), base);
}

#[test]
fn entries_of_one_transaction_are_flagged_as_a_batch() {
    let (owner, sender, other) = (peer(), peer(), peer());
    let links: Vec<(u64, u64)> = (0..3).map(|_| connect(&owner, &sender)).collect();
    let (_, to_other) = connect(&other, &sender);
    let dsts = [links[0].1, to_other, links[1].1, links[2].1];
    assert_eq!(sender.multicast(&dsts, &[b"batch"], &[], 0, None), Ok(4));
    // The owner's three entries come in destination order, flagged but the
    // last; the other peer's single entry is not flagged.
    for (i, (node, _)) in links.iter().enumerate() {
        let (r, data, _) = recv(&owner);
        assert_eq!(
            (r.kind, r.id, data.as_slice()),
            (BUS1_MSG_DATA, *node, &b"batch"[..])
        );
        assert_eq!(r.continues(), i < 2, "entry {i}");
    }
    assert!(!recv(&other).0.continues());
    // Separate transactions are never a batch.
    sender.send(links[0].1, &[b"1"], &[]).unwrap();
    sender.send(links[1].1, &[b"2"], &[]).unwrap();
    assert!(!recv(&owner).0.continues());
    assert!(!recv(&owner).0.continues());
    // Nodes destroyed together: a batch for the owner and for the holder.
    owner.destroy(&[links[0].0, links[1].0]).unwrap();
    for p in [&owner, &sender] {
        let (first, second) = (recv(p).0, recv(p).0);
        assert_eq!(
            (first.kind, second.kind),
            (BUS1_MSG_NODE_DESTROY, BUS1_MSG_NODE_DESTROY)
        );
        assert!(first.continues() && !second.continues());
        assert_eq!(recv_err(p), Errno::EAGAIN);
    }
}

#[test]
fn multicast_to_the_destination_limit() {
    let base = counts();
    let (owner, sender) = (peer(), peer());
    let max = BUS1_DESTINATIONS_MAX as usize;
    let (nodes, handles): (Vec<u64>, Vec<u64>) = (0..max).map(|_| connect(&owner, &sender)).unzip();
    assert_eq!(sender.multicast(&handles, &[b"all"], &[], 0, None), Ok(max));
    for (i, node) in nodes.iter().enumerate() {
        let (r, _, _) = recv(&owner);
        assert_eq!((r.id, r.continues()), (*node, i + 1 < max));
    }
    assert_eq!(recv_err(&owner), Errno::EAGAIN);
    drop((owner, sender));
    assert_eq!(counts(), base);
}

/// Payload of the messages of the concurrent tests: one event id.
fn event_of(data: &[u8]) -> u64 {
    u64::from_ne_bytes(data[..8].try_into().unwrap())
}

/// A multicast to many nodes, the first of which is destroyed while it is
/// being sent: each send is all or nothing (or, with BUS1_SEND_CONTINUE,
/// everything but the destroyed node), and the destroyed node's owner gets
/// nothing after its destruction notification.
#[test]
fn multicast_is_atomic_against_a_concurrent_destruction() {
    const WIDTH: usize = 16;
    const SENDS: u64 = 60;
    const SENDS_MAX: u64 = 1 << 20;
    const SCENARIOS: usize = 10;
    let mut refused_late = 0;
    for flags in [0, BUS1_SEND_CONTINUE] {
        for _ in 0..SCENARIOS {
            let (sender, owners, nodes, handles) = fan_out(WIDTH);
            let sent = AtomicUsize::new(0);
            let results = thread::scope(|s| {
                s.spawn(|| {
                    while sent.load(SeqCst) < SENDS as usize / 2 {
                        thread::yield_now();
                    }
                    owners[0].destroy(&[nodes[0]]).unwrap();
                });
                // Send until a send has seen the destruction, however the
                // two threads are scheduled: at least SENDS, then on until a
                // destination refuses (bounded only against a broken kernel).
                let mut results = vec![];
                for k in 0..SENDS_MAX {
                    let mut errors = [-1; WIDTH];
                    let payload = k.to_ne_bytes();
                    let r = sender.multicast(&handles, &[&payload], &[], flags, Some(&mut errors));
                    sent.fetch_add(1, SeqCst);
                    let refused = errors[0] == EHOSTUNREACH;
                    results.push((r, errors));
                    if refused && k >= SENDS {
                        break;
                    }
                }
                results
            });
            // What each destination should have, from the sender's view.
            let (mut to_doomed, mut to_others) = (vec![], vec![]);
            for (k, (r, errors)) in results.iter().enumerate() {
                let k = k as u64;
                let others_ok = errors[1..].iter().all(|&e| e == 0);
                let others_cancelled = errors[1..].iter().all(|&e| e == ECANCELED);
                match (flags, r, errors[0]) {
                    (_, Ok(n), 0) if *n == WIDTH && others_ok => {
                        to_doomed.push(k);
                        to_others.push(k);
                    }
                    (0, Err(Errno::EHOSTUNREACH), EHOSTUNREACH) if others_cancelled => {}
                    (BUS1_SEND_CONTINUE, Ok(n), EHOSTUNREACH) if *n == WIDTH - 1 && others_ok => {
                        to_others.push(k)
                    }
                    _ => panic!("send {k} with flags {flags}: {r:?} {errors:?}"),
                }
            }
            assert!(to_doomed.len() < results.len(), "the destruction happened");
            let mut got = vec![];
            loop {
                let (r, data, _) = recv(&owners[0]);
                if r.kind == BUS1_MSG_NODE_DESTROY {
                    break;
                }
                got.push(event_of(&data));
            }
            assert_eq!(got, to_doomed, "destroyed destination, flags {flags}");
            assert_eq!(
                recv_err(&owners[0]),
                Errno::EAGAIN,
                "nothing after the destruction"
            );
            for owner in &owners[1..] {
                let got: Vec<u64> = to_others.iter().map(|_| event_of(&recv(owner).1)).collect();
                assert_eq!(got, to_others, "flags {flags}");
                assert_eq!(recv_err(owner), Errno::EAGAIN);
            }
            refused_late += results
                .iter()
                .filter(|(r, _)| r.is_err() || r.as_ref().is_ok_and(|&n| n < WIDTH))
                .count();
        }
    }
    assert!(refused_late > 0);
}

/// A small deterministic random number generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A random subset of `0..n` with at least `min` members, always
    /// containing `must` if given.
    fn subset(&mut self, n: usize, min: usize, must: Option<usize>) -> Vec<usize> {
        loop {
            let bits = self.next();
            let set: Vec<usize> = (0..n)
                .filter(|&i| bits & (1 << i) != 0 || Some(i) == must)
                .collect();
            if set.len() >= min {
                return set;
            }
        }
    }
}

const RECEIVERS: usize = 4;
const SENDERS: u64 = 3;
/// Event ids: origin in the top bits, a counter below.
const ORIGIN_SHIFT: u32 = 48;
const FROM_PIPE_RELAY: u64 = 10;
const FROM_RECEIVER_1: u64 = 11;
const FROM_DESTROYER: u64 = 12;
const STOP: u64 = 13 << ORIGIN_SHIFT;

fn event(origin: u64, counter: u64) -> u64 {
    (origin << ORIGIN_SHIFT) | counter
}

/// Sender 0's every 8th event makes receiver 0 signal the pipe relay;
/// sender 1's makes receiver 1 send an effect over bus1 itself.
fn is_trigger(event: u64, sender: u64) -> bool {
    event >> ORIGIN_SHIFT == sender && event % 8 == 0
}

/// What a receiver logged: an event, or the destruction notification
/// of one of its handles (translated to the destruction's event later).
#[derive(Clone, Copy, Debug)]
enum Logged {
    Event(u64),
    Destroyed(u64),
}

/// Every transaction that happened: its event id, the receivers it went
/// to and the event that caused it, if any.
type Sent = Mutex<Vec<(u64, Vec<usize>, Option<u64>)>>;

/// Sends `event` (caused by `cause`) to the receivers `to` through
/// `handles`, and records it.
fn emit(from: &Peer, handles: &[u64], to: Vec<usize>, event: u64, cause: Option<u64>, sent: &Sent) {
    let dsts: Vec<u64> = to.iter().map(|&i| handles[i]).collect();
    let payload = [event, cause.unwrap_or(0)];
    let bytes: Vec<u8> = payload.iter().flat_map(|w| w.to_ne_bytes()).collect();
    // Recorded first: a receiver may act on it before this thread goes on.
    sent.lock().unwrap().push((event, to, cause));
    assert_eq!(
        from.multicast(&dsts, &[&bytes], &[], 0, None),
        Ok(dsts.len())
    );
}

/// Several threads multicast to overlapping sets of receivers while nodes
/// held by several receivers are destroyed; receivers cause further
/// transactions through a pipe and through bus1.  Then every receiver's
/// log is checked: nothing lost or duplicated, no two transactions in a
/// different order for any two receivers, every effect after its cause.
#[test]
fn stress_global_order_and_causality() {
    let rounds: u64 = std::env::var("BUS1_STRESS_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(6000);
    let cpus = thread::available_parallelism().map_or(1, |n| n.get());
    assert!(cpus >= 2, "needs two CPUs to be a stress test, has {cpus}");
    let base = counts();
    let start = Instant::now();

    // Blocking receivers, each owning one node.
    let receivers: Vec<Peer> = (0..RECEIVERS).map(|_| Peer::open(0).unwrap()).collect();
    let nodes: Vec<u64> = receivers.iter().map(|r| r.create_node().unwrap()).collect();
    let handles_of = |p: &Peer| -> Vec<u64> {
        receivers
            .iter()
            .zip(&nodes)
            .map(|(r, &n)| r.transfer(n, Some(p)).unwrap())
            .collect()
    };
    let senders: Vec<(Peer, Vec<u64>)> = (0..SENDERS)
        .map(|_| {
            let p = peer();
            let h = handles_of(&p);
            (p, h)
        })
        .collect();
    let relay = peer();
    let relay_handles = handles_of(&relay);
    // Receiver 1 sends its effects through its own peer (the owner gets
    // its node id for its own node).
    let r1_handles = handles_of(&receivers[1]);
    assert_eq!(r1_handles[1], nodes[1]);
    let destroyer = peer();

    let sent: Sent = Mutex::new(vec![]);
    let destroyed: Mutex<HashMap<(usize, u64), u64>> = Mutex::new(HashMap::new());
    let (triggers, effects) = (AtomicUsize::new(0), AtomicUsize::new(0));
    let origins_done = AtomicBool::new(false);
    let (pipe_rd, pipe_wr) = nix::unistd::pipe().unwrap();
    let mut pipe_rd = File::from(pipe_rd);
    let mut pipe_wr = Some(File::from(pipe_wr));

    let logs: Vec<Vec<(Logged, u64)>> = thread::scope(|s| {
        let mut readers = vec![];
        for (i, receiver) in receivers.iter().enumerate() {
            let mut pipe = if i == 0 { pipe_wr.take() } else { None };
            let (sent, effects, r1_handles) = (&sent, &effects, &r1_handles);
            readers.push(s.spawn(move || {
                let mut log = vec![];
                let mut rng = Rng(0x1000 + i as u64);
                let mut buf = [0u8; 64];
                let mut count = 0;
                loop {
                    let r = receiver.recv(&mut buf, &mut []).unwrap();
                    match r.kind {
                        BUS1_MSG_DATA => {}
                        BUS1_MSG_NODE_DESTROY => {
                            log.push((Logged::Destroyed(r.id), r.flags));
                            continue;
                        }
                        kind => panic!("receiver {i}: unexpected entry type {kind}"),
                    }
                    let e = event_of(&buf[..r.n_bytes]);
                    if e == STOP {
                        return log;
                    }
                    log.push((Logged::Event(e), r.flags));
                    if i == 0 && is_trigger(e, 0) {
                        pipe.as_mut().unwrap().write_all(&e.to_ne_bytes()).unwrap();
                    }
                    if i == 1 && is_trigger(e, 1) {
                        count += 1;
                        let to = rng.subset(RECEIVERS, 2, None);
                        emit(
                            receiver,
                            r1_handles,
                            to,
                            event(FROM_RECEIVER_1, count),
                            Some(e),
                            sent,
                        );
                        effects.fetch_add(1, SeqCst);
                    }
                }
            }));
        }
        // The pipe relay: acts on what receiver 0 tells it.
        s.spawn(|| {
            let mut rng = Rng(0x2000);
            let mut cause = [0u8; 8];
            let mut count = 0;
            while pipe_rd.read_exact(&mut cause).is_ok() {
                count += 1;
                let to = rng.subset(RECEIVERS, 2, None);
                let e = event(FROM_PIPE_RELAY, count);
                emit(
                    &relay,
                    &relay_handles,
                    to,
                    e,
                    Some(u64::from_ne_bytes(cause)),
                    &sent,
                );
                effects.fetch_add(1, SeqCst);
            }
        });
        // The destroyer: nodes held by several receivers, destroyed.
        let destroying = s.spawn(|| {
            let mut rng = Rng(0x3000);
            let mut count = 0;
            while !origins_done.load(SeqCst) {
                count += 1;
                let e = event(FROM_DESTROYER, count);
                let node = destroyer.create_node().unwrap();
                let to = rng.subset(RECEIVERS, 2, None);
                for &i in &to {
                    let h = destroyer.transfer(node, Some(&receivers[i])).unwrap();
                    destroyed.lock().unwrap().insert((i, h), e);
                }
                sent.lock().unwrap().push((e, to, None));
                destroyer.destroy(&[node]).unwrap();
                assert_eq!(recv(&destroyer).0.kind, BUS1_MSG_NODE_DESTROY);
                thread::sleep(Duration::from_millis(1));
            }
        });
        let workers: Vec<_> = senders
            .iter()
            .enumerate()
            .map(|(k, (p, handles))| {
                let (sent, triggers) = (&sent, &triggers);
                s.spawn(move || {
                    let k = k as u64;
                    let mut rng = Rng(0x4000 + k);
                    for n in 1..=rounds {
                        let e = event(k, n);
                        let trigger = [is_trigger(e, 0), is_trigger(e, 1)];
                        let must = trigger.iter().position(|&t| t);
                        let to = rng.subset(RECEIVERS, 1, must);
                        emit(p, handles, to, e, None, sent);
                        if must.is_some() {
                            triggers.fetch_add(1, SeqCst);
                        }
                    }
                })
            })
            .collect();
        for w in workers {
            w.join().unwrap();
        }
        origins_done.store(true, SeqCst);
        destroying.join().unwrap();
        // Every effect is sent before the stop: the stop is the last
        // transaction every receiver sees.
        while effects.load(SeqCst) < triggers.load(SeqCst) {
            thread::sleep(Duration::from_millis(5));
        }
        let stop: Vec<u8> = [STOP, 0].iter().flat_map(|w| w.to_ne_bytes()).collect();
        let (p, handles) = &senders[0];
        assert_eq!(p.multicast(handles, &[&stop], &[], 0, None), Ok(RECEIVERS));
        readers.into_iter().map(|r| r.join().unwrap()).collect()
    });
    let elapsed = start.elapsed();

    // Translate the logs into event ids.
    let destroyed = destroyed.into_inner().unwrap();
    let logs: Vec<Vec<u64>> = logs
        .iter()
        .enumerate()
        .map(|(i, log)| {
            log.iter()
                .map(|&(logged, flags)| {
                    assert_eq!(flags, 0, "receiver {i}: one node, so never a batch");
                    match logged {
                        Logged::Event(e) => e,
                        Logged::Destroyed(h) => destroyed[&(i, h)],
                    }
                })
                .collect()
        })
        .collect();
    let sent = sent.into_inner().unwrap();

    // Nothing lost, nothing duplicated.
    for (i, log) in logs.iter().enumerate() {
        let mut want: Vec<u64> = sent
            .iter()
            .filter(|(_, to, _)| to.contains(&i))
            .map(|(e, _, _)| *e)
            .collect();
        let mut got = log.clone();
        want.sort_unstable();
        got.sort_unstable();
        assert_eq!(got.len(), want.len(), "receiver {i}: number of entries");
        assert!(
            got == want,
            "receiver {i}: entries differ from what was sent"
        );
    }
    // One global order: no pair of transactions inverted between receivers.
    let positions: Vec<HashMap<u64, usize>> = logs
        .iter()
        .map(|log| log.iter().enumerate().map(|(p, &e)| (e, p)).collect())
        .collect();
    let mut pairs_checked = 0usize;
    #[allow(clippy::needless_range_loop)] // pairs (i, j) of receivers
    for i in 0..RECEIVERS {
        for j in i + 1..RECEIVERS {
            let mut last: Option<(u64, usize)> = None;
            for e in &logs[i] {
                let Some(&pj) = positions[j].get(e) else {
                    continue;
                };
                if let Some((prev, prev_pj)) = last {
                    assert!(
                        prev_pj < pj,
                        "receivers {i} and {j} disagree: {prev:#x} before {e:#x} for {i}, after it for {j}"
                    );
                    pairs_checked += 1;
                }
                last = Some((*e, pj));
            }
        }
    }
    // Causality: an effect never comes before its cause.
    let mut causal_checked = 0usize;
    let effects: Vec<(u64, u64)> = sent
        .iter()
        .filter_map(|(e, _, cause)| cause.map(|c| (*e, c)))
        .collect();
    for (i, pos) in positions.iter().enumerate() {
        for (effect, cause) in &effects {
            if let (Some(pe), Some(pc)) = (pos.get(effect), pos.get(cause)) {
                assert!(
                    pc < pe,
                    "receiver {i} got {effect:#x} before its cause {cause:#x}"
                );
                causal_checked += 1;
            }
        }
    }
    let all: HashSet<u64> = sent.iter().map(|(e, _, _)| *e).collect();
    super::report(&format!(
        "stress: {} transactions ({} causal effects, {} destructions) on {cpus} CPUs in {:.1}s; \
         {pairs_checked} adjacent common pairs and {causal_checked} cause/effect pairs in order",
        all.len(),
        effects.len(),
        sent.iter()
            .filter(|(e, _, _)| e >> ORIGIN_SHIFT == FROM_DESTROYER)
            .count(),
        elapsed.as_secs_f64()
    ));
    assert!(causal_checked > 0 && pairs_checked > 0);
    drop((receivers, senders, relay, destroyer));
    assert_eq!(counts(), base);
}

/// Causality where it is hardest to keep: a multicast to many peers whose
/// first receiver reacts at once, over bus1 and over a pipe, with messages
/// to the multicast's last destinations.  Those must still get the cause
/// first, although the sender may not have reached their queues yet when
/// the first receiver acts.
#[test]
fn causality_holds_across_a_wide_multicast() {
    const WIDTH: usize = 32;
    const ROUNDS: u64 = 1000;
    let base = counts();
    let sender = peer();
    let receivers: Vec<Peer> = (0..WIDTH).map(|_| peer()).collect();
    let (nodes, handles): (Vec<u64>, Vec<u64>) =
        receivers.iter().map(|r| connect(r, &sender)).unzip();
    let first = Peer::open(0).unwrap();
    let first_node = first.create_node().unwrap();
    let to_first = first.transfer(first_node, Some(&sender)).unwrap();
    let last = WIDTH - 1;
    let direct = receivers[last].transfer(nodes[last], Some(&first)).unwrap();
    let relay = peer();
    let relayed = receivers[last - 1]
        .transfer(nodes[last - 1], Some(&relay))
        .unwrap();
    let mut dsts = vec![to_first];
    dsts.extend(&handles);
    let (pipe_rd, pipe_wr) = nix::unistd::pipe().unwrap();
    let (mut pipe_rd, mut pipe_wr) = (File::from(pipe_rd), File::from(pipe_wr));

    thread::scope(|s| {
        s.spawn(|| {
            let mut buf = [0u8; 8];
            for _ in 0..ROUNDS {
                let r = first.recv(&mut buf, &mut []).unwrap();
                let cause = &buf[..r.n_bytes];
                // Both reactions happen right after receiving the cause.
                first.send(direct, &[b"effect ", cause], &[]).unwrap();
                pipe_wr.write_all(cause).unwrap();
            }
        });
        s.spawn(|| {
            let mut cause = [0u8; 8];
            for _ in 0..ROUNDS {
                pipe_rd.read_exact(&mut cause).unwrap();
                relay.send(relayed, &[b"effect ", &cause], &[]).unwrap();
            }
        });
        for k in 0..ROUNDS {
            assert_eq!(
                sender.multicast(&dsts, &[&k.to_ne_bytes()], &[], 0, None),
                Ok(WIDTH + 1)
            );
        }
    });

    // Each of the two last destinations: every cause before its effect.
    let mut inverted = 0;
    for r in &receivers[last - 1..] {
        let mut seen = HashSet::new();
        for _ in 0..2 * ROUNDS {
            let (_, data, _) = recv(r);
            match data.strip_prefix(b"effect ") {
                Some(cause) if !seen.contains(&event_of(cause)) => inverted += 1,
                Some(_) => {}
                None => {
                    seen.insert(event_of(&data));
                }
            }
        }
        assert_eq!(recv_err(r), Errno::EAGAIN);
    }
    assert_eq!(inverted, 0, "effects received before their causes");
    drop((sender, receivers, first, relay));
    assert_eq!(counts(), base);
}
