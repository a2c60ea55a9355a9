/* The engine's tracker: a port of the Python core's Tracker (tcplife/core/tracker.py and
 * what it calls: flows, connection, endpoint, seq, evidence, changes, rules, verdict,
 * timers, events), without an observer. Segments in (int64 columns), events out (C
 * structs in a growable buffer, see tl_out).
 *
 * Files: track_core.c (the tracker: flows, timers, instances, the end of a connection),
 * track_rules.c (the per-segment rules, the changes through the tables, the evidence),
 * track_py.c (the Python type `_engine.Tracker` and the events as tuples).
 *
 * Every state change goes through TL_MOVE / TL_NOTE / TL_REUSE / TL_PAIR (tables.h).
 * Python's None is TL_NONE for times and TL_NOSEQ for sequence numbers. */
#ifndef TCPLIFE_TRACK_H
#define TCPLIFE_TRACK_H

#include <stddef.h>
#include <stdint.h>

#include "tables.h"

#define TL_NONE INT64_MIN /* None, for times (ns), frames and counters */
#define TL_NOSEQ (-1)     /* None, for 32-bit sequence numbers */
#define TL_CLIENT 0
#define TL_SERVER 1
#define TL_NOSIDE 2 /* "" (a given-up note, an eviction timer) */

/* input bounds: outside them the tracker refuses the batch (see tl_check_row) */
#define TL_TS_MAX (INT64_C(1) << 62)
#define TL_OPT_NS_MAX (INT64_C(1) << 61)

/* what evidence would contradict a transition (the Python `kind` strings) */
enum tl_kind { TL_K_NONE, TL_K_FIN, TL_K_ACK_FIN, TL_K_ACK_SYN, TL_K_SYNACK, TL_K_TIMEOUT,
               TL_N_KINDS };
extern const char *const TL_KIND_NAMES[TL_N_KINDS];

/* a retraction's reason (the Python strings, in rules.py) */
enum tl_reason { TL_R_RST_NO_FIN, TL_R_SYNACK_RTX, TL_R_SYN_RTX, TL_R_FIN_RTX,
                 TL_R_AFTER_TIMEOUT, TL_R_TSECR, TL_R_NOT_COVERED, TL_R_NO_SOCKET,
                 TL_N_REASONS };
extern const char *const TL_REASON_TEXTS[TL_N_REASONS];

/* a transition's text beyond its event's name */
enum tl_text { TL_T_EV, TL_T_FIN_BY_TSECR, TL_T_TW_NEWER_TS, TL_T_TW_TAKEN_AT };

/* oddity facts */
enum tl_facts { TL_F_NONE, TL_F_RST_SENT, TL_F_FIN_RTX, TL_F_ACK_LOST, TL_F_RETRACTED,
                TL_F_PORT_REUSE };

#define TL_DETAIL_MAX 200

typedef struct {
    int64_t tid, conn_id, ts, addr, frame, text_arg;
    int32_t port;
    int8_t side, from, to, ev, text, inferred;
} tl_trans;

typedef struct {
    int64_t conn_id, ts, frame, caddr, saddr;
    int32_t cport, sport;
    int8_t role_inferred, mid_stream;
} tl_started;

typedef struct {
    int64_t tid, conn_id, ts, frame;
    int8_t side, reason;
} tl_retraction;

typedef struct {
    int64_t conn_id, ts, frame;
    int64_t probes, probe_since, undone, old_conn_id;
    int8_t side, name, facts;
    int8_t f_state, f_unread, f_ack, f_fin_sent, f_zero_window, f_hole, f_kind,
        f_no_socket, n_sockets;
    int8_t sock_side[2], sock_state[2];
    char detail[TL_DETAIL_MAX];
} tl_odd;

typedef struct {
    int64_t conn_id, first_ts, last_ts, first_frame, last_frame, packets;
    int64_t caddr, saddr, cpackets, spackets, cbytes, sbytes;
    int64_t c_last_ns, s_last_ns, c_last_payload_ns, s_last_payload_ns;
    int32_t cport, sport;
    int8_t ip_version, cstate, sstate, cinit, sinit, close_kind, role_inferred, mid_stream,
        c_eventual, s_eventual;
} tl_record;

typedef struct {
    tl_record record;
    size_t trans_off, trans_n, notes_off, notes_n;
    int8_t at_end;
} tl_ended;

enum tl_etype { TL_E_STARTED, TL_E_TRANSITION, TL_E_RETRACTION, TL_E_ODDITY, TL_E_ENDED,
                TL_E_INPUT_ENDED, TL_E_CLOCK };

typedef struct {
    int type;
    union {
        tl_started started;
        tl_trans trans;
        tl_retraction retraction;
        size_t index; /* ODDITY: into odds; ENDED: into ends */
        int64_t ts;   /* INPUT_ENDED, CLOCK */
    } u;
} tl_event;

/* The events accumulated since the last take, in order (what a column writer reads):
 * ev[0..n) in emission order; an ODDITY's fields are odds[ev.u.index]; an ENDED's are
 * ends[ev.u.index], whose transitions are trans[trans_off..+trans_n) (judged_by's
 * (ts, tid) order) and notes odds[notes_off..+notes_n). Times and frames TL_NONE where
 * Python has None; a transition's text is TL_EV_NAMES[ev] unless `text` says otherwise
 * (track_py.c renders those). tl_out_clear empties it, keeping its memory. */
typedef struct {
    tl_event *ev; size_t n, cap;
    tl_odd *odds; size_t n_odds, cap_odds;       /* oddities, and ENDED's notes */
    tl_ended *ends; size_t n_ends, cap_ends;
    tl_trans *trans; size_t n_trans, cap_trans;  /* ENDED's transitions */
} tl_out;

/* a side's transition history with what undoing each needs (Endpoint.history/undo) */
typedef struct {
    tl_trans t;
    int64_t since; /* when the side had entered t.from */
    int8_t kind;
} tl_hist;

typedef struct {
    int64_t addr;
    int32_t port;
    int8_t side, state, initial_state;
    int64_t since_ns;
    int64_t isn, alt_isn, snd_nxt, data_hi, fin_seq, fin_seg_seq, max_ack; /* TL_NOSEQ */
    int64_t fin_seg_ts;
    int8_t fin_hole, got_fin, fin_acked, silence_noted, not_orphan, has_key;
    int8_t has_syn_cover, has_fin_cover;
    int64_t window, wscale, bytes, packets;
    int64_t first_syn_ns, last_syn_ns, first_synack_ns, rtt_ns, last_ns, last_data_ns,
        last_fin_ns, last_payload_ns, rtx_run_start_ns, probe_since_ns; /* TL_NONE */
    int64_t syn_cover_ts, syn_cover_frame, fin_cover_ts, fin_cover_frame;
    int64_t key[5];
    int64_t rtx_run, probes, timer_gen;
    int64_t tsval_hi, fin_tsval;
    tl_hist *hist; size_t n_hist, cap_hist;
} tl_ep;

typedef struct tl_conn {
    int64_t conn_id;
    int64_t first_ts, last_ts, first_frame, last_frame, packets, evict_gen;
    tl_ep ep[2]; /* client, server */
    int8_t ip_version, role_inferred, mid_stream, refused, rst_closed, timed_out, finished;
    struct tl_conn *pred; /* the predecessor while its old socket lives */
    int64_t refs;         /* how many instances name it as predecessor */
    tl_odd *notes; size_t n_notes, cap_notes;
    void *watch;          /* glue: what the hooks keep about the instance (the peers) */
    struct tl_conn *all_prev, *all_next; /* every instance allocated (freed at the end) */
} tl_conn;

typedef struct {
    int64_t src, dst;
    int32_t sport, dport;
    tl_conn *conn; /* NULL: empty slot */
} tl_slot;

enum tl_tkind { TL_TK_STATE, TL_TK_RTX, TL_TK_EVICT };

typedef struct {
    int64_t deadline, seq, conn_id, gen;
    int8_t side, kind;
} tl_timer;

/* one segment (a row of the columns) */
typedef struct {
    int64_t frame, ts, ip_version, src, sport, dst, dport, seq, ack, flags, plen, window,
        wscale, tsval, tsecr;
} tl_seg;

/* glue: what watches the tracker (engine/pipeline.h), as the Python tracker calls its
 * observer (tcplife/core/observe.py); a NULL hook is not called. `segment`: every
 * segment, first; `opened`: a segment starts an instance (its result, the instance's
 * watch, kept in conn->watch); `feed`: each segment routed to an instance with a watch;
 * `ended`: the instance's record is out.ends[index] (the watch is handed over);
 * `release`: a watch not handed over is dropped with its instance; `chunk`: finish made
 * TL_FINISH_CHUNK events since out.ev[chunk_mark] (Tracker.finish_chunks' lists). */
#define TL_FINISH_CHUNK 4096
#define TL_E_ANOMALY 7 /* a pipeline's event: an anomaly (tl_event.u.index) */
typedef struct {
    void *ctx;
    void (*segment)(void *ctx, const tl_seg *s);
    void *(*opened)(void *ctx, int64_t conn_id, const tl_seg *s, int sender_is_client);
    void (*feed)(void *ctx, void *watch, const tl_seg *s, int from_client);
    void (*ended)(void *ctx, void *watch, size_t index);
    void (*release)(void *ctx, void *watch);
    void (*chunk)(void *ctx);
} tl_hooks;

typedef struct {
    int64_t opt_ns[TL_N_OPTIONS];
    /* the flow table: 4-tuples (both directions) -> instance, open addressing */
    tl_slot *slots; size_t n_slots, used;
    tl_slot recent[2]; int recent_next; /* the last two lookups (emptied on any change) */
    /* the open instances by id: byid[conn_id - base], NULL once ended */
    tl_conn **byid; size_t n_byid, cap_byid, head; int64_t base;
    /* ended instances to free at the end of the call */
    tl_conn **grave; size_t n_grave, cap_grave;
    tl_conn *all;
    tl_conn **spare; size_t n_spare; /* freed instances kept for reuse, with their buffers */
    tl_timer *heap; size_t n_heap, cap_heap, compact_at;
    int64_t timer_seq, next_conn_id, next_tid;
    int64_t now_ns, ending_at; /* TL_NONE: None */
    int finishing;
    tl_out out;
    int nomem;       /* an allocation failed: the tracker is unusable */
    const char *bug; /* an impossible transition was asked (Python raises ValueError) */
    const tl_hooks *hooks; /* glue: NULL, or what watches the tracker */
    size_t chunk_mark;     /* glue: where finish's current list of events starts */
} tl_tracker;

/* NULL, or why the tracker refuses the row (values no reader gives: see TL_TS_MAX) */
static inline const char *tl_check_row(const tl_seg *s) {
    if (s->frame < 0) return "a negative frame number";
    if (s->ts < 0 || s->ts >= TL_TS_MAX) return "ts_ns outside [0, 2**62)";
    if (s->sport < 0 || s->sport > 65535 || s->dport < 0 || s->dport > 65535)
        return "a port outside [0, 65535]";
    if (s->seq < 0 || s->seq > UINT32_MAX || s->ack < 0 || s->ack > UINT32_MAX)
        return "seq or ack outside [0, 2**32)";
    if (s->flags < 0 || s->flags > 255) return "flags outside [0, 255]";
    if (s->plen < 0 || s->plen > UINT32_MAX) return "payload_len outside [0, 2**32)";
    if (s->window < 0 || s->window > 65535) return "window outside [0, 65535]";
    if (s->wscale < -1 || s->wscale > 255) return "wscale outside [-1, 255]";
    if (s->tsval < -1 || s->tsval > UINT32_MAX || s->tsecr < -1 || s->tsecr > UINT32_MAX)
        return "tsval or tsecr outside [-1, 2**32)";
    if (s->ip_version < 0 || s->ip_version > 127) return "ip_version outside [0, 127]";
    return NULL;
}

/* track_core.c */
int tl_tracker_init(tl_tracker *t, const int64_t *opt_ns);
void tl_tracker_free(tl_tracker *t);
void tl_feed(tl_tracker *t, const tl_seg *s);
void tl_advance(tl_tracker *t, int64_t now);
void tl_finish(tl_tracker *t, int64_t end_ns); /* TL_NONE: None */
void tl_sweep(tl_tracker *t);                  /* frees the instances ended in a call */
void tl_out_clear(tl_out *o);
void tl_push_timer(tl_tracker *t, int64_t deadline, tl_conn *conn, int side, int64_t gen,
                   int kind);
void tl_arm_state_timer(tl_tracker *t, tl_conn *conn, tl_ep *ep);
size_t tl_open_count(const tl_tracker *t);
tl_event *tl_emit(tl_tracker *t, int type);

/* track_rules.c */
int tl_process(tl_tracker *t, tl_conn *conn, const tl_seg *s);
void tl_move(tl_tracker *t, tl_conn *conn, tl_ep *ep, int ev, int to, int64_t frame,
             int64_t ts, int inferred, int kind, int text, int64_t text_arg);
void tl_transition(tl_tracker *t, tl_conn *conn, tl_ep *ep, int ev, int64_t frame,
                   int64_t ts, int inferred, int kind, int text, int64_t text_arg);
void tl_decide(tl_ep *ep, int ev);
tl_odd *tl_note(tl_tracker *t, tl_conn *conn, int side, int name, int64_t ts,
                int64_t frame);
void tl_odd_text(tl_tracker *t, tl_odd *o, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
/* seq.py: seq_diff (the signed distance a - b in [-2**31, 2**31)) and seq_add */
static inline int64_t tl_seq_diff(int64_t a, int64_t b) {
    uint32_t d = (uint32_t)((uint64_t)a - (uint64_t)b);
    return d >= UINT32_C(0x80000000) ? (int64_t)d - INT64_C(4294967296) : (int64_t)d;
}

static inline int64_t tl_seq_add(int64_t a, int64_t n) {
    return (int64_t)(uint32_t)((uint64_t)a + (uint64_t)n);
}
int tl_looks_like_server(int64_t sport, int64_t dport);
int tl_is_new_incarnation(const tl_conn *conn, const tl_seg *s);
int tl_tw_takes(const tl_ep *sender, const tl_ep *receiver, const tl_seg *s);
int tl_belongs_to_predecessor(const tl_conn *conn, const tl_seg *s);
int tl_server_stayed_silent(const tl_conn *conn, int64_t end);
int tl_close_kind(const tl_conn *conn);

#endif
