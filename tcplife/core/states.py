"""The vocabulary of the public contract: per-side TCP states, sides, close kinds.

Owns: names only. Every other module imports them from here; nothing here knows how
states change (that is `machine.py`).
"""

from __future__ import annotations

from enum import Enum


class Name(str, Enum):
    """The base of the vocabulary's enums: a member is its value, as a str, in ``str()``
    and formatting (what the tables and sentences print) as in comparisons."""

    def __str__(self) -> str:
        return self.value


class State(Name):
    """One side's TCP state, as RFC 9293 names it (and `ss` shows it)."""

    UNKNOWN = "UNKNOWN"  #: the capture has not yet shown enough to tell
    CLOSED = "CLOSED"  #: no socket (ss no longer lists it)
    LISTEN = "LISTEN"  #: presumed passive open, before the server answered
    SYN_SENT = "SYN_SENT"  #: sent SYN, waiting for SYN-ACK
    SYN_RECEIVED = "SYN_RECEIVED"  #: received SYN and answered SYN-ACK
    ESTABLISHED = "ESTABLISHED"  #: handshake complete, data may flow both ways
    FIN_WAIT_1 = "FIN_WAIT_1"  #: sent FIN, not yet acknowledged
    FIN_WAIT_2 = "FIN_WAIT_2"  #: own FIN acknowledged, waiting for the peer's FIN
    CLOSE_WAIT = "CLOSE_WAIT"  #: received FIN, the application has not closed yet
    CLOSING = "CLOSING"  #: sent FIN and received the peer's FIN before its ACK of ours
    LAST_ACK = "LAST_ACK"  #: received FIN, then sent FIN; waiting for its ACK
    TIME_WAIT = "TIME_WAIT"  #: both FINs done; waiting 2*MSL before forgetting the 4-tuple


# The members as module names, for the per-segment code: on Python 3.11 each `State.X`
# goes through the slow attribute hook that EnumType's __getattr__ installs (~90 ns, against
# ~10 ns for a module global; 3.12 dropped the hook): 5 % of the analysis of a capture of
# many short connections.
UNKNOWN = State.UNKNOWN
CLOSED = State.CLOSED
LISTEN = State.LISTEN
SYN_SENT = State.SYN_SENT
SYN_RECEIVED = State.SYN_RECEIVED
ESTABLISHED = State.ESTABLISHED
FIN_WAIT_1 = State.FIN_WAIT_1
FIN_WAIT_2 = State.FIN_WAIT_2
CLOSE_WAIT = State.CLOSE_WAIT
CLOSING = State.CLOSING
LAST_ACK = State.LAST_ACK
TIME_WAIT = State.TIME_WAIT


#: Order used for categorical dtypes and for tables.
STATE_ORDER: tuple[str, ...] = tuple(s.value for s in State)

#: `ss -tan` state names mapped to ours.
SS_STATE_NAMES: dict[str, State] = {
    "LISTEN": State.LISTEN,
    "SYN-SENT": State.SYN_SENT,
    "SYN-RECV": State.SYN_RECEIVED,
    "ESTAB": State.ESTABLISHED,
    "FIN-WAIT-1": State.FIN_WAIT_1,
    "FIN-WAIT-2": State.FIN_WAIT_2,
    "CLOSE-WAIT": State.CLOSE_WAIT,
    "CLOSING": State.CLOSING,
    "LAST-ACK": State.LAST_ACK,
    "TIME-WAIT": State.TIME_WAIT,
    "UNCONN": State.CLOSED,
    "CLOSED": State.CLOSED,
}

class Odd(Name):
    """An oddity's kind: something surprising the tracker noted and went past (the
    ``oddities`` table's ``name``; docs/oddities in the README's list)."""

    # cells of the state table (`tcplife.core.machine`)
    SYN_IN_SYNC = "syn_in_sync"  #: SYN on a synchronized connection (a challenge ACK)
    RST_BAD_ACK = "rst_bad_ack"  #: SYN_SENT answering an unacceptable ACK with RST
    FROM_CLOSED = "from_closed"  #: a side believed closed still sends
    FIN_NO_SYN = "fin_no_syn"  #: FIN from or to a side that has not synchronized
    ACK_NO_SYN = "ack_no_syn"  #: an ACK reaching a SYN_SENT side without a SYN
    RST_LISTENER = "rst_listener"  #: an RST that a listening socket ignores
    # the tracker's rules (`tcplife.core.rules`, `tcplife.core.tracker`)
    CAPTURE_DUPLICATE = "capture_duplicate"  #: the same segment captured twice
    SYN_WITH_FIN = "syn_with_fin"  #: SYN with FIN: a scan probe
    SYNACK_ISN_CHANGED = "synack_isn_changed"  #: SYN-ACKs with two ISNs for one SYN
    SYN_RTX = "syn_rtx"
    SYNACK_RTX = "synack_rtx"
    BAD_SYNACK = "bad_synack"  #: a SYN-ACK that acknowledges something else than the SYN
    FIN_RTX = "fin_rtx"  #: facts: `FinRtx`
    FIN_MOVED = "fin_moved"  #: a FIN at another sequence number than the first
    KEEPALIVE_PROBE = "keepalive_probe"
    SILENCE_RTX = "silence_rtx"  #: data retransmitted without progress
    HALF_CLOSE = "half_close"  #: acknowledged new data after its own FIN
    RETRACTED = "retracted"  #: facts: `Retracted`
    ACK_LOST = "ack_lost"  #: facts: `AckLost`
    RST_SENT = "rst_sent"  #: facts: `RstSent`
    RST_IGNORED = "rst_ignored"  #: an RST outside what the receiver would accept
    PORT_REUSE = "port_reuse"  #: facts: `PortReuse`
    GIVEN_UP = "given_up"  #: live mode gave the flow up (idle, flow table full)


CLIENT = "client"
SERVER = "server"
SIDES: tuple[str, str] = (CLIENT, SERVER)

class CloseKind(Name):
    """How a connection instance ended: the connections table's ``close_kind``."""

    FIN = "fin"  #: both sides closed with FIN (or one did and the other is gone)
    RST = "rst"  #: a reset ended it
    REFUSED = "refused"  #: the server answered the SYN with RST: nothing listening
    UNANSWERED = "unanswered"  #: the SYNs got no answer
    INCOMPLETE = "incomplete"  #: the handshake never completed
    OPEN = "open"  #: still open at the end of the capture
    TIMEOUT = "timeout"  #: a side's timer ended it (retransmissions, handshake retries)


#: Values of the connections table's ``close_kind`` column.
CLOSE_KINDS: tuple[str, ...] = tuple(k.value for k in CloseKind)


class AnomalyKind(Name):
    """The anomaly kinds of the contract (``shared/CONTRACT.md``), in its order."""

    REFUSED = "refused"
    SYN_UNANSWERED = "syn_unanswered"
    LISTEN_OVERFLOW = "listen_overflow"
    HANDSHAKE_INCOMPLETE = "handshake_incomplete"
    RST_ON_CLOSE_UNREAD_DATA = "rst_on_close_unread_data"
    ABORTIVE_CLOSE = "abortive_close"
    LINGERING_CLOSE_WAIT = "lingering_close_wait"
    FIN_WAIT_2_TIMEOUT = "fin_wait_2_timeout"
    MISSING_FINAL_ACK = "missing_final_ack"
    FINAL_ACK_DELAYED = "final_ack_delayed"
    SIMULTANEOUS_CLOSE = "simultaneous_close"
    SIMULTANEOUS_OPEN = "simultaneous_open"
    HALF_CLOSE = "half_close"
    WRITE_AFTER_CLOSE = "write_after_close"
    HALF_OPEN = "half_open"
    PORT_REUSE = "port_reuse"
    TIME_WAIT_ACCUMULATION = "time_wait_accumulation"
    KEEPALIVE = "keepalive"
    MID_STREAM = "mid_stream"


#: The anomaly kinds of the contract, as its column values.
ANOMALY_KINDS: tuple[str, ...] = tuple(k.value for k in AnomalyKind)


class Severity(Name):
    """An anomaly row's ``severity``, worst first: ``error`` (something failed or leaks),
    ``warning`` (worth a look), ``info`` (normal TCP, noted)."""

    ERROR = "error"
    WARNING = "warning"
    INFO = "info"


SEVERITIES: tuple[str, ...] = tuple(s.value for s in Severity)
ERROR, WARNING, INFO = SEVERITIES


class Confidence(Name):
    """An anomaly row's ``confidence``: ``certain`` (the packets show it), ``likely`` (the
    packets point to it; another cause is conceivable but rare), ``possible`` (the wire
    cannot tell this cause from another one, which the row names too)."""

    CERTAIN = "certain"
    LIKELY = "likely"
    POSSIBLE = "possible"


CONFIDENCES: tuple[str, ...] = tuple(c.value for c in Confidence)
CERTAIN, LIKELY, POSSIBLE = CONFIDENCES

#: Each kind's severity where its detector does not judge the situation otherwise
#: (docs/anomalies.md says when a row is more or less severe than this).
DEFAULT_SEVERITY: dict[str, str] = {
    "refused": ERROR, "syn_unanswered": ERROR, "listen_overflow": ERROR,
    "handshake_incomplete": WARNING, "rst_on_close_unread_data": WARNING,
    "abortive_close": WARNING, "lingering_close_wait": ERROR,
    "fin_wait_2_timeout": WARNING, "missing_final_ack": WARNING,
    "final_ack_delayed": INFO, "simultaneous_close": INFO, "simultaneous_open": INFO,
    "half_close": INFO, "write_after_close": WARNING, "half_open": ERROR,
    "port_reuse": INFO, "time_wait_accumulation": WARNING, "keepalive": INFO,
    "mid_stream": INFO,
}
