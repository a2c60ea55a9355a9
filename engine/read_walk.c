/* The compiled reader's record walks (see read.h): classic pcap records and runs of pcapng
 * Enhanced Packet Blocks, from a position in fastbuffer.Stream's buffer.
 *
 * The C twin of fastwalk.py's numpy walk (`_vector`): the records a sequential walk finds,
 * as long as each passes every check records.py makes and is of the common kind; the walk
 * stops before the first one it does not take, and Python's one-by-one walk (`_steps`)
 * goes on from there with records.py's checks, warnings and waits. So the records found
 * are exactly those of records.py. No Python here. */
#include "read.h"

/* --- classic pcap ------------------------------------------------------------------------ */

int64_t tl_walk_pcap(const uint8_t *buf, int64_t *pos, int64_t n, int big, int nano,
                     int64_t max_caplen, int64_t *cols, int64_t room) {
    int64_t *off = cols, *caplen = off + room, *wire = caplen + room, *ts = wire + room;
    int64_t frac_ns = nano ? 1 : 1000, at = *pos, count = 0;
    while (count < room && n - at >= 16) {
        const uint8_t *h = buf + at;
        int64_t length = tl_u32(h + 8, big);
        if (length > max_caplen || length > n - at - 16) break;
        /* sec < 2**32 and frac < 2**32: sec * 10**9 + frac * 1000 < 2**63 */
        ts[count] = (int64_t)tl_u32(h, big) * TL_NS_PER_S + (int64_t)tl_u32(h + 4, big) * frac_ns;
        caplen[count] = length;
        wire[count] = tl_u32(h + 12, big);
        off[count] = at + 16;
        count++;
        at += 16 + length;
    }
    *pos = at;
    return count;
}

/* --- pcapng -------------------------------------------------------------------------------- */

#define EPB 6
#define TS_LIMIT ((int64_t)1 << 62)

/* ``units * mul // div + offset`` exactly, as records.py computes it (Python integers),
 * in the cases fastwalk._timestamps takes (|result| < 2**62); 0 when it is not one
 * (Python then walks the block). */
static int block_time(uint64_t units, const tl_iface_t *f, int64_t *ts) {
    int64_t mul = f->mul, div = f->div, off = f->offset;
    if (off <= -TS_LIMIT || off >= TS_LIMIT) return 0;
    int64_t room = TS_LIMIT - (off < 0 ? -off : off); /* > 0 */
    if (div == 1) {
        if (mul <= 0 || units > (uint64_t)(room - 1) / (uint64_t)mul) return 0;
        *ts = (int64_t)units * mul + off;
        return 1;
    }
    if (div > 1 && (div & (div - 1)) == 0 && mul == TL_NS_PER_S && div <= ((int64_t)1 << 32)) {
        int shift = 0;
        while (((int64_t)1 << shift) != div) shift++;
        uint64_t high = units >> shift, low = units & (uint64_t)(div - 1);
        if (room <= mul || high > (uint64_t)(room - mul - 1) / (uint64_t)mul) return 0;
        /* low < 2**32: low * 10**9 < 2**62 */
        *ts = (int64_t)high * mul + (int64_t)((low * (uint64_t)mul) >> shift) + off;
        return 1;
    }
    if (mul == 1 && div > 1) {
        uint64_t q = units / (uint64_t)div;
        if (q >= (uint64_t)room) return 0;
        *ts = (int64_t)q + off;
        return 1;
    }
    return 0;
}

/* The Enhanced Packet Block at `at` as records.py takes it, into row[5]: 1, or 0 when it
 * is anything else (then Python walks it). */
static int epb_at(const uint8_t *buf, int64_t at, int64_t n, int big, const tl_iface_t *ifaces,
                  int64_t nifaces, int64_t *end, int64_t *row) {
    if (at < 0 || n - at < 12 || tl_u32(buf + at, big) != EPB) return 0;
    int64_t blen = tl_u32(buf + at + 4, big);
    if (blen < 32 || (blen & 3) || blen > TL_MAX_BLOCK_LEN || blen > n - at) return 0;
    if (tl_u32(buf + at + blen - 4, big) != (uint32_t)blen) return 0;
    const uint8_t *h = buf + at + 8;
    int64_t iface = tl_u32(h, big), caplen = tl_u32(h + 12, big);
    if (caplen + 32 > blen || iface >= nifaces) return 0;
    uint64_t units = (uint64_t)tl_u32(h + 4, big) << 32 | tl_u32(h + 8, big);
    if (!block_time(units, &ifaces[iface], &row[3])) return 0;
    row[0] = at + 28;
    row[1] = caplen;
    row[2] = tl_u32(h + 16, big);
    row[4] = ifaces[iface].linktype;
    *end = at + blen;
    return 1;
}

int64_t tl_walk_pcapng(const uint8_t *buf, int64_t *pos, int64_t n, int big,
                       const tl_iface_t *ifaces, int64_t nifaces, int64_t *cols, int64_t room) {
    int64_t row[5], count = 0, at = *pos, end;
    while (count < room && epb_at(buf, at, n, big, ifaces, nifaces, &end, row)) {
        for (int c = 0; c < 5; c++) cols[c * room + count] = row[c];
        count++;
        at = end;
    }
    *pos = at;
    return count;
}
