/* libFuzzer target for the compiled reader's loops (engine/read_walk.c, engine/decode.c),
 * built without Python under AddressSanitizer and UndefinedBehaviorSanitizer (see
 * run.sh). The first three input bytes (mode, shape, link) say what the rest is:
 *   mode bit 2 clear: a classic pcap body (after the file header): bit 0 big-endian, bit 1
 *     nanoseconds; shape: the caplen limit, checksums verified or not; link: the link
 *     type; walked, then its records decoded;
 *   mode bit 2 set, bit 3 clear: a pcapng body: bit 0 big-endian; shape: up to three
 *     interfaces, their time resolutions and offsets; link: the first one's link type
 *     (then the next ones); walked, then decoded;
 *   mode bits 2 and 3 set: frames for the decode alone, each after 3 bytes (link type,
 *     length, length on the wire).
 * Besides crashes, leaks and undefined behaviour it checks what the Python around these
 * loops relies on: every record inside the buffer, the walk's stop at the end of the last,
 * every frame counted once (decoded, left to Python, or counted as undecodable,
 * non-TCP or fragment), checksums judged only for decoded segments. */
#include "../read.h"

#include <stdlib.h>

#define CHECK(x) do { if (!(x)) __builtin_trap(); } while (0)

static const int64_t LINKTYPES[] = {1, 113, 276, 0, 108, 12, 14, 101, 228, 229, 147, -1};
#define NLINK ((int)(sizeof LINKTYPES / sizeof LINKTYPES[0]))

static void decode_and_check(const uint8_t *buf, int64_t n, const int64_t *off,
                             const int64_t *caplen, const int64_t *wire,
                             const int64_t *linktype, int64_t count, int verify) {
    int64_t *frame = malloc((size_t)(count ? count : 1) * 8);
    CHECK(frame != NULL);
    for (int64_t i = 0; i < count; i++) frame[i] = i + 1;
    tl_decoded_t o;
    memset(&o, 0, sizeof o);
    size_t room = (size_t)(count ? count : 1);
    o.columns = malloc(room * 8 * TL_D_COLUMNS);
    o.left = malloc(room * 8);
    o.bad = malloc(room * 8);
    o.v6 = malloc(room * 32);
    o.count = count;
    o.verify = verify;
    CHECK(o.columns && o.left && o.bad && o.v6);
    for (int64_t i = 0; i < count; i++) CHECK(off[i] >= 0 && caplen[i] >= 0 && off[i] + caplen[i] <= n);
    tl_decode_frames(&o, buf, off, caplen, wire, linktype, frame, off);
    CHECK(o.done == o.counters[TL_N_TCP]);
    CHECK(o.done + o.nleft + o.counters[TL_N_UNDECODABLE] + o.counters[TL_N_NON_TCP] +
          o.counters[TL_N_FRAGMENTS] == count);
    CHECK(o.nbad == o.counters[TL_N_BAD] && o.nbad <= o.done);
    CHECK(o.counters[TL_N_TRUNCATED] <= o.done);
    CHECK(verify || (o.nbad == 0 && o.counters[TL_N_UNVERIFIED] == 0));
    int64_t v6 = 0, last = -1;
    for (int64_t k = 0; k < o.done; k++) {
        int64_t row = o.columns[TL_D_FRAME * count + k] - 1;
        CHECK(row > last && row < count);
        CHECK(o.columns[TL_D_TS * count + k] == off[row]);
        last = row;
        CHECK(o.columns[TL_D_PAYLOAD * count + k] >= 0);
        CHECK(o.columns[TL_D_WSCALE * count + k] >= -1 && o.columns[TL_D_WSCALE * count + k] < 256);
        v6 += o.columns[TL_D_VERSION * count + k] == 6;
    }
    CHECK(v6 == o.nv6);
    for (int64_t k = 1; k < o.nleft; k++) CHECK(o.left[k] > o.left[k - 1]);
    free(frame);
    free(o.columns);
    free(o.left);
    free(o.bad);
    free(o.v6);
}

static void walk_pcap(const uint8_t *buf, int64_t n, int big, int nano, uint8_t shape,
                      uint8_t link) {
    static const int64_t limits[] = {1 << 18, 96, 0, TL_MAX_BLOCK_LEN};
    int64_t room = n / 16 + 1, pos = 0;
    int64_t *cols = malloc((size_t)room * 4 * 8);
    CHECK(cols != NULL);
    int64_t count = tl_walk_pcap(buf, &pos, n, big, nano, limits[shape & 3], cols, room);
    CHECK(count >= 0 && count <= room && pos >= 0 && pos <= n);
    int64_t *linktype = malloc((size_t)room * 8);
    CHECK(linktype != NULL);
    int64_t expect = 0;
    for (int64_t i = 0; i < count; i++) {
        CHECK(cols[i] == expect + 16);
        expect = cols[i] + cols[room + i];
        linktype[i] = LINKTYPES[link % NLINK];
    }
    CHECK(expect == pos);
    decode_and_check(buf, n, cols, cols + room, cols + 2 * room, linktype, count, shape & 0x80);
    free(linktype);
    free(cols);
}

static void walk_pcapng(const uint8_t *buf, int64_t n, int big, uint8_t shape, uint8_t link) {
    static const int64_t muls[] = {1000, 1, 1, 1000000000};
    static const int64_t divs[] = {1, 1, 1000, (int64_t)1 << 20};
    static const int64_t offsets[] = {0, 1700000000LL * 1000000000LL, -5000000000LL,
                                      ((int64_t)1 << 62) - 1};
    tl_iface_t ifaces[3];
    int64_t nifaces = shape & 3;
    for (int i = 0; i < 3; i++) {
        int k = (shape >> (2 + 2 * i)) & 3;
        ifaces[i] = (tl_iface_t){LINKTYPES[(link + i) % NLINK], muls[k], divs[k],
                                 offsets[(k + i + (link >> 4)) & 3]};
    }
    int64_t room = n / 32 + 1, pos = 0;
    int64_t *cols = malloc((size_t)room * 5 * 8);
    CHECK(cols != NULL);
    int64_t count = tl_walk_pcapng(buf, &pos, n, big, ifaces, nifaces, cols, room);
    CHECK(count >= 0 && count <= room && pos >= 0 && pos <= n);
    for (int64_t i = 0; i < count; i++) CHECK(cols[i] + cols[room + i] + 4 <= n);
    decode_and_check(buf, n, cols, cols + room, cols + 2 * room, cols + 4 * room, count,
                     link & 0x80);
    free(cols);
}

static void frames(const uint8_t *buf, int64_t n, int verify) {
    int64_t room = n / 3 + 1, count = 0, at = 0;
    int64_t *off = malloc((size_t)room * 8), *caplen = malloc((size_t)room * 8);
    int64_t *wire = malloc((size_t)room * 8), *linktype = malloc((size_t)room * 8);
    CHECK(off && caplen && wire && linktype);
    while (n - at >= 3) {
        uint8_t kind = buf[at];
        int64_t length = buf[at + 1] | (int64_t)(buf[at + 2] & 0x7) << 8;
        at += 3;
        if (length > n - at) length = n - at;
        off[count] = at;
        caplen[count] = length;
        wire[count] = length + ((buf[at - 1] & 0x80) ? 0 : (kind >> 4) * 97 - 40);
        linktype[count] = LINKTYPES[(kind & 0xF) % NLINK];
        count++;
        at += length;
    }
    decode_and_check(buf, n, off, caplen, wire, linktype, count, verify);
    free(off);
    free(caplen);
    free(wire);
    free(linktype);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 3) return 0;
    uint8_t mode = data[0], shape = data[1], link = data[2];
    int64_t n = (int64_t)size - 3;
    uint8_t *buf = malloc((size_t)(n ? n : 1)); /* exactly the bytes: ASan sees overreads */
    CHECK(buf != NULL);
    memcpy(buf, data + 3, (size_t)n);
    if (!(mode & 4)) walk_pcap(buf, n, mode & 1, (mode >> 1) & 1, shape, link);
    else if (!(mode & 8)) walk_pcapng(buf, n, mode & 1, shape, link);
    else frames(buf, n, shape & 1);
    free(buf);
    return 0;
}
