/* Zeek's view of one connection: the C twin of tcplife/peers/zeek.py (`ZeekRecorder`) and
 * zeek_endpoint.py (the endpoint, `init_endpoint`, the reassembler's blocks, `conn_state`).
 * Every function below is named after the Python one it ports and does exactly what it
 * does, in the same order (the Python is the specification; its docstrings cite Zeek's
 * source). Sequence numbers are 32-bit (uint32_t); relative ones and the reassembler's
 * positions are int64_t (a relative sequence number plus a payload length never
 * overflows). */
#include <stdlib.h>
#include <string.h>

#include "peers.h"

#define FIN 0x01
#define SYN 0x02
#define RST 0x04
#define ACK 0x10

#define HIST_SYN_PKT 0x1u
#define HIST_FIN_PKT 0x2u
#define HIST_RST_PKT 0x4u
#define HIST_FIN_RST_PKT 0x8u
#define HIST_DATA_PKT 0x10u
#define HIST_ACK_PKT 0x20u
#define HIST_MULTI_FLAG_PKT 0x40u

const char *const TL_Z_STATE_NAMES[TL_Z_N_STATE] = {
    "TCP_INACTIVE", "TCP_SYN_SENT", "TCP_SYN_ACK_SENT", "TCP_PARTIAL", "TCP_ESTABLISHED",
    "TCP_CLOSED", "TCP_RESET"};

const char *const TL_ZC_NAMES[TL_ZC_N] = {
    "S0", "S1", "SF", "REJ", "S2", "S3", "RSTO", "RSTR", "RSTOS0", "RSTRH", "SH", "SHR",
    "OTH"};

const int32_t TL_Z_LIKELY_SERVER_PORTS[] = {
    21, 22, 23, 25, 53, 80, 81, 88, 102, 110, 135, 137, 138, 139, 143, 389, 443, 445, 502,
    563, 585, 587, 614, 631, 636, 749, 750, 989, 990, 992, 993, 995, 1080, 1433, 1883,
    2811, 3128, 3268, 3306, 3389, 5222, 5223, 5269, 5432, 6379, 6667,
    8000, 8080, 8888, 20000, 47808};
const size_t TL_Z_N_LIKELY_SERVER_PORTS =
    sizeof TL_Z_LIKELY_SERVER_PORTS / sizeof TL_Z_LIKELY_SERVER_PORTS[0];

static int likely_server(int64_t port) {
    size_t lo = 0, hi = TL_Z_N_LIKELY_SERVER_PORTS;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (TL_Z_LIKELY_SERVER_PORTS[mid] < port) lo = mid + 1;
        else hi = mid;
    }
    return lo < TL_Z_N_LIKELY_SERVER_PORTS && TL_Z_LIKELY_SERVER_PORTS[lo] == port;
}

/* seq_delta: a - b as a signed 32-bit number (no implementation-defined conversion) */
static int64_t seq_delta(uint32_t a, uint32_t b) {
    uint32_t d = a - b;
    return d >= 0x80000000u ? (int64_t)d - (int64_t)0x100000000 : (int64_t)d;
}

static uint32_t u32(int64_t v) { return (uint32_t)((uint64_t)v & 0xFFFFFFFFu); }

static int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }

/* ------------------------------------------------------------------ the endpoint */
static void ep_init(tl_zep *ep, int is_orig) {
    memset(ep, 0, sizeof *ep);
    ep->is_orig = is_orig;
    ep->state = ep->prev_state = TL_Z_INACTIVE;
    ep->rxmt_thresh = ep->win0_thresh = ep->gap_thresh = 1;
    ep->reassem = ep->trim = 1;
}

static void set_state(tl_zep *ep, int state) {
    if (state != ep->state) {
        ep->prev_state = ep->state;
        ep->state = state;
    }
}

/* TCP_Endpoint::Size (`ZeekEndpoint.size`) */
static int64_t ep_size(const tl_zep *ep, const tl_zep *peer) {
    if (ep->prev_state == TL_Z_SYN_SENT && ep->state == TL_Z_RESET
        && peer->state == TL_Z_INACTIVE && ep->ack != ep->start && ep->ack != ep->start + 1u)
        return 0;
    int64_t size = max64(seq_delta(ep->last, ep->start), seq_delta(ep->ack, ep->start));
    if (size > 0) size -= 1;
    if (ep->fin_cnt && size > 0) size -= 1;
    return max64(size, 0);
}

static int clean(const tl_zep *ep) {
    return ep->state == TL_Z_ESTABLISHED
        || (ep->state == TL_Z_CLOSED && ep->prev_state == TL_Z_ESTABLISHED);
}

static void init_endpoint(tl_zep *ep, int64_t flags, uint32_t first_seq, uint32_t last_seq) {
    int state = ep->state;
    if (state == TL_Z_INACTIVE) {
        if (flags & SYN) {
            ep->start = ep->ack = first_seq;
        } else {
            ep->start = ep->ack = first_seq - 1u;
            last_seq = first_seq;
        }
        ep->last = last_seq;
    } else if (state == TL_Z_SYN_SENT || state == TL_Z_SYN_ACK_SENT) {
        if ((flags & SYN) && first_seq != ep->start) {
            ep->start = ep->ack = first_seq;
            ep->last = last_seq;
        }
    } else if (state == TL_Z_ESTABLISHED || state == TL_Z_PARTIAL) {
        if (flags & SYN) {
            ep->start = ep->ack = first_seq;
            ep->last = last_seq;
        }
    } else if (state == TL_Z_RESET && (flags & SYN) && ep->prev_state == TL_Z_INACTIVE) {
        ep->start = ep->ack = first_seq;
        ep->last = last_seq;
    }
}

/* ------------------------------------------------------------------ blocks */
static void blocks_pop_front(tl_zep *ep) {
    ep->nblocks--;
    memmove(ep->blocks, ep->blocks + 1, ep->nblocks * sizeof *ep->blocks);
}

/* insert_block: [seq, upper) added to the sorted disjoint blocks, overlaps (and blocks
 * that touch it) merged. -1 when memory ran out. */
static int insert_block(tl_zep *ep, int64_t seq, int64_t upper) {
    size_t n = ep->nblocks, i = 0, j;
    while (i < n && ep->blocks[i].upper < seq) i++; /* kept before */
    j = i;
    while (j < n && !(upper < ep->blocks[j].seq)) { /* merged */
        if (ep->blocks[j].seq < seq) seq = ep->blocks[j].seq;
        if (ep->blocks[j].upper > upper) upper = ep->blocks[j].upper;
        j++;
    }
    /* blocks [i, j) become one; the rest follow */
    if (i == j) { /* nothing merged: make room */
        if (n == ep->capblocks) {
            size_t cap = ep->capblocks ? ep->capblocks * 2 : 4;
            if (cap > SIZE_MAX / sizeof *ep->blocks) return -1;
            tl_zblock *b = realloc(ep->blocks, cap * sizeof *b);
            if (b == NULL) return -1;
            ep->blocks = b;
            ep->capblocks = cap;
        }
        memmove(ep->blocks + i + 1, ep->blocks + i, (n - i) * sizeof *ep->blocks);
        ep->nblocks = n + 1;
    } else if (j - i > 1) {
        memmove(ep->blocks + i + 1, ep->blocks + j, (n - j) * sizeof *ep->blocks);
        ep->nblocks = n - (j - i - 1);
    }
    ep->blocks[i].seq = seq;
    ep->blocks[i].upper = upper;
    return 0;
}

/* ------------------------------------------------------------------ history */
static int add_letter(tl_zrec *z, char c) {
    if (z->nletters == z->capletters) {
        size_t cap = z->capletters ? z->capletters * 2 : 16;
        if (cap < z->capletters) return -1;
        char *l = realloc(z->letters, cap);
        if (l == NULL) return -1;
        z->letters = l;
        z->capletters = cap;
    }
    z->letters[z->nletters++] = c;
    return 0;
}

static char case_of(const tl_zep *ep, char code) {
    return ep->is_orig ? code : (char)(code - 'A' + 'a');
}

/* Connection::CheckHistory via TCP_Endpoint (`_check`): 1 if already seen, 0 if the
 * letter was added, -1 when memory ran out */
static int check(tl_zrec *z, const tl_zep *ep, uint32_t mask, char code) {
    if (!ep->is_orig) mask <<= 16;
    if (z->hist_seen & mask) return 1;
    z->hist_seen |= mask;
    return add_letter(z, case_of(ep, code));
}

static int add(tl_zrec *z, const tl_zep *ep, char code) {
    return add_letter(z, case_of(ep, code));
}

static int did_rxmit(tl_zrec *z, tl_zep *ep) {
    ep->rxmt_cnt += 1;
    if (ep->rxmt_cnt == ep->rxmt_thresh) {
        ep->rxmt_thresh *= 10; /* count <= packets: never near overflow */
        return add(z, ep, 'T');
    }
    return 0;
}

static int gap(tl_zrec *z, tl_zep *ep, const tl_zep *peer) {
    if (clean(ep) && clean(peer)) {
        ep->gap_cnt += 1;
        if (ep->gap_cnt == ep->gap_thresh) {
            ep->gap_thresh *= 10;
            return add(z, ep, 'G');
        }
    }
    return 0;
}

static int zero_window(tl_zrec *z, tl_zep *ep) {
    ep->win0_cnt += 1;
    if (ep->win0_cnt == ep->win0_thresh) {
        ep->win0_thresh *= 10;
        return add(z, ep, 'W');
    }
    return 0;
}

static int flip_roles(tl_zrec *z) {
    z->orig_is_client = !z->orig_is_client;
    z->client.is_orig = !z->client.is_orig;
    z->server.is_orig = !z->server.is_orig;
    z->is_partial = 0;
    return add_letter(z, '^');
}

static tl_zep *orig_of(tl_zrec *z) { return z->orig_is_client ? &z->client : &z->server; }

static int update_history(tl_zrec *z, int64_t flags, tl_zep *ep, int64_t rel_seq,
                          int64_t length) {
    int bits = !!(flags & SYN) + !!(flags & FIN) + !!(flags & RST);
    int r;
    if (bits > 1) {
        if ((flags & FIN) && (flags & RST)) return check(z, ep, HIST_FIN_RST_PKT, 'I') < 0 ? -1 : 0;
        return check(z, ep, HIST_MULTI_FLAG_PKT, 'Q') < 0 ? -1 : 0;
    }
    if (bits == 1) {
        if (flags & SYN) {
            char code = (flags & ACK) ? 'H' : 'S';
            if ((r = check(z, ep, HIST_SYN_PKT, code)) < 0) return -1;
            if (r && rel_seq != ep->hist_syn && add(z, ep, code) < 0) return -1;
            ep->hist_syn = rel_seq;
        }
        if (flags & FIN) {
            if ((r = check(z, ep, HIST_FIN_PKT, 'F')) < 0) return -1;
            if (r && rel_seq + length != ep->hist_fin && add(z, ep, 'F') < 0) return -1;
            ep->hist_fin = rel_seq + length;
        }
        if (flags & RST) {
            if ((r = check(z, ep, HIST_RST_PKT, 'R')) < 0) return -1;
            if (r && rel_seq != ep->hist_rst && add(z, ep, 'R') < 0) return -1;
            ep->hist_rst = rel_seq;
        }
        return 0;
    }
    if (length) return check(z, ep, HIST_DATA_PKT, 'D') < 0 ? -1 : 0;
    if (flags & ACK) return check(z, ep, HIST_ACK_PKT, 'A') < 0 ? -1 : 0;
    return 0;
}

/* ------------------------------------------------------------------ the reassembler */
/* TCP_Reassembler::DataSent and NewBlock (`_data_sent`) */
static int data_sent(tl_zep *ep, int64_t seq, int64_t length) {
    int64_t ack = seq_delta(ep->ack, ep->start);
    int64_t upper = seq + length;
    if (seq < ack) {
        if (upper <= ack) return 0;
        seq = ack;
    }
    if (upper <= ep->trim) return 0;
    seq = max64(seq, ep->trim);
    if (upper <= ep->reassem) return 0;
    if (seq <= ep->reassem) {
        ep->reassem = upper;
        while (ep->nblocks && ep->blocks[0].seq <= ep->reassem) {
            ep->reassem = max64(ep->reassem, ep->blocks[0].upper);
            blocks_pop_front(ep);
        }
        return 0;
    }
    return insert_block(ep, seq, upper);
}

static int undelivered(tl_zrec *z, tl_zep *ep, const tl_zep *peer, int64_t up_to) {
    if (up_to <= 2 && z->is_partial) return 0;
    while (ep->nblocks && ep->blocks[0].seq < up_to) {
        int64_t b_seq = ep->blocks[0].seq, b_upper = ep->blocks[0].upper;
        blocks_pop_front(ep);
        if (b_seq > ep->reassem) {
            if (gap(z, ep, peer) < 0) return -1;
            ep->reassem = b_seq;
        }
        ep->reassem = max64(ep->reassem, b_upper);
    }
    if (up_to > ep->reassem && gap(z, ep, peer) < 0) return -1;
    ep->reassem = max64(ep->reassem, up_to);
    return 0;
}

/* TCP_Reassembler::AckReceived for ep's data, acknowledged by peer up to relative seq */
static int ack_received(tl_zrec *z, tl_zep *ep, const tl_zep *peer, int64_t seq) {
    if (ep->fin_cnt > 0 && seq >= ep->fin_seq) seq = ep->fin_seq - 1;
    if (seq <= ep->trim) return 0;
    if (seq > ep->reassem && undelivered(z, ep, peer, seq) < 0) return -1;
    ep->trim = seq;
    while (ep->nblocks && ep->blocks[0].upper <= seq) blocks_pop_front(ep);
    if (ep->nblocks && ep->blocks[0].seq < seq) ep->blocks[0].seq = seq;
    return 0;
}

/* ------------------------------------------------------------------ per packet */
static int update_last_seq(tl_zrec *z, tl_zep *ep, uint32_t last_seq, int64_t flags,
                           int64_t length) {
    int64_t delta = seq_delta(last_seq, ep->last);
    if ((flags & (SYN | RST))
        && (delta > TL_Z_TOO_LARGE_SEQ_DELTA || delta < -TL_Z_TOO_LARGE_SEQ_DELTA)) {
        /* a SYN or RST far away moves nothing */
    } else if ((flags & FIN) && ep->last == ep->start + 1u) {
        ep->last = last_seq;
    } else if (ep->state == TL_Z_RESET) {
        /* no sequence number after an RST is trusted */
    } else if (delta > 0) {
        ep->last = last_seq;
    } else if (length > 0) {
        return did_rxmit(z, ep);
    }
    return 0;
}

/* UpdateStateMachine (`_update_state`); *do_close set; -1 when memory ran out */
static int update_state(tl_zrec *z, tl_zep *ep, tl_zep *peer, uint32_t base, int64_t length,
                        int64_t flags, int *do_close) {
    int is_orig = ep->is_orig;
    int state = ep->state;
    *do_close = 0;
    if (state == TL_Z_INACTIVE) {
        if (flags & SYN) {
            if (is_orig) {
                set_state(ep, (flags & ACK) ? TL_Z_SYN_ACK_SENT : TL_Z_SYN_SENT);
            } else {
                if (!(flags & ACK) && peer->state == TL_Z_SYN_ACK_SENT && base == ep->start) {
                    if (flip_roles(z) < 0) return -1;
                    set_state(peer, TL_Z_ESTABLISHED);
                    ep->first_seen = 1;
                }
                if (peer->state == TL_Z_SYN_SENT) set_state(peer, TL_Z_ESTABLISHED);
                set_state(ep, TL_Z_ESTABLISHED);
            }
        }
        if (flags & FIN) {
            set_state(ep, TL_Z_CLOSED);
            *do_close = 1;
        }
        if (flags & RST) {
            set_state(ep, TL_Z_RESET);
            *do_close = 1;
        }
        if (ep->state == TL_Z_INACTIVE) {
            const tl_zep *orig = orig_of(z);
            if (!is_orig && length == 0 && orig->state == TL_Z_SYN_SENT) {
                /* an ACK of the SYN before the SYN-ACK: not a partial connection */
            } else if ((flags & ACK) && peer->state == TL_Z_ESTABLISHED) {
                set_state(ep, TL_Z_ESTABLISHED);
                z->is_partial = 0;
            } else {
                set_state(ep, TL_Z_PARTIAL);
            }
        }
    } else if (state == TL_Z_SYN_SENT || state == TL_Z_SYN_ACK_SENT) {
        if (flags & FIN) {
            set_state(ep, TL_Z_CLOSED);
            *do_close = 1;
        }
        if (flags & RST) {
            set_state(ep, TL_Z_RESET);
            *do_close = 1;
        }
    } else if (state == TL_Z_ESTABLISHED || state == TL_Z_PARTIAL) {
        if ((flags & SYN) && state == TL_Z_PARTIAL && peer->state == TL_Z_INACTIVE
            && !(flags & ACK))
            set_state(ep, TL_Z_SYN_SENT);
        if ((flags & FIN) && !(flags & RST)) {
            set_state(ep, TL_Z_CLOSED);
            if (peer->state == TL_Z_RESET && peer->prev_state == TL_Z_CLOSED)
                set_state(peer, TL_Z_CLOSED);
            *do_close = 1;
        }
        if (flags & RST) {
            set_state(ep, TL_Z_RESET);
            *do_close = 1;
        }
    } else if (state == TL_Z_CLOSED && (flags & RST) && peer->state != TL_Z_CLOSED) {
        set_state(ep, TL_Z_RESET);
        if (!ep->did_close) *do_close = 1;
    }
    return 0;
}

static int in_data_states(int s) { return s == TL_Z_PARTIAL || s == TL_Z_ESTABLISHED; }

/* `_plain`: an ACK or data segment, no SYN, FIN or RST, both sides established or
 * partial, not the side's first packet */
static int plain(tl_zrec *z, const tl_peer_seg *seg, tl_zep *ep, tl_zep *peer, int64_t flags,
                 uint32_t base, uint32_t ack, int64_t length) {
    int64_t rel_seq = seq_delta(base, ep->start);
    unsigned shift = ep->is_orig ? 0 : 16;
    if (length) {
        if (!(z->hist_seen & (HIST_DATA_PKT << shift))
            && check(z, ep, HIST_DATA_PKT, 'D') < 0) return -1;
    } else if ((flags & ACK) && !(z->hist_seen & (HIST_ACK_PKT << shift))) {
        if (check(z, ep, HIST_ACK_PKT, 'A') < 0) return -1;
    }
    if (seg->window == 0 && zero_window(z, ep) < 0) return -1;
    if (seg->ts_ns > z->last_ns) z->last_ns = seg->ts_ns;
    int64_t rel_ack = 0;
    if (flags & ACK) {
        rel_ack = seq_delta(ack, peer->start);
        if (rel_ack < 0) {
            rel_ack = 0;
        } else {
            int64_t delta_ack = seq_delta(ack, peer->ack);
            if (delta_ack > 0 && !(ack == 0 && delta_ack > TL_Z_TOO_LARGE_SEQ_DELTA))
                peer->ack = ack;
        }
    }
    uint32_t one_past = base + u32(length);
    if (seq_delta(one_past, ep->last) > 0) ep->last = one_past;
    else if (length > 0 && did_rxmit(z, ep) < 0) return -1;
    if ((flags & ACK) && ack_received(z, peer, ep, rel_ack) < 0) return -1;
    if (length > 0 && rel_seq >= 0) return data_sent(ep, rel_seq, length);
    return 0;
}

/* TCPAnalyzer::DeliverPacket for one segment of this connection (`process`) */
int tl_zrec_process(tl_zrec *z, const tl_peer_seg *seg, int from_client) {
    tl_zep *ep = from_client ? &z->client : &z->server;
    tl_zep *peer = from_client ? &z->server : &z->client;
    int64_t flags = seg->flags, length = seg->payload_len;
    uint32_t base = u32(seg->seq), ack = u32(seg->ack);
    ep->pkts += 1;
    if (!(flags & (SYN | FIN | RST)) && ep->first_seen && in_data_states(ep->state)
        && in_data_states(peer->state))
        return plain(z, seg, ep, peer, flags, base, ack, length);
    if (!ep->first_seen) { /* SetPartialStatus */
        if (ep->is_orig) z->is_partial = !(flags & SYN) || (flags & ACK);
        else if (!z->is_partial) z->is_partial = !(flags & SYN);
    }
    int64_t seg_len = length + !!(flags & SYN) + !!(flags & FIN);
    if (flags & RST) seg_len -= length;
    uint32_t one_past = base + u32(seg_len);
    init_endpoint(ep, flags, base, one_past);
    int64_t rel_seq = seq_delta(base, ep->start);
    if (update_history(z, flags, ep, rel_seq, length) < 0) return -1;
    if (seg->window == 0 && !(flags & RST) && peer->state != TL_Z_CLOSED
        && ep->state != TL_Z_RESET && zero_window(z, ep) < 0)
        return -1;
    if (!(z->client.did_close && z->server.did_close) && seg->ts_ns > z->last_ns)
        z->last_ns = seg->ts_ns;
    if (flags & FIN) {
        ep->fin_cnt += 1;
        ep->fin_seq = rel_seq + seg_len;
    }
    int64_t rel_ack = 0;
    if (flags & ACK) {
        if (peer->state == TL_Z_INACTIVE) { /* init_peer */
            rel_ack = 1;
            peer->start = peer->ack = peer->last = ack - 1u;
        } else {
            rel_ack = seq_delta(ack, peer->start);
            if (rel_ack < 0) {
                rel_ack = 0;
            } else if (!(flags & RST)) {
                int64_t delta_ack = seq_delta(ack, peer->ack);
                if (!(ack == 0 && delta_ack > TL_Z_TOO_LARGE_SEQ_DELTA) && delta_ack > 0)
                    peer->ack = ack;
            }
        }
    }
    if (update_last_seq(z, ep, one_past, flags, length) < 0) return -1;
    int do_close;
    if (update_state(z, ep, peer, base, length, flags, &do_close) < 0) return -1;
    if (ep->state >= TL_Z_PARTIAL || peer->state >= TL_Z_PARTIAL)
        z->inactivity_ns = TL_Z_TCP_INACTIVITY_TIMEOUT_NS;
    if ((flags & ACK) && ack_received(z, peer, ep, rel_ack) < 0) return -1;
    if (length > 0 && !(flags & RST) && rel_seq >= 0
        && data_sent(ep, (flags & SYN) ? rel_seq + 1 : rel_seq, length) < 0)
        return -1;
    ep->first_seen = 1;
    if (do_close && !ep->did_close) ep->did_close = 1;
    return 0;
}

/* ------------------------------------------------------------------ the connection */
/* -1 when memory ran out (for the "^" of the flip) */
int tl_zrec_init(tl_zrec *z, const tl_peer_seg *seg, int sender_is_client) {
    memset(z, 0, sizeof *z);
    ep_init(&z->client, !!sender_is_client);
    ep_init(&z->server, !sender_is_client);
    z->orig_is_client = !!sender_is_client;
    z->start_ns = z->last_ns = seg->ts_ns;
    z->inactivity_ns = TL_Z_HANDSHAKE_INACTIVITY_TIMEOUT_NS;
    /* TCPAnalyzer::WantConnection: a first packet that is not a bare SYN makes a partial
     * connection; from a likely server port, the roles are flipped (both likely: only a
     * non-SYN packet from the lower port) */
    int64_t flags = seg->flags;
    if ((!(flags & SYN) || (flags & ACK)) && likely_server(seg->sport)) {
        int flip = likely_server(seg->dport) ? (!(flags & SYN) && seg->sport < seg->dport) : 1;
        if (flip) return flip_roles(z);
    }
    return 0;
}

void tl_zrec_release(tl_zrec *z) {
    free(z->client.blocks);
    free(z->server.blocks);
    free(z->letters);
    z->client.blocks = z->server.blocks = NULL;
    z->letters = NULL;
}

static const char *skip_flip(const char *h, size_t *len) {
    if (*len && h[0] == '^') {
        (*len)--;
        return h + 1;
    }
    return h;
}

/* Zeek's pattern "^?S[^HAFGIQ]*R.*" (anchored) matches the history (`_rstos0`) */
static int rstos0(const char *history, size_t len) {
    const char *h = skip_flip(history, &len);
    if (len == 0 || h[0] != 'S') return 0;
    for (size_t i = 1; i < len; i++) {
        if (h[i] == 'R') return 1;
        if (strchr("HAFGIQ", h[i]) != NULL && h[i] != '\0') return 0;
    }
    return 0;
}

/* Conn::conn_state of scripts/base/protocols/conn/main.zeek, for TCP (`conn_state`) */
int tl_z_conn_state(int os, int rs, int64_t orig_size, int64_t resp_size, const char *history,
                    size_t len) {
    int o_inactive = os == TL_Z_INACTIVE || os == TL_Z_PARTIAL;
    int r_inactive = rs == TL_Z_INACTIVE || rs == TL_Z_PARTIAL;
    if (rs == TL_Z_RESET) {
        if (os == TL_Z_SYN_SENT || os == TL_Z_SYN_ACK_SENT
            || (os == TL_Z_RESET && orig_size == 0 && resp_size == 0))
            return TL_ZC_REJ;
        return o_inactive ? TL_ZC_RSTRH : TL_ZC_RSTR;
    }
    if (os == TL_Z_RESET) {
        if (r_inactive) return rstos0(history, len) ? TL_ZC_RSTOS0 : TL_ZC_OTH;
        return TL_ZC_RSTO;
    }
    if (rs == TL_Z_CLOSED && os == TL_Z_CLOSED) return TL_ZC_SF;
    if (os == TL_Z_CLOSED) return r_inactive ? TL_ZC_SH : TL_ZC_S2;
    if (rs == TL_Z_CLOSED) return o_inactive ? TL_ZC_SHR : TL_ZC_S3;
    if (os == TL_Z_SYN_SENT && rs == TL_Z_INACTIVE) return TL_ZC_S0;
    if (os == TL_Z_ESTABLISHED && rs == TL_Z_ESTABLISHED) return TL_ZC_S1;
    return TL_ZC_OTH;
}

/* This connection's conn.log values as they stand (`record`); history points into z */
void tl_zrec_record(const tl_zrec *z, tl_zeek_record *out) {
    const tl_zep *o = z->orig_is_client ? &z->client : &z->server;
    const tl_zep *r = z->orig_is_client ? &z->server : &z->client;
    out->start_ns = z->start_ns;
    out->orig_is_client = z->orig_is_client;
    out->duration_ns = z->last_ns - z->start_ns;
    out->orig_bytes = ep_size(o, r);
    out->resp_bytes = ep_size(r, o);
    out->history = z->letters;
    out->history_len = z->nletters;
    out->conn_state = tl_z_conn_state(o->state, r->state, out->orig_bytes, out->resp_bytes,
                                      z->letters, z->nletters);
    out->orig_pkts = o->pkts;
    out->resp_pkts = r->pkts;
}
