/* tcplife._engine: the compiled engine's Python module. Each stage's functions are
 * registered here; the stages live in their own files (see engine.h). */
#include "engine.h"

static PyMethodDef methods[] = {
    {"tables", tl_tables, METH_NOARGS,
     "The engine's tables as it holds them (compare with "
     "tcplife.native.cgen.engine_tables())."},
    /* writer */
    {"format_rows", (PyCFunction)(void (*)(void))tl_format_rows,
     METH_VARARGS | METH_KEYWORDS,
     "format_rows(fmt, columns, start, stop, *, block=10000, base=0, header=False) -> "
     "(bytes, rows written): rows of a table as jsonl, json or csv (see engine/write.c)."},
    /* reader */
    {"pcap_walk", tl_pcap_walk, METH_VARARGS, "The reader's classic pcap record walk."},
    {"pcapng_walk", tl_pcapng_walk, METH_VARARGS, "The reader's pcapng packet block walk."},
    {"decode", tl_decode, METH_VARARGS, "The reader's bulk decode of frames."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "tcplife._engine",
    "tcplife's compiled engine (see tcplife.native.loader).", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__engine(void) {
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) return NULL;
    if (PyModule_AddStringConstant(m, "TABLES_SHA256", TL_TABLES_SHA256) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    if (tl_peers_register(m) < 0) { /* peers */
        Py_DECREF(m);
        return NULL;
    }
    if (tl_detect_register(m) < 0) { /* detect */
        Py_DECREF(m);
        return NULL;
    }
    if (tl_track_register(m) < 0) { /* tracker */
        Py_DECREF(m);
        return NULL;
    }
    if (tl_pipeline_register(m) < 0) { /* glue */
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
