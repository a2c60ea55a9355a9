"""The public tables as pandas DataFrames: the dtypes of `tcplife.output.schema`'s columns.

Owns: the pandas dtypes of ``connections``, ``transitions``, ``anomalies``, ``oddities``
and ``state_at`` (`CONNECTION_COLUMNS` ...), building DataFrames from the collector's
compact columns (`connections_frame`, `connection_frames`, `transitions_frame`) and from
`tcplife.output.rows.Rows` (`frame_from_rows`; `anomalies_frame`, `oddities_frame`), and
`state_at` on DataFrames. Imported only
where a DataFrame is wanted: the command line's JSON-lines, CSV and table paths use
`Rows` and never import this module (nor pandas).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from tcplife.output import schema
from tcplife.output.collect import (  # re-exported: the collector's old home
    Collector,
    connection_row,
    peer_columns,
    seconds,
)
from tcplife.output.rows import Rows

if TYPE_CHECKING:
    from tcplife.output.collect import Columns

__all__ = ["ANOMALY_COLUMNS", "CONNECTION_COLUMNS", "Collector", "ODDITY_COLUMNS",
           "STATE_AT_COLUMNS", "TRANSITION_COLUMNS", "connection_row", "empty_frame",
           "frame_from_rows", "peer_columns", "state_at", "to_ns"]

TIME_DTYPE = "datetime64[ns, UTC]"


def dtype_of(spec: str) -> Any:
    """The pandas dtype of a `tcplife.output.schema` column spec."""
    if spec == "time":
        return TIME_DTYPE
    found = schema.category(spec)
    if found is not None:
        return _categorical(spec)
    return spec


_CATEGORICALS: dict[str, pd.CategoricalDtype] = {}


def _categorical(spec: str) -> pd.CategoricalDtype:
    dtype = _CATEGORICALS.get(spec)
    if dtype is None:
        values, ordered = schema.CATEGORIES[spec[4:]]
        dtype = _CATEGORICALS[spec] = pd.CategoricalDtype(list(values), ordered=ordered)
    return dtype


def dtypes(specs: schema.Schema) -> dict[str, Any]:
    return {name: dtype_of(spec) for name, spec in specs.items()}


STATE_DTYPE = _categorical("cat:state")
SIDE_DTYPE = _categorical("cat:side")
CLOSE_KIND_DTYPE = _categorical("cat:close_kind")
KIND_DTYPE = _categorical("cat:kind")
ZEEK_CONN_STATE_DTYPE = _categorical("cat:zeek_conn_state")
SURICATA_STATE_DTYPE = _categorical("cat:suricata_state")
STREAM_MATCH_DTYPE = _categorical("cat:stream_match")
SEVERITY_DTYPE = _categorical("cat:severity")  #: ordered, worst first
CONFIDENCE_DTYPE = _categorical("cat:confidence")

#: column -> dtype, in the order of the contract (extra columns after).
CONNECTION_COLUMNS: dict[str, Any] = dtypes(schema.CONNECTIONS)
TRANSITION_COLUMNS: dict[str, Any] = dtypes(schema.TRANSITIONS)
ANOMALY_COLUMNS: dict[str, Any] = dtypes(schema.ANOMALIES)
ODDITY_COLUMNS: dict[str, Any] = dtypes(schema.ODDITIES)
STATE_AT_COLUMNS: dict[str, Any] = dtypes(schema.STATE_AT)


def empty_frame(dtypes_by_name: dict[str, Any]) -> pd.DataFrame:
    return pd.DataFrame({name: pd.Series([], dtype=dtype)
                         for name, dtype in dtypes_by_name.items()})


def _series(values: list[Any], spec: str) -> Any:
    """One column of plain values (as `Rows` holds them) with the spec's dtype."""
    if spec == "time":
        if any(v is None for v in values):  # null times: NaT
            return pd.to_datetime(pd.array(values, dtype="Int64"), unit="ns", utc=True)
        return pd.to_datetime(np.asarray(values, dtype="int64"), unit="ns", utc=True)
    if spec == "object":
        series = pd.Series([None] * len(values), dtype="object")
        series[:] = values
        return series
    dtype = dtype_of(spec)
    if isinstance(dtype, pd.CategoricalDtype):
        dtype = widened(dtype, values)
    return pd.Series(values, dtype=dtype)


def widened(dtype: pd.CategoricalDtype, values: Any) -> pd.CategoricalDtype:
    """``dtype`` with the values it does not know appended to its categories (sorted):
    a value outside the vocabulary (a plug-in detector's kind) is kept, never made NA."""
    unknown = {v for v in values if isinstance(v, str)} - set(dtype.categories)
    if not unknown:
        return dtype
    return pd.CategoricalDtype(list(dtype.categories) + sorted(unknown),
                               ordered=dtype.ordered)


def frame_from_rows(rows: Rows) -> pd.DataFrame:
    """The DataFrame of `Rows`, with the schema's dtypes."""
    if not len(rows):
        return empty_frame(dtypes(rows.schema))
    return pd.DataFrame({name: _series(rows.column(name), spec)
                         for name, spec in rows.schema.items()})


def _columns(c: Columns, order: np.ndarray | None = None) -> dict[str, Any]:
    """The compact columns as pandas arrays (in ``order``, positions, if given)."""
    out: dict[str, Any] = {}
    for name, spec in c.schema.items():
        kind, buf = c.kinds[name], c.data[name]
        if kind == "obj":
            values = buf if order is None else [buf[i] for i in order.tolist()]
            series = pd.Series([None] * len(values), dtype="object")
            series[:] = values
            out[name] = series
            continue
        arr = c.array(name)
        if order is not None:
            arr = arr[order]
        dtype = dtype_of(spec)
        if kind == "code":
            table = list(c.codes[name])
            if isinstance(dtype, pd.CategoricalDtype):
                cats = list(dtype.categories)
                remap = np.array([cats.index(v) for v in table], dtype=np.int64)
                out[name] = pd.Categorical.from_codes(remap[arr], dtype=dtype)
            else:
                values = np.array(table, dtype=object)[arr]
                out[name] = pd.array(values, dtype=dtype)
        elif kind == "time":
            out[name] = pd.to_datetime(arr, unit="ns", utc=True)
        elif kind == "nint":
            out[name] = pd.arrays.IntegerArray(arr.copy(), arr == -1).astype(dtype)
        elif kind == "bool":
            out[name] = arr.astype(bool)
        else:
            out[name] = pd.Series(arr, dtype=dtype)
    return out


def connection_frames(collector: Collector, size: int) -> Iterator[pd.DataFrame]:
    """A collector's ``connections`` table in conn_id order as DataFrames of ``size`` rows
    (their concatenation is `connections_frame`): a writer holds one of them at a time,
    beside the compact columns, instead of the whole table."""
    names = list(CONNECTION_COLUMNS)
    start = 0
    for part, derived in collector.connection_parts(size):
        cols = _columns(collector._conns, part)
        anomalies = pd.Series([None] * len(part), dtype="object")
        anomalies[:] = derived["anomalies"]
        first, last = cols["first_ts_ns"].to_numpy(), cols["last_ts_ns"].to_numpy()
        cols.update(
            anomalies=anomalies,
            tcp_streams=pd.array(derived["tcp_streams"],
                                 dtype=CONNECTION_COLUMNS["tcp_streams"]),
            tcp_stream_match=pd.Categorical(derived["tcp_stream_match"],
                                            dtype=STREAM_MATCH_DTYPE),
            **seconds(first, last),  # the floats `connection_row` gives
            first_time=pd.to_datetime(first, unit="ns", utc=True),
            last_time=pd.to_datetime(last, unit="ns", utc=True))
        frame = pd.DataFrame({name: cols[name] for name in names})
        if start:
            frame.index += start
        start += len(part)
        yield frame


def connections_frame(collector: Collector) -> pd.DataFrame:
    """A collector's whole ``connections`` table, in conn_id order."""
    frames = list(connection_frames(collector, max(1, len(collector._conns))))
    return frames[0] if frames else empty_frame(CONNECTION_COLUMNS)


def transitions_frame(collector: Collector) -> pd.DataFrame:
    """A collector's kept transitions in (time, tid) order."""
    order = collector.transition_order()
    if order is None:
        return empty_frame(TRANSITION_COLUMNS)
    frame = pd.DataFrame(_columns(collector._trans, order))
    ts_ns = frame["ts_ns"].to_numpy()
    frame.insert(1, "ts", ts_ns / 1e9)
    frame["time"] = pd.to_datetime(ts_ns, unit="ns", utc=True)
    return frame[list(TRANSITION_COLUMNS)]


def anomalies_frame(collector: Collector) -> pd.DataFrame:
    """The anomalies of a collector, in their total order."""
    return frame_from_rows(collector.anomaly_rows())


def oddities_frame(collector: Collector) -> pd.DataFrame:
    return frame_from_rows(collector.oddity_rows())


def typed_frame(columns: dict[str, list[Any]], dtypes_by_name: dict[str, Any]) -> pd.DataFrame:
    """A DataFrame from plain lists with the given pandas dtypes."""
    if not columns or not next(iter(columns.values())):
        return empty_frame(dtypes_by_name)
    data = {}
    for name, dtype in dtypes_by_name.items():
        values = columns[name]
        if dtype == TIME_DTYPE:
            data[name] = pd.to_datetime(np.asarray(values, dtype="int64"), unit="ns", utc=True)
        elif dtype == "object":
            series = pd.Series([None] * len(values), dtype="object")
            series[:] = values
            data[name] = series
        else:
            data[name] = pd.Series(values, dtype=dtype)
    return pd.DataFrame(data)


def to_ns(when: float | int | str | datetime | pd.Timestamp) -> int:
    """Epoch seconds (float/int), an ISO 8601 string or a datetime -> integer ns.
    Naive datetimes and ISO strings without an offset are taken as UTC."""
    if isinstance(when, bool):
        raise TypeError("a time must be epoch seconds, an ISO string or a datetime")
    if isinstance(when, (int, float, np.integer, np.floating)):
        # Round through microseconds text to avoid float noise in the ns digits.
        return int(round(float(when) * 1e6)) * 1000 if isinstance(when, (float, np.floating)) \
            else int(when) * 1_000_000_000
    if isinstance(when, str):
        text = when.strip()
        try:
            return to_ns(float(text))
        except ValueError:
            pass
        stamp = pd.Timestamp(text)
    else:
        stamp = pd.Timestamp(when)
    if stamp.tzinfo is None:
        stamp = stamp.tz_localize("UTC")
    return int(stamp.value)


def state_at(connections: Any, transitions: Any,
             when: float | int | str | datetime | pd.Timestamp) -> pd.DataFrame:
    """Each side of each connection alive at ``when``, like ``ss -tan`` then (a
    DataFrame; `tcplife.output.snapshot.state_at_rows` is the computation)."""
    from tcplife.output.snapshot import state_at_rows

    return frame_from_rows(state_at_rows(connections, transitions, to_ns(when)))
