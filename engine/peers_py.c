/* `tcplife._engine.PeerReplay`: the peers' replays (peers.h) driven from Python, for the
 * tests that hold them to tcplife/peers and for measuring them. One object is what
 * `PeerObserver` is: Wireshark's numbering of every segment plus the `Peers` of each
 * connection instance, by conn_id.
 *
 *   segment(row) -> tcp.stream      opened(conn_id, row, sender_is_client)
 *   feed(conn_id, row, from_client) summary(conn_id) -> tuple     forget(conn_id)
 *   play(columns, ops) -> bytearray  the same calls in bulk: columns are the 15 `Batch`
 *       columns (int64 buffers), ops an int64 buffer of (op, row, conn_id, flag) quads,
 *       op 0 segment, 1 opened, 2 feed (row indexes the columns); returns the tcp.stream
 *       of each segment op (int64s: np.frombuffer)
 *   current, streams                Wireshark's current stream, streams numbered so far
 *   constants() (static)            the replays' constants, to compare with the Python's
 *
 * A row is the `Segment` fields in `Batch.COLUMNS` order, addresses as `AddressBook` keys.
 * summary(conn_id) is the `PeerSummary` fields in order (zeek_conn_state, zeek_history,
 * zeek_orig, zeek_orig_bytes, zeek_resp_bytes, zeek_duration_ns, tcp_stream, tcp_streams,
 * suricata_state, zeek_later), zeek_later a tuple of `ZeekRecord` field tuples. */
#include "engine.h"

#include <string.h>

#include "peers.h"

/* ------------------------------------------------------------------ conn_id -> instance */
typedef struct {
    int64_t key;
    tl_peers *p; /* NULL: empty */
} inst_slot;

typedef struct {
    PyObject_HEAD
    tl_wshark *ws;
    inst_slot *slots; /* open addressing, linear probing, backward-shift deletion */
    size_t mask, used;
} PeerReplay;

static size_t key_hash(int64_t k) {
    uint64_t x = (uint64_t)k;
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdu;
    x ^= x >> 33;
    return (size_t)x;
}

static inst_slot *inst_find(const PeerReplay *r, int64_t key) {
    size_t i = key_hash(key) & r->mask;
    while (r->slots[i].p != NULL && r->slots[i].key != key) i = (i + 1) & r->mask;
    return &r->slots[i];
}

static int inst_grow(PeerReplay *r) {
    size_t oldn = r->mask + 1, n = oldn * 2;
    if (n > SIZE_MAX / sizeof(inst_slot)) return -1;
    inst_slot *old = r->slots;
    r->slots = PyMem_Calloc(n, sizeof(inst_slot));
    if (r->slots == NULL) {
        r->slots = old;
        return -1;
    }
    r->mask = n - 1;
    for (size_t i = 0; i < oldn; i++)
        if (old[i].p != NULL) *inst_find(r, old[i].key) = old[i];
    PyMem_Free(old);
    return 0;
}

static void inst_remove(PeerReplay *r, inst_slot *s) {
    size_t i = (size_t)(s - r->slots), j = i;
    tl_peers_free(s->p);
    s->p = NULL;
    r->used--;
    for (;;) { /* shift back the entries of the run that would no longer be found */
        j = (j + 1) & r->mask;
        if (r->slots[j].p == NULL) return;
        size_t home = key_hash(r->slots[j].key) & r->mask;
        /* move j to i unless home lies cyclically in (i, j] */
        if ((j > i && (home <= i || home > j)) || (j < i && home <= i && home > j)) {
            r->slots[i] = r->slots[j];
            r->slots[j].p = NULL;
            i = j;
        }
    }
}

/* ------------------------------------------------------------------ rows */
#define TS_LIMIT ((int64_t)1 << 62)

/* The preconditions of peers.h; -1 with ValueError */
static int check_seg(const tl_peer_seg *s) {
    const char *bad = NULL;
    if (s->ts_ns < -TS_LIMIT || s->ts_ns > TS_LIMIT) bad = "ts_ns beyond +-2**62";
    else if (s->seq < 0 || s->seq > 0xFFFFFFFFll) bad = "seq not a 32-bit value";
    else if (s->ack < 0 || s->ack > 0xFFFFFFFFll) bad = "ack not a 32-bit value";
    else if (s->payload_len < 0 || s->payload_len > 0xFFFFFFFFll) bad = "payload_len out of range";
    else if (s->sport < 0 || s->sport > 65535 || s->dport < 0 || s->dport > 65535)
        bad = "port out of range";
    if (bad == NULL) return 0;
    PyErr_Format(PyExc_ValueError, "PeerReplay: segment frame %lld: %s", (long long)s->frame,
                 bad);
    return -1;
}

static int row_from_object(PyObject *row, tl_peer_seg *out) {
    PyObject *fast = PySequence_Fast(row, "a row is a sequence of the 15 Segment fields");
    if (fast == NULL) return -1;
    if (PySequence_Fast_GET_SIZE(fast) != TL_PEER_SEG_FIELDS) {
        Py_DECREF(fast);
        PyErr_SetString(PyExc_ValueError, "a row has the 15 Segment fields");
        return -1;
    }
    int64_t v[TL_PEER_SEG_FIELDS];
    for (int i = 0; i < TL_PEER_SEG_FIELDS; i++) {
        v[i] = PyLong_AsLongLong(PySequence_Fast_GET_ITEM(fast, i));
        if (v[i] == -1 && PyErr_Occurred()) {
            Py_DECREF(fast);
            return -1;
        }
    }
    Py_DECREF(fast);
    memcpy(out, v, sizeof v);
    return check_seg(out);
}

/* ------------------------------------------------------------------ the calls */
static int do_opened(PeerReplay *r, int64_t conn_id, const tl_peer_seg *seg, int sender) {
    if ((r->used + 1) * 2 > r->mask + 1 && inst_grow(r) < 0) { /* never full */
        PyErr_NoMemory();
        return -1;
    }
    inst_slot *s = inst_find(r, conn_id);
    if (s->p != NULL) {
        PyErr_Format(PyExc_ValueError, "PeerReplay: conn_id %lld opened twice",
                     (long long)conn_id);
        return -1;
    }
    tl_peers *p = tl_peers_open(seg, sender);
    if (p == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    s->key = conn_id;
    s->p = p;
    r->used++;
    return 0;
}

static tl_peers *instance(PeerReplay *r, int64_t conn_id) {
    inst_slot *s = inst_find(r, conn_id);
    if (s->p == NULL) PyErr_Format(PyExc_KeyError, "PeerReplay: no conn_id %lld",
                                   (long long)conn_id);
    return s->p;
}

static int do_feed(PeerReplay *r, int64_t conn_id, const tl_peer_seg *seg, int from_client) {
    tl_peers *p = instance(r, conn_id);
    if (p == NULL) return -1;
    if (tl_peers_feed(p, seg, from_client, tl_wshark_current(r->ws)) < 0) {
        PyErr_NoMemory();
        return -1;
    }
    return 0;
}

static int do_segment(PeerReplay *r, const tl_peer_seg *seg) {
    if (tl_wshark_feed(r->ws, seg) < 0) {
        PyErr_NoMemory();
        return -1;
    }
    return 0;
}

static PyObject *py_segment(PeerReplay *r, PyObject *row) {
    tl_peer_seg seg;
    if (row_from_object(row, &seg) < 0 || do_segment(r, &seg) < 0) return NULL;
    return PyLong_FromLongLong(tl_wshark_current(r->ws));
}

static PyObject *py_opened(PeerReplay *r, PyObject *args) {
    long long conn_id;
    PyObject *row;
    int sender;
    tl_peer_seg seg;
    if (!PyArg_ParseTuple(args, "LOp:opened", &conn_id, &row, &sender)) return NULL;
    if (row_from_object(row, &seg) < 0 || do_opened(r, conn_id, &seg, sender) < 0) return NULL;
    Py_RETURN_NONE;
}

static PyObject *py_feed(PeerReplay *r, PyObject *args) {
    long long conn_id;
    PyObject *row;
    int from_client;
    tl_peer_seg seg;
    if (!PyArg_ParseTuple(args, "LOp:feed", &conn_id, &row, &from_client)) return NULL;
    if (row_from_object(row, &seg) < 0 || do_feed(r, conn_id, &seg, from_client) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *py_forget(PeerReplay *r, PyObject *arg) {
    long long conn_id = PyLong_AsLongLong(arg);
    if (conn_id == -1 && PyErr_Occurred()) return NULL;
    inst_slot *s = inst_find(r, conn_id);
    if (s->p != NULL) inst_remove(r, s);
    Py_RETURN_NONE;
}

/* ------------------------------------------------------------------ summary */
static PyObject *record_tuple(const tl_zeek_record *z) {
    return Py_BuildValue("(LsLLLss#LL)", (long long)z->start_ns,
                         z->orig_is_client ? "client" : "server", (long long)z->duration_ns,
                         (long long)z->orig_bytes, (long long)z->resp_bytes,
                         TL_ZC_NAMES[z->conn_state], z->history ? z->history : "",
                         (Py_ssize_t)z->history_len, (long long)z->orig_pkts,
                         (long long)z->resp_pkts);
}

PyObject *tl_peers_summary_tuple(const tl_peers *p) {
    if (p == NULL) return Py_NewRef(Py_None);
    size_t n = tl_peers_zeek_count(p);
    tl_zeek_record first;
    tl_peers_zeek_record(p, 0, &first);
    PyObject *later = PyTuple_New((Py_ssize_t)(n - 1));
    if (later == NULL) return NULL;
    for (size_t i = 1; i < n; i++) {
        tl_zeek_record z;
        tl_peers_zeek_record(p, i, &z);
        PyObject *t = record_tuple(&z);
        if (t == NULL) {
            Py_DECREF(later);
            return NULL;
        }
        PyTuple_SET_ITEM(later, (Py_ssize_t)(i - 1), t);
    }
    int64_t *streams = PyMem_Malloc((p->nstreams + 1) * sizeof(int64_t));
    if (streams == NULL) {
        Py_DECREF(later);
        return PyErr_NoMemory();
    }
    size_t ns = tl_peers_streams(p, streams);
    PyObject *list = PyList_New((Py_ssize_t)ns);
    for (size_t i = 0; list != NULL && i < ns; i++) {
        PyObject *x = PyLong_FromLongLong(streams[i]);
        if (x == NULL) Py_CLEAR(list);
        else PyList_SET_ITEM(list, (Py_ssize_t)i, x);
    }
    PyMem_Free(streams);
    if (list == NULL) {
        Py_DECREF(later);
        return NULL;
    }
    return Py_BuildValue("(ss#sLLLLNsN)", TL_ZC_NAMES[first.conn_state],
                         first.history ? first.history : "", (Py_ssize_t)first.history_len,
                         first.orig_is_client ? "client" : "server",
                         (long long)first.orig_bytes, (long long)first.resp_bytes,
                         (long long)first.duration_ns, (long long)p->first_stream, list,
                         TL_SURI_NAMES[p->suri.state], later);
}

static PyObject *py_summary(PeerReplay *r, PyObject *arg) {
    long long conn_id = PyLong_AsLongLong(arg);
    if (conn_id == -1 && PyErr_Occurred()) return NULL;
    tl_peers *p = instance(r, conn_id);
    if (p == NULL) return NULL;
    return tl_peers_summary_tuple(p);
}

/* ------------------------------------------------------------------ play */
typedef struct {
    Py_buffer views[TL_PEER_SEG_FIELDS];
    int held;
    Py_ssize_t n;
} columns_t;

static void columns_release(columns_t *c) {
    for (int i = 0; i < c->held; i++) PyBuffer_Release(&c->views[i]);
    c->held = 0;
}

static int int64_view(PyObject *obj, Py_buffer *view, const char *what) {
    if (PyObject_GetBuffer(obj, view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) return -1;
    const char *f = view->format ? view->format : "B";
    if (f[0] == '<' || f[0] == '=' || f[0] == '@') f++;
    if (view->itemsize != 8 || view->ndim > 1 || !(f[0] == 'q' || f[0] == 'l') || f[1]) {
        PyBuffer_Release(view);
        PyErr_Format(PyExc_TypeError, "PeerReplay.play: %s must be a 1-D int64 buffer", what);
        return -1;
    }
    return 0;
}

static int columns_get(PyObject *seq, columns_t *c) {
    c->held = 0;
    PyObject *fast = PySequence_Fast(seq, "columns: the 15 Batch columns");
    if (fast == NULL) return -1;
    if (PySequence_Fast_GET_SIZE(fast) != TL_PEER_SEG_FIELDS) {
        Py_DECREF(fast);
        PyErr_SetString(PyExc_ValueError, "columns: the 15 Batch columns");
        return -1;
    }
    for (int i = 0; i < TL_PEER_SEG_FIELDS; i++) {
        if (int64_view(PySequence_Fast_GET_ITEM(fast, i), &c->views[i], "a column") < 0) {
            Py_DECREF(fast);
            columns_release(c);
            return -1;
        }
        c->held++;
        Py_ssize_t n = c->views[i].len / 8;
        if (i == 0) c->n = n;
        else if (n != c->n) {
            Py_DECREF(fast);
            columns_release(c);
            PyErr_SetString(PyExc_ValueError, "columns of different lengths");
            return -1;
        }
    }
    Py_DECREF(fast);
    return 0;
}

static int64_t at(const Py_buffer *v, Py_ssize_t i) {
    int64_t x;
    memcpy(&x, (const char *)v->buf + i * 8, 8);
    return x;
}

static int row_at(const columns_t *c, int64_t row, tl_peer_seg *out) {
    if (row < 0 || row >= c->n) {
        PyErr_Format(PyExc_IndexError, "PeerReplay.play: row %lld of %zd", (long long)row,
                     c->n);
        return -1;
    }
    int64_t v[TL_PEER_SEG_FIELDS];
    for (int i = 0; i < TL_PEER_SEG_FIELDS; i++) v[i] = at(&c->views[i], (Py_ssize_t)row);
    memcpy(out, v, sizeof v);
    return check_seg(out);
}

static PyObject *py_play(PeerReplay *r, PyObject *args) {
    PyObject *cols_obj, *ops_obj;
    if (!PyArg_ParseTuple(args, "OO:play", &cols_obj, &ops_obj)) return NULL;
    columns_t cols;
    Py_buffer ops;
    if (columns_get(cols_obj, &cols) < 0) return NULL;
    if (int64_view(ops_obj, &ops, "ops") < 0) {
        columns_release(&cols);
        return NULL;
    }
    int rc = 0;
    Py_ssize_t nops = ops.len / 8;
    if (nops % 4) {
        PyErr_SetString(PyExc_ValueError, "ops: (op, row, conn_id, flag) quads");
        rc = -1;
    }
    int64_t last_row = -1;
    tl_peer_seg seg;
    /* the tcp.stream of each `segment` op, returned */
    PyObject *out = rc == 0 ? PyByteArray_FromStringAndSize(NULL, 0) : NULL;
    Py_ssize_t nout = 0;
    if (out == NULL) rc = -1;
    for (Py_ssize_t i = 0; rc == 0 && i + 4 <= nops; i += 4) {
        int64_t op = at(&ops, i), row = at(&ops, i + 1), conn_id = at(&ops, i + 2);
        int flag = at(&ops, i + 3) != 0;
        if (row != last_row) { /* the calls of one segment share its row */
            if (row_at(&cols, row, &seg) < 0) {
                rc = -1;
                break;
            }
            last_row = row;
        }
        if (op == 0) {
            if ((rc = do_segment(r, &seg)) == 0) {
                int64_t stream = tl_wshark_current(r->ws);
                if (nout == PyByteArray_GET_SIZE(out) / 8
                    && PyByteArray_Resize(out, (nout ? nout * 2 : 64) * 8) < 0) {
                    rc = -1;
                    break;
                }
                memcpy(PyByteArray_AS_STRING(out) + nout * 8, &stream, 8);
                nout++;
            }
        }
        else if (op == 1) rc = do_opened(r, conn_id, &seg, flag);
        else if (op == 2) rc = do_feed(r, conn_id, &seg, flag);
        else {
            PyErr_Format(PyExc_ValueError, "ops: unknown op %lld", (long long)op);
            rc = -1;
        }
    }
    PyBuffer_Release(&ops);
    columns_release(&cols);
    if (rc == 0 && PyByteArray_Resize(out, nout * 8) < 0) rc = -1;
    if (rc < 0) {
        Py_XDECREF(out);
        return NULL;
    }
    return out;
}

/* ------------------------------------------------------------------ constants */
static PyObject *names(const char *const *v, int n) {
    PyObject *t = PyTuple_New(n);
    for (int i = 0; t != NULL && i < n; i++) {
        PyObject *s = PyUnicode_FromString(v[i]);
        if (s == NULL) Py_CLEAR(t);
        else PyTuple_SET_ITEM(t, i, s);
    }
    return t;
}

static PyObject *py_constants(PyObject *cls, PyObject *unused) {
    PyObject *ports = PyFrozenSet_New(NULL);
    for (size_t i = 0; ports != NULL && i < TL_Z_N_LIKELY_SERVER_PORTS; i++) {
        PyObject *x = PyLong_FromLong(TL_Z_LIKELY_SERVER_PORTS[i]);
        if (x == NULL || PySet_Add(ports, x) < 0) Py_CLEAR(ports);
        Py_XDECREF(x);
    }
    if (ports == NULL) return NULL;
    return Py_BuildValue(
        "{sNsNsNsNsisLsL}", "zeek_states", names(TL_Z_STATE_NAMES, TL_Z_N_STATE),
        "conn_states", names(TL_ZC_NAMES, TL_ZC_N), "suricata_states",
        names(TL_SURI_NAMES, TL_SURI_N), "likely_server_ports", ports,
        "too_large_seq_delta", TL_Z_TOO_LARGE_SEQ_DELTA, "tcp_inactivity_timeout_ns",
        (long long)TL_Z_TCP_INACTIVITY_TIMEOUT_NS, "handshake_inactivity_timeout_ns",
        (long long)TL_Z_HANDSHAKE_INACTIVITY_TIMEOUT_NS);
}

/* ------------------------------------------------------------------ the type */
static PyObject *replay_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwds, ":PeerReplay", kwlist)) return NULL;
    PeerReplay *r = (PeerReplay *)type->tp_alloc(type, 0);
    if (r == NULL) return NULL;
    r->ws = tl_wshark_new();
    r->mask = 63;
    r->slots = PyMem_Calloc(r->mask + 1, sizeof(inst_slot));
    if (r->ws == NULL || r->slots == NULL) {
        Py_DECREF(r);
        return PyErr_NoMemory();
    }
    return (PyObject *)r;
}

static void replay_dealloc(PeerReplay *r) {
    if (r->slots != NULL) {
        for (size_t i = 0; i <= r->mask; i++) tl_peers_free(r->slots[i].p);
        PyMem_Free(r->slots);
    }
    tl_wshark_free(r->ws);
    Py_TYPE(r)->tp_free((PyObject *)r);
}

static PyObject *get_current(PeerReplay *r, void *unused) {
    return PyLong_FromLongLong(tl_wshark_current(r->ws));
}

static PyObject *get_streams(PeerReplay *r, void *unused) {
    return PyLong_FromLongLong(tl_wshark_count(r->ws));
}

static PyObject *get_open(PeerReplay *r, void *unused) {
    return PyLong_FromSize_t(r->used);
}

static PyMethodDef replay_methods[] = {
    {"segment", (PyCFunction)py_segment, METH_O,
     "segment(row) -> tcp.stream: Wireshark numbers every segment (PeerObserver.segment)."},
    {"opened", (PyCFunction)py_opened, METH_VARARGS,
     "opened(conn_id, row, sender_is_client): the row starts instance conn_id."},
    {"feed", (PyCFunction)py_feed, METH_VARARGS,
     "feed(conn_id, row, from_client): one segment of instance conn_id (Peers.feed)."},
    {"summary", (PyCFunction)py_summary, METH_O,
     "summary(conn_id) -> the PeerSummary fields as a tuple (zeek_later as tuples)."},
    {"forget", (PyCFunction)py_forget, METH_O, "forget(conn_id): free the instance."},
    {"play", (PyCFunction)py_play, METH_VARARGS,
     "play(columns, ops) -> bytearray: (op, row, conn_id, flag) quads over the 15 Batch "
     "columns; op 0 segment, 1 opened, 2 feed. Returns each segment op's tcp.stream "
     "(int64s)."},
    {"constants", (PyCFunction)py_constants, METH_NOARGS | METH_STATIC,
     "The replays' constants (names, ports, timeouts), to compare with tcplife.peers."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef replay_getset[] = {
    {"current", (getter)get_current, NULL, "the tcp.stream of the segment fed last", NULL},
    {"streams", (getter)get_streams, NULL, "tcp.streams numbered so far", NULL},
    {"open", (getter)get_open, NULL, "instances held (opened, not forgotten)", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject PeerReplayType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "tcplife._engine.PeerReplay",
    .tp_basicsize = sizeof(PeerReplay),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "The Zeek, Suricata and Wireshark replays of tcplife.peers, in C "
              "(PeerObserver's calls: segment, opened, feed; summary).",
    .tp_new = replay_new,
    .tp_dealloc = (destructor)replay_dealloc,
    .tp_methods = replay_methods,
    .tp_getset = replay_getset,
};

int tl_peers_register(PyObject *module) {
    if (PyType_Ready(&PeerReplayType) < 0) return -1;
    Py_INCREF(&PeerReplayType);
    if (PyModule_AddObject(module, "PeerReplay", (PyObject *)&PeerReplayType) < 0) {
        Py_DECREF(&PeerReplayType);
        return -1;
    }
    return 0;
}
