"""The sequence diagram of one connection: model, terminal renderer, SVG renderer.

Owns: `Ladder` (one step per packet of the connection, plus one per timeout, each with
the state changes it caused on either side and the anomalies it is the evidence of),
built from the ``packets``, ``transitions`` and ``anomalies`` tables; `ladder_lines`,
the diagram as rich `Text` lines for a terminal of any width (narrowed, or stacked
below about 60 columns: see `ladder_lines`); `ladder_svg`, the
same drawing as SVG text. Knows nothing of click or captures: tables in, text out.

The drawing follows the ladders of TCP textbooks and Wireshark's flow graph: the client
and server as two vertical lines, each packet an arrow from its sender with its flags,
relative seq/ack and payload length; each side's new state is written beside its line on
the row of the packet that caused it, ``~`` marking a state deduced from the peer's packet
or a timeout rather than seen on the side's own packet.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any
from xml.sax.saxutils import escape

import pandas as pd
from rich.text import Text

from tcplife.output.fit import abbreviate_state, wrap_text
from tcplife.output.formats import (
    INFO_KINDS,
    STATE_COLOURS,
    STATE_STYLES,
    clock,
    date_span,
    endpoint,
)

SIDES = ("client", "server")


@dataclass(frozen=True)
class Change:
    """One side's state change on a step."""

    state: str
    inferred: bool
    event: str

    @property
    def label(self) -> str:
        return ("~" if self.inferred else "") + self.state


@dataclass
class Step:
    """A packet (``packet`` set) or a timeout (``packet`` None) at ``ts_ns``."""

    ts_ns: int
    frame: int | None
    packet: Any | None = None  #: a row of the packets table (a namedtuple)
    changes: dict[str, list[Change]] = field(default_factory=lambda: {s: [] for s in SIDES})
    anomalies: list[tuple[str, str]] = field(default_factory=list)  #: (kind, side)

    @property
    def label(self) -> str:
        """The arrow's text: ``[SYN, ACK] seq=0 ack=1 len=0``."""
        p = self.packet
        if p is None:
            return "timeout"
        ack = "" if pd.isna(p.rel_ack) else f" ack={int(p.rel_ack)}"
        return f"[{p.flags}] seq={int(p.rel_seq)}{ack} len={int(p.len)}"


@dataclass
class Ladder:
    """One connection's steps in time order."""

    conn: Any  #: its row of the connections table (a namedtuple)
    initial: dict[str, str]
    steps: list[Step]
    sources: list[str] = field(default_factory=list)
    tshark: str = ""  #: a tshark command line showing its frames (see `tcplife.engines.packets`)

    @property
    def packets(self) -> int:
        return sum(1 for s in self.steps if s.packet is not None)


def build_ladder(conn: Any, packets: pd.DataFrame, transitions: pd.DataFrame,
                 anomalies: pd.DataFrame, sources: list[str] | None = None,
                 tshark: str = "") -> Ladder:
    """The ladder of connection ``conn`` (a row of the connections table); the tables may
    hold other connections too."""
    conn_id = int(conn.conn_id)
    steps: list[Step] = []
    by_frame: dict[int, Step] = {}
    for p in packets[packets["conn_id"] == conn_id].itertuples(index=False):
        step = Step(int(p.ts_ns), int(p.frame), p)
        steps.append(step)
        by_frame[int(p.frame)] = step
    for t in transitions[transitions["conn_id"] == conn_id].itertuples(index=False):
        change = Change(str(t.to_state), bool(t.inferred), str(t.event))
        frame = None if pd.isna(t.frame) else int(t.frame)
        step = by_frame.get(frame) if frame is not None else None
        if step is None:
            step = Step(int(t.ts_ns), frame)
            steps.append(step)
            if frame is not None:
                by_frame[frame] = step
        step.changes[str(t.side)].append(change)
    loose: list[tuple[str, str]] = []
    for a in anomalies[anomalies["conn_id"] == conn_id].itertuples(index=False):
        frame = None if pd.isna(a.frame) else int(a.frame)
        if frame in by_frame:
            by_frame[frame].anomalies.append((str(a.kind), str(a.side)))
        else:
            loose.append((str(a.kind), str(a.side)))
    steps.sort(key=lambda s: (s.ts_ns, s.frame is None, s.frame or 0))
    if loose:
        last_ns = steps[-1].ts_ns if steps else int(conn.last_ts_ns)
        steps.append(Step(last_ns, None, anomalies=loose))
    initial = {side: str(getattr(conn, f"{side}_initial_state")) for side in SIDES}
    return Ladder(conn, initial, steps, list(sources or []), tshark)


def _rel(ladder: Ladder, ts_ns: int) -> str:
    return f"{(ts_ns - int(ladder.conn.first_ts_ns)) / 1e9:.6f}"


def _arrow_style(packet: Any) -> str:
    flags = str(packet.flags)
    if "RST" in flags:
        return "red"
    if "SYN" in flags:
        return "cyan"
    if "FIN" in flags:
        return "yellow"
    return ""


# --- terminal ---------------------------------------------------------------------------

FRAME_W, TIME_W, STATE_W = 6, 11, 13
#: The diagram at its full size needs this many columns (an arrow of 24 cells).
WIDE = FRAME_W + 1 + TIME_W + 1 + 2 * STATE_W + 24
#: Narrower than its columns and an arrow of this many cells, the ladder is stacked.
MIN_ARROW = 20


@dataclass(frozen=True)
class Geometry:
    """Where the columns of a terminal ladder go: frame, +seconds, the client's states,
    the arrow between the two lifelines, the server's states. ``short``: states written
    as ``ss`` writes them (`tcplife.output.fit.STATE_ABBREVIATIONS`)."""

    frame_w: int
    time_w: int
    state_w: int
    arrow_w: int
    short: bool = False

    @property
    def lead(self) -> int:
        return self.frame_w + 1 + self.time_w + 1


def geometry(ladder: Ladder, width: int) -> Geometry | None:
    """The layout for ``width`` columns: the full one (from `WIDE` columns) when every
    arrow's label fits on its arrow; else columns as narrow as the ladder's own frames,
    times and (abbreviated) states allow, if that gives the arrows more room; None if
    the arrow would then be narrower than `MIN_ARROW` (or an anomaly's name)."""
    full = Geometry(FRAME_W, TIME_W, STATE_W, width - (WIDE - 24))
    longest = max([len(s.label) for s in ladder.steps if s.packet is not None], default=0)
    if width >= WIDE and longest + 8 <= full.arrow_w:
        return full
    frame_w = max([5] + [len(str(s.frame)) for s in ladder.steps if s.frame is not None])
    time_w = max([8] + [len(_rel(ladder, s.ts_ns)) for s in ladder.steps])
    labels = [abbreviate_state(ch.label) for s in ladder.steps for side in SIDES
              for ch in s.changes[side]] + [abbreviate_state(v) for v in ladder.initial.values()]
    state_w = max([6] + [len(label) for label in labels])
    narrow = Geometry(frame_w, time_w, state_w,
                      width - (frame_w + 1 + time_w + 1 + 2 * state_w), short=True)
    kinds = [len(kind) + 4 for s in ladder.steps for kind, _ in s.anomalies]
    if width >= WIDE and narrow.arrow_w <= full.arrow_w:
        return full
    return narrow if narrow.arrow_w >= max([MIN_ARROW] + kinds) else None


def _state_cell(change: Change | None, right: bool, geo: Geometry) -> Text:
    if change is None:
        return Text(" " * geo.state_w)
    label = abbreviate_state(change.label) if geo.short else change.label
    text = Text(label, style=STATE_STYLES.get(change.state, ""))
    pad = " " * (geo.state_w - text.cell_len)
    return Text.assemble(pad, text) if right else Text.assemble(text, pad)


def _label_lines(label: str, first: int, rest: int) -> list[str]:
    """The arrow's label in lines: as much as fits in ``first`` cells (on the arrow), the
    rest in lines of ``rest``; the flags (``[PSH, ACK]``) are one piece."""
    flags, _, numbers = label.partition("] ")
    pieces = [flags + "]", *numbers.split()] if numbers else [label]
    lines: list[str] = []
    for piece in pieces:
        room = first if len(lines) == 1 else rest
        if lines and len(lines[-1]) + 1 + len(piece) <= room:
            lines[-1] += " " + piece
        else:
            lines.append(piece)
    return lines


def _arrow(label: str, width: int, to_right: bool, style: str) -> list[Text]:
    """An arrow between the lifelines with as much of its label as fits on it; the rest
    of the label on lines under it."""
    inner = width - 2  # the two lifelines
    lines = _label_lines(label, inner - 6, inner - 2)
    if len(lines[0]) > inner - 6:  # not even the flags fit on it: all of it under it
        body, rest = " ", lines
    else:
        body, rest = f" {lines[0]} ", lines[1:]
    fill = "─" * max(inner - 3 - len(body), 1)
    line = ("──" + body + fill + "▶") if to_right else ("◀" + fill + body + "──")
    return [Text.assemble("│", (line, style), "│"),
            *(piece for text in rest for piece in _middle(text, width, style))]


def _middle(text: str, width: int, style: str) -> list[Text]:
    """``text`` centred between the lifelines, on as many lines as it needs."""
    inner = width - 2
    out = []
    for piece in wrap_text(Text(text), inner) if text else [Text("")]:
        body = piece.plain
        left = (inner - len(body)) // 2
        out.append(Text.assemble("│", " " * left, (body, style),
                                 " " * (inner - left - len(body)), "│"))
    return out


def _title_lines(ladder: Ladder, width: int) -> list[Text]:
    conn = ladder.conn
    day, _ = date_span([int(conn.first_ts_ns)])
    names = ", ".join(os.path.basename(s) or s for s in ladder.sources)
    title = Text(f"ladder of connection {int(conn.conn_id)}", style="bold")
    if names:
        title.append(f" — {names}")
    when = f"t=0 at {clock(int(conn.first_ts_ns))} {day}"
    if title.cell_len + 3 + len(when) <= width:
        title.append(f" — {when}")
        return [title]
    return [*wrap_text(title, width), Text(when)]  # the time on a line of its own


def ladder_lines(ladder: Ladder, width: int = 100) -> list[Text]:
    """The diagram as lines of at most ``width`` cells, except the last, the tshark
    command line (printed whole, to be copied); every line is marked ``no_wrap``.

    From `WIDE` (69) columns the full diagram, its arrows as wide as the width allows;
    narrower, the columns shrink to the ladder's own values and states are written as
    ``ss`` writes them; narrower than that (about 60 columns), `ladder_stacked`. An
    arrow's label that does not fit on it continues on the lines under it, and never a
    value is cut to ``…``."""
    geo = geometry(ladder, width)
    if geo is None:
        return ladder_stacked(ladder, width)
    conn = ladder.conn
    lines = _title_lines(ladder, width)
    client = endpoint(conn.client_addr, conn.client_port)
    server = endpoint(conn.server_addr, conn.server_port)
    names = ("client state", "server state") if not geo.short else ("client", "server")
    if len(client) + len(server) + 1 <= geo.arrow_w - 2:
        gap = " " * (geo.arrow_w - 2 - len(client) - len(server))
        middle = Text.assemble((client, "bold"), gap, (server, "bold"))
    else:  # the endpoints above the diagram, whole
        lines += [Text.assemble(("client ", "bold"), client),
                  Text.assemble(("server ", "bold"), server)]
        middle = Text(" " * (geo.arrow_w - 2))
    lines.append(Text.assemble(
        (f"{'frame':>{geo.frame_w}} {'+seconds':>{geo.time_w}} {names[0]:>{geo.state_w}}",
         "bold"), "│", middle, "│", (names[1], "bold")))
    blank = " " * geo.lead
    initial = {side: Change(ladder.initial[side], False, "initial") for side in SIDES}
    lines.append(Text.assemble(blank, _state_cell(initial["client"], True, geo),
                               _middle("", geo.arrow_w, "")[0],
                               _state_cell(initial["server"], False, geo)))
    for step in ladder.steps:
        c, s = step.changes["client"], step.changes["server"]
        frame = "" if step.frame is None or step.packet is None else str(step.frame)
        left = Text(f"{frame:>{geo.frame_w}} {_rel(ladder, step.ts_ns):>{geo.time_w}} ")
        if step.packet is not None:
            middles = _arrow(step.label, geo.arrow_w, str(step.packet.sender) == "client",
                             _arrow_style(step.packet))
        elif c or s:
            middles = _middle("· · timeout · ·", geo.arrow_w, "dim")
        else:
            middles = _middle("", geo.arrow_w, "")
            left = Text(blank)
        for i in range(max(len(c), len(s), len(middles))):
            lines.append(Text.assemble(
                left if i == 0 else blank, _state_cell(c[i] if i < len(c) else None, True, geo),
                middles[i] if i < len(middles) else _middle("", geo.arrow_w, "")[0],
                _state_cell(s[i] if i < len(s) else None, False, geo)))
        for kind, side in step.anomalies:
            for middle in _middle(f"⚠ {kind} ({side})", geo.arrow_w,
                                  "dim" if kind in INFO_KINDS else "bold red"):
                lines.append(Text.assemble(blank, " " * geo.state_w, middle,
                                           " " * geo.state_w))
    return _footer(ladder, lines, width)


def _footer(ladder: Ladder, lines: list[Text], width: int) -> list[Text]:
    notes = [f"{ladder.packets} packets; ~ inferred: deduced from the peer's packets or a "
             "timeout, not seen on that side"]
    if bool(ladder.conn.role_inferred):
        notes.append("no SYN seen: which side is the client was guessed")
    for note in notes:
        lines += wrap_text(Text(note, style="dim"), width)
    if ladder.tshark:
        lines.append(Text(ladder.tshark, style="dim"))
    for line in lines:
        line.rstrip()
        line.no_wrap, line.overflow = True, "ignore"
    return lines


def ladder_stacked(ladder: Ladder, width: int) -> list[Text]:
    """The ladder for a terminal too narrow for the diagram: one block per step, its
    frame, time and direction, then its label, each side's new states and its anomalies
    on lines of their own (full state names)."""
    conn = ladder.conn
    lines = _title_lines(ladder, width)
    lines += [Text.assemble(("client ", "bold"), endpoint(conn.client_addr, conn.client_port)),
              Text.assemble(("server ", "bold"), endpoint(conn.server_addr, conn.server_port)),
              Text(f"initial: client {ladder.initial['client']}, "
                   f"server {ladder.initial['server']}")]
    for step in ladder.steps:
        lines.append(Text(""))
        head = f"+{_rel(ladder, step.ts_ns)}"
        if step.packet is not None:
            to_right = str(step.packet.sender) == "client"
            head = (f"frame {step.frame} {head} "
                    + ("client ──▶ server" if to_right else "client ◀── server"))
            lines += wrap_text(Text(head, style="bold"), width)
            lines += [Text.assemble("  ", piece) for piece in wrap_text(
                Text(step.label, style=_arrow_style(step.packet)), width - 2)]
        elif step.changes["client"] or step.changes["server"]:
            lines.append(Text(f"{head} timeout", style="bold"))
        for side in SIDES:
            for change in step.changes[side]:
                lines.append(Text.assemble(f"  {side} ", (change.label,
                                           STATE_STYLES.get(change.state, ""))))
        for kind, side in step.anomalies:
            lines += wrap_text(Text(f"  ⚠ {kind} ({side})",
                               style="dim" if kind in INFO_KINDS else "bold red"), width)
    lines.append(Text(""))
    return _footer(ladder, lines, width)


# --- SVG ----------------------------------------------------------------------------------

ROW, TOP, FONT = 22, 92, 12
X_FRAME, X_TIME, X_CLIENT, X_SERVER = 44, 128, 290, 770
SVG_WIDTH = 930


def _t(x: float, y: float, text: str, **attrs: str) -> str:
    extra = "".join(f' {k.rstrip("_").replace("_", "-")}="{escape(v)}"'
                    for k, v in attrs.items())
    return f'<text x="{x:.0f}" y="{y:.0f}"{extra}>{escape(text)}</text>'


def _state_svg(changes: list[Change], x: float, y: float, anchor: str) -> list[str]:
    out = []
    for i, ch in enumerate(changes):
        out.append(_t(x, y + i * ROW, ch.label, class_="state", fill=_ink(ch.state),
                      text_anchor=anchor))
    return out


def _ink(state: str) -> str:
    """The state's colour, darkened where the chart colour is too light for text."""
    darker = {"FIN_WAIT_1": "#7a5c00", "FIN_WAIT_2": "#7a5c00", "CLOSED": "#808080",
              "UNKNOWN": "#808080", "LISTEN": "#3a7ab8", "SYN_RECEIVED": "#0f8a96"}
    return darker.get(state, STATE_COLOURS.get(state, "#333333"))


def _arrow_colour(packet: Any) -> str:
    return {"red": "#d62728", "cyan": "#1f77b4", "yellow": "#b8860b"}.get(
        _arrow_style(packet), "#333333")


def ladder_svg(ladder: Ladder) -> str:
    """The diagram as a standalone SVG document (text)."""
    conn = ladder.conn
    rows: list[tuple[Step, int]] = []
    y = TOP + 12 + ROW
    for step in ladder.steps:
        rows.append((step, y))
        extra = max(len(step.changes["client"]), len(step.changes["server"]), 1) - 1
        y += ROW * (1 + extra + len(step.anomalies))
    height = y + 2 * ROW
    names = ", ".join(os.path.basename(s) or s for s in ladder.sources)
    day, _ = date_span([int(conn.first_ts_ns)])
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{SVG_WIDTH}" height="{height}" '
        f'viewBox="0 0 {SVG_WIDTH} {height}" font-family="DejaVu Sans Mono, Menlo, '
        f'Consolas, monospace" font-size="{FONT}">',
        "<defs>"
        '<marker id="head" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="8" '
        'markerHeight="8" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" '
        'fill="context-stroke"/></marker></defs>',
        f'<rect width="{SVG_WIDTH}" height="{height}" fill="white"/>',
        _t(12, 22, f"Connection {int(conn.conn_id)}" + (f" — {names}" if names else ""),
           font_size="15", font_weight="bold"),
        _t(12, 40, f"t=0 at {clock(int(conn.first_ts_ns))} {day}; ~ deduced from the "
           "peer's packets or a timeout", fill="#666666"),
    ]
    for x, side in ((X_CLIENT, "client"), (X_SERVER, "server")):
        addr = endpoint(getattr(conn, f"{side}_addr"), getattr(conn, f"{side}_port"))
        out.append(f'<rect x="{x - 95}" y="{TOP - 40}" width="190" height="36" rx="4" '
                   f'fill="#f4f4f4" stroke="#888888"/>')
        out.append(_t(x, TOP - 26, side, text_anchor="middle", font_weight="bold"))
        out.append(_t(x, TOP - 11, addr, text_anchor="middle"))
        out.append(f'<line class="lifeline" x1="{x}" y1="{TOP - 4}" x2="{x}" '
                   f'y2="{height - ROW}" stroke="#888888" stroke-width="1.5"/>')
    out.append(_t(X_FRAME, TOP + 12, "frame", text_anchor="end", fill="#666666"))
    out.append(_t(X_TIME, TOP + 12, "+seconds", text_anchor="end", fill="#666666"))
    out += _state_svg([Change(ladder.initial["client"], False, "")], X_CLIENT - 8, TOP + 12,
                      "end")
    out += _state_svg([Change(ladder.initial["server"], False, "")], X_SERVER + 8, TOP + 12,
                      "start")
    for step, y in rows:
        p = step.packet
        if p is not None:
            out.append(_t(X_FRAME, y, str(step.frame), text_anchor="end", class_="frame"))
        out.append(_t(X_TIME, y, _rel(ladder, step.ts_ns), text_anchor="end", fill="#666666"))
        if p is not None:
            x1, x2 = (X_CLIENT, X_SERVER) if str(p.sender) == "client" else (X_SERVER,
                                                                              X_CLIENT)
            colour = _arrow_colour(p)
            out.append(f'<line class="packet" data-frame="{step.frame}" x1="{x1}" '
                       f'y1="{y - 4}" x2="{x2}" y2="{y - 4}" stroke="{colour}" '
                       f'stroke-width="1.4" marker-end="url(#head)"/>')
            out.append(_t((X_CLIENT + X_SERVER) / 2, y - 8, step.label, class_="label",
                          text_anchor="middle", fill=colour))
        elif step.changes["client"] or step.changes["server"]:
            out.append(_t((X_CLIENT + X_SERVER) / 2, y - 4, "timeout", class_="timeout",
                          text_anchor="middle", fill="#888888", font_style="italic"))
        out += _state_svg(step.changes["client"], X_CLIENT - 8, y, "end")
        out += _state_svg(step.changes["server"], X_SERVER + 8, y, "start")
        extra = max(len(step.changes["client"]), len(step.changes["server"]), 1) - 1
        for i, (kind, side) in enumerate(step.anomalies):
            colour = "#888888" if kind in INFO_KINDS else "#d62728"
            out.append(_t((X_CLIENT + X_SERVER) / 2, y + (extra + i + 1) * ROW - 4,
                          f"⚠ {kind} ({side})", class_="anomaly", text_anchor="middle",
                          fill=colour, font_weight="bold"))
    out.append(_t(12, height - 8, f"{ladder.packets} packets", fill="#666666"))
    out.append("</svg>")
    return "\n".join(out) + "\n"
