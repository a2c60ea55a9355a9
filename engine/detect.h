/* The anomaly detectors: the C twin of tcplife/detect (the specification: __init__.py's
 * `DetectorSet` and `default_detectors`, view.py, handshake.py, closing.py, notes.py,
 * time_wait.py and spans.py). Plain C: no Python here (the Python type that drives it for
 * tests is detect_py.c).
 *
 * What a detector reads comes in plain-C structs (a connection's record, its transitions,
 * its notes), so that any tracker can feed them; the detector set keeps the running
 * capture end as `DetectorSet.events` does and judges each ended connection with the
 * default detectors, in `default_detectors`' order:
 *   Refused, ListenOverflow, HandshakeIncomplete, Resets, LingeringCloseWait,
 *   FinWait2Timeout, MissingFinalAck, SimultaneousClose, SimultaneousOpen, Notes,
 *   BoundedTimeWaitAccumulation (with TimeWaitLimits.of(options));
 * then `tl_detect_finish` gives the verdicts across connections (ListenOverflow's pending
 * ones, the TIME_WAIT accumulation per host). Every detector of the default set is
 * ported: TL_DET_DETECTORS names them; nothing is skipped.
 *
 * Calls, as `DetectorSet.events` takes the events of a tracker, in their order:
 *   tl_detect_transition   every `Transition` (the running capture end: those with a frame;
 *                          ListenOverflow watches the server's SYN-ACKs as they happen);
 *   tl_detect_connection   every `ConnectionEnded` (settles a record ended at the end of
 *                          input: `ConnectionRecord.settled`; then the detectors' verdicts);
 *   tl_detect_clock        `ClockAdvanced` (input_ended 0) and `InputEnded` (1);
 *   tl_detect_finish       `DetectorSet.ended`: once, at the end.
 * The anomalies go to a growable buffer (tl_detect_out) that the caller drains.
 *
 * Preconditions (the Python type checks them; a C tracker gives them by construction):
 * every time (ts_ns, last_ts_ns, ...) within +-(2**62 - 1) so that no difference of two
 * overflows; states, events, odd names, sides and close kinds valid codes of tables.h;
 * texts valid UTF-8 (addresses are compared as Python compares str: by code point, which
 * for UTF-8 is byte order). Options: each in [0, 2**60 ns] (the Python type refuses
 * larger ones, which Python itself would take). */
#ifndef TCPLIFE_DETECT_H
#define TCPLIFE_DETECT_H

#include <stddef.h>
#include <stdint.h>

#include "tables.h"

/* an optional int64 (a frame, a time) that is None */
#define TL_NONE INT64_MIN
/* `FOREVER` (tcplife.detect.view): a time after every other (tests/test_cdetect.py checks
 * it against the Python one: the core's tables cannot hold it, it is the detectors') */
#define TL_DET_FOREVER ((int64_t)1 << 62)
/* the largest magnitude of a time the detectors take */
#define TL_DET_TS_LIMIT (((int64_t)1 << 62) - 1)
/* the largest option, in ns (or as a count) */
#define TL_DET_OPTION_LIMIT ((int64_t)1 << 60)

/* A text, not NUL-terminated; s NULL: none. */
typedef struct {
    const char *s;
    size_t n;
} tl_text;

/* The `ConnectionRecord` fields the detectors (and the settling) use. */
typedef struct {
    int64_t conn_id;
    tl_text client_addr, server_addr;
    int64_t client_port, server_port;
    int64_t first_ts_ns, last_ts_ns, first_frame, last_frame;
    int64_t packets, client_packets, server_packets;
    int client_state, server_state, client_initial_state, server_initial_state; /* TL_STATE_ */
    int client_eventual_state, server_eventual_state; /* TL_STATE_, or -1: None */
    int close_kind;                                   /* TL_CLOSE_ */
    int role_inferred, mid_stream;
    /* TL_NONE: None */
    int64_t client_last_ts_ns, server_last_ts_ns, client_last_payload_ns,
        server_last_payload_ns;
} tl_det_record;

/* One `Transition`. */
typedef struct {
    int64_t tid, ts_ns;
    int64_t frame; /* TL_NONE: None */
    int side;      /* 0 client, 1 server (TL_SIDE_NAMES) */
    int from_state, to_state;
    int ev;        /* TL_EV_, or -1: None */
    tl_text text;  /* `event` where it differs from TL_EV_NAMES[ev] (s NULL: that name) */
    int inferred;
} tl_det_transition;

/* The facts of a note (`tcplife.core.events.Facts`) */
enum { TL_FACTS_NONE, TL_FACTS_RST_SENT, TL_FACTS_FIN_RTX, TL_FACTS_ACK_LOST,
       TL_FACTS_RETRACTED, TL_FACTS_PORT_REUSE };

/* one socket of `PortReuse.sockets` */
typedef struct {
    int side, state;
} tl_det_socket;

/* One `Oddity` of a connection, with its typed facts. */
typedef struct {
    int64_t ts_ns;
    int64_t frame; /* TL_NONE: None */
    int side;
    int name;      /* TL_ODD_ */
    tl_text detail;
    int facts;     /* TL_FACTS_ */
    /* RstSent: state, unread, ack, fin_sent, zero_window, probes, probe_since (TL_NONE);
     * FinRtx: state, hole */
    int state, unread, ack, fin_sent, zero_window, hole;
    int64_t probes, probe_since;
    /* AckLost: kind; Retracted: kind, undone, no_socket */
    tl_text kind;
    int64_t undone;
    int no_socket;
    /* PortReuse: old_conn_id, sockets */
    int64_t old_conn_id;
    const tl_det_socket *sockets;
    size_t nsockets;
} tl_det_note;

/* A `ConnectionEnded`: the transitions in (ts_ns, tid) order, the retracted ones left out */
typedef struct {
    tl_det_record record;
    const tl_det_transition *transitions;
    size_t ntransitions;
    const tl_det_note *notes;
    size_t nnotes;
    int at_end;
} tl_det_connection;

/* A `Transition` as the event stream carries it: with its connection and its side's
 * address and port (ListenOverflow counts a service's SYN-ACKs by them). */
typedef struct {
    int64_t conn_id;
    tl_text addr;
    int64_t port;
    tl_det_transition t;
} tl_det_stream_transition;

/* What settling did to a record ended at the end of input (`ConnectionRecord.settled`). */
typedef struct {
    int settled; /* 0: the record stands as it was */
    int client_state, server_state, client_eventual_state, server_eventual_state;
} tl_det_settled;

/* ------------------------------------------------------------------ anomalies out */
/* One `Claim`: (side, state, ts_ns) */
typedef struct {
    int side, state;
    int64_t ts_ns;
} tl_claim;

/* One `Anomaly`; its detail, frames and claims are offsets into the buffer's arrays
 * (which move as they grow). */
typedef struct {
    int64_t conn_id, ts_ns;
    int64_t frame; /* TL_NONE: None */
    int side, kind, severity, confidence; /* TL_SIDE_NAMES, TL_ANOMALY_, TL_SEVERITY_, ... */
    size_t detail, detail_len;
    size_t frames, nframes;
    size_t claims, nclaims;
} tl_anomaly;

typedef struct {
    tl_anomaly *rows;
    size_t n, cap;
    char *text;
    size_t ntext, captext;
    int64_t *frames;
    size_t nframes, capframes;
    tl_claim *claims;
    size_t nclaims, capclaims;
} tl_anomalies;

/* Empties the buffer (keeps its memory). */
void tl_anomalies_clear(tl_anomalies *a);

/* ------------------------------------------------------------------ the detector set */
typedef struct tl_detect tl_detect;

/* results of the calls below */
#define TL_DET_OK 0
#define TL_DET_NOMEM (-1)   /* memory ran out (the set is then not to be trusted) */
#define TL_DET_INVALID (-2) /* input Python would fail on: tl_detect_error says what */

/* the detectors, in the order they judge (the Python classes' names) */
#define TL_DET_N_DETECTORS 11
extern const char *const TL_DET_DETECTORS[TL_DET_N_DETECTORS];

/* A set with the default detectors of `options` (in TL_OPT_ order, as `Options` holds
 * them: seconds as floats, counts); NULL: out of memory or options out of range (*error
 * says which, or is NULL for memory). */
tl_detect *tl_detect_new(const double options[TL_N_OPTIONS], const char **error);
void tl_detect_free(tl_detect *d);
/* `BoundedTimeWaitAccumulation.fold_every` (default 4096) */
void tl_detect_set_fold_every(tl_detect *d, int64_t fold_every);

int tl_detect_transition(tl_detect *d, const tl_det_stream_transition *t);
/* settled may be NULL */
int tl_detect_connection(tl_detect *d, const tl_det_connection *c, tl_det_settled *settled);
void tl_detect_clock(tl_detect *d, int64_t ts_ns, int input_ended);
int tl_detect_finish(tl_detect *d);

tl_anomalies *tl_detect_out(tl_detect *d);
int64_t tl_detect_capture_end(const tl_detect *d);
int tl_detect_input_ended(const tl_detect *d);
const char *tl_detect_error(const tl_detect *d);

/* ------------------------------------------------------------------ shared by detect*.c */
#ifdef TL_DETECT_INTERNAL


/* detect_text.c: a growable text, and the sentences' helpers */
typedef struct {
    char *s;
    size_t n, cap;
    int failed; /* memory ran out */
} tl_buf;

void tl_buf_free(tl_buf *b);
void tl_buf_add(tl_buf *b, const char *s, size_t n);
void tl_buf_str(tl_buf *b, const char *s);
void tl_buf_text(tl_buf *b, tl_text t);
void tl_buf_int(tl_buf *b, int64_t v);
void tl_buf_commas(tl_buf *b, int64_t v);       /* f"{v:,}" */
void tl_buf_clock(tl_buf *b, int64_t ts_ns);    /* `clock` */
void tl_buf_secs(tl_buf *b, int64_t ns);        /* `secs` */
void tl_buf_fixed_commas(tl_buf *b, double x, int digits); /* f"{x:,.{digits}f}" */
void tl_buf_percent0(tl_buf *b, double x);      /* f"{x:.0%}" */
/* a * b / c (b, c > 0 here; a >= 0), correctly rounded as Python's int true division */
double tl_ratio(uint64_t a, uint64_t b, uint64_t c);
/* Python's str order of two texts (code points: bytes for UTF-8): <0, 0, >0 */
int tl_text_cmp(tl_text a, tl_text b);
int tl_text_eq(tl_text a, const char *s);
int tl_text_has(tl_text a, char c);

/* detect.c: the anomaly rows */
typedef struct {
    int64_t conn_id, ts_ns, frame;
    int side, kind, severity, confidence;
    const int64_t *frames; /* the other evidence (TL_NONE dropped), beside frame */
    size_t nframes;
    const tl_claim *claims;
    size_t nclaims;
} tl_row;

/* appends a row whose detail is b's text (b is emptied); the evidence: frame then frames,
 * None dropped, each once (`ConnView.anomaly`) */
int tl_anomalies_add(tl_anomalies *a, const tl_row *row, tl_buf *b);
void tl_anomalies_free(tl_anomalies *a);

/* interned texts (addresses): id -> text, text -> id */
typedef struct {
    char **texts;
    size_t *lens;
    size_t n, cap;
    int64_t *slots; /* -1 empty, else an id; open addressing */
    size_t mask;
} tl_names;

void tl_names_free(tl_names *t);
int64_t tl_names_id(tl_names *t, tl_text s); /* -1: out of memory */
tl_text tl_names_text(const tl_names *t, int64_t id);

/* One finished connection as the detectors see it (`ConnView`). */
typedef struct {
    const tl_det_record *r;
    const tl_det_transition *trans;
    size_t ntrans;
    const tl_det_note *notes;
    size_t nnotes;
    int64_t capture_end_ns;
} tl_view;

void tl_who(tl_buf *b, const tl_view *v, int side); /* `ConnView.who` */
int tl_state_at(const tl_view *v, int side, int64_t ts_ns);
const char *tl_event_text(const tl_det_transition *t, size_t *n);
int tl_event_is(const tl_det_transition *t, const char *s);

/* detect_conn.c: the detectors that judge each connection on its own */
typedef struct {
    int64_t close_wait_linger_ns;
} tl_conn_options;

int tl_judge_refused(const tl_view *v, tl_anomalies *out, tl_buf *b);
int tl_judge_handshake_incomplete(const tl_view *v, tl_anomalies *out, tl_buf *b);
int tl_judge_resets(const tl_view *v, tl_anomalies *out, tl_buf *b, const char **error);
int tl_judge_lingering_close_wait(const tl_view *v, const tl_conn_options *o,
                                  tl_anomalies *out, tl_buf *b);
int tl_judge_fin_wait_2_timeout(const tl_view *v, tl_anomalies *out, tl_buf *b);
int tl_judge_missing_final_ack(const tl_view *v, tl_anomalies *out, tl_buf *b);
int tl_judge_simultaneous_close(const tl_view *v, tl_anomalies *out, tl_buf *b);
int tl_judge_simultaneous_open(const tl_view *v, tl_anomalies *out, tl_buf *b);
int tl_judge_notes(const tl_view *v, tl_anomalies *out, tl_buf *b);

/* detect_listen.c: ListenOverflow (listen_overflow, syn_unanswered) */
typedef struct tl_listen tl_listen;
tl_listen *tl_listen_new(int64_t syn_sent_ns);
void tl_listen_free(tl_listen *l);
int tl_listen_transition(tl_listen *l, tl_names *names, const tl_det_stream_transition *t);
int tl_listen_connection(tl_listen *l, tl_names *names, const tl_view *v, tl_anomalies *out,
                         tl_buf *b);
int tl_listen_finish(tl_listen *l, const tl_names *names, tl_anomalies *out, tl_buf *b);

/* detect_tw.c: BoundedTimeWaitAccumulation */
typedef struct {
    int64_t time_wait_ns, port_low, port_high, max_tw_buckets, threshold, horizon_ns;
    double share;
} tl_tw_options;
typedef struct tl_tw tl_tw;
tl_tw *tl_tw_new(const tl_tw_options *o);
void tl_tw_free(tl_tw *w);
void tl_tw_set_fold_every(tl_tw *w, int64_t fold_every);
int tl_tw_connection(tl_tw *w, tl_names *names, const tl_view *v);
int tl_tw_finish(tl_tw *w, const tl_names *names, int64_t capture_end_ns, tl_anomalies *out,
                 tl_buf *b);

#endif /* TL_DETECT_INTERNAL */

#endif
