"""The per-side state table driven directly, as h11's ``test_state.py`` drives its own.

Two levels: properties every cell must have (the table is complete; a synchronized side
never goes back to the handshake; receiving never revives a closed side), and scenarios
with two ends wired together, one segment at a time, in the order the tracker feeds the
table (for a segment from A to B: A's ``SEND_*`` event, then B's ``RECV_ACK_*`` for the
ACK field, then B's ``RECV_SYN/FIN/RST`` for the control bits). The expected states are
RFC 9293's (figures 5-7 and section 3.10) and Linux's where the module says it differs;
the kernel-grounded tests (tests/test_golden.py) check the whole tracker against ``ss``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from tcplife.core.machine import (
    ALIVE,
    DECIDING,
    FIN_SENT,
    PAIR,
    REUSE,
    SYNCHRONIZED,
    TABLE,
    Ev,
    Joint,
    Stay,
    step,
)
from tcplife.core.states import State

S = State
HANDSHAKE = {S.SYN_SENT, S.SYN_RECEIVED}


# --- properties of every cell ------------------------------------------------------------


def test_every_state_and_event_has_a_cell() -> None:
    assert set(TABLE) == {(s, e) for s in State for e in Ev}
    for cell in TABLE.values():
        assert isinstance(cell, (State, Stay))


@pytest.mark.parametrize("state", sorted(SYNCHRONIZED, key=lambda s: s.value))
def test_a_synchronized_side_never_returns_to_the_handshake(state: State) -> None:
    for event in Ev:
        cell = step(state, event)
        if isinstance(cell, State):
            assert cell is S.CLOSED or cell in SYNCHRONIZED, (state, event, cell)


def test_time_wait_leaves_only_for_closed() -> None:
    for event in Ev:
        cell = step(S.TIME_WAIT, event)
        assert isinstance(cell, Stay) or cell is S.CLOSED, event


def test_receiving_never_moves_a_closed_side() -> None:
    # a closed socket is gone: what arrives for it changes nothing (the RST it may send
    # is the peer's business)
    for event in Ev:
        if event.name.startswith("RECV"):
            assert isinstance(step(S.CLOSED, event), Stay), event


def test_a_reset_closes_every_socket_that_accepts_it() -> None:
    for state in ALIVE:
        assert step(state, Ev.RECV_RST) is S.CLOSED, state
        assert step(state, Ev.SEND_RST) is S.CLOSED or state is S.SYN_SENT, state


def test_fin_sent_states_are_reached_only_by_sending_a_fin() -> None:
    """A side enters FIN_WAIT_1 or LAST_ACK (from outside FIN_SENT) only on its own FIN."""
    for (state, event), cell in TABLE.items():
        if isinstance(cell, State) and cell in FIN_SENT and state not in FIN_SENT:
            assert event is Ev.SEND_FIN, (state, event, cell)


def test_notes_are_named() -> None:
    notes = {cell.note for cell in TABLE.values() if isinstance(cell, Stay) and cell.note}
    assert notes == {"syn_in_sync", "rst_bad_ack", "from_closed", "fin_no_syn",
                     "ack_no_syn", "rst_listener"}


# --- two ends wired together -------------------------------------------------------------


@dataclass
class Wire:
    """A client and a server, each with its state, updated by the table alone."""

    client: State = S.CLOSED
    server: State = S.LISTEN
    notes: list[tuple[str, str]] = field(default_factory=list)

    def apply(self, side: str, event: Ev) -> None:
        cell = step(getattr(self, side), event)
        if isinstance(cell, State):
            setattr(self, side, cell)
        elif cell.note:
            self.notes.append((side, cell.note))

    def segment(self, sender: str, *events: Ev) -> tuple[State, State]:
        """One segment: ``events`` are the sender's SEND_* event first, then the
        receiver's events in the tracker's order."""
        receiver = "server" if sender == "client" else "client"
        self.apply(sender, events[0])
        for event in events[1:]:
            self.apply(receiver, event)
        return self.client, self.server


def test_open_and_client_close() -> None:
    """RFC 9293 figure 5 (with figure 6's close): the client closes first."""
    w = Wire()
    # a listener takes the SYN only when it answers (Linux may drop it: backlog full)
    assert w.segment("client", Ev.SEND_SYN, Ev.RECV_SYN) == (S.SYN_SENT, S.LISTEN)
    assert w.segment("server", Ev.SEND_SYNACK, Ev.RECV_SYNACK) == (S.ESTABLISHED,
                                                                   S.SYN_RECEIVED)
    assert w.segment("client", Ev.SEND_ACK, Ev.RECV_ACK_SYN) == (S.ESTABLISHED,
                                                                 S.ESTABLISHED)
    assert w.segment("client", Ev.SEND_ACK, Ev.RECV_ACK) == (S.ESTABLISHED, S.ESTABLISHED)
    assert w.segment("client", Ev.SEND_FIN, Ev.RECV_ACK, Ev.RECV_FIN) == (S.FIN_WAIT_1,
                                                                         S.CLOSE_WAIT)
    assert w.segment("server", Ev.SEND_ACK, Ev.RECV_ACK_FIN) == (S.FIN_WAIT_2, S.CLOSE_WAIT)
    assert w.segment("server", Ev.SEND_FIN, Ev.RECV_ACK, Ev.RECV_FIN) == (S.TIME_WAIT,
                                                                         S.LAST_ACK)
    assert w.segment("client", Ev.SEND_ACK, Ev.RECV_ACK_FIN) == (S.TIME_WAIT, S.CLOSED)
    assert w.notes == []


def test_fin_acked_in_the_same_segment() -> None:
    """The server's FIN carries the ACK of the client's FIN: FIN_WAIT_1 -> FIN_WAIT_2 ->
    TIME_WAIT within one segment, in the tracker's order (ACK field, then FIN)."""
    w = Wire(S.FIN_WAIT_1, S.CLOSE_WAIT)
    assert w.segment("server", Ev.SEND_FIN, Ev.RECV_ACK_FIN, Ev.RECV_FIN) == (S.TIME_WAIT,
                                                                             S.LAST_ACK)


def test_simultaneous_close() -> None:
    """RFC 9293 figure 6: both FINs cross; each side goes through CLOSING."""
    w = Wire(S.ESTABLISHED, S.ESTABLISHED)
    w.apply("client", Ev.SEND_FIN)
    w.apply("server", Ev.SEND_FIN)
    assert (w.client, w.server) == (S.FIN_WAIT_1, S.FIN_WAIT_1)
    w.apply("server", Ev.RECV_FIN)  # the client's FIN arrives, not acking the server's
    w.apply("client", Ev.RECV_FIN)
    assert (w.client, w.server) == (S.CLOSING, S.CLOSING)
    w.apply("client", Ev.RECV_ACK_FIN)
    w.apply("server", Ev.RECV_ACK_FIN)
    assert (w.client, w.server) == (S.TIME_WAIT, S.TIME_WAIT)


def test_simultaneous_open() -> None:
    """RFC 9293 figure 7: both send SYN; each SYN arrives in SYN_SENT."""
    w = Wire(S.CLOSED, S.CLOSED)
    w.apply("client", Ev.SEND_SYN)
    w.apply("server", Ev.SEND_SYN)
    assert (w.client, w.server) == (S.SYN_SENT, S.SYN_SENT)
    w.apply("server", Ev.RECV_SYN)
    w.apply("client", Ev.RECV_SYN)
    assert (w.client, w.server) == (S.SYN_RECEIVED, S.SYN_RECEIVED)
    assert w.segment("client", Ev.SEND_SYNACK, Ev.RECV_SYNACK) == (S.SYN_RECEIVED,
                                                                   S.ESTABLISHED)
    assert w.segment("server", Ev.SEND_SYNACK, Ev.RECV_SYNACK) == (S.ESTABLISHED,
                                                                   S.ESTABLISHED)


def test_refused() -> None:
    """No listener: the SYN meets a closed port, which answers RST (ECONNREFUSED)."""
    w = Wire(S.CLOSED, S.CLOSED)
    assert w.segment("client", Ev.SEND_SYN, Ev.RECV_SYN) == (S.SYN_SENT, S.CLOSED)
    assert w.segment("server", Ev.SEND_RST, Ev.RECV_RST) == (S.CLOSED, S.CLOSED)


@pytest.mark.parametrize("closer", ["client", "server"])
def test_abortive_close(closer: str) -> None:
    w = Wire(S.ESTABLISHED, S.ESTABLISHED)
    assert w.segment(closer, Ev.SEND_RST, Ev.RECV_RST) == (S.CLOSED, S.CLOSED)


def test_half_close_the_closed_half_still_receives() -> None:
    """The server shuts down its sending side; the client keeps sending data, which the
    server acknowledges from FIN_WAIT_2 (shutdown(SHUT_WR))."""
    w = Wire(S.ESTABLISHED, S.ESTABLISHED)
    w.segment("server", Ev.SEND_FIN, Ev.RECV_ACK, Ev.RECV_FIN)
    w.segment("client", Ev.SEND_ACK, Ev.RECV_ACK_FIN)
    assert (w.client, w.server) == (S.CLOSE_WAIT, S.FIN_WAIT_2)
    for _ in range(3):
        assert w.segment("client", Ev.SEND_ACK, Ev.RECV_ACK) == (S.CLOSE_WAIT, S.FIN_WAIT_2)
        assert w.segment("server", Ev.SEND_ACK, Ev.RECV_ACK) == (S.CLOSE_WAIT, S.FIN_WAIT_2)
    assert w.notes == []


def test_time_wait_killed_by_rst() -> None:
    """Linux kills a TIME_WAIT socket on an RST (tcp_rfc1337=0, the default)."""
    w = Wire(S.TIME_WAIT, S.CLOSED)
    assert w.segment("server", Ev.SEND_RST, Ev.RECV_RST) == (S.CLOSED, S.CLOSED)


def test_mid_stream_sides_start_unknown() -> None:
    """A capture that began mid-stream: a side's own segment shows it synchronized, a FIN
    seen first implies it was established."""
    w = Wire(S.UNKNOWN, S.UNKNOWN)
    assert w.segment("client", Ev.SEND_ACK, Ev.RECV_ACK) == (S.ESTABLISHED, S.UNKNOWN)
    assert w.segment("server", Ev.SEND_FIN, Ev.RECV_ACK, Ev.RECV_FIN) == (S.CLOSE_WAIT,
                                                                         S.FIN_WAIT_1)


@pytest.mark.parametrize(("state", "event", "note"), [
    (S.ESTABLISHED, Ev.SEND_SYN, "syn_in_sync"),
    (S.ESTABLISHED, Ev.RECV_SYN, "syn_in_sync"),
    (S.SYN_SENT, Ev.SEND_RST, "rst_bad_ack"),
    (S.CLOSED, Ev.SEND_ACK, "from_closed"),
    (S.LISTEN, Ev.RECV_FIN, "fin_no_syn"),
    (S.SYN_SENT, Ev.RECV_ACK_SYN, "ack_no_syn"),
    (S.LISTEN, Ev.RECV_RST, "rst_listener"),
])
def test_surprises_keep_the_state_and_are_noted(state: State, event: Ev, note: str) -> None:
    """An observer sees loss and oddities: it notes them and goes on (never raises)."""
    assert step(state, event) == Stay(note)


# --- the third grid: changes no segment of the side's own makes --------------------------

#: states a timer ends (tcplife.core.options): TIME_WAIT (2*MSL), an orphaned FIN_WAIT_2
#: (tcp_fin_timeout), SYN and SYN-ACK retries, and data retransmitted into silence
#: (tcp_retries2) in every state that sends data or a FIN
TIMER_STATES = {S.TIME_WAIT, S.FIN_WAIT_2, S.SYN_SENT, S.SYN_RECEIVED, S.ESTABLISHED,
                S.CLOSE_WAIT, S.FIN_WAIT_1, S.CLOSING, S.LAST_ACK}


@pytest.mark.parametrize("state", list(State))
def test_a_timer_closes_exactly_the_states_that_run_one(state: State) -> None:
    cell = step(state, Ev.TIMEOUT)
    if state in TIMER_STATES:
        assert cell is S.CLOSED
    else:
        assert cell == Stay(None)


@pytest.mark.parametrize("state", list(State))
def test_a_new_syn_replaces_any_socket_the_sender_had(state: State) -> None:
    """The sender of a SYN with a new ISN on the 4-tuple has no old socket left: every
    state that is one (and UNKNOWN, which may be one) goes to CLOSED; CLOSED and LISTEN
    stay (a listener's SYN opens a new socket, the listener stays)."""
    cell = step(state, Ev.NEW_SYN)
    assert cell is S.CLOSED if state not in (S.CLOSED, S.LISTEN) else cell == Stay(None)


@pytest.mark.parametrize("state", list(State))
def test_only_time_wait_takes_a_new_syn(state: State) -> None:
    """Linux tcp_timewait_state_process (TCP_TW_SYN): only a TIME_WAIT socket gives way
    to a new SYN; a live socket answers with a challenge ACK instead (RFC 5961 4)."""
    cell = step(state, Ev.TW_TAKES_SYN)
    assert cell is S.CLOSED if state is S.TIME_WAIT else cell == Stay(None)


@pytest.mark.parametrize("ev", sorted(DECIDING))
def test_deciding_events_only_settle_an_unknown_start(ev: Ev) -> None:
    """The server's first answer decides what it was before the client's SYN; once a
    state is known, nothing decides it again."""
    want = S.LISTEN if ev is Ev.SHOWN_LISTENING else S.CLOSED
    assert step(S.UNKNOWN, ev) is want
    for state in State:
        if state is not S.UNKNOWN:
            assert step(state, ev) == Stay(None), state


# --- the joint table ---------------------------------------------------------------------


def test_the_joint_table_is_complete() -> None:
    assert set(REUSE) == set(State)
    assert set(PAIR) == {(c, s) for c in State for s in State}
    assert set(REUSE.values()) <= {Joint.END, Joint.TW, Joint.LIVES}
    assert set(PAIR.values()) <= {Joint.OVER, Joint.OPEN}


@pytest.mark.parametrize("state", list(State))
def test_a_reuse_syn_ends_the_old_instance_only_when_its_receiver_holds_no_socket(
        state: State) -> None:
    want = Joint.TW if state is S.TIME_WAIT else (Joint.LIVES if state in ALIVE
                                                   else Joint.END)
    assert REUSE[state] is want


def test_after_time_wait_takes_the_syn_the_old_instance_ends() -> None:
    """The joint row after the receiver's own change: a TIME_WAIT that took the SYN is
    CLOSED, whose row ends the old instance."""
    after = step(S.TIME_WAIT, Ev.TW_TAKES_SYN)
    assert isinstance(after, State) and REUSE[after] is Joint.END


@pytest.mark.parametrize(("client", "server"), [(c, s) for c in State for s in State])
def test_an_instance_is_over_only_when_no_side_can_hold_a_socket(client: State,
                                                                    server: State) -> None:
    over = PAIR[(client, server)] is Joint.OVER
    assert over == (client is S.CLOSED and server in (S.CLOSED, S.LISTEN))
    if over:  # over is where both ends of a close or refusal lead, and it stays over
        for ev in Ev:
            if ev.name.startswith("RECV") or ev in (Ev.TIMEOUT, Ev.TW_TAKES_SYN):
                for side in (client, server):
                    cell = step(side, ev)
                    assert not isinstance(cell, State) or cell in (S.CLOSED, S.LISTEN)


def test_wired_ends_reach_the_over_pair() -> None:
    """A refused connect, and an open-close whose TIME_WAIT runs out, end OVER."""
    w = Wire(S.CLOSED, S.UNKNOWN)
    w.segment("client", Ev.SEND_SYN, Ev.RECV_SYN)
    w.apply("server", Ev.SHOWN_CLOSED)
    w.segment("server", Ev.SEND_RST, Ev.RECV_RST)
    assert PAIR[(w.client, w.server)] is Joint.OVER
    w = Wire(S.CLOSED, S.LISTEN)
    w.segment("client", Ev.SEND_SYN, Ev.RECV_SYN)
    w.segment("server", Ev.SEND_SYNACK, Ev.RECV_SYNACK)
    w.segment("client", Ev.SEND_FIN, Ev.RECV_ACK_SYN, Ev.RECV_FIN)
    w.segment("server", Ev.SEND_FIN, Ev.RECV_ACK_FIN, Ev.RECV_FIN)
    w.segment("client", Ev.SEND_ACK, Ev.RECV_ACK_FIN)
    assert (w.client, w.server) == (S.TIME_WAIT, S.CLOSED)
    assert PAIR[(w.client, w.server)] is Joint.OPEN
    w.apply("client", Ev.TIMEOUT)
    assert PAIR[(w.client, w.server)] is Joint.OVER
