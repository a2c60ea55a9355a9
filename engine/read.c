/* The compiled reader's Python face (see read.h): tcplife._engine's pcap_walk,
 * pcapng_walk and decode, which tcplife/capture/creader.py calls. Each checks what it is
 * given (any object with the buffer protocol: the buffer as bytes, the columns as
 * contiguous int64; every window and frame inside the buffer), runs the loops of
 * read_walk.c or decode.c without the GIL, and returns their columns as bytearrays of
 * int64 (Python wraps them with np.frombuffer).
 *
 *   pcap_walk(store, pos, n, big_endian, nano, max_caplen) -> (stop, room, count, columns)
 *   pcapng_walk(store, pos, n, big_endian, ifaces) -> (stop, room, count, columns)
 *     `columns`: int64 columns `room` values apart, of which the first `count` are the
 *     records': data offset, captured length, length on the wire, time in ns (and, for
 *     pcapng, link type). `ifaces`: int64, 4 per interface: link type, multiplier,
 *     divisor, offset in ns (a divisor of 0: its times are left to Python).
 *   decode(store, off, caplen, wire, linktype, frame, ts, verify)
 *     -> (done, columns, left, bad, v6, counters)
 *     `columns`: TL_D_COLUMNS int64 columns `count` values apart (count: the frames), of
 *     which the first `done` are the decoded segments' (a Batch's columns: frame, ts_ns,
 *     ip_version, src, sport, dst, dport, seq, ack, flags, payload_len, window, wscale,
 *     tsval, tsecr; src and dst 0 for IPv6); `left`: int64 rows for the Python Decoder; `bad`: int64 positions among the
 *     decoded with a wrong checksum; `v6`: bytes, per IPv6 segment its source and
 *     destination; `counters`: (undecodable, non_tcp, fragments, tcp_segments,
 *     truncated, unverified_checksums, bad_checksums).
 */
#include "engine.h"
#include "read.h"

#include <stdlib.h>

/* --- arguments ----------------------------------------------------------------------------- */

static int get_bytes(PyObject *obj, Py_buffer *view) {
    return PyObject_GetBuffer(obj, view, PyBUF_C_CONTIGUOUS);
}

static int get_int64(PyObject *obj, Py_buffer *view, Py_ssize_t *count, const char *what) {
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

/* --- the walks ----------------------------------------------------------------------------- */

PyObject *tl_pcap_walk(PyObject *self, PyObject *args) {
    PyObject *store;
    Py_ssize_t pos, n;
    int big, nano;
    long long max_caplen;
    if (!PyArg_ParseTuple(args, "OnnppL:pcap_walk", &store, &pos, &n, &big, &nano,
                          &max_caplen))
        return NULL;
    Py_buffer view;
    if (get_bytes(store, &view) < 0) return NULL;
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
    int64_t *cols = (int64_t *)(void *)PyByteArray_AS_STRING(columns), at = pos, count;
    Py_BEGIN_ALLOW_THREADS
    count = tl_walk_pcap(view.buf, &at, n, big, nano, max_caplen, cols, room);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&view);
    return Py_BuildValue("LnLN", (long long)at, room, (long long)count, columns);
}

PyObject *tl_pcapng_walk(PyObject *self, PyObject *args) {
    PyObject *store, *iface_obj;
    Py_ssize_t pos, n, nvalues;
    int big;
    if (!PyArg_ParseTuple(args, "OnnpO:pcapng_walk", &store, &pos, &n, &big, &iface_obj))
        return NULL;
    Py_buffer view, fview;
    if (get_bytes(store, &view) < 0) return NULL;
    if (get_int64(iface_obj, &fview, &nvalues, "pcapng_walk: interfaces") < 0) {
        PyBuffer_Release(&view);
        return NULL;
    }
    PyObject *result = NULL, *columns = NULL;
    tl_iface_t *ifaces = NULL;
    if (!window_ok(pos, n, view.len)) goto done;
    if (nvalues % 4) {
        PyErr_SetString(PyExc_ValueError, "pcapng_walk: 4 values per interface");
        goto done;
    }
    Py_ssize_t nifaces = nvalues / 4;
    ifaces = PyMem_Malloc(sizeof(tl_iface_t) * (size_t)(nifaces ? nifaces : 1));
    if (ifaces == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t i = 0; i < nifaces; i++) {
        int64_t v[4];
        memcpy(v, (const char *)fview.buf + 32 * i, sizeof v);
        ifaces[i] = (tl_iface_t){v[0], v[1], v[2], v[3]};
    }
    Py_ssize_t room = (n - pos) / 32 + 1; /* an EPB is at least 32 bytes */
    columns = PyByteArray_FromStringAndSize(NULL, (Py_ssize_t)(5 * 8) * room);
    if (columns == NULL) goto done;
    int64_t *cols = (int64_t *)(void *)PyByteArray_AS_STRING(columns), at = pos, count;
    Py_BEGIN_ALLOW_THREADS
    count = tl_walk_pcapng(view.buf, &at, n, big, ifaces, nifaces, cols, room);
    Py_END_ALLOW_THREADS
    result = Py_BuildValue("LnLO", (long long)at, room, (long long)count, columns);
done:
    Py_XDECREF(columns);
    PyMem_Free(ifaces);
    PyBuffer_Release(&fview);
    PyBuffer_Release(&view);
    return result;
}

/* --- the decode ---------------------------------------------------------------------------- */

static PyObject *int64_bytes(const int64_t *values, int64_t count) {
    return PyByteArray_FromStringAndSize((const char *)values, (Py_ssize_t)(8 * count));
}

/* (done, columns, left, bad, v6, counters) of a finished decode */
static PyObject *decoded(const tl_decoded_t *o, PyObject *columns) {
    PyObject *result = NULL;
    PyObject *parts[4] = {int64_bytes(o->left, o->nleft), int64_bytes(o->bad, o->nbad),
                          PyBytes_FromStringAndSize((const char *)o->v6, 32 * o->nv6),
                          PyTuple_New(TL_N_COUNTERS)};
    int ok = parts[0] && parts[1] && parts[2] && parts[3];
    for (int k = 0; ok && k < TL_N_COUNTERS; k++) {
        PyObject *value = PyLong_FromLongLong(o->counters[k]);
        if (value == NULL) ok = 0;
        else PyTuple_SET_ITEM(parts[3], k, value);
    }
    if (ok) {
        PyObject *done = PyLong_FromLongLong(o->done);
        if (done != NULL)
            result = PyTuple_Pack(6, done, columns, parts[0], parts[1], parts[2], parts[3]);
        Py_XDECREF(done);
    }
    for (int k = 0; k < 4; k++) Py_XDECREF(parts[k]);
    return result;
}

PyObject *tl_decode(PyObject *self, PyObject *args) {
    PyObject *store, *objs[6];
    int verify;
    if (!PyArg_ParseTuple(args, "OOOOOOOp:decode", &store, &objs[0], &objs[1], &objs[2],
                          &objs[3], &objs[4], &objs[5], &verify))
        return NULL;
    static const char *const names[6] = {"decode: off", "decode: caplen", "decode: wire",
                                         "decode: linktype", "decode: frame", "decode: ts"};
    Py_buffer data, cols[6];
    const int64_t *in[6];
    Py_ssize_t count = 0, got;
    int held = 0;
    PyObject *result = NULL, *columns = NULL;
    tl_decoded_t o;
    memset(&o, 0, sizeof o);
    if (get_bytes(store, &data) < 0) return NULL;
    for (; held < 6; held++) {
        if (get_int64(objs[held], &cols[held], &got, names[held]) < 0) goto done;
        if (held == 0) count = got;
        in[held] = cols[held].buf;
        if (got != count) {
            held++;
            PyErr_SetString(PyExc_ValueError, "decode: columns of different lengths");
            goto done;
        }
    }
    for (Py_ssize_t i = 0; i < count; i++) { /* every frame inside the buffer */
        if (in[0][i] < 0 || in[1][i] < 0 || in[1][i] > data.len ||
            in[0][i] > data.len - in[1][i]) {
            PyErr_SetString(PyExc_ValueError, "decode: a frame lies outside the buffer");
            goto done;
        }
    }
    columns = PyByteArray_FromStringAndSize(NULL, (Py_ssize_t)(8 * TL_D_COLUMNS) * count);
    if (columns == NULL) goto done;
    size_t room = (size_t)(count ? count : 1);
    o.columns = (int64_t *)(void *)PyByteArray_AS_STRING(columns);
    o.count = count;
    o.left = malloc(room * 8);
    o.bad = malloc(room * 8);
    o.v6 = malloc(room * 32);
    o.verify = verify;
    if (o.left == NULL || o.bad == NULL || o.v6 == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    Py_BEGIN_ALLOW_THREADS
    tl_decode_frames(&o, data.buf, in[0], in[1], in[2], in[3], in[4], in[5]);
    Py_END_ALLOW_THREADS
    result = decoded(&o, columns);
done:
    Py_XDECREF(columns);
    free(o.left);
    free(o.bad);
    free(o.v6);
    for (int k = 0; k < held; k++) PyBuffer_Release(&cols[k]);
    PyBuffer_Release(&data);
    return result;
}
