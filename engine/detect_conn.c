/* The detectors that judge each connection on its own, with their sentences byte for byte:
 * handshake.py's `Refused` and `HandshakeIncomplete`; closing.py's `Resets`,
 * `LingeringCloseWait` (not `ongoing`: the file engine's), `FinWait2Timeout`,
 * `MissingFinalAck`, `SimultaneousClose`, `SimultaneousOpen`; notes.py's `Notes`. */
#define TL_DETECT_INTERNAL
#include "detect.h"

#define CLIENT 0
#define SERVER 1
#define S(text) tl_buf_str(b, text)
#define WHO(side) tl_who(b, v, side)
#define CLOCK(ts) tl_buf_clock(b, ts)

static tl_row row_of(const tl_view *v, int64_t ts, int side, int kind, int64_t frame) {
    tl_row r = {v->r->conn_id, ts, frame, side, kind, TL_DEFAULT_SEVERITY[kind],
                TL_CONFIDENCE_CERTAIN, NULL, 0, NULL, 0};
    return r;
}

static tl_claim claim(int side, int state, int64_t ts) {
    tl_claim c = {side, state, ts};
    return c;
}

/* the first note named `name` of `side` (-1: either), from position `from` */
static const tl_det_note *named(const tl_view *v, int name, int side, size_t *from) {
    for (size_t i = from ? *from : 0; i < v->nnotes; i++) {
        const tl_det_note *n = &v->notes[i];
        if (n->name == name && (side < 0 || n->side == side)) {
            if (from) *from = i + 1;
            return n;
        }
    }
    if (from) *from = v->nnotes;
    return NULL;
}

static size_t count_named(const tl_view *v, int name, int side) {
    size_t n = 0;
    for (size_t i = 0; i < v->nnotes; i++)
        if (v->notes[i].name == name && (side < 0 || v->notes[i].side == side)) n++;
    return n;
}

static int64_t packets(const tl_det_record *r, int side) {
    return side == CLIENT ? r->client_packets : r->server_packets;
}

static int64_t last_ts(const tl_det_record *r, int side) {
    return side == CLIENT ? r->client_last_ts_ns : r->server_last_ts_ns;
}

static int64_t last_payload(const tl_det_record *r, int side) {
    return side == CLIENT ? r->client_last_payload_ns : r->server_last_payload_ns;
}

static void event_text(tl_buf *b, const tl_det_transition *t) {
    size_t n;
    const char *s = tl_event_text(t, &n);
    tl_buf_add(b, s, n);
}

static void plural(tl_buf *b, int64_t n) {
    if (n > 1) S("s");
}

/* ------------------------------------------------------------------ handshake.py */
int tl_judge_refused(const tl_view *v, tl_anomalies *out, tl_buf *b) {
    const tl_det_record *r = v->r;
    if (r->close_kind != TL_CLOSE_REFUSED) return TL_DET_OK;
    const tl_det_note *rst = named(v, TL_ODD_RST_SENT, SERVER, NULL);
    int64_t ts = rst ? rst->ts_ns : r->last_ts_ns, frame = rst ? rst->frame : r->last_frame;
    WHO(SERVER);
    S(" answered the SYN from ");
    WHO(CLIENT);
    S(" with RST at ");
    CLOCK(ts);
    S(": nothing listens on port ");
    tl_buf_int(b, r->server_port);
    S(" (connection refused)");
    tl_row row = row_of(v, ts, SERVER, TL_ANOMALY_REFUSED, frame);
    return tl_anomalies_add(out, &row, b);
}

int tl_judge_handshake_incomplete(const tl_view *v, tl_anomalies *out, tl_buf *b) {
    const tl_det_transition *synrcvd = NULL, *end = NULL;
    int established = 0;
    for (size_t i = 0; i < v->ntrans; i++) {
        const tl_det_transition *t = &v->trans[i];
        if (t->side != SERVER) continue;
        if (synrcvd == NULL && t->to_state == TL_STATE_SYN_RECEIVED) synrcvd = t;
        if (t->to_state == TL_STATE_ESTABLISHED) established = 1;
    }
    if (synrcvd == NULL) return TL_DET_OK;
    int acks_lost = 0, no_socket = 0;
    for (size_t i = 0; i < v->nnotes; i++) {
        const tl_det_note *n = &v->notes[i];
        if (n->side != SERVER) continue;
        if (n->name == TL_ODD_ACK_LOST && n->facts == TL_FACTS_ACK_LOST &&
            tl_text_eq(n->kind, "ack_syn"))
            acks_lost = 1;
        if (n->name == TL_ODD_RETRACTED && n->facts == TL_FACTS_RETRACTED && n->no_socket)
            no_socket = 1;
    }
    int64_t synack_rtx = (int64_t)count_named(v, TL_ODD_SYNACK_RTX, SERVER);
    int64_t rst_sent = (int64_t)count_named(v, TL_ODD_RST_SENT, SERVER);
    int only_synacks = v->r->server_packets == 1 + synack_rtx + rst_sent;
    if (established && !(acks_lost && only_synacks)) return TL_DET_OK;
    int64_t n = 1 + synack_rtx;
    for (size_t i = 0; i < v->ntrans; i++) {
        const tl_det_transition *t = &v->trans[i];
        if (t->side == SERVER && t->ts_ns > synrcvd->ts_ns) {
            end = t;
            break;
        }
    }
    int gave_up = end != NULL && end->ts_ns <= v->capture_end_ns;
    if (n < 2 && !gave_up) return TL_DET_OK;
    WHO(SERVER);
    S(" sent SYN-ACK at ");
    CLOCK(synrcvd->ts_ns);
    S(" (");
    tl_buf_int(b, n);
    S(" time");
    plural(b, n);
    S(") and never got the handshake's final ACK from ");
    WHO(CLIENT);
    if (no_socket)
        S(" (its bare RST shows it had no connection although an ACK from the client "
          "was captured: lost after the capture point)");
    S("; it sat in SYN_RECEIVED and ");
    if (gave_up) {
        S("gave up at ");
        CLOCK(end->ts_ns);
        S(" (");
        event_text(b, end);
        S(")");
    } else {
        S("still waits at the end of the capture");
    }
    S(" (ACKs dropped on the way, or a SYN flood)");
    tl_claim claims[1] = {claim(SERVER, TL_STATE_SYN_RECEIVED, synrcvd->ts_ns)};
    tl_row row = row_of(v, synrcvd->ts_ns, SERVER, TL_ANOMALY_HANDSHAKE_INCOMPLETE,
                        synrcvd->frame);
    row.confidence = no_socket ? TL_CONFIDENCE_LIKELY : TL_CONFIDENCE_CERTAIN;
    row.claims = claims;
    row.nclaims = 1;
    return tl_anomalies_add(out, &row, b);
}

/* ------------------------------------------------------------------ closing.py */
#define BIT(s) (1u << (s))
static const unsigned OPEN = BIT(TL_STATE_ESTABLISHED) | BIT(TL_STATE_CLOSE_WAIT) |
                             BIT(TL_STATE_SYN_RECEIVED) | BIT(TL_STATE_UNKNOWN);
static const unsigned AFTER_CLOSE = BIT(TL_STATE_FIN_WAIT_1) | BIT(TL_STATE_FIN_WAIT_2) |
                                    BIT(TL_STATE_CLOSING) | BIT(TL_STATE_LAST_ACK) |
                                    BIT(TL_STATE_TIME_WAIT) | BIT(TL_STATE_CLOSED);
static const unsigned WAITING = BIT(TL_STATE_LAST_ACK) | BIT(TL_STATE_CLOSING) |
                                BIT(TL_STATE_FIN_WAIT_1);

static int in(unsigned set, int state) { return state >= 0 && state < 32 && (set & BIT(state)); }

int tl_judge_resets(const tl_view *v, tl_anomalies *out, tl_buf *b, const char **error) {
    int seen[2][TL_N_ANOMALY] = {{0}};
    for (size_t i = 0; i < v->nnotes; i++) {
        const tl_det_note *note = &v->notes[i];
        if (note->name != TL_ODD_RST_SENT) continue;
        if (note->facts != TL_FACTS_RST_SENT) {
            *error = "an rst_sent note without its RstSent facts (Resets asserts them)";
            return TL_DET_INVALID;
        }
        int side = note->side, peer = 1 - side, state = note->state, kind;
        tl_claim before = claim(side, state, note->ts_ns - 1);
        size_t nclaims = note->ts_ns > v->r->first_ts_ns ? 1 : 0;
        int confidence = TL_CONFIDENCE_CERTAIN;
        b->n = 0;
        if (in(OPEN, state) && note->ack) {
            if (note->probes != 0) {
                int64_t since = (note->probe_since != TL_NONE && note->probe_since != 0)
                                    ? note->probe_since : note->ts_ns;
                kind = TL_ANOMALY_HALF_OPEN;
                WHO(side);
                S(" sent ");
                tl_buf_int(b, note->probes);
                S(" keep-alive probe");
                plural(b, note->probes);
                S(" from ");
                CLOCK(since);
                S(" that ");
                WHO(peer);
                S(" never answered; its kernel gave up and reset the connection at ");
                CLOCK(note->ts_ns);
                S(": the peer is gone (crashed, powered off, unreachable, or a middlebox "
                  "dropped the flow)");
                confidence = TL_CONFIDENCE_LIKELY;
            } else if (note->unread && note->zero_window) {
                kind = TL_ANOMALY_RST_ON_CLOSE_UNREAD_DATA;
                WHO(side);
                S(" ended the connection with RST at ");
                CLOCK(note->ts_ns);
                S(" in ");
                S(TL_STATE_NAMES[state]);
                S(", its receive window closed (zero): data from ");
                WHO(peer);
                S(" filled its buffer unread, and closing a socket with unread data resets "
                  "it instead of sending FIN: read all input before close()");
                confidence = TL_CONFIDENCE_LIKELY;
            } else if (note->unread || state == TL_STATE_UNKNOWN) {
                kind = TL_ANOMALY_ABORTIVE_CLOSE;
                WHO(side);
                S(" ended the connection with RST at ");
                CLOCK(note->ts_ns);
                S(" in ");
                S(TL_STATE_NAMES[state]);
                S("; ");
                if (note->unread) {
                    S("data from ");
                    WHO(peer);
                    S(" had arrived after its last data");
                } else {
                    S("too little of the connection was captured to tell whether data was "
                      "waiting");
                }
                S(". Two causes look the same on the wire: the application closed with that "
                  "data unread (read all input before close()), or it read everything and "
                  "closed with SO_LINGER 0 (or crashed, or was killed); the peer sees "
                  "'connection reset by peer'");
                confidence = TL_CONFIDENCE_POSSIBLE;
            } else {
                kind = TL_ANOMALY_ABORTIVE_CLOSE;
                WHO(side);
                S(" ended the connection with RST at ");
                CLOCK(note->ts_ns);
                S(" in ");
                S(TL_STATE_NAMES[state]);
                S(", no data from ");
                WHO(peer);
                S(" waiting: an abortive close (SO_LINGER 0, an abort or a crash); the peer "
                  "sees 'connection reset by peer'");
                confidence = TL_CONFIDENCE_LIKELY;
            }
        } else if (in(AFTER_CLOSE, state) && note->unread && note->fin_sent) {
            kind = TL_ANOMALY_WRITE_AFTER_CLOSE;
            WHO(peer);
            S(" sent data after ");
            WHO(side);
            S(" had closed (");
            S(TL_STATE_NAMES[state]);
            S("); ");
            S(TL_SIDE_NAMES[side]);
            S(" answered with RST at ");
            CLOCK(note->ts_ns);
            S(": the peer wrote to a closed connection (it did not notice the FIN, or "
              "ignored it)");
        } else {
            continue;
        }
        if (seen[side][kind]) {
            if (b->failed) return TL_DET_NOMEM;
            b->n = 0;
            continue;
        }
        seen[side][kind] = 1;
        tl_row row = row_of(v, note->ts_ns, side, kind, note->frame);
        row.confidence = confidence;
        row.claims = &before;
        row.nclaims = nclaims;
        int rc = tl_anomalies_add(out, &row, b);
        if (rc != TL_DET_OK) return rc;
    }
    return TL_DET_OK;
}

int tl_judge_lingering_close_wait(const tl_view *v, const tl_conn_options *o,
                                  tl_anomalies *out, tl_buf *b) {
    for (int side = CLIENT; side <= SERVER; side++) {
        for (size_t i = 0; i < v->ntrans; i++) {
            const tl_det_transition *t = &v->trans[i];
            if (t->side != side || t->to_state != TL_STATE_CLOSE_WAIT) continue;
            int64_t last_sent = last_ts(v->r, side);
            if (last_sent == TL_NONE || last_sent < t->ts_ns) continue;
            const tl_det_transition *nxt = NULL;
            for (size_t j = i + 1; j < v->ntrans; j++)
                if (v->trans[j].side == side) {
                    nxt = &v->trans[j];
                    break;
                }
            int open_to_end = nxt == NULL || nxt->ts_ns > v->capture_end_ns;
            int64_t end = open_to_end ? v->capture_end_ns : nxt->ts_ns;
            if (end - t->ts_ns < o->close_wait_linger_ns) continue;
            int64_t wrote = last_payload(v->r, side);
            if (wrote != TL_NONE && wrote > t->ts_ns) wrote = wrote < end ? wrote : end;
            else wrote = TL_NONE;
            int peer = 1 - side;
            int peer_state = tl_state_at(v, peer, end);
            tl_claim claims[4] = {claim(side, TL_STATE_CLOSE_WAIT, t->ts_ns),
                                  claim(side, TL_STATE_CLOSE_WAIT, end - 1),
                                  claim(peer, peer_state, end),
                                  claim(side, TL_STATE_CLOSE_WAIT, v->capture_end_ns)};
            WHO(side);
            S(" received FIN at ");
            CLOCK(t->ts_ns);
            S(" and did not close: CLOSE_WAIT for ");
            tl_buf_secs(b, end - t->ts_ns);
            if (wrote != TL_NONE) {
                S(" (it went on sending data until ");
                CLOCK(wrote);
                S(": the peer had only shut down writing)");
            }
            S(" ");
            if (open_to_end) {
                S("until the end of the capture (or of the live run) at ");
                CLOCK(end);
                S(", still open then; the application is not calling close()");
            } else {
                size_t n;
                const char *e = tl_event_text(nxt, &n);
                int rst = 0;
                for (size_t k = 0; k + 3 <= n; k++)
                    if (e[k] == 'R' && e[k + 1] == 'S' && e[k + 2] == 'T') rst = 1;
                if (rst) {
                    S("until ");
                    if (n >= 4 && e[0] == 's' && e[1] == 'e' && e[2] == 'n' && e[3] == 'd') {
                        S("its own RST");
                    } else {
                        S("an RST from ");
                        WHO(peer);
                    }
                    S(" ended it at ");
                    CLOCK(end);
                    S(", not a close(): the application had not closed it by then");
                } else {
                    S("until it closed at ");
                    CLOCK(end);
                    S(" (");
                    tl_buf_add(b, e, n);
                    S("); the application was slow to call close()");
                }
            }
            S(" (the peer is in ");
            S(TL_STATE_NAMES[peer_state]);
            S(")");
            tl_row row = row_of(v, t->ts_ns, side, TL_ANOMALY_LINGERING_CLOSE_WAIT, t->frame);
            row.severity = open_to_end ? TL_SEVERITY_ERROR : TL_SEVERITY_WARNING;
            int64_t frames[1];
            if (nxt != NULL && !open_to_end) {
                frames[0] = nxt->frame;
                row.frames = frames;
                row.nframes = 1;
            }
            row.claims = claims;
            row.nclaims = open_to_end ? 4 : 3;
            int rc = tl_anomalies_add(out, &row, b);
            if (rc != TL_DET_OK) return rc;
        }
    }
    return TL_DET_OK;
}

int tl_judge_fin_wait_2_timeout(const tl_view *v, tl_anomalies *out, tl_buf *b) {
    for (int side = CLIENT; side <= SERVER; side++) {
        const tl_det_transition *prev = NULL;
        for (size_t i = 0; i < v->ntrans; i++) {
            const tl_det_transition *t = &v->trans[i];
            if (t->side != side) continue;
            const tl_det_transition *entered = prev ? prev : t;
            prev = t;
            if (!(t->from_state == TL_STATE_FIN_WAIT_2 && tl_event_is(t, "timeout") &&
                  t->ts_ns <= v->capture_end_ns))
                continue;
            int peer = 1 - side;
            int peer_state = tl_state_at(v, peer, t->ts_ns);
            size_t from = 0;
            const tl_det_note *later = NULL;
            for (const tl_det_note *n; (n = named(v, TL_ODD_RST_SENT, side, &from)) != NULL;)
                if (n->ts_ns >= t->ts_ns) {
                    later = n;
                    break;
                }
            WHO(side);
            S(" closed and waited in FIN_WAIT_2 for the peer's FIN; it expired at ");
            CLOCK(t->ts_ns);
            S(" after ");
            tl_buf_secs(b, t->ts_ns - entered->ts_ns);
            S(" (tcp_fin_timeout) while ");
            WHO(peer);
            S(" was in ");
            S(TL_STATE_NAMES[peer_state]);
            if (later != NULL) {
                S("; what ");
                WHO(peer);
                S(" sent later met RST at ");
                CLOCK(later->ts_ns);
            }
            tl_claim claims[3] = {claim(side, TL_STATE_FIN_WAIT_2, t->ts_ns - 1),
                                  claim(side, TL_STATE_CLOSED, t->ts_ns),
                                  claim(peer, peer_state, t->ts_ns)};
            tl_row row = row_of(v, t->ts_ns, side, TL_ANOMALY_FIN_WAIT_2_TIMEOUT, entered->frame);
            row.claims = claims;
            row.nclaims = 3;
            int rc = tl_anomalies_add(out, &row, b);
            if (rc != TL_DET_OK) return rc;
        }
    }
    return TL_DET_OK;
}

int tl_judge_missing_final_ack(const tl_view *v, tl_anomalies *out, tl_buf *b) {
    for (int side = CLIENT; side <= SERVER; side++) {
        int peer = 1 - side;
        const tl_det_note *first = NULL;
        int64_t nrtx = 0, nlost = 0;
        for (size_t i = 0; i < v->nnotes; i++) {
            const tl_det_note *n = &v->notes[i];
            if (n->side != side) continue;
            if (n->name == TL_ODD_FIN_RTX && !(n->facts == TL_FACTS_FIN_RTX && n->hole)) {
                if (first == NULL) first = n;
                nrtx++;
            }
            if (n->name == TL_ODD_ACK_LOST && n->facts == TL_FACTS_ACK_LOST &&
                tl_text_eq(n->kind, "ack_fin"))
                nlost++;
        }
        if (first == NULL || packets(v->r, peer) == 0) continue;
        const tl_det_transition *acked = NULL, *gave_up = NULL;
        int64_t sent_at = TL_NONE;
        for (size_t i = 0; i < v->ntrans; i++) {
            const tl_det_transition *t = &v->trans[i];
            if (t->side != side) continue;
            if (acked == NULL && in(WAITING, t->from_state) && tl_event_is(t, "recv ACK of FIN"))
                acked = t;
            if (sent_at == TL_NONE && tl_event_is(t, "send FIN")) sent_at = t->ts_ns;
            if (gave_up == NULL && in(WAITING, t->from_state) && t->ts_ns >= first->ts_ns &&
                t->ts_ns <= v->capture_end_ns && tl_event_is(t, "timeout"))
                gave_up = t;
        }
        if (sent_at == TL_NONE) sent_at = first->ts_ns;
        if (acked != NULL && acked->ts_ns - sent_at < TL_MIN_RTO_NS) continue;
        WHO(side);
        S(" retransmitted its FIN ");
        tl_buf_int(b, nrtx);
        S(" time");
        plural(b, nrtx);
        S(" from ");
        CLOCK(first->ts_ns);
        if (acked != NULL) {
            S(" before its ACK arrived at ");
            CLOCK(acked->ts_ns);
            S(": ");
            if (nlost) {
                S("the first ACK");
                plural(b, nlost);
                S(" ");
                WHO(peer);
                S(" sent got lost on the way");
            } else {
                S("the ACK was late");
            }
            S("; the FIN was acknowledged in the end");
            tl_claim claims[2] = {claim(side, acked->from_state, acked->ts_ns - 1),
                                  claim(side, acked->to_state, acked->ts_ns)};
            int64_t frames[1] = {acked->frame};
            tl_row row = row_of(v, first->ts_ns, side, TL_ANOMALY_FINAL_ACK_DELAYED, first->frame);
            if (acked->frame != TL_NONE && acked->frame != 0) { /* `if acked.frame` */
                row.frames = frames;
                row.nframes = 1;
            }
            row.claims = claims;
            row.nclaims = 2;
            int rc = tl_anomalies_add(out, &row, b);
            if (rc != TL_DET_OK) return rc;
            continue;
        }
        int at_end = tl_state_at(v, side, v->capture_end_ns);
        tl_claim c;
        if (!in(WAITING, at_end) && gave_up == NULL) {
            if (b->failed) return TL_DET_NOMEM;
            b->n = 0; /* never waiting for it in the capture: nothing missing */
            continue;
        }
        S(" and it was never acknowledged: ");
        if (nlost) {
            S("the ACKs ");
            WHO(peer);
            S(" sent were lost on the way");
        } else {
            S("no ACK from ");
            WHO(peer);
            S(" arrived");
        }
        S("; ");
        if (in(WAITING, at_end)) {
            S("it is left in ");
            S(TL_STATE_NAMES[at_end]);
            S(" at the end of the capture");
            c = claim(side, at_end, v->capture_end_ns);
        } else {
            S("it left ");
            S(TL_STATE_NAMES[gave_up->from_state]);
            S(" at ");
            CLOCK(gave_up->ts_ns);
            S(" (");
            event_text(b, gave_up);
            S(") without it");
            c = claim(side, gave_up->from_state, gave_up->ts_ns - 1);
        }
        tl_row row = row_of(v, first->ts_ns, side, TL_ANOMALY_MISSING_FINAL_ACK, first->frame);
        row.claims = &c;
        row.nclaims = 1;
        int rc = tl_anomalies_add(out, &row, b);
        if (rc != TL_DET_OK) return rc;
    }
    return TL_DET_OK;
}

int tl_judge_simultaneous_close(const tl_view *v, tl_anomalies *out, tl_buf *b) {
    for (size_t i = 0; i < v->ntrans; i++) {
        const tl_det_transition *t = &v->trans[i];
        if (t->to_state != TL_STATE_CLOSING) continue;
        WHO(t->side);
        S(" received the peer's FIN at ");
        CLOCK(t->ts_ns);
        S(" before the ACK of its own: both sides closed at once (FINs crossed) and pass "
          "through CLOSING; harmless, but both end in TIME_WAIT");
        tl_claim c = claim(t->side, TL_STATE_CLOSING, t->ts_ns);
        tl_row row = row_of(v, t->ts_ns, t->side, TL_ANOMALY_SIMULTANEOUS_CLOSE, t->frame);
        row.claims = &c;
        row.nclaims = 1;
        int rc = tl_anomalies_add(out, &row, b);
        if (rc != TL_DET_OK) return rc;
    }
    return TL_DET_OK;
}

int tl_judge_simultaneous_open(const tl_view *v, tl_anomalies *out, tl_buf *b) {
    for (size_t i = 0; i < v->ntrans; i++) {
        const tl_det_transition *t = &v->trans[i];
        if (!(t->from_state == TL_STATE_SYN_SENT && t->to_state == TL_STATE_SYN_RECEIVED))
            continue;
        /* both sides are clients: the row names the one with the lower address */
        const tl_det_record *r = v->r;
        int c = tl_text_cmp(r->client_addr, r->server_addr);
        int lower = c < 0 || (c == 0 && r->client_port < r->server_port);
        WHO(CLIENT);
        S(" and ");
        WHO(SERVER);
        S(" both sent SYN (at ");
        CLOCK(t->ts_ns);
        S("): a simultaneous open; both connect()ed to each other");
        tl_row row = row_of(v, t->ts_ns, lower ? CLIENT : SERVER,
                            TL_ANOMALY_SIMULTANEOUS_OPEN, t->frame);
        return tl_anomalies_add(out, &row, b);
    }
    return TL_DET_OK;
}

/* ------------------------------------------------------------------ notes.py */
int tl_judge_notes(const tl_view *v, tl_anomalies *out, tl_buf *b) {
    int rc;
    for (int side = CLIENT; side <= SERVER; side++) {
        int peer = 1 - side;
        const tl_det_note *note = named(v, TL_ODD_HALF_CLOSE, side, NULL);
        if (note != NULL) {
            WHO(side);
            S(" shut down writing (sent FIN) and ");
            WHO(peer);
            S(" went on sending data, which ");
            S(TL_SIDE_NAMES[side]);
            S(" acknowledged at ");
            CLOCK(note->ts_ns);
            S(": a half-close (shutdown(SHUT_WR)); fine if intended");
            tl_row row = row_of(v, note->ts_ns, side, TL_ANOMALY_HALF_CLOSE, note->frame);
            if ((rc = tl_anomalies_add(out, &row, b)) != TL_DET_OK) return rc;
        }
        note = named(v, TL_ODD_SILENCE_RTX, side, NULL);
        if (note != NULL) {
            int64_t heard = last_ts(v->r, peer);
            int back = heard != TL_NONE && heard > note->ts_ns;
            WHO(side);
            S(" retransmitted data from ");
            CLOCK(note->ts_ns);
            S(" into silence; ");
            WHO(peer);
            if (back) {
                S(" answered again at ");
                CLOCK(heard);
                S(": the path or the peer was gone for a while (half-open meanwhile)");
            } else {
                S(" never answered: the peer is gone or unreachable (half-open); only a "
                  "timeout or keep-alive will tell the application");
            }
            tl_row row = row_of(v, note->ts_ns, side, TL_ANOMALY_HALF_OPEN, note->frame);
            row.severity = back ? TL_SEVERITY_WARNING : TL_SEVERITY_ERROR;
            if ((rc = tl_anomalies_add(out, &row, b)) != TL_DET_OK) return rc;
        }
        note = named(v, TL_ODD_KEEPALIVE_PROBE, side, NULL);
        if (note != NULL) {
            int64_t probes = (int64_t)count_named(v, TL_ODD_KEEPALIVE_PROBE, side);
            WHO(side);
            S(" sent ");
            tl_buf_int(b, probes);
            S(" keep-alive probe");
            plural(b, probes);
            S(" on the idle connection from ");
            CLOCK(note->ts_ns);
            S(" (SO_KEEPALIVE); information");
            tl_row row = row_of(v, note->ts_ns, side, TL_ANOMALY_KEEPALIVE, note->frame);
            if ((rc = tl_anomalies_add(out, &row, b)) != TL_DET_OK) return rc;
        }
    }
    const tl_det_note *note = named(v, TL_ODD_PORT_REUSE, -1, NULL);
    if (note != NULL) {
        /* a TIME_WAIT socket is there to meet reuse: info; an open socket: warning */
        int normal = 0;
        if (note->facts == TL_FACTS_PORT_REUSE && note->nsockets > 0) {
            normal = 1;
            for (size_t i = 0; i < note->nsockets; i++)
                if (note->sockets[i].state != TL_STATE_TIME_WAIT) normal = 0;
        }
        WHO(CLIENT);
        S(" at ");
        CLOCK(note->ts_ns);
        S(": ");
        tl_buf_text(b, note->detail);
        if (normal) S("; normal: TIME_WAIT is there for this");
        tl_row row = row_of(v, note->ts_ns, CLIENT, TL_ANOMALY_PORT_REUSE, note->frame);
        row.severity = normal ? TL_SEVERITY_INFO : TL_SEVERITY_WARNING;
        if ((rc = tl_anomalies_add(out, &row, b)) != TL_DET_OK) return rc;
    }
    const tl_det_record *r = v->r;
    if (r->mid_stream) {
        S("the capture began after this connection's handshake (first packet at ");
        CLOCK(r->first_ts_ns);
        S("): early states are inferred and the roles guessed from the ports");
        tl_row row = row_of(v, r->first_ts_ns, CLIENT, TL_ANOMALY_MID_STREAM, r->first_frame);
        if ((rc = tl_anomalies_add(out, &row, b)) != TL_DET_OK) return rc;
    }
    return TL_DET_OK;
}
