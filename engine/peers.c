/* The peers of one connection instance (tcplife/peers/__init__.py's `Peers`: Zeek's
 * connections, including the inactivity splits of `ZeekReplay`; Suricata's session state,
 * suricata.py's `SuricataRecorder`; the tcp.streams its segments fall in), and Wireshark's
 * tcp.stream numbering of every segment (wireshark.py's `WiresharkStreams`). The Zeek
 * replay itself is peers_zeek.c. */
#include <stdlib.h>
#include <string.h>

#include "peers.h"

#define FIN 0x01
#define SYN 0x02
#define RST 0x04
#define ACK 0x10

static uint32_t u32(int64_t v) { return (uint32_t)((uint64_t)v & 0xFFFFFFFFu); }

/* Grow *buf (of *cap items of size) to hold at least need items; -1 when it cannot */
static int grow(void **buf, size_t *cap, size_t need, size_t size) {
    if (need <= *cap) return 0;
    size_t n = *cap ? *cap : 4;
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

/* ------------------------------------------------------------------ Suricata */
const char *const TL_SURI_NAMES[TL_SURI_N] = {
    "none", "syn_sent", "syn_recv", "established", "fin_wait1", "fin_wait2", "time_wait",
    "last_ack", "close_wait", "closing", "closed"};

/* 0 < (a - b) mod 2**32 < 2**31 */
static int seq_gt(uint32_t a, uint32_t b) {
    uint32_t d = a - b;
    return d != 0 && d < 0x80000000u;
}

static void suri_init(tl_suri *s) {
    memset(s, 0, sizeof *s);
    s->state = TL_SURI_NONE;
    s->client_is_client = 1;
}

/* `_advance`: the next sequence number each side is expected to send (data and SYN count,
 * the FIN does not) */
static void suri_advance(tl_suri *s, const tl_peer_seg *seg, int to_server) {
    if (seg->flags & RST) return;
    uint32_t end = u32(seg->seq) + u32(seg->payload_len) + ((seg->flags & SYN) ? 1u : 0u);
    if (to_server) {
        if (!s->has_nxt_client || seq_gt(end, s->nxt_client)) {
            s->nxt_client = end;
            s->has_nxt_client = 1;
        }
    } else if (!s->has_nxt_server || seq_gt(end, s->nxt_server)) {
        s->nxt_server = end;
        s->has_nxt_server = 1;
    }
}

static void suri_step(tl_suri *s, const tl_peer_seg *seg, int to_server) {
    int64_t flags = seg->flags;
    int state = s->state;
    uint32_t seq = u32(seg->seq);
    if (state == TL_SURI_CLOSED) return;
    if (flags & RST) {
        if (state == TL_SURI_SYN_SENT) {
            if (!to_server && (flags & ACK) && s->has_isn && u32(seg->ack) == s->isn + 1u)
                s->state = TL_SURI_CLOSED;
        } else {
            s->state = TL_SURI_CLOSED;
        }
        return;
    }
    if (state == TL_SURI_SYN_SENT) {
        if ((flags & SYN) && !to_server) s->state = TL_SURI_SYN_RECV;
        return;
    }
    if (state == TL_SURI_SYN_RECV) {
        if (to_server && (flags & ACK) && !(flags & SYN)) {
            s->state = state = TL_SURI_ESTABLISHED; /* a FIN on the same packet: below */
        } else {
            return;
        }
    }
    int fin = (flags & FIN) != 0;
    switch (state) {
    case TL_SURI_ESTABLISHED:
        if (fin) s->state = to_server ? TL_SURI_CLOSE_WAIT : TL_SURI_FIN_WAIT1;
        break;
    case TL_SURI_FIN_WAIT1:
        if (fin && to_server)
            s->state = (flags & ACK) ? TL_SURI_TIME_WAIT : TL_SURI_CLOSING;
        else if (!fin && to_server && (flags & ACK) && seg->payload_len == 0
                 && s->has_nxt_client && seq == s->nxt_client) /* `_at_next` */
            s->state = TL_SURI_FIN_WAIT2;
        break;
    case TL_SURI_FIN_WAIT2:
        if (fin && to_server) s->state = TL_SURI_TIME_WAIT;
        break;
    case TL_SURI_CLOSE_WAIT:
        if (fin && !to_server) s->state = TL_SURI_LAST_ACK;
        break;
    case TL_SURI_LAST_ACK:
        if (to_server && (flags & ACK) && !fin && s->has_nxt_client
            && (seq == s->nxt_client || seq == s->nxt_client + 1u))
            s->state = TL_SURI_CLOSED;
        break;
    case TL_SURI_CLOSING:
        if ((flags & ACK) && !fin) s->state = TL_SURI_TIME_WAIT;
        break;
    case TL_SURI_TIME_WAIT:
        if ((flags & ACK) && !fin) s->state = TL_SURI_CLOSED;
        break;
    default:
        break;
    }
}

static void suri_process(tl_suri *s, const tl_peer_seg *seg, int from_client) {
    if (s->state == TL_SURI_ESTABLISHED && !(seg->flags & (SYN | FIN | RST))) {
        suri_advance(s, seg, from_client == s->client_is_client);
        return;
    }
    if (s->state == TL_SURI_NONE) {
        if ((seg->flags & (SYN | ACK | RST)) == SYN) {
            s->client_is_client = from_client;
            s->isn = u32(seg->seq);
            s->has_isn = 1;
            s->state = TL_SURI_SYN_SENT;
            suri_advance(s, seg, 1);
        }
        return;
    }
    int to_server = from_client == s->client_is_client;
    suri_step(s, seg, to_server);
    suri_advance(s, seg, to_server);
}

/* ------------------------------------------------------------------ Wireshark */
typedef struct {
    int64_t stream, a_addr, a_port;
    int has_a, has_b;
    uint32_t base_a, base_b;
} ws_conv;

typedef struct {
    int64_t src, sport, dst, dport;
    size_t conv; /* index + 1; 0: empty */
} ws_slot;

struct tl_wshark {
    ws_conv *convs; /* by stream number */
    size_t nconvs, capconvs;
    ws_slot *slots; /* open addressing, linear probing, never deleted */
    size_t mask, used;
    int64_t current;
};

static uint64_t mix(uint64_t x) { /* splitmix64's finaliser */
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9u;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebu;
    x ^= x >> 31;
    return x;
}

static size_t slot_hash(int64_t src, int64_t sport, int64_t dst, int64_t dport) {
    uint64_t h = mix((uint64_t)src);
    h = mix(h ^ (uint64_t)dst);
    h = mix(h ^ (((uint64_t)sport & 0xFFFFFFFFu) << 32) ^ ((uint64_t)dport & 0xFFFFFFFFu));
    return (size_t)h;
}

static ws_slot *slot_find(const tl_wshark *ws, int64_t src, int64_t sport, int64_t dst,
                          int64_t dport) {
    size_t i = slot_hash(src, sport, dst, dport) & ws->mask;
    for (;;) {
        ws_slot *s = &ws->slots[i];
        if (s->conv == 0
            || (s->src == src && s->sport == sport && s->dst == dst && s->dport == dport))
            return s;
        i = (i + 1) & ws->mask;
    }
}

static int slots_grow(tl_wshark *ws) {
    size_t n = (ws->mask + 1) * 2;
    if (n > SIZE_MAX / sizeof(ws_slot)) return -1;
    ws_slot *old = ws->slots;
    size_t oldn = ws->mask + 1;
    ws->slots = calloc(n, sizeof(ws_slot));
    if (ws->slots == NULL) {
        ws->slots = old;
        return -1;
    }
    ws->mask = n - 1;
    for (size_t i = 0; i < oldn; i++)
        if (old[i].conv) *slot_find(ws, old[i].src, old[i].sport, old[i].dst, old[i].dport) = old[i];
    free(old);
    return 0;
}

static int slot_put(tl_wshark *ws, int64_t src, int64_t sport, int64_t dst, int64_t dport,
                    size_t conv) {
    if ((ws->used + 1) * 2 > ws->mask + 1 && slots_grow(ws) < 0) return -1;
    ws_slot *s = slot_find(ws, src, sport, dst, dport);
    if (s->conv == 0) {
        ws->used++;
        s->src = src;
        s->sport = sport;
        s->dst = dst;
        s->dport = dport;
    }
    s->conv = conv;
    return 0;
}

tl_wshark *tl_wshark_new(void) {
    tl_wshark *ws = calloc(1, sizeof *ws);
    if (ws == NULL) return NULL;
    ws->mask = 63;
    ws->slots = calloc(ws->mask + 1, sizeof(ws_slot));
    if (ws->slots == NULL) {
        free(ws);
        return NULL;
    }
    ws->current = -1;
    return ws;
}

void tl_wshark_free(tl_wshark *ws) {
    if (ws == NULL) return;
    free(ws->convs);
    free(ws->slots);
    free(ws);
}

int64_t tl_wshark_current(const tl_wshark *ws) { return ws->current; }

int64_t tl_wshark_count(const tl_wshark *ws) { return (int64_t)ws->nconvs; }

/* `_new`: a conversation numbered next, started by seg; its index, or -1 */
static int64_t ws_new(tl_wshark *ws, const tl_peer_seg *seg) {
    if (grow((void **)&ws->convs, &ws->capconvs, ws->nconvs + 1, sizeof(ws_conv)) < 0)
        return -1;
    size_t i = ws->nconvs;
    ws_conv *c = &ws->convs[i];
    memset(c, 0, sizeof *c);
    c->stream = (int64_t)i;
    c->a_addr = seg->src;
    c->a_port = seg->sport;
    ws->nconvs++; /* before the slots point at it */
    if (slot_put(ws, seg->src, seg->sport, seg->dst, seg->dport, i + 1) < 0
        || slot_put(ws, seg->dst, seg->dport, seg->src, seg->sport, i + 1) < 0)
        return -1;
    return (int64_t)i;
}

int64_t tl_wshark_feed(tl_wshark *ws, const tl_peer_seg *seg) {
    ws_slot *s = slot_find(ws, seg->src, seg->sport, seg->dst, seg->dport);
    int64_t flags = seg->flags;
    int64_t ci;
    if (s->conv == 0) {
        if ((ci = ws_new(ws, seg)) < 0) return -1;
    } else {
        ci = (int64_t)s->conv - 1;
        if ((flags & (SYN | ACK | RST)) == SYN) {
            const ws_conv *c = &ws->convs[ci];
            int by_a = seg->sport == c->a_port && seg->src == c->a_addr;
            int has = by_a ? c->has_a : c->has_b;
            uint32_t base = by_a ? c->base_a : c->base_b;
            if (has && u32(seg->seq) != base && (ci = ws_new(ws, seg)) < 0)
                return -1; /* port reuse: a new conversation on the 4-tuple */
        }
    }
    ws_conv *c = &ws->convs[ci];
    if (seg->sport == c->a_port && seg->src == c->a_addr) {
        if (!c->has_a) {
            c->base_a = u32(seg->seq);
            c->has_a = 1;
        }
        if ((flags & ACK) && !c->has_b && !(flags & RST)) {
            c->base_b = u32(seg->ack) - 1u;
            c->has_b = 1;
        }
    } else {
        if (!c->has_b) {
            c->base_b = u32(seg->seq);
            c->has_b = 1;
        }
        if ((flags & ACK) && !c->has_a && !(flags & RST)) {
            c->base_a = u32(seg->ack) - 1u;
            c->has_a = 1;
        }
    }
    ws->current = c->stream;
    return c->stream;
}

/* ------------------------------------------------------------------ one instance */
tl_peers *tl_peers_open(const tl_peer_seg *seg, int sender_is_client) {
    tl_peers *p = calloc(1, sizeof *p);
    if (p == NULL) return NULL;
    if (tl_zrec_init(&p->zeek, seg, sender_is_client) < 0) {
        tl_peers_free(p);
        return NULL;
    }
    suri_init(&p->suri);
    p->first_stream = -1;
    return p;
}

void tl_peers_free(tl_peers *p) {
    if (p == NULL) return;
    tl_zrec_release(&p->zeek);
    for (size_t i = 0; i < p->ndone; i++) free((char *)p->done[i].history);
    free(p->done);
    free(p->streams);
    free(p);
}

/* ts - last >= timeout, without overflow (timeout > 0) */
static int expired(int64_t ts, int64_t last, int64_t timeout) {
    if (last > INT64_MAX - timeout) return 0;
    return ts >= last + timeout;
}

/* `ZeekReplay.process`: Zeek's inactivity timer removed the connection before this
 * packet, which then starts a new one */
static int zeek_process(tl_peers *p, const tl_peer_seg *seg, int from_client) {
    tl_zrec *cur = &p->zeek;
    if (expired(seg->ts_ns, cur->last_ns, cur->inactivity_ns)) {
        tl_zeek_record r;
        if (grow((void **)&p->done, &p->capdone, p->ndone + 1, sizeof r) < 0) return -1;
        tl_zrec_record(cur, &r);
        char *h = malloc(r.history_len ? r.history_len : 1);
        if (h == NULL) return -1;
        if (r.history_len) memcpy(h, r.history, r.history_len);
        r.history = h;
        p->done[p->ndone++] = r;
        tl_zrec_release(cur);
        if (tl_zrec_init(cur, seg, from_client) < 0) return -1;
    }
    return tl_zrec_process(cur, seg, from_client);
}

static int add_stream(tl_peers *p, int64_t stream) {
    size_t lo = 0, hi = p->nstreams;
    if (hi && p->streams[hi - 1] < stream) {
        lo = hi; /* the usual case: a later stream */
    } else {
        while (lo < hi) {
            size_t mid = lo + (hi - lo) / 2;
            if (p->streams[mid] < stream) lo = mid + 1;
            else hi = mid;
        }
        if (lo < p->nstreams && p->streams[lo] == stream) return 0;
    }
    if (grow((void **)&p->streams, &p->capstreams, p->nstreams + 1, sizeof(int64_t)) < 0)
        return -1;
    memmove(p->streams + lo + 1, p->streams + lo, (p->nstreams - lo) * sizeof(int64_t));
    p->streams[lo] = stream;
    p->nstreams++;
    return 0;
}

int tl_peers_feed(tl_peers *p, const tl_peer_seg *seg, int from_client, int64_t stream) {
    from_client = !!from_client;
    if (zeek_process(p, seg, from_client) < 0) return -1;
    suri_process(&p->suri, seg, from_client);
    if (p->first_stream < 0) p->first_stream = stream;
    else if (stream != p->first_stream) return add_stream(p, stream);
    return 0;
}

size_t tl_peers_zeek_count(const tl_peers *p) { return p->ndone + 1; }

void tl_peers_zeek_record(const tl_peers *p, size_t i, tl_zeek_record *out) {
    if (i < p->ndone) *out = p->done[i];
    else tl_zrec_record(&p->zeek, out);
}

size_t tl_peers_streams(const tl_peers *p, int64_t *out) {
    size_t n = 0, i = 0;
    int64_t first = p->first_stream;
    int placed = first == -1;
    for (; i < p->nstreams; i++) {
        int64_t s = p->streams[i];
        if (!placed && first <= s) {
            if (first < s) out[n++] = first;
            placed = 1;
        }
        if (s != -1) out[n++] = s;
    }
    if (!placed) out[n++] = first;
    return n;
}
