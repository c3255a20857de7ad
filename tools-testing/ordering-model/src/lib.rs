// SPDX-License-Identifier: GPL-2.0
//! An exhaustive model check of the bus1 ordering algorithm.
//!
//! The kernel orders transactions without a global lock (see the `DOC:`
//! comments of `ipc/bus1/queue.rs` and `ipc/bus1/transaction.rs`): a
//! transaction stages a place in every destination queue above that queue's
//! clock, picks a commit time above every tentative time, raises every
//! destination clock to it, and only then commits everywhere; a reader
//! takes the first entry of its queue, and only once it is committed.
//!
//! This crate models exactly those steps, each one atomic as it is under
//! one queue lock in the kernel, and explores **every** interleaving of the
//! steps of a few small scenarios (transactions, unicasts, notifications,
//! readers that peek and then pop as `bus1_recv()` does, and transactions
//! that start only after some reader received another one).  In every
//! final state it checks:
//!
//! - every queue received exactly what was sent to it, and no queue got
//!   stuck with an entry it can never hand out;
//! - a reader pops the entry it peeked at (the kernel copies an entry out
//!   while it stays queued and dequeues it afterwards);
//! - global order: two queues that both received two transactions received
//!   them in the same order;
//! - causality: a transaction started because a reader received another
//!   comes after it in every queue that received both;
//! - the batch flag: the entries one transaction has in one queue are
//!   received back to back, all but the last flagged as continued.
//!
//! The same checks run against deliberately broken variants of the
//! algorithm, which must each be caught, so the checker is known to work.

use std::collections::{BTreeMap, HashSet};

/// Position of an entry in a queue: (time, transaction, part).  In the
/// kernel the transaction is (sender, seq); one number is enough here.
pub type Stamp = (u64, usize, usize);

/// How a transaction puts its entries into queues.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// The four steps (`transaction::send()` with several destinations,
    /// `transaction::destroy_nodes()`).
    Multicast,
    /// One destination: stage with the clock raised, then commit in place
    /// (`transaction::send()` with one destination).
    Unicast,
    /// One destination, staged and committed in one step
    /// (`Queue::push()`, used by release notifications).
    Push,
}

/// One transaction of a scenario.
#[derive(Clone, Debug)]
pub struct Tx {
    pub kind: Kind,
    /// Destination queues; a queue may appear twice (two nodes of one peer).
    pub dsts: Vec<usize>,
    /// Starts only after queue `.1` received transaction `.0`.
    pub after: Option<(usize, usize)>,
}

/// The algorithm, or one of the broken variants the checker must catch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Variant {
    /// What the kernel does.
    Correct,
    /// Step 3 left out: clocks are never raised.
    NoClockRaise,
    /// Each queue's clock is raised just before the commit in that queue,
    /// not all before the first commit.
    RaiseAtCommit,
    /// Each queue commits at its own tentative time + 1 instead of one
    /// time for all.
    PerQueueCommitTime,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Step {
    Stage(usize, bool),
    Raise(usize),
    Commit(usize),
    Push(usize),
}

fn program(tx: &Tx, variant: Variant) -> Vec<Step> {
    let n = tx.dsts.len();
    match tx.kind {
        Kind::Push => vec![Step::Push(0)],
        Kind::Unicast => vec![Step::Stage(0, true), Step::Commit(0)],
        Kind::Multicast => {
            let mut steps: Vec<Step> = (0..n).map(|i| Step::Stage(i, false)).collect();
            match variant {
                Variant::Correct | Variant::PerQueueCommitTime => {
                    steps.extend((0..n).map(Step::Raise));
                    steps.extend((0..n).map(Step::Commit));
                }
                Variant::NoClockRaise => steps.extend((0..n).map(Step::Commit)),
                Variant::RaiseAtCommit => {
                    steps.extend((0..n).flat_map(|i| [Step::Raise(i), Step::Commit(i)]))
                }
            }
            steps
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
struct Queue {
    clock: u64,
    /// Stamp -> committed.
    entries: BTreeMap<Stamp, bool>,
}

impl Queue {
    fn first(&self) -> Option<(Stamp, bool)> {
        self.entries.iter().next().map(|(s, c)| (*s, *c))
    }

    /// What `Queue::peek()` reports: the first entry if committed, and
    /// whether the next one belongs to the same transaction.
    fn peek(&self) -> Option<(Stamp, bool)> {
        let mut it = self.entries.iter();
        let (&first, &committed) = it.next()?;
        if !committed {
            return None;
        }
        let continues = it
            .next()
            .is_some_and(|(next, _)| (next.0, next.1) == (first.0, first.1));
        Some((first, continues))
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct State {
    queues: Vec<Queue>,
    /// Next step of each transaction.
    pcs: Vec<usize>,
    /// Tentative stamp of each part of each transaction.
    staged: Vec<Vec<Option<Stamp>>>,
    /// What each reader peeked at and will pop.
    peeked: Vec<Option<(Stamp, bool)>>,
    /// What each queue's reader received: (transaction, part, continues).
    logs: Vec<Vec<(usize, usize, bool)>>,
}

/// Explores every interleaving of one scenario.
pub struct Checker<'a> {
    txs: &'a [Tx],
    programs: Vec<Vec<Step>>,
    variant: Variant,
    seen: HashSet<State>,
    /// Final states checked.
    pub finals: usize,
}

impl<'a> Checker<'a> {
    pub fn new(txs: &'a [Tx], variant: Variant) -> Self {
        Self {
            txs,
            programs: txs.iter().map(|t| program(t, variant)).collect(),
            variant,
            seen: HashSet::new(),
            finals: 0,
        }
    }

    /// Returns the number of distinct states explored, or the first
    /// violation found.
    pub fn run(&mut self, queues: usize) -> Result<usize, String> {
        let state = State {
            queues: vec![Queue::default(); queues],
            pcs: vec![0; self.txs.len()],
            staged: self.txs.iter().map(|t| vec![None; t.dsts.len()]).collect(),
            peeked: vec![None; queues],
            logs: vec![vec![]; queues],
        };
        self.explore(state)?;
        Ok(self.seen.len())
    }

    fn commit_time(&self, state: &State, tx: usize, part: usize) -> u64 {
        let staged = &state.staged[tx];
        match (self.txs[tx].kind, self.variant) {
            (Kind::Unicast, _) => staged[part].map_or(0, |s| s.0),
            (_, Variant::PerQueueCommitTime) => staged[part].map_or(0, |s| s.0) + 1,
            _ => staged.iter().flatten().map(|s| s.0).max().unwrap_or(0) + 1,
        }
    }

    fn explore(&mut self, state: State) -> Result<(), String> {
        if !self.seen.insert(state.clone()) {
            return Ok(());
        }
        let mut moved = false;
        // Transaction steps.
        for tx in 0..self.txs.len() {
            let pc = state.pcs[tx];
            let Some(&step) = self.programs[tx].get(pc) else {
                continue;
            };
            if pc == 0 {
                if let Some((cause, queue)) = self.txs[tx].after {
                    if !state.logs[queue].iter().any(|&(t, _, _)| t == cause) {
                        continue;
                    }
                }
            }
            let mut next = state.clone();
            next.pcs[tx] += 1;
            self.apply(&mut next, tx, step);
            moved = true;
            self.explore(next)?;
        }
        // Reader steps: peek, then pop what is first then.
        for q in 0..state.queues.len() {
            let mut next = state.clone();
            match state.peeked[q] {
                None => match state.queues[q].peek() {
                    Some(p) => next.peeked[q] = Some(p),
                    None => continue,
                },
                Some((stamp, continues)) => {
                    let Some((first, _)) = next.queues[q].first() else {
                        return Err(format!("queue {q}: peeked {stamp:?}, then empty"));
                    };
                    if first != stamp {
                        return Err(format!(
                            "queue {q}: peeked {stamp:?} but {first:?} came before it"
                        ));
                    }
                    next.queues[q].entries.remove(&first);
                    next.peeked[q] = None;
                    next.logs[q].push((stamp.1, stamp.2, continues));
                }
            }
            moved = true;
            self.explore(next)?;
        }
        if !moved {
            self.finals += 1;
            self.check_final(&state)?;
        }
        Ok(())
    }

    fn apply(&self, state: &mut State, tx: usize, step: Step) {
        let dsts = &self.txs[tx].dsts;
        match step {
            Step::Stage(part, raise) => {
                let queue = &mut state.queues[dsts[part]];
                let stamp = (queue.clock + 1, tx, part);
                if raise {
                    queue.clock = stamp.0;
                }
                queue.entries.insert(stamp, false);
                state.staged[tx][part] = Some(stamp);
            }
            Step::Raise(part) => {
                let time = self.commit_time(state, tx, part);
                let queue = &mut state.queues[dsts[part]];
                queue.clock = queue.clock.max(time);
            }
            Step::Commit(part) => {
                let time = self.commit_time(state, tx, part);
                let staged = state.staged[tx][part].expect("staged before commit");
                let queue = &mut state.queues[dsts[part]];
                queue.entries.remove(&staged);
                queue.entries.insert((time, tx, part), true);
            }
            Step::Push(part) => {
                let queue = &mut state.queues[dsts[part]];
                queue.clock += 1;
                queue.entries.insert((queue.clock, tx, part), true);
            }
        }
    }

    fn check_final(&self, state: &State) -> Result<(), String> {
        let logs = &state.logs;
        for (q, queue) in state.queues.iter().enumerate() {
            if !queue.entries.is_empty() {
                return Err(format!("queue {q} stuck with {:?}", queue.entries));
            }
            let mut got: Vec<(usize, usize)> = logs[q].iter().map(|&(t, p, _)| (t, p)).collect();
            got.sort_unstable();
            let mut want: Vec<(usize, usize)> = self
                .txs
                .iter()
                .enumerate()
                .flat_map(|(t, tx)| {
                    tx.dsts
                        .iter()
                        .enumerate()
                        .filter(move |&(_, &d)| d == q)
                        .map(move |(p, _)| (t, p))
                })
                .collect();
            want.sort_unstable();
            if got != want {
                return Err(format!("queue {q} received {got:?}, was sent {want:?}"));
            }
            // Batches: back to back, flagged but the last.
            for (i, &(t, _, continues)) in logs[q].iter().enumerate() {
                let next_same = logs[q].get(i + 1).is_some_and(|&(n, _, _)| n == t);
                let more_later = logs[q][i + 1..].iter().any(|&(n, _, _)| n == t);
                if continues != next_same || more_later != next_same {
                    return Err(format!(
                        "queue {q}: batch of transaction {t} broken: {:?}",
                        logs[q]
                    ));
                }
            }
        }
        let position = |q: usize, t: usize| logs[q].iter().position(|&(n, _, _)| n == t);
        for a in 0..self.txs.len() {
            for b in 0..self.txs.len() {
                if a == b {
                    continue;
                }
                // Global order.
                let before: Vec<bool> = (0..logs.len())
                    .filter_map(|q| Some(position(q, a)? < position(q, b)?))
                    .collect();
                if before.windows(2).any(|w| w[0] != w[1]) {
                    return Err(format!(
                        "transactions {a} and {b} received in different orders: {logs:?}"
                    ));
                }
            }
            // Causality.
            if let Some((cause, _)) = self.txs[a].after {
                for q in 0..logs.len() {
                    if let (Some(pe), Some(pc)) = (position(q, a), position(q, cause)) {
                        if pe < pc {
                            return Err(format!(
                                "queue {q} received {a} before its cause {cause}: {logs:?}"
                            ));
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn multicast(dsts: &[usize]) -> Tx {
        Tx {
            kind: Kind::Multicast,
            dsts: dsts.to_vec(),
            after: None,
        }
    }

    fn one(kind: Kind, dst: usize) -> Tx {
        Tx {
            kind,
            dsts: vec![dst],
            after: None,
        }
    }

    fn after(mut tx: Tx, cause: usize, queue: usize) -> Tx {
        tx.after = Some((cause, queue));
        tx
    }

    /// The scenarios: (name, queues, transactions).
    fn scenarios() -> Vec<(&'static str, usize, Vec<Tx>)> {
        vec![
            (
                "two multicasts, same destinations",
                2,
                vec![multicast(&[0, 1]), multicast(&[0, 1])],
            ),
            (
                "two multicasts, opposite staging order",
                2,
                vec![multicast(&[0, 1]), multicast(&[1, 0])],
            ),
            (
                "three overlapping multicasts",
                3,
                vec![multicast(&[0, 1]), multicast(&[1, 2]), multicast(&[2, 0])],
            ),
            (
                "multicasts with a unicast and a notification",
                2,
                vec![
                    multicast(&[0, 1]),
                    multicast(&[1, 0]),
                    one(Kind::Unicast, 0),
                    one(Kind::Push, 1),
                ],
            ),
            (
                "a batch: two entries in one queue",
                2,
                vec![multicast(&[0, 0, 1]), multicast(&[1, 0])],
            ),
            (
                "causality through a reader, with a concurrent multicast",
                3,
                vec![
                    multicast(&[0, 1, 2]),
                    after(multicast(&[1, 2]), 0, 0),
                    multicast(&[2, 1]),
                ],
            ),
            (
                "causality, the effect sorting first on ties",
                3,
                vec![
                    after(multicast(&[1, 2]), 1, 0),
                    multicast(&[0, 1, 2]),
                    multicast(&[2, 1]),
                ],
            ),
            (
                "four multicasts over three queues, one caused",
                3,
                vec![
                    multicast(&[0, 1]),
                    multicast(&[1, 2]),
                    multicast(&[2, 0]),
                    after(multicast(&[0, 2]), 0, 1),
                ],
            ),
            (
                "causality by a unicast to the cause's last destination",
                3,
                vec![
                    multicast(&[0, 1, 2]),
                    after(one(Kind::Unicast, 2), 0, 0),
                    after(one(Kind::Push, 1), 0, 0),
                ],
            ),
        ]
    }

    #[test]
    fn the_algorithm_keeps_every_property_in_every_interleaving() {
        for (name, queues, txs) in scenarios() {
            let mut checker = Checker::new(&txs, Variant::Correct);
            let states = checker
                .run(queues)
                .unwrap_or_else(|violation| panic!("{name}: {violation}"));
            assert!(checker.finals > 0);
            println!("{name}: {states} states, {} final states", checker.finals);
        }
    }

    #[test]
    fn every_broken_variant_is_caught() {
        for variant in [
            Variant::NoClockRaise,
            Variant::RaiseAtCommit,
            Variant::PerQueueCommitTime,
        ] {
            let caught: Vec<String> = scenarios()
                .into_iter()
                .filter_map(|(name, queues, txs)| {
                    let violation = Checker::new(&txs, variant).run(queues).err()?;
                    Some(format!("{name}: {violation}"))
                })
                .collect();
            assert!(!caught.is_empty(), "{variant:?} was not caught");
            println!(
                "{variant:?} caught in {} scenarios, e.g. {}",
                caught.len(),
                caught[0]
            );
        }
    }
}
