/* The compiled capture reader, part 1: the record walks of classic pcap and pcapng.
 *
 * The C twin of the numpy record walk in tcplife/capture/fastwalk.py (`_vector`): from a
 * position in fastbuffer.Stream's buffer, the records a sequential walk finds, as long as
 * each is of the one common kind and passes every check records.py makes; the walk stops
 * before the first record it does not take (damage, a record or block not wholly in the
 * buffer, another pcapng block type, an interface whose time units it cannot convert
 * exactly), and Python's one-by-one walk (`_steps`) goes on from there with records.py's
 * checks, warnings and waits. So the records found are exactly those of records.py.
 *
 * Python API (tcplife._engine):
 *   pcap_walk(store, pos, n, big_endian, nano, max_caplen) -> (stop, room, count, columns)
 *   pcapng_walk(store, pos, n, big_endian, ifaces) -> (stop, room, count, columns)
 * `columns` is a bytearray of int64 columns `room` values apart, of which the first
 * `count` are the records': data offset, captured length, length on the wire, time in ns
 * (and, for pcapng, link type). `ifaces` is a bytes-like of int64, 4 per interface: link type, multiplier,
 * divisor, offset in ns (time = units * multiplier // divisor + offset); a divisor of 0
 * marks an interface whose times are left to Python.
 */
#include "read.h"

/* --- shared buffer helpers --------------------------------------------------------- */

int tl_get_bytes(PyObject *obj, Py_buffer *view, const char *what) {
    (void)what;
    return PyObject_GetBuffer(obj, view, PyBUF_C_CONTIGUOUS);
}

int tl_get_int64(PyObject *obj, Py_buffer *view, Py_ssize_t *count, const char *what) {
    if (PyObject_GetBuffer(obj, view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) return -1;
    const char *f = view->format ? view->format : "B";
    if (*f == '<' || *f == '=' || *f == '@') f++;
    if (view->itemsize != 8 || (strcmp(f, "q") != 0 && strcmp(f, "l") != 0)) {
        PyBuffer_Release(view);
        PyErr_Format(PyExc_TypeError, "%s: expected a contiguous array of int64", what);
        return -1;
    }
    *count = view->len / 8;
    return 0;
}

/* Checks the (pos, n) window of a store of `len` bytes. */
static int window_ok(Py_ssize_t pos, Py_ssize_t n, Py_ssize_t len) {
    if (pos < 0 || n < pos || n > len) {
        PyErr_SetString(PyExc_ValueError, "walk: position outside the buffer");
        return 0;
    }
    return 1;
}

/* (stop, rows of room, rows used, columns): the columns are `room` values apart */
static PyObject *walk_result(Py_ssize_t stop, Py_ssize_t room, Py_ssize_t count,
                             PyObject *columns) {
    if (columns == NULL) return NULL;
    return Py_BuildValue("nnnN", stop, room, count, columns);
}

/* --- classic pcap ------------------------------------------------------------------ */

PyObject *tl_pcap_walk(PyObject *self, PyObject *args) {
    PyObject *store;
    Py_ssize_t pos, n;
    int big, nano;
    long long max_caplen;
    if (!PyArg_ParseTuple(args, "OnnppL:pcap_walk", &store, &pos, &n, &big, &nano,
                          &max_caplen))
        return NULL;
    Py_buffer view;
    if (tl_get_bytes(store, &view, "pcap_walk") < 0) return NULL;
    if (!window_ok(pos, n, view.len)) {
        PyBuffer_Release(&view);
        return NULL;
    }
    /* room for the most records the window can hold (16 bytes each): one pass, and only
     * the pages written are touched */
    Py_ssize_t room = (n - pos) / 16 + 1;
    PyObject *columns = PyByteArray_FromStringAndSize(NULL, (Py_ssize_t)(4 * 8) * room);
    if (columns == NULL) {
        PyBuffer_Release(&view);
        return NULL;
    }
    int64_t *off = (int64_t *)(void *)PyByteArray_AS_STRING(columns);
    int64_t *caplen = off + room, *wire = caplen + room, *ts = wire + room;
    int64_t frac_ns = nano ? 1 : 1000;
    const uint8_t *buf = view.buf;
    Py_ssize_t count = 0;
    Py_BEGIN_ALLOW_THREADS
    while (n - pos >= 16) {
        const uint8_t *h = buf + pos;
        int64_t length = tl_u32(h + 8, big);
        if (length > max_caplen || length > n - pos - 16) break;
        /* sec < 2**32 and frac < 2**32: sec * 10**9 + frac * 1000 < 2**63 */
        ts[count] = (int64_t)tl_u32(h, big) * TL_NS_PER_S + (int64_t)tl_u32(h + 4, big) * frac_ns;
        caplen[count] = length;
        wire[count] = tl_u32(h + 12, big);
        off[count] = pos + 16;
        count++;
        pos += 16 + (Py_ssize_t)length;
    }
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&view);
    return walk_result(pos, room, count, columns);
}

/* --- pcapng -------------------------------------------------------------------------- */

#define EPB 6
#define TS_LIMIT ((int64_t)1 << 62)

typedef struct {
    int64_t linktype, mul, div, offset;
} iface_t;

/* ``units * mul // div + offset`` exactly, as records.py computes it (Python integers),
 * where the exact result is easily had in 64 bits (the cases fastwalk._timestamps takes:
 * |result| < 2**62); 0 when it is not (Python then walks the block). */
static int block_time(uint64_t units, const iface_t *f, int64_t *ts) {
    int64_t mul = f->mul, div = f->div, off = f->offset;
    int64_t room = TS_LIMIT - (off < 0 ? -off : off); /* |off| < 2**62: room > 0 */
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

/* One Enhanced Packet Block at `pos` as records.py takes it, with its time: 1, or 0 when
 * it is anything else (then Python walks it). */
static int epb_at(const uint8_t *buf, Py_ssize_t pos, Py_ssize_t n, int big,
                  const iface_t *ifaces, Py_ssize_t nifaces, Py_ssize_t *end, int64_t *row) {
    if (n - pos < 12 || tl_u32(buf + pos, big) != EPB) return 0;
    int64_t blen = tl_u32(buf + pos + 4, big);
    if (blen < 32 || (blen & 3) || blen > TL_MAX_BLOCK_LEN || blen > n - pos) return 0;
    if (tl_u32(buf + pos + blen - 4, big) != (uint32_t)blen) return 0;
    const uint8_t *h = buf + pos + 8;
    int64_t iface = tl_u32(h, big), caplen = tl_u32(h + 12, big);
    if (caplen + 32 > blen || iface >= nifaces) return 0;
    uint64_t units = (uint64_t)tl_u32(h + 4, big) << 32 | tl_u32(h + 8, big);
    if (!block_time(units, &ifaces[iface], &row[3])) return 0;
    row[0] = pos + 28;
    row[1] = caplen;
    row[2] = tl_u32(h + 16, big);
    row[4] = ifaces[iface].linktype;
    *end = pos + (Py_ssize_t)blen;
    return 1;
}

PyObject *tl_pcapng_walk(PyObject *self, PyObject *args) {
    PyObject *store, *iface_obj;
    Py_ssize_t pos, n;
    int big;
    if (!PyArg_ParseTuple(args, "OnnpO:pcapng_walk", &store, &pos, &n, &big, &iface_obj))
        return NULL;
    Py_buffer view, fview;
    Py_ssize_t nvalues;
    if (tl_get_bytes(store, &view, "pcapng_walk") < 0) return NULL;
    if (tl_get_int64(iface_obj, &fview, &nvalues, "pcapng_walk interfaces") < 0) {
        PyBuffer_Release(&view);
        return NULL;
    }
    PyObject *columns = NULL;
    if (!window_ok(pos, n, view.len) || nvalues % 4) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_ValueError, "pcapng_walk: 4 values per interface");
        goto done;
    }
    const uint8_t *buf = view.buf;
    Py_ssize_t nifaces = nvalues / 4;
    iface_t *ifaces = PyMem_Malloc(sizeof(iface_t) * (size_t)(nifaces ? nifaces : 1));
    if (ifaces == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t i = 0; i < nifaces; i++) {
        int64_t v[4];
        memcpy(v, (const char *)fview.buf + 32 * i, sizeof v);
        ifaces[i].linktype = v[0];
        ifaces[i].mul = v[1];
        ifaces[i].div = v[2];
        ifaces[i].offset = v[3];
        if (v[3] <= -TS_LIMIT || v[3] >= TS_LIMIT) ifaces[i].div = 0; /* Python's */
    }
    Py_ssize_t room = (n - pos) / 32 + 1, count = 0, at = pos, end;
    columns = PyByteArray_FromStringAndSize(NULL, (Py_ssize_t)(5 * 8) * room);
    if (columns != NULL) {
        int64_t *out = (int64_t *)(void *)PyByteArray_AS_STRING(columns), row[5];
        Py_BEGIN_ALLOW_THREADS
        while (epb_at(buf, at, n, big, ifaces, nifaces, &end, row)) {
            for (int c = 0; c < 5; c++) out[c * room + count] = row[c];
            count++;
            at = end;
        }
        Py_END_ALLOW_THREADS
    }
    PyMem_Free(ifaces);
    if (columns != NULL) {
        PyBuffer_Release(&fview);
        PyBuffer_Release(&view);
        return walk_result(at, room, count, columns);
    }
done:
    PyBuffer_Release(&fview);
    PyBuffer_Release(&view);
    return NULL;
}
