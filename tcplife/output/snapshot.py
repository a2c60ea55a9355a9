"""``ss -tan`` at one instant, computed from the tables (no pandas).

Owns: `state_at_rows`, each side of each connection alive at an instant with its state
and since when. The connections and transitions may be `tcplife.output.rows.Rows` or
DataFrames (`tcplife.output.rows.column_of` reads both); the answer is `Rows` of
`tcplife.output.schema.STATE_AT` (`tcplife.output.frames.state_at` makes it a DataFrame).
"""

from __future__ import annotations

from typing import Any

from tcplife.core.states import SIDES, State
from tcplife.output import schema
from tcplife.output.rows import Rows, column_of

_CLOSED = State.CLOSED.value


def state_at_rows(connections: Any, transitions: Any, t_ns: int) -> Rows:
    """Each side of each connection alive at ``t_ns``, like ``ss -tan`` then.

    A side is listed unless its state is CLOSED. The initial state holds from the
    connection's first packet until the side's first transition; after it, the state the
    side's last transition at or before ``t_ns`` entered (the transitions are in time
    order)."""
    latest: dict[tuple[int, str], tuple[str, float]] = {}
    if len(transitions):
        for conn_id, side, to_state, ts, ts_ns in zip(
                column_of(transitions, "conn_id"), column_of(transitions, "side"),
                column_of(transitions, "to_state"), column_of(transitions, "ts"),
                column_of(transitions, "ts_ns"), strict=True):
            if ts_ns <= t_ns:
                latest[(int(conn_id), str(side))] = (str(to_state), ts)
    cols: dict[str, list[Any]] = {name: [] for name in schema.STATE_AT}
    if not len(connections):
        return Rows(schema.STATE_AT, cols)
    names = ("conn_id", "first_ts_ns", "first_ts", "client_addr", "client_port",
             "server_addr", "server_port", "client_initial_state", "server_initial_state")
    table = dict(zip(names, (column_of(connections, n) for n in names), strict=True))
    for i, first_ns in enumerate(table["first_ts_ns"]):
        if first_ns > t_ns:
            continue
        conn_id = table["conn_id"][i]
        for side in SIDES:
            other = "server" if side == "client" else "client"
            found = latest.get((int(conn_id), side))
            if found is None:
                state, since = str(table[f"{side}_initial_state"][i]), table["first_ts"][i]
            else:
                state, since = found
            if state == _CLOSED:
                continue
            cols["conn_id"].append(conn_id)
            cols["side"].append(side)
            cols["local_addr"].append(table[f"{side}_addr"][i])
            cols["local_port"].append(table[f"{side}_port"][i])
            cols["remote_addr"].append(table[f"{other}_addr"][i])
            cols["remote_port"].append(table[f"{other}_port"][i])
            cols["state"].append(state)
            cols["since"].append(since)
    return Rows(schema.STATE_AT, cols)
