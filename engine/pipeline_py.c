/* `_engine.Pipeline`: the pipeline (pipeline.h) as a Python type, for
 * tcplife.engines.cpipeline. Pipeline(tracker, options, fold_every=4096) watches `tracker`
 * (a fresh `_engine.Tracker` of the same options, which it keeps: feed it only through
 * the pipeline) with the peers and the detectors of `options` (in TL_OPT_ order).
 *   names(texts)         the next IPv6 addresses' texts (`AddressBook.names` from
 *                        V6_BASE on, in key order), before rows that use them;
 *   feed(*columns)       the 15 int64 columns of a Batch; advance(now); finish(end=None)
 *                        -> how many events are pending;
 *   take()               the events as tuples: `_engine.Tracker.take`'s, an ENDED one with
 *                        a sixth item (the peers' summary as `PeerReplay.summary` gives
 *                        it, or None), and (7, anomaly) with an anomaly as
 *                        `Detectors.events` gives it;
 *   refused              None, or why the pipeline stopped (then every call raises). */
#include "engine.h" /* Python.h first */

#include <string.h>

#include "pipeline.h"

typedef struct {
    PyObject_HEAD
    PyObject *tracker; /* the _engine.Tracker whose C tracker p watches */
    tl_pipeline p;
    int ready;
    PyObject *refused;
} PipelineObject;

static int usable(PipelineObject *self) {
    if (!self->ready) {
        PyErr_SetString(PyExc_RuntimeError, "the pipeline is not initialised");
        return 0;
    }
    if (self->refused != Py_None) {
        PyErr_Format(PyExc_RuntimeError, "the pipeline stopped: %S", self->refused);
        return 0;
    }
    return 1;
}

static int after(PipelineObject *self) {
    tl_pipeline *p = &self->p;
    tl_sweep(p->t);
    if (p->nomem || p->t->nomem) {
        Py_XSETREF(self->refused, PyUnicode_FromString("out of memory"));
        PyErr_NoMemory();
        return -1;
    }
    const char *why = p->t->bug != NULL ? p->t->bug : p->error;
    if (why != NULL) {
        Py_XSETREF(self->refused, PyUnicode_FromString(why));
        PyErr_Format(PyExc_RuntimeError, "the compiled pipeline cannot follow: %s", why);
        return -1;
    }
    return 0;
}

static int Pipeline_init(PipelineObject *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"tracker", "options", "fold_every", NULL};
    PyObject *tracker, *options;
    long long fold_every = 4096;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OO|L:Pipeline", kwlist, &tracker, &options,
                                     &fold_every))
        return -1;
    if (self->ready) {
        PyErr_SetString(PyExc_RuntimeError, "a Pipeline is initialised once");
        return -1;
    }
    tl_tracker *t = tl_tracker_of(tracker);
    if (t == NULL) return -1;
    if (t->hooks != NULL || t->next_conn_id != 0 || t->out.n != 0) {
        PyErr_SetString(PyExc_ValueError, "the tracker must be fresh and not watched");
        return -1;
    }
    PyObject *seq = PySequence_Fast(options, "options must be a sequence of numbers");
    if (seq == NULL) return -1;
    if (PySequence_Fast_GET_SIZE(seq) != TL_N_OPTIONS) {
        Py_DECREF(seq);
        PyErr_Format(PyExc_ValueError, "options must hold %d numbers", TL_N_OPTIONS);
        return -1;
    }
    double opts[TL_N_OPTIONS];
    for (int i = 0; i < TL_N_OPTIONS; i++) {
        opts[i] = PyFloat_AsDouble(PySequence_Fast_GET_ITEM(seq, i));
        if (opts[i] == -1.0 && PyErr_Occurred()) {
            Py_DECREF(seq);
            return -1;
        }
    }
    Py_DECREF(seq);
    const char *error = NULL;
    if (tl_pipeline_init(&self->p, t, opts, fold_every, &error) < 0) {
        if (error != NULL) PyErr_Format(PyExc_ValueError, "Pipeline: %s", error);
        else PyErr_NoMemory();
        return -1;
    }
    self->tracker = Py_NewRef(tracker);
    self->ready = 1;
    Py_XSETREF(self->refused, Py_NewRef(Py_None));
    return 0;
}

static void Pipeline_dealloc(PipelineObject *self) {
    if (self->ready) tl_pipeline_free(&self->p);
    Py_XDECREF(self->tracker);
    Py_XDECREF(self->refused);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *Pipeline_names(PipelineObject *self, PyObject *arg) {
    if (!usable(self)) return NULL;
    PyObject *seq = PySequence_Fast(arg, "names takes a sequence of str");
    if (seq == NULL) return NULL;
    for (Py_ssize_t i = 0; i < PySequence_Fast_GET_SIZE(seq); i++) {
        Py_ssize_t n;
        const char *s = PyUnicode_AsUTF8AndSize(PySequence_Fast_GET_ITEM(seq, i), &n);
        if (s == NULL || tl_pipeline_name(&self->p, s, (size_t)n) < 0) {
            Py_DECREF(seq);
            return s == NULL ? NULL : PyErr_NoMemory();
        }
    }
    Py_DECREF(seq);
    return PyLong_FromSize_t(self->p.n_v6);
}

static void pipeline_sink(void *ctx, const tl_seg *s) {
    tl_pipeline_feed(ctx, s);
}

static int pipeline_failed(void *ctx) {
    return tl_pipeline_failed(ctx);
}

static PyObject *Pipeline_feed(PipelineObject *self, PyObject *args) {
    if (!usable(self)) return NULL;
    if (tl_py_feed_rows(args, self->p.t, pipeline_sink, pipeline_failed, &self->p,
                        &self->refused) < 0 || after(self) < 0)
        return NULL;
    return PyLong_FromSize_t(self->p.t->out.n);
}

static PyObject *Pipeline_advance(PipelineObject *self, PyObject *arg) {
    if (!usable(self)) return NULL;
    int64_t now;
    if (tl_py_ns(arg, &now, 0) < 0) return NULL;
    tl_pipeline_advance(&self->p, now);
    if (after(self) < 0) return NULL;
    return PyLong_FromSize_t(self->p.t->out.n);
}

static PyObject *Pipeline_finish(PipelineObject *self, PyObject *args) {
    PyObject *end = Py_None;
    if (!PyArg_ParseTuple(args, "|O:finish", &end)) return NULL;
    if (!usable(self)) return NULL;
    int64_t end_ns;
    if (tl_py_ns(end, &end_ns, 1) < 0) return NULL;
    tl_pipeline_finish(&self->p, end_ns);
    if (after(self) < 0) return NULL;
    return PyLong_FromSize_t(self->p.t->out.n);
}

/* ------------------------------------------------------------------ tuples */
static PyObject *event_tuple(PipelineObject *self, const tl_event *e) {
    tl_pipeline *p = &self->p;
    const tl_out *o = &p->t->out;
    if (e->type == TL_E_ANOMALY)  /* (7, `Detectors.events`' tuple) */
        return Py_BuildValue("(iN)", TL_E_ANOMALY,
                             tl_anomaly_tuple(tl_detect_out(p->det), e->u.index));
    PyObject *t = tl_track_event_tuple(o, e);
    if (t == NULL || e->type != TL_E_ENDED) return t;
    size_t k = e->u.index;
    PyObject *summary = tl_peers_summary_tuple(k < p->n_ended ? p->ended[k] : NULL);
    if (summary == NULL) {
        Py_DECREF(t);
        return NULL;
    }
    Py_ssize_t n = PyTuple_GET_SIZE(t);
    PyObject *u = PyTuple_New(n + 1);
    if (u == NULL) {
        Py_DECREF(t);
        Py_DECREF(summary);
        return NULL;
    }
    for (Py_ssize_t i = 0; i < n; i++) PyTuple_SET_ITEM(u, i, Py_NewRef(PyTuple_GET_ITEM(t, i)));
    PyTuple_SET_ITEM(u, n, summary);
    Py_DECREF(t);
    return u;
}

static PyObject *Pipeline_take(PipelineObject *self, PyObject *unused) {
    (void)unused;
    if (!self->ready) return PyList_New(0);
    const tl_out *o = &self->p.t->out;
    PyObject *list = PyList_New((Py_ssize_t)o->n);
    if (list == NULL) return NULL;
    for (size_t i = 0; i < o->n; i++) {
        PyObject *x = event_tuple(self, &o->ev[i]);
        if (x == NULL) {
            Py_DECREF(list);
            return NULL;
        }
        PyList_SET_ITEM(list, (Py_ssize_t)i, x);
    }
    tl_pipeline_clear(&self->p);
    return list;
}

static PyObject *Pipeline_get_refused(PipelineObject *self, void *closure) {
    (void)closure;
    return Py_NewRef(self->refused != NULL ? self->refused : Py_None);
}

static PyObject *Pipeline_get_pending(PipelineObject *self, void *closure) {
    (void)closure;
    return PyLong_FromSize_t(self->ready ? self->p.t->out.n : 0);
}

static PyMethodDef Pipeline_methods[] = {
    {"names", (PyCFunction)Pipeline_names, METH_O,
     "names(texts): the next IPv6 addresses' texts (AddressBook order) -> how many known"},
    {"feed", (PyCFunction)Pipeline_feed, METH_VARARGS,
     "feed(*columns): the 15 int64 columns of a Batch -> events pending"},
    {"advance", (PyCFunction)Pipeline_advance, METH_O, "advance(now_ns) -> events pending"},
    {"finish", (PyCFunction)Pipeline_finish, METH_VARARGS,
     "finish(end_ns=None) -> events pending (the detectors' last verdicts included)"},
    {"take", (PyCFunction)Pipeline_take, METH_NOARGS, "take() -> the pending events as tuples"},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Pipeline_getset[] = {
    {"refused", (getter)Pipeline_get_refused, NULL, "None, or why the pipeline stopped", NULL},
    {"pending", (getter)Pipeline_get_pending, NULL, "events not yet taken", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject PipelineType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "tcplife._engine.Pipeline",
    .tp_basicsize = sizeof(PipelineObject),
    .tp_dealloc = (destructor)Pipeline_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Pipeline(tracker, options, fold_every=4096): a compiled tracker watched by "
              "the peers' replays and the anomaly detectors (engine/pipeline.h).",
    .tp_methods = Pipeline_methods,
    .tp_getset = Pipeline_getset,
    .tp_init = (initproc)Pipeline_init,
    .tp_new = PyType_GenericNew,
};

int tl_pipeline_register(PyObject *module) {
    if (PyType_Ready(&PipelineType) < 0) return -1;
    Py_INCREF(&PipelineType);
    if (PyModule_AddObject(module, "Pipeline", (PyObject *)&PipelineType) < 0) {
        Py_DECREF(&PipelineType);
        return -1;
    }
    return 0;
}
