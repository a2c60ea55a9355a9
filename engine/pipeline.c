/* The pipeline: tracker + Wireshark numbering + per-instance peers + detectors
 * (pipeline.h). Plain C; the Python type is pipeline_py.c. */
#include "pipeline.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int grow(void **buf, size_t *cap, size_t need, size_t size) {
    if (need <= *cap) return 0;
    size_t cap2 = *cap ? *cap : 16;
    while (cap2 < need) {
        if (cap2 > SIZE_MAX / 2 / size) return -1;
        cap2 *= 2;
    }
    void *q = realloc(*buf, cap2 * size);
    if (q == NULL) return -1;
    *buf = q;
    *cap = cap2;
    return 0;
}

static void peer_seg(tl_peer_seg *o, const tl_seg *s) {
    o->frame = s->frame; o->ts_ns = s->ts; o->ip_version = s->ip_version; o->src = s->src;
    o->sport = s->sport; o->dst = s->dst; o->dport = s->dport; o->seq = s->seq;
    o->ack = s->ack; o->flags = s->flags; o->payload_len = s->plen; o->window = s->window;
    o->wscale = s->wscale; o->tsval = s->tsval; o->tsecr = s->tsecr;
}

/* ------------------------------------------------------------------ the hooks */
static void on_segment(void *ctx, const tl_seg *s) {
    tl_pipeline *p = ctx;
    tl_peer_seg ps;
    peer_seg(&ps, s);
    if (tl_wshark_feed(p->ws, &ps) < 0) p->nomem = 1;
}

static void *on_opened(void *ctx, int64_t conn_id, const tl_seg *s, int sender_is_client) {
    tl_pipeline *p = ctx;
    (void)conn_id;
    tl_peer_seg ps;
    peer_seg(&ps, s);
    tl_peers *w = tl_peers_open(&ps, sender_is_client);
    if (w == NULL) p->nomem = 1;
    return w;
}

static void on_feed(void *ctx, void *watch, const tl_seg *s, int from_client) {
    tl_pipeline *p = ctx;
    tl_peer_seg ps;
    peer_seg(&ps, s);
    if (tl_peers_feed(watch, &ps, from_client, tl_wshark_current(p->ws)) < 0) p->nomem = 1;
}

static void on_ended(void *ctx, void *watch, size_t index) {
    tl_pipeline *p = ctx;
    if (index >= p->cap_ended) {
        size_t old = p->cap_ended;
        if (grow((void **)&p->ended, &p->cap_ended, index + 1, sizeof *p->ended) < 0) {
            p->nomem = 1;
            tl_peers_free(watch);
            return;
        }
        memset(p->ended + old, 0, (p->cap_ended - old) * sizeof *p->ended);
    }
    while (p->n_ended <= index) p->ended[p->n_ended++] = NULL;
    tl_peers_free(p->ended[index]);
    p->ended[index] = watch;
}

static void on_release(void *ctx, void *watch) {
    (void)ctx;
    tl_peers_free(watch);
}

static void judge(tl_pipeline *p);

static void on_chunk(void *ctx) { judge(ctx); }

/* ------------------------------------------------------------------ to the detectors */
/* the text of an address key (buf: room for an IPv4 dotted quad) */
static int addr_text(tl_pipeline *p, int64_t key, char buf[16], tl_text *out) {
    if (key >= 0 && key < TL_V6_BASE) {
        uint32_t a = (uint32_t)key;
        int n = snprintf(buf, 16, "%u.%u.%u.%u", (unsigned)(a >> 24), (unsigned)(a >> 16 & 255),
                         (unsigned)(a >> 8 & 255), (unsigned)(a & 255));
        out->s = buf;
        out->n = (size_t)n;
        return 0;
    }
    if (key >= TL_V6_BASE && (uint64_t)(key - TL_V6_BASE) < p->n_v6) {
        out->s = p->v6[key - TL_V6_BASE];
        out->n = strlen(out->s);
        return 0;
    }
    p->error = "an address key the pipeline was not given the text of (tl_pipeline_name)";
    return -1;
}

static void det_trans(tl_det_transition *d, const tl_trans *t, char text[96]) {
    d->tid = t->tid;
    d->ts_ns = t->ts;
    d->frame = t->frame;
    d->side = t->side;
    d->from_state = t->from;
    d->to_state = t->to;
    d->ev = t->ev;
    d->inferred = t->inferred;
    d->text.s = NULL;
    d->text.n = 0;
    const char *s = NULL;
    if (t->text == TL_T_FIN_BY_TSECR)
        s = "recv FIN (after its own segment, by TSecr)";
    else if (t->text == TL_T_TW_NEWER_TS)
        s = "recv SYN (new incarnation: newer timestamp)";
    else if (t->text == TL_T_TW_TAKEN_AT) {
        snprintf(text, 96, "recv SYN (new incarnation, taken: its SYN-ACK at frame %lld)",
                 (long long)t->text_arg);
        s = text;
    }
    if (s != NULL) {
        d->text.s = s;
        d->text.n = strlen(s);
    }
}

static int do_transition(tl_pipeline *p, const tl_trans *t) {
    char buf[16], text[96];
    tl_det_stream_transition st;
    st.conn_id = t->conn_id;
    if (addr_text(p, t->addr, buf, &st.addr) < 0) return -1;
    st.port = t->port;
    det_trans(&st.t, t, text);
    return tl_detect_transition(p->det, &st);
}

static void det_note(tl_det_note *n, const tl_odd *o, tl_det_socket *sockets) {
    memset(n, 0, sizeof *n);
    n->ts_ns = o->ts;
    n->frame = o->frame;
    n->side = o->side;
    n->name = o->name;
    n->detail.s = o->detail;
    size_t len = 0;
    while (len < TL_DETAIL_MAX && o->detail[len] != '\0') len++;
    n->detail.n = len;
    n->facts = o->facts;
    n->probe_since = TL_NONE;
    switch (o->facts) {
    case TL_F_RST_SENT:
        n->state = o->f_state;
        n->unread = o->f_unread;
        n->ack = o->f_ack;
        n->fin_sent = o->f_fin_sent;
        n->zero_window = o->f_zero_window;
        n->probes = o->probes;
        n->probe_since = o->probe_since;
        break;
    case TL_F_FIN_RTX:
        n->state = o->f_state;
        n->hole = o->f_hole;
        break;
    case TL_F_ACK_LOST:
    case TL_F_RETRACTED:
        n->kind.s = TL_KIND_NAMES[o->f_kind];
        n->kind.n = strlen(n->kind.s);
        n->undone = o->undone;
        n->no_socket = o->f_no_socket;
        break;
    case TL_F_PORT_REUSE:
        n->old_conn_id = o->old_conn_id;
        for (int k = 0; k < o->n_sockets && k < 2; k++) {
            sockets[k].side = o->sock_side[k];
            sockets[k].state = o->sock_state[k];
        }
        n->sockets = sockets;
        n->nsockets = o->n_sockets > 2 ? 2 : (size_t)o->n_sockets;
        break;
    default:
        break;
    }
}

static int do_ended(tl_pipeline *p, tl_ended *d) {
    tl_out *o = &p->t->out;
    tl_record *r = &d->record;
    tl_det_connection c;
    char cbuf[16], sbuf[16];
    memset(&c, 0, sizeof c);
    tl_det_record *x = &c.record;
    x->conn_id = r->conn_id;
    if (addr_text(p, r->caddr, cbuf, &x->client_addr) < 0
        || addr_text(p, r->saddr, sbuf, &x->server_addr) < 0)
        return -1;
    x->client_port = r->cport;
    x->server_port = r->sport;
    x->first_ts_ns = r->first_ts;
    x->last_ts_ns = r->last_ts;
    x->first_frame = r->first_frame;
    x->last_frame = r->last_frame;
    x->packets = r->packets;
    x->client_packets = r->cpackets;
    x->server_packets = r->spackets;
    x->client_state = r->cstate;
    x->server_state = r->sstate;
    x->client_initial_state = r->cinit;
    x->server_initial_state = r->sinit;
    x->client_eventual_state = r->c_eventual;
    x->server_eventual_state = r->s_eventual;
    x->close_kind = r->close_kind;
    x->role_inferred = r->role_inferred;
    x->mid_stream = r->mid_stream;
    x->client_last_ts_ns = r->c_last_ns;
    x->server_last_ts_ns = r->s_last_ns;
    x->client_last_payload_ns = r->c_last_payload_ns;
    x->server_last_payload_ns = r->s_last_payload_ns;
    if (grow((void **)&p->dt, &p->cap_dt, d->trans_n + 1, sizeof *p->dt) < 0
        || grow((void **)&p->dtext, &p->cap_dtext, d->trans_n + 1, sizeof *p->dtext) < 0
        || grow((void **)&p->dn, &p->cap_dn, d->notes_n + 1, sizeof *p->dn) < 0
        || grow((void **)&p->ds, &p->cap_ds, 2 * d->notes_n + 2, sizeof *p->ds) < 0) {
        p->nomem = 1;
        return TL_DET_NOMEM;
    }
    for (size_t i = 0; i < d->trans_n; i++)
        det_trans(&p->dt[i], &o->trans[d->trans_off + i], p->dtext[i]);
    for (size_t i = 0; i < d->notes_n; i++)
        det_note(&p->dn[i], &o->odds[d->notes_off + i], &p->ds[2 * i]);
    c.transitions = p->dt;
    c.ntransitions = d->trans_n;
    c.notes = p->dn;
    c.nnotes = d->notes_n;
    c.at_end = d->at_end;
    tl_det_settled settled;
    memset(&settled, 0, sizeof settled);
    int rc = tl_detect_connection(p->det, &c, &settled);
    if (rc == TL_DET_OK && settled.settled) {
        r->cstate = (int8_t)settled.client_state;
        r->sstate = (int8_t)settled.server_state;
        r->c_eventual = (int8_t)settled.client_eventual_state;
        r->s_eventual = (int8_t)settled.server_eventual_state;
    }
    return rc;
}

/* the anomalies made so far, after the events of the call */
static void emit_anomalies(tl_pipeline *p) {
    tl_anomalies *a = tl_detect_out(p->det);
    while (p->emitted < a->n) {
        tl_event *e = tl_emit(p->t, TL_E_ANOMALY);
        if (e == NULL) {
            p->nomem = 1;
            return;
        }
        e->u.index = p->emitted++;
    }
}

/* `DetectorSet.events` on the tracker's events since the last call, then their verdicts */
static void judge(tl_pipeline *p) {
    tl_out *o = &p->t->out;
    size_t end = o->n;
    for (size_t i = p->judged; i < end && !tl_pipeline_failed(p); i++) {
        const tl_event *e = &o->ev[i];
        int rc = TL_DET_OK;
        switch (e->type) {
        case TL_E_TRANSITION:
            rc = do_transition(p, &e->u.trans);
            break;
        case TL_E_ENDED:
            rc = do_ended(p, &o->ends[e->u.index]);
            break;
        case TL_E_CLOCK:
            tl_detect_clock(p->det, e->u.ts, 0);
            break;
        case TL_E_INPUT_ENDED:
            tl_detect_clock(p->det, e->u.ts, 1);
            break;
        default:
            break;
        }
        if (rc == TL_DET_NOMEM) p->nomem = 1;
        else if (rc != TL_DET_OK && p->error == NULL) {
            const char *why = tl_detect_error(p->det);
            p->error = why != NULL ? why : "the detectors refused an event";
        }
    }
    emit_anomalies(p);
    p->judged = o->n;
    p->t->chunk_mark = o->n;
}

/* ------------------------------------------------------------------ the API */
int tl_pipeline_init(tl_pipeline *p, tl_tracker *t, const double options[TL_N_OPTIONS],
                     int64_t fold_every, const char **error) {
    memset(p, 0, sizeof *p);
    *error = NULL;
    p->t = t;
    p->ws = tl_wshark_new();
    if (p->ws == NULL) return -1;
    p->det = tl_detect_new(options, error);
    if (p->det == NULL) {
        tl_wshark_free(p->ws);
        p->ws = NULL;
        return -1;
    }
    tl_detect_set_fold_every(p->det, fold_every);
    p->hooks.ctx = p;
    p->hooks.segment = on_segment;
    p->hooks.opened = on_opened;
    p->hooks.feed = on_feed;
    p->hooks.ended = on_ended;
    p->hooks.release = on_release;
    p->hooks.chunk = on_chunk;
    p->judged = t->out.n;
    t->chunk_mark = t->out.n;
    t->hooks = &p->hooks;
    return 0;
}

static void drop_ended(tl_pipeline *p) {
    for (size_t i = 0; i < p->n_ended; i++) {
        tl_peers_free(p->ended[i]);
        p->ended[i] = NULL;
    }
    p->n_ended = 0;
}

void tl_pipeline_free(tl_pipeline *p) {
    if (p->t != NULL) {
        for (tl_conn *c = p->t->all; c != NULL; c = c->all_next) {
            tl_peers_free(c->watch);
            c->watch = NULL;
        }
        if (p->t->hooks == &p->hooks) p->t->hooks = NULL;
    }
    drop_ended(p);
    free(p->ended);
    for (size_t i = 0; i < p->n_v6; i++) free(p->v6[i]);
    free(p->v6);
    free(p->dt);
    free(p->dtext);
    free(p->dn);
    free(p->ds);
    if (p->ws != NULL) tl_wshark_free(p->ws);
    if (p->det != NULL) tl_detect_free(p->det);
    memset(p, 0, sizeof *p);
}

int tl_pipeline_name(tl_pipeline *p, const char *s, size_t n) {
    if (grow((void **)&p->v6, &p->cap_v6, p->n_v6 + 1, sizeof *p->v6) < 0) return -1;
    char *copy = malloc(n + 1);
    if (copy == NULL) return -1;
    memcpy(copy, s, n);
    copy[n] = '\0';
    p->v6[p->n_v6++] = copy;
    return 0;
}

int tl_pipeline_failed(const tl_pipeline *p) {
    return p->nomem || p->error != NULL || p->t->nomem || p->t->bug != NULL;
}

void tl_pipeline_feed(tl_pipeline *p, const tl_seg *s) {
    tl_feed(p->t, s);
    if (!tl_pipeline_failed(p)) judge(p);
}

void tl_pipeline_advance(tl_pipeline *p, int64_t now) {
    tl_advance(p->t, now);
    if (!tl_pipeline_failed(p)) judge(p);
}

void tl_pipeline_finish(tl_pipeline *p, int64_t end_ns) {
    tl_finish(p->t, end_ns);
    if (tl_pipeline_failed(p)) return;
    judge(p);
    if (tl_pipeline_failed(p)) return;
    int rc = tl_detect_finish(p->det);
    if (rc == TL_DET_NOMEM) p->nomem = 1;
    else if (rc != TL_DET_OK) p->error = "the detectors' finish failed";
    emit_anomalies(p);
    p->judged = p->t->out.n;
    p->t->chunk_mark = p->t->out.n;
}

void tl_pipeline_clear(tl_pipeline *p) {
    tl_out_clear(&p->t->out);
    drop_ended(p);
    tl_anomalies_clear(tl_detect_out(p->det));
    p->judged = p->emitted = 0;
    p->t->chunk_mark = 0;
}
