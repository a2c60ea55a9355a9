/* tcplife's compiled engine: what its C files share.
 *
 * The engine is the Python core's twin (tcplife/core): the Python implementation is the
 * specification, and the tables of the state machine come from it (tables.h, generated
 * by `python -m tcplife.native.cgen`). Each .c file owns one stage and registers its
 * Python-visible functions in module.c. */
#ifndef TCPLIFE_ENGINE_H
#define TCPLIFE_ENGINE_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

#include "tables.h"

/* tables.c: the generated tables as Python values (`tcplife._engine.tables()`), the same
 * structure as `tcplife.native.cgen.engine_tables()` */
PyObject *tl_tables(PyObject *self, PyObject *unused);

/* --- peers: the Zeek, Suricata and Wireshark replays (peers.h; peers_py.c adds the
 * type `PeerReplay` to the module) */
#include "peers.h"
int tl_peers_register(PyObject *module);
/* an instance's `PeerSummary` fields as `PeerReplay.summary` gives them (None for NULL) */
PyObject *tl_peers_summary_tuple(const tl_peers *p);

/* writer (write.c, write_text.c; write.h): rows of a table formatted from its columns
 * as JSON lines, JSON or CSV (`tcplife._engine.format_rows`; tcplife/output/cwrite.py) */
PyObject *tl_format_rows(PyObject *self, PyObject *args, PyObject *kwargs);

/* --- reader: the capture reader's hot loops (read.c: record walks, decode.c: bulk
 * decode; read.h: their helpers); tcplife/capture/creader.py calls them */
PyObject *tl_pcap_walk(PyObject *self, PyObject *args);
PyObject *tl_pcapng_walk(PyObject *self, PyObject *args);
PyObject *tl_decode(PyObject *self, PyObject *args);
/* --- detect: the anomaly detectors (detect.h; detect_py.c adds the type `Detectors` to
 * the module) */
#include "detect.h"
int tl_detect_register(PyObject *module);
/* anomaly i of a buffer as `Detectors.events` gives it */
PyObject *tl_anomaly_tuple(const tl_anomalies *a, size_t i);

/* --- tracker (track*.c, track.h): the type `_engine.Tracker`, added to the module;
 * tl_tracker_of gives the C tracker inside such an object (NULL and TypeError if obj is
 * not one), whose events (its `out`, track.h) other stages may read in place */
#include "track.h"
int tl_track_register(PyObject *module);
tl_tracker *tl_tracker_of(PyObject *obj);
/* Feed the rows of the 15 int64 Batch columns in args to sink(ctx, row), each checked
 * first (tl_check_row), until failed(ctx); 0, or -1 with an exception set. A row out of
 * bounds after others of the batch were fed stops tracker t (tl_sweep) and says why in
 * *refused. tl_py_ns reads a time argument (None allowed with none_ok: TL_NONE). */
typedef void (*tl_seg_sink)(void *ctx, const tl_seg *s);
typedef int (*tl_seg_failed)(void *ctx);
int tl_py_feed_rows(PyObject *args, tl_tracker *t, tl_seg_sink sink, tl_seg_failed failed,
                    void *ctx, PyObject **refused);
int tl_py_ns(PyObject *v, int64_t *out, int none_ok);

/* --- glue: the pipeline (pipeline.h, pipeline.c; pipeline_py.c adds the type `Pipeline`
 * to the module); tl_track_event_tuple is `_engine.Tracker.take`'s tuple of one event */
PyObject *tl_track_event_tuple(const tl_out *o, const tl_event *e);
int tl_pipeline_register(PyObject *module);

#endif
