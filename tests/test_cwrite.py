"""The compiled writer (engine/write*.c, `tcplife.output.cwrite`) writes exactly the bytes
of the Python writers (`tcplife.output.formats`: write_jsonl, write_json, write_csv), which
are the specification: every table of every sample and corpus capture, from `Rows` and
straight from a `Collector`'s columns; float reprs, JSON string escapes, ISO times and CSV
cells against Python itself (hypothesis); the edge cases by hand (nulls, formula guards,
quoting, the per-block choice of nanoseconds, the row an error stops at); and hostile
column tuples refused without a crash."""

from __future__ import annotations

import csv
import io
import json
import math
from functools import lru_cache
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tcplife
from tcplife.output import cwrite, formats
from tcplife.output.collect import Collector
from tcplife.output.rows import Rows
from tcplife.output.schema import TABLES

from needs import CORPUS_PCAPS, missing, needs

REPO = Path(__file__).resolve().parents[1]
SAMPLES = sorted((REPO / "sample_pcaps").glob("*.pcap*"))
CORPUS = sorted(CORPUS_PCAPS.glob("*.pcap*")) if CORPUS_PCAPS.is_dir() else []
FORMATS = ("jsonl", "json", "csv")


@pytest.fixture(scope="module")
def engine() -> ModuleType:
    try:
        import tcplife._engine as compiled
    except ImportError:
        missing("the compiled engine (tcplife._engine: python setup.py build_ext --inplace)")
    return compiled


def python_bytes(rows: Any, fmt: str, header: bool = True) -> str:
    out = io.StringIO()
    if fmt == "csv":
        formats.write_csv(rows, out, header=header)
    else:
        getattr(formats, f"write_{fmt}")(rows, out)
    return out.getvalue()


def c_text(engine: ModuleType, rows: Rows, fmt: str, header: bool = True) -> str:
    out = io.StringIO()
    cwrite.write_rows_c(rows, fmt, out, engine=engine, header=header)
    return out.getvalue()


# --- every table of every capture -----------------------------------------------------


@lru_cache(maxsize=4)
def analysed(path: Path) -> tuple[tcplife.Result, Collector]:
    """The capture analysed once; its tables as the command line takes them (the
    `Result`) and a collector fed the same events (the C writer's compact input)."""
    collector = Collector()
    result = tcplife.analyze(path, on_event=lambda ev: collector.add((ev,)))
    return result, collector


def check_capture(engine: ModuleType, path: Path) -> None:
    result, collector = analysed(path)
    for table in TABLES:
        rows = result.table(table)  # what `tcplife analyze --format jsonl` writes
        assert isinstance(rows, Rows)
        for fmt in FORMATS:
            want = python_bytes(rows, fmt)
            assert c_text(engine, rows, fmt) == want, (path.name, table, fmt)
            out = io.BytesIO()
            cwrite.write_collected_c(collector, table, fmt, out, engine=engine)
            assert out.getvalue() == want.encode(), (path.name, table, fmt, "collector")
        assert c_text(engine, rows, "csv", header=False) == python_bytes(rows, "csv", False)


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.name)
def test_every_sample_table_is_written_byte_for_byte(engine: ModuleType, path: Path) -> None:
    check_capture(engine, path)


@needs(corpus=True)
@pytest.mark.parametrize("path", CORPUS, ids=lambda p: p.name)
def test_every_corpus_table_is_written_byte_for_byte(engine: ModuleType, path: Path) -> None:
    check_capture(engine, path)


def test_the_captures_are_there() -> None:
    assert len(SAMPLES) > 20


# --- values against Python ------------------------------------------------------------


def one(spec: str, values: list[Any], name: str = "x") -> Rows:
    return Rows({name: spec}, {name: values})


def both(engine: ModuleType, rows: Rows) -> None:
    for fmt in FORMATS:
        assert c_text(engine, rows, fmt) == python_bytes(rows, fmt), fmt


@settings(max_examples=400, deadline=None)
@given(st.lists(st.floats(allow_nan=True, allow_infinity=False), max_size=20))
def test_floats_as_repr(engine: ModuleType, values: list[float]) -> None:
    both(engine, Rows({"x": "float64", "y": "int64"},
                      {"x": values, "y": list(range(len(values)))}))


@settings(max_examples=300, deadline=None)
@given(st.floats(allow_nan=False, allow_infinity=False))
def test_one_float(engine: ModuleType, value: float) -> None:
    text = c_text(engine, one("float64", [value]), "jsonl")
    assert text == '{"x": ' + repr(value) + "}\n"
    assert float(text[6:-2]) == value


@pytest.mark.parametrize("value", [
    0.0, -0.0, 1.0, 1e-05, 1e-4, 0.0001, 0.00012345, 1e16, 1e15, 9999999999999998.0,
    1e+16, 123456789012345.67, 1e22, 1e23, 5e-324, -5e-324, 2.2250738585072014e-308,
    1.7976931348623157e308, 0.1, 0.3, 2 / 3, 1 / 3, 1716400000.123456, 1e-300 * 1e-10,
    float(2 ** 53), float(2 ** 53 + 2), 144115188075855872.0, 1.5e300, -1.5e-300])
def test_float_edges(engine: ModuleType, value: float) -> None:
    both(engine, one("float64", [value, None, math.nan]))


def test_infinity_in_csv_is_written_and_in_json_stops_at_its_row(engine: ModuleType) -> None:
    rows = one("float64", [1.5, 2.5, math.inf, 3.5])
    assert c_text(engine, rows, "csv") == python_bytes(rows, "csv") == "x\n1.5\n2.5\ninf\n3.5\n"
    for fmt in ("jsonl", "json"):
        want, got = io.StringIO(), io.StringIO()
        with pytest.raises(ValueError, match="not JSON compliant"):
            getattr(formats, f"write_{fmt}")(rows, want)
        with pytest.raises(ValueError, match="not JSON compliant"):
            cwrite.write_rows_c(rows, fmt, got, engine=engine)
        assert got.getvalue() == want.getvalue() and "2.5" in got.getvalue()
    first = one("float64", [-math.inf])
    with pytest.raises(ValueError):
        cwrite.write_rows_c(first, "jsonl", io.StringIO(), engine=engine)


#: any text, lone surrogates and every control character included
TEXT = st.text(st.characters(blacklist_categories=()), max_size=12)


@settings(max_examples=400, deadline=None)
@given(st.lists(st.one_of(st.none(), TEXT), max_size=8))
def test_texts_escaped_and_quoted_as_python(engine: ModuleType, values: list[Any]) -> None:
    both(engine, Rows({"s": "string", "n": "int64"},
                      {"s": values, "n": list(range(len(values)))}))
    both(engine, one("string", values))  # a row of one column: "" when empty in CSV


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(TEXT, max_size=4), max_size=6),
       st.lists(st.lists(st.integers(-2 ** 63, 2 ** 63 - 1), max_size=4), max_size=6))
def test_lists_as_python(engine: ModuleType, texts: list[list[str]],
                         ints: list[list[int]]) -> None:
    both(engine, one("object", texts))
    both(engine, one("object", ints))


def test_json_escapes_by_hand(engine: ModuleType) -> None:
    text = "\x00\x01\x1f\x7f\x80\x85\u2028é\"\\\b\f\n\r\t/ \U0001f600"
    got = c_text(engine, one("string", [text], name='n"a\\me'), "jsonl")
    assert got == json.dumps({'n"a\\me': text}, ensure_ascii=False) + "\n"
    assert got == '{"n\\"a\\\\me": "\\u0000\\u0001\\u001f\x7f\x80\x85\u2028é\\"\\\\\\b\\f' \
        '\\n\\r\\t/ \U0001f600"}\n'


@pytest.mark.parametrize("text", [
    "", "plain", "a,b", 'say "hi"', "line\nbreak", "cr\ronly", " padded ", "=1+2", "+1",
    "-1", "@SUM(A1)", "\tTab", "\rCR", "=a,b", '-"q"', "'quoted", "a;b", "é", "\x00nul"])
def test_csv_cells_by_hand(engine: ModuleType, text: str) -> None:
    for rows in (one("string", [text, None]), Rows({"a": "string", "b": "bool"},
                                                   {"a": [text], "b": [True]}),
                 one("object", [[text, "x"], [], ["-", text]])):
        both(engine, rows)
    ints = one("object", [[-1, 2], [3]])  # joined text: guarded though numbers
    assert c_text(engine, ints, "csv") == python_bytes(ints, "csv") == "x\n'-1;2\n3\n"


def test_csv_guard_and_quotes_spelled_out(engine: ModuleType) -> None:
    rows = Rows({"t": "string", "f": "float64", "i": "int64"},
                {"t": ["=cmd", "-a,b", 'q"'], "f": [-1.5, math.nan, 2.0],
                 "i": [-3, 4, 5]})
    want = "t,f,i\n'=cmd,-1.5,-3\n\"'-a,b\",,4\n\"q\"\"\",2.0,5\n"
    assert c_text(engine, rows, "csv") == python_bytes(rows, "csv") == want
    with io.StringIO() as out:
        csv.writer(out, lineterminator="\n").writerow(["'=cmd", -1.5, -3])
        assert want.splitlines()[1] == out.getvalue().strip()


NS = st.integers(-2 ** 63, 2 ** 63 - 1)
US = st.integers(-(2 ** 63) // 1000 + 1, (2 ** 63 - 1) // 1000).map(lambda v: v * 1000)


def whole_us(ns: int) -> int:
    """``ns`` rounded towards 0 to a whole microsecond (still an int64)."""
    return ns - ns % 1000 if ns >= 0 else -(-ns - -ns % 1000)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.none(), NS, US), max_size=10))
def test_iso_times_as_python(engine: ModuleType, values: list[int | None]) -> None:
    rows = one("time", values)
    both(engine, rows)
    got = c_text(engine, rows, "jsonl").splitlines()
    assert [json.loads(line)["x"] for line in got] == formats.iso_ns(values)


@pytest.mark.parametrize("ns", [
    0, -1, 1, 999, 1000, -1000, 10 ** 18, -(2 ** 63), 2 ** 63 - 1, 951782400 * 10 ** 9,
    (951782400 - 1) * 10 ** 9, 4107542400 * 10 ** 9, -2208988800 * 10 ** 9 - 1,
    1716400000123456789, 1716400000123456000])
def test_iso_time_edges(engine: ModuleType, ns: int) -> None:
    """Epoch, before 1970, leap days (2000-02-29, 2100 not leap), int64's ends (years
    1677 and 2262: every int64 ns is a four-digit year, which Python writes the same)."""
    both(engine, one("time", [ns, None, whole_us(ns)]))
    both(engine, one("time", [whole_us(ns)]))


def test_nanoseconds_are_decided_per_block_of_rows(engine: ModuleType) -> None:
    """`iso_ns` sees 10,000 rows at a time (`formats.iter_records`): one value with
    nanoseconds gives its whole block, and only its block, nine digits."""
    n = cwrite.BLOCK * 2 + 5
    values = [1_700_000_000_000_000_000 + i * 1000 for i in range(n)]
    values[cwrite.BLOCK + 7] += 1
    rows = Rows({"t": "time", "i": "int64"}, {"t": values, "i": list(range(n))})
    for fmt in FORMATS:
        text = c_text(engine, rows, fmt)
        assert text == python_bytes(rows, fmt), fmt
    lines = c_text(engine, rows, "jsonl").splitlines()
    assert [len(json.loads(lines[i])["t"]) for i in (0, cwrite.BLOCK - 1, cwrite.BLOCK,
                                                     2 * cwrite.BLOCK - 1, 2 * cwrite.BLOCK)] \
        == [27, 27, 30, 30, 27]


def test_nulls_of_every_kind(engine: ModuleType) -> None:
    spec = {"i": "int64", "n": "Int64", "b": "bool", "f": "float64", "t": "time",
            "s": "string", "c": "cat:side", "o": "object", "p": "int8"}
    rows = Rows(spec, {"i": [None, -(2 ** 63), 1], "n": [None, 5, -1],
                       "b": [None, True, False], "f": [None, math.nan, -0.0],
                       "t": [None, 0, -1000], "s": [None, "", "x"],
                       "c": ["client", None, "server"], "o": [[], ["a"], ["b", "c"]],
                       "p": [-128, 127, None]})
    both(engine, rows)
    assert c_text(engine, rows, "jsonl").splitlines()[0] == (
        '{"i": null, "n": null, "b": null, "f": null, "t": null, "s": null, '
        '"c": "client", "o": [], "p": -128}')


def test_empty_tables(engine: ModuleType) -> None:
    for spec in ({"a": "int64", "b": "string"}, {"only": "string"}, {"": "int64"}):
        rows = Rows.empty(spec)
        both(engine, rows)
        assert c_text(engine, rows, "csv", header=False) == ""
    assert c_text(engine, Rows.empty({"a": "int64"}), "json") == "[]\n"


def test_a_row_of_one_empty_field_is_quoted(engine: ModuleType) -> None:
    rows = one("string", ["", None, "a"], name="")
    assert c_text(engine, rows, "csv") == python_bytes(rows, "csv") == '""\n""\n""\na\n'


def test_a_stream_that_cannot_take_a_text_gets_the_rows_before_it(engine: ModuleType) -> None:
    """Lone surrogates (a file name's undecodable bytes) and text an ASCII stream cannot
    encode fail at the same row, after the same rows, as the Python writer."""
    values = ["a", "b\udcff", "c"]
    rows = Rows({"i": "int64", "s": "string"}, {"i": [1, 2, 3], "s": values})
    for fmt in FORMATS:
        for encoding, errors in (("utf-8", "strict"), ("ascii", "strict"),
                                 ("utf-8", "surrogateescape")):
            want, got = io.BytesIO(), io.BytesIO()
            outcomes = []
            python = getattr(formats, f"write_{fmt}")
            for out, write in ((want, lambda s, w=python: w(rows, s)),
                               (got, lambda s, f=fmt: cwrite.write_rows_c(rows, f, s,
                                                                          engine=engine))):
                stream = io.TextIOWrapper(out, encoding=encoding, errors=errors,
                                          newline="")
                try:
                    write(stream)
                    outcomes.append(None)
                except UnicodeEncodeError as exc:
                    outcomes.append(type(exc))
                stream.flush()
                stream.detach()
            assert outcomes[0] == outcomes[1], (fmt, encoding, errors)
            assert got.getvalue() == want.getvalue(), (fmt, encoding, errors)
        binary = io.BytesIO()  # a binary stream takes UTF-8, strictly (as open_output)
        with pytest.raises(UnicodeEncodeError):
            cwrite.write_rows_c(rows, fmt, binary, engine=engine)
        text = io.TextIOWrapper(want := io.BytesIO(), encoding="utf-8", newline="")
        with pytest.raises(UnicodeEncodeError):
            getattr(formats, f"write_{fmt}")(rows, text)
        text.flush()
        assert binary.getvalue() == want.getvalue()


def test_values_the_c_writer_leaves_to_python(engine: ModuleType) -> None:
    for rows in (one("int64", [True]), one("int64", [1.5]), one("float64", [1]),
                 one("bool", [1]), one("string", [3]), one("object", [None]),
                 one("object", [[1, "a"]]), one("int64", [2 ** 64])):
        with pytest.raises(cwrite.Unsupported):
            cwrite.write_rows_c(rows, "jsonl", io.StringIO(), engine=engine)


# --- hostile column tuples ------------------------------------------------------------


def fmt_rows(engine: ModuleType, columns: list[Any], n: int | None = None) -> bytes:
    stop = n if n is not None else 1
    return engine.format_rows("jsonl", columns, 0, stop)[0]


@pytest.mark.parametrize("columns", [
    [("s", "string", np.array([2]), b"ab", np.array([0, 1, 2]))],  # code past the table
    [("s", "string", np.array([-2]), b"ab", np.array([0, 1, 2]))],
    [("s", "string", np.array([0]), b"ab", np.array([0, 9]))],  # offsets past the blob
    [("s", "string", np.array([0]), b"ab", np.array([2, 1]))],
    [("s", "string", np.array([0]), b"ab", np.array([], dtype=np.int64))],
    [("o", "object", np.array([0, 5]), np.array([1, 2]))],  # list past its elements
    [("o", "object", np.array([1, 0]), np.array([1, 2]))],
    [("o", "object", np.array([-1, 0]), np.array([1, 2]))],
    [("o", "object", np.array([0, 1]), np.array([7]), b"ab", np.array([0, 2]))],
])
def test_out_of_range_codes_and_offsets_are_refused(engine: ModuleType,
                                                    columns: list[Any]) -> None:
    with pytest.raises(ValueError):
        fmt_rows(engine, columns)


@pytest.mark.parametrize("columns", [
    [("x", "int64", np.zeros((2, 2), dtype=np.int64))],  # two dimensions
    [("x", "int64", np.zeros(4, dtype=np.int64)[::2])],  # not contiguous
    [("x", "int64", np.zeros(2, dtype=np.float32))],
    [("x", "int64", np.zeros(2, dtype=np.uint64))],
    [("x", "float64", np.zeros(2, dtype=np.int64))],
    [("x", "int64", "text")],
    [("x", "int64")],
    [("x", "float64", np.zeros(1), 0)],
    [("x", "strange", np.zeros(1, dtype=np.int64))],
    [("x",)],
    [5],
    [(1, "int64", np.zeros(1, dtype=np.int64))],
    [("s", "string", np.array([0]), np.array([1.0]), np.array([0, 1]))],
])
def test_malformed_columns_are_refused(engine: ModuleType, columns: list[Any]) -> None:
    with pytest.raises((TypeError, ValueError)):
        fmt_rows(engine, columns)


def test_row_ranges_and_lengths_are_checked(engine: ModuleType) -> None:
    a = ("a", "int64", np.arange(3, dtype=np.int64))
    with pytest.raises(ValueError, match="rows"):
        engine.format_rows("jsonl", [a, ("b", "int64", np.arange(2, dtype=np.int64))], 0, 2)
    for start, stop in ((0, 4), (-1, 1), (2, 1)):
        with pytest.raises(IndexError):
            engine.format_rows("jsonl", [a], start, stop)
    with pytest.raises(ValueError):
        engine.format_rows("xml", [a], 0, 1)
    with pytest.raises(ValueError):
        engine.format_rows("jsonl", [a], 0, 1, block=0)
    assert engine.format_rows("jsonl", [a], 1, 3) == (b'{"a": 1}\n{"a": 2}\n', 2)


def test_narrow_and_unsigned_buffers(engine: ModuleType) -> None:
    from array import array

    for buf in (np.array([-5, 7], dtype=np.int8), np.array([-5, 7], dtype=np.int16),
                np.array([-5, 7], dtype=np.int32), array("q", [-5, 7]), array("b", [-5, 7])):
        assert engine.format_rows("csv", [("x", "int32", buf)], 0, 2) == (b"-5\n7\n", 2)
    for buf in (np.array([250, 7], dtype=np.uint8), np.array([250, 7], dtype=np.uint32)):
        assert engine.format_rows("csv", [("x", "int32", buf)], 0, 2) == (b"250\n7\n", 2)
    flags = np.array([True, False])
    assert engine.format_rows("jsonl", [("b", "bool", flags)], 0, 2)[0] == \
        b'{"b": true}\n{"b": false}\n'


# --- the float tables -----------------------------------------------------------------


def test_the_committed_float_tables_are_what_python_computes() -> None:
    """engine/write_ryu.h (Ryu's powers of five) is generated, exactly, by
    `cwrite.ryu_header` (python -m tcplife.output.cwrite)."""
    assert (REPO / cwrite.RYU_HEADER).read_text() == cwrite.ryu_header()


def test_a_million_doubles_as_repr(engine: ModuleType) -> None:
    """Random bit patterns (every exponent, subnormals) and the doubles tcplife makes
    (ns / 1e9, durations, decimal fractions), each the text of repr()."""
    rng = np.random.default_rng(21)
    bits = rng.integers(0, 2 ** 64, 600_000, dtype=np.uint64).view(np.float64)
    values = np.concatenate([
        bits[np.isfinite(bits)],
        (1_716_400_000_000_000_000 + rng.integers(0, 10 ** 15, 200_000)) / 1e9,
        rng.integers(0, 10 ** 12, 100_000) / 1e9,
        rng.integers(-10 ** 6, 10 ** 6, 100_000) / 10.0 ** rng.integers(0, 25, 100_000),
        rng.integers(1, 2 ** 53, 50_000).astype(np.float64) * 2.0 ** rng.integers(
            -1074, 971, 50_000)])
    data, done = engine.format_rows("csv", [("x", "float64", values)], 0, len(values))
    assert done == len(values)
    got = data.decode().split("\n")[:-1]
    want = [repr(v) for v in values.tolist()]
    assert len(got) == len(want)
    wrong = [(g, w) for g, w in zip(got, want, strict=True) if g != w]
    assert not wrong, wrong[:10]
