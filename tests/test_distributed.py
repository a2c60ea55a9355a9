"""tcplife.analyze_dask: rotated captures on a Dask cluster equal `analyze` of the
concatenation, row for row.

Captures are cut into rotated files at arbitrary record boundaries (mid-handshake and
mid-close among them); the Dask result must equal the single-process result on the same
list of files (which `analyze` reads as one capture).
"""

from __future__ import annotations

import itertools
import os
import random
import shutil
import struct
import subprocess
from pathlib import Path

import pandas as pd
import pytest

distributed = pytest.importorskip("distributed")

from pcapgen import T0_US, Seg, orderly_close, write_pcap  # noqa: E402

import tcplife  # noqa: E402
from tcplife.capture import CaptureError  # noqa: E402
from tcplife.detect import ConnView, PerConnection  # noqa: E402
from tcplife.engines.analysis import TABLES  # noqa: E402
from tcplife.engines.dataset import SORT_KEYS, ParquetDataset, restore  # noqa: E402
from tcplife.engines.distributed import (  # noqa: E402
    KeyedObserver,
    analyze_dask,
    capture_files,
)

SAMPLES = Path(__file__).resolve().parent.parent / "sample_pcaps"
LAB = ["many_short.client.pcap", "clean_traffic.client.pcap",
       "port_reuse_after_time_wait.client.pcap", "port_reuse_close_wait.server.pcap",
       "simultaneous_close.any.pcap", "server_never_closes.server.pcap",
       "ipv6.any.pcap", "handshake_ack_dropped.server.pcap", "half_open.client.pcap",
       "fin_wait_2_timeout_then_data.client.pcap", "final_ack_dropped.server.pcap",
       "keepalive.client.pcap", "syn_dropped.client.pcap", "mid_stream.client.pcap"]


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                       dashboard_address=":0")
    c = distributed.Client(cluster)
    try:
        yield c
    finally:
        c.close()
        cluster.close()


def worker_spools(client) -> dict[str, list[str]]:
    """Per worker, the spool directories left in its own scratch directory."""
    from tcplife.engines.spool import PREFIX

    return client.run(lambda dask_worker: [
        n for n in os.listdir(dask_worker.local_directory) if n.startswith(PREFIX)])


@pytest.fixture(params=["workers", "spool"])
def spooled(request, tmp_path):
    """`analyze_dask`'s keywords: the stages' data in each worker's own scratch directory
    (a caller's client, no ``parquet_dir`` or ``spool_dir``: the default), or in a spool
    directory; either must be gone afterwards."""
    if request.param == "workers":
        client = request.getfixturevalue("client")
        yield {}
        assert all(left == [] for left in worker_spools(client).values())
        return
    where = tmp_path / "spool-parent"
    where.mkdir()
    yield {"spool_dir": where}
    assert list(where.iterdir()) == []


def records(path: Path) -> tuple[bytes, list[bytes]]:
    """A classic pcap's file header and its records, as bytes."""
    data = path.read_bytes()
    magic = data[:4]
    endian = "<" if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    out, pos = [], 24
    while pos + 16 <= len(data):
        caplen = struct.unpack(endian + "I", data[pos + 8:pos + 12])[0]
        out.append(data[pos:pos + 16 + caplen])
        pos += 16 + caplen
    return data[:24], out


def rotate(path: Path, cuts: list[int], outdir: Path, stem: str = "cap") -> list[Path]:
    """Cut a classic pcap before each record index of ``cuts``: tcpdump -C's numbering."""
    header, recs = records(path)
    # Only where the files do not overlap in time (every frame before the cut earlier
    # than every frame after it): overlapping files are merged frame by frame by time,
    # as mergecap merges them, which the Dask engine refuses (test_overlap_is_refused).
    endian = "<" if header[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    ts = [struct.unpack(endian + "II", r[:8]) for r in recs]
    before = list(itertools.accumulate(ts, max))
    after = list(itertools.accumulate(reversed(ts), min))[::-1]
    cuts = [c for c in cuts if 0 < c < len(recs) and before[c - 1] < after[c]]
    bounds = [0, *sorted(set(cuts)), len(recs)]
    outdir.mkdir(parents=True, exist_ok=True)
    files = []
    for i, (a, b) in enumerate(zip(bounds, bounds[1:], strict=False)):
        f = outdir / f"{stem}.pcap{i if i else ''}"
        f.write_bytes(header + b"".join(recs[a:b]))
        files.append(f)
    return files


def assert_same(got: tcplife.Result, want: tcplife.Result) -> None:
    for table in ("connections", "transitions", "anomalies", "oddities"):
        pd.testing.assert_frame_equal(getattr(got, table), getattr(want, table),
                                      check_exact=True, obj=table)
    assert got.stats == want.stats
    assert got.warnings == want.warnings


def random_cuts(n: int, seed: int, pieces: int) -> list[int]:
    rng = random.Random(seed)
    return rng.sample(range(1, n), min(pieces, n - 1)) if n > 1 else []


@pytest.mark.parametrize("name", LAB)
def test_lab_capture_rotated_equals_concatenation(name, tmp_path, client, spooled):
    path = SAMPLES / name
    _, recs = records(path)
    for k, cuts in enumerate((list(range(1, len(recs), 3)), random_cuts(len(recs), 9, 4))):
        files = rotate(path, cuts, tmp_path / f"set{k}")
        want = tcplife.analyze(files, time_wait_threshold=2)
        got = analyze_dask(tmp_path / f"set{k}", scheduler=client, time_wait_threshold=2,
                           **spooled)
        assert len(files) > 1 or len(recs) < 2
        assert_same(got, want)
        assert got.sources == [str(f) for f in files]


def shifted(convo: list[Seg], client: tuple[str, int], dc: int, ds: int) -> list[Seg]:
    """The conversation with the client's sequence numbers moved by ``dc``, the server's
    by ``ds`` (a new instance on a reused 4-tuple needs a new ISN)."""
    out = []
    for s in convo:
        mine, theirs = (dc, ds) if s.src == client else (ds, dc)
        out.append(Seg(s.ts_us, s.src, s.dst, s.seq + mine, s.ack + theirs if s.ack else 0,
                       s.flags, s.payload))
    return out


def many_conversations(n: int = 60, seed: int = 1) -> list[Seg]:
    """``n`` scripted conversations between a few hosts, interleaved in time, some on the
    same 4-tuple again (port reuse) and each lasting ~3 s."""
    rng = random.Random(seed)
    segs: list[Seg] = []
    for i in range(n):
        client = (f"10.0.{i % 3}.1", 40000 + i % 8)  # 4-tuples recur every 24
        server = (f"10.1.0.{i % 2 + 1}", 80 if i % 4 else 443)
        t0 = T0_US + i * 150_000 + rng.randrange(0, 50_000)
        convo = shifted(orderly_close(t0, client, server), client, 7919 * i, 104729 * i)
        if i % 7 == 3:
            convo = convo[:rng.randrange(1, len(convo))]  # cut short: left open or half done
        segs += convo
    segs.sort(key=lambda s: s.ts_us)
    return segs


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_generated_capture_rotated_equals_concatenation(seed, tmp_path, client, spooled):
    whole = write_pcap(tmp_path / "whole.pcap", many_conversations(60, seed))
    _, recs = records(whole)
    files = rotate(whole, random_cuts(len(recs), seed, 12), tmp_path / "rot")
    for opts in ({"time_wait_threshold": 3}, {"time_wait": 0.5, "closed_linger": 1.0}):
        want = tcplife.analyze(files, **opts)
        got = analyze_dask(files, scheduler=client, partitions=5, **spooled, **opts)
        assert_same(got, want)
        assert len(got.connections) == 60
        assert {"port_reuse"} <= set(want.anomalies["kind"])


def test_every_cut_of_one_conversation(tmp_path, client):
    """One conversation cut at every record boundary in turn: mid-handshake, mid-data,
    mid-close."""
    whole = write_pcap(tmp_path / "one.pcap", orderly_close())
    for cut in range(1, 10):
        files = rotate(whole, [cut], tmp_path / f"cut{cut}")
        assert_same(analyze_dask(files, scheduler=client), tcplife.analyze(files))


def test_lab_captures_as_one_set(tmp_path, client, spooled):
    """Different lab captures as the rotated files of one set (link types differ), given
    out of time order (they do not overlap in time)."""
    files = [SAMPLES / n for n in ("many_short.client.pcap", "ipv6.any.pcap",
                                   "linger0.server.pcap", "close_unread_data.client.pcap")]
    assert_same(analyze_dask(files, scheduler=client, partitions=3, **spooled),
                tcplife.analyze(files))


def test_result_does_not_depend_on_partitions(tmp_path, client, spooled):
    whole = write_pcap(tmp_path / "w.pcap", many_conversations(30))
    files = rotate(whole, [7, 100, 101, 230], tmp_path / "rot")
    want = tcplife.analyze(files)
    for parts in (1, 2, 7):
        assert_same(analyze_dask(files, scheduler=client, partitions=parts, **spooled), want)


def test_tables_and_on_event(tmp_path, client):
    whole = write_pcap(tmp_path / "w.pcap", many_conversations(10))
    files = rotate(whole, [20, 40], tmp_path / "rot")
    seen: list[object] = []
    got = analyze_dask(files, scheduler=client, tables=("connections",), on_event=seen.append)
    want = tcplife.analyze(files, tables=("connections",))
    assert_same(got, want)
    assert len(seen) > len(want.connections)


def test_the_merge_ends_the_input_once_as_one_tracker_does(tmp_path, client):
    """The partitions' own ends are not the set's: the merge emits one `InputEnded` at the
    set's last frame, where one tracker does (before the end's timers and connections)."""
    from tcplife.core.events import ConnectionEnded, InputEnded

    whole = write_pcap(tmp_path / "w.pcap", many_conversations(12))
    files = rotate(whole, [20, 40], tmp_path / "rot")
    seen: list[object] = []
    single: list[object] = []
    analyze_dask(files, scheduler=client, partitions=3, on_event=seen.append)
    want = tcplife.analyze(files, on_event=single.append)
    ends = [i for i, ev in enumerate(seen) if isinstance(ev, InputEnded)]
    assert [seen[i] for i in ends] == [InputEnded(want.stats.last_ts_ns)]
    one = next(i for i, ev in enumerate(single) if isinstance(ev, InputEnded))
    assert len(seen) - ends[0] == len(single) - one and len(seen) == len(single)
    assert all(ev.at_end == (i > ends[0]) for i, ev in enumerate(seen)
               if isinstance(ev, ConnectionEnded))
    assert any(isinstance(ev, ConnectionEnded) for ev in seen[ends[0]:])


def test_overlap_is_refused(tmp_path, client):
    files = [str(SAMPLES / f"half_open.{side}.pcap") for side in ("client", "server")]
    with pytest.raises(CaptureError, match="overlap in time.*--engine single"):
        analyze_dask(files, scheduler=client)


def test_files_in_any_order_and_filter(tmp_path, client):
    path = SAMPLES / "clean_traffic.client.pcap"
    _, recs = records(path)
    files = rotate(path, list(range(1, len(recs), 500)), tmp_path / "ring")
    assert len(files) > 2
    backwards = [str(f) for f in files[::-1]]
    assert_same(analyze_dask(backwards, scheduler=client), tcplife.analyze(backwards))
    expr = "tcp[tcpflags] & (tcp-syn|tcp-fin) != 0"
    got = analyze_dask(backwards, scheduler=client, capture_filter=expr)
    assert_same(got, tcplife.analyze(backwards, capture_filter=expr))
    assert got.stats.filtered_out > 0 and got.stats.files == [str(f) for f in files]


def test_capture_files_natural_order(tmp_path):
    for name in ("cap.pcap10", "cap.pcap", "cap.pcap2", "cap.pcap1", ".hidden"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "sub").mkdir()
    names = [Path(p).name for p in capture_files(tmp_path)]
    assert names == ["cap.pcap", "cap.pcap1", "cap.pcap2", "cap.pcap10"]
    assert [Path(p).name for p in capture_files(str(tmp_path / "cap.pcap1*"))] == [
        "cap.pcap1", "cap.pcap10"]


def test_unreadable_file_raises_capture_error(tmp_path, client, spooled):
    bad = tmp_path / "bad.pcap"
    bad.write_bytes(b"not a capture at all")
    with pytest.raises(tcplife.CaptureError):
        analyze_dask([bad, SAMPLES / "refused.client.pcap"], scheduler=client, **spooled)


def test_worker_processes(tmp_path):
    """Real worker processes: everything crosses by pickle, with each worker's own spool
    (the default on a caller's cluster), a spool directory, and a dataset."""
    whole = write_pcap(tmp_path / "w.pcap", many_conversations(20))
    files = rotate(whole, [11, 50, 99], tmp_path / "rot")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=":0") as cluster, \
            distributed.Client(cluster) as c:
        got = analyze_dask(tmp_path / "rot", scheduler=c, partitions=4)
        assert all(left == [] for left in worker_spools(c).values())
        # Each worker spooled what it read in its own directory; pieces of it reached
        # partitions tracked on the other worker (as their columns, by pickle).
        moved = c.run(lambda dask_worker: [k for e in dask_worker.transfer_incoming_log
                                           for k in e["keys"] if "_part_of" in str(k)])
        assert any(moved.values()), moved
        spooled = analyze_dask(tmp_path / "rot", scheduler=c, spool_dir=tmp_path / "spool")
        assert c.run(lambda: tcplife.__file__) == {w: tcplife.__file__ for w in c.nthreads()}
        dataset = analyze_dask(tmp_path / "rot", scheduler=c, partitions=3,
                               parquet_dir=tmp_path / "ds", time_wait_threshold=3)
    assert_same(got, tcplife.analyze(files))
    assert_same(spooled, tcplife.analyze(files))
    assert list((tmp_path / "spool").iterdir()) == []
    assert_dataset_same(dataset, tcplife.analyze(files, time_wait_threshold=3))


def test_cli_engine_dask_equals_single(tmp_path, client):
    from click.testing import CliRunner

    from tcplife.cli.main import main

    rotate(SAMPLES / "many_short.client.pcap", list(range(5, 400, 37)), tmp_path / "rot")
    runner = CliRunner()
    single = runner.invoke(main, ["analyze", str(tmp_path / "rot"), "--format", "csv"])
    dask = runner.invoke(main, ["analyze", str(tmp_path / "rot" / "cap.pcap*"), "--format",
                                "csv", "--engine", "dask", "--scheduler",
                                client.scheduler.address, "--partitions", "3",
                                "--spool-dir", str(tmp_path / "spool")])
    assert single.exit_code == 0 and dask.exit_code == 0, dask.output
    assert dask.stdout == single.stdout
    assert list((tmp_path / "spool").iterdir()) == []
    assert single.stdout.count("\n") > 10


@pytest.mark.parametrize("args", [["--scheduler", "tcp://nowhere:1"], ["--partitions", "2"],
                                  ["--spool-dir", "/tmp"], ["-", "--engine", "dask"]])
def test_cli_engine_usage_errors(args):
    from click.testing import CliRunner

    from tcplife.cli.main import main

    files = [] if "-" in args else [str(SAMPLES / "refused.client.pcap")]
    result = CliRunner().invoke(main, ["analyze", *files, *args])
    assert result.exit_code == 2
    assert "dask" in result.output


def jittered(segs: list[Seg], seed: int) -> list[Seg]:
    """One segment in 20 stamped up to 2 s off, capture order kept (a clock step)."""
    rng = random.Random(seed)
    return [Seg(s.ts_us + rng.randrange(-2_000_000, 2_000_000), s.src, s.dst, s.seq, s.ack,
                s.flags, s.payload) if rng.random() < 0.05 else s for s in segs]


BACKWARDS_OPTS = [{"time_wait_threshold": 3}, {"time_wait": 0.5, "closed_linger": 1.0}]


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("opts", BACKWARDS_OPTS)
def test_backwards_timestamps(seed, opts, tmp_path, client, spooled):
    """Timestamps that go back and forth by seconds, across timers (time_wait 0.5 s) too:
    a partition advances its timers to the latest time other partitions' segments reached
    (`tcplife.engines.distributed._gaps`), as one process does."""
    whole = write_pcap(tmp_path / "j.pcap", jittered(many_conversations(60, seed), seed))
    _, recs = records(whole)
    files = rotate(whole, random_cuts(len(recs), seed, 8), tmp_path / "rot")
    assert_same(analyze_dask(files, scheduler=client, partitions=4, **spooled, **opts),
                tcplife.analyze(files, **opts))


@pytest.mark.parametrize("seed", [9, 13, 19, 21, 33, 34])
def test_backwards_timestamps_fast_and_plain_agree(seed, tmp_path, client, monkeypatch):
    """Seeds where `analyze`'s fast path once disagreed with its plain path: an absorbed
    segment stamped after a timer's deadline did not fire it before a later-captured,
    earlier-stamped segment of another connection (drive now feeds such segments and
    catches the timers up at the end of each batch). Dask, fast and plain all agree; the
    fast path also with batches of short runs driven in slices of a few rows."""
    opts = BACKWARDS_OPTS[1]
    whole = write_pcap(tmp_path / "j.pcap", jittered(many_conversations(60, seed), seed))
    _, recs = records(whole)
    files = rotate(whole, random_cuts(len(recs), seed, 8), tmp_path / "rot")
    plain = tcplife.analyze(files, fast=False, **opts)
    assert_same(tcplife.analyze(files, **opts), plain)
    for rows in (3, 17):
        monkeypatch.setattr("tcplife.engines.drive.SHORT_SLICE", rows)
        assert_same(tcplife.analyze(files, **opts), plain)
    monkeypatch.undo()
    assert_same(analyze_dask(files, scheduler=client, partitions=4, **opts), plain)


@pytest.mark.parametrize("seed", [34, 46])
def test_short_slices_bound_absorbing_by_the_rest_of_the_batch(seed, tmp_path, monkeypatch):
    """Seeds where a slice of a batch of short runs (`tcplife.engines.drive.SHORT_SLICE`) that
    bounded what it absorbs by its own rows only, not by the earlier-stamped rows after it
    in the batch, disagreed with the plain path (timers fired late)."""
    opts = BACKWARDS_OPTS[1]
    whole = write_pcap(tmp_path / "j.pcap", jittered(many_conversations(60, seed), seed))
    plain = tcplife.analyze(whole, fast=False, **opts)
    monkeypatch.setattr("tcplife.engines.drive.SHORT_SLICE", 3)
    assert_same(tcplife.analyze(whole, **opts), plain)


@pytest.mark.skipif(shutil.which("editcap") is None, reason="needs editcap (Wireshark)")
def test_pcapng_rotated_by_editcap(tmp_path, client):
    """pcapng cut by Wireshark's editcap -c, as a ring buffer names its files."""
    subprocess.run(["editcap", "-c", "23", str(SAMPLES / "many_short.client.pcapng"),
                    str(tmp_path / "ring.pcapng")], check=True, capture_output=True)
    files = capture_files(tmp_path)
    assert len(files) > 5
    assert_same(analyze_dask(tmp_path, scheduler=client), tcplife.analyze(files))


def test_damaged_file_in_the_set(tmp_path, client, spooled):
    """A rotated file cut inside a record (a crash while writing): analysed up to the
    damage, with the same warning, and the next files go on."""
    files = rotate(SAMPLES / "clean_traffic.client.pcap", [400, 1200, 2000], tmp_path / "rot")
    data = files[1].read_bytes()
    files[1].write_bytes(data[:len(data) // 2 + 7])
    want = tcplife.analyze(files)
    assert want.warnings
    assert_same(analyze_dask(tmp_path / "rot", scheduler=client, partitions=3, **spooled),
                want)


@pytest.mark.parametrize(("prune", "opts"), [
    (4096, {}), (4096, {"time_wait": 0.5, "closed_linger": 1.0}),
    (4096, {"time_wait_threshold": 5}), (0, {}), (0, {"time_wait": 0.5, "closed_linger": 1.0})])
def test_connections_in_lockstep(prune, opts, tmp_path, client, monkeypatch):
    """Ten connections at a time with identical timestamps: timers of several partitions
    fall due at the same nanosecond, and their rows keep the single process's order (by
    the frame that armed each). ``prune`` 0: the records of which frame armed each timer
    are pruned at every arming (a big capture's case), never while timers fire."""
    monkeypatch.setattr(KeyedObserver, "PRUNE_AT", prune)
    segs: list[Seg] = []
    for i in range(40):
        cli = (f"10.0.{i % 3}.1", 41000 + i)
        segs += shifted(orderly_close(T0_US + (i // 10) * 100_000, cli, ("10.1.0.1", 80)),
                        cli, 7 * i, 11 * i)
    segs.sort(key=lambda s: s.ts_us)
    whole = write_pcap(tmp_path / "w.pcap", segs)
    _, recs = records(whole)
    files = rotate(whole, random_cuts(len(recs), 5, 5), tmp_path / "rot")
    want = tcplife.analyze(files, **opts)
    for parts in (2, 5):
        assert_same(analyze_dask(files, scheduler=client, partitions=parts, **opts), want)


# ---------------------------------------------------------------- the Parquet dataset
def test_dataset_and_merge_share_the_end_key():
    import tcplife.engines.dataset
    import tcplife.engines.distributed

    assert tcplife.engines.dataset.END_KEY is tcplife.engines.distributed.END_KEY


def assert_dataset_same(dataset, want: tcplife.Result, tables=TABLES) -> None:
    """Every table of the dataset, read back as one frame, equals `analyze`'s once both
    are stable-sorted by the table's key; the parts come one per partition."""
    for table in tables:
        parts = sorted((dataset.directory / table).glob("part-*.parquet"))
        assert parts, table
        got = pd.read_parquet(dataset.directory / table)  # as a user reads it
        assert len(got) == dataset.rows[table] == len(getattr(want, table)), table
        expected = getattr(want, table).sort_values(SORT_KEYS[table], kind="stable",
                                                    ignore_index=True)
        pd.testing.assert_frame_equal(restore(got, table), expected, check_exact=True,
                                      obj=table)
    assert dataset.stats == want.stats
    assert dataset.warnings == want.warnings
    assert not list(dataset.directory.glob(".tcplife-spool-*"))  # the spool is gone


@pytest.mark.parametrize("seed", [1, 2])
def test_parquet_dataset_generated(seed, tmp_path, client):
    whole = write_pcap(tmp_path / "whole.pcap", many_conversations(60, seed))
    _, recs = records(whole)
    files = rotate(whole, random_cuts(len(recs), seed, 12), tmp_path / "rot")
    for opts in ({"time_wait_threshold": 3}, {"time_wait": 0.5, "closed_linger": 1.0}):
        want = tcplife.analyze(files, **opts)
        got = analyze_dask(files, scheduler=client, partitions=5,
                           parquet_dir=tmp_path / "ds", **opts)
        assert isinstance(got, ParquetDataset)
        assert_dataset_same(got, want)
        assert len(list((tmp_path / "ds" / "connections").iterdir())) == 5
        assert "time_wait_accumulation" in set(want.anomalies["kind"]) or opts.get(
            "time_wait")


def test_parquet_dataset_lab_captures(tmp_path, client):
    """Every lab capture cut into rotated files, as one set each (anomalies of every
    kind the lab makes, IPv6, captures that end with connections open)."""
    for k, name in enumerate(LAB):
        path = SAMPLES / name
        _, recs = records(path)
        files = rotate(path, random_cuts(len(recs), k, 4), tmp_path / f"set{k}")
        want = tcplife.analyze(files, time_wait_threshold=2)
        got = analyze_dask(files, scheduler=client, partitions=3, time_wait_threshold=2,
                           parquet_dir=tmp_path / f"ds{k}")
        assert_dataset_same(got, want)


@pytest.mark.parametrize("seed", [0, 9])
def test_parquet_dataset_backwards_timestamps(seed, tmp_path, client):
    """Timestamps that step back by seconds: the capture end each connection's verdict
    sees is the single process's running one, gathered from the other partitions."""
    opts = BACKWARDS_OPTS[1]
    whole = write_pcap(tmp_path / "j.pcap", jittered(many_conversations(60, seed), seed))
    _, recs = records(whole)
    files = rotate(whole, random_cuts(len(recs), seed, 8), tmp_path / "rot")
    got = analyze_dask(files, scheduler=client, partitions=4, parquet_dir=tmp_path / "ds",
                       **opts)
    assert_dataset_same(got, tcplife.analyze(files, **opts))


class CaptureEndSpy(PerConnection):
    """Writes, for every connection, the capture end its verdict was given."""

    def on_connection(self, v: ConnView):
        yield v.anomaly(v.record.first_ts_ns, "client", "spy", None, str(v.capture_end_ns))


@pytest.fixture()
def spy(monkeypatch):
    import tcplife.detect

    real = tcplife.detect.default_detectors
    monkeypatch.setattr(tcplife.detect, "default_detectors",
                        lambda options: [*real(options), CaptureEndSpy()])


def spied_set(tmp_path: Path, seed: int, jitter: bool) -> list[Path]:
    segs = many_conversations(60, seed)
    whole = write_pcap(tmp_path / "w.pcap", jittered(segs, seed) if jitter else segs)
    _, recs = records(whole)
    return rotate(whole, random_cuts(len(recs), seed, 8), tmp_path / "rot")


@pytest.mark.parametrize("seed", [1, 2])
def test_parquet_dataset_capture_end_per_connection(seed, tmp_path, client, spy):
    """The running capture end each connection's detectors see (one process: the latest
    time among the events before its end, in the single process's order) is the same when
    its partition is finished on a worker, with the other partitions' part looked up
    (`tcplife.engines.dataset._lookup`): a spy detector writes it into every connection's row."""
    files = spied_set(tmp_path, seed, jitter=False)
    opts = BACKWARDS_OPTS[1]
    want = tcplife.analyze(files, **opts)
    spied = want.anomalies[want.anomalies["kind"] == "spy"]
    assert len(spied) == 60 and spied["detail"].nunique() > 10
    got = analyze_dask(files, scheduler=client, partitions=5, parquet_dir=tmp_path / "ds",
                       **opts)
    assert_dataset_same(got, want)


@pytest.mark.parametrize(("seed", "opts", "equal"), [(2, 1, True), (9, 1, True), (13, 0, True),
                                                     (4, 1, False)])
def test_parquet_dataset_capture_end_backwards_timestamps(seed, opts, equal, tmp_path,
                                                          client, spy):
    """Timestamps that jump back and forth by seconds: the keys order events by the
    latest time the whole set had reached at their segment (`KeyedObserver.clock_at`), so
    the capture end each verdict sees is one process's, except where a segment stamped
    ahead of later ones pushed that clock past a timer's deadline: one process fires the
    timer at the next segment stamped past it, the merge before the next segment (seed 4:
    the known difference, pinned). The worker-written dataset equals the in-memory Dask
    result either way."""
    files = spied_set(tmp_path, seed, jitter=True)
    opts = BACKWARDS_OPTS[opts]
    in_memory = analyze_dask(files, scheduler=client, partitions=5, **opts)
    got = analyze_dask(files, scheduler=client, partitions=5, parquet_dir=tmp_path / "ds",
                       **opts)
    assert_dataset_same(got, in_memory)
    if equal:
        assert_same(in_memory, tcplife.analyze(files, **opts))
    else:
        with pytest.raises(AssertionError, match="detail"):
            assert_same(in_memory, tcplife.analyze(files, **opts))


def test_parquet_dataset_tables(tmp_path, client):
    """``tables`` names the tables written; the connections' anomaly lists still count
    every anomaly (the time-wait pile-up's too); ``on_event`` is refused."""
    whole = write_pcap(tmp_path / "w.pcap", many_conversations(30))
    files = rotate(whole, [20, 70], tmp_path / "rot")
    got = analyze_dask(files, scheduler=client, partitions=2, tables=("connections",),
                       parquet_dir=tmp_path / "ds", time_wait_threshold=3)
    assert sorted(p.name for p in (tmp_path / "ds").iterdir()) == ["capture.json",
                                                                   "connections"]
    want = tcplife.analyze(files, tables=("connections",), time_wait_threshold=3)
    assert any("time_wait_accumulation" in kinds for kinds in want.connections["anomalies"])
    assert_dataset_same(got, want, tables=("connections",))
    with pytest.raises(ValueError, match="on_event"):
        analyze_dask(files, scheduler=client, parquet_dir=tmp_path / "ds2",
                     on_event=print)


def test_default_partitions_follow_the_set_size(tmp_path, monkeypatch):
    """By default a partition holds at most about PARTITION_BYTES of capture (so that a
    worker's memory stays bounded by the partition as the set grows), and there are at
    least two per worker thread."""
    from tcplife.engines.distributed import default_partitions

    monkeypatch.setattr("tcplife.engines.distributed.PARTITION_BYTES", 1000)
    files = []
    for i, size in enumerate([2500, 2500, 10]):
        files.append(str(tmp_path / f"cap{i}.pcap"))
        Path(files[-1]).write_bytes(b"\0" * size)
    assert default_partitions(files, 1) == 6  # 5010 bytes: six partitions of <= 1000
    assert default_partitions(files, 4) == 8  # twice the threads is more
    assert default_partitions([*files, str(tmp_path / "gone.pcap")], 1) == 6
    assert default_partitions([], 3) == 6


@pytest.mark.parametrize("partitions", [2, 3])
def test_parquet_dataset_listen_overflow_across_partitions(partitions, tmp_path, client):
    """listen_overflow needs the service's answers to other connections, which the flow
    partitioning puts elsewhere: every partition's SYN-ACKs and unanswered connections
    are judged together per service bucket, as one process judges them."""
    capture = SAMPLES / "listen_no_accept.server.pcap"
    want = tcplife.analyze(capture)
    assert set(want.anomalies["kind"]) == {"listen_overflow"}
    got = analyze_dask([capture], scheduler=client, partitions=partitions,
                       parquet_dir=tmp_path / "ds")
    assert_dataset_same(got, want)
