// SPDX-License-Identifier: GPL-2.0
//! bus1's trace events (in the booted kernel): from a recorded trace alone,
//! every message can be followed from its sender to each receiver, and the
//! global order of all transactions read off.
//!
//! The tests record into a tracefs instance of their own, so that nothing
//! else that traces (perf, bpftrace in other tests) shares their buffer.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::sync::Barrier;
use std::thread;

use bus1::sys::{BUS1_MSG_DATA, BUS1_MSG_NODE_DESTROY, BUS1_SEND_CONTINUE};
use bus1::{Errno, Peer};

use super::messaging::{connect, peer, recv};
use super::{TRACEFS, ensure_mounted};

const EHOSTUNREACH: i64 = Errno::EHOSTUNREACH as i64;
const ENXIO: i64 = Errno::ENXIO as i64;

/// A tracefs instance recording the bus1 events; removed on drop.
pub(crate) struct TraceInstance {
    dir: String,
}

impl TraceInstance {
    /// Creates instance `name` with `buffer_kb` per CPU and enables `events`
    /// (e.g. "bus1" for all bus1 events) in it.
    pub(crate) fn new(name: &str, buffer_kb: u32, events: &[&str]) -> Self {
        ensure_mounted("tracefs", TRACEFS);
        let dir = format!("{TRACEFS}/instances/{name}");
        let _ = fs::remove_dir(&dir);
        fs::create_dir(&dir).unwrap();
        let instance = Self { dir };
        instance.write("buffer_size_kb", &buffer_kb.to_string());
        for event in events {
            instance.write(&format!("events/{event}/enable"), "1");
        }
        instance
    }

    fn write(&self, file: &str, value: &str) {
        fs::write(format!("{}/{file}", self.dir), value)
            .unwrap_or_else(|e| panic!("{}/{file}: {e}", self.dir));
    }

    /// Stops recording and returns the events, oldest first.  Fails if
    /// the buffer overran: a trace with holes proves nothing.
    pub(crate) fn stop(&self) -> Vec<Event> {
        self.write("tracing_on", "0");
        let stats = fs::read_to_string(format!("{}/per_cpu/cpu0/stats", self.dir)).unwrap();
        let trace = fs::read_to_string(format!("{}/trace", self.dir)).unwrap();
        assert!(
            !trace.contains("LOST") && !stats.contains("overrun: 1"),
            "trace buffer overran"
        );
        for cpu in fs::read_dir(format!("{}/per_cpu", self.dir)).unwrap() {
            let stats = fs::read_to_string(cpu.unwrap().path().join("stats")).unwrap();
            let overrun = stats
                .lines()
                .find_map(|l| l.strip_prefix("overrun: "))
                .unwrap();
            assert_eq!(overrun.trim(), "0", "trace buffer overran: {stats}");
        }
        trace.lines().filter_map(Event::parse).collect()
    }
}

impl Drop for TraceInstance {
    fn drop(&mut self) {
        let _ = fs::write(format!("{}/events/enable", self.dir), "0");
        let _ = fs::remove_dir(&self.dir);
    }
}

/// One bus1 event of a trace: its name and its `key=value` fields.
#[derive(Clone, Debug)]
pub(crate) struct Event {
    pub(crate) name: String,
    fields: BTreeMap<String, String>,
}

impl Event {
    /// Parses a line of the `trace` file ("comm-pid [cpu] flags ts: name:
    /// k=v k=v ..."); `None` for comments and other events.
    fn parse(line: &str) -> Option<Self> {
        let at = line.find(": bus1_")?;
        let rest = &line[at + 2..];
        let (name, fields) = rest.split_once(": ")?;
        let fields = fields
            .split_whitespace()
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        Some(Self {
            name: name.to_owned(),
            fields,
        })
    }

    /// A number field (decimal, or hex with "0x" as flags are printed).
    pub(crate) fn get(&self, field: &str) -> i64 {
        let text = self
            .fields
            .get(field)
            .unwrap_or_else(|| panic!("{self:?} has no {field}"));
        match text.strip_prefix("0x") {
            Some(hex) => i64::from_str_radix(hex, 16),
            None => text.parse(),
        }
        .unwrap_or_else(|e| panic!("{self:?}: {field}: {e}"))
    }

    fn text(&self, field: &str) -> &str {
        &self.fields[field]
    }

    /// The transaction key of a queue or receive event: where it sorts.
    fn place(&self) -> (i64, i64, i64, i64) {
        (
            self.get("time"),
            self.get("sender"),
            self.get("seq"),
            self.get("part"),
        )
    }
}

/// The payload of message `k` of sender thread `t`.
fn payload(t: usize, k: usize) -> Vec<u8> {
    format!("t{t}m{k}").into_bytes()
}

/// Concurrent multicasts, reconstructed from the trace: 3 sender threads
/// send 40 messages each, every one to the same 3 receivers plus a node
/// that was destroyed before (so that each send has a refusal, with
/// `BUS1_SEND_CONTINUE`); a fourth receiver's node is destroyed while they
/// send.  The trace must say, without anything else: which transaction
/// each message was (bus1_send), where each went (bus1_queue) and in which
/// order each receiver got it (bus1_recv).  Sorting the queue events by
/// their place must give every receiver's order as user space saw it, and
/// one order of all transactions must fit all receivers.
#[test]
fn trace_follows_concurrent_multicasts_to_every_receiver() {
    const SENDERS: usize = 3;
    const MESSAGES: usize = 40;
    let receivers: Vec<Peer> = (0..4).map(|_| peer()).collect();
    let gone_owner = peer();
    let senders: Vec<Peer> = (0..SENDERS).map(|_| peer()).collect();
    // Per sender: handles to the 4 receivers' nodes, then the gone node.
    let mut nodes = Vec::new();
    let mut dsts: Vec<Vec<u64>> = vec![Vec::new(); SENDERS];
    for r in &receivers {
        let node = r.create_node().unwrap();
        nodes.push(node);
        for (s, d) in senders.iter().zip(&mut dsts) {
            d.push(r.transfer(node, Some(s)).unwrap());
        }
    }
    let gone = gone_owner.create_node().unwrap();
    for (s, d) in senders.iter().zip(&mut dsts) {
        d.push(gone_owner.transfer(gone, Some(s)).unwrap());
    }
    gone_owner.destroy(&[gone]).unwrap();
    for s in &senders {
        let (r, _, _) = recv(s);
        assert_eq!(r.kind, BUS1_MSG_NODE_DESTROY);
    }

    let trace = TraceInstance::new("bus1-order", 4096, &["bus1"]);
    let start = Barrier::new(SENDERS + 1);
    thread::scope(|scope| {
        for (t, (s, d)) in senders.iter().zip(&dsts).enumerate() {
            let start = &start;
            scope.spawn(move || {
                start.wait();
                for k in 0..MESSAGES {
                    let mut errors = [-1; 5];
                    let n = s
                        .multicast(
                            d,
                            &[&payload(t, k)],
                            &[],
                            BUS1_SEND_CONTINUE,
                            Some(&mut errors),
                        )
                        .unwrap();
                    // The fourth receiver's node goes away meanwhile.
                    assert!(n == 3 || n == 4, "{n} {errors:?}");
                    assert_eq!(errors[4], EHOSTUNREACH as i32);
                }
            });
        }
        start.wait();
        receivers[3].destroy(&[nodes[3]]).unwrap();
    });
    // What each receiver got, in order: (kind, id, payload).
    let mut seen: Vec<Vec<(u64, u64, Vec<u8>)>> = Vec::new();
    for r in &receivers {
        let mut got = Vec::new();
        loop {
            let mut buf = vec![0u8; 64];
            match r.recv(&mut buf, &mut []) {
                Ok(m) => {
                    buf.truncate(m.n_bytes);
                    got.push((m.kind, m.id, buf));
                }
                Err((e, _)) => {
                    assert_eq!(e, Errno::EAGAIN);
                    break;
                }
            }
        }
        seen.push(got);
    }
    let events = trace.stop();

    let peer_ids: Vec<i64> = receivers.iter().map(|r| r.id().unwrap() as i64).collect();
    let sender_ids: Vec<i64> = senders.iter().map(|s| s.id().unwrap() as i64).collect();
    let of = |name: &'static str| events.iter().filter(move |e| e.name == name);

    // bus1_send: one per message, in each sender's order; seq names it.
    // Key: (sender peer, seq) -> (thread, message number, commit time).
    let mut sends: HashMap<(i64, i64), (usize, usize, i64, i64)> = HashMap::new();
    for (t, id) in sender_ids.iter().enumerate() {
        let ours: Vec<&Event> = of("bus1_send").filter(|e| e.get("peer") == *id).collect();
        assert_eq!(ours.len(), MESSAGES, "bus1_send events of sender {t}");
        for (k, e) in ours.iter().enumerate() {
            assert_eq!(
                (e.get("dsts"), e.get("bytes"), e.get("flags")),
                (5, payload(t, k).len() as i64, BUS1_SEND_CONTINUE as i64),
                "{e:?}"
            );
            assert!(e.get("time") > 0, "{e:?}");
            sends.insert((*id, e.get("seq")), (t, k, e.get("time"), e.get("ret")));
        }
    }
    // bus1_refuse: the gone node, index 4, for every send.
    let refusals: Vec<&Event> = of("bus1_refuse").collect();
    let missed_3 = sends.values().filter(|s| s.3 == 3).count();
    assert_eq!(refusals.len(), SENDERS * MESSAGES + missed_3);
    for e in &refusals {
        assert!(sends.contains_key(&(e.get("peer"), e.get("seq"))), "{e:?}");
        match e.get("index") {
            4 => assert_eq!(e.get("error"), -EHOSTUNREACH, "{e:?}"),
            3 => assert_eq!(e.get("error"), -EHOSTUNREACH, "{e:?}"),
            _ => panic!("refused at a live receiver: {e:?}"),
        }
    }

    // bus1_queue: each send queued exactly `ret` entries, at its commit
    // time, on receivers; the payload the receiver saw is the sender's.
    let mut queued: HashMap<(i64, i64), Vec<&Event>> = HashMap::new();
    for e in of("bus1_queue").filter(|e| e.text("type") == "data") {
        queued
            .entry((e.get("sender"), e.get("seq")))
            .or_default()
            .push(e);
    }
    for (key, (t, k, time, ret)) in &sends {
        let entries = queued.get(key).map_or(&[][..], |v| &v[..]);
        assert_eq!(entries.len() as i64, *ret, "queue events of t{t}m{k}");
        for e in entries {
            assert_eq!(e.get("time"), *time, "{e:?}");
            assert!(peer_ids.contains(&e.get("peer")), "{e:?}");
            assert_eq!(e.get("bytes"), payload(*t, *k).len() as i64);
        }
    }

    // Every receiver: its queue events sorted by place, its receive
    // events in trace order and what user space received are one list.
    let mut orders = Vec::new();
    for (i, id) in peer_ids.iter().enumerate() {
        let mut by_place: Vec<&Event> = of("bus1_queue").filter(|e| e.get("peer") == *id).collect();
        by_place.sort_by_key(|e| e.place());
        let received: Vec<&Event> = of("bus1_recv").filter(|e| e.get("peer") == *id).collect();
        assert_eq!(
            by_place.iter().map(|e| e.place()).collect::<Vec<_>>(),
            received.iter().map(|e| e.place()).collect::<Vec<_>>(),
            "receiver {i}: queue order and receive order"
        );
        assert_eq!(received.len(), seen[i].len(), "receiver {i}");
        let mut order = Vec::new();
        for (e, (kind, id, data)) in received.iter().zip(&seen[i]) {
            assert_eq!(e.get("id"), *id as i64, "{e:?}");
            if *kind == BUS1_MSG_DATA {
                assert_eq!(e.text("type"), "data");
                let (t, k, _, _) = sends[&(e.get("sender"), e.get("seq"))];
                assert_eq!(data, &payload(t, k), "receiver {i}: {e:?}");
            } else {
                assert_eq!(e.text("type"), "node_destroy", "{e:?}");
            }
            order.push((e.get("time"), e.get("sender"), e.get("seq")));
        }
        orders.push(order);
    }
    // One global order: every receiver got the transactions in key order
    // (so all agree on the relative order of what they share), and the
    // fourth receiver got its destruction after every message to it.
    for (i, order) in orders.iter().enumerate() {
        assert!(
            order.windows(2).all(|w| w[0] < w[1]),
            "receiver {i} out of key order"
        );
        assert_eq!(order.len(), seen[i].len());
    }
    let destroy: Vec<&Event> = of("bus1_node_destroy")
        .filter(|e| e.get("peer") == peer_ids[3])
        .collect();
    assert_eq!(destroy.len(), 1);
    assert_eq!(destroy[0].get("holders"), SENDERS as i64);
    assert_eq!(seen[3].last().map(|m| m.0), Some(BUS1_MSG_NODE_DESTROY));
    assert_eq!(
        *orders[3].last().unwrap(),
        (destroy[0].get("time"), peer_ids[3], destroy[0].get("seq"))
    );
    // Each sender got the destruction notification too.
    for id in &sender_ids {
        assert_eq!(
            of("bus1_queue")
                .filter(|e| e.get("peer") == *id && e.text("type") == "node_destroy")
                .count(),
            1
        );
    }
}

/// The handle events and a refused send that never became a transaction.
#[test]
fn trace_shows_handles_and_refusals() {
    let owner = peer();
    let holder = peer();
    let trace = TraceInstance::new("bus1-handles", 64, &["bus1"]);
    let (node, handle) = connect(&owner, &holder);
    holder.release(handle).unwrap();
    let _ = recv(&owner); // the release notification
    assert_eq!(holder.send(handle, &[b"x"], &[]), Err(Errno::ENXIO));
    owner.destroy(&[node]).unwrap();
    let events = trace.stop();
    let (o, h) = (owner.id().unwrap() as i64, holder.id().unwrap() as i64);
    let names: Vec<&str> = events.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "bus1_handle_transfer",
            "bus1_queue",
            "bus1_handle_release",
            "bus1_recv",
            "bus1_send",
            "bus1_refuse",
            "bus1_queue",
            "bus1_node_destroy",
        ],
        "{events:#?}"
    );
    let e = &events[0];
    assert_eq!(
        (
            e.get("src_peer"),
            e.get("src_id"),
            e.get("dst_peer"),
            e.get("dst_id")
        ),
        (o, node as i64, h, handle as i64)
    );
    assert_eq!(
        (events[1].get("peer"), events[1].text("type")),
        (o, "node_release")
    );
    assert_eq!(
        (events[2].get("peer"), events[2].get("id")),
        (h, handle as i64)
    );
    assert_eq!(events[1].place(), events[3].place());
    let send = &events[4];
    assert_eq!(
        (send.get("peer"), send.get("ret"), send.get("time")),
        (h, -ENXIO, 0)
    );
    let refuse = &events[5];
    assert_eq!(
        (
            refuse.get("peer"),
            refuse.get("seq"),
            refuse.get("index"),
            refuse.get("id")
        ),
        (h, send.get("seq"), 0, handle as i64)
    );
    assert_eq!(refuse.get("error"), -ENXIO);
    assert_eq!(
        (events[6].get("peer"), events[6].text("type")),
        (o, "node_destroy")
    );
    let destroy = &events[7];
    assert_eq!(
        (
            destroy.get("peer"),
            destroy.get("id"),
            destroy.get("holders")
        ),
        (o, node as i64, 0)
    );
    assert_eq!(events[6].get("time"), destroy.get("time"));
}
