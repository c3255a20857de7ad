/* SPDX-License-Identifier: GPL-2.0 */
/*
 * bus1 trace events.
 *
 * Every transaction has a key: the id of the peer that started it (sender),
 * its sequence number there (seq) and its commit time (time).  The key is
 * the same in every queue the transaction reaches, and queues order entries
 * by (time, sender, seq, part), so from a recorded trace one can follow a
 * message from bus1_send to each bus1_queue and bus1_recv and read off the
 * global order of all transactions.  Peers are named by the id that fdinfo
 * shows as "bus1-peer-id"; node and handle ids are those of the peer named
 * in the same event.
 */
#undef TRACE_SYSTEM
#define TRACE_SYSTEM bus1

#if !defined(_TRACE_BUS1_H) || defined(TRACE_HEADER_MULTI_READ)
#define _TRACE_BUS1_H

#include <linux/tracepoint.h>
#include <linux/types.h>

/* The entry types of bus1_recv(2), as in uapi/linux/bus1.h. */
#define show_bus1_type(type)						\
	__print_symbolic(type,						\
			 { 1, "data" },					\
			 { 2, "node_destroy" },				\
			 { 3, "node_release" })

/*
 * bus1_send - a bus1_send(2) call past its argument checks: ret is the
 * number of destinations that got the message or a negative errno; time is
 * the commit time (0 when nothing was committed).
 */
TRACE_EVENT(bus1_send,
	    TP_PROTO(u64 peer, u64 seq, u64 time, u32 n_dsts, int ret,
		     u64 n_bytes, u32 n_handles, u32 n_fds, u32 flags),
	    TP_ARGS(peer, seq, time, n_dsts, ret, n_bytes, n_handles, n_fds,
		    flags),
	    TP_STRUCT__entry(__field(u64, peer)
			     __field(u64, seq)
			     __field(u64, time)
			     __field(u64, n_bytes)
			     __field(u32, n_dsts)
			     __field(int, ret)
			     __field(u32, n_handles)
			     __field(u32, n_fds)
			     __field(u32, flags)),
	    TP_fast_assign(__entry->peer = peer;
			   __entry->seq = seq;
			   __entry->time = time;
			   __entry->n_bytes = n_bytes;
			   __entry->n_dsts = n_dsts;
			   __entry->ret = ret;
			   __entry->n_handles = n_handles;
			   __entry->n_fds = n_fds;
			   __entry->flags = flags;),
	    TP_printk("peer=%llu seq=%llu time=%llu dsts=%u ret=%d bytes=%llu handles=%u fds=%u flags=0x%x",
		      __entry->peer, __entry->seq, __entry->time,
		      __entry->n_dsts, __entry->ret, __entry->n_bytes,
		      __entry->n_handles, __entry->n_fds, __entry->flags));

/*
 * bus1_refuse - one destination of a bus1_send(2) did not get the message:
 * index is its position in the caller's array, id the sender's handle id.
 */
TRACE_EVENT(bus1_refuse,
	    TP_PROTO(u64 peer, u64 seq, u32 index, u64 id, int error),
	    TP_ARGS(peer, seq, index, id, error),
	    TP_STRUCT__entry(__field(u64, peer)
			     __field(u64, seq)
			     __field(u64, id)
			     __field(u32, index)
			     __field(int, error)),
	    TP_fast_assign(__entry->peer = peer;
			   __entry->seq = seq;
			   __entry->id = id;
			   __entry->index = index;
			   __entry->error = error;),
	    TP_printk("peer=%llu seq=%llu index=%u id=%llu error=%d",
		      __entry->peer, __entry->seq, __entry->index, __entry->id,
		      __entry->error));

/*
 * bus1_queue and bus1_recv - an entry committed to the queue of peer, and
 * received from it.  (time, sender, seq, part) is its place in the queue;
 * id is the node (data) or handle (notifications) it arrives on.
 */
DECLARE_EVENT_CLASS(bus1_entry_class,
		    TP_PROTO(u64 peer, u64 time, u64 sender, u64 seq, u64 part,
			     u32 type, u64 id, u64 n_bytes, u32 n_handles,
			     u32 n_fds),
		    TP_ARGS(peer, time, sender, seq, part, type, id, n_bytes,
			    n_handles, n_fds),
		    TP_STRUCT__entry(__field(u64, peer)
				     __field(u64, time)
				     __field(u64, sender)
				     __field(u64, seq)
				     __field(u64, part)
				     __field(u64, id)
				     __field(u64, n_bytes)
				     __field(u32, type)
				     __field(u32, n_handles)
				     __field(u32, n_fds)),
		    TP_fast_assign(__entry->peer = peer;
				   __entry->time = time;
				   __entry->sender = sender;
				   __entry->seq = seq;
				   __entry->part = part;
				   __entry->id = id;
				   __entry->n_bytes = n_bytes;
				   __entry->type = type;
				   __entry->n_handles = n_handles;
				   __entry->n_fds = n_fds;),
		    TP_printk("peer=%llu time=%llu sender=%llu seq=%llu part=%llu type=%s id=%llu bytes=%llu handles=%u fds=%u",
			      __entry->peer, __entry->time, __entry->sender,
			      __entry->seq, __entry->part,
			      show_bus1_type(__entry->type), __entry->id,
			      __entry->n_bytes, __entry->n_handles,
			      __entry->n_fds));

DEFINE_EVENT(bus1_entry_class, bus1_queue,
	     TP_PROTO(u64 peer, u64 time, u64 sender, u64 seq, u64 part,
		      u32 type, u64 id, u64 n_bytes, u32 n_handles, u32 n_fds),
	     TP_ARGS(peer, time, sender, seq, part, type, id, n_bytes,
		     n_handles, n_fds));

DEFINE_EVENT(bus1_entry_class, bus1_recv,
	     TP_PROTO(u64 peer, u64 time, u64 sender, u64 seq, u64 part,
		      u32 type, u64 id, u64 n_bytes, u32 n_handles, u32 n_fds),
	     TP_ARGS(peer, time, sender, seq, part, type, id, n_bytes,
		     n_handles, n_fds));

/*
 * bus1_node_destroy - a node of peer destroyed by the transaction
 * (peer, seq, time); holders is how many other peers held a handle.
 */
TRACE_EVENT(bus1_node_destroy,
	    TP_PROTO(u64 peer, u64 id, u64 seq, u64 time, u32 holders),
	    TP_ARGS(peer, id, seq, time, holders),
	    TP_STRUCT__entry(__field(u64, peer)
			     __field(u64, id)
			     __field(u64, seq)
			     __field(u64, time)
			     __field(u32, holders)),
	    TP_fast_assign(__entry->peer = peer;
			   __entry->id = id;
			   __entry->seq = seq;
			   __entry->time = time;
			   __entry->holders = holders;),
	    TP_printk("peer=%llu id=%llu seq=%llu time=%llu holders=%u",
		      __entry->peer, __entry->id, __entry->seq, __entry->time,
		      __entry->holders));

/*
 * bus1_handle_transfer - bus1_handle_transfer(2) gave peer dst_peer the
 * handle dst_id to the node src_peer knows as src_id.
 */
TRACE_EVENT(bus1_handle_transfer,
	    TP_PROTO(u64 src_peer, u64 src_id, u64 dst_peer, u64 dst_id),
	    TP_ARGS(src_peer, src_id, dst_peer, dst_id),
	    TP_STRUCT__entry(__field(u64, src_peer)
			     __field(u64, src_id)
			     __field(u64, dst_peer)
			     __field(u64, dst_id)),
	    TP_fast_assign(__entry->src_peer = src_peer;
			   __entry->src_id = src_id;
			   __entry->dst_peer = dst_peer;
			   __entry->dst_id = dst_id;),
	    TP_printk("src_peer=%llu src_id=%llu dst_peer=%llu dst_id=%llu",
		      __entry->src_peer, __entry->src_id, __entry->dst_peer,
		      __entry->dst_id));

/* bus1_handle_release - bus1_handle_release(2) dropped one reference. */
TRACE_EVENT(bus1_handle_release,
	    TP_PROTO(u64 peer, u64 id),
	    TP_ARGS(peer, id),
	    TP_STRUCT__entry(__field(u64, peer)
			     __field(u64, id)),
	    TP_fast_assign(__entry->peer = peer;
			   __entry->id = id;),
	    TP_printk("peer=%llu id=%llu", __entry->peer, __entry->id));

#endif /* _TRACE_BUS1_H */

/* This part must be outside protection */
#include <trace/define_trace.h>
