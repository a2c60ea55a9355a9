/* The tracker: the flow table, the instances, the timers, the end of a connection and the
 * event buffer. A port of tcplife/core/tracker.py, flows.py, timers.py, connection.py and
 * verdict.py's record (the specification), without an observer. */
#include <stdlib.h>
#include <string.h>

#include "track.h"

#define ST(x) TL_STATE_##x
#define IS_ALIVE(s) ((TL_MASK_ALIVE >> (s)) & 1u)

/* ------------------------------------------------------------------ events */
tl_event *tl_emit(tl_tracker *t, int type) {
    tl_out *o = &t->out;
    if (o->n == o->cap) {
        size_t cap = o->cap ? 2 * o->cap : 1024;
        tl_event *p = realloc(o->ev, cap * sizeof *p);
        if (p == NULL) { t->nomem = 1; return NULL; }
        o->ev = p;
        o->cap = cap;
    }
    tl_event *e = &o->ev[o->n++];
    e->type = type;
    return e;
}

void tl_out_clear(tl_out *o) {
    o->n = o->n_odds = o->n_ends = o->n_trans = 0;
}

static void out_free(tl_out *o) {
    free(o->ev);
    free(o->odds);
    free(o->ends);
    free(o->trans);
    memset(o, 0, sizeof *o);
}

/* ------------------------------------------------------------------ the flow table */
static uint64_t mix(uint64_t x) { /* splitmix64's finaliser */
    x ^= x >> 30;
    x *= UINT64_C(0xbf58476d1ce4e5b9);
    x ^= x >> 27;
    x *= UINT64_C(0x94d049bb133111eb);
    x ^= x >> 31;
    return x;
}

static size_t slot_of(const tl_tracker *t, int64_t src, int64_t sport, int64_t dst,
                      int64_t dport) {
    uint64_t h = mix((uint64_t)src ^ mix((uint64_t)dst + UINT64_C(0x9e3779b97f4a7c15))
                     ^ ((uint64_t)sport << 16 | (uint64_t)dport) * UINT64_C(0x9e3779b97f4a7c15));
    return (size_t)(h & (t->n_slots - 1));
}

static tl_slot *find(const tl_tracker *t, int64_t src, int64_t sport, int64_t dst,
                     int64_t dport) {
    size_t i = slot_of(t, src, sport, dst, dport);
    for (;;) {
        tl_slot *s = &t->slots[i];
        if (s->conn == NULL) return s;
        if (s->src == src && s->dst == dst && s->sport == sport && s->dport == dport) return s;
        i = (i + 1) & (t->n_slots - 1);
    }
}

static void forget_recent(tl_tracker *t) {
    t->recent[0].conn = t->recent[1].conn = NULL;
}

/* the instance a 4-tuple leads to; the last two lookups are remembered (a capture's
 * consecutive segments mostly belong to one flow, one direction then the other) */
static tl_conn *route(tl_tracker *t, int64_t src, int64_t sport, int64_t dst, int64_t dport) {
    for (int k = 0; k < 2; k++) {
        const tl_slot *r = &t->recent[k];
        if (r->conn != NULL && r->src == src && r->dst == dst && r->sport == sport
            && r->dport == dport)
            return r->conn;
    }
    tl_slot *x = find(t, src, sport, dst, dport);
    if (x->conn != NULL) {
        t->recent[t->recent_next] = *x;
        t->recent_next ^= 1;
    }
    return x->conn;
}

static int rehash(tl_tracker *t, size_t n) {
    tl_slot *old = t->slots;
    size_t n_old = t->n_slots;
    tl_slot *slots = calloc(n, sizeof *slots);
    if (slots == NULL) { t->nomem = 1; return -1; }
    t->slots = slots;
    t->n_slots = n;
    for (size_t i = 0; i < n_old; i++)
        if (old[i].conn != NULL) *find(t, old[i].src, old[i].sport, old[i].dst, old[i].dport) = old[i];
    free(old);
    return 0;
}

static int route_set(tl_tracker *t, int64_t src, int64_t sport, int64_t dst, int64_t dport,
                     tl_conn *conn) {
    forget_recent(t);
    if (2 * (t->used + 1) > t->n_slots && rehash(t, 2 * t->n_slots) < 0) return -1;
    tl_slot *s = find(t, src, sport, dst, dport);
    if (s->conn == NULL) t->used++;
    s->src = src;
    s->dst = dst;
    s->sport = (int32_t)sport;
    s->dport = (int32_t)dport;
    s->conn = conn;
    return 0;
}

/* delete a slot by backward shift (linear probing) */
static void slot_delete(tl_tracker *t, tl_slot *s) {
    forget_recent(t);
    size_t mask = t->n_slots - 1, i = (size_t)(s - t->slots), j = i;
    t->slots[i].conn = NULL;
    t->used--;
    for (;;) {
        j = (j + 1) & mask;
        tl_slot *x = &t->slots[j];
        if (x->conn == NULL) return;
        size_t home = slot_of(t, x->src, x->sport, x->dst, x->dport);
        /* may x move to i? only if its home is not in (i, j] cyclically */
        int between = i <= j ? (home > i && home <= j) : (home > i || home <= j);
        if (!between) {
            t->slots[i] = *x;
            x->conn = NULL;
            i = j;
        }
    }
}

static void unroute(tl_tracker *t, tl_conn *conn) {
    const tl_ep *c = &conn->ep[0], *s = &conn->ep[1];
    tl_slot *x = find(t, c->addr, c->port, s->addr, s->port);
    if (x->conn == conn) slot_delete(t, x);
    x = find(t, s->addr, s->port, c->addr, c->port);
    if (x->conn == conn) slot_delete(t, x);
}

static tl_conn *open_conn(const tl_tracker *t, int64_t conn_id) {
    if (conn_id < t->base) return NULL;
    uint64_t i = (uint64_t)(conn_id - t->base);
    return i < t->n_byid ? t->byid[i] : NULL;
}

size_t tl_open_count(const tl_tracker *t) {
    size_t n = 0;
    for (size_t i = t->head; i < t->n_byid; i++) n += t->byid[i] != NULL;
    return n;
}

static void flows_close(tl_tracker *t, tl_conn *conn) {
    if (conn->conn_id >= t->base) {
        size_t i = (size_t)(conn->conn_id - t->base);
        if (i < t->n_byid && t->byid[i] == conn) t->byid[i] = NULL;
    }
    while (t->head < t->n_byid && t->byid[t->head] == NULL) t->head++;
    if (!t->finishing && t->head >= 1024 && t->head * 2 >= t->n_byid) {
        memmove(t->byid, t->byid + t->head, (t->n_byid - t->head) * sizeof *t->byid);
        t->base += (int64_t)t->head;
        t->n_byid -= t->head;
        t->head = 0;
    }
    unroute(t, conn);
}

/* ------------------------------------------------------------------ instance memory */
#define TL_SPARE_MAX 4096

static void conn_free(tl_tracker *t, tl_conn *c) {
    if (c->watch != NULL && t->hooks != NULL && t->hooks->release != NULL)
        t->hooks->release(t->hooks->ctx, c->watch);
    c->watch = NULL;
    if (c->all_prev != NULL) c->all_prev->all_next = c->all_next;
    else t->all = c->all_next;
    if (c->all_next != NULL) c->all_next->all_prev = c->all_prev;
    if (t->spare != NULL && t->n_spare < TL_SPARE_MAX && c->ep[0].cap_hist <= 64
        && c->ep[1].cap_hist <= 64 && c->cap_notes <= 64) {
        t->spare[t->n_spare++] = c; /* kept with its buffers: no malloc per instance */
        return;
    }
    free(c->ep[0].hist);
    free(c->ep[1].hist);
    free(c->notes);
    free(c);
}

static void to_grave(tl_tracker *t, tl_conn *c) {
    if (t->n_grave == t->cap_grave) {
        size_t cap = t->cap_grave ? 2 * t->cap_grave : 64;
        tl_conn **p = realloc(t->grave, cap * sizeof *p);
        if (p == NULL) { t->nomem = 1; return; } /* leaked, not freed twice */
        t->grave = p;
        t->cap_grave = cap;
    }
    t->grave[t->n_grave++] = c;
}

static void drop_pred(tl_tracker *t, tl_conn *c) {
    tl_conn *p = c->pred;
    if (p == NULL) return;
    c->pred = NULL;
    if (--p->refs == 0 && p->finished) to_grave(t, p);
}

void tl_sweep(tl_tracker *t) {
    for (size_t i = 0; i < t->n_grave; i++) {
        tl_conn *c = t->grave[i];
        drop_pred(t, c); /* may append to the grave */
        conn_free(t, c);
    }
    t->n_grave = 0;
}

/* ------------------------------------------------------------------ timers */
static int timer_less(const tl_timer *a, const tl_timer *b) {
    return a->deadline < b->deadline || (a->deadline == b->deadline && a->seq < b->seq);
}

static void sift_up(tl_timer *h, size_t i) {
    tl_timer x = h[i];
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!timer_less(&x, &h[p])) break;
        h[i] = h[p];
        i = p;
    }
    h[i] = x;
}

static void sift_down(tl_timer *h, size_t n, size_t i) {
    tl_timer x = h[i];
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && timer_less(&h[c + 1], &h[c])) c++;
        if (!timer_less(&h[c], &x)) break;
        h[i] = h[c];
        i = c;
    }
    h[i] = x;
}

static tl_timer heap_pop(tl_tracker *t) {
    tl_timer top = t->heap[0];
    t->heap[0] = t->heap[--t->n_heap];
    if (t->n_heap) sift_down(t->heap, t->n_heap, 0);
    return top;
}

/* Tracker._stale */
static int stale(const tl_tracker *t, const tl_timer *x) {
    const tl_conn *conn = open_conn(t, x->conn_id);
    if (conn == NULL) return 1;
    if (x->kind == TL_TK_EVICT) return x->gen != conn->evict_gen;
    const tl_ep *ep = &conn->ep[x->side == TL_CLIENT ? 0 : 1];
    if (x->kind == TL_TK_RTX) return x->gen != ep->rtx_run_start_ns;
    return x->gen != ep->timer_gen;
}

/* Timers.compact: the same firings (a stale entry can never fire), bounded memory */
static void compact(tl_tracker *t) {
    size_t k = 0;
    for (size_t i = 0; i < t->n_heap; i++)
        if (!stale(t, &t->heap[i])) t->heap[k++] = t->heap[i];
    t->n_heap = k;
    for (size_t i = k / 2; i > 0; i--) sift_down(t->heap, k, i - 1);
    t->compact_at = 2 * k > (size_t)TL_COMPACT_MIN ? 2 * k : (size_t)TL_COMPACT_MIN;
}

void tl_push_timer(tl_tracker *t, int64_t deadline, tl_conn *conn, int side, int64_t gen,
                   int kind) {
    if (t->n_heap == t->cap_heap) {
        size_t cap = t->cap_heap ? 2 * t->cap_heap : 1024;
        tl_timer *p = realloc(t->heap, cap * sizeof *p);
        if (p == NULL) { t->nomem = 1; return; }
        t->heap = p;
        t->cap_heap = cap;
    }
    tl_timer *x = &t->heap[t->n_heap++];
    x->deadline = deadline;
    x->seq = ++t->timer_seq;
    x->conn_id = conn->conn_id;
    x->gen = gen;
    x->side = (int8_t)side;
    x->kind = (int8_t)kind;
    sift_up(t->heap, t->n_heap - 1);
    if (t->n_heap > t->compact_at) compact(t);
}

void tl_arm_state_timer(tl_tracker *t, tl_conn *conn, tl_ep *ep) {
    int64_t deadline;
    switch (ep->state) {
    case ST(TIME_WAIT):
        deadline = ep->since_ns + t->opt_ns[TL_OPT_TIME_WAIT];
        break;
    case ST(FIN_WAIT_2):
        if (ep->not_orphan) return;
        deadline = ep->since_ns + t->opt_ns[TL_OPT_FIN_WAIT_2];
        break;
    case ST(SYN_SENT):
        deadline = (ep->first_syn_ns != TL_NONE ? ep->first_syn_ns : ep->since_ns)
                   + t->opt_ns[TL_OPT_SYN_SENT];
        break;
    case ST(SYN_RECEIVED):
        deadline = (ep->first_synack_ns != TL_NONE ? ep->first_synack_ns : ep->since_ns)
                   + t->opt_ns[TL_OPT_SYN_RECEIVED];
        break;
    default:
        return;
    }
    tl_push_timer(t, deadline, conn, ep->side, ep->timer_gen, TL_TK_STATE);
}

static void arm_eviction(tl_tracker *t, tl_conn *conn) {
    conn->evict_gen++;
    tl_push_timer(t, conn->last_ts + t->opt_ns[TL_OPT_CLOSED_LINGER], conn, TL_NOSIDE,
                  conn->evict_gen, TL_TK_EVICT);
}

static void maybe_evict(tl_tracker *t, tl_conn *conn) {
    if (TL_PAIR[conn->ep[0].state][conn->ep[1].state] == TL_JOINT_OVER) arm_eviction(t, conn);
}

/* ------------------------------------------------------------------ the end */
/* judged_by's order, (ts_ns, tid): an insertion sort (the two sides' histories are each
 * in tid order and mostly in time order, and short) */
static int trans_before(const tl_trans *a, const tl_trans *b) {
    return a->ts < b->ts || (a->ts == b->ts && a->tid < b->tid);
}

static int trans_order(const void *x, const void *y) {
    const tl_trans *a = x, *b = y;
    return trans_before(a, b) ? -1 : trans_before(b, a);
}

static void sort_transitions(tl_trans *tr, size_t n) {
    if (n > 64) { /* a long history (hostile input): no quadratic sort */
        qsort(tr, n, sizeof *tr, trans_order);
        return;
    }
    for (size_t i = 1; i < n; i++) {
        if (!trans_before(&tr[i], &tr[i - 1])) continue;
        tl_trans x = tr[i];
        size_t j = i;
        while (j > 0 && trans_before(&x, &tr[j - 1])) {
            tr[j] = tr[j - 1];
            j--;
        }
        tr[j] = x;
    }
}

/* ConnectionRecord.settled's state_at_end over the sorted transitions */
static int8_t state_at_end(int8_t initial, const tl_trans *tr, size_t n, int side,
                           int64_t end) {
    int8_t state = initial;
    int64_t latest = -1;
    for (size_t i = 0; i < n; i++)
        if (tr[i].side == side && tr[i].tid > latest && (tr[i].frame != TL_NONE || tr[i].ts <= end)) {
            state = tr[i].to;
            latest = tr[i].tid;
        }
    return state;
}

static void end_conn(tl_tracker *t, tl_conn *conn) {
    if (conn->finished) return;
    conn->finished = 1;
    int64_t end = t->ending_at != TL_NONE ? t->ending_at : (t->now_ns != TL_NONE ? t->now_ns : 0);
    if (tl_server_stayed_silent(conn, end)) tl_decide(&conn->ep[1], TL_EV_SHOWN_CLOSED);
    flows_close(t, conn);
    if (conn->refs == 0) to_grave(t, conn);
    tl_out *o = &t->out;
    size_t nt = conn->ep[0].n_hist + conn->ep[1].n_hist;
    if (o->n_trans + nt > o->cap_trans) {
        size_t cap = o->cap_trans ? o->cap_trans : 1024;
        while (cap < o->n_trans + nt) cap *= 2;
        tl_trans *p = realloc(o->trans, cap * sizeof *p);
        if (p == NULL) { t->nomem = 1; return; }
        o->trans = p;
        o->cap_trans = cap;
    }
    if (o->n_odds + conn->n_notes > o->cap_odds) {
        size_t cap = o->cap_odds ? o->cap_odds : 256;
        while (cap < o->n_odds + conn->n_notes) cap *= 2;
        tl_odd *p = realloc(o->odds, cap * sizeof *p);
        if (p == NULL) { t->nomem = 1; return; }
        o->odds = p;
        o->cap_odds = cap;
    }
    if (o->n_ends == o->cap_ends) {
        size_t cap = o->cap_ends ? 2 * o->cap_ends : 256;
        tl_ended *p = realloc(o->ends, cap * sizeof *p);
        if (p == NULL) { t->nomem = 1; return; }
        o->ends = p;
        o->cap_ends = cap;
    }
    tl_event *e = tl_emit(t, TL_E_ENDED);
    if (e == NULL) return;
    e->u.index = o->n_ends;
    tl_ended *d = &o->ends[o->n_ends++];
    tl_trans *tr = o->trans + o->n_trans;
    size_t k = 0;
    for (int s = 0; s < 2; s++)
        for (size_t i = 0; i < conn->ep[s].n_hist; i++) tr[k++] = conn->ep[s].hist[i].t;
    sort_transitions(tr, nt);
    d->trans_off = o->n_trans;
    d->trans_n = nt;
    o->n_trans += nt;
    if (conn->n_notes) memcpy(o->odds + o->n_odds, conn->notes, conn->n_notes * sizeof *conn->notes);
    d->notes_off = o->n_odds;
    d->notes_n = conn->n_notes;
    o->n_odds += conn->n_notes;
    d->at_end = t->ending_at != TL_NONE;
    tl_record *r = &d->record;
    if (t->hooks != NULL && t->hooks->ended != NULL) {
        t->hooks->ended(t->hooks->ctx, conn->watch, o->n_ends - 1);
        conn->watch = NULL;
    }
    const tl_ep *c = &conn->ep[0], *s = &conn->ep[1];
    r->conn_id = conn->conn_id;
    r->ip_version = conn->ip_version;
    r->caddr = c->addr;
    r->cport = c->port;
    r->saddr = s->addr;
    r->sport = s->port;
    r->first_ts = conn->first_ts;
    r->last_ts = conn->last_ts;
    r->first_frame = conn->first_frame;
    r->last_frame = conn->last_frame;
    r->packets = conn->packets;
    r->cpackets = c->packets;
    r->spackets = s->packets;
    r->cbytes = c->bytes;
    r->sbytes = s->bytes;
    r->cstate = r->c_eventual = c->state;
    r->sstate = r->s_eventual = s->state;
    r->cinit = c->initial_state;
    r->sinit = s->initial_state;
    r->close_kind = (int8_t)tl_close_kind(conn);
    r->role_inferred = conn->role_inferred;
    r->mid_stream = conn->mid_stream;
    r->c_last_ns = c->last_ns;
    r->s_last_ns = s->last_ns;
    r->c_last_payload_ns = c->last_payload_ns;
    r->s_last_payload_ns = s->last_payload_ns;
    if (t->ending_at != TL_NONE) {
        r->cstate = state_at_end(c->initial_state, tr, nt, TL_CLIENT, t->ending_at);
        r->sstate = state_at_end(s->initial_state, tr, nt, TL_SERVER, t->ending_at);
    }
}

/* ------------------------------------------------------------------ firing */
static void fire(tl_tracker *t, const tl_timer *x) {
    tl_conn *conn = open_conn(t, x->conn_id);
    if (conn == NULL) return;
    if (x->kind == TL_TK_EVICT) {
        if (x->gen == conn->evict_gen
            && conn->last_ts + t->opt_ns[TL_OPT_CLOSED_LINGER] <= x->deadline)
            end_conn(t, conn);
        return;
    }
    tl_ep *ep = &conn->ep[x->side == TL_CLIENT ? 0 : 1];
    if (x->kind == TL_TK_RTX) {
        const tl_ep *peer = &conn->ep[x->side == TL_CLIENT ? 1 : 0];
        int st = ep->state;
        if (ep->rtx_run_start_ns == x->gen
            && (st == ST(ESTABLISHED) || st == ST(CLOSE_WAIT) || st == ST(FIN_WAIT_1)
                || st == ST(CLOSING) || st == ST(LAST_ACK))
            && (peer->last_ns == TL_NONE || peer->last_ns < x->gen)) {
            conn->timed_out = 1;
            tl_transition(t, conn, ep, TL_EV_TIMEOUT, TL_NONE, x->deadline, 1, TL_K_TIMEOUT,
                          TL_T_EV, 0);
            maybe_evict(t, conn);
        }
        return;
    }
    if (x->gen != ep->timer_gen) return;
    if (ep->state != ST(TIME_WAIT)) conn->timed_out = 1;
    tl_transition(t, conn, ep, TL_EV_TIMEOUT, TL_NONE, x->deadline, 1, TL_K_TIMEOUT, TL_T_EV, 0);
    maybe_evict(t, conn);
}

static void advance_timers(tl_tracker *t, int64_t now) {
    while (t->n_heap && t->heap[0].deadline <= now && !t->nomem && t->bug == NULL) {
        tl_timer x = heap_pop(t);
        fire(t, &x);
    }
}

/* ------------------------------------------------------------------ instances */
static tl_conn *new_connection(tl_tracker *t, const tl_seg *s) {
    int64_t f = s->flags & (TL_FLAG_SYN | TL_FLAG_ACK | TL_FLAG_RST);
    int syn_only = f == TL_FLAG_SYN, synack = f == (TL_FLAG_SYN | TL_FLAG_ACK);
    int src_is_client = 1, role_inferred = !syn_only, mid_stream = !(syn_only || synack);
    if (synack)
        src_is_client = 0;
    else if (!syn_only)
        src_is_client = !tl_looks_like_server(s->sport, s->dport);
    if (t->n_byid == t->cap_byid) {
        size_t cap = t->cap_byid ? 2 * t->cap_byid : 1024;
        tl_conn **p = realloc(t->byid, cap * sizeof *p);
        if (p == NULL) { t->nomem = 1; return NULL; }
        t->byid = p;
        t->cap_byid = cap;
    }
    tl_conn *conn;
    if (t->n_spare) {
        conn = t->spare[--t->n_spare];
        tl_hist *h0 = conn->ep[0].hist, *h1 = conn->ep[1].hist;
        size_t c0 = conn->ep[0].cap_hist, c1 = conn->ep[1].cap_hist, cn = conn->cap_notes;
        tl_odd *notes = conn->notes;
        memset(conn, 0, sizeof *conn);
        conn->ep[0].hist = h0;
        conn->ep[0].cap_hist = c0;
        conn->ep[1].hist = h1;
        conn->ep[1].cap_hist = c1;
        conn->notes = notes;
        conn->cap_notes = cn;
    } else {
        conn = calloc(1, sizeof *conn);
        if (conn == NULL) { t->nomem = 1; return NULL; }
    }
    conn->all_next = t->all;
    if (t->all != NULL) t->all->all_prev = conn;
    t->all = conn;
    conn->conn_id = t->next_conn_id;
    conn->ip_version = (int8_t)s->ip_version;
    conn->first_ts = conn->last_ts = s->ts;
    conn->first_frame = conn->last_frame = s->frame;
    conn->role_inferred = (int8_t)role_inferred;
    conn->mid_stream = (int8_t)mid_stream;
    int8_t cstate, sstate;
    if (syn_only) {
        cstate = ST(CLOSED);
        sstate = ST(UNKNOWN);
    } else if (synack) {
        cstate = ST(SYN_SENT);
        sstate = ST(LISTEN);
    } else {
        cstate = sstate = ST(UNKNOWN);
    }
    for (int k = 0; k < 2; k++) {
        tl_ep *ep = &conn->ep[k];
        int from_src = (k == 0) == src_is_client;
        ep->addr = from_src ? s->src : s->dst;
        ep->port = (int32_t)(from_src ? s->sport : s->dport);
        ep->side = (int8_t)k;
        ep->state = ep->initial_state = k == 0 ? cstate : sstate;
        ep->since_ns = s->ts;
        ep->isn = ep->alt_isn = ep->snd_nxt = ep->data_hi = ep->fin_seq = ep->fin_seg_seq =
            ep->max_ack = TL_NOSEQ;
        ep->window = 65535;
        ep->wscale = -1;
        ep->first_syn_ns = ep->last_syn_ns = ep->first_synack_ns = ep->rtt_ns = ep->last_ns =
            ep->last_data_ns = ep->last_fin_ns = ep->last_payload_ns = ep->rtx_run_start_ns =
                ep->probe_since_ns = TL_NONE;
        ep->tsval_hi = ep->fin_tsval = -1;
    }
    if (synack) {
        conn->ep[0].isn = tl_seq_add(s->ack, -1);
        conn->ep[0].snd_nxt = s->ack;
    }
    if (t->hooks != NULL && t->hooks->opened != NULL)
        conn->watch = t->hooks->opened(t->hooks->ctx, conn->conn_id, s, src_is_client);
    const tl_ep *c = &conn->ep[0], *sv = &conn->ep[1];
    if (route_set(t, c->addr, c->port, sv->addr, sv->port, conn) < 0
        || route_set(t, sv->addr, sv->port, c->addr, c->port, conn) < 0) {
        unroute(t, conn);
        conn_free(t, conn);
        return NULL;
    }
    t->byid[t->n_byid++] = conn;
    t->next_conn_id++;
    tl_event *e = tl_emit(t, TL_E_STARTED);
    if (e != NULL) {
        tl_started *st = &e->u.started;
        st->conn_id = conn->conn_id;
        st->ts = s->ts;
        st->frame = s->frame;
        st->caddr = c->addr;
        st->cport = c->port;
        st->saddr = sv->addr;
        st->sport = sv->port;
        st->role_inferred = (int8_t)role_inferred;
        st->mid_stream = (int8_t)mid_stream;
    }
    if (synack) tl_arm_state_timer(t, conn, &conn->ep[0]);
    return conn;
}

/* Tracker._supersede: returns 1 when a reuse note is due, filling its sockets */
static int supersede(tl_tracker *t, tl_conn *conn, const tl_seg *s, int8_t *sock_side,
                     int8_t *sock_state, int *n_sockets) {
    int c = s->src == conn->ep[0].addr && s->sport == conn->ep[0].port;
    tl_ep *sender = &conn->ep[c ? 0 : 1], *receiver = &conn->ep[c ? 1 : 0];
    int n = 0;
    const tl_ep *both[2] = {sender, receiver};
    for (int k = 0; k < 2; k++)
        if (IS_ALIVE(both[k]->state)) {
            sock_side[n] = both[k]->side;
            sock_state[n] = both[k]->state;
            n++;
        }
    *n_sockets = n;
    if (sender->state != ST(CLOSED) && sender->state != ST(LISTEN))
        tl_transition(t, conn, sender, TL_EV_NEW_SYN, s->frame, s->ts, 1, TL_K_NONE, TL_T_EV, 0);
    int taken = receiver->state == ST(TIME_WAIT) ? tl_tw_takes(sender, receiver, s) : -1;
    if (taken >= 0)
        tl_transition(t, conn, receiver, TL_EV_TW_TAKES_SYN, s->frame, s->ts, 1, TL_K_NONE,
                      taken ? TL_T_TW_NEWER_TS : TL_T_EV, 0);
    unroute(t, conn);
    if (TL_REUSE[receiver->state] == TL_JOINT_END) end_conn(t, conn);
    return n > 0;
}

static void syn_taken(tl_tracker *t, tl_conn *conn, const tl_seg *s) {
    tl_conn *old = conn->pred;
    int c = s->src == old->ep[0].addr && s->sport == old->ep[0].port;
    tl_ep *side = &old->ep[c ? 0 : 1], *peer = &old->ep[c ? 1 : 0];
    if (side->state != ST(TIME_WAIT)) return;
    tl_transition(t, old, side, TL_EV_TW_TAKES_SYN, conn->first_frame, conn->first_ts, 1,
                  TL_K_NONE, TL_T_TW_TAKEN_AT, s->frame);
    if (!IS_ALIVE(peer->state)) end_conn(t, old);
}

/* ------------------------------------------------------------------ the API */
int tl_tracker_init(tl_tracker *t, const int64_t *opt_ns) {
    memset(t, 0, sizeof *t);
    memcpy(t->opt_ns, opt_ns, sizeof t->opt_ns);
    t->n_slots = 1024;
    t->slots = calloc(t->n_slots, sizeof *t->slots);
    if (t->slots == NULL) return -1;
    t->compact_at = (size_t)TL_COMPACT_MIN;
    t->now_ns = t->ending_at = TL_NONE;
    t->spare = malloc(TL_SPARE_MAX * sizeof *t->spare); /* NULL: no reuse */
    return 0;
}

void tl_tracker_free(tl_tracker *t) {
    for (size_t i = 0; i < t->n_spare; i++) {
        free(t->spare[i]->ep[0].hist);
        free(t->spare[i]->ep[1].hist);
        free(t->spare[i]->notes);
        free(t->spare[i]);
    }
    free(t->spare);
    t->spare = NULL;
    t->n_spare = 0;
    while (t->all != NULL) conn_free(t, t->all);
    free(t->slots);
    free(t->byid);
    free(t->grave);
    free(t->heap);
    out_free(&t->out);
    memset(t, 0, sizeof *t);
}

void tl_feed(tl_tracker *t, const tl_seg *s) {
    if (t->hooks != NULL && t->hooks->segment != NULL) t->hooks->segment(t->hooks->ctx, s);
    advance_timers(t, s->ts);
    if (t->nomem || t->bug) return;
    if (t->now_ns == TL_NONE || s->ts > t->now_ns) t->now_ns = s->ts;
    tl_conn *conn = route(t, s->src, s->sport, s->dst, s->dport);
    int64_t f = s->flags & (TL_FLAG_SYN | TL_FLAG_ACK | TL_FLAG_RST);
    if (conn == NULL) {
        conn = new_connection(t, s);
        if (conn == NULL) return;
    } else if (f == TL_FLAG_SYN && tl_is_new_incarnation(conn, s)) {
        tl_conn *old = conn;
        int8_t sock_side[2], sock_state[2];
        int n_sockets = 0;
        int reuse = supersede(t, old, s, sock_side, sock_state, &n_sockets);
        conn = new_connection(t, s);
        if (conn == NULL) return;
        if (!old->finished) {
            conn->pred = old;
            old->refs++;
        }
        if (reuse) {
            tl_odd *o = tl_note(t, conn, TL_CLIENT, TL_ODD_PORT_REUSE, s->ts, s->frame);
            if (o != NULL) {
                o->facts = TL_F_PORT_REUSE;
                o->old_conn_id = old->conn_id;
                o->n_sockets = (int8_t)n_sockets;
                for (int k = 0; k < n_sockets; k++) {
                    o->sock_side[k] = sock_side[k];
                    o->sock_state[k] = sock_state[k];
                }
                if (n_sockets == 2)
                    tl_odd_text(t, o, "new SYN reuses the 4-tuple of connection %lld, whose %s %s "
                                "and %s %s socket was still there", (long long)old->conn_id,
                                TL_SIDE_NAMES[sock_side[0]], TL_STATE_NAMES[sock_state[0]],
                                TL_SIDE_NAMES[sock_side[1]], TL_STATE_NAMES[sock_state[1]]);
                else
                    tl_odd_text(t, o, "new SYN reuses the 4-tuple of connection %lld, whose %s %s "
                                "socket was still there", (long long)old->conn_id,
                                TL_SIDE_NAMES[sock_side[0]], TL_STATE_NAMES[sock_state[0]]);
                t->out.odds[t->out.n_odds - 1] = *o;
            }
        }
    } else if (conn->pred != NULL) {
        if (conn->pred->finished)
            drop_pred(t, conn);
        else if (tl_belongs_to_predecessor(conn, s))
            conn = conn->pred;
        else if ((s->flags & (TL_FLAG_SYN | TL_FLAG_ACK)) == (TL_FLAG_SYN | TL_FLAG_ACK))
            syn_taken(t, conn, s);
    }
    if (t->nomem || t->bug) return;
    if (conn->watch != NULL && t->hooks->feed != NULL)
        t->hooks->feed(t->hooks->ctx, conn->watch, s,
                       s->src == conn->ep[0].addr && s->sport == conn->ep[0].port);
    if (tl_process(t, conn, s) && TL_PAIR[conn->ep[0].state][conn->ep[1].state] == TL_JOINT_OVER)
        arm_eviction(t, conn);
}

void tl_advance(tl_tracker *t, int64_t now) {
    tl_event *e = tl_emit(t, TL_E_CLOCK);
    if (e == NULL) return;
    e->u.ts = now;
    advance_timers(t, now);
    if (t->now_ns == TL_NONE || now > t->now_ns) t->now_ns = now;
}

/* glue: Tracker.finish_chunks hands a list of events over once it holds `size` */
static void chunk_check(tl_tracker *t) {
    if (t->hooks != NULL && t->hooks->chunk != NULL && t->out.n >= t->chunk_mark
        && t->out.n - t->chunk_mark >= TL_FINISH_CHUNK)
        t->hooks->chunk(t->hooks->ctx);
}

void tl_finish(tl_tracker *t, int64_t end_ns) {
    int64_t end = 0;
    if (end_ns != TL_NONE && end_ns > end) end = end_ns;
    if (t->now_ns != TL_NONE && t->now_ns > end) end = t->now_ns;
    tl_event *e = tl_emit(t, TL_E_INPUT_ENDED);
    if (e == NULL) return;
    e->u.ts = end_ns == TL_NONE ? end : end_ns;
    t->ending_at = end;
    t->finishing = 1;
    int64_t group = TL_NONE; /* the deadline of one `_advance` of finish_chunks */
    while (t->n_heap && !t->nomem && t->bug == NULL) {
        tl_timer x = heap_pop(t);
        if (group == TL_NONE) group = x.deadline;
        fire(t, &x);
        if (t->n_heap == 0 || t->heap[0].deadline > group) {
            group = TL_NONE;
            chunk_check(t);
        }
    }
    /* the open instances in conn_id order (byid is not compacted while finishing) */
    for (size_t i = t->head; i < t->n_byid && !t->nomem; i++)
        if (t->byid[i] != NULL) {
            end_conn(t, t->byid[i]);
            chunk_check(t);
        }
    t->n_heap = 0;
    t->finishing = 0;
    t->ending_at = TL_NONE;
}
