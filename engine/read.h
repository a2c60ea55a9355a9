/* The compiled capture reader: the C twin of the fast reader's hot loops
 * (tcplife/capture/fastwalk.py's numpy record walk, fastdecode.py's bulk decode).
 *
 * Its loops know nothing of Python (the libFuzzer target in engine/fuzz/ runs them
 * alone): read_walk.c walks classic pcap records and pcapng Enhanced Packet Blocks,
 * decode.c decodes frames in bulk. read.c is their Python face (tcplife._engine's
 * pcap_walk, pcapng_walk and decode; tcplife/capture/creader.py calls them), which hands
 * them fastbuffer.Stream's buffer and returns their columns as bytearrays of int64.
 * Whatever the loops do not take (damage, other blocks, odd frames) they leave to the
 * Python code around them, which reads it one by one exactly as the plain reader does. */
#ifndef TCPLIFE_READ_H
#define TCPLIFE_READ_H

#include <stdint.h>
#include <string.h>

/* records.py's limit on a block (and a pcap record) */
#define TL_MAX_BLOCK_LEN (1 << 26)
#define TL_NS_PER_S 1000000000LL

/* Loads from a byte buffer at any alignment. */
static inline uint16_t tl_be16(const uint8_t *p) {
    return (uint16_t)((unsigned)p[0] << 8 | (unsigned)p[1]);
}

static inline uint32_t tl_be32(const uint8_t *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

static inline uint32_t tl_le32(const uint8_t *p) {
    return (uint32_t)p[3] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[1] << 8 | (uint32_t)p[0];
}

static inline uint32_t tl_u32(const uint8_t *p, int big) {
    return big ? tl_be32(p) : tl_le32(p);
}

/* --- read_walk.c ------------------------------------------------------------------------ */

/* The records of buf[*pos:n] from *pos on (at most `room`), as columns `room` values apart
 * in `cols`: data offset, captured length, length on the wire, time in ns. Stops before
 * the first record not wholly in the buffer or longer than `max_caplen`, and sets *pos
 * there. Returns the number of records. */
int64_t tl_walk_pcap(const uint8_t *buf, int64_t *pos, int64_t n, int big, int nano,
                     int64_t max_caplen, int64_t *cols, int64_t room);

/* One pcapng interface: time = units * mul // div + offset (ns); div 0: not taken here */
typedef struct {
    int64_t linktype, mul, div, offset;
} tl_iface_t;

/* The Enhanced Packet Blocks from *pos on (at most `room`) that records.py takes without a
 * word, as columns `room` values apart in `cols`: data offset, captured length, length on
 * the wire, time in ns, link type. Stops before any other block, damage, a block not
 * wholly in the buffer, an unknown interface or a time it does not convert exactly. */
int64_t tl_walk_pcapng(const uint8_t *buf, int64_t *pos, int64_t n, int big,
                       const tl_iface_t *ifaces, int64_t nifaces, int64_t *cols, int64_t room);

/* --- decode.c ---------------------------------------------------------------------------- */

/* the columns of decoded segments (a Batch's, in its order) */
enum { TL_D_FRAME, TL_D_TS, TL_D_VERSION, TL_D_SRC, TL_D_SPORT, TL_D_DST, TL_D_DPORT, TL_D_SEQ, TL_D_ACK,
       TL_D_FLAGS, TL_D_PAYLOAD, TL_D_WINDOW, TL_D_WSCALE, TL_D_TSVAL, TL_D_TSECR,
       TL_D_COLUMNS };
/* the counters, as ReadStats names them */
enum { TL_N_UNDECODABLE, TL_N_NON_TCP, TL_N_FRAGMENTS, TL_N_TCP, TL_N_TRUNCATED,
       TL_N_UNVERIFIED, TL_N_BAD, TL_N_COUNTERS };

/* Where the decode writes; the caller gives room for `count` rows in each array (v6: 32
 * bytes a row) and sets `columns`, `count` (the columns are `count` values apart), `left`,
 * `bad`, `v6` and `verify`; the rest starts at 0. */
typedef struct {
    int64_t *columns, count, done; /* decoded segments: `done` */
    int64_t *left, nleft;          /* rows for the Python Decoder, ascending */
    int64_t *bad, nbad;            /* positions among the decoded with a wrong checksum */
    uint8_t *v6;                   /* per IPv6 row decoded: source, destination */
    int64_t nv6;
    int64_t counters[TL_N_COUNTERS];
    int verify;
} tl_decoded_t;

/* Frames i < count at buf + off[i], caplen[i] bytes long (the caller has checked they lie
 * in the buffer), wire[i] bytes on the wire, of link type linktype[i], numbered frame[i],
 * at time ts[i] (both only copied to the segment's columns). */
void tl_decode_frames(tl_decoded_t *o, const uint8_t *buf, const int64_t *off,
                      const int64_t *caplen, const int64_t *wire, const int64_t *linktype,
                      const int64_t *frame, const int64_t *ts);

#endif
