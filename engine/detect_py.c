/* `tcplife._engine.Detectors`: the compiled detectors (detect.h) driven from Python, for
 * the tests that hold them to tcplife/detect and for measuring them
 * (tcplife/detect/cdetect.py makes the tuples from the core's events and back).
 *
 *   Detectors(options, fold_every=4096)   options: the 13 `Options` values in TL_OPT_ order
 *   events(list) -> (anomalies, settled)  `DetectorSet.events`; each item one of
 *       (0, conn_id, addr, port, tid, ts_ns, side, from, to, ev, text, frame, inferred)
 *                                          a Transition (ev None: -1 is refused, give None;
 *                                          text None: the event's name)
 *       (1, record, transitions, notes, at_end)   a ConnectionEnded
 *       (2, ts_ns)  ClockAdvanced;  (3, ts_ns)  InputEnded;  None: any other event
 *     record: (conn_id, client_addr, client_port, server_addr, server_port, first_ts_ns,
 *       last_ts_ns, first_frame, last_frame, packets, client_packets, server_packets,
 *       client_state, server_state, client_initial_state, server_initial_state,
 *       client_eventual_state, server_eventual_state, close_kind, role_inferred, mid_stream,
 *       client_last_ts_ns, server_last_ts_ns, client_last_payload_ns, server_last_payload_ns)
 *     a transition: (tid, ts_ns, side, from, to, ev, text, frame, inferred)
 *     a note: (ts_ns, frame, side, name, detail, facts_kind, facts) with facts None or
 *       RstSent (state, unread, ack, fin_sent, zero_window, probes, probe_since),
 *       FinRtx (state, hole), AckLost (kind,), Retracted (kind, undone, no_socket),
 *       PortReuse (old_conn_id, ((side, state), ...))
 *     states, events, odd names, close kinds, sides as their tables.h numbers; None where
 *     Python has None. anomalies: (conn_id, ts_ns, side, kind, frame, detail, severity,
 *     confidence, frames, claims) with claims ((side, state, ts_ns), ...); settled: one
 *     (position in the list, client_state, server_state, client_eventual_state,
 *     server_eventual_state) per ConnectionEnded at the end of input
 *   ended() -> anomalies                  `DetectorSet.ended`
 *   capture_end_ns, input_ended           the running capture end
 *   constants() (static)                  the detectors' constants (cgen.detect_tables())
 *   detectors (static)                    the detectors' names, in the order they judge */
#include "engine.h"

#include <string.h>

#include "detect.h"

typedef struct {
    PyObject_HEAD
    tl_detect *d;
    tl_det_transition *trans;
    size_t captrans;
    tl_det_note *notes;
    size_t capnotes;
    tl_det_socket *sockets;
    size_t capsockets;
} Detectors;

static int grow(void **buf, size_t *cap, size_t need, size_t size) {
    if (need <= *cap) return 0;
    size_t n = *cap ? *cap : 16;
    while (n < need) {
        if (n > PY_SSIZE_T_MAX / 2) return -1;
        n *= 2;
    }
    if (n > PY_SSIZE_T_MAX / size) return -1;
    void *b = PyMem_Realloc(*buf, n * size);
    if (b == NULL) return -1;
    *buf = b;
    *cap = n;
    return 0;
}

/* ------------------------------------------------------------------ values in */
static int bad(const char *what) {
    PyErr_Format(PyExc_ValueError, "Detectors: %s", what);
    return -1;
}

static int get_i64(PyObject *o, int64_t *out, const char *what) {
    if (!PyLong_Check(o)) {
        PyErr_Format(PyExc_TypeError, "Detectors: %s must be an int", what);
        return -1;
    }
    long long v = PyLong_AsLongLong(o);
    if (v == -1 && PyErr_Occurred()) return -1;
    if (v == INT64_MIN) return bad("an int of -2**63 is not taken");
    *out = (int64_t)v;
    return 0;
}

static int get_opt_i64(PyObject *o, int64_t *out, const char *what) {
    if (o == Py_None) {
        *out = TL_NONE;
        return 0;
    }
    return get_i64(o, out, what);
}

static int check_ts(int64_t v, const char *what) {
    if (v != TL_NONE && (v < -TL_DET_TS_LIMIT || v > TL_DET_TS_LIMIT)) {
        PyErr_Format(PyExc_ValueError, "Detectors: %s beyond +-(2**62 - 1)", what);
        return -1;
    }
    return 0;
}

static int get_ts(PyObject *o, int64_t *out, const char *what) {
    return get_i64(o, out, what) < 0 ? -1 : check_ts(*out, what);
}

static int get_opt_ts(PyObject *o, int64_t *out, const char *what) {
    return get_opt_i64(o, out, what) < 0 ? -1 : check_ts(*out, what);
}

static int get_code(PyObject *o, int n, int *out, const char *what) {
    int64_t v;
    if (get_i64(o, &v, what) < 0) return -1;
    if (v < 0 || v >= n) {
        PyErr_Format(PyExc_ValueError, "Detectors: %s %lld is not a valid code", what,
                     (long long)v);
        return -1;
    }
    *out = (int)v;
    return 0;
}

static int get_opt_code(PyObject *o, int n, int *out, const char *what) {
    if (o == Py_None) {
        *out = -1;
        return 0;
    }
    return get_code(o, n, out, what);
}

static int get_bool(PyObject *o, int *out) {
    int v = PyObject_IsTrue(o);
    if (v < 0) return -1;
    *out = v;
    return 0;
}

static int get_text(PyObject *o, tl_text *out, const char *what) {
    if (!PyUnicode_Check(o)) {
        PyErr_Format(PyExc_TypeError, "Detectors: %s must be a str", what);
        return -1;
    }
    Py_ssize_t n;
    const char *s = PyUnicode_AsUTF8AndSize(o, &n);
    if (s == NULL) return -1;
    out->s = s;
    out->n = (size_t)n;
    return 0;
}

static int get_opt_text(PyObject *o, tl_text *out, const char *what) {
    if (o == Py_None) {
        out->s = NULL;
        out->n = 0;
        return 0;
    }
    return get_text(o, out, what);
}

/* a tuple or list of exactly n items (n < 0: any number): *fast a new reference to it
 * (NULL with an exception when it is not one); the items' array, which is NULL for an
 * empty list: test *fast, not the array */
static PyObject **items(PyObject *o, Py_ssize_t n, PyObject **fast, const char *what) {
    *fast = PySequence_Fast(o, what);
    if (*fast == NULL) return NULL;
    if (n >= 0 && PySequence_Fast_GET_SIZE(*fast) != n) {
        PyErr_Format(PyExc_ValueError, "Detectors: %s has %zd items, not %zd", what,
                     PySequence_Fast_GET_SIZE(*fast), n);
        Py_CLEAR(*fast);
        return NULL;
    }
    return PySequence_Fast_ITEMS(*fast);
}

/* items 0..8: (tid, ts_ns, side, from, to, ev, text, frame, inferred) */
static int parse_transition(PyObject *const *v, tl_det_transition *t) {
    if (get_i64(v[0], &t->tid, "tid") < 0 || get_ts(v[1], &t->ts_ns, "ts_ns") < 0 ||
        get_code(v[2], 2, &t->side, "side") < 0 ||
        get_code(v[3], TL_N_STATE, &t->from_state, "from_state") < 0 ||
        get_code(v[4], TL_N_STATE, &t->to_state, "to_state") < 0 ||
        get_opt_code(v[5], TL_N_EV, &t->ev, "ev") < 0 ||
        get_opt_text(v[6], &t->text, "event text") < 0 ||
        get_opt_i64(v[7], &t->frame, "frame") < 0 || get_bool(v[8], &t->inferred) < 0)
        return -1;
    if (t->ev < 0 && t->text.s == NULL) return bad("a transition without ev needs its text");
    return 0;
}

static int parse_record(PyObject *o, tl_det_record *r, PyObject **fast) {
    PyObject **v = items(o, 25, fast, "a record");
    if (v == NULL) return -1;
    if (get_i64(v[0], &r->conn_id, "conn_id") < 0 ||
        get_text(v[1], &r->client_addr, "client_addr") < 0 ||
        get_i64(v[2], &r->client_port, "client_port") < 0 ||
        get_text(v[3], &r->server_addr, "server_addr") < 0 ||
        get_i64(v[4], &r->server_port, "server_port") < 0 ||
        get_ts(v[5], &r->first_ts_ns, "first_ts_ns") < 0 ||
        get_ts(v[6], &r->last_ts_ns, "last_ts_ns") < 0 ||
        get_opt_i64(v[7], &r->first_frame, "first_frame") < 0 ||
        get_opt_i64(v[8], &r->last_frame, "last_frame") < 0 ||
        get_i64(v[9], &r->packets, "packets") < 0 ||
        get_i64(v[10], &r->client_packets, "client_packets") < 0 ||
        get_i64(v[11], &r->server_packets, "server_packets") < 0 ||
        get_code(v[12], TL_N_STATE, &r->client_state, "client_state") < 0 ||
        get_code(v[13], TL_N_STATE, &r->server_state, "server_state") < 0 ||
        get_code(v[14], TL_N_STATE, &r->client_initial_state, "client_initial_state") < 0 ||
        get_code(v[15], TL_N_STATE, &r->server_initial_state, "server_initial_state") < 0 ||
        get_opt_code(v[16], TL_N_STATE, &r->client_eventual_state, "client_eventual_state") < 0 ||
        get_opt_code(v[17], TL_N_STATE, &r->server_eventual_state, "server_eventual_state") < 0 ||
        get_code(v[18], TL_N_CLOSE, &r->close_kind, "close_kind") < 0 ||
        get_bool(v[19], &r->role_inferred) < 0 || get_bool(v[20], &r->mid_stream) < 0 ||
        get_opt_ts(v[21], &r->client_last_ts_ns, "client_last_ts_ns") < 0 ||
        get_opt_ts(v[22], &r->server_last_ts_ns, "server_last_ts_ns") < 0 ||
        get_opt_ts(v[23], &r->client_last_payload_ns, "client_last_payload_ns") < 0 ||
        get_opt_ts(v[24], &r->server_last_payload_ns, "server_last_payload_ns") < 0)
        return -1;
    return 0;
}

/* a note's facts; the PortReuse sockets go to self->sockets from *nsockets on */
static int parse_facts(Detectors *self, PyObject *o, tl_det_note *n, size_t *nsockets) {
    PyObject *fast = NULL, **v;
    int rc = -1;
    switch (n->facts) {
    case TL_FACTS_NONE:
        return o == Py_None ? 0 : bad("facts without a kind");
    case TL_FACTS_RST_SENT:
        if ((v = items(o, 7, &fast, "RstSent facts")) == NULL) return -1;
        rc = (get_code(v[0], TL_N_STATE, &n->state, "RstSent.state") < 0 ||
              get_bool(v[1], &n->unread) < 0 || get_bool(v[2], &n->ack) < 0 ||
              get_bool(v[3], &n->fin_sent) < 0 || get_bool(v[4], &n->zero_window) < 0 ||
              get_i64(v[5], &n->probes, "RstSent.probes") < 0 ||
              get_opt_ts(v[6], &n->probe_since, "RstSent.probe_since") < 0) ? -1 : 0;
        break;
    case TL_FACTS_FIN_RTX:
        if ((v = items(o, 2, &fast, "FinRtx facts")) == NULL) return -1;
        rc = (get_code(v[0], TL_N_STATE, &n->state, "FinRtx.state") < 0 ||
              get_bool(v[1], &n->hole) < 0) ? -1 : 0;
        break;
    case TL_FACTS_ACK_LOST:
        if ((v = items(o, 1, &fast, "AckLost facts")) == NULL) return -1;
        rc = get_text(v[0], &n->kind, "AckLost.kind");
        break;
    case TL_FACTS_RETRACTED:
        if ((v = items(o, 3, &fast, "Retracted facts")) == NULL) return -1;
        rc = (get_text(v[0], &n->kind, "Retracted.kind") < 0 ||
              get_i64(v[1], &n->undone, "Retracted.undone") < 0 ||
              get_bool(v[2], &n->no_socket) < 0) ? -1 : 0;
        break;
    case TL_FACTS_PORT_REUSE: {
        PyObject *sfast = NULL;
        if ((v = items(o, 2, &fast, "PortReuse facts")) == NULL) return -1;
        if (get_i64(v[0], &n->old_conn_id, "PortReuse.old_conn_id") < 0) break;
        PyObject **s = items(v[1], -1, &sfast, "PortReuse.sockets");
        if (sfast == NULL) break;
        Py_ssize_t m = PySequence_Fast_GET_SIZE(sfast);
        if (grow((void **)&self->sockets, &self->capsockets, *nsockets + (size_t)m,
                 sizeof(tl_det_socket)) < 0) {
            Py_DECREF(sfast);
            PyErr_NoMemory();
            break;
        }
        rc = 0;
        for (Py_ssize_t i = 0; i < m && rc == 0; i++) {
            PyObject *pfast = NULL, **p = items(s[i], 2, &pfast, "a PortReuse socket");
            tl_det_socket *x = &self->sockets[*nsockets + (size_t)i];
            if (p == NULL || get_code(p[0], 2, &x->side, "socket side") < 0 ||
                get_code(p[1], TL_N_STATE, &x->state, "socket state") < 0)
                rc = -1;
            Py_XDECREF(pfast);
        }
        if (rc == 0) {
            n->nsockets = (size_t)m;
            *nsockets += (size_t)m;
        }
        Py_DECREF(sfast);
        break;
    }
    default:
        return bad("unknown facts kind");
    }
    Py_XDECREF(fast);
    return rc;
}

static int parse_note(Detectors *self, PyObject *o, tl_det_note *n, size_t *nsockets) {
    PyObject *fast = NULL, **v = items(o, 7, &fast, "a note");
    if (v == NULL) return -1;
    memset(n, 0, sizeof *n);
    n->probe_since = TL_NONE;
    int rc = (get_ts(v[0], &n->ts_ns, "note ts_ns") < 0 ||
              get_opt_i64(v[1], &n->frame, "note frame") < 0 ||
              get_code(v[2], 2, &n->side, "note side") < 0 ||
              get_code(v[3], TL_N_ODD, &n->name, "note name") < 0 ||
              get_text(v[4], &n->detail, "note detail") < 0 ||
              get_code(v[5], TL_FACTS_PORT_REUSE + 1, &n->facts, "facts kind") < 0 ||
              parse_facts(self, v[6], n, nsockets) < 0) ? -1 : 0;
    Py_DECREF(fast);
    return rc;
}

/* ------------------------------------------------------------------ values out */
static PyObject *opt_i64(int64_t v) {
    if (v == TL_NONE) Py_RETURN_NONE;
    return PyLong_FromLongLong(v);
}

static int fail_rc(Detectors *self, int rc) {
    if (rc == TL_DET_NOMEM) PyErr_NoMemory();
    else {
        const char *e = tl_detect_error(self->d);
        PyErr_Format(PyExc_ValueError, "Detectors: %s", e ? e : "invalid input");
    }
    return -1;
}

PyObject *tl_anomaly_tuple(const tl_anomalies *a, size_t i) {
    const tl_anomaly *x = &a->rows[i];
    PyObject *frames = PyTuple_New((Py_ssize_t)x->nframes);
    PyObject *claims = PyTuple_New((Py_ssize_t)x->nclaims);
    PyObject *row = NULL;
    if (frames != NULL && claims != NULL) {
        for (size_t k = 0; k < x->nframes && frames; k++) {
            PyObject *f = PyLong_FromLongLong(a->frames[x->frames + k]);
            if (f == NULL) Py_CLEAR(frames);
            else PyTuple_SET_ITEM(frames, (Py_ssize_t)k, f);
        }
        for (size_t k = 0; k < x->nclaims && claims; k++) {
            const tl_claim *c = &a->claims[x->claims + k];
            PyObject *t = Py_BuildValue("(iiL)", c->side, c->state, (long long)c->ts_ns);
            if (t == NULL) Py_CLEAR(claims);
            else PyTuple_SET_ITEM(claims, (Py_ssize_t)k, t);
        }
    }
    if (frames != NULL && claims != NULL)
        row = Py_BuildValue("(LLiiNs#iiOO)", (long long)x->conn_id, (long long)x->ts_ns,
                            x->side, x->kind, opt_i64(x->frame), a->text + x->detail,
                            (Py_ssize_t)x->detail_len, x->severity, x->confidence, frames,
                            claims);
    Py_XDECREF(frames);
    Py_XDECREF(claims);
    return row;
}

/* the buffer's anomalies appended to list as tuples; the buffer emptied */
static int drain(Detectors *self, PyObject *list) {
    tl_anomalies *a = tl_detect_out(self->d);
    int rc = 0;
    for (size_t i = 0; i < a->n && rc == 0; i++) {
        PyObject *row = tl_anomaly_tuple(a, i);
        if (row == NULL || PyList_Append(list, row) < 0) rc = -1;
        Py_XDECREF(row);
    }
    tl_anomalies_clear(a);
    return rc;
}

/* ------------------------------------------------------------------ the calls */
static int do_connection(Detectors *self, PyObject *const *v, Py_ssize_t position,
                         PyObject *settled_list) {
    tl_det_connection c;
    PyObject *rfast = NULL, *tfast = NULL, *nfast = NULL, **t, **n;
    int rc = -1;
    memset(&c, 0, sizeof c);
    if (parse_record(v[1], &c.record, &rfast) < 0) goto done;
    t = items(v[2], -1, &tfast, "transitions");
    if (tfast == NULL) goto done;
    n = items(v[3], -1, &nfast, "notes");
    if (nfast == NULL) goto done;
    if (get_bool(v[4], &c.at_end) < 0) goto done;
    Py_ssize_t nt = PySequence_Fast_GET_SIZE(tfast), nn = PySequence_Fast_GET_SIZE(nfast);
    if (grow((void **)&self->trans, &self->captrans, (size_t)nt, sizeof(tl_det_transition)) < 0 ||
        grow((void **)&self->notes, &self->capnotes, (size_t)nn, sizeof(tl_det_note)) < 0) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t i = 0; i < nt; i++) {
        PyObject *fast = NULL, **x = items(t[i], 9, &fast, "a transition");
        if (x == NULL) goto done;
        int bad_one = parse_transition(x, &self->trans[i]);
        Py_DECREF(fast);
        if (bad_one < 0) goto done;
    }
    size_t nsockets = 0;
    for (Py_ssize_t i = 0; i < nn; i++)
        if (parse_note(self, n[i], &self->notes[i], &nsockets) < 0) goto done;
    nsockets = 0; /* the sockets array is final now: point the notes into it */
    for (Py_ssize_t i = 0; i < nn; i++) {
        tl_det_note *note = &self->notes[i];
        if (note->facts == TL_FACTS_PORT_REUSE) {
            note->sockets = self->sockets + nsockets;
            nsockets += note->nsockets;
        }
    }
    c.transitions = self->trans;
    c.ntransitions = (size_t)nt;
    c.notes = self->notes;
    c.nnotes = (size_t)nn;
    tl_det_settled s;
    int r = tl_detect_connection(self->d, &c, &s);
    if (r != TL_DET_OK) {
        fail_rc(self, r);
        goto done;
    }
    if (s.settled) {
        PyObject *row = Py_BuildValue("(niiii)", position, s.client_state, s.server_state,
                                      s.client_eventual_state, s.server_eventual_state);
        if (row == NULL || PyList_Append(settled_list, row) < 0) {
            Py_XDECREF(row);
            goto done;
        }
        Py_DECREF(row);
    }
    rc = 0;
done:
    Py_XDECREF(rfast);
    Py_XDECREF(tfast);
    Py_XDECREF(nfast);
    return rc;
}

static int do_transition(Detectors *self, PyObject *const *v) {
    tl_det_stream_transition st;
    if (get_i64(v[1], &st.conn_id, "conn_id") < 0 || get_text(v[2], &st.addr, "addr") < 0 ||
        get_i64(v[3], &st.port, "port") < 0 || parse_transition(v + 4, &st.t) < 0)
        return -1;
    int r = tl_detect_transition(self->d, &st);
    return r == TL_DET_OK ? 0 : fail_rc(self, r);
}

static PyObject *py_events(Detectors *self, PyObject *arg) {
    PyObject *fast = PySequence_Fast(arg, "events takes a list of event tuples");
    if (fast == NULL) return NULL;
    PyObject *anomalies = PyList_New(0), *settled = PyList_New(0);
    if (anomalies == NULL || settled == NULL) goto fail;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(fast);
    PyObject **evs = PySequence_Fast_ITEMS(fast);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *ev = evs[i];
        if (ev == Py_None) continue;
        if (!PyTuple_Check(ev) || PyTuple_GET_SIZE(ev) < 2) {
            bad("an event is a tuple (kind, ...)");
            goto fail;
        }
        PyObject *const *v = PySequence_Fast_ITEMS(ev);
        Py_ssize_t size = PyTuple_GET_SIZE(ev);
        int kind, rc = -1;
        if (get_code(v[0], 4, &kind, "event kind") < 0) goto fail;
        if (kind == 0) {
            rc = size == 13 ? do_transition(self, v) : bad("a transition event has 13 items");
        } else if (kind == 1) {
            rc = size == 5 ? do_connection(self, v, i, settled)
                           : bad("a connection event has 5 items");
        } else {
            int64_t ts;
            rc = size == 2 ? get_ts(v[1], &ts, "ts_ns") : bad("a clock event has 2 items");
            if (rc == 0) tl_detect_clock(self->d, ts, kind == 3);
        }
        if (rc < 0 || drain(self, anomalies) < 0) goto fail;
    }
    Py_DECREF(fast);
    return Py_BuildValue("(NN)", anomalies, settled);
fail:
    tl_anomalies_clear(tl_detect_out(self->d));
    Py_DECREF(fast);
    Py_XDECREF(anomalies);
    Py_XDECREF(settled);
    return NULL;
}

static PyObject *py_ended(Detectors *self, PyObject *unused) {
    PyObject *anomalies = PyList_New(0);
    if (anomalies == NULL) return NULL;
    int r = tl_detect_finish(self->d);
    if (r != TL_DET_OK) {
        fail_rc(self, r);
        tl_anomalies_clear(tl_detect_out(self->d));
        Py_DECREF(anomalies);
        return NULL;
    }
    if (drain(self, anomalies) < 0) {
        Py_DECREF(anomalies);
        return NULL;
    }
    return anomalies;
}

static PyObject *py_constants(PyObject *cls, PyObject *unused) {
    PyObject *sev = PyTuple_New(TL_N_ANOMALY);
    if (sev == NULL) return NULL;
    for (int i = 0; i < TL_N_ANOMALY; i++) {
        PyObject *x = PyLong_FromLong(TL_DEFAULT_SEVERITY[i]);
        if (x == NULL) {
            Py_DECREF(sev);
            return NULL;
        }
        PyTuple_SET_ITEM(sev, i, x);
    }
    return Py_BuildValue("{sNsL}", "default_severity", sev, "FOREVER", (long long)TL_DET_FOREVER);
}

static PyObject *py_detectors(PyObject *cls, PyObject *unused) {
    PyObject *t = PyTuple_New(TL_DET_N_DETECTORS);
    if (t == NULL) return NULL;
    for (int i = 0; i < TL_DET_N_DETECTORS; i++) {
        PyObject *s = PyUnicode_FromString(TL_DET_DETECTORS[i]);
        if (s == NULL) {
            Py_DECREF(t);
            return NULL;
        }
        PyTuple_SET_ITEM(t, i, s);
    }
    return t;
}

static PyObject *get_capture_end(Detectors *self, void *closure) {
    return PyLong_FromLongLong(tl_detect_capture_end(self->d));
}

static PyObject *get_input_ended(Detectors *self, void *closure) {
    return PyBool_FromLong(tl_detect_input_ended(self->d));
}

/* ------------------------------------------------------------------ the type */
static int det_init(Detectors *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"options", "fold_every", NULL};
    PyObject *options;
    long long fold_every = 4096;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O|L:Detectors", kwlist, &options,
                                     &fold_every))
        return -1;
    PyObject *fast = NULL, **v = items(options, TL_N_OPTIONS, &fast, "options");
    if (v == NULL) return -1;
    double opts[TL_N_OPTIONS];
    for (int i = 0; i < TL_N_OPTIONS; i++) {
        opts[i] = PyFloat_AsDouble(v[i]);
        if (opts[i] == -1.0 && PyErr_Occurred()) {
            Py_DECREF(fast);
            return -1;
        }
    }
    Py_DECREF(fast);
    const char *error;
    tl_detect *d = tl_detect_new(opts, &error);
    if (d == NULL) {
        if (error) PyErr_Format(PyExc_ValueError, "Detectors: %s", error);
        else PyErr_NoMemory();
        return -1;
    }
    tl_detect_set_fold_every(d, fold_every);
    tl_detect_free(self->d);
    self->d = d;
    return 0;
}

static void det_dealloc(Detectors *self) {
    tl_detect_free(self->d);
    PyMem_Free(self->trans);
    PyMem_Free(self->notes);
    PyMem_Free(self->sockets);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *det_ready(Detectors *self) {
    if (self->d == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Detectors: not initialised");
        return NULL;
    }
    return (PyObject *)self;
}

static PyObject *py_events_checked(Detectors *self, PyObject *arg) {
    return det_ready(self) ? py_events(self, arg) : NULL;
}

static PyObject *py_ended_checked(Detectors *self, PyObject *unused) {
    return det_ready(self) ? py_ended(self, unused) : NULL;
}

static PyObject *get_capture_end_checked(Detectors *self, void *closure) {
    return det_ready(self) ? get_capture_end(self, closure) : NULL;
}

static PyObject *get_input_ended_checked(Detectors *self, void *closure) {
    return det_ready(self) ? get_input_ended(self, closure) : NULL;
}

static PyMethodDef det_methods[] = {
    {"events", (PyCFunction)py_events_checked, METH_O,
     "The verdicts on the connections a list of event tuples ends, and the settled records."},
    {"ended", (PyCFunction)py_ended_checked, METH_NOARGS,
     "The input is over: the verdicts across connections."},
    {"constants", (PyCFunction)py_constants, METH_NOARGS | METH_STATIC,
     "The detectors' constants as compiled (compare with cgen.detect_tables())."},
    {"detectors", (PyCFunction)py_detectors, METH_NOARGS | METH_STATIC,
     "The detectors, in the order they judge (default_detectors' class names)."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef det_getset[] = {
    {"capture_end_ns", (getter)get_capture_end_checked, NULL, "the running capture end", NULL},
    {"input_ended", (getter)get_input_ended_checked, NULL, "InputEnded was seen", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject DetectorsType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "tcplife._engine.Detectors",
    .tp_basicsize = sizeof(Detectors),
    .tp_dealloc = (destructor)det_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "The compiled anomaly detectors (tcplife.detect.DetectorSet with the default "
              "detectors); see tcplife.detect.cdetect.",
    .tp_methods = det_methods,
    .tp_getset = det_getset,
    .tp_init = (initproc)det_init,
    .tp_new = PyType_GenericNew,
};

int tl_detect_register(PyObject *module) {
    if (PyType_Ready(&DetectorsType) < 0) return -1;
    Py_INCREF(&DetectorsType);
    if (PyModule_AddObject(module, "Detectors", (PyObject *)&DetectorsType) < 0) {
        Py_DECREF(&DetectorsType);
        return -1;
    }
    return 0;
}
