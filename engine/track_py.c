/* `_engine.Tracker`: the engine's tracker (track_core.c, track_rules.c) as a Python type,
 * for tests and for engines that want the events as tuples (tcplife.engines.ctrack turns
 * them into the core's event types). */
#include "engine.h" /* Python.h first: it sets the feature macros */

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "track.h"

static PyTypeObject TL_TrackerType; /* below */

typedef struct {
    PyObject_HEAD
    tl_tracker t;
    int ready;
    PyObject *refused; /* None, or why this tracker stopped (it then refuses every call) */
} TrackerObject;

/* ------------------------------------------------------------------ options */
/* Options.__post_init__: int(round(x * 1e9)); -1 on error */
static int option_ns(PyObject *v, const char *name, int used, int64_t *out) {
    if (PyLong_Check(v)) {
        int overflow = 0;
        long long x = PyLong_AsLongLongAndOverflow(v, &overflow);
        if (x == -1 && PyErr_Occurred()) return -1;
        if (!overflow && x >= 0 && x < TL_OPT_NS_MAX / TL_NS) {
            *out = (int64_t)x * TL_NS;
            return 0;
        }
        if (!overflow && x < 0) goto negative;
        goto too_big;
    }
    if (!PyFloat_Check(v)) {
        PyErr_Format(PyExc_TypeError, "option %s must be an int or a float", name);
        return -1;
    }
    double x = PyFloat_AS_DOUBLE(v);
    if (x != x || x == HUGE_VAL) {
        PyErr_Format(PyExc_ValueError, "option %s is not a finite number", name);
        return -1;
    }
    if (x < 0) goto negative;
    double p = x * 1e9;
    if (!(p < (double)TL_OPT_NS_MAX)) goto too_big;
    int64_t i = (int64_t)p; /* p >= 0: floor */
    double frac = p - (double)i; /* exact: p < 2**61 */
    if (frac > 0.5 || (frac == 0.5 && (i & 1))) i += 1; /* round half to even, as round() */
    *out = i;
    return 0;
negative:
    PyErr_Format(PyExc_ValueError, "option %s must be a non-negative number", name);
    return -1;
too_big:
    if (!used) {
        *out = TL_OPT_NS_MAX;
        return 0;
    }
    PyErr_Format(PyExc_ValueError,
                 "option %s is too large for the compiled tracker (at most 2**61 ns)", name);
    return -1;
}

static int opt_used(int i) {
    return i == TL_OPT_TIME_WAIT || i == TL_OPT_FIN_WAIT_2 || i == TL_OPT_SYN_SENT
           || i == TL_OPT_SYN_RECEIVED || i == TL_OPT_RETRANSMIT || i == TL_OPT_CLOSED_LINGER;
}

static int Tracker_init(TrackerObject *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"options", NULL};
    PyObject *options;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O:Tracker", kwlist, &options)) return -1;
    PyObject *seq = PySequence_Fast(options, "options must be a sequence of numbers");
    if (seq == NULL) return -1;
    if (PySequence_Fast_GET_SIZE(seq) != TL_N_OPTIONS) {
        PyErr_Format(PyExc_ValueError, "options must hold %d numbers (in TL_OPT_* order)",
                     TL_N_OPTIONS);
        Py_DECREF(seq);
        return -1;
    }
    int64_t ns[TL_N_OPTIONS];
    for (int i = 0; i < TL_N_OPTIONS; i++) {
        if (option_ns(PySequence_Fast_GET_ITEM(seq, i), TL_OPTION_NAMES[i], opt_used(i),
                      &ns[i]) < 0) {
            Py_DECREF(seq);
            return -1;
        }
    }
    Py_DECREF(seq);
    if (self->ready) tl_tracker_free(&self->t);
    self->ready = 0;
    if (tl_tracker_init(&self->t, ns) < 0) {
        PyErr_NoMemory();
        return -1;
    }
    self->ready = 1;
    Py_XSETREF(self->refused, Py_NewRef(Py_None));
    return 0;
}

static void Tracker_dealloc(TrackerObject *self) {
    if (self->ready) tl_tracker_free(&self->t);
    Py_XDECREF(self->refused);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* refuse a call on a tracker that stopped */
static int usable(TrackerObject *self) {
    if (!self->ready) {
        PyErr_SetString(PyExc_RuntimeError, "the tracker is not initialised");
        return 0;
    }
    if (self->refused != NULL && self->refused != Py_None) {
        PyErr_Format(PyExc_RuntimeError, "the tracker stopped: %S", self->refused);
        return 0;
    }
    return 1;
}

/* after a call: stop the tracker if it ran out of memory or met what it cannot do */
static int after(TrackerObject *self) {
    tl_sweep(&self->t);
    if (self->t.nomem) {
        Py_XSETREF(self->refused, PyUnicode_FromString("out of memory"));
        PyErr_NoMemory();
        return -1;
    }
    if (self->t.bug != NULL) {
        Py_XSETREF(self->refused, PyUnicode_FromString(self->t.bug));
        PyErr_Format(PyExc_RuntimeError, "the compiled tracker cannot follow: %s", self->t.bug);
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------ feeding */
#define N_COLS 15
static const char *const COLS[N_COLS] = {"frame", "ts_ns", "ip_version", "src", "sport",
                                         "dst", "dport", "seq", "ack", "flags",
                                         "payload_len", "window", "wscale", "tsval", "tsecr"};

static void row(tl_seg *s, const int64_t *v) {
    s->frame = v[0]; s->ts = v[1]; s->ip_version = v[2]; s->src = v[3]; s->sport = v[4];
    s->dst = v[5]; s->dport = v[6]; s->seq = v[7]; s->ack = v[8]; s->flags = v[9];
    s->plen = v[10]; s->window = v[11]; s->wscale = v[12]; s->tsval = v[13]; s->tsecr = v[14];
}

static int int64_format(const char *f) {
    if (f == NULL) return 0;
    if (*f == '<' || *f == '=' || *f == '@') f++;
    return (f[0] == 'l' || f[0] == 'q') && f[1] == '\0';
}

int tl_py_feed_rows(PyObject *args, tl_tracker *t, tl_seg_sink sink, tl_seg_failed failed,
                    void *ctx, PyObject **refused) {
    if (PyTuple_GET_SIZE(args) != N_COLS) {
        PyErr_Format(PyExc_TypeError, "feed takes the %d columns of a Batch", N_COLS);
        return -1;
    }
    Py_buffer view[N_COLS];
    int got = 0, rc = -1;
    Py_ssize_t n = -1;
    for (; got < N_COLS; got++) {
        if (PyObject_GetBuffer(PyTuple_GET_ITEM(args, got), &view[got],
                               PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0)
            goto done;
        if (view[got].itemsize != 8 || !int64_format(view[got].format) || view[got].ndim > 1) {
            got++;
            PyErr_Format(PyExc_TypeError, "column %s must be a 1-d int64 buffer", COLS[got - 1]);
            goto done;
        }
        Py_ssize_t len = view[got].len / 8;
        if (n >= 0 && len != n) {
            got++;
            PyErr_Format(PyExc_ValueError, "column %s has %zd rows, not %zd", COLS[got - 1],
                         len, n);
            goto done;
        }
        n = len;
    }
    const char *base[N_COLS];
    for (int c = 0; c < N_COLS; c++) base[c] = view[c].buf;
    tl_seg s;
    int64_t v[N_COLS];
    /* each row is checked as it is read (one pass over the columns: they are read from
     * memory once). A row out of bounds raises ValueError; if rows of the batch before it
     * were fed, the tracker has changed and stops (refused): fall back for the input. */
    for (Py_ssize_t i = 0; i < n; i++) {
        for (int c = 0; c < N_COLS; c++) memcpy(&v[c], base[c] + 8 * i, 8);
        row(&s, v);
        const char *why = tl_check_row(&s);
        if (why != NULL) {
            if (i > 0) {
                tl_sweep(t);
                Py_XSETREF(*refused, PyUnicode_FromFormat(
                    "a row out of bounds after others were fed (frame %lld): %s",
                    (long long)s.frame, why));
            }
            PyErr_Format(PyExc_ValueError, "row %zd (frame %lld): %s", i, (long long)s.frame,
                         why);
            goto done;
        }
        sink(ctx, &s);
        if (failed(ctx)) break;
    }
    rc = 0;
done:
    for (int c = 0; c < got && c < N_COLS; c++) {
        if (view[c].obj != NULL) PyBuffer_Release(&view[c]);
    }
    return rc;
}

static void tracker_sink(void *ctx, const tl_seg *s) {
    tl_feed(ctx, s);
}

static int tracker_failed(void *ctx) {
    const tl_tracker *t = ctx;
    return t->nomem || t->bug;
}

static PyObject *Tracker_feed(TrackerObject *self, PyObject *args) {
    if (!usable(self)) return NULL;
    if (tl_py_feed_rows(args, &self->t, tracker_sink, tracker_failed, &self->t,
                        &self->refused) < 0 || after(self) < 0)
        return NULL;
    return PyLong_FromSize_t(self->t.out.n);
}

int tl_py_ns(PyObject *v, int64_t *out, int none_ok) {
    if (v == Py_None && none_ok) {
        *out = TL_NONE;
        return 0;
    }
    int overflow = 0;
    long long x = PyLong_AsLongLongAndOverflow(v, &overflow);
    if (x == -1 && PyErr_Occurred()) return -1;
    if (overflow || x < 0 || x >= TL_TS_MAX) {
        PyErr_SetString(PyExc_ValueError, "a time outside [0, 2**62) ns");
        return -1;
    }
    *out = (int64_t)x;
    return 0;
}

static PyObject *Tracker_advance(TrackerObject *self, PyObject *arg) {
    if (!usable(self)) return NULL;
    int64_t now;
    if (tl_py_ns(arg, &now, 0) < 0) return NULL;
    tl_advance(&self->t, now);
    if (after(self) < 0) return NULL;
    return PyLong_FromSize_t(self->t.out.n);
}

static PyObject *Tracker_finish(TrackerObject *self, PyObject *args) {
    PyObject *end = Py_None;
    if (!PyArg_ParseTuple(args, "|O:finish", &end)) return NULL;
    if (!usable(self)) return NULL;
    int64_t end_ns;
    if (tl_py_ns(end, &end_ns, 1) < 0) return NULL;
    tl_finish(&self->t, end_ns);
    if (after(self) < 0) return NULL;
    return PyLong_FromSize_t(self->t.out.n);
}

/* ------------------------------------------------------------------ events as tuples */
static PyObject *opt_int(int64_t v) {
    return v == TL_NONE ? Py_NewRef(Py_None) : PyLong_FromLongLong(v);
}

static PyObject *trans_tuple(const tl_trans *t) {
    char buf[96];
    const char *text = TL_EV_NAMES[t->ev];
    if (t->text == TL_T_FIN_BY_TSECR)
        text = "recv FIN (after its own segment, by TSecr)";
    else if (t->text == TL_T_TW_NEWER_TS)
        text = "recv SYN (new incarnation: newer timestamp)";
    else if (t->text == TL_T_TW_TAKEN_AT) {
        snprintf(buf, sizeof buf, "recv SYN (new incarnation, taken: its SYN-ACK at frame %lld)",
                 (long long)t->text_arg);
        text = buf;
    }
    return Py_BuildValue("(iLLLiLiiisNNi)", TL_E_TRANSITION, (long long)t->tid,
                         (long long)t->conn_id, (long long)t->ts, (int)t->side,
                         (long long)t->addr, (int)t->port, (int)t->from, (int)t->to, text,
                         opt_int(t->frame), PyBool_FromLong(t->inferred), (int)t->ev);
}

static PyObject *facts_tuple(const tl_odd *o) {
    switch (o->facts) {
    case TL_F_RST_SENT:
        return Py_BuildValue("(iiNNNNLN)", TL_F_RST_SENT, (int)o->f_state,
                             PyBool_FromLong(o->f_unread), PyBool_FromLong(o->f_ack),
                             PyBool_FromLong(o->f_fin_sent), PyBool_FromLong(o->f_zero_window),
                             (long long)o->probes, opt_int(o->probe_since));
    case TL_F_FIN_RTX:
        return Py_BuildValue("(iiN)", TL_F_FIN_RTX, (int)o->f_state, PyBool_FromLong(o->f_hole));
    case TL_F_ACK_LOST:
        return Py_BuildValue("(is)", TL_F_ACK_LOST, TL_KIND_NAMES[o->f_kind]);
    case TL_F_RETRACTED:
        return Py_BuildValue("(isLN)", TL_F_RETRACTED, TL_KIND_NAMES[o->f_kind],
                             (long long)o->undone, PyBool_FromLong(o->f_no_socket));
    case TL_F_PORT_REUSE: {
        PyObject *sockets = PyTuple_New(o->n_sockets);
        if (sockets == NULL) return NULL;
        for (int k = 0; k < o->n_sockets; k++) {
            PyObject *x = Py_BuildValue("(ss)", TL_SIDE_NAMES[o->sock_side[k]],
                                        TL_STATE_NAMES[o->sock_state[k]]);
            if (x == NULL) {
                Py_DECREF(sockets);
                return NULL;
            }
            PyTuple_SET_ITEM(sockets, k, x);
        }
        return Py_BuildValue("(iLN)", TL_F_PORT_REUSE, (long long)o->old_conn_id, sockets);
    }
    default:
        return Py_NewRef(Py_None);
    }
}

static PyObject *odd_tuple(const tl_odd *o) {
    PyObject *facts = facts_tuple(o);
    if (facts == NULL) return NULL;
    return Py_BuildValue("(iLLNiisN)", TL_E_ODDITY, (long long)o->conn_id, (long long)o->ts,
                         opt_int(o->frame), (int)o->side, (int)o->name, o->detail, facts);
}

static PyObject *record_tuple(const tl_record *r) {
    return Py_BuildValue("(LiLiLiLLLLLLLLLiiiiiNNNNNNii)", (long long)r->conn_id,
                         (int)r->ip_version, (long long)r->caddr, (int)r->cport,
                         (long long)r->saddr, (int)r->sport, (long long)r->first_ts,
                         (long long)r->last_ts, (long long)r->first_frame,
                         (long long)r->last_frame, (long long)r->packets,
                         (long long)r->cpackets, (long long)r->spackets, (long long)r->cbytes,
                         (long long)r->sbytes, (int)r->cstate, (int)r->sstate, (int)r->cinit,
                         (int)r->sinit, (int)r->close_kind, PyBool_FromLong(r->role_inferred),
                         PyBool_FromLong(r->mid_stream), opt_int(r->c_last_ns),
                         opt_int(r->s_last_ns), opt_int(r->c_last_payload_ns),
                         opt_int(r->s_last_payload_ns), (int)r->c_eventual, (int)r->s_eventual);
}

static PyObject *ended_tuple(const tl_out *o, const tl_ended *d) {
    PyObject *trans = PyList_New((Py_ssize_t)d->trans_n), *notes = NULL;
    if (trans == NULL) return NULL;
    for (size_t i = 0; i < d->trans_n; i++) {
        PyObject *x = trans_tuple(&o->trans[d->trans_off + i]);
        if (x == NULL) goto fail;
        PyList_SET_ITEM(trans, (Py_ssize_t)i, x);
    }
    notes = PyList_New((Py_ssize_t)d->notes_n);
    if (notes == NULL) goto fail;
    for (size_t i = 0; i < d->notes_n; i++) {
        PyObject *x = odd_tuple(&o->odds[d->notes_off + i]);
        if (x == NULL) goto fail;
        PyList_SET_ITEM(notes, (Py_ssize_t)i, x);
    }
    return Py_BuildValue("(iNNNN)", TL_E_ENDED, record_tuple(&d->record), trans, notes,
                         PyBool_FromLong(d->at_end));
fail:
    Py_XDECREF(trans);
    Py_XDECREF(notes);
    return NULL;
}

PyObject *tl_track_event_tuple(const tl_out *o, const tl_event *e) {
    switch (e->type) {
    case TL_E_STARTED: {
        const tl_started *s = &e->u.started;
        return Py_BuildValue("(iLLLLiLiNN)", TL_E_STARTED, (long long)s->conn_id,
                             (long long)s->ts, (long long)s->frame, (long long)s->caddr,
                             (int)s->cport, (long long)s->saddr, (int)s->sport,
                             PyBool_FromLong(s->role_inferred), PyBool_FromLong(s->mid_stream));
    }
    case TL_E_TRANSITION:
        return trans_tuple(&e->u.trans);
    case TL_E_RETRACTION: {
        const tl_retraction *r = &e->u.retraction;
        return Py_BuildValue("(iLLiLNs)", TL_E_RETRACTION, (long long)r->tid,
                             (long long)r->conn_id, (int)r->side, (long long)r->ts,
                             opt_int(r->frame), TL_REASON_TEXTS[r->reason]);
    }
    case TL_E_ODDITY:
        return odd_tuple(&o->odds[e->u.index]);
    case TL_E_ENDED:
        return ended_tuple(o, &o->ends[e->u.index]);
    default:
        return Py_BuildValue("(iL)", e->type, (long long)e->u.ts);
    }
}

static PyObject *Tracker_take(TrackerObject *self, PyObject *unused) {
    if (!self->ready) return PyList_New(0);
    tl_out *o = &self->t.out;
    PyObject *list = PyList_New((Py_ssize_t)o->n);
    if (list == NULL) return NULL;
    for (size_t i = 0; i < o->n; i++) {
        PyObject *x = tl_track_event_tuple(o, &o->ev[i]);
        if (x == NULL) {
            Py_DECREF(list);
            return NULL;
        }
        PyList_SET_ITEM(list, (Py_ssize_t)i, x);
    }
    tl_out_clear(o);
    return list;
}

static PyObject *Tracker_clear(TrackerObject *self, PyObject *unused) {
    if (!self->ready) return PyLong_FromLong(0);
    size_t n = self->t.out.n;
    tl_out_clear(&self->t.out);
    return PyLong_FromSize_t(n);
}

static PyObject *Tracker_open_count(TrackerObject *self, PyObject *unused) {
    return PyLong_FromSize_t(self->ready ? tl_open_count(&self->t) : 0);
}

static PyObject *Tracker_options_ns(TrackerObject *self, PyObject *unused) {
    if (!self->ready) return PyTuple_New(0);
    PyObject *t = PyTuple_New(TL_N_OPTIONS);
    if (t == NULL) return NULL;
    for (int i = 0; i < TL_N_OPTIONS; i++) {
        PyObject *x = PyLong_FromLongLong(self->t.opt_ns[i]);
        if (x == NULL) {
            Py_DECREF(t);
            return NULL;
        }
        PyTuple_SET_ITEM(t, i, x);
    }
    return t;
}

static PyObject *Tracker_get_refused(TrackerObject *self, void *closure) {
    return Py_NewRef(self->refused != NULL ? self->refused : Py_None);
}

static PyObject *Tracker_get_pending(TrackerObject *self, void *closure) {
    return PyLong_FromSize_t(self->ready ? self->t.out.n : 0);
}

static PyMethodDef Tracker_methods[] = {
    {"feed", (PyCFunction)Tracker_feed, METH_VARARGS,
     "feed(frame, ts_ns, ip_version, src, sport, dst, dport, seq, ack, flags, payload_len, "
     "window, wscale, tsval, tsecr): a Batch's int64 columns, in order; returns how many "
     "events are pending. Rows outside the bounds the tracker handles raise ValueError "
     "before any row is fed."},
    {"advance", (PyCFunction)Tracker_advance, METH_O,
     "advance(now_ns): ClockAdvanced, then the timers due by then."},
    {"finish", (PyCFunction)Tracker_finish, METH_VARARGS,
     "finish(end_ns=None): InputEnded, then every pending timer and every open instance."},
    {"take", (PyCFunction)Tracker_take, METH_NOARGS,
     "The pending events as tuples (see tcplife.engines.ctrack); clears them."},
    {"clear", (PyCFunction)Tracker_clear, METH_NOARGS,
     "Drop the pending events; returns how many there were."},
    {"options_ns", (PyCFunction)Tracker_options_ns, METH_NOARGS,
     "The options as the tracker holds them, in ns (Options.ns of each, for those it uses)."},
    {"open_count", (PyCFunction)Tracker_open_count, METH_NOARGS,
     "How many connection instances are open."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Tracker_getset[] = {
    {"refused", (getter)Tracker_get_refused, NULL,
     "None, or why the tracker stopped (it then refuses every call: fall back to Python)",
     NULL},
    {"pending", (getter)Tracker_get_pending, NULL, "How many events are pending.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject TL_TrackerType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "tcplife._engine.Tracker",
    .tp_basicsize = sizeof(TrackerObject),
    .tp_dealloc = (destructor)Tracker_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Tracker(options): the Python core's Tracker (no observer), compiled. "
              "options: the Options fields in TL_OPT_* order.",
    .tp_methods = Tracker_methods,
    .tp_getset = Tracker_getset,
    .tp_init = (initproc)Tracker_init,
    .tp_new = PyType_GenericNew,
};

tl_tracker *tl_tracker_of(PyObject *obj) {
    if (!PyObject_TypeCheck(obj, &TL_TrackerType) || !((TrackerObject *)obj)->ready) {
        PyErr_SetString(PyExc_TypeError, "not an initialised tcplife._engine.Tracker");
        return NULL;
    }
    return &((TrackerObject *)obj)->t;
}

int tl_track_register(PyObject *module) {
    if (PyType_Ready(&TL_TrackerType) < 0) return -1;
    Py_INCREF(&TL_TrackerType);
    if (PyModule_AddObject(module, "Tracker", (PyObject *)&TL_TrackerType) < 0) {
        Py_DECREF(&TL_TrackerType);
        return -1;
    }
    return 0;
}
