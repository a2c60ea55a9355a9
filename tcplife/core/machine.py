"""The per-side TCP state machine, as data.

Owns: which state one side moves to when it sends or (by deduction) receives one kind of
segment. The same table serves both sides: events are relative to the side being updated
(`SEND_*` it sent the segment, `RECV_*` its peer did). It knows nothing of sequence
numbers, timers, captures or which side is the client: the tracker classifies segments
into these events (checking that a FIN is covered by an ACK, that an RST is plausible,
that a segment is not a retransmission) and feeds them in order: for a segment from A to
B, first A's `SEND_*` event, then B's `RECV_ACK_*` event for the ACK field, then B's
`RECV_SYN/FIN/RST` event for the control bits.

A third grid holds the changes no segment of the side's own makes: its timers running out,
a new incarnation of the 4-tuple, a TIME_WAIT taking the peer's new SYN, and the server's
initial state decided by its first answer. Every state change the tracker makes is a cell
of these grids (`tcplife.core.changes` looks each one up).

Every (state, event) cell is explicit: a next state, ``-`` (stay, nothing to note) or
``!name`` (stay and note the oddity ``name``: an observer keeps going, see STYLE.md).
Rules follow RFC 9293 section 3.10 and Linux where they differ (noted below).
"""

from __future__ import annotations

from typing import NamedTuple

from tcplife.core.states import Name, Odd, State


class Ev(Name):
    """A segment kind relative to the side being updated."""

    SEND_SYN = "send SYN"  #: SYN without ACK
    SEND_SYNACK = "send SYN-ACK"
    SEND_FIN = "send FIN"  #: first transmission of this side's FIN
    SEND_RST = "send RST"
    SEND_ACK = "send ACK"  #: data or pure ACK, no SYN/FIN/RST
    RECV_SYN = "recv SYN"
    RECV_SYNACK = "recv SYN-ACK"  #: a SYN-ACK acknowledging this side's SYN
    RECV_ACK_SYN = "recv ACK of SYN"  #: a non-SYN segment acknowledging this side's SYN
    RECV_ACK_FIN = "recv ACK of FIN"  #: an ACK covering this side's FIN
    RECV_FIN = "recv FIN"
    RECV_RST = "recv RST"  #: an RST the tracker judged acceptable
    RECV_ACK = "recv ACK"  #: data or pure ACK with nothing new for this side's state
    # Changes no segment of this side's own makes, each a column of the third grid:
    TIMEOUT = "timeout"  #: a timer of this side ran out (state timeout, retransmissions)
    #: this side sent a new SYN on the 4-tuple: its old socket is gone
    NEW_SYN = "new SYN on the 4-tuple"
    #: the peer's new SYN on the 4-tuple was taken by this side's TIME_WAIT socket
    TW_TAKES_SYN = "recv SYN (new incarnation)"
    #: the server answered the client's first SYN with a SYN-ACK: it was listening
    SHOWN_LISTENING = "shown listening"
    #: the server answered with RST or a SYN of its own, or never answered: it had no
    #: listening socket for the SYN
    SHOWN_CLOSED = "shown closed"


# The members as module names, for the per-segment code (see states.py).
SEND_SYN = Ev.SEND_SYN
SEND_SYNACK = Ev.SEND_SYNACK
SEND_FIN = Ev.SEND_FIN
SEND_RST = Ev.SEND_RST
SEND_ACK = Ev.SEND_ACK
RECV_SYN = Ev.RECV_SYN
RECV_SYNACK = Ev.RECV_SYNACK
RECV_ACK_SYN = Ev.RECV_ACK_SYN
RECV_ACK_FIN = Ev.RECV_ACK_FIN
RECV_FIN = Ev.RECV_FIN
RECV_RST = Ev.RECV_RST
RECV_ACK = Ev.RECV_ACK
TIMEOUT = Ev.TIMEOUT
NEW_SYN = Ev.NEW_SYN
TW_TAKES_SYN = Ev.TW_TAKES_SYN
SHOWN_LISTENING = Ev.SHOWN_LISTENING
SHOWN_CLOSED = Ev.SHOWN_CLOSED


class Stay(NamedTuple):
    """A cell that keeps the state; ``note`` names an oddity worth recording, or is None."""

    note: Odd | None


# Two grids, one per direction; every cell of both is explicit. Abbreviations: _ABBREV.
_SEND_COLUMNS = (Ev.SEND_SYN, Ev.SEND_SYNACK, Ev.SEND_FIN, Ev.SEND_RST, Ev.SEND_ACK)
_RECV_COLUMNS = (Ev.RECV_SYN, Ev.RECV_SYNACK, Ev.RECV_ACK_SYN, Ev.RECV_ACK_FIN, Ev.RECV_FIN,
                 Ev.RECV_RST, Ev.RECV_ACK)
_OTHER_COLUMNS = (Ev.TIMEOUT, Ev.NEW_SYN, Ev.TW_TAKES_SYN, Ev.SHOWN_LISTENING,
                  Ev.SHOWN_CLOSED)

_ABBREV = {
    "UNK": State.UNKNOWN, "CLOSED": State.CLOSED, "LISTEN": State.LISTEN,
    "SSENT": State.SYN_SENT,
    "SRCVD": State.SYN_RECEIVED,
    "ESTAB": State.ESTABLISHED, "FW1": State.FIN_WAIT_1, "FW2": State.FIN_WAIT_2,
    "CW": State.CLOSE_WAIT, "CLOSING": State.CLOSING, "LACK": State.LAST_ACK,
    "TW": State.TIME_WAIT,
}

# Notes:
#   syn_in_sync   SYN on a synchronized connection (Linux answers with a challenge ACK)
#   rst_bad_ack   SYN_SENT answering an unacceptable ACK with RST; it keeps trying
#                 (Linux tcp_rcv_synsent_state_process: reset_and_undo)
#   from_closed   a side we believe closed is still sending
#   fin_no_syn    FIN from or to a side that has not synchronized
#   ack_no_syn    an ACK reaching a SYN_SENT side without a SYN
#   rst_listener  an RST that a listening socket ignores
_SEND_TEXT = """
state        | sSYN         sSYNACK sFIN        sRST         sACK
UNKNOWN      | SSENT        SRCVD   FW1         CLOSED       ESTAB
CLOSED       | SSENT        SRCVD   !fin_no_syn -            !from_closed
LISTEN       | SSENT        SRCVD   !fin_no_syn CLOSED       !from_closed
SYN_SENT     | -            SRCVD   !fin_no_syn !rst_bad_ack ESTAB
SYN_RECEIVED | !syn_in_sync -       FW1         CLOSED       ESTAB
ESTABLISHED  | !syn_in_sync -       FW1         CLOSED       -
FIN_WAIT_1   | !syn_in_sync -       -           CLOSED       -
FIN_WAIT_2   | !syn_in_sync -       -           CLOSED       -
CLOSE_WAIT   | !syn_in_sync -       LACK        CLOSED       -
CLOSING      | !syn_in_sync -       -           CLOSED       -
LAST_ACK     | !syn_in_sync -       -           CLOSED       -
TIME_WAIT    | !syn_in_sync -       -           CLOSED       -
"""
_RECV_TEXT = """
state        | rSYN         rSYNACK rACKSYN     rACKFIN rFIN        rRST          rACK
UNKNOWN      | -            -       -           -       CW          CLOSED        -
CLOSED       | -            -       -           -       -           -             -
LISTEN       | -            -       -           -       !fin_no_syn !rst_listener -
SYN_SENT     | SRCVD        ESTAB   !ack_no_syn -       !fin_no_syn CLOSED        -
SYN_RECEIVED | -            ESTAB   ESTAB       -       CW          CLOSED        -
ESTABLISHED  | !syn_in_sync -       -           -       CW          CLOSED        -
FIN_WAIT_1   | !syn_in_sync -       -           FW2     CLOSING     CLOSED        -
FIN_WAIT_2   | !syn_in_sync -       -           -       TW          CLOSED        -
CLOSE_WAIT   | !syn_in_sync -       -           -       -           CLOSED        -
CLOSING      | !syn_in_sync -       -           TW      -           CLOSED        -
LAST_ACK     | !syn_in_sync -       -           CLOSED  -           CLOSED        -
TIME_WAIT    | -            -       -           -       -           CLOSED        -
"""
# The third grid: what no segment of the side's own shows.
#   timeout   TIME_WAIT ends (2*MSL), an orphaned FIN_WAIT_2 (tcp_fin_timeout), SYN and
#             SYN-ACK retries run out (tcp_syn_retries, tcp_synack_retries), data
#             retransmitted into silence (tcp_retries2, in the states that send data);
#             the tracker arms each timer only in the states listed here
#   newSYN    the side sends a SYN with a new ISN on the 4-tuple: its old socket is gone
#             (the new one is a new connection instance)
#   twSYN     a TIME_WAIT socket takes the peer's new SYN (Linux TCP_TW_SYN)
#   listen /  the server's state before the client's SYN, shown by its first answer (or
#   closed    its silence): the initial state is decided, not a change (no transition)
_OTHER_TEXT = """
state        | timeout newSYN twSYN  listen closed
UNKNOWN      | -       CLOSED -      LISTEN CLOSED
CLOSED       | -       -      -      -      -
LISTEN       | -       -      -      -      -
SYN_SENT     | CLOSED  CLOSED -      -      -
SYN_RECEIVED | CLOSED  CLOSED -      -      -
ESTABLISHED  | CLOSED  CLOSED -      -      -
FIN_WAIT_1   | CLOSED  CLOSED -      -      -
FIN_WAIT_2   | CLOSED  CLOSED -      -      -
CLOSE_WAIT   | CLOSED  CLOSED -      -      -
CLOSING      | CLOSED  CLOSED -      -      -
LAST_ACK     | CLOSED  CLOSED -      -      -
TIME_WAIT    | CLOSED  CLOSED CLOSED -      -
"""
# Rows worth a word:
# - UNKNOWN (capture began mid-stream) behaves as ESTABLISHED when the side's own
#   segments show it synchronized; a FIN seen first implies it was ESTABLISHED.
# - SYN_SENT + recv SYN -> SYN_RECEIVED: simultaneous open (RFC 9293 3.10.7.3; Linux sets
#   TCP_SYN_RECV on receipt and answers SYN-ACK).
# - SYN_SENT + send ACK -> ESTABLISHED covers a SYN-ACK the capture missed, and
#   SYN_RECEIVED + send ACK -> ESTABLISHED an ACK it missed: a Linux request socket sends
#   nothing but SYN-ACKs, so a plain segment from that side shows it established (this
#   matters in captures of one direction only).
# - TIME_WAIT + recv RST -> CLOSED: Linux kills TIME_WAIT on an RST unless
#   net.ipv4.tcp_rfc1337=1 (tcp_timewait_state_process).
# - TIME_WAIT + send RST -> CLOSED: a TIME_WAIT socket answering an unacceptable segment
#   with RST is descheduled (tcp_v4_rcv, TCP_TW_RST).
# - SYN_RECEIVED + recv RST -> CLOSED: Linux drops the request socket (RFC: back to LISTEN,
#   which for this 4-tuple is the same thing: ss no longer lists it).


def _parse_cell(text: str) -> State | Stay:
    if text == "-":
        return Stay(None)
    if text.startswith("!"):
        return Stay(Odd(text[1:]))
    return _ABBREV[text]


def _parse_table(text: str, columns: tuple[Ev, ...]) -> dict[tuple[State, Ev], State | Stay]:
    table: dict[tuple[State, Ev], State | Stay] = {}
    for line in text.strip().splitlines()[1:]:
        name, _, rest = line.partition("|")
        cells = rest.split()
        state = State[name.strip()]
        if len(cells) != len(columns):
            raise ValueError(f"state table row {state} has {len(cells)} cells")
        for event, cell in zip(columns, cells, strict=True):
            table[(state, event)] = _parse_cell(cell)
    return table


#: The transition table: (state, event) -> next state, or Stay(note).
TABLE: dict[tuple[State, Ev], State | Stay] = {
    **_parse_table(_SEND_TEXT, _SEND_COLUMNS), **_parse_table(_RECV_TEXT, _RECV_COLUMNS),
    **_parse_table(_OTHER_TEXT, _OTHER_COLUMNS)}
#: the events that decide a side's initial state rather than change it (no transition)
DECIDING = frozenset({Ev.SHOWN_LISTENING, Ev.SHOWN_CLOSED})


def step(state: State, event: Ev) -> State | Stay:
    """Look up one side's next state. Every (state, event) pair has a cell."""
    return TABLE[(state, event)]


#: States in which a side has a socket the kernel would list for the 4-tuple.
ALIVE = frozenset(s for s in State if s not in (State.CLOSED, State.LISTEN, State.UNKNOWN))
#: Synchronized states (RFC 9293): the handshake is complete from this side's view.
SYNCHRONIZED = frozenset({State.ESTABLISHED, State.FIN_WAIT_1, State.FIN_WAIT_2,
                          State.CLOSE_WAIT, State.CLOSING, State.LAST_ACK, State.TIME_WAIT})
#: States after this side sent its FIN.
FIN_SENT = frozenset({State.FIN_WAIT_1, State.FIN_WAIT_2, State.CLOSING, State.LAST_ACK,
                      State.TIME_WAIT})


# ---------------------------------------------------------------- the joint table
class Joint(Name):
    """What the two sides' states together make of a connection instance."""

    #: a new SYN reusing the 4-tuple ends the old instance: its receiver holds no socket
    END = "end"
    #: the receiver's TIME_WAIT socket may take the SYN (`evidence.tw_takes`) or, when the
    #: SYN cannot tell, lives on beside the new attempt until its answer shows
    TW = "tw"
    #: the receiver's live socket answers the SYN with a challenge ACK (RFC 5961 4): the
    #: old instance lives on beside the new attempt until the new client's RST kills it
    LIVES = "lives"
    #: no socket left that a segment could reach: forgotten after ``closed_linger``
    OVER = "over"
    #: a side still holds a socket, or may
    OPEN = "open"


# What a new SYN reusing the 4-tuple (with another ISN: `evidence.is_new_incarnation`)
# does to the old instance, by the state of the side it is sent to (the sender's old
# socket is gone: its NEW_SYN cell). After the receiver's own change (TW_TAKES_SYN), the
# row of its new state applies.
_REUSE_TEXT = """
receiver     | old instance
UNKNOWN      | end
CLOSED       | end
LISTEN       | end
SYN_SENT     | lives
SYN_RECEIVED | lives
ESTABLISHED  | lives
FIN_WAIT_1   | lives
FIN_WAIT_2   | lives
CLOSE_WAIT   | lives
CLOSING      | lives
LAST_ACK     | lives
TIME_WAIT    | tw
"""

# The instance as a pair: client state (rows) by server state (columns). Over only when
# the client is CLOSED and the server CLOSED or LISTEN (a listener holds no socket of the
# 4-tuple); an UNKNOWN side may still hold one the capture has not shown.
_PAIR_TEXT = """
client \\ server | UNK  CLOSED LISTEN SSENT SRCVD ESTAB FW1  FW2  CW   CLOSING LACK TW
UNKNOWN      | open open open open open open open open open open open open
CLOSED       | open over over open open open open open open open open open
LISTEN       | open open open open open open open open open open open open
SYN_SENT     | open open open open open open open open open open open open
SYN_RECEIVED | open open open open open open open open open open open open
ESTABLISHED  | open open open open open open open open open open open open
FIN_WAIT_1   | open open open open open open open open open open open open
FIN_WAIT_2   | open open open open open open open open open open open open
CLOSE_WAIT   | open open open open open open open open open open open open
CLOSING      | open open open open open open open open open open open open
LAST_ACK     | open open open open open open open open open open open open
TIME_WAIT    | open open open open open open open open open open open open
"""


def _parse_reuse(text: str) -> dict[State, Joint]:
    out: dict[State, Joint] = {}
    for line in text.strip().splitlines()[1:]:
        name, _, cell = line.partition("|")
        out[State[name.strip()]] = Joint(cell.strip())
    return out


def _parse_pairs(text: str) -> dict[tuple[State, State], Joint]:
    head, *rows = text.strip().splitlines()
    columns = [_ABBREV[c] for c in head.partition("|")[2].split()]
    out: dict[tuple[State, State], Joint] = {}
    for line in rows:
        name, _, rest = line.partition("|")
        cells = rest.split()
        if len(cells) != len(columns):
            raise ValueError(f"pair table row {name.strip()} has {len(cells)} cells")
        for server, cell in zip(columns, cells, strict=True):
            out[(State[name.strip()], server)] = Joint(cell)
    return out


#: The joint table, first part: receiver state -> what a reuse SYN does to the old instance.
REUSE: dict[State, Joint] = _parse_reuse(_REUSE_TEXT)
#: The joint table, second part: (client state, server state) -> OVER or OPEN.
PAIR: dict[tuple[State, State], Joint] = _parse_pairs(_PAIR_TEXT)
