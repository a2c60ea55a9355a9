/* The compiled capture reader, part 2: the bulk decode of the frames a walk found.
 *
 * The C twin of tcplife/capture/fastdecode.py's `BulkDecoder._bulk`: per frame, the link
 * layer, the IPv4/IPv6 header, the TCP header, its checksum and its window-scale and
 * timestamp options, as decode.py's `Decoder` computes them, for the same frames the
 * numpy bulk decode takes; the others (unknown link types, three or more VLAN tags,
 * first IPv4 fragments, IP length 0, IPv6 extension headers, frames shorter on the wire
 * than their IP length) are returned as rows for the Python `Decoder`, which decodes them
 * one by one in frame order.
 *
 * Python API (tcplife._engine):
 *   decode(store, off, caplen, wire, linktype, verify)
 *     -> (done, columns, left, bad, v6, counters)
 * `store` is the buffer, the four others int64 arrays of one length (count). `columns`:
 * a bytearray of 14 int64 columns of `count` values each (the first `done` used): row,
 * ip_version, src, sport, dst, dport, seq, ack, flags, payload_len, window, wscale, tsval,
 * tsecr (src and dst: the IPv4 address, 0 for IPv6). `left`: int64 rows for the Python
 * `Decoder`, ascending. `bad`: int64 positions among the `done` decoded rows whose
 * checksum is wrong. `v6`: the IPv6 rows' source addresses (16 bytes each, in row order)
 * then their destination addresses. `counters`: (undecodable, non_tcp, fragments,
 * tcp_segments, truncated, unverified_checksums, bad_checksums).
 */
#include "read.h"

#include <stdlib.h>

enum { K_UNDECODABLE, K_NON_TCP, K_IRREGULAR, K_V4 = 4, K_V6 = 6 };
enum { C_ROW, C_VERSION, C_SRC, C_SPORT, C_DST, C_DPORT, C_SEQ, C_ACK, C_FLAGS, C_PAYLOAD,
       C_WINDOW, C_WSCALE, C_TSVAL, C_TSECR, N_COLUMNS };
enum { N_UNDECODABLE, N_NON_TCP, N_FRAGMENTS, N_TCP, N_TRUNCATED, N_UNVERIFIED, N_BAD,
       N_COUNTERS };

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
static uint64_t word_sum(const uint8_t *p, int64_t len, int little) {
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

typedef struct {
    int64_t *columns, count, done;
    int64_t *left, nleft;
    int64_t *bad, nbad;
    uint8_t *v6; /* 32 bytes per IPv6 row: source, destination */
    int64_t nv6;
    int64_t counters[N_COUNTERS];
    int verify, little;
} out_t;

/* One frame (row `row`, `d[0:size]`), into `o`. */
static void decode_frame(out_t *o, int64_t row, int64_t linktype, const uint8_t *d,
                         int64_t size, int64_t wire) {
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
            o->counters[N_FRAGMENTS]++;
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
    o->counters[N_TCP]++;
    if (cut) {
        o->counters[N_TRUNCATED]++;
        if (o->verify) o->counters[N_UNVERIFIED]++;
    } else if (o->verify) {
        uint64_t sum = word_sum(d + sum_at, sum_len, o->little) +
                       word_sum(t, segment_len, o->little) + TCP + (uint64_t)segment_len;
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
    c[C_ROW * n + at] = row;
    c[C_VERSION * n + at] = kind;
    if (kind == K_V4) {
        c[C_SRC * n + at] = tl_be32(d + ip + 12);
        c[C_DST * n + at] = tl_be32(d + ip + 16);
    } else {
        c[C_SRC * n + at] = 0;
        c[C_DST * n + at] = 0;
        memcpy(o->v6 + 32 * o->nv6++, d + ip + 8, 32);
    }
    c[C_SPORT * n + at] = tl_be16(t);
    c[C_DPORT * n + at] = tl_be16(t + 2);
    c[C_SEQ * n + at] = tl_be32(t + 4);
    c[C_ACK * n + at] = tl_be32(t + 8);
    c[C_FLAGS * n + at] = flags;
    c[C_PAYLOAD * n + at] = payload_len;
    c[C_WINDOW * n + at] = tl_be16(t + 14);
    c[C_WSCALE * n + at] = wscale;
    c[C_TSVAL * n + at] = tsval;
    c[C_TSECR * n + at] = tsecr;
    return;
irregular:
    o->left[o->nleft++] = row;
    return;
non_tcp:
    o->counters[N_NON_TCP]++;
    return;
undecodable:
    o->counters[N_UNDECODABLE]++;
}

static PyObject *int64_bytes(const int64_t *values, int64_t count) {
    return PyByteArray_FromStringAndSize((const char *)values, (Py_ssize_t)(8 * count));
}

PyObject *tl_decode(PyObject *self, PyObject *args) {
    PyObject *store, *objs[4];
    int verify;
    if (!PyArg_ParseTuple(args, "OOOOOp:decode", &store, &objs[0], &objs[1], &objs[2],
                          &objs[3], &verify))
        return NULL;
    static const char *const names[4] = {"decode: off", "decode: caplen", "decode: wire",
                                         "decode: linktype"};
    Py_buffer data, cols[4];
    const int64_t *in[4];
    Py_ssize_t count = 0, got;
    int held = 0;
    PyObject *result = NULL, *columns = NULL;
    out_t o;
    memset(&o, 0, sizeof o);
    if (tl_get_bytes(store, &data, "decode: store") < 0) return NULL;
    for (; held < 4; held++) {
        if (tl_get_int64(objs[held], &cols[held], &got, names[held]) < 0) goto done;
        if (held == 0) count = got;
        in[held] = cols[held].buf;
        if (got != count) {
            held++;
            PyErr_SetString(PyExc_ValueError, "decode: columns of different lengths");
            goto done;
        }
    }
    for (Py_ssize_t i = 0; i < count; i++) { /* hostile callers: every frame in the buffer */
        if (in[0][i] < 0 || in[1][i] < 0 || in[1][i] > data.len || in[0][i] > data.len - in[1][i]) {
            PyErr_SetString(PyExc_ValueError, "decode: a frame lies outside the buffer");
            goto done;
        }
    }
    columns = PyByteArray_FromStringAndSize(NULL, (Py_ssize_t)(8 * N_COLUMNS) * count);
    if (columns == NULL) goto done;
    size_t room = (size_t)(count ? count : 1);
    o.columns = (int64_t *)(void *)PyByteArray_AS_STRING(columns);
    o.count = count;
    o.left = malloc(room * 8);
    o.bad = malloc(room * 8);
    o.v6 = malloc(room * 32);
    if (o.left == NULL || o.bad == NULL || o.v6 == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    o.verify = verify;
    const uint16_t one = 1;
    uint8_t first;
    memcpy(&first, &one, 1);
    o.little = first == 1;
    const uint8_t *buf = data.buf;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < count; i++) {
#ifdef __GNUC__
        if (i + PREFETCH < count) { /* the headers of a frame a few rows on */
            __builtin_prefetch(buf + in[0][i + PREFETCH]);
            __builtin_prefetch(buf + in[0][i + PREFETCH] + 63);
        }
#endif
        decode_frame(&o, i, in[3][i], buf + in[0][i], in[1][i], in[2][i]);
    }
    Py_END_ALLOW_THREADS
    o.counters[N_BAD] = o.nbad;
    PyObject *parts[4] = {int64_bytes(o.left, o.nleft), int64_bytes(o.bad, o.nbad),
                          PyBytes_FromStringAndSize((const char *)o.v6, 32 * o.nv6),
                          PyTuple_New(N_COUNTERS)};
    int ok = parts[0] && parts[1] && parts[2] && parts[3];
    for (int k = 0; ok && k < N_COUNTERS; k++) {
        PyObject *value = PyLong_FromLongLong(o.counters[k]);
        if (value == NULL) ok = 0;
        else PyTuple_SET_ITEM(parts[3], k, value);
    }
    if (ok) {
        PyObject *done_obj = PyLong_FromLongLong(o.done);
        if (done_obj != NULL)
            result = PyTuple_Pack(6, done_obj, columns, parts[0], parts[1], parts[2], parts[3]);
        Py_XDECREF(done_obj);
    }
    for (int k = 0; k < 4; k++) Py_XDECREF(parts[k]);
done:
    Py_XDECREF(columns);
    free(o.left);
    free(o.bad);
    free(o.v6);
    for (int k = 0; k < held; k++) PyBuffer_Release(&cols[k]);
    PyBuffer_Release(&data);
    return result;
}
