/* What Zeek, Suricata and Wireshark would say of each connection instance: the C twin of
 * tcplife/peers (the specification: __init__.py's `PeerObserver`, `Peers`, `PeerSummary`;
 * zeek.py and zeek_endpoint.py; suricata.py; wireshark.py). Plain C: no Python here (the
 * Python type that drives it for tests is peers_py.c).
 *
 * The three entry points the tracker calls, as it calls `PeerObserver`:
 *   tl_wshark_feed(ws, seg)            every segment, first (Wireshark's tcp.stream: global);
 *   tl_peers_open(seg, sender_is_client)   a segment starts a connection instance;
 *   tl_peers_feed(p, seg, from_client, ws->current)   each segment routed to the instance;
 * and, when the instance ends, its summary: tl_peers_zeek_count / tl_peers_zeek_record
 * (the first record is `PeerSummary.zeek_*`, the others `zeek_later`), p->first_stream
 * (`tcp_stream`), tl_peers_streams (`tcp_streams`), p->suri.state (`suricata_state`).
 *
 * Addresses are `AddressBook` keys (IPv4: the 32-bit value; IPv6: V6_BASE + an index).
 * The replays only compare addresses for equality (Wireshark's conversation key and its
 * direction); no rule needs their order or text. Zeek's rules look at ports, never at
 * addresses.
 *
 * Preconditions on a segment (what a decoder gives; the Python type checks them): seq and
 * ack in [0, 2**32), payload_len in [0, 2**32), ts_ns within +-2**62 (so that no time
 * difference overflows), ports in [0, 65535].
 *
 * Not ported: the tracker's fast path (`Peers.quiet/fast_rows/first_letter/absorbed`: the
 * C tracker feeds every segment) and `PeerObserver`'s on_new_stream callback (the Dask
 * engine's numbering across partitions). */
#ifndef TCPLIFE_PEERS_H
#define TCPLIFE_PEERS_H

#include <stddef.h>
#include <stdint.h>

/* One segment: the `Segment` fields in `Batch.COLUMNS` order, addresses as keys. */
typedef struct {
    int64_t frame, ts_ns, ip_version, src, sport, dst, dport, seq, ack, flags, payload_len,
        window, wscale, tsval, tsecr;
} tl_peer_seg;
#define TL_PEER_SEG_FIELDS 15

/* ------------------------------------------------------------------ Zeek */
/* TCP_Endpoint states, in Zeek's order (zeek_endpoint.py) */
enum { TL_Z_INACTIVE, TL_Z_SYN_SENT, TL_Z_SYN_ACK_SENT, TL_Z_PARTIAL, TL_Z_ESTABLISHED,
       TL_Z_CLOSED, TL_Z_RESET };
#define TL_Z_N_STATE 7
extern const char *const TL_Z_STATE_NAMES[TL_Z_N_STATE];

/* conn_state values (Zeek's conn.log), in the order main.zeek documents them */
enum { TL_ZC_S0, TL_ZC_S1, TL_ZC_SF, TL_ZC_REJ, TL_ZC_S2, TL_ZC_S3, TL_ZC_RSTO, TL_ZC_RSTR,
       TL_ZC_RSTOS0, TL_ZC_RSTRH, TL_ZC_SH, TL_ZC_SHR, TL_ZC_OTH };
#define TL_ZC_N 13
extern const char *const TL_ZC_NAMES[TL_ZC_N];

#define TL_Z_TOO_LARGE_SEQ_DELTA 1048576
#define TL_Z_TCP_INACTIVITY_TIMEOUT_NS ((int64_t)300 * 1000000000)
#define TL_Z_HANDSHAKE_INACTIVITY_TIMEOUT_NS ((int64_t)60 * 1000000000)
/* Zeek's likely_server_ports (zeek_endpoint.LIKELY_SERVER_PORTS), sorted */
extern const int32_t TL_Z_LIKELY_SERVER_PORTS[];
extern const size_t TL_Z_N_LIKELY_SERVER_PORTS;

typedef struct {
    int64_t seq, upper; /* [seq, upper), relative sequence numbers */
} tl_zblock;

/* One side as Zeek's TCP_Endpoint keeps it (`ZeekEndpoint`) */
typedef struct {
    int is_orig, state, prev_state, did_close, first_seen;
    uint32_t start, ack, last;
    int64_t hist_syn, hist_fin, hist_rst;
    int64_t rxmt_cnt, rxmt_thresh, win0_cnt, win0_thresh, gap_cnt, gap_thresh;
    int64_t fin_cnt, fin_seq;
    int64_t reassem, trim;
    tl_zblock *blocks; /* sorted, disjoint; NULL until the first hole */
    size_t nblocks, capblocks;
    int64_t pkts;
} tl_zep;

/* One Zeek connection as it is being replayed (`ZeekRecorder`); endpoints by tcplife side */
typedef struct {
    tl_zep client, server;
    int orig_is_client, is_partial;
    char *letters; /* the history, not NUL-terminated */
    size_t nletters, capletters;
    uint32_t hist_seen;
    int64_t start_ns, last_ns, inactivity_ns;
} tl_zrec;

/* One Zeek connection as its conn.log line gives it (`ZeekRecord`) */
typedef struct {
    int64_t start_ns;
    int orig_is_client; /* `orig`: "client" or "server" */
    int conn_state;     /* TL_ZC_* */
    int64_t duration_ns, orig_bytes, resp_bytes, orig_pkts, resp_pkts;
    const char *history; /* not NUL-terminated; owned by the tl_peers */
    size_t history_len;
} tl_zeek_record;

/* ------------------------------------------------------------------ Suricata */
enum { TL_SURI_NONE, TL_SURI_SYN_SENT, TL_SURI_SYN_RECV, TL_SURI_ESTABLISHED,
       TL_SURI_FIN_WAIT1, TL_SURI_FIN_WAIT2, TL_SURI_TIME_WAIT, TL_SURI_LAST_ACK,
       TL_SURI_CLOSE_WAIT, TL_SURI_CLOSING, TL_SURI_CLOSED };
#define TL_SURI_N 11
extern const char *const TL_SURI_NAMES[TL_SURI_N];

typedef struct {
    int state, client_is_client, has_isn, has_nxt_client, has_nxt_server;
    uint32_t isn, nxt_client, nxt_server;
} tl_suri;

/* ------------------------------------------------------------------ Wireshark */
typedef struct tl_wshark tl_wshark;

tl_wshark *tl_wshark_new(void);
void tl_wshark_free(tl_wshark *ws);
/* The segment's tcp.stream (also kept as tl_wshark_current); -1 when memory ran out. */
int64_t tl_wshark_feed(tl_wshark *ws, const tl_peer_seg *seg);
int64_t tl_wshark_current(const tl_wshark *ws);
int64_t tl_wshark_count(const tl_wshark *ws); /* streams numbered so far */

/* ------------------------------------------------------------------ one instance */
typedef struct {
    tl_zrec zeek;           /* the current Zeek connection */
    /* Zeek connections its inactivity timer already logged (each history a copy, owned) */
    tl_zeek_record *done;
    size_t ndone, capdone;
    tl_suri suri;
    int64_t first_stream;   /* `tcp_stream`: -1 until fed */
    int64_t *streams;       /* further tcp.streams, sorted, unique */
    size_t nstreams, capstreams;
} tl_peers;

/* NULL when memory ran out */
tl_peers *tl_peers_open(const tl_peer_seg *seg, int sender_is_client);
void tl_peers_free(tl_peers *p);
/* 0, or -1 when memory ran out (the instance is then not to be trusted) */
int tl_peers_feed(tl_peers *p, const tl_peer_seg *seg, int from_client, int64_t stream);
size_t tl_peers_zeek_count(const tl_peers *p);
/* Zeek connection i (0 <= i < count; the last as it stands) */
void tl_peers_zeek_record(const tl_peers *p, size_t i, tl_zeek_record *out);
/* `tcp_streams` into out (room for 1 + p->nstreams); returns how many */
size_t tl_peers_streams(const tl_peers *p, int64_t *out);

/* peers_zeek.c: the Zeek replay of one connection (`ZeekRecorder`) */
int tl_zrec_init(tl_zrec *z, const tl_peer_seg *seg, int sender_is_client);
void tl_zrec_release(tl_zrec *z);
int tl_zrec_process(tl_zrec *z, const tl_peer_seg *seg, int from_client);
void tl_zrec_record(const tl_zrec *z, tl_zeek_record *out);
int tl_z_conn_state(int os, int rs, int64_t orig_size, int64_t resp_size, const char *history,
                    size_t len);

#endif
