/* The tracker's per-segment rules, the changes through the tables and the evidence: a
 * port of tcplife/core/rules.py, changes.py, evidence.py, endpoint.py and seq.py (the
 * specification; the comments there say why each rule is what it is). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "track.h"

const char *const TL_KIND_NAMES[TL_N_KINDS] = {"", "fin", "ack_fin", "ack_syn", "synack",
                                               "timeout"};
const char *const TL_REASON_TEXTS[TL_N_REASONS] = {
    "its RST does not acknowledge the peer's FIN: not received yet",
    "SYN-ACK retransmitted",
    "SYN retransmitted",
    "FIN retransmitted",
    "still sending after the timeout",
    "its TSecr predates the peer's FIN: sent before it arrived",
    "its ACK does not cover the peer's FIN: not received yet",
    "a bare RST: its kernel had no socket for the connection",
};

#define ST(x) TL_STATE_##x
#define IS_ALIVE(s) ((TL_MASK_ALIVE >> (s)) & 1u)

/* ------------------------------------------------------------------ seq.py */
static int64_t seq_max(int64_t a, int64_t b) {
    return (a == TL_NOSEQ || tl_seq_diff(b, a) > 0) ? b : a;
}

/* ------------------------------------------------------------------ endpoint.py */
static int64_t fin_end(const tl_ep *ep) {
    return ep->fin_seq == TL_NOSEQ ? TL_NOSEQ : tl_seq_add(ep->fin_seq, 1);
}

static int covers(int64_t ack, int64_t end) {
    return end != TL_NOSEQ && tl_seq_diff(ack, end) >= 0;
}

/* (3 * rtt) // 2 + 1 ms, with Python's floor division, written so as not to overflow */
static int64_t crossing_window(const tl_ep *ep) {
    if (ep->rtt_ns == TL_NONE) return 1000000;
    int64_t r = ep->rtt_ns, h = r / 2;
    if (r % 2 != 0 && r < 0) h -= 1;
    return r + h + 1000000;
}

/* the index in hist of the latest transition `kind` would contradict, or -1 */
static long latest(const tl_ep *ep, int kind) {
    for (size_t i = ep->n_hist; i > 0; i--)
        if (ep->hist[i - 1].kind == kind) return (long)(i - 1);
    return -1;
}

static tl_ep *peer_of(tl_conn *conn, tl_ep *ep) {
    return ep == &conn->ep[0] ? &conn->ep[1] : &conn->ep[0];
}

/* ------------------------------------------------------------------ evidence.py */
int tl_looks_like_server(int64_t sport, int64_t dport) {
    int s_known = sport < 1024, d_known = dport < 1024;
    for (int i = 0; i < TL_N_WELL_KNOWN_PORTS; i++) {
        if (sport == TL_WELL_KNOWN_PORTS[i]) s_known = 1;
        if (dport == TL_WELL_KNOWN_PORTS[i]) d_known = 1;
    }
    if (s_known != d_known) return s_known;
    return sport < dport;
}

static int rst_acceptable(const tl_ep *a, const tl_ep *b, const tl_seg *s) {
    if (b->state == ST(SYN_SENT))
        return (s->flags & TL_FLAG_ACK) && b->isn != TL_NOSEQ
               && s->ack == tl_seq_add(b->isn, 1);
    int64_t e[2];
    int n = 0;
    if (a->snd_nxt != TL_NOSEQ) e[n++] = a->snd_nxt;
    if (b->max_ack != TL_NOSEQ) e[n++] = b->max_ack;
    if (n == 0) return 1;
    int64_t lo = e[0], hi = e[0];
    if (n == 2) {
        int64_t d = tl_seq_diff(e[1], e[0]);
        if (d < 0) lo = e[1];
        if (d > 0) hi = e[1];
    }
    return tl_seq_diff(s->seq, tl_seq_add(lo, -1)) >= 0 && tl_seq_diff(s->seq, hi) <= 0;
}

static int is_sender_client(const tl_conn *conn, const tl_seg *s) {
    return s->src == conn->ep[0].addr && s->sport == conn->ep[0].port;
}

int tl_is_new_incarnation(const tl_conn *conn, const tl_seg *s) {
    int c = is_sender_client(conn, s);
    const tl_ep *sender = &conn->ep[c ? 0 : 1], *peer = &conn->ep[c ? 1 : 0];
    if (sender->isn != TL_NOSEQ) return sender->isn != s->seq;
    return !(peer->state == ST(SYN_SENT) && sender->packets == 0);
}

/* -1: None; 0: ""; 1: ": newer timestamp" */
int tl_tw_takes(const tl_ep *sender, const tl_ep *receiver, const tl_seg *s) {
    int64_t expected = receiver->max_ack != TL_NOSEQ ? receiver->max_ack : sender->snd_nxt;
    int seq_after = expected == TL_NOSEQ || tl_seq_diff(s->seq, expected) > 0;
    if (s->tsval >= 0 && sender->tsval_hi >= 0 && receiver->tsval_hi >= 0) {
        int64_t age = tl_seq_diff(s->tsval, sender->tsval_hi);
        if (age < 0) return -1;
        if (seq_after) return 0;
        return age > 0 ? 1 : -1;
    }
    return seq_after ? 0 : -1;
}

int tl_belongs_to_predecessor(const tl_conn *conn, const tl_seg *s) {
    const tl_conn *old = conn->pred;
    if (old == NULL || old->finished) return 0;
    if (s->flags & TL_FLAG_SYN) return 0;
    int c = is_sender_client(old, s);
    const tl_ep *sender = &old->ep[c ? 0 : 1], *receiver = &old->ep[c ? 1 : 0];
    if (!IS_ALIVE(receiver->state) && !IS_ALIVE(sender->state)) return 0;
    if (s->flags & TL_FLAG_RST)
        return IS_ALIVE(receiver->state)
               && (s->seq == receiver->max_ack || s->seq == sender->snd_nxt);
    return IS_ALIVE(sender->state) && s->seq == sender->snd_nxt;
}

static int server_start(const tl_seg *s) {
    int64_t f = s->flags & (TL_FLAG_SYN | TL_FLAG_ACK | TL_FLAG_RST);
    if (f == (TL_FLAG_SYN | TL_FLAG_ACK)) return TL_EV_SHOWN_LISTENING;
    if ((f & TL_FLAG_RST) || f == TL_FLAG_SYN) return TL_EV_SHOWN_CLOSED;
    return TL_EV_RECV_ACK;
}

int tl_server_stayed_silent(const tl_conn *conn, int64_t end) {
    const tl_ep *c = &conn->ep[0], *s = &conn->ep[1];
    if (s->state != ST(UNKNOWN) || s->packets || s->n_hist || conn->mid_stream
        || c->first_syn_ns == TL_NONE || c->last_syn_ns == TL_NONE)
        return 0;
    return c->last_syn_ns > c->first_syn_ns || end - c->first_syn_ns >= TL_NS;
}

static int piggybacked_ack(const tl_ep *a, const tl_seg *s) {
    return a->last_fin_ns != TL_NONE && s->ts - a->last_fin_ns < TL_MIN_RTO_NS
           && a->max_ack != TL_NOSEQ && tl_seq_diff(s->ack, a->max_ack) > 0;
}

static int sent_before_fin(const tl_ep *a, const tl_ep *b, const tl_seg *s) {
    if (s->tsecr < 0 || b->fin_tsval < 0 || b->last_fin_ns == TL_NONE || s->ack != b->fin_seq)
        return 0;
    if (s->ts - b->last_fin_ns > crossing_window(a)) return 0;
    return tl_seq_diff(s->tsecr, b->fin_tsval) < 0;
}

/* ------------------------------------------------------------------ changes.py */
void tl_odd_text(tl_tracker *t, tl_odd *o, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(o->detail, TL_DETAIL_MAX, fmt, ap);
    va_end(ap);
    if (n < 0 || n >= TL_DETAIL_MAX) t->bug = "an oddity's text longer than its buffer";
}

/* A new oddity, emitted and kept on the connection (Changes.note); its detail and facts
 * are filled by the caller (the emitted copy is taken at the end of the call: see
 * tl_note_done). Returns the connection's copy, or NULL when out of memory. */
tl_odd *tl_note(tl_tracker *t, tl_conn *conn, int side, int name, int64_t ts,
                int64_t frame) {
    if (conn->n_notes == conn->cap_notes) {
        size_t cap = conn->cap_notes ? 2 * conn->cap_notes : 4;
        tl_odd *p = realloc(conn->notes, cap * sizeof *p);
        if (p == NULL) { t->nomem = 1; return NULL; }
        conn->notes = p;
        conn->cap_notes = cap;
    }
    tl_out *o = &t->out;
    if (o->n_odds == o->cap_odds) {
        size_t cap = o->cap_odds ? 2 * o->cap_odds : 256;
        tl_odd *p = realloc(o->odds, cap * sizeof *p);
        if (p == NULL) { t->nomem = 1; return NULL; }
        o->odds = p;
        o->cap_odds = cap;
    }
    tl_event *e = tl_emit(t, TL_E_ODDITY);
    if (e == NULL) return NULL;
    e->u.index = o->n_odds++;
    tl_odd *n = &conn->notes[conn->n_notes++];
    memset(n, 0, sizeof *n);
    n->conn_id = conn->conn_id;
    n->ts = ts;
    n->frame = frame;
    n->side = (int8_t)side;
    n->name = (int8_t)name;
    n->facts = TL_F_NONE;
    n->probe_since = TL_NONE;
    return n;
}

/* the emitted copy of the connection's newest note, once filled */
static void note_done(tl_tracker *t, tl_conn *conn) {
    t->out.odds[t->out.n_odds - 1] = conn->notes[conn->n_notes - 1];
}

static void odd(tl_tracker *t, tl_conn *conn, const tl_ep *ep, const tl_seg *s, int name,
                const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 6, 7)))
#endif
    ;

static void odd(tl_tracker *t, tl_conn *conn, const tl_ep *ep, const tl_seg *s, int name,
                const char *fmt, ...) {
    tl_odd *n = tl_note(t, conn, ep->side, name, s->ts, s->frame);
    if (n == NULL) return;
    va_list ap;
    va_start(ap, fmt);
    int len = vsnprintf(n->detail, TL_DETAIL_MAX, fmt, ap);
    va_end(ap);
    /* the longest detail is ~140 bytes (two 20-digit numbers in a sentence); a longer
     * one would be a bug: refuse rather than emit a truncated text */
    if (len < 0 || len >= TL_DETAIL_MAX) t->bug = "an oddity's text longer than its buffer";
    note_done(t, conn);
}

void tl_move(tl_tracker *t, tl_conn *conn, tl_ep *ep, int ev, int to, int64_t frame,
             int64_t ts, int inferred, int kind, int text, int64_t text_arg) {
    if (ep->n_hist == ep->cap_hist) {
        size_t cap = ep->cap_hist ? 2 * ep->cap_hist : 8;
        tl_hist *p = realloc(ep->hist, cap * sizeof *p);
        if (p == NULL) { t->nomem = 1; return; }
        ep->hist = p;
        ep->cap_hist = cap;
    }
    tl_event *e = tl_emit(t, TL_E_TRANSITION);
    if (e == NULL) return;
    tl_trans *tr = &e->u.trans;
    tr->tid = t->next_tid++;
    tr->conn_id = conn->conn_id;
    tr->ts = ts;
    tr->side = ep->side;
    tr->addr = ep->addr;
    tr->port = ep->port;
    tr->from = ep->state;
    tr->to = (int8_t)to;
    tr->ev = (int8_t)ev;
    tr->text = (int8_t)text;
    tr->text_arg = text_arg;
    tr->frame = frame;
    tr->inferred = (int8_t)(inferred != 0);
    tl_hist *h = &ep->hist[ep->n_hist++];
    h->t = *tr;
    h->since = ep->since_ns;
    h->kind = (int8_t)kind;
    ep->state = (int8_t)to;
    ep->since_ns = ts;
    ep->timer_gen++;
    tl_arm_state_timer(t, conn, ep);
}

/* Changes.apply: the table's cell for ep and ev, caused by s */
static void apply(tl_tracker *t, tl_conn *conn, tl_ep *ep, int ev, const tl_seg *s,
                  int inferred, int kind) {
    int to = TL_MOVE[ep->state][ev];
    if (to < 0) {
        int note = TL_NOTE[ep->state][ev];
        if (note >= 0)
            odd(t, conn, ep, s, note, "%s in %s", TL_EV_NAMES[ev], TL_STATE_NAMES[ep->state]);
        return;
    }
    tl_move(t, conn, ep, ev, to, s->frame, s->ts, inferred || ep->state == ST(UNKNOWN), kind,
            TL_T_EV, 0);
}

void tl_transition(tl_tracker *t, tl_conn *conn, tl_ep *ep, int ev, int64_t frame,
                   int64_t ts, int inferred, int kind, int text, int64_t text_arg) {
    int to = TL_MOVE[ep->state][ev];
    if (to < 0) {
        t->bug = "no transition for an event the tracker asked for";
        return;
    }
    tl_move(t, conn, ep, ev, to, frame, ts, inferred, kind, text, text_arg);
}

void tl_decide(tl_ep *ep, int ev) {
    int to = TL_MOVE[ep->state][ev];
    if (to >= 0) ep->state = ep->initial_state = (int8_t)to;
}

static void contradict(tl_tracker *t, tl_conn *conn, tl_ep *ep, int kind, const tl_seg *s,
                       int reason, int no_socket) {
    long index = latest(ep, kind);
    if (index < 0) return;
    size_t first = (size_t)index, n = ep->n_hist - first;
    int had_fin = 0;
    for (size_t i = first; i < ep->n_hist; i++)
        if (ep->hist[i].kind == TL_K_FIN) had_fin = 1;
    for (size_t i = ep->n_hist; i > first; i--) {
        tl_event *e = tl_emit(t, TL_E_RETRACTION);
        if (e == NULL) return;
        tl_retraction *r = &e->u.retraction;
        r->tid = ep->hist[i - 1].t.tid;
        r->conn_id = conn->conn_id;
        r->side = ep->side;
        r->ts = s->ts;
        r->frame = s->frame;
        r->reason = (int8_t)reason;
    }
    ep->state = ep->hist[first].t.from;
    ep->since_ns = ep->hist[first].since;
    ep->n_hist = first;
    ep->timer_gen++;
    if (kind == TL_K_ACK_FIN) ep->fin_acked = 0;
    if (had_fin) ep->got_fin = 0;
    if (kind == TL_K_TIMEOUT) {
        int timed_out = 0;
        for (int k = 0; k < 2; k++)
            for (size_t i = 0; i < conn->ep[k].n_hist; i++)
                if (conn->ep[k].hist[i].kind == TL_K_TIMEOUT
                    && conn->ep[k].hist[i].t.from != ST(TIME_WAIT))
                    timed_out = 1;
        conn->timed_out = (int8_t)timed_out;
    }
    tl_odd *o = tl_note(t, conn, ep->side, TL_ODD_RETRACTED, s->ts, s->frame);
    if (o != NULL) {
        tl_odd_text(t, o, "%s: undid %zu transition(s)", TL_REASON_TEXTS[reason], n);
        o->facts = TL_F_RETRACTED;
        o->f_kind = (int8_t)kind;
        o->undone = (int64_t)n;
        o->f_no_socket = (int8_t)(no_socket != 0);
        note_done(t, conn);
    }
    tl_arm_state_timer(t, conn, ep);
}

/* ------------------------------------------------------------------ rules.py */
static void note_data_facts(tl_tracker *t, tl_conn *conn, tl_ep *a, const tl_seg *s) {
    if (a->snd_nxt == TL_NOSEQ) return;
    int64_t behind = tl_seq_diff(a->snd_nxt, s->seq);
    tl_ep *peer = peer_of(conn, a);
    if (s->plen <= 1 && behind == 1 && !(s->flags & TL_FLAG_FIN)
        && (a->state == ST(ESTABLISHED) || a->state == ST(CLOSE_WAIT)) && peer->window) {
        odd(t, conn, a, s, TL_ODD_KEEPALIVE_PROBE, "keep-alive probe");
        if (a->probe_since_ns == TL_NONE
            || (peer->last_ns != TL_NONE && peer->last_ns >= a->probe_since_ns)) {
            a->probe_since_ns = s->ts;
            a->probes = 0;
        }
        a->probes++;
        return;
    }
    if (!s->plen) {
        a->rtx_run = 0;
        return;
    }
    a->last_data_ns = a->last_payload_ns = s->ts;
    if (a->data_hi == TL_NOSEQ || tl_seq_diff(tl_seq_add(s->seq, s->plen), a->data_hi) > 0) {
        a->rtx_run = 0;
        a->rtx_run_start_ns = TL_NONE;
        return;
    }
    a->rtx_run++;
    if (a->rtx_run == 1) {
        a->rtx_run_start_ns = s->ts;
        tl_push_timer(t, s->ts + t->opt_ns[TL_OPT_RETRANSMIT], conn, a->side, s->ts,
                      TL_TK_RTX);
    }
    if (a->rtx_run >= 3 && s->ts - a->rtx_run_start_ns >= TL_NS && !a->silence_noted
        && !(s->flags & TL_FLAG_FIN)) {
        a->silence_noted = 1;
        int64_t span = s->ts - a->rtx_run_start_ns;
        if (span >= (INT64_C(1) << 53)) {
            /* Python divides exactly; a double would not hold the span exactly */
            t->bug = "a retransmission run longer than 104 days";
            return;
        }
        odd(t, conn, a, s, TL_ODD_SILENCE_RTX,
            "data retransmitted %lld times over %.1f s without progress",
            (long long)a->rtx_run, (double)span / 1e9);
    }
}

static void check_half_close(tl_tracker *t, tl_conn *conn, tl_ep *a, tl_ep *b,
                             const tl_seg *s) {
    int64_t acked = s->ack;
    if (b->fin_seq != TL_NOSEQ && tl_seq_diff(acked, b->fin_seq) > 0) acked = b->fin_seq;
    if (tl_seq_diff(acked, a->max_ack) > (b->fin_seq != TL_NOSEQ ? 0 : 1)) {
        a->not_orphan = 1;
        a->timer_gen++;
        odd(t, conn, a, s, TL_ODD_HALF_CLOSE, "acknowledged data from the peer after its own FIN");
    }
}

static void track_sequence(tl_ep *a, const tl_seg *s) {
    int64_t flags = s->flags;
    if (flags & TL_FLAG_RST) return;
    int64_t syn = (flags & TL_FLAG_SYN) ? 1 : 0;
    int64_t end = tl_seq_add(s->seq, s->plen + syn + ((flags & TL_FLAG_FIN) ? 1 : 0));
    a->snd_nxt = seq_max(a->snd_nxt, end);
    if (s->plen) {
        int64_t start = tl_seq_add(s->seq, syn), data_end = tl_seq_add(start, s->plen);
        if (a->data_hi == TL_NOSEQ) {
            a->bytes += s->plen;
            a->data_hi = data_end;
        } else {
            int64_t d = tl_seq_diff(data_end, a->data_hi);
            if (d > 0) {
                a->bytes += s->plen < d ? s->plen : d;
                a->data_hi = data_end;
            }
        }
    }
    if (flags & TL_FLAG_ACK) a->max_ack = seq_max(a->max_ack, s->ack);
    a->window = s->window;
    if (syn && s->wscale >= 0) a->wscale = s->wscale;
}

static void deduce_ack(tl_tracker *t, tl_conn *conn, tl_ep *b, const tl_seg *s, int ev,
                       int kind) {
    if (kind == TL_K_ACK_FIN) {
        b->has_fin_cover = 1;
        b->fin_cover_ts = s->ts;
        b->fin_cover_frame = s->frame;
        if (b->fin_acked) return;
        b->fin_acked = 1;
    } else {
        b->has_syn_cover = 1;
        b->syn_cover_ts = s->ts;
        b->syn_cover_frame = s->frame;
    }
    apply(t, conn, b, ev, s, 1, kind);
}

static void rtx_contradicts_ack(tl_tracker *t, tl_conn *conn, tl_ep *a, const tl_seg *s,
                                int kind, int reason) {
    int64_t window = crossing_window(a);
    long index = latest(a, kind);
    if (index < 0 || s->ts - a->hist[index].t.ts <= window) return;
    contradict(t, conn, a, kind, s, reason, 0);
    tl_odd *o = tl_note(t, conn, a->side, TL_ODD_ACK_LOST, s->ts, s->frame);
    if (o != NULL) {
        tl_odd_text(t, o, "%s after the peer's ACK of it", TL_REASON_TEXTS[reason]);
        o->facts = TL_F_ACK_LOST;
        o->f_kind = (int8_t)kind;
        note_done(t, conn);
    }
    int has = kind == TL_K_ACK_FIN ? a->has_fin_cover : a->has_syn_cover;
    int64_t cts = kind == TL_K_ACK_FIN ? a->fin_cover_ts : a->syn_cover_ts;
    int64_t cframe = kind == TL_K_ACK_FIN ? a->fin_cover_frame : a->syn_cover_frame;
    if (has && s->ts - cts <= window) {
        if (kind == TL_K_ACK_FIN) a->fin_acked = 1;
        int ev = kind == TL_K_ACK_FIN ? TL_EV_RECV_ACK_FIN : TL_EV_RECV_ACK_SYN;
        if (TL_MOVE[a->state][ev] >= 0)
            tl_transition(t, conn, a, ev, cframe, cts, 1, kind, TL_T_EV, 0);
    }
}

/* 1 when a's segment crossed b's FIN (by TSecr) */
static int check_evidence(tl_tracker *t, tl_conn *conn, tl_ep *a, tl_ep *b,
                          const tl_seg *s) {
    int64_t flags = s->flags;
    int syn = (flags & TL_FLAG_SYN) != 0, fin = (flags & TL_FLAG_FIN) != 0,
        ackf = (flags & TL_FLAG_ACK) != 0;
    if (syn && a->isn != TL_NOSEQ && s->seq == a->isn) {
        if (ackf)
            rtx_contradicts_ack(t, conn, a, s, TL_K_ACK_SYN, TL_R_SYNACK_RTX);
        else
            contradict(t, conn, a, TL_K_SYNACK, s, TL_R_SYN_RTX, 0);
    }
    if (fin && a->fin_seq != TL_NOSEQ && tl_seq_add(s->seq, s->plen) == a->fin_seq)
        rtx_contradicts_ack(t, conn, a, s, TL_K_ACK_FIN, TL_R_FIN_RTX);
    if (a->state == ST(CLOSED) && latest(a, TL_K_TIMEOUT) >= 0)
        contradict(t, conn, a, TL_K_TIMEOUT, s, TL_R_AFTER_TIMEOUT, 0);
    if (!ackf || syn) return 0;
    int64_t fe = fin_end(b);
    if (fe == TL_NOSEQ) return 0;
    if (covers(s->ack, fe)) {
        if (!a->got_fin) {
            a->got_fin = 1;
            apply(t, conn, a, TL_EV_RECV_FIN, s, 0, TL_K_NONE);
        }
    } else if (a->got_fin) {
        int crossed = sent_before_fin(a, b, s);
        contradict(t, conn, a, TL_K_FIN, s, crossed ? TL_R_TSECR : TL_R_NOT_COVERED, 0);
        return crossed;
    }
    return 0;
}

static void fin_after(tl_tracker *t, tl_conn *conn, tl_ep *a, tl_ep *b, const tl_seg *s) {
    if (a->got_fin || fin_end(b) == TL_NOSEQ) return;
    if (TL_MOVE[a->state][TL_EV_RECV_FIN] < 0) return;
    a->got_fin = 1;
    tl_transition(t, conn, a, TL_EV_RECV_FIN, s->frame, s->ts, 1, TL_K_FIN, TL_T_FIN_BY_TSECR,
                  0);
    int64_t afe = fin_end(a);
    if (afe != TL_NOSEQ && b->max_ack != TL_NOSEQ && covers(b->max_ack, afe)) {
        if (TL_MOVE[a->state][TL_EV_RECV_ACK_FIN] >= 0) {
            a->fin_acked = 1;
            a->has_fin_cover = 1;
            a->fin_cover_ts = s->ts;
            a->fin_cover_frame = s->frame;
            tl_transition(t, conn, a, TL_EV_RECV_ACK_FIN, s->frame, s->ts, 1, TL_K_ACK_FIN,
                          TL_T_EV, 0);
        }
    }
}

static void no_socket(tl_tracker *t, tl_conn *conn, tl_ep *a, const tl_seg *s) {
    contradict(t, conn, a, TL_K_ACK_SYN, s, TL_R_NO_SOCKET, 1);
    if (a->state == ST(SYN_RECEIVED)) {
        int64_t first = a->first_synack_ns != TL_NONE ? a->first_synack_ns : a->since_ns;
        int64_t deadline = first + t->opt_ns[TL_OPT_SYN_RECEIVED];
        if (deadline <= s->ts) {
            conn->timed_out = 1;
            tl_transition(t, conn, a, TL_EV_TIMEOUT, TL_NONE, deadline, 1, TL_K_TIMEOUT,
                          TL_T_EV, 0);
        }
    }
}

static void send_rst(tl_tracker *t, tl_conn *conn, tl_ep *a, tl_ep *b, const tl_seg *s) {
    if (a->state == ST(UNKNOWN) && a->side == TL_SERVER && b->state == ST(SYN_SENT)
        && !rst_acceptable(a, b, s))
        return;
    if (!(s->flags & TL_FLAG_ACK) && a->n_hist && a->hist[a->n_hist - 1].kind == TL_K_ACK_SYN
        && a->data_hi == TL_NOSEQ)
        no_socket(t, conn, a, s);
    if (a->side == TL_SERVER && a->state == ST(CLOSED) && !a->n_hist
        && b->state == ST(SYN_SENT) && a->initial_state == ST(CLOSED) && !conn->refused
        && a->packets == 1)
        conn->refused = 1;
    int unread = b->last_payload_ns != TL_NONE
                 && (a->last_data_ns == TL_NONE || b->last_payload_ns > a->last_data_ns);
    int64_t probes = (a->probe_since_ns != TL_NONE
                      && (b->last_ns == TL_NONE || b->last_ns < a->probe_since_ns))
                         ? a->probes : 0;
    tl_odd *o = tl_note(t, conn, a->side, TL_ODD_RST_SENT, s->ts, s->frame);
    if (o != NULL) {
        tl_odd_text(t, o, "RST sent in %s", TL_STATE_NAMES[a->state]);
        o->facts = TL_F_RST_SENT;
        o->f_state = a->state;
        o->f_unread = (int8_t)unread;
        o->f_ack = (s->flags & TL_FLAG_ACK) != 0;
        o->f_fin_sent = a->fin_seq != TL_NOSEQ;
        o->f_zero_window = a->window == 0 && a->max_ack != TL_NOSEQ;
        o->probes = probes;
        o->probe_since = a->probe_since_ns;
        note_done(t, conn);
    }
    if (a->state == ST(CLOSED)) return;
    int was = a->state;
    apply(t, conn, a, TL_EV_SEND_RST, s, 0, TL_K_NONE);
    if (a->state == ST(CLOSED) && was != ST(TIME_WAIT)) conn->rst_closed = 1;
}

static void recv_rst(tl_tracker *t, tl_conn *conn, tl_ep *a, tl_ep *b, const tl_seg *s) {
    if (b->state == ST(CLOSED) || b->state == ST(LISTEN)) return;
    if (!rst_acceptable(a, b, s)) {
        odd(t, conn, b, s, TL_ODD_RST_IGNORED, "RST seq %lld outside what %s would accept",
            (long long)s->seq, TL_SIDE_NAMES[b->side]);
        return;
    }
    int was = b->state;
    apply(t, conn, b, TL_EV_RECV_RST, s, 1, TL_K_NONE);
    if (b->state == ST(CLOSED) && was != ST(TIME_WAIT)) conn->rst_closed = 1;
}

static void recv(tl_tracker *t, tl_conn *conn, tl_ep *a, tl_ep *b, const tl_seg *s) {
    int64_t flags = s->flags;
    int syn = (flags & TL_FLAG_SYN) != 0, fin = (flags & TL_FLAG_FIN) != 0,
        ackf = (flags & TL_FLAG_ACK) != 0;
    if (syn) {
        if (ackf) {
            if (b->isn != TL_NOSEQ && s->ack == tl_seq_add(b->isn, 1))
                apply(t, conn, b, TL_EV_RECV_SYNACK, s, 1, TL_K_SYNACK);
            else if (b->state == ST(SYN_SENT))
                odd(t, conn, b, s, TL_ODD_BAD_SYNACK, "SYN-ACK acknowledges %lld, not the SYN",
                    (long long)s->ack);
        } else {
            apply(t, conn, b, TL_EV_RECV_SYN, s, 1, TL_K_NONE);
        }
        return;
    }
    if (a->fin_seq != TL_NOSEQ && !b->got_fin && !fin && tl_seq_diff(s->seq, a->fin_seq) > 0) {
        b->got_fin = 1;
        apply(t, conn, b, TL_EV_RECV_FIN, s, 1, TL_K_FIN);
    }
    if (ackf) {
        if (b->alt_isn != TL_NOSEQ && b->state == ST(SYN_RECEIVED)
            && s->ack == tl_seq_add(b->alt_isn, 1)) {
            int64_t x = b->isn;
            b->isn = b->alt_isn;
            b->alt_isn = x;
            b->snd_nxt = s->ack;
        }
        if (b->isn != TL_NOSEQ && (b->state == ST(SYN_RECEIVED) || b->state == ST(SYN_SENT))
            && covers(s->ack, tl_seq_add(b->isn, 1)))
            deduce_ack(t, conn, b, s, TL_EV_RECV_ACK_SYN, TL_K_ACK_SYN);
        int64_t fe = fin_end(b);
        if (fe != TL_NOSEQ && covers(s->ack, fe))
            deduce_ack(t, conn, b, s, TL_EV_RECV_ACK_FIN, TL_K_ACK_FIN);
    }
    if (fin) {
        int64_t fin_seq = tl_seq_add(s->seq, s->plen);
        if (fin_seq != a->fin_seq) return;
        if (!b->got_fin) {
            b->got_fin = 1;
            apply(t, conn, b, TL_EV_RECV_FIN, s, 1, TL_K_FIN);
        } else if (b->state == ST(TIME_WAIT)) {
            b->since_ns = s->ts;
            b->timer_gen++;
            tl_arm_state_timer(t, conn, b);
        }
    }
}

int tl_process(tl_tracker *t, tl_conn *conn, const tl_seg *s) {
    int64_t flags = s->flags, ts = s->ts;
    tl_ep *a, *b;
    if (is_sender_client(conn, s)) {
        a = &conn->ep[0];
        b = &conn->ep[1];
    } else {
        a = &conn->ep[1];
        b = &conn->ep[0];
    }
    conn->packets++;
    if (ts > conn->last_ts) conn->last_ts = ts;
    conn->last_frame = s->frame;
    a->packets++;
    int64_t key[5] = {s->seq, s->ack, flags, s->plen, s->window};
    if (a->has_key && memcmp(key, a->key, sizeof key) == 0 && a->last_ns != TL_NONE
        && ts - a->last_ns <= TL_DUPLICATE_NS) {
        odd(t, conn, a, s, TL_ODD_CAPTURE_DUPLICATE, "the same segment captured twice");
        return 0;
    }
    memcpy(a->key, key, sizeof key);
    a->has_key = 1;
    a->last_ns = ts;
    int syn = (flags & TL_FLAG_SYN) != 0, fin = (flags & TL_FLAG_FIN) != 0,
        rst = (flags & TL_FLAG_RST) != 0, ackf = (flags & TL_FLAG_ACK) != 0;
    if (s->tsval >= 0 && (fin || a->fin_seq != TL_NOSEQ || b->fin_seq != TL_NOSEQ)
        && (a->tsval_hi < 0 || tl_seq_diff(s->tsval, a->tsval_hi) > 0))
        a->tsval_hi = s->tsval;
    if (!(syn || rst)) note_data_facts(t, conn, a, s);

    if (a->state == ST(UNKNOWN) && !a->n_hist && !conn->mid_stream && a == &conn->ep[1]
        && !(rst && !rst_acceptable(a, b, s)))
        tl_decide(a, server_start(s));
    /* 1. What this segment says about what its sender has received. */
    if (ackf && b->fin_seg_seq != TL_NOSEQ && !b->fin_hole
        && tl_seq_diff(s->ack, b->fin_seg_seq) < 0 && ts - b->fin_seg_ts > crossing_window(a))
        b->fin_hole = 1;
    if (a->fin_seg_seq != TL_NOSEQ && s->plen && tl_seq_diff(s->seq, a->fin_seg_seq) < 0)
        a->fin_hole = 1;
    int crossed = 0;
    if (!rst)
        crossed = check_evidence(t, conn, a, b, s);
    else if (ackf && a->got_fin && a->state != ST(CLOSED) && a->state != ST(UNKNOWN)
             && !covers(s->ack, fin_end(b)))
        contradict(t, conn, a, TL_K_FIN, s, TL_R_RST_NO_FIN, 0);

    if (syn && fin && !rst
        && (a->state == ST(CLOSED) || a->state == ST(UNKNOWN) || a->state == ST(SYN_SENT)))
        odd(t, conn, a, s, TL_ODD_SYN_WITH_FIN, "SYN with FIN: a scan probe");

    /* 2. The sender's own change. */
    if (rst) {
        send_rst(t, conn, a, b, s);
    } else if (syn) {
        if (ackf && a->isn != TL_NOSEQ && a->isn != s->seq) {
            if (a->alt_isn != s->seq)
                odd(t, conn, a, s, TL_ODD_SYNACK_ISN_CHANGED, "SYN-ACK with ISN %lld, earlier %lld",
                    (long long)s->seq, (long long)a->isn);
            a->alt_isn = s->seq;
            recv(t, conn, a, b, s);
            return 0;
        }
        int is_rtx = a->isn != TL_NOSEQ && a->isn == s->seq;
        if (is_rtx)
            odd(t, conn, a, s, ackf ? TL_ODD_SYNACK_RTX : TL_ODD_SYN_RTX, "%s",
                ackf ? "SYN-ACK retransmitted" : "SYN retransmitted");
        if (ackf) {
            if (a->first_synack_ns == TL_NONE) {
                a->first_synack_ns = ts;
                if (b->last_syn_ns != TL_NONE && a->rtt_ns == TL_NONE)
                    a->rtt_ns = ts - b->last_syn_ns;
            }
        } else {
            if (a->first_syn_ns == TL_NONE) a->first_syn_ns = ts;
            a->last_syn_ns = ts;
        }
        if (a->isn == TL_NOSEQ) a->isn = s->seq;
        if (!is_rtx || a->state == ST(CLOSED) || a->state == ST(LISTEN)
            || a->state == ST(UNKNOWN))
            apply(t, conn, a, ackf ? TL_EV_SEND_SYNACK : TL_EV_SEND_SYN, s, 0, TL_K_NONE);
    } else if (fin) {
        int64_t fin_seq = tl_seq_add(s->seq, s->plen);
        int move = TL_MOVE[a->state][TL_EV_SEND_FIN], note = TL_NOTE[a->state][TL_EV_SEND_FIN];
        if (a->fin_seq == TL_NOSEQ && move < 0 && note >= 0) {
            odd(t, conn, a, s, note, "%s in %s", TL_EV_NAMES[TL_EV_SEND_FIN],
                TL_STATE_NAMES[a->state]);
        } else if (a->fin_seq == TL_NOSEQ) {
            a->fin_seq = fin_seq;
            a->fin_seg_seq = s->seq;
            a->fin_seg_ts = ts;
            a->last_data_ns = ts;
            apply(t, conn, a, TL_EV_SEND_FIN, s, a->state == ST(UNKNOWN), TL_K_NONE);
            if (b->max_ack != TL_NOSEQ && covers(b->max_ack, fin_end(a)))
                deduce_ack(t, conn, a, s, TL_EV_RECV_ACK_FIN, TL_K_ACK_FIN);
        } else if (fin_seq == a->fin_seq && !piggybacked_ack(a, s)) {
            tl_odd *o = tl_note(t, conn, a->side, TL_ODD_FIN_RTX, ts, s->frame);
            if (o != NULL) {
                tl_odd_text(t, o, "FIN retransmitted in %s", TL_STATE_NAMES[a->state]);
                o->facts = TL_F_FIN_RTX;
                o->f_state = a->state;
                o->f_hole = a->fin_hole;
                note_done(t, conn);
            }
        } else {
            odd(t, conn, a, s, TL_ODD_FIN_MOVED, "FIN at sequence %lld after an earlier FIN at %lld",
                (long long)fin_seq, (long long)a->fin_seq);
        }
    } else {
        if (a->rtt_ns == TL_NONE && b->first_synack_ns != TL_NONE && ackf)
            a->rtt_ns = ts - b->first_synack_ns;
        if (a->state == ST(UNKNOWN))
            apply(t, conn, a, TL_EV_SEND_ACK, s, 1, TL_K_NONE);
        else if (((a->state == ST(SYN_SENT) || a->state == ST(SYN_RECEIVED)) && ackf)
                 || a->state == ST(CLOSED))
            apply(t, conn, a, TL_EV_SEND_ACK, s, 0, TL_K_NONE);
    }
    if (ackf && !rst && !fin && (a->state == ST(FIN_WAIT_1) || a->state == ST(FIN_WAIT_2))
        && a->max_ack != TL_NOSEQ && !a->not_orphan)
        check_half_close(t, conn, a, b, s);
    if (fin && !rst) {
        a->last_fin_ns = ts;
        a->fin_tsval = s->tsval;
    }
    track_sequence(a, s);

    /* 3. What the receiver is deduced to have received. */
    if (rst)
        recv_rst(t, conn, a, b, s);
    else
        recv(t, conn, a, b, s);
    if (crossed) fin_after(t, conn, a, b, s);
    return 1;
}

/* ------------------------------------------------------------------ verdict.py */
int tl_close_kind(const tl_conn *conn) {
    const tl_ep *c = &conn->ep[0], *s = &conn->ep[1];
#define SYNC(x) ((TL_MASK_SYNCHRONIZED >> (x)) & 1u)
    if (conn->refused) return TL_CLOSE_REFUSED;
    int c_synced = SYNC(c->state);
    for (size_t i = 0; !c_synced && i < c->n_hist; i++)
        if (SYNC(c->hist[i].t.from)) c_synced = 1;
    if (c->first_syn_ns != TL_NONE && s->packets == 0 && !c_synced) return TL_CLOSE_UNANSWERED;
    int ever = SYNC(c->state) || SYNC(s->state);
    for (int k = 0; !ever && k < 2; k++)
        for (size_t i = 0; !ever && i < conn->ep[k].n_hist; i++)
            if (SYNC(conn->ep[k].hist[i].t.from)) ever = 1;
#undef SYNC
    if (conn->rst_closed) return TL_CLOSE_RST;
    if (!ever && !conn->mid_stream) return TL_CLOSE_INCOMPLETE;
#define DONE(x) ((x) == ST(CLOSED) || (x) == ST(TIME_WAIT) || (x) == ST(LISTEN))
    if (DONE(c->state) && DONE(s->state)) {
        if (c->fin_seq != TL_NOSEQ && s->fin_seq != TL_NOSEQ && !conn->timed_out)
            return TL_CLOSE_FIN;
        if (conn->timed_out) return TL_CLOSE_TIMEOUT;
        return (c->fin_seq != TL_NOSEQ || s->fin_seq != TL_NOSEQ) ? TL_CLOSE_FIN
                                                                  : TL_CLOSE_OPEN;
    }
#undef DONE
    return TL_CLOSE_OPEN;
}
