// SPDX-License-Identifier: GPL-2.0
//! The 32-bit ABI (in the booted kernel): a program built with `gcc -m32`
//! (tools-testing/compat32, built by scripts/test.sh) calls every bus1
//! system call through the i386 entry points of the x86_64 kernel, with
//! messages carrying handles and file descriptors.

use std::process::Command;

#[cfg(target_arch = "x86_64")]
#[test]
fn a_32_bit_program_uses_every_call() {
    let program = std::env::var("BUS1_COMPAT32")
        .expect("BUS1_COMPAT32 names the 32-bit test program (scripts/test.sh builds it)");
    let out = Command::new(&program)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{program} failed ({}):\n{stdout}{stderr}",
        out.status
    );
    let last = stdout.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("compat32: all ") && last.ends_with(" checks passed"),
        "{stdout}"
    );
    super::report(last);
}
