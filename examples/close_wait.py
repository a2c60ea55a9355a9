"""Notebook-style example: which connections sat in CLOSE_WAIT, and for how long?

CLOSE_WAIT is the state of a socket whose peer has closed while the application has not:
a few milliseconds are normal, seconds mean an application that forgets to close() (a
leak that ends in "too many open files"). Run it from the repository root:

    python examples/close_wait.py [CHART.png]    (PYTHONPATH=. if tcplife is not installed)

It reads every server-side capture in sample_pcaps/, lists the sides that stayed in
CLOSE_WAIT longer than a second, and draws the timeline of the worst capture into
examples/close_wait.png. Each block below is one notebook cell.
"""

import sys
from pathlib import Path

import pandas as pd

import tcplife

# %% Analyse each capture; CLOSE_WAIT longer than 1 s counts as lingering.
captures = sorted(Path("sample_pcaps").glob("*.server.pcap"))
results = {path.name: tcplife.analyze(str(path), close_wait_linger=1) for path in captures}

# %% For every side that entered CLOSE_WAIT: when, and how long it stayed there.
rows = []
for name, result in results.items():
    t = result.transitions
    entered = t[t["to_state"] == "CLOSE_WAIT"]
    left = t[t["from_state"] == "CLOSE_WAIT"]
    end = pd.Timestamp(result.stats.last_ts_ns, unit="ns", tz="UTC")
    for row in entered.itertuples():
        out = left[(left["conn_id"] == row.conn_id) & (left["side"] == row.side)]
        until = out["time"].iloc[0] if len(out) else end  # still there at capture end
        rows.append({"capture": name, "conn_id": row.conn_id, "side": row.side,
                     "socket": f"{row.addr}:{row.port}",
                     "since": row.time.strftime("%H:%M:%S.%f"),
                     "seconds": round((until - row.time).total_seconds(), 3),
                     "then": out["to_state"].iloc[0] if len(out) else "(capture ended)"})
close_wait = pd.DataFrame(rows)

# %% The ones stuck for more than a second, worst first.
stuck = close_wait[close_wait["seconds"] > 1].sort_values("seconds", ascending=False)
with pd.option_context("display.width", 120, "display.max_columns", 10):
    print(stuck.to_string(index=False))

# %% tcplife's own verdict agrees: a lingering_close_wait anomaly on each of them.
for name, result in results.items():
    a = result.anomalies
    for row in a[a["kind"] == "lingering_close_wait"].itertuples():
        print(f"{name}: conn {row.conn_id} {row.side}: {row.detail}")

# %% Draw the worst capture's connections: the magenta bar is CLOSE_WAIT.
chart = sys.argv[1] if len(sys.argv) > 1 else "examples/close_wait.png"
worst = stuck.iloc[0]
figure = results[worst["capture"]].plot_timeline(chart, conn_ids=[worst["conn_id"]])
print(f"wrote {chart} ({worst['capture']})")
