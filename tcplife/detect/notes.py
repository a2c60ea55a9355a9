"""`Notes`: the anomaly kinds the tracker notes directly (``half_close``, ``half_open`` by
retransmissions into silence, ``keepalive``, ``port_reuse``) and ``mid_stream``, each turned
into its row and sentence.
"""

from __future__ import annotations

from collections.abc import Iterable

from tcplife.core.events import Anomaly, PortReuse
from tcplife.core.states import CLIENT, ERROR, INFO, SERVER, TIME_WAIT, WARNING
from tcplife.detect.view import ConnView, PerConnection, clock, other_side


class Notes(PerConnection):
    """Kinds the tracker notes directly: half_close, half_open, port_reuse, keepalive."""

    def on_connection(self, v: ConnView) -> Iterable[Anomaly]:
        for side in (CLIENT, SERVER):
            peer = other_side(side)
            for note in v.named("half_close", side)[:1]:
                yield v.anomaly(note.ts_ns, side, "half_close", note.frame,
                                f"{v.who(side)} shut down writing (sent FIN) and "
                                f"{v.who(peer)} went on sending data, which {side} "
                                f"acknowledged at {clock(note.ts_ns)}: a half-close "
                                "(shutdown(SHUT_WR)); fine if intended")
            for note in v.named("silence_rtx", side)[:1]:
                # the peer spoke again later: the path came back (a warning); it never
                # did by the end of the capture: the peer is gone (an error)
                heard = getattr(v.record, f"{peer}_last_ts_ns")
                back = heard is not None and heard > note.ts_ns
                fate = (f"{v.who(peer)} answered again at {clock(heard)}: the path or the "
                        "peer was gone for a while (half-open meanwhile)" if back else
                        f"{v.who(peer)} never answered: the peer is gone or unreachable "
                        "(half-open); only a timeout or keep-alive will tell the "
                        "application")
                yield v.anomaly(note.ts_ns, side, "half_open", note.frame,
                                f"{v.who(side)} retransmitted data from {clock(note.ts_ns)} "
                                f"into silence; {fate}",
                                severity=WARNING if back else ERROR)
            probes = v.named("keepalive_probe", side)
            if probes:
                yield v.anomaly(probes[0].ts_ns, side, "keepalive", probes[0].frame,
                                f"{v.who(side)} sent {len(probes)} keep-alive probe"
                                f"{'s' if len(probes) > 1 else ''} on the idle connection "
                                f"from {clock(probes[0].ts_ns)} (SO_KEEPALIVE); information")
        for note in v.named("port_reuse")[:1]:
            # a TIME_WAIT socket is there to meet reuse (RFC 9293 3.10.7.4, Linux
            # tcp_timewait_state_process): info; an open socket met by a new SYN: warning
            met = note.facts.states if isinstance(note.facts, PortReuse) else ()
            normal = bool(met) and all(m == TIME_WAIT.value for m in met)  # type: ignore
            yield v.anomaly(note.ts_ns, CLIENT, "port_reuse", note.frame,
                            f"{v.who(CLIENT)} at {clock(note.ts_ns)}: {note.detail}"
                            + ("; normal: TIME_WAIT is there for this" if normal else ""),
                            severity=INFO if normal else WARNING)
        r = v.record
        if r.mid_stream:
            yield v.anomaly(r.first_ts_ns, CLIENT, "mid_stream", r.first_frame,
                            "the capture began after this connection's handshake "
                            f"(first packet at {clock(r.first_ts_ns)}): early states are "
                            "inferred and the roles guessed from the ports")
