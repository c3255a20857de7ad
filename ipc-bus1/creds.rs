// SPDX-License-Identifier: GPL-2.0

//! Sender credentials.
//!
//! Every data message carries who sent it: the effective uid and gid of the
//! sending task and its process and thread, taken when the message is
//! sent.  The receiver sees them in its own namespaces, as it would see
//! `SCM_CREDENTIALS`: the ids mapped into its user namespace (the overflow
//! ids when they have no mapping there), the process and thread ids in its
//! pid namespace (0 when the sender is not visible there).
//!
//! The pids are kept as `struct pid` references, which stay valid and keep
//! their numbers after the sender exits, so a message of a sender that is
//! gone still reports the ids it had.

use kernel::{bindings, task::Task};

/// A reference to a `struct pid`, or none.
struct PidRef(*mut bindings::pid);

// SAFETY: A `struct pid` is reference counted and may be used and put from
// any thread.
unsafe impl Send for PidRef {}
// SAFETY: `&PidRef` only reads the pid's numbers, which never change.
unsafe impl Sync for PidRef {}

impl PidRef {
    /// The current task's pid of the given type.
    fn current(kind: bindings::pid_type) -> Self {
        // SAFETY: `current` is a valid task; the returned pid (NULL if the
        // task is being reaped, which `current` is not) holds a reference
        // that `drop()` gives back.
        Self(unsafe { bindings::get_task_pid(Task::current_raw(), kind) })
    }

    /// The number of the pid in the current task's pid namespace.
    fn nr_in_current_ns(&self) -> i32 {
        if self.0.is_null() {
            return 0;
        }
        // SAFETY: `current` is a valid task.
        let ns = unsafe { bindings::task_active_pid_ns(Task::current_raw()) };
        // SAFETY: `self.0` holds a reference; `ns` is the current task's
        // namespace, alive while the task runs.  Both may be used without
        // locks: `pid_nr_ns()` only reads numbers that never change.
        unsafe { bindings::pid_nr_ns(self.0, ns) }
    }
}

impl Drop for PidRef {
    fn drop(&mut self) {
        // SAFETY: The reference was taken by `get_task_pid()`; `put_pid()`
        // accepts NULL.
        unsafe { bindings::put_pid(self.0) };
    }
}

/// The credentials of the sender of a message.
pub(crate) struct Creds {
    euid: bindings::kuid_t,
    egid: bindings::kgid_t,
    process: PidRef,
    thread: PidRef,
}

/// What the receiver sees: uid, gid, pid, tid.
pub(crate) type SeenCreds = (u32, u32, i32, i32);

impl Creds {
    /// Those of the current task.
    pub(crate) fn current() -> Self {
        Self {
            // SAFETY: Only reads the current task's credentials.
            euid: unsafe { bindings::current_euid() },
            // SAFETY: As above.
            egid: unsafe { bindings::current_egid() },
            process: PidRef::current(bindings::pid_type_PIDTYPE_TGID),
            thread: PidRef::current(bindings::pid_type_PIDTYPE_PID),
        }
    }

    /// The credentials as the current task (the receiver) sees them.
    pub(crate) fn seen_by_current(&self) -> SeenCreds {
        // SAFETY: The current task's user namespace is alive while the task
        // runs; the conversions only read it.
        let (uid, gid) = unsafe {
            let ns = bindings::current_user_ns();
            (
                bindings::from_kuid_munged(ns, self.euid),
                bindings::from_kgid_munged(ns, self.egid),
            )
        };
        (
            uid,
            gid,
            self.process.nr_in_current_ns(),
            self.thread.nr_in_current_ns(),
        )
    }
}
