/* The compiled stages as one pipeline: the C twin of tcplife.engines.wiring.new_tracker,
 * `Tracker(options, Observers(PeerObserver(), DetectorSet(options)))`.
 *
 * A pipeline watches a tracker (track.h) through its hooks (tl_hooks): Wireshark numbers
 * every segment (`PeerObserver.segment`), each connection instance gets its peers' replays
 * (`opened`, `Peers.feed`: peers.h), whose summary belongs to the instance's record; after
 * each call of the tracker (a segment, `advance`, each list of `finish_chunks`) the
 * detectors (detect.h) see that call's new events, converted in place from the tracker's
 * structs (no Python object in between), settle the records ended at the end of input and
 * add their anomalies to the call's events (TL_E_ANOMALY, u.index into
 * tl_detect_out(det)'s rows); `finish` ends with the verdicts across connections
 * (`DetectorSet.ended`).
 *
 * Addresses: the detectors compare and print their texts. An IPv4 key (below 2**32) is
 * its dotted quad; an IPv6 key (TL_V6_BASE + i) is the i-th text given by
 * tl_pipeline_name (`AddressBook.names`, in key order). */
#ifndef TCPLIFE_PIPELINE_H
#define TCPLIFE_PIPELINE_H

#include <stddef.h>
#include <stdint.h>

#include "detect.h"
#include "peers.h"
#include "track.h"

#define TL_V6_BASE (INT64_C(1) << 32)

typedef struct {
    tl_tracker *t; /* not owned: the tracker watched (its hooks point here) */
    tl_hooks hooks;
    tl_wshark *ws;
    tl_detect *det;
    tl_peers **ended;   /* the peers of out.ends[i] (NULL: none), owned until cleared */
    size_t n_ended, cap_ended;
    size_t judged;      /* out.ev[0..judged) were handed to the detectors */
    size_t emitted;     /* tl_detect_out(det)->rows[0..emitted) are in out.ev */
    char **v6;          /* IPv6 texts by key - TL_V6_BASE (NUL-terminated, owned) */
    size_t n_v6, cap_v6;
    /* scratch for one ended connection as the detectors take it */
    tl_det_transition *dt; size_t cap_dt;
    char (*dtext)[96]; size_t cap_dtext;
    tl_det_note *dn; size_t cap_dn;
    tl_det_socket *ds; size_t cap_ds;
    int nomem;
    const char *error; /* the detectors refused their input (Python would have raised) */
} tl_pipeline;

/* 0; -1: memory ran out or options the detectors refuse (*error says which, NULL for
 * memory). Sets t's hooks; t must be fresh (nothing fed). */
int tl_pipeline_init(tl_pipeline *p, tl_tracker *t, const double options[TL_N_OPTIONS],
                     int64_t fold_every, const char **error);
/* Drops what the pipeline owns and unhooks its tracker (which it does not free). */
void tl_pipeline_free(tl_pipeline *p);
/* the next IPv6 address's text; -1: out of memory */
int tl_pipeline_name(tl_pipeline *p, const char *s, size_t n);
void tl_pipeline_feed(tl_pipeline *p, const tl_seg *s);
void tl_pipeline_advance(tl_pipeline *p, int64_t now);
void tl_pipeline_finish(tl_pipeline *p, int64_t end_ns); /* TL_NONE: None */
/* Empties the tracker's events and the pipeline's (after they were taken). */
void tl_pipeline_clear(tl_pipeline *p);
/* the tracker cannot go on: nomem, its bug, or the pipeline's error */
int tl_pipeline_failed(const tl_pipeline *p);

#endif
