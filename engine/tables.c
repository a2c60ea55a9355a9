/* The compiled tables handed back to Python as they are in memory, so that the loader
 * (tcplife.native.loader) can compare them with the Python core's before it runs. */
#include "engine.h"

static PyObject *names_tuple(const char *const *names, int n) {
    PyObject *t = PyTuple_New(n);
    if (t == NULL) return NULL;
    for (int i = 0; i < n; i++) {
        PyObject *s = PyUnicode_FromString(names[i]);
        if (s == NULL) { Py_DECREF(t); return NULL; }
        PyTuple_SET_ITEM(t, i, s);
    }
    return t;
}

static PyObject *ints_tuple(const signed char *v, int n) {
    PyObject *t = PyTuple_New(n);
    if (t == NULL) return NULL;
    for (int i = 0; i < n; i++) {
        PyObject *x = PyLong_FromLong(v[i]);
        if (x == NULL) { Py_DECREF(t); return NULL; }
        PyTuple_SET_ITEM(t, i, x);
    }
    return t;
}

static PyObject *grid_tuple(const signed char *v, int rows, int cols) {
    PyObject *t = PyTuple_New(rows);
    if (t == NULL) return NULL;
    for (int r = 0; r < rows; r++) {
        PyObject *row = ints_tuple(v + r * cols, cols);
        if (row == NULL) { Py_DECREF(t); return NULL; }
        PyTuple_SET_ITEM(t, r, row);
    }
    return t;
}

/* d[key] = value, stealing value; -1 on error */
static int put(PyObject *d, const char *key, PyObject *value) {
    if (value == NULL) return -1;
    int rc = PyDict_SetItemString(d, key, value);
    Py_DECREF(value);
    return rc;
}

PyObject *tl_tables(PyObject *self, PyObject *unused) {
    (void)self; (void)unused;
    PyObject *d = PyDict_New(), *names = PyDict_New();
    PyObject *masks = NULL, *flags = NULL, *constants = NULL, *ports = NULL;
    if (d == NULL || names == NULL) goto fail;
#define NAMES(PREFIX) \
    if (put(names, #PREFIX, names_tuple(TL_##PREFIX##_NAMES, TL_N_##PREFIX)) < 0) goto fail;
    NAMES(STATE) NAMES(EV) NAMES(ODD) NAMES(JOINT) NAMES(CLOSE) NAMES(ANOMALY)
    NAMES(SEVERITY) NAMES(CONFIDENCE)
#undef NAMES
    if (put(d, "names", names) < 0) { names = NULL; goto fail; }
    names = NULL;
    if (put(d, "move", grid_tuple(&TL_MOVE[0][0], TL_N_STATE, TL_N_EV)) < 0) goto fail;
    if (put(d, "note", grid_tuple(&TL_NOTE[0][0], TL_N_STATE, TL_N_EV)) < 0) goto fail;
    if (put(d, "deciding", ints_tuple(TL_DECIDING, TL_N_DECIDING)) < 0) goto fail;
    if (put(d, "reuse", ints_tuple(TL_REUSE, TL_N_STATE)) < 0) goto fail;
    if (put(d, "pair", grid_tuple(&TL_PAIR[0][0], TL_N_STATE, TL_N_STATE)) < 0) goto fail;
    masks = Py_BuildValue("{sIsIsI}", "ALIVE", TL_MASK_ALIVE, "SYNCHRONIZED",
                          TL_MASK_SYNCHRONIZED, "FIN_SENT", TL_MASK_FIN_SENT);
    if (put(d, "masks", masks) < 0) { masks = NULL; goto fail; }
    masks = NULL;
    flags = Py_BuildValue("{sIsIsIsIsIsIsIsI}", "FIN", TL_FLAG_FIN, "SYN", TL_FLAG_SYN,
                          "RST", TL_FLAG_RST, "PSH", TL_FLAG_PSH, "ACK", TL_FLAG_ACK,
                          "URG", TL_FLAG_URG, "ECE", TL_FLAG_ECE, "CWR", TL_FLAG_CWR);
    if (put(d, "flags", flags) < 0) { flags = NULL; goto fail; }
    flags = NULL;
    constants = Py_BuildValue("{sLsLsLsL}", "NS", TL_NS, "DUPLICATE_NS", TL_DUPLICATE_NS,
                              "MIN_RTO_NS", TL_MIN_RTO_NS, "COMPACT_MIN", TL_COMPACT_MIN);
    if (put(d, "constants", constants) < 0) { constants = NULL; goto fail; }
    constants = NULL;
    ports = PyTuple_New(TL_N_WELL_KNOWN_PORTS);
    if (ports == NULL) goto fail;
    for (int i = 0; i < TL_N_WELL_KNOWN_PORTS; i++) {
        PyObject *x = PyLong_FromLong(TL_WELL_KNOWN_PORTS[i]);
        if (x == NULL) goto fail;
        PyTuple_SET_ITEM(ports, i, x);
    }
    if (put(d, "well_known_ports", ports) < 0) { ports = NULL; goto fail; }
    ports = NULL;
    if (put(d, "options", names_tuple(TL_OPTION_NAMES, TL_N_OPTIONS)) < 0) goto fail;
    if (put(d, "sides", names_tuple(TL_SIDE_NAMES, 2)) < 0) goto fail;
    return d;
fail:
    Py_XDECREF(d); Py_XDECREF(names); Py_XDECREF(masks);
    Py_XDECREF(flags); Py_XDECREF(constants); Py_XDECREF(ports);
    return NULL;
}
