"""The state timeline chart: one bar per side of each connection, coloured by state.

Owns: `state_intervals` (how long each side spent in each state, from the transitions
table) and `plot_timeline` (a matplotlib figure, saved as PNG/SVG/PDF if asked).
matplotlib is an optional dependency (``pip install 'tcplife[plot]'``), imported only
when a chart is drawn. Knows nothing of click or captures: a `Result` in (read as
`tcplife.output.analysed.Analysed`: no engine is imported), a figure out.

Reading the chart: each connection is one row, its client's bar above its server's; time
runs in seconds from the first packet of the first connection shown; the chart ends where
the capture ends (a dashed line) unless ``full=True``, and a state still held there is
written at the right edge (with when a timeout would end it, when one would).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import pandas as pd

from tcplife.output.analysed import Analysed
from tcplife.output.formats import STATE_COLOURS, clock, date_span, endpoint

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

FORMATS = (".png", ".svg", ".pdf")
SIDES = ("client", "server")


class PlotError(Exception):
    """The chart cannot be drawn (matplotlib missing, a file type it cannot write)."""


def check_path(path: str | os.PathLike[str]) -> None:
    """Fail early (before reading any capture) if ``path`` or matplotlib will not do."""
    if os.path.splitext(os.fspath(path))[1].lower() not in FORMATS:
        raise PlotError(f"{os.fspath(path)}: the chart is written as "
                        f"{', '.join(f[1:].upper() for f in FORMATS)}; name the file so")
    _figure_class()


def _figure_class() -> Any:
    """matplotlib's Figure, made without pyplot: no backend, no global state; a notebook
    still shows it (IPython displays Figure objects), `savefig` writes files."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise PlotError("the timeline chart needs matplotlib: pip install 'tcplife[plot]'") \
            from None
    return Figure


def state_intervals(result: Analysed, conn_ids: Iterable[int] | None = None) -> pd.DataFrame:
    """One row per (connection, side, state held): ``conn_id, side, state, start_ns,
    end_ns``. A side holds its initial state from the connection's first packet; CLOSED
    is not listed; a state still held at the end runs to its timeout's transition if one
    came, else to the end of the capture (``open_end`` true)."""
    conns = result.connections
    if conn_ids is not None:
        conns = conns[conns["conn_id"].isin(list(conn_ids))]
    end_ns = max(int(result.stats.last_ts_ns or 0),
                 int(conns["last_ts_ns"].max()) if len(conns) else 0)
    trans = result.transitions[result.transitions["conn_id"].isin(conns["conn_id"])]
    steps: dict[tuple[int, str], list[tuple[int, str]]] = {}
    for t in trans.itertuples(index=False):
        steps.setdefault((int(t.conn_id), str(t.side)), []).append(
            (int(t.ts_ns), str(t.to_state)))
    rows: list[tuple[int, str, str, int, int, bool]] = []
    for c in conns.itertuples(index=False):
        for side in SIDES:
            state, since = str(getattr(c, f"{side}_initial_state")), int(c.first_ts_ns)
            for ts_ns, to_state in steps.get((int(c.conn_id), side), ()):
                if state != "CLOSED":
                    rows.append((int(c.conn_id), side, state, since, ts_ns, False))
                state, since = to_state, ts_ns
            if state != "CLOSED":
                rows.append((int(c.conn_id), side, state, since, max(end_ns, since), True))
    return pd.DataFrame(rows, columns=["conn_id", "side", "state", "start_ns", "end_ns",
                                       "open_end"])


def _figure_height(rows: int) -> float:
    per_row = 0.6 if rows <= 10 else 0.3 if rows <= 40 else 0.075
    return min(2.4 + rows * per_row, 40.0)


def plot_timeline(result: Analysed, path: str | os.PathLike[str] | None = None, *,
                  conn_ids: Iterable[int] | None = None, full: bool = False,
                  ax: Any = None, title: str | None = None) -> Figure:
    """Draw each side's states over time; save to ``path`` (.png, .svg, .pdf) if given.

    ``conn_ids`` chooses connections (default all); ``full`` extends the time axis to the
    last timeout instead of the capture's end; ``ax`` draws into an existing axes (then
    the figure is that axes' figure). Returns the matplotlib figure.
    """
    if path is not None:
        check_path(path)
    figure_class = _figure_class()
    from matplotlib.patches import Patch

    conns = result.connections
    if conn_ids is not None:
        conns = conns[conns["conn_id"].isin(list(conn_ids))]
    conns = conns.sort_values("conn_id").reset_index(drop=True)
    n = len(conns)
    intervals = state_intervals(result, conns["conn_id"].tolist())
    origin = int(conns["first_ts_ns"].min()) if n else int(result.stats.first_ts_ns or 0)
    capture_end = (int(result.stats.last_ts_ns or origin) - origin) / 1e9
    if ax is None:
        fig = figure_class(figsize=(11, _figure_height(max(n, 1))), layout="constrained")
        ax = fig.add_subplot()
    else:
        fig = ax.figure
    row_of = {int(cid): i for i, cid in enumerate(conns["conn_id"])}
    lane = {"client": -0.21, "server": 0.21}
    height = 0.38 if n <= 40 else 0.42
    right = capture_end
    if full and len(intervals):
        right = max(right, (int(intervals["end_ns"].max()) - origin) / 1e9)
    right = right if right > 0 else 1.0
    # one broken_barh per (state, side): a few artists, however many connections
    for (state, side), group in intervals.groupby(["state", "side"], sort=False):
        for row in group.itertuples(index=False):
            start = (row.start_ns - origin) / 1e9
            stop = min((row.end_ns - origin) / 1e9, right)
            if stop < start:
                continue
            y = row_of[int(row.conn_id)] + lane[side] - height / 2
            ax.broken_barh([(start, max(stop - start, right * 1e-3))], (y, height),
                           facecolors=STATE_COLOURS.get(state, "#999999"),
                           edgecolor="white" if n <= 40 else "none", linewidth=0.4)
    if n <= 12:
        _label_bars(ax, intervals, origin, right, row_of, lane)
    _still_held(ax, intervals, origin, capture_end, right, row_of, lane, n, full)
    marked = _mark_anomalies(ax, result, conns, origin, right, row_of, lane, n)
    ax.axvline(capture_end, color="#444444", linestyle="--", linewidth=0.9)
    ax.set_xlim(-right * 0.01, right * (1.16 if n <= 40 else 1.02))
    ax.set_ylim(n - 0.5 if n else 0.5, -0.5)
    _y_labels(ax, conns, n, lane)
    day, _ = date_span([origin])
    ax.set_xlabel(f"seconds since the first packet shown, {clock(origin)} {day}; dashed "
                  "line: end of the capture")
    ax.grid(axis="x", color="#dddddd", linewidth=0.6)
    ax.set_axisbelow(True)
    for spine in ("top", "right"):
        ax.spines[spine].set_visible(False)
    present = [s for s in STATE_COLOURS if s in set(intervals["state"])]
    handles: list[Any] = [Patch(facecolor=STATE_COLOURS[s], label=s) for s in present]
    if marked:
        from matplotlib.lines import Line2D

        handles.append(Line2D([], [], marker="v", color="#d62728", linestyle="none",
                              label="anomaly"))
    if handles:
        ax.legend(handles=handles, loc="lower left", bbox_to_anchor=(0, 1.0),
                  ncol=min(len(handles), 6), frameon=False, fontsize=8)
    names = ", ".join(os.path.basename(s) or s for s in result.sources)
    fig.suptitle(title or f"TCP states of {n} connection{'s' if n != 1 else ''}"
                 + (f" — {names}" if names else "")
                 + " (each row: client bar above, server below)", fontsize=11)
    if path is not None:
        fig.savefig(os.fspath(path), dpi=110)
    return fig


def _mark_anomalies(ax: Any, result: Analysed, conns: pd.DataFrame, origin: int, right: float,
                    row_of: dict[int, int], lane: dict[str, float], n: int) -> bool:
    """A red triangle on the side's bar where each anomaly (not the informational ones)
    was detected; returns whether any was drawn."""
    from tcplife.output.formats import INFO_KINDS

    a = result.anomalies
    a = a[a["conn_id"].isin(conns["conn_id"]) & ~a["kind"].isin(list(INFO_KINDS))]
    xs, ys = [], []
    for row in a.itertuples(index=False):
        x = (int(row.ts_ns) - origin) / 1e9
        if x <= right:
            xs.append(x)
            ys.append(row_of[int(row.conn_id)] + lane.get(str(row.side), 0.0))
    if xs:
        ax.scatter(xs, ys, marker="v", s=40 if n <= 40 else 12, color="#d62728",
                   edgecolors="white", linewidths=0.5, zorder=3)
    return bool(xs)


def _label_bars(ax: Any, intervals: pd.DataFrame, origin: int, right: float,
                row_of: dict[int, int], lane: dict[str, float]) -> None:
    """State names inside the bars wide enough to hold them (few connections only)."""
    for row in intervals.itertuples(index=False):
        start = max((row.start_ns - origin) / 1e9, 0)
        stop = min((row.end_ns - origin) / 1e9, right)
        if stop - start >= right * 0.012 * len(row.state):
            ax.text((start + stop) / 2, row_of[int(row.conn_id)] + lane[row.side],
                    row.state, ha="center", va="center", fontsize=7,
                    color="white" if row.state in ("ESTABLISHED", "TIME_WAIT", "CLOSE_WAIT",
                                                   "SYN_SENT") else "black")


def _still_held(ax: Any, intervals: pd.DataFrame, origin: int, capture_end: float,
                right: float, row_of: dict[int, int], lane: dict[str, float], n: int,
                full: bool) -> None:
    """At the right edge: the state each side still held when the capture ended."""
    if full or n > 40:
        return
    end_ns = origin + capture_end * 1e9
    for row in intervals.itertuples(index=False):
        if row.start_ns <= end_ns < row.end_ns or (row.open_end and row.end_ns >= end_ns):
            ends = " (to the end)" if row.open_end else \
                f" until +{(row.end_ns - origin) / 1e9:.0f} s"
            who = "" if n <= 10 else f"{row.side[0]}: "
            ax.text(right * 1.01, row_of[int(row.conn_id)] + lane[row.side],
                    f"{who}{row.state}{ends}", va="center", fontsize=6.5, color="#333333")


def _y_labels(ax: Any, conns: pd.DataFrame, n: int, lane: dict[str, float]) -> None:
    """Few connections: each bar named (side, address); up to 40: each row (id, client,
    server port); more: every k-th connection id."""
    if n == 0:
        ax.set_yticks([])
        ax.text(0.5, 0.5, "no connections", transform=ax.transAxes, ha="center")
        return
    if n <= 10:
        ticks, labels = [], []
        for i, c in enumerate(conns.itertuples(index=False)):
            for side in SIDES:
                ticks.append(i + lane[side])
                addr = endpoint(getattr(c, f"{side}_addr"), getattr(c, f"{side}_port"))
                labels.append((f"#{int(c.conn_id)} " if side == "client" else "")
                              + f"{side} {addr}")
        ax.set_yticks(ticks, labels, fontsize=8)
        return
    step = max(1, math.ceil(n / 40))
    ticks = list(range(0, n, step))
    labels = []
    for i in ticks:
        c = conns.iloc[i]
        if n <= 40:
            labels.append(f"{int(c.conn_id)}  {endpoint(c.client_addr, c.client_port)} → "
                          f":{int(c.server_port)}")
        else:
            labels.append(str(int(c.conn_id)))
    ax.set_yticks(ticks, labels, fontsize=8 if n <= 40 else 7)
    ax.set_ylabel("connection (client bar above, server below)" if n > 40 else "")
