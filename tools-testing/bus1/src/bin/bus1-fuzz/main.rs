// SPDX-License-Identifier: GPL-2.0
//! `bus1-fuzz`: random system call sequences against bus1.
//!
//! Two modes, both reproducible from the seed they print:
//!
//! * **differential** (`differential.rs`): one thread drives every bus1
//!   call with random, often invalid, arguments over several peers of
//!   several users, and compares every result (return value, errno, what
//!   a receive reports, ids, file descriptors, written error arrays) with
//!   a reference model of the documented semantics (`model.rs`).  A
//!   difference is shrunk to a short sequence and printed with the seed.
//! * **concurrent** (`concurrent.rs`): threads in several processes of
//!   several users do the same at once; results are not predictable, so
//!   invariants are checked: nothing lost or duplicated, global and causal
//!   order, no message after a node's destruction, quotas and object
//!   counts back to zero.
//!
//! Both print a coverage table of every call's results against the errnos
//! its man page documents.  The kernel's own reports (KASAN, lockdep, ...)
//! are caught by whoever boots the kernel (`scripts/boot.sh`).
//!
//! ```text
//! bus1-fuzz [--mode differential|concurrent|all] [--ops N] [--seed S]
//!           [--threads T] [--processes P] [--users U] [--long]
//! ```

mod concurrent;
mod coverage;
mod differential;
mod model;
mod rng;
mod sysctl;

use std::process::ExitCode;
use std::time::Instant;

use coverage::Coverage;

struct Args {
    mode: String,
    ops: u64,
    seed: u64,
    threads: usize,
    processes: usize,
    users: usize,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        mode: "all".into(),
        ops: 200_000,
        seed: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64),
        threads: 2,
        processes: 2,
        users: 3,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().ok_or(format!("{arg} needs a value"));
        match arg.as_str() {
            "--mode" => args.mode = value()?,
            "--ops" => args.ops = value()?.parse().map_err(|e| format!("--ops: {e}"))?,
            "--seed" => args.seed = value()?.parse().map_err(|e| format!("--seed: {e}"))?,
            "--threads" => args.threads = value()?.parse().map_err(|e| format!("{e}"))?,
            "--processes" => args.processes = value()?.parse().map_err(|e| format!("{e}"))?,
            "--users" => args.users = value()?.parse().map_err(|e| format!("{e}"))?,
            // The long run; a later --ops still counts.
            "--long" => {
                args.ops = args.ops.max(10_000_000);
                args.threads = 4;
                args.processes = 2;
                args.users = 3;
            }
            _ => return Err(format!("unknown argument {arg}")),
        }
    }
    if !["all", "differential", "concurrent"].contains(&args.mode.as_str()) {
        return Err(format!("unknown mode {}", args.mode));
    }
    Ok(args)
}

/// The uids the fuzzer acts as: root and unprivileged users.
fn uids(users: usize) -> Vec<u32> {
    let mut uids = vec![0];
    uids.extend((0..users.saturating_sub(1)).map(|i| 1000 + i as u32));
    uids
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(e) => {
            eprintln!("bus1-fuzz: {e}");
            return ExitCode::from(2);
        }
    };
    let mut coverage = Coverage::default();
    let mut failed = false;
    // With "all", half the operations go to each mode.
    let share = if args.mode == "all" {
        args.ops / 2
    } else {
        args.ops
    };

    if args.mode != "concurrent" {
        let start = Instant::now();
        let cfg = differential::Config {
            seed: args.seed,
            ops: share,
            uids: uids(args.users),
        };
        match differential::run(&cfg) {
            Ok(report) => {
                let secs = start.elapsed().as_secs_f64();
                println!(
                    "fuzz differential: ok: {} ops in {secs:.1}s ({:.0} ops/s), seed {}; {}",
                    report.ops,
                    report.ops as f64 / secs,
                    args.seed,
                    report.summary
                );
                coverage.merge(&report.coverage);
            }
            Err(e) => {
                println!("fuzz differential: FAILED (seed {}):\n{e}", args.seed);
                failed = true;
            }
        }
    }
    if args.mode != "differential" {
        let start = Instant::now();
        let cfg = concurrent::Config {
            seed: args.seed,
            ops: share,
            threads: args.threads,
            processes: args.processes,
            uids: uids(args.users),
        };
        match concurrent::run(&cfg) {
            Ok(report) => {
                let secs = start.elapsed().as_secs_f64();
                println!(
                    "fuzz concurrent: ok: {} ops in {secs:.1}s ({:.0} ops/s), {} processes x {} threads, seed {}; {}",
                    report.ops,
                    report.ops as f64 / secs,
                    args.processes,
                    args.threads,
                    args.seed,
                    report.summary
                );
                coverage.merge(&report.coverage);
            }
            Err(e) => {
                println!("fuzz concurrent: FAILED (seed {}):\n{e}", args.seed);
                failed = true;
            }
        }
    }
    println!("fuzz coverage ({} calls):", coverage.total());
    print!("{}", coverage.table());
    let missing = coverage.missing();
    println!(
        "fuzz coverage: {} documented call x errno pairs never hit: {}",
        missing.len(),
        missing
            .iter()
            .map(|(c, e)| format!("{}/{e:?}", coverage::CALLS[*c]))
            .collect::<Vec<_>>()
            .join(" ")
    );
    if !coverage.undocumented().is_empty() {
        println!("fuzz coverage: FAILED: undocumented errnos returned");
        failed = true;
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
