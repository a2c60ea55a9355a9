"""Start-up and the contract's small print: what the command line imports, the tables'
pandas-free form (`tcplife.output.rows.Rows`) against their DataFrames, enumerated columns as
categoricals, ``Result``'s repr and summary, ``-o`` with an unknown extension.

The start-up checks read ``sys.modules`` in a fresh interpreter (never a clock): after
``import tcplife.cli.main`` and after an in-process ``analyze --format jsonl``, no module of
pandas, pyarrow, matplotlib or dask may be loaded.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import warnings
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st
from probe import loaded_after

import tcplife
from tcplife.cli.main import main
from tcplife.output import formats as output
from tcplife.output import views
from tcplife.output.filters import make_filter
from tcplife.output.frames import frame_from_rows
from tcplife.output.rows import Rows, column_of
from tcplife.output.snapshot import state_at_rows

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "sample_pcaps"
#: packages the command line's JSON-lines, CSV and table paths must not import
HEAVY = ("pandas", "pyarrow", "matplotlib", "dask", "distributed")
#: captures with reuse, RSTs, mid-stream starts, IPv6, many connections
CAPTURES = ["clean_traffic.client.pcap", "port_reuse_close_wait.server.pcap",
            "mid_stream.client.pcap", "ipv6.any.pcap", "many_short.client.pcapng",
            "keepalive_dead_peer.client.pcap", "listen_no_accept.any.pcap",
            "simultaneous_close.any.pcap"]


def test_importing_the_package_and_the_cli_loads_no_heavy_package() -> None:
    assert loaded_after("import tcplife", HEAVY) == []
    assert loaded_after("import tcplife.cli.main", HEAVY) == []
    # and the probe itself can see one (the check can fail)
    assert "pandas" in loaded_after("import tcplife; tcplife.Result; import pandas", HEAVY)


@pytest.mark.parametrize("args", [
    ["analyze", "--format", "jsonl"], ["analyze", "--format", "csv"],
    ["analyze", "--format", "table"], ["analyze", "--format", "json"],
    ["timeline", "--format", "table"], ["timeline", "--format", "jsonl"],
    ["anomalies", "--format", "table"], ["anomalies", "--format", "jsonl"],
    ["at", "end", "--format", "table"], ["analyze", "--format", "jsonl", "--port", "8080"],
    ["analyze", "--format", "table", "--conn", "0"],
])
def test_the_text_paths_run_without_pandas(args: list[str]) -> None:
    capture = str(SAMPLES / "port_reuse_close_wait.server.pcap")
    if args[0] == "at":
        args = [args[0], args[1], capture, *args[2:]]
    else:
        args = [args[0], capture, *args[1:]]
    code = ("from click.testing import CliRunner\nfrom tcplife.cli.main import main\n"
            f"r = CliRunner().invoke(main, {args!r})\n"
            "assert r.exit_code == 0, (r.output, r.exception)\nassert r.stdout\n")
    assert loaded_after(code, HEAVY) == []


def test_the_api_keeps_its_names() -> None:
    for name in tcplife.__all__:
        assert getattr(tcplife, name) is not None, name
    assert set(tcplife.__all__) <= set(dir(tcplife))
    with pytest.raises(AttributeError):
        tcplife.no_such_name  # noqa: B018


# --- Rows and DataFrames give the same bytes -----------------------------------------


def _texts(table: object, fmt: str) -> str:
    stream = io.StringIO()
    {"jsonl": output.write_jsonl, "json": output.write_json,
     "csv": output.write_csv}[fmt](table, stream)
    return stream.getvalue()


@pytest.mark.parametrize("capture", CAPTURES)
def test_rows_write_as_their_dataframes_do(capture: str) -> None:
    result = tcplife.analyze(SAMPLES / capture)
    rows = tcplife.analyze(SAMPLES / capture)  # a second result whose tables stay Rows
    for name in ("connections", "transitions", "anomalies", "oddities"):
        plain = rows.table(name)
        assert isinstance(plain, Rows), name
        frame = getattr(result, name)
        assert len(plain) == len(frame)
        for fmt in ("jsonl", "json", "csv"):
            assert _texts(plain, fmt) == _texts(frame, fmt), (name, fmt)
        # and Rows.to_pandas is the engine's DataFrame, dtypes and all
        pd.testing.assert_frame_equal(frame_from_rows(plain), frame.reset_index(drop=True))


def test_times_carry_nanoseconds_only_where_some_value_has_them() -> None:
    schema = {"time": "time"}
    micro = Rows(schema, {"time": [1_700_000_000_123_456_000, 1_700_000_001_000_000_000]})
    nano = Rows(schema, {"time": [1_700_000_000_123_456_789, None]})
    assert [json.loads(x)["time"] for x in _texts(micro, "jsonl").splitlines()] == [
        "2023-11-14T22:13:20.123456Z", "2023-11-14T22:13:21.000000Z"]
    assert [json.loads(x)["time"] for x in _texts(nano, "jsonl").splitlines()] == [
        "2023-11-14T22:13:20.123456789Z", None]
    for rows in (micro, nano):
        assert _texts(rows, "jsonl") == _texts(frame_from_rows(rows), "jsonl")


@pytest.mark.parametrize("criteria", [
    {"hosts": ["10.231.1.0/24"]}, {"ports": [8080]}, {"conn_ids": [0, 2]},
    {"states": ["CLOSE_WAIT", "TIME_WAIT"]}, {"kinds": ["port_reuse"]},
    {"since_ns": 1, "until_ns": 1 << 62}, {"hosts": ["fd00::/8"], "ports": [80]},
])
def test_filters_select_the_same_rows_of_rows_and_dataframes(criteria: dict) -> None:
    for capture in ("port_reuse_close_wait.server.pcap", "ipv6.any.pcap",
                    "many_short.client.pcapng"):
        frames = tcplife.analyze(SAMPLES / capture)
        rows = tcplife.analyze(SAMPLES / capture)
        flt = make_filter(**criteria)
        c_rows, c_frame = rows.table("connections"), frames.connections
        assert _texts(flt.connections(c_rows), "jsonl") == \
            _texts(flt.connections(c_frame), "jsonl")
        assert _texts(flt.transitions(rows.table("transitions"), c_rows), "jsonl") == \
            _texts(flt.transitions(frames.transitions, c_frame), "jsonl")
        assert _texts(flt.anomalies(rows.table("anomalies"), c_rows), "jsonl") == \
            _texts(flt.anomalies(frames.anomalies, c_frame), "jsonl")


def test_state_at_from_rows_is_a_brute_force_replay() -> None:
    """Each side's state at t, found the slow way: the last transition at or before t,
    else the initial state from the first packet on."""
    result = tcplife.analyze(SAMPLES / "port_reuse_close_wait.server.pcap")
    conns, trans = result.connections, result.transitions
    for t_ns in sorted(set(trans["ts_ns"].tolist()))[::3] + [int(conns["last_ts_ns"].max())]:
        got = state_at_rows(result.table("connections"), result.table("transitions"), t_ns)
        expected = set()
        for c in conns.itertuples():
            if c.first_ts_ns > t_ns:
                continue
            for side in ("client", "server"):
                mine = trans[(trans["conn_id"] == c.conn_id) & (trans["side"] == side)
                             & (trans["ts_ns"] <= t_ns)]
                state = str(mine["to_state"].iloc[-1]) if len(mine) else \
                    str(getattr(c, f"{side}_initial_state"))
                if state != "CLOSED":
                    expected.add((c.conn_id, side, state))
        assert set(zip(column_of(got, "conn_id"), column_of(got, "side"),
                       column_of(got, "state"), strict=True)) == expected


# --- the contract's small print ------------------------------------------------------

ENUMERATED = {
    "connections": ["client_state", "server_state", "client_eventual_state",
                    "server_eventual_state", "close_kind", "client_initial_state",
                    "server_initial_state"],
    "transitions": ["side", "from_state", "to_state"],
    "anomalies": ["side", "kind", "severity", "confidence"],
}


@pytest.mark.parametrize("capture", ["port_reuse_close_wait.server.pcap", "refused.client.pcap"])
def test_enumerated_columns_are_categorical(capture: str) -> None:
    result = tcplife.analyze(SAMPLES / capture)
    empty = tcplife.analyze(SAMPLES / capture, tables=())
    for table, columns in ENUMERATED.items():
        for name in columns:
            for frame in (getattr(result, table), getattr(empty, table)):
                assert isinstance(frame[name].dtype, pd.CategoricalDtype), (table, name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        snap = result.state_at("start")
    assert isinstance(snap["side"].dtype, pd.CategoricalDtype)
    assert isinstance(snap["state"].dtype, pd.CategoricalDtype)
    kinds = result.anomalies["kind"]
    assert not kinds.isna().any()  # every kind emitted is in the vocabulary
    assert list(result.anomalies["severity"].cat.categories) == ["error", "warning", "info"]


def test_result_repr_is_a_few_lines_of_counts() -> None:
    result = tcplife.analyze(SAMPLES / "port_reuse_close_wait.server.pcap")
    text = repr(result)
    lines = text.splitlines()
    assert 2 <= len(lines) <= 6
    assert "conn_id" not in text and "..." not in text  # no table dumped
    assert f"{len(result.connections)} connections" in text
    assert f"{len(result.transitions)} transitions" in text
    assert f"{len(result.anomalies)} anomal" in text
    assert f"{result.stats.frames} frames" in text
    assert "port_reuse_close_wait.server.pcap" in text


def test_summary_is_what_the_cli_prints(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "120")  # both renderings at one width (xdist sets 80)
    capture = SAMPLES / "close_wait_rst.server.pcap"
    summary = tcplife.analyze(capture).summary()
    printed = CliRunner().invoke(main, ["analyze", str(capture), "--format", "table"],
                                 env={"COLUMNS": "120"})
    assert printed.exit_code == 0
    stream = io.StringIO()
    console = output.table_console(stream)
    console.print(views.summary_view(summary))
    rendered = stream.getvalue().strip()
    assert rendered and rendered in printed.stdout
    assert summary["connections"] == len(tcplife.analyze(capture).connections)


@pytest.mark.parametrize("command", [["analyze"], ["timeline"], ["ladder", "--conn", "0"]])
def test_unknown_output_extension_is_a_usage_error(command: list[str], tmp_path: Path) -> None:
    target = tmp_path / "out.xlsx"
    done = CliRunner().invoke(main, [command[0], str(SAMPLES / "refused.client.pcap"),
                                     *command[1:], "-o", str(target)])
    assert done.exit_code == 2
    assert ".xlsx" in done.output and ".jsonl" in done.output and ".csv" in done.output
    assert not target.exists()
    # --format settles it; a name without an extension is JSON lines
    assert CliRunner().invoke(main, [command[0], str(SAMPLES / "refused.client.pcap"),
                                     *command[1:], "-o", str(target), "--format",
                                     "jsonl"]).exit_code == 0
    if command[0] != "ladder":
        plain = tmp_path / "rows"
        assert CliRunner().invoke(main, [command[0], str(SAMPLES / "refused.client.pcap"),
                                         "-o", str(plain)]).exit_code == 0
        json.loads(plain.read_text().splitlines()[0])


@given(st.lists(st.integers(-(2**63), 2**63 - 1), max_size=60))
def test_distinct_is_numpys_unique(values: list[int]) -> None:
    import numpy as np

    from tcplife.capture.columns import distinct

    array = np.array(values, dtype=np.int64)
    assert distinct(array) == np.unique(array).tolist()


def test_a_small_run_does_not_load_numpy_ma() -> None:
    """numpy 2's np.unique without return_* flags imports numpy.ma (~16 ms): the readers
    use `distinct` instead."""
    captures = [str(SAMPLES / "many_short.client.pcapng"), str(SAMPLES / "refused.client.pcap")]
    code = ("import sys\nfrom click.testing import CliRunner\nfrom tcplife.cli.main import main\n"
            f"for c in {captures!r}:\n"
            "    done = CliRunner().invoke(main, ['analyze', c, '--format', 'jsonl'])\n"
            "    assert done.exit_code == 0\n"
            "print('numpy.ma' in sys.modules)\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                          text=True, check=True)
    assert done.stdout.strip() == "False"


def test_the_sans_io_core_imports_nothing_of_the_outside() -> None:
    """The state table and the tracker (fed segments, giving events) load none of numpy,
    pandas, rich, click, dpkt: numpy comes with the fast path that calls the tracker in
    bulk, the others with the layers above."""
    outside = ["numpy", "pandas", "rich", "click", "dpkt", "pyarrow"]
    for module in ("tcplife.core.machine", "tcplife.core.tracker", "tcplife.core.events"):
        probe = (f"import {module}, sys\n"
                 f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({outside!r})))")
        done = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True,
                              text=True, check=True)
        assert done.stdout.strip() == "[]", (module, done.stdout)
