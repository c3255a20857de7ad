/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Entry points of the bus1 Rust code, called from the system call glue in
 * syscalls.c.  Also included by rust/bindings/bindings_helper.h so that
 * #[export] checks the Rust definitions against these declarations.
 */
#ifndef _IPC_BUS1_BUS1_H
#define _IPC_BUS1_BUS1_H

long bus1_sys_open(unsigned int flags);

#endif /* _IPC_BUS1_BUS1_H */
