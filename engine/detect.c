/* The detector set (tcplife/detect/__init__.py's `DetectorSet` with `default_detectors`):
 * the running capture end, the settling of a record ended at the end of input, each ended
 * connection judged by the default detectors in their order, and the verdicts across
 * connections at the end; and the buffer of anomaly rows (`ConnView.anomaly`). */
#define TL_DETECT_INTERNAL
#include "detect.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

const char *const TL_DET_DETECTORS[TL_DET_N_DETECTORS] = {
    "Refused", "ListenOverflow", "HandshakeIncomplete", "Resets", "LingeringCloseWait",
    "FinWait2Timeout", "MissingFinalAck", "SimultaneousClose", "SimultaneousOpen", "Notes",
    "BoundedTimeWaitAccumulation"};

struct tl_detect {
    tl_conn_options conn;
    tl_names names;
    tl_listen *listen;
    tl_tw *tw;
    tl_anomalies out;
    tl_buf buf;
    int64_t capture_end_ns;
    int input_ended;
    const char *error;
};

/* ------------------------------------------------------------------ rows */
static int grow(void **buf, size_t *cap, size_t need, size_t size) {
    if (need <= *cap) return 0;
    size_t n = *cap ? *cap : 16;
    while (n < need) {
        if (n > SIZE_MAX / 2) return -1;
        n *= 2;
    }
    if (n > SIZE_MAX / size) return -1;
    void *b = realloc(*buf, n * size);
    if (b == NULL) return -1;
    *buf = b;
    *cap = n;
    return 0;
}

void tl_anomalies_clear(tl_anomalies *a) { a->n = a->ntext = a->nframes = a->nclaims = 0; }

void tl_anomalies_free(tl_anomalies *a) {
    free(a->rows);
    free(a->text);
    free(a->frames);
    free(a->claims);
    memset(a, 0, sizeof *a);
}

static int add_frame(tl_anomalies *a, size_t first, int64_t f) {
    if (f == TL_NONE) return 0;
    for (size_t i = first; i < a->nframes; i++)
        if (a->frames[i] == f) return 0;
    if (grow((void **)&a->frames, &a->capframes, a->nframes + 1, sizeof(int64_t)) < 0) return -1;
    a->frames[a->nframes++] = f;
    return 0;
}

int tl_anomalies_add(tl_anomalies *a, const tl_row *row, tl_buf *b) {
    if (b->failed) {
        b->failed = 0;
        b->n = 0;
        return TL_DET_NOMEM;
    }
    if (grow((void **)&a->rows, &a->cap, a->n + 1, sizeof(tl_anomaly)) < 0 ||
        grow((void **)&a->text, &a->captext, a->ntext + b->n, 1) < 0 ||
        grow((void **)&a->claims, &a->capclaims, a->nclaims + row->nclaims, sizeof(tl_claim)) < 0)
        return TL_DET_NOMEM;
    tl_anomaly *x = &a->rows[a->n];
    x->conn_id = row->conn_id;
    x->ts_ns = row->ts_ns;
    x->frame = row->frame;
    x->side = row->side;
    x->kind = row->kind;
    x->severity = row->severity;
    x->confidence = row->confidence;
    x->detail = a->ntext;
    x->detail_len = b->n;
    if (b->n) memcpy(a->text + a->ntext, b->s, b->n);
    a->ntext += b->n;
    b->n = 0;
    x->frames = a->nframes;
    if (add_frame(a, x->frames, row->frame) < 0) return TL_DET_NOMEM;
    for (size_t i = 0; i < row->nframes; i++)
        if (add_frame(a, x->frames, row->frames[i]) < 0) return TL_DET_NOMEM;
    x->nframes = a->nframes - x->frames;
    x->claims = a->nclaims;
    x->nclaims = row->nclaims;
    if (row->nclaims) memcpy(a->claims + a->nclaims, row->claims, row->nclaims * sizeof(tl_claim));
    a->nclaims += row->nclaims;
    a->n++;
    return TL_DET_OK;
}

/* ------------------------------------------------------------------ the view */
void tl_who(tl_buf *b, const tl_view *v, int side) {
    tl_text addr = side == 0 ? v->r->client_addr : v->r->server_addr;
    int64_t port = side == 0 ? v->r->client_port : v->r->server_port;
    tl_buf_str(b, TL_SIDE_NAMES[side]);
    if (tl_text_has(addr, ':')) {
        tl_buf_str(b, " [");
        tl_buf_text(b, addr);
        tl_buf_str(b, "]:");
    } else {
        tl_buf_str(b, " ");
        tl_buf_text(b, addr);
        tl_buf_str(b, ":");
    }
    tl_buf_int(b, port);
}

int tl_state_at(const tl_view *v, int side, int64_t ts_ns) {
    int state = side == 0 ? v->r->client_initial_state : v->r->server_initial_state;
    for (size_t i = 0; i < v->ntrans; i++) {
        const tl_det_transition *t = &v->trans[i];
        if (t->side != side) continue;
        if (t->ts_ns > ts_ns) break;
        state = t->to_state;
    }
    return state;
}

const char *tl_event_text(const tl_det_transition *t, size_t *n) {
    if (t->text.s != NULL) {
        *n = t->text.n;
        return t->text.s;
    }
    const char *s = (t->ev >= 0 && t->ev < TL_N_EV) ? TL_EV_NAMES[t->ev] : "";
    *n = strlen(s);
    return s;
}

int tl_event_is(const tl_det_transition *t, const char *s) {
    size_t n, m = strlen(s);
    const char *e = tl_event_text(t, &n);
    return n == m && memcmp(e, s, n) == 0;
}

/* ------------------------------------------------------------------ the set */
static int option_ns(double v, int64_t *out) {
    /* int(round(v * NS)) */
    double x = nearbyint(v * 1e9);
    if (!(x >= 0 && x <= (double)TL_DET_OPTION_LIMIT)) return -1;
    *out = (int64_t)x;
    return 0;
}

static int option_count(double v, int64_t *out) {
    /* int(v) */
    if (!(v >= 0 && v <= 9007199254740992.0)) return -1;
    *out = (int64_t)v;
    return 0;
}

tl_detect *tl_detect_new(const double options[TL_N_OPTIONS], const char **error) {
    int64_t time_wait, syn_sent, close_wait_linger, closed_linger;
    tl_tw_options tw;
    *error = NULL;
    for (int i = 0; i < TL_N_OPTIONS; i++) {
        if (!(options[i] >= 0) || isinf(options[i])) {
            *error = "every option is a finite non-negative number";
            return NULL;
        }
    }
    if (option_ns(options[TL_OPT_TIME_WAIT], &time_wait) < 0 ||
        option_ns(options[TL_OPT_SYN_SENT], &syn_sent) < 0 ||
        option_ns(options[TL_OPT_CLOSE_WAIT_LINGER], &close_wait_linger) < 0 ||
        option_ns(options[TL_OPT_CLOSED_LINGER], &closed_linger) < 0) {
        *error = "time_wait, syn_sent, close_wait_linger and closed_linger must be at most "
                 "2**60 ns (36 years) for the compiled detectors";
        return NULL;
    }
    if (option_count(options[TL_OPT_TIME_WAIT_THRESHOLD], &tw.threshold) < 0 ||
        option_count(options[TL_OPT_PORT_RANGE_LOW], &tw.port_low) < 0 ||
        option_count(options[TL_OPT_PORT_RANGE_HIGH], &tw.port_high) < 0 ||
        option_count(options[TL_OPT_MAX_TW_BUCKETS], &tw.max_tw_buckets) < 0) {
        *error = "time_wait_threshold, port_range_low, port_range_high and max_tw_buckets "
                 "must be at most 2**53 for the compiled detectors";
        return NULL;
    }
    if (options[TL_OPT_TIME_WAIT_SHARE] > 9007199254740992.0) {
        *error = "time_wait_share must be at most 2**53 for the compiled detectors";
        return NULL;
    }
    if (tw.port_high < tw.port_low) {
        *error = "option port_range_high must not be below port_range_low";
        return NULL;
    }
    tw.time_wait_ns = time_wait;
    tw.share = options[TL_OPT_TIME_WAIT_SHARE];
    /* default_detectors: closed_linger + time_wait + 60 s */
    tw.horizon_ns = closed_linger + time_wait + 60 * TL_NS;
    tl_detect *d = calloc(1, sizeof *d);
    if (d == NULL) return NULL;
    d->conn.close_wait_linger_ns = close_wait_linger;
    d->listen = tl_listen_new(syn_sent);
    d->tw = tl_tw_new(&tw);
    if (d->listen == NULL || d->tw == NULL) {
        tl_detect_free(d);
        return NULL;
    }
    return d;
}

void tl_detect_free(tl_detect *d) {
    if (d == NULL) return;
    tl_listen_free(d->listen);
    tl_tw_free(d->tw);
    tl_names_free(&d->names);
    tl_anomalies_free(&d->out);
    tl_buf_free(&d->buf);
    free(d);
}

void tl_detect_set_fold_every(tl_detect *d, int64_t fold_every) {
    tl_tw_set_fold_every(d->tw, fold_every);
}

tl_anomalies *tl_detect_out(tl_detect *d) { return &d->out; }
int64_t tl_detect_capture_end(const tl_detect *d) { return d->capture_end_ns; }
int tl_detect_input_ended(const tl_detect *d) { return d->input_ended; }
const char *tl_detect_error(const tl_detect *d) { return d->error; }

int tl_detect_transition(tl_detect *d, const tl_det_stream_transition *t) {
    if (t->t.frame != TL_NONE && t->t.ts_ns > d->capture_end_ns) d->capture_end_ns = t->t.ts_ns;
    return tl_listen_transition(d->listen, &d->names, t);
}

void tl_detect_clock(tl_detect *d, int64_t ts_ns, int input_ended) {
    if (ts_ns > d->capture_end_ns) d->capture_end_ns = ts_ns;
    if (input_ended) d->input_ended = 1;
}

/* `state_at_end` */
static int state_at_end(int initial, const tl_det_connection *c, int side, int64_t end_ns) {
    int state = initial;
    int64_t latest = -1;
    for (size_t i = 0; i < c->ntransitions; i++) {
        const tl_det_transition *t = &c->transitions[i];
        if (t->side == side && t->tid > latest && (t->frame != TL_NONE || t->ts_ns <= end_ns)) {
            state = t->to_state;
            latest = t->tid;
        }
    }
    return state;
}

int tl_detect_connection(tl_detect *d, const tl_det_connection *c, tl_det_settled *settled) {
    tl_det_record rec = c->record;
    if (rec.last_ts_ns > d->capture_end_ns) d->capture_end_ns = rec.last_ts_ns;
    if (settled != NULL) settled->settled = 0;
    if (c->at_end) {
        int64_t end = d->input_ended ? d->capture_end_ns : TL_DET_FOREVER;
        if (rec.client_eventual_state < 0) rec.client_eventual_state = rec.client_state;
        if (rec.server_eventual_state < 0) rec.server_eventual_state = rec.server_state;
        rec.client_state = state_at_end(rec.client_initial_state, c, 0, end);
        rec.server_state = state_at_end(rec.server_initial_state, c, 1, end);
        if (settled != NULL) {
            settled->settled = 1;
            settled->client_state = rec.client_state;
            settled->server_state = rec.server_state;
            settled->client_eventual_state = rec.client_eventual_state;
            settled->server_eventual_state = rec.server_eventual_state;
        }
    }
    tl_view v = {&rec, c->transitions, c->ntransitions, c->notes, c->nnotes, d->capture_end_ns};
    tl_anomalies *out = &d->out;
    tl_buf *b = &d->buf;
    int rc;
    d->error = NULL;
    if ((rc = tl_judge_refused(&v, out, b)) != TL_DET_OK) return rc;
    if ((rc = tl_listen_connection(d->listen, &d->names, &v, out, b)) != TL_DET_OK) return rc;
    if ((rc = tl_judge_handshake_incomplete(&v, out, b)) != TL_DET_OK) return rc;
    if ((rc = tl_judge_resets(&v, out, b, &d->error)) != TL_DET_OK) return rc;
    if ((rc = tl_judge_lingering_close_wait(&v, &d->conn, out, b)) != TL_DET_OK) return rc;
    if ((rc = tl_judge_fin_wait_2_timeout(&v, out, b)) != TL_DET_OK) return rc;
    if ((rc = tl_judge_missing_final_ack(&v, out, b)) != TL_DET_OK) return rc;
    if ((rc = tl_judge_simultaneous_close(&v, out, b)) != TL_DET_OK) return rc;
    if ((rc = tl_judge_simultaneous_open(&v, out, b)) != TL_DET_OK) return rc;
    if ((rc = tl_judge_notes(&v, out, b)) != TL_DET_OK) return rc;
    return tl_tw_connection(d->tw, &d->names, &v);
}

int tl_detect_finish(tl_detect *d) {
    int rc = tl_listen_finish(d->listen, &d->names, &d->out, &d->buf);
    if (rc != TL_DET_OK) return rc;
    return tl_tw_finish(d->tw, &d->names, d->capture_end_ns, &d->out, &d->buf);
}
