/* time_wait.py's `BoundedTimeWaitAccumulation` with `TimeWaitLimits` (the default
 * detectors' TIME_WAIT accumulation: per holder, the peak and the projected rate against
 * the limit; per host, the count against time_wait_threshold; bounded memory by folds), over
 * spans.py's intervals and sweeps, ported as algorithms (sorts and scans) rather than numpy
 * calls, with the same orders and ties. */
#define TL_DETECT_INTERNAL
#include "detect.h"

#include <stdlib.h>
#include <string.h>

#define S(text) tl_buf_str(b, text)

/* One TIME_WAIT interval (`Spans`' columns): frame -1 for none; service: the position of
 * the (server address, port) it was towards in its host's services, -1 for a server's */
typedef struct {
    int64_t start, end, conn_id, side, frame, service;
} span;

/* `Window`: how many starts a window holds, and its first interval */
typedef struct {
    int found;
    int64_t count;
    span key;
} window;

typedef struct {
    int64_t addr, port; /* names id, port */
    window earlier;     /* `_windows[host, service]` */
} service;

typedef struct {
    int64_t addr; /* names id */
    span *spans;
    size_t n, cap;
    service *services;
    size_t nservices, capservices;
    int64_t *slots; /* (addr, port) -> position in services; -1 empty */
    size_t mask;
    int64_t fold_at; /* -1: not yet (fold_every) */
    window earlier_server;
} host;

struct tl_tw {
    tl_tw_options o;
    int64_t fold_every;
    host *hosts;
    size_t nhosts, caphosts;
    int64_t *slots; /* names id -> position in hosts; -1 empty */
    size_t mask;
    int has_since;
    int64_t since_ns;
};

static int grow(void **buf, size_t *cap, size_t need, size_t size) {
    if (need <= *cap) return 0;
    size_t n = *cap ? *cap : 8;
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

static size_t pair_hash(int64_t a, int64_t b) {
    uint64_t x = (uint64_t)a * 0x9E3779B97F4A7C15u ^ (uint64_t)b;
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdu;
    x ^= x >> 33;
    return (size_t)x;
}

/* a fresh table of n slots, all empty */
static int64_t *new_slots(size_t n) {
    if (n > SIZE_MAX / sizeof(int64_t)) return NULL;
    int64_t *s = malloc(n * sizeof(int64_t));
    if (s != NULL)
        for (size_t i = 0; i < n; i++) s[i] = -1;
    return s;
}

tl_tw *tl_tw_new(const tl_tw_options *o) {
    tl_tw *w = calloc(1, sizeof *w);
    if (w == NULL) return NULL;
    w->o = *o;
    w->fold_every = 4096;
    return w;
}

void tl_tw_free(tl_tw *w) {
    if (w == NULL) return;
    for (size_t i = 0; i < w->nhosts; i++) {
        free(w->hosts[i].spans);
        free(w->hosts[i].services);
        free(w->hosts[i].slots);
    }
    free(w->hosts);
    free(w->slots);
    free(w);
}

void tl_tw_set_fold_every(tl_tw *w, int64_t fold_every) { w->fold_every = fold_every; }

/* ------------------------------------------------------------------ hosts and services */
static int64_t *host_slot(const tl_tw *w, int64_t addr) {
    size_t i = pair_hash(addr, 0) & w->mask;
    while (w->slots[i] >= 0 && w->hosts[w->slots[i]].addr != addr) i = (i + 1) & w->mask;
    return &w->slots[i];
}

static host *get_host(tl_tw *w, int64_t addr) {
    if (w->slots == NULL || (w->nhosts + 1) * 2 > w->mask + 1) {
        size_t n = w->slots ? (w->mask + 1) * 2 : 64;
        int64_t *slots = new_slots(n);
        if (slots == NULL) return NULL;
        free(w->slots);
        w->slots = slots;
        w->mask = n - 1;
        for (size_t k = 0; k < w->nhosts; k++) *host_slot(w, w->hosts[k].addr) = (int64_t)k;
    }
    int64_t *slot = host_slot(w, addr);
    if (*slot >= 0) return &w->hosts[*slot];
    if (grow((void **)&w->hosts, &w->caphosts, w->nhosts + 1, sizeof(host)) < 0) return NULL;
    host *h = &w->hosts[w->nhosts];
    memset(h, 0, sizeof *h);
    h->addr = addr;
    h->fold_at = -1;
    *slot = (int64_t)w->nhosts++;
    return h;
}

static int64_t *service_slot(const host *h, int64_t addr, int64_t port) {
    size_t i = pair_hash(addr, port) & h->mask;
    for (;;) {
        int64_t k = h->slots[i];
        if (k < 0 || (h->services[k].addr == addr && h->services[k].port == port))
            return &h->slots[i];
        i = (i + 1) & h->mask;
    }
}

/* `Spans._code`: the service's position, made if new; -1: out of memory */
static int64_t service_code(host *h, int64_t addr, int64_t port) {
    if (h->slots == NULL || (h->nservices + 1) * 2 > h->mask + 1) {
        size_t n = h->slots ? (h->mask + 1) * 2 : 8;
        int64_t *slots = new_slots(n);
        if (slots == NULL) return -1;
        free(h->slots);
        h->slots = slots;
        h->mask = n - 1;
        for (size_t k = 0; k < h->nservices; k++)
            *service_slot(h, h->services[k].addr, h->services[k].port) = (int64_t)k;
    }
    int64_t *slot = service_slot(h, addr, port);
    if (*slot >= 0) return *slot;
    if (grow((void **)&h->services, &h->capservices, h->nservices + 1, sizeof(service)) < 0)
        return -1;
    service *s = &h->services[h->nservices];
    memset(s, 0, sizeof *s);
    s->addr = addr;
    s->port = port;
    *slot = (int64_t)h->nservices;
    return (int64_t)h->nservices++;
}

/* ------------------------------------------------------------------ sweeps (spans.py) */
static int key_cmp(const span *a, const span *b) {
#define CMP(f) if (a->f != b->f) return a->f < b->f ? -1 : 1;
    CMP(start) CMP(end) CMP(conn_id) CMP(side) CMP(frame)
#undef CMP
    return 0;
}

typedef struct {
    int64_t ts;
    int delta;
    size_t pos; /* starts 0..n-1, ends n..2n-1: the concatenation's order */
    const span *sp;
} edge;

static int edge_cmp(const void *pa, const void *pb) {
    const edge *a = pa, *b = pb;
    if (a->ts != b->ts) return a->ts < b->ts ? -1 : 1;
    if (a->delta != b->delta) return a->delta < b->delta ? -1 : 1;
    int c = key_cmp(a->sp, b->sp);
    if (c != 0) return c;
    return a->pos < b->pos ? -1 : a->pos > b->pos ? 1 : 0;
}

/* `sweep`: the busiest instant of s[0..n) (up to cutoff, if has_cutoff): *peak, *at (the
 * interval whose start first reached it, or -1), and active[i] set for each interval active
 * then (if active is not NULL; left as it is for the others). */
static int sweep(const span *s, size_t n, int has_cutoff, int64_t cutoff, int64_t *peak,
                 int64_t *at, unsigned char *active) {
    *peak = 0;
    *at = -1;
    if (n == 0) return TL_DET_OK;
    if (n > SIZE_MAX / (2 * sizeof(edge))) return TL_DET_NOMEM;
    edge *e = malloc(2 * n * sizeof(edge));
    size_t *pos = malloc(2 * n * sizeof(size_t));
    if (e == NULL || pos == NULL) {
        free(e);
        free(pos);
        return TL_DET_NOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        edge a = {s[i].start, 1, i, &s[i]}, z = {s[i].end, -1, n + i, &s[i]};
        e[i] = a;
        e[n + i] = z;
    }
    qsort(e, 2 * n, sizeof(edge), edge_cmp);
    size_t m = 2 * n; /* the edges up to the cutoff: a prefix */
    if (has_cutoff)
        for (m = 0; m < 2 * n && e[m].ts <= cutoff; m++) {}
    int64_t count = 0, best = 0;
    size_t first = 0;
    int any = 0;
    for (size_t k = 0; k < m; k++) {
        count += e[k].delta;
        if (!any || count > best) {
            best = count;
            first = k;
            any = 1;
        }
    }
    if (any && best > 0) {
        *peak = best;
        *at = (int64_t)(e[first].pos % n);
        if (active != NULL) {
            for (size_t k = 0; k < 2 * n; k++) pos[e[k].pos] = k;
            for (size_t i = 0; i < n; i++)
                if (pos[i] <= first && pos[n + i] > first) active[i] = 1;
        }
    }
    free(e);
    free(pos);
    return TL_DET_OK;
}

typedef struct {
    size_t i;
    const span *sp;
} ordered;

static int ordered_cmp(const void *pa, const void *pb) {
    const ordered *a = pa, *b = pb;
    int c = key_cmp(a->sp, b->sp);
    if (c != 0) return c;
    return a->i < b->i ? -1 : a->i > b->i ? 1 : 0;
}

/* `busiest`: the window of window_ns (< 0: None, one window of them all) that holds the
 * most starts, beginning at each start (up to last_anchor, if has_anchor) */
static int busiest(const span *s, size_t n, int64_t window_ns, int has_anchor,
                   int64_t last_anchor, window *out) {
    out->found = 0;
    if (n == 0) return TL_DET_OK;
    if (n > SIZE_MAX / sizeof(ordered)) return TL_DET_NOMEM;
    ordered *o = malloc(n * sizeof(ordered));
    if (o == NULL) return TL_DET_NOMEM;
    for (size_t i = 0; i < n; i++) {
        o[i].i = i;
        o[i].sp = &s[i];
    }
    qsort(o, n, sizeof(ordered), ordered_cmp);
    if (window_ns < 0) {
        out->found = 1;
        out->count = (int64_t)n;
        out->key = *o[0].sp;
        free(o);
        return TL_DET_OK;
    }
    size_t limit = n;
    if (has_anchor) { /* searchsorted(starts, last_anchor, "right") */
        size_t lo = 0, hi = n;
        while (lo < hi) {
            size_t mid = lo + (hi - lo) / 2;
            if (o[mid].sp->start <= last_anchor) lo = mid + 1;
            else hi = mid;
        }
        limit = lo;
    }
    size_t j = 0;
    for (size_t i = 0; i < limit; i++) {
        /* searchsorted(starts, starts[i] + window_ns, "left"): nondecreasing in i */
        int64_t edge_ts = o[i].sp->start + window_ns;
        if (j < i) j = i;
        while (j < n && o[j].sp->start < edge_ts) j++;
        int64_t count = (int64_t)(j - i);
        if (!out->found || count > out->count) {
            out->found = 1;
            out->count = count;
            out->key = *o[i].sp;
        }
    }
    free(o);
    return TL_DET_OK;
}

/* `busier`: the window with more starts; of two with as many, the one that begins first */
static window busier(window a, window b) {
    if (!a.found || !b.found) return a.found ? a : b;
    if (a.count != b.count) return a.count > b.count ? a : b;
    return key_cmp(&a.key, &b.key) <= 0 ? a : b;
}

/* `Spans.groups`: the holders, per service in (address, port) order, then the server's;
 * *codes gets each group's service (-1: the server's), *rows the intervals' positions in
 * order, *starts where each group's begin in *rows (ngroups + 1 entries) */
typedef struct {
    size_t ngroups;
    int64_t *codes;
    size_t *rows, *starts;
} groups;

/* a service to sort by its (address text, port) */
typedef struct {
    tl_text addr;
    int64_t port, code;
} sorted_service;

static int service_cmp(const void *pa, const void *pb) {
    const sorted_service *a = pa, *b = pb;
    int c = tl_text_cmp(a->addr, b->addr);
    if (c != 0) return c;
    return a->port < b->port ? -1 : a->port > b->port ? 1 : 0;
}

static void groups_free(groups *g) {
    free(g->codes);
    free(g->rows);
    free(g->starts);
}

static int host_groups(const host *h, const tl_names *names, groups *g) {
    memset(g, 0, sizeof *g);
    size_t ns = h->nservices;
    size_t *count = calloc(ns + 1, sizeof(size_t)); /* [0]: the server's */
    g->codes = malloc((ns + 1) * sizeof(int64_t));
    g->rows = malloc((h->n ? h->n : 1) * sizeof(size_t));
    g->starts = malloc((ns + 2) * sizeof(size_t));
    if (count == NULL || g->codes == NULL || g->rows == NULL || g->starts == NULL) {
        free(count);
        groups_free(g);
        return TL_DET_NOMEM;
    }
    for (size_t i = 0; i < h->n; i++) count[h->spans[i].service + 1]++;
    sorted_service *order = malloc((ns ? ns : 1) * sizeof(sorted_service));
    if (order == NULL) {
        free(count);
        groups_free(g);
        return TL_DET_NOMEM;
    }
    for (size_t c = 0; c < ns; c++)
        if (count[c + 1]) {
            sorted_service x = {tl_names_text(names, h->services[c].addr), h->services[c].port,
                                (int64_t)c};
            order[g->ngroups++] = x;
        }
    qsort(order, g->ngroups, sizeof(sorted_service), service_cmp);
    for (size_t k = 0; k < g->ngroups; k++) g->codes[k] = order[k].code;
    free(order);
    if (count[0]) g->codes[g->ngroups++] = -1;
    size_t at = 0;
    for (size_t k = 0; k < g->ngroups; k++) { /* count[code + 1] becomes where it fills */
        size_t c = (size_t)(g->codes[k] + 1), m = count[c];
        g->starts[k] = at;
        count[c] = at;
        at += m;
    }
    g->starts[g->ngroups] = at;
    for (size_t i = 0; i < h->n; i++) g->rows[count[h->spans[i].service + 1]++] = i;
    free(count);
    return TL_DET_OK;
}

/* the intervals at rows[0..n), in order (`Spans.subset`) */
static span *subset(const host *h, const size_t *rows, size_t n) {
    span *s = malloc((n ? n : 1) * sizeof(span));
    if (s != NULL)
        for (size_t i = 0; i < n; i++) s[i] = h->spans[rows[i]];
    return s;
}

/* ------------------------------------------------------------------ folds */
static int fold(tl_tw *w, host *h, const tl_names *names, int64_t cutoff) {
    size_t n = h->n;
    int64_t tw = w->o.time_wait_ns, peak, at;
    unsigned char *keep = calloc(n ? n : 1, 1), *act = NULL;
    groups g;
    int rc;
    if (keep == NULL) return TL_DET_NOMEM;
    for (size_t i = 0; i < n; i++)
        keep[i] = h->spans[i].end > cutoff || h->spans[i].start > cutoff - tw;
    if ((rc = sweep(h->spans, n, 1, cutoff, &peak, &at, keep)) != TL_DET_OK) {
        free(keep);
        return rc;
    }
    if ((rc = host_groups(h, names, &g)) != TL_DET_OK) {
        free(keep);
        return rc;
    }
    act = malloc(n ? n : 1);
    if (act == NULL) rc = TL_DET_NOMEM;
    for (size_t k = 0; k < g.ngroups && rc == TL_DET_OK; k++) {
        size_t m = g.starts[k + 1] - g.starts[k];
        const size_t *rows = g.rows + g.starts[k];
        span *holder = subset(h, rows, m);
        if (holder == NULL) {
            rc = TL_DET_NOMEM;
            break;
        }
        memset(act, 0, m ? m : 1);
        window closed;
        rc = sweep(holder, m, 1, cutoff, &peak, &at, act);
        if (rc == TL_DET_OK) rc = busiest(holder, m, tw, 1, cutoff - tw, &closed);
        free(holder);
        if (rc != TL_DET_OK) break;
        for (size_t i = 0; i < m; i++)
            if (act[i]) keep[rows[i]] = 1;
        if (closed.found) {
            window *e = g.codes[k] < 0 ? &h->earlier_server : &h->services[g.codes[k]].earlier;
            *e = busier(*e, closed);
        }
    }
    if (rc == TL_DET_OK) {
        size_t kept = 0;
        for (size_t i = 0; i < n; i++)
            if (keep[i]) h->spans[kept++] = h->spans[i];
        h->n = kept;
    }
    free(act);
    free(keep);
    groups_free(&g);
    return rc;
}

int tl_tw_connection(tl_tw *w, tl_names *names, const tl_view *v) {
    const tl_det_record *r = v->r;
    if (!w->has_since || r->first_ts_ns < w->since_ns) {
        w->since_ns = r->first_ts_ns;
        w->has_since = 1;
    }
    int64_t touched[2];
    size_t ntouched = 0;
    for (int side = 0; side <= 1; side++) {
        for (size_t i = 0; i < v->ntrans; i++) {
            const tl_det_transition *t = &v->trans[i];
            if (t->side != side || t->to_state != TL_STATE_TIME_WAIT) continue;
            int64_t end = TL_DET_FOREVER;
            for (size_t j = i + 1; j < v->ntrans; j++)
                if (v->trans[j].side == side) {
                    end = v->trans[j].ts_ns;
                    break;
                }
            int64_t addr = tl_names_id(names, side == 0 ? r->client_addr : r->server_addr);
            if (addr < 0) return TL_DET_NOMEM;
            host *h = get_host(w, addr);
            if (h == NULL) return TL_DET_NOMEM;
            int64_t code = -1;
            if (side == 0) {
                int64_t server = tl_names_id(names, r->server_addr);
                if (server < 0) return TL_DET_NOMEM;
                code = service_code(h, server, r->server_port);
                if (code < 0) return TL_DET_NOMEM;
            }
            if (grow((void **)&h->spans, &h->cap, h->n + 1, sizeof(span)) < 0)
                return TL_DET_NOMEM;
            span sp = {t->ts_ns, end, r->conn_id, side, t->frame == TL_NONE ? -1 : t->frame,
                       code};
            h->spans[h->n++] = sp;
            int seen = 0;
            for (size_t k = 0; k < ntouched; k++) seen |= touched[k] == addr;
            if (!seen && ntouched < 2) touched[ntouched++] = addr;
        }
    }
    /* the hosts that grew (the others' counts did not change since they were last
     * checked: `BoundedTimeWaitAccumulation.on_connection` checks every host) */
    int64_t cutoff = v->capture_end_ns - w->o.horizon_ns;
    for (size_t k = 0; k < ntouched; k++) {
        host *h = get_host(w, touched[k]);
        if (h == NULL) return TL_DET_NOMEM;
        int64_t limit = h->fold_at >= 0 ? h->fold_at : w->fold_every;
        if ((int64_t)h->n > limit) {
            int rc = fold(w, h, names, cutoff);
            if (rc != TL_DET_OK) return rc;
            /* kept + max(fold_every, kept // 4): amortised O(log n) each (saturating: a
             * fold_every past 2**63 - kept never folds again, as in Python) */
            int64_t kept = (int64_t)h->n;
            int64_t more = kept / 4 > w->fold_every ? kept / 4 : w->fold_every;
            h->fold_at = more > INT64_MAX - kept ? INT64_MAX : kept + more;
        }
    }
    return TL_DET_OK;
}

/* ------------------------------------------------------------------ verdicts */
/* `_Pile`: one holder's figures */
typedef struct {
    int64_t host_addr, code; /* names id; the service's position, -1: as the server */
    int64_t limit, peak;
    int has_peak_at;
    span peak_at;
    int64_t starts;
    int has_window_at;
    span window_at;
    int64_t window_ns;
    int whole;
    int64_t observed_ns;
} pile;

static int measure(const tl_tw *w, const host *h, int64_t code, const span *s, size_t n,
                   int64_t observed_ns, pile *p) {
    int64_t tw = w->o.time_wait_ns, at;
    window win;
    int rc = sweep(s, n, 0, 0, &p->peak, &at, NULL);
    if (rc != TL_DET_OK) return rc;
    p->has_peak_at = at >= 0;
    if (at >= 0) p->peak_at = s[at];
    p->whole = observed_ns < tw;
    if ((rc = busiest(s, n, p->whole ? -1 : tw, 0, 0, &win)) != TL_DET_OK) return rc;
    if (!p->whole) win = busier(win, code < 0 ? h->earlier_server : h->services[code].earlier);
    p->starts = win.found ? win.count : 0;
    p->has_window_at = win.found;
    if (win.found) p->window_at = win.key;
    p->host_addr = h->addr;
    p->code = code;
    p->limit = code >= 0 ? w->o.port_high - w->o.port_low + 1 : w->o.max_tw_buckets;
    int64_t span_ns = observed_ns > TL_NS ? observed_ns : TL_NS;
    p->window_ns = tw < span_ns ? tw : span_ns;
    p->observed_ns = observed_ns;
    return TL_DET_OK;
}

static void count_text(tl_buf *b, double x) { tl_buf_fixed_commas(b, x, 0); } /* `_count` */

static void address(tl_buf *b, tl_text addr, int64_t port) {
    if (tl_text_has(addr, ':')) {
        S("[");
        tl_buf_text(b, addr);
        S("]:");
    } else {
        tl_buf_text(b, addr);
        S(":");
    }
    tl_buf_int(b, port);
}

static void pile_sentence(const tl_tw *w, const tl_names *names, const host *h, const pile *p,
                          double projection, int has_host_peak, int64_t host_peak,
                          tl_buf *b) {
    const tl_tw_options *o = &w->o;
    double bar = o->share * (double)p->limit;
    S("host ");
    tl_buf_text(b, tl_names_text(names, p->host_addr));
    S(" had ");
    tl_buf_commas(b, p->peak);
    S(" sockets in TIME_WAIT at once ");
    if (p->code >= 0) {
        const service *sv = &h->services[p->code];
        S("towards ");
        address(b, tl_names_text(names, sv->addr), sv->port);
    } else {
        S("as the server");
    }
    if (p->has_peak_at) {
        S(" at ");
        tl_buf_clock(b, p->peak_at.start);
    }
    S(p->code >= 0 ? " (as the client)" : " (from every client together)");
    S(", and ");
    tl_buf_commas(b, p->starts);
    S(" new ones ");
    if (p->whole) {
        S("in the capture's ");
        tl_buf_secs(b, p->observed_ns > 0 ? p->observed_ns : 0);
        if (p->observed_ns < TL_NS) S(", rated over 1 s");
    } else {
        S("in the busiest ");
        tl_buf_secs(b, p->window_ns);
        if (p->has_window_at) {
            S(", from ");
            tl_buf_clock(b, p->window_at.start);
        }
    }
    S(" (");
    tl_buf_fixed_commas(b, p->window_ns > 0 ? tl_ratio((uint64_t)p->starts, (uint64_t)TL_NS,
                                                       (uint64_t)p->window_ns)
                                            : 0.0, 1);
    S("/s), which over the ");
    tl_buf_secs(b, o->time_wait_ns);
    S(" of TIME_WAIT would hold ");
    count_text(b, projection);
    S(" at once; the limit is ");
    tl_buf_commas(b, p->limit);
    if (p->code >= 0) {
        S(" (ephemeral ports ");
        tl_buf_int(b, o->port_low);
        S("-");
        tl_buf_int(b, o->port_high);
        S(": one client address holds at most that many sockets towards one server address "
          "and port)");
    } else {
        S(" (net.ipv4.tcp_max_tw_buckets: the most TIME_WAIT sockets the kernel keeps)");
    }
    S(", ");
    tl_buf_percent0(b, o->share);
    S(" of it ");
    count_text(b, bar);
    S("; ");
    int reasons = 0;
#define REASON() (reasons++ ? S(" and ") : (void)0)
    if (p->peak >= p->limit) {
        REASON();
        S("the peak reached the limit");
    } else if ((double)p->peak > bar) {
        REASON();
        S("the peak passed ");
        tl_buf_percent0(b, o->share);
        S(" of the limit");
    }
    if (projection >= (double)p->limit) {
        REASON();
        S("the projection reaches the limit");
    } else if (projection > bar) {
        REASON();
        S("the projection passes ");
        tl_buf_percent0(b, o->share);
        S(" of the limit");
    }
    if (has_host_peak) {
        REASON();
        S("the host's ");
        tl_buf_commas(b, host_peak);
        S(" sockets in TIME_WAIT at once reached time_wait_threshold ");
        tl_buf_commas(b, o->threshold);
    }
#undef REASON
    S(": ");
    if (p->code >= 0) {
        const service *sv = &h->services[p->code];
        S("once every port is held, connect() to ");
        address(b, tl_names_text(names, sv->addr), sv->port);
        S(" fails (EADDRNOTAVAIL): reuse connections (keep-alive, pooling), let the server "
          "close first, or widen net.ipv4.ip_local_port_range");
    } else {
        S("past the limit the kernel closes sockets at once, without TIME_WAIT "
          "(TcpExtTCPTimeWaitOverflow), so late segments of old connections may reach new "
          "ones: let the clients close first, or reuse connections (keep-alive)");
    }
}

static int64_t span_frame(const span *s) { return s->frame < 0 ? TL_NONE : s->frame; }

/* `_pile_row`: the holder's row, if a rule reports it (host_at: the interval of this
 * holder that brought the host's count to the threshold, if it did) */
static int pile_row(const tl_tw *w, const tl_names *names, const host *h, const pile *p,
                    int has_host_at, int64_t host_peak, const span *host_at,
                    tl_anomalies *out, tl_buf *b) {
    const tl_tw_options *o = &w->o;
    double projection = p->window_ns > 0 ? tl_ratio((uint64_t)p->starts,
                                                    (uint64_t)o->time_wait_ns,
                                                    (uint64_t)p->window_ns)
                                         : 0.0;
    double bar = o->share * (double)p->limit;
    int by_peak = (double)p->peak > bar, by_rate = projection > bar;
    if (!(by_peak || by_rate || has_host_at)) return TL_DET_OK;
    const span *key = by_peak ? &p->peak_at : has_host_at ? host_at : &p->window_at;
    int64_t frames[3];
    size_t nframes = 0;
    if (p->has_peak_at) frames[nframes++] = span_frame(&p->peak_at);
    if (has_host_at) frames[nframes++] = span_frame(host_at);
    if (p->has_window_at) frames[nframes++] = span_frame(&p->window_at);
    int at_limit = p->peak >= p->limit || projection >= (double)p->limit;
    pile_sentence(w, names, h, p, projection, has_host_at, host_peak, b);
    tl_claim c = {(int)key->side, TL_STATE_TIME_WAIT, key->start};
    tl_row row = {key->conn_id, key->start, span_frame(key), (int)key->side,
                  TL_ANOMALY_TIME_WAIT_ACCUMULATION,
                  at_limit ? TL_SEVERITY_ERROR : TL_SEVERITY_WARNING,
                  by_peak || has_host_at ? TL_CONFIDENCE_CERTAIN : TL_CONFIDENCE_LIKELY,
                  frames, nframes, &c, key->end > key->start ? 1 : 0};
    return tl_anomalies_add(out, &row, b);
}

typedef struct {
    tl_text addr;
    size_t i;
} sorted_host;

static int host_cmp(const void *pa, const void *pb) {
    const sorted_host *a = pa, *b = pb;
    return tl_text_cmp(a->addr, b->addr);
}

static int judge_host(const tl_tw *w, const tl_names *names, const host *h,
                      int64_t capture_end_ns, tl_anomalies *out, tl_buf *b) {
    int64_t peak, at;
    int rc = sweep(h->spans, h->n, 0, 0, &peak, &at, NULL);
    if (rc != TL_DET_OK) return rc;
    int counted = at >= 0 && peak >= w->o.threshold;
    int64_t observed = w->has_since ? capture_end_ns - w->since_ns : 0;
    groups g;
    if ((rc = host_groups(h, names, &g)) != TL_DET_OK) return rc;
    for (size_t k = 0; k < g.ngroups && rc == TL_DET_OK; k++) {
        size_t m = g.starts[k + 1] - g.starts[k];
        span *holder = subset(h, g.rows + g.starts[k], m);
        if (holder == NULL) {
            rc = TL_DET_NOMEM;
            break;
        }
        pile p;
        rc = measure(w, h, g.codes[k], holder, m, observed, &p);
        free(holder);
        if (rc != TL_DET_OK) break;
        int by_count = counted && h->spans[at].service == g.codes[k];
        rc = pile_row(w, names, h, &p, by_count, peak, by_count ? &h->spans[at] : NULL, out, b);
    }
    groups_free(&g);
    return rc;
}

int tl_tw_finish(tl_tw *w, const tl_names *names, int64_t capture_end_ns, tl_anomalies *out,
                 tl_buf *b) {
    if (w->nhosts == 0) return TL_DET_OK;
    sorted_host *order = malloc(w->nhosts * sizeof(sorted_host));
    if (order == NULL) return TL_DET_NOMEM;
    for (size_t i = 0; i < w->nhosts; i++) {
        order[i].addr = tl_names_text(names, w->hosts[i].addr);
        order[i].i = i;
    }
    qsort(order, w->nhosts, sizeof(sorted_host), host_cmp);
    int rc = TL_DET_OK;
    for (size_t k = 0; k < w->nhosts && rc == TL_DET_OK; k++)
        rc = judge_host(w, names, &w->hosts[order[k].i], capture_end_ns, out, b);
    free(order);
    return rc;
}
