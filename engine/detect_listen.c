/* handshake.py's `ListenOverflow` (not `defer`: the file engine's): listen_overflow and
 * syn_unanswered, judged across the connections of one service (server address and port)
 * against the SYN-ACKs it sent to others, seen as they happen. */
#define TL_DETECT_INTERNAL
#include "detect.h"

#include <stdlib.h>
#include <string.h>

#define CLIENT 0
#define SERVER 1
#define S(text) tl_buf_str(b, text)

typedef struct {
    int64_t ts_ns, conn_id;
} answer;

/* one service's SYN-ACKs, a deque: items[head, n) */
typedef struct {
    int64_t addr, port;
    answer *items;
    size_t head, n, cap;
} service;

/* `_Unanswered` */
typedef struct {
    int64_t conn_id;
    int64_t *times;
    size_t ntimes;
    int64_t frame, answered_at; /* TL_NONE: None */
    int64_t client_addr, client_port, server_addr, server_port; /* names ids, ports */
    int synacks;
} unanswered;

struct tl_listen {
    int64_t horizon_ns;
    service *services;
    size_t nservices, capservices;
    int64_t *slots; /* -1 empty, else a position in services */
    size_t mask;
    unanswered *pending;
    size_t npending, cappending;
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

tl_listen *tl_listen_new(int64_t syn_sent_ns) {
    tl_listen *l = calloc(1, sizeof *l);
    if (l == NULL) return NULL;
    /* a window reaches at most one retry interval before the first SYN, which is at most
     * syn_sent before the connection ends */
    l->horizon_ns = 2 * syn_sent_ns + 60 * TL_NS;
    return l;
}

void tl_listen_free(tl_listen *l) {
    if (l == NULL) return;
    for (size_t i = 0; i < l->nservices; i++) free(l->services[i].items);
    free(l->services);
    free(l->slots);
    for (size_t i = 0; i < l->npending; i++) free(l->pending[i].times);
    free(l->pending);
    free(l);
}

static size_t pair_hash(int64_t a, int64_t b) {
    uint64_t x = (uint64_t)a * 0x9E3779B97F4A7C15u ^ (uint64_t)b;
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdu;
    x ^= x >> 33;
    return (size_t)x;
}

static int64_t *service_slot(const tl_listen *l, int64_t addr, int64_t port) {
    size_t i = pair_hash(addr, port) & l->mask;
    for (;;) {
        int64_t k = l->slots[i];
        if (k < 0 || (l->services[k].addr == addr && l->services[k].port == port))
            return &l->slots[i];
        i = (i + 1) & l->mask;
    }
}

/* the service's position, or -1 */
static int64_t find_service(const tl_listen *l, int64_t addr, int64_t port) {
    if (l->slots == NULL) return -1;
    return *service_slot(l, addr, port);
}

/* the service's position, made if new; -1: out of memory */
static int64_t get_service(tl_listen *l, int64_t addr, int64_t port) {
    if (l->slots == NULL || (l->nservices + 1) * 2 > l->mask + 1) {
        size_t n = l->slots ? (l->mask + 1) * 2 : 64;
        if (n > SIZE_MAX / sizeof(int64_t)) return -1;
        int64_t *slots = malloc(n * sizeof(int64_t));
        if (slots == NULL) return -1;
        for (size_t i = 0; i < n; i++) slots[i] = -1;
        free(l->slots);
        l->slots = slots;
        l->mask = n - 1;
        for (size_t k = 0; k < l->nservices; k++)
            *service_slot(l, l->services[k].addr, l->services[k].port) = (int64_t)k;
    }
    int64_t *slot = service_slot(l, addr, port);
    if (*slot >= 0) return *slot;
    if (grow((void **)&l->services, &l->capservices, l->nservices + 1, sizeof(service)) < 0)
        return -1;
    service *s = &l->services[l->nservices];
    memset(s, 0, sizeof *s);
    s->addr = addr;
    s->port = port;
    *slot = (int64_t)l->nservices;
    return (int64_t)l->nservices++;
}

int tl_listen_transition(tl_listen *l, tl_names *names, const tl_det_stream_transition *st) {
    const tl_det_transition *t = &st->t;
    if (!(t->side == SERVER && tl_event_is(t, "send SYN-ACK"))) return TL_DET_OK;
    int64_t addr = tl_names_id(names, st->addr);
    if (addr < 0) return TL_DET_NOMEM;
    int64_t k = get_service(l, addr, st->port);
    if (k < 0) return TL_DET_NOMEM;
    service *s = &l->services[k];
    if (s->n == s->cap && s->head > 0 && s->head >= s->n / 2) { /* compact the deque */
        memmove(s->items, s->items + s->head, (s->n - s->head) * sizeof(answer));
        s->n -= s->head;
        s->head = 0;
    }
    if (grow((void **)&s->items, &s->cap, s->n + 1, sizeof(answer)) < 0) return TL_DET_NOMEM;
    s->items[s->n].ts_ns = t->ts_ns;
    s->items[s->n].conn_id = st->conn_id;
    s->n++;
    while (s->head < s->n && s->items[s->head].ts_ns < t->ts_ns - l->horizon_ns) s->head++;
    if (s->head == s->n) s->head = s->n = 0;
    return TL_DET_OK;
}

/* `_Unanswered.reach_ns`: the longest gap between the times, at least 1 s */
static int64_t reach_ns(const unanswered *u) {
    int64_t reach = TL_NS;
    for (size_t i = 1; i < u->ntimes; i++)
        if (u->times[i] - u->times[i - 1] > reach) reach = u->times[i] - u->times[i - 1];
    return reach;
}

static void who(tl_buf *b, const tl_names *names, int side, int64_t addr, int64_t port) {
    tl_text a = tl_names_text(names, addr);
    tl_buf_str(b, TL_SIDE_NAMES[side]);
    if (tl_text_has(a, ':')) {
        S(" [");
        tl_buf_text(b, a);
        S("]:");
    } else {
        S(" ");
        tl_buf_text(b, a);
        S(":");
    }
    tl_buf_int(b, port);
}

static int judge(const tl_listen *l, const tl_names *names, const unanswered *u,
                 tl_anomalies *out, tl_buf *b) {
    int64_t reach = reach_ns(u), first = u->times[0], last = u->times[u->ntimes - 1];
    /* lo <= t <= hi, lo = first - reach, hi = last + reach (without overflow) */
#define WITHIN(t) ((t) - first >= -reach && (t) - last <= reach)
    int64_t k = find_service(l, u->server_addr, u->server_port);
    size_t nothers = 0;
    const answer *near = NULL;
    if (k >= 0) {
        const service *s = &l->services[k];
        for (size_t i = s->head; i < s->n; i++) {
            const answer *a = &s->items[i];
            if (!WITHIN(a->ts_ns) || a->conn_id == u->conn_id) continue;
            nothers++;
            /* min(others, key=|t - times[0]|): the first of the nearest */
            if (near == NULL) near = a;
            else {
                int64_t da = a->ts_ns - first, dn = near->ts_ns - first;
                uint64_t ua = da < 0 ? (uint64_t)0 - (uint64_t)da : (uint64_t)da;
                uint64_t un = dn < 0 ? (uint64_t)0 - (uint64_t)dn : (uint64_t)dn;
                if (ua < un) near = a;
            }
        }
    }
    int64_t n = (int64_t)u->ntimes;
    int64_t frames[1] = {u->frame};
    if (nothers && (n >= 2 || u->answered_at != TL_NONE || u->synacks)) {
        int likely = n >= 2 || u->synacks;
        who(b, names, SERVER, u->server_addr, u->server_port);
        if (u->synacks) {
            S(" repeated its SYN-ACK to ");
            who(b, names, CLIENT, u->client_addr, u->client_port);
            S(" ");
            tl_buf_int(b, n);
            S(n > 1 ? " times" : " time");
            S(" from ");
            tl_buf_clock(b, first);
            S(" after the client's ACK (the kernel dropped that ACK)");
        } else {
            S(" left ");
            tl_buf_int(b, n);
            S(n > 1 ? " SYNs" : " SYN");
            S(" from ");
            who(b, names, CLIENT, u->client_addr, u->client_port);
            S(" unanswered from ");
            tl_buf_clock(b, first);
            if (u->answered_at != TL_NONE) {
                S(" (answered at ");
                tl_buf_clock(b, u->answered_at);
                S(")");
            }
        }
        S(" while it answered ");
        tl_buf_int(b, (int64_t)nothers);
        S(nothers > 1 ? " other connections" : " other connection");
        S(" (conn ");
        tl_buf_int(b, near->conn_id);
        S(" at ");
        tl_buf_clock(b, near->ts_ns);
        S("): the listener's accept queue was full (backlog too small, or the application "
          "slow to accept())");
        if (!likely) S("; one SYN lost on the way looks the same");
        tl_row row = {u->conn_id, first, u->frame, SERVER, TL_ANOMALY_LISTEN_OVERFLOW,
                      u->answered_at != TL_NONE ? TL_SEVERITY_WARNING : TL_SEVERITY_ERROR,
                      likely ? TL_CONFIDENCE_LIKELY : TL_CONFIDENCE_POSSIBLE,
                      frames, 1, NULL, 0};
        return tl_anomalies_add(out, &row, b);
    }
    if (!u->synacks && u->answered_at == TL_NONE && n >= 2) {
        /* the same host answering on another port meanwhile is up: not a dead host */
        int host_up = 0;
        for (size_t j = 0; j < l->nservices && !host_up; j++) {
            const service *s = &l->services[j];
            if (s->addr != u->server_addr || s->port == u->server_port) continue;
            for (size_t i = s->head; i < s->n; i++)
                if (WITHIN(s->items[i].ts_ns)) {
                    host_up = 1;
                    break;
                }
        }
        who(b, names, CLIENT, u->client_addr, u->client_port);
        S(" sent ");
        tl_buf_int(b, n);
        S(" SYNs to ");
        who(b, names, SERVER, u->server_addr, u->server_port);
        S(" between ");
        tl_buf_clock(b, first);
        S(" and ");
        tl_buf_clock(b, last);
        S(" and got no answer, and nothing of that service answered anyone meanwhile: ");
        S(host_up ? "its host answered on other ports meanwhile, so it is up: a firewall "
                    "drops the SYNs to this port"
                  : "a firewall drops them or the host is down");
        tl_row row = {u->conn_id, first, u->frame, CLIENT, TL_ANOMALY_SYN_UNANSWERED,
                      TL_DEFAULT_SEVERITY[TL_ANOMALY_SYN_UNANSWERED], TL_CONFIDENCE_CERTAIN,
                      frames, 1, NULL, 0};
        return tl_anomalies_add(out, &row, b);
    }
#undef WITHIN
    return TL_DET_OK;
}

int tl_listen_connection(tl_listen *l, tl_names *names, const tl_view *v, tl_anomalies *out,
                         tl_buf *b) {
    const tl_det_record *r = v->r;
    const tl_det_transition *answer_t = NULL, *syn = NULL, *established = NULL;
    for (size_t i = 0; i < v->ntrans; i++) {
        const tl_det_transition *t = &v->trans[i];
        if (t->side == SERVER) {
            if (answer_t == NULL && tl_event_is(t, "send SYN-ACK")) answer_t = t;
        } else {
            if (syn == NULL && tl_event_is(t, "send SYN")) syn = t;
            if (established == NULL && t->to_state == TL_STATE_ESTABLISHED) established = t;
        }
    }
    unanswered found[2];
    size_t nfound = 0;
    int rc = TL_DET_OK;
    int64_t client_addr = -1, server_addr = -1;
    if ((syn != NULL && r->client_initial_state == TL_STATE_CLOSED) ||
        (answer_t != NULL && established != NULL)) {
        client_addr = tl_names_id(names, r->client_addr);
        server_addr = tl_names_id(names, r->server_addr);
        if (client_addr < 0 || server_addr < 0) return TL_DET_NOMEM;
    }
    if (syn != NULL && r->client_initial_state == TL_STATE_CLOSED) {
        size_t cap = 1;
        for (size_t i = 0; i < v->nnotes; i++)
            if (v->notes[i].name == TL_ODD_SYN_RTX && v->notes[i].side == CLIENT) cap++;
        int64_t *times = malloc(cap * sizeof(int64_t));
        if (times == NULL) return TL_DET_NOMEM;
        size_t n = 0;
        int64_t answered = answer_t ? answer_t->ts_ns : TL_NONE;
        if (answered == TL_NONE || syn->ts_ns < answered) times[n++] = syn->ts_ns;
        int with_fin = 0;
        for (size_t i = 0; i < v->nnotes; i++) {
            const tl_det_note *note = &v->notes[i];
            if (note->side != CLIENT) continue;
            if (note->name == TL_ODD_SYN_WITH_FIN) with_fin = 1;
            if (note->name == TL_ODD_SYN_RTX && (answered == TL_NONE || note->ts_ns < answered))
                times[n++] = note->ts_ns;
        }
        if (answered != TL_NONE && n > 0) n--; /* the last one was answered */
        if (n > 0 && (answered != TL_NONE || r->close_kind == TL_CLOSE_UNANSWERED) && !with_fin) {
            unanswered u = {r->conn_id, times, n, syn->frame, answered, client_addr,
                            r->client_port, server_addr, r->server_port, 0};
            found[nfound++] = u;
        } else {
            free(times);
        }
    }
    if (answer_t != NULL && established != NULL) {
        /* SYN-ACKs repeated well after the client's ACK (not crossing it) */
        size_t cap = 0;
        for (size_t i = 0; i < v->nnotes; i++)
            if (v->notes[i].name == TL_ODD_SYNACK_RTX && v->notes[i].side == SERVER) cap++;
        int64_t *times = cap ? malloc(cap * sizeof(int64_t)) : NULL;
        if (cap && times == NULL) rc = TL_DET_NOMEM;
        size_t n = 0;
        int64_t frame = TL_NONE;
        for (size_t i = 0; times != NULL && i < v->nnotes; i++) {
            const tl_det_note *note = &v->notes[i];
            if (note->name == TL_ODD_SYNACK_RTX && note->side == SERVER &&
                note->ts_ns > established->ts_ns + TL_NS / 5) {
                if (n == 0) frame = note->frame;
                times[n++] = note->ts_ns;
            }
        }
        if (n > 0) {
            unanswered u = {r->conn_id, times, n, frame, TL_NONE, client_addr, r->client_port,
                            server_addr, r->server_port, 1};
            found[nfound++] = u;
        } else {
            free(times);
        }
    }
    size_t i = 0;
    for (; i < nfound && rc == TL_DET_OK; i++) {
        unanswered *u = &found[i];
        if (v->capture_end_ns - u->times[u->ntimes - 1] >= reach_ns(u)) {
            rc = judge(l, names, u, out, b);
            free(u->times);
        } else if (grow((void **)&l->pending, &l->cappending, l->npending + 1,
                        sizeof(unanswered)) < 0) {
            rc = TL_DET_NOMEM;
            free(u->times);
        } else {
            l->pending[l->npending++] = *u;
        }
    }
    for (; i < nfound; i++) free(found[i].times);
    return rc;
}

int tl_listen_finish(tl_listen *l, const tl_names *names, tl_anomalies *out, tl_buf *b) {
    int rc = TL_DET_OK;
    for (size_t i = 0; i < l->npending; i++) {
        if (rc == TL_DET_OK) rc = judge(l, names, &l->pending[i], out, b);
        free(l->pending[i].times);
    }
    l->npending = 0;
    return rc;
}
