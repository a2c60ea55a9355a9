/* The compiled reader's bulk decode (see read.h): the frames a walk found -> the columns
 * of their TCP segments.
 *
 * The C twin of fastdecode.py's `BulkDecoder._bulk`: per frame, the link layer, the
 * IPv4/IPv6 header, the TCP header, its checksum and its window-scale and timestamp
 * options, as decode.py's `Decoder` computes them, for the same frames the numpy bulk
 * decode takes; the others (unknown link types, three or more VLAN tags, first IPv4
 * fragments, IP length 0, IPv6 extension headers, frames shorter on the wire than their
 * IP length) are left as rows for the Python `Decoder`, which decodes them one by one in
 * frame order. No Python here.
 */
#include "read.h"

enum { K_UNDECODABLE, K_NON_TCP, K_IRREGULAR, K_V4 = 4, K_V6 = 6 };

#define SYN 0x02
#define PREFETCH 8
#define TCP 6

static int is_vlan(unsigned ethertype) {
    return ethertype == 0x8100 || ethertype == 0x88A8 || ethertype == 0x9100;
}

static int ether_class(unsigned ethertype) {
    return ethertype == 0x0800 ? K_V4 : ethertype == 0x86DD ? K_V6 : K_NON_TCP;
}

/* decode.py's link decoders (as fastdecode._link takes them): the class of the frame and,
 * for IP, where its header starts. */
static int link_class(int64_t linktype, const uint8_t *d, int64_t size, int64_t *ip) {
    *ip = 0;
    switch (linktype) {
    case 1: { /* Ethernet, up to two VLAN tags here (a third: the Decoder's) */
        if (size < 14) return K_UNDECODABLE;
        unsigned ethertype = tl_be16(d + 12);
        *ip = 14;
        for (int64_t at = 14; at <= 18 && is_vlan(ethertype); at += 4) {
            if (size < at + 4) return K_UNDECODABLE;
            ethertype = tl_be16(d + at + 2);
            *ip = at + 4;
        }
        return is_vlan(ethertype) ? K_IRREGULAR : ether_class(ethertype);
    }
    case 113: /* Linux SLL */
        *ip = 16;
        return size < 16 ? K_UNDECODABLE : ether_class(tl_be16(d + 14));
    case 276: /* Linux SLL2 */
        *ip = 20;
        return size < 20 ? K_UNDECODABLE : ether_class(tl_be16(d));
    case 0:
    case 108: { /* BSD NULL / LOOP */
        *ip = 4;
        if (size < 4) return K_UNDECODABLE;
        unsigned family = d[0] ? d[0] : d[3];
        if (family == 2) return K_V4;
        if (family == 10 || family == 24 || family == 28 || family == 30) return K_V6;
        return K_NON_TCP;
    }
    case 12:
    case 14:
    case 101: /* raw IP */
        if (size < 1) return K_UNDECODABLE;
        return d[0] >> 4 == 4 ? K_V4 : d[0] >> 4 == 6 ? K_V6 : K_UNDECODABLE;
    case 228:
        return K_V4;
    case 229:
        return K_V6;
    default:
        return K_IRREGULAR;
    }
}

static int is_ipv6_ext(unsigned next) { /* extension headers, fragment, AH */
    return next == 0 || next == 43 || next == 60 || next == 135 || next == 139 ||
           next == 140 || next == 44 || next == 51;
}

/* A value congruent, mod 0xFFFF, to the sum of `p[0:len]` read as big-endian 16-bit words
 * (an odd last byte as a high half), RFC 1071's sum: native 32-bit words are summed
 * (2**16 == 1 mod 0xFFFF); on a little-endian machine that sum is 256 times the
 * big-endian one, and 256 * 256 == 1 mod 0xFFFF undoes it. */
static uint64_t word_sum(const uint8_t *p, int64_t len) {
    uint64_t a = 0, b = 0;
    while (len >= 16) {
        uint64_t x, y;
        memcpy(&x, p, 8);
        memcpy(&y, p + 8, 8);
        a += (x & 0xFFFFFFFFu) + (x >> 32);
        b += (y & 0xFFFFFFFFu) + (y >> 32);
        p += 16;
        len -= 16;
    }
    uint8_t tail[16] = {0};
    memcpy(tail, p, (size_t)len);
    for (int i = 0; i < 16; i += 8) {
        uint64_t x;
        memcpy(&x, tail + i, 8);
        a += (x & 0xFFFFFFFFu) + (x >> 32);
    }
    uint64_t sum = (a % 0xFFFF) + (b % 0xFFFF);
    const uint16_t one = 1;
    uint8_t little;
    memcpy(&little, &one, 1);
    return little ? (sum % 0xFFFF) * 256 : sum;
}

/* decode.window_scale: the window-scale option's shift in d[p:end], or -1 */
static int64_t window_scale(const uint8_t *d, int64_t p, int64_t end) {
    while (p < end) {
        unsigned kind = d[p];
        if (kind == 0) break;
        if (kind == 1) {
            p++;
            continue;
        }
        if (p + 1 >= end) break;
        unsigned length = d[p + 1];
        if (kind == 3) return length == 3 && p + 2 < end ? d[p + 2] : -1;
        if (length < 2) break;
        p += length;
    }
    return -1;
}

/* decode.timestamps (Linux's tcp_parse_options walk): TSval and TSecr in d[p:end] */
static void timestamps(const uint8_t *d, int64_t p, int64_t end, int64_t *tsval,
                       int64_t *tsecr) {
    while (p < end) {
        unsigned kind = d[p];
        if (kind == 0) break;
        if (kind == 1) {
            p++;
            continue;
        }
        if (p + 1 >= end) break;
        unsigned length = d[p + 1];
        if (length < 2 || p + length > end) break;
        if (kind == 8 && length == 10) {
            *tsval = tl_be32(d + p + 2);
            *tsecr = tl_be32(d + p + 6);
        }
        p += length;
    }
}

/* One frame (row `row`, `d[0:size]`), into `o`. */
static void decode_frame(tl_decoded_t *o, int64_t row, int64_t linktype, const uint8_t *d,
                         int64_t size, int64_t wire, int64_t frame, int64_t ts) {
    int64_t ip, tcp, segment_len, sum_at, sum_len;
    int kind = link_class(linktype, d, size, &ip);
    if (kind == K_IRREGULAR) goto irregular;
    if (kind == K_NON_TCP) goto non_tcp;
    if (kind == K_UNDECODABLE) goto undecodable;
    if (kind == K_V4) {
        if (size < ip + 20) goto undecodable;
        int64_t ihl = (int64_t)(d[ip] & 0x0F) << 2;
        if (d[ip] >> 4 != 4 || ihl < 20) goto undecodable;
        unsigned frag = tl_be16(d + ip + 6);
        if (frag & 0x1FFF) {
            o->counters[TL_N_FRAGMENTS]++;
            return;
        }
        if (d[ip + 9] != TCP) goto non_tcp;
        int64_t total = tl_be16(d + ip + 2);
        if (total == 0 || (frag & 0x2000)) goto irregular; /* TSO, first fragment */
        tcp = ip + ihl;
        segment_len = total - ihl;
        sum_at = ip + 12;
        sum_len = 8;
    } else {
        if (size < ip + 40 || d[ip] >> 4 != 6) goto undecodable;
        int64_t total = tl_be16(d + ip + 4);
        unsigned next = d[ip + 6];
        int ext = is_ipv6_ext(next);
        if (total != 0 && !ext && next != TCP) goto non_tcp;
        if (total == 0 || ext) goto irregular; /* jumbogram or TSO, extension headers */
        tcp = ip + 40;
        segment_len = total;
        sum_at = ip + 8;
        sum_len = 32;
    }
    if (size < tcp + 20 || segment_len < 20) goto undecodable;
    const uint8_t *t = d + tcp;
    int64_t header_len = (int64_t)(t[12] >> 4) << 2;
    int64_t payload_len = segment_len - header_len;
    if (header_len < 20 || payload_len < 0) goto undecodable;
    int64_t end = tcp + segment_len;
    int cut = 0;
    if (end > size) {
        if (end > wire) goto irregular; /* shorter on the wire than its IP length */
        cut = 1;                         /* cut by the snap length */
    }
    int64_t at = o->done++;
    o->counters[TL_N_TCP]++;
    if (cut) {
        o->counters[TL_N_TRUNCATED]++;
        if (o->verify) o->counters[TL_N_UNVERIFIED]++;
    } else if (o->verify) {
        uint64_t sum = word_sum(d + sum_at, sum_len) +
                       word_sum(t, segment_len) + TCP + (uint64_t)segment_len;
        if (sum % 0xFFFF) o->bad[o->nbad++] = at;
    }
    int64_t *c = o->columns, n = o->count;
    unsigned flags = t[13];
    int64_t wscale = -1, tsval = -1, tsecr = -1;
    if (header_len > 20) {
        int64_t opt_end = tcp + (header_len < size - tcp ? header_len : size - tcp);
        if (flags & SYN) wscale = window_scale(d, tcp + 20, opt_end);
        if (opt_end == tcp + 32 && t[20] == 1 && t[21] == 1 && t[22] == 8 && t[23] == 10) {
            tsval = tl_be32(t + 24); /* Linux's layout after the handshake */
            tsecr = tl_be32(t + 28);
        } else {
            timestamps(d, tcp + 20, opt_end, &tsval, &tsecr);
        }
    }
    c[TL_D_FRAME * n + at] = frame;
    c[TL_D_TS * n + at] = ts;
    c[TL_D_VERSION * n + at] = kind;
    if (kind == K_V4) {
        c[TL_D_SRC * n + at] = tl_be32(d + ip + 12);
        c[TL_D_DST * n + at] = tl_be32(d + ip + 16);
    } else {
        c[TL_D_SRC * n + at] = 0;
        c[TL_D_DST * n + at] = 0;
        memcpy(o->v6 + 32 * o->nv6++, d + ip + 8, 32);
    }
    c[TL_D_SPORT * n + at] = tl_be16(t);
    c[TL_D_DPORT * n + at] = tl_be16(t + 2);
    c[TL_D_SEQ * n + at] = tl_be32(t + 4);
    c[TL_D_ACK * n + at] = tl_be32(t + 8);
    c[TL_D_FLAGS * n + at] = flags;
    c[TL_D_PAYLOAD * n + at] = payload_len;
    c[TL_D_WINDOW * n + at] = tl_be16(t + 14);
    c[TL_D_WSCALE * n + at] = wscale;
    c[TL_D_TSVAL * n + at] = tsval;
    c[TL_D_TSECR * n + at] = tsecr;
    return;
irregular:
    o->left[o->nleft++] = row;
    return;
non_tcp:
    o->counters[TL_N_NON_TCP]++;
    return;
undecodable:
    o->counters[TL_N_UNDECODABLE]++;
}

void tl_decode_frames(tl_decoded_t *o, const uint8_t *buf, const int64_t *off,
                      const int64_t *caplen, const int64_t *wire, const int64_t *linktype,
                      const int64_t *frame, const int64_t *ts) {
    for (int64_t i = 0; i < o->count; i++) {
#ifdef __GNUC__
        if (i + PREFETCH < o->count) { /* the headers of a frame a few rows on */
            __builtin_prefetch(buf + off[i + PREFETCH]);
            if (caplen[i + PREFETCH] > 63) __builtin_prefetch(buf + off[i + PREFETCH] + 63);
        }
#endif
        decode_frame(o, i, linktype[i], buf + off[i], caplen[i], wire[i], frame[i], ts[i]);
    }
    o->counters[TL_N_BAD] = o->nbad;
}
