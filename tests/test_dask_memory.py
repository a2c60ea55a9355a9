"""tcplife.analyze_dask keeps a worker's memory bounded by the partition: between tasks,
what a worker holds in Dask's memory does not grow with the capture (the stages hand each
other their data through the spool, `tcplife.engines.spool`), and the spool is removed afterwards,
after an error too.

The measure is deterministic: a worker plugin pickles everything the worker holds
(``worker.data``) each time one of the stages' tasks starts, on one single-threaded
worker, for a set and for one with six times the connections in as many files
(so every file, and every partition, is about six times as big).
"""

from __future__ import annotations

import io
import os
import pickle
from pathlib import Path

import pytest

distributed = pytest.importorskip("distributed")

from distributed.diagnostics.plugin import WorkerPlugin  # noqa: E402
from distributed.utils import key_split  # noqa: E402
from pcapgen import write_pcap  # noqa: E402
from test_distributed import (  # noqa: E402
    SAMPLES,
    assert_dataset_same,
    assert_same,
    jittered,
    many_conversations,
    random_cuts,
    records,
    rotate,
)

import tcplife  # noqa: E402
import tcplife.engines.distributed  # noqa: E402
from tcplife.detect import ConnView, PerConnection  # noqa: E402
from tcplife.engines.distributed import _spool_parent, analyze_dask  # noqa: E402
from tcplife.engines.spool import (  # noqa: E402
    PREFIX,
    Appender,
    Piece,
    WorkerPiece,
    WrongWorker,
    concatenated,
    spool,
)

#: the tasks at whose start the held bytes are taken: tracking and the dataset's stages
#: (as `key_split` names them: without the leading underscore)
WATCHED = ("track_partition", "track_and_index", "finish", "time_wait", "write")


def handles(obj) -> bytes:
    """``obj`` pickled as it is held: a `WorkerPiece` in its worker's memory is a handle
    (pickling it, as Dask does to move it, would read its columns)."""
    buffer = io.BytesIO()
    pickler = pickle.Pickler(buffer, protocol=pickle.HIGHEST_PROTOCOL)
    pickler.dispatch_table = {  # type: ignore[attr-defined]
        WorkerPiece: lambda p: (Piece, (p.path, p.names, p.layouts, p.chunks))}
    pickler.dump(obj)
    return buffer.getvalue()


class Held(WorkerPlugin):
    """Per watched task start: its name, and the bytes of everything the worker holds
    (pickled), by the name of the task that made it. ``skip``: task names whose results
    are not counted."""

    name = "held"

    def __init__(self, skip: tuple[str, ...] = ()) -> None:
        self.skip = skip
        self.records: list[tuple[str, int]] = []

    def setup(self, worker):
        self.worker = worker

    def transition(self, key, start, finish, **kwargs):
        if finish != "executing" or key_split(key) not in WATCHED:
            return
        data = self.worker.data
        held: dict[str, int] = {}  # by the name of the task that made the result
        for k in list(data.keys()):
            if key_split(k) not in self.skip:
                size = len(handles(data[k]))
                held[key_split(k)] = held.get(key_split(k), 0) + size
        self.records.append((key_split(key), held))


@pytest.fixture()
def one_worker():
    """One worker, one thread, in this process: the tasks run one at a time, in the
    order Dask's priorities give them."""
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                                  dashboard_address=":0") as cluster, \
            distributed.Client(cluster) as client:
        yield client


def a_set(tmp_path: Path, conversations: int) -> list[Path]:
    """``conversations`` interleaved conversations cut into four files of equal records."""
    whole = write_pcap(tmp_path / f"w{conversations}.pcap", many_conversations(conversations))
    _, recs = records(whole)
    n = len(recs)
    return rotate(whole, [n // 4, n // 2, 3 * n // 4], tmp_path / f"set{conversations}")


def held_while_running(client, files: list[Path], skip: tuple[str, ...],
                       **kwargs) -> list[tuple[str, dict[str, int]]]:
    plugin = Held(skip)
    client.register_plugin(plugin)
    try:
        analyze_dask(files, scheduler=client, partitions=4, **kwargs)
        [records_] = client.run(lambda dask_worker: dask_worker.plugins["held"].records
                                ).values()
    finally:
        client.unregister_worker_plugin("held")
    return records_


def capture_columns_bytes(files: list[Path]) -> int:
    """What the old read stage held: the capture's segment columns (~110 bytes each)."""
    return 110 * tcplife.analyze(files, tables=()).stats.tcp_segments


@pytest.mark.parametrize("path", ["dataset", "memory", "workers"])
def test_held_bytes_do_not_grow_with_the_capture(path, tmp_path, one_worker):
    """Six times the connections (~6x every file and every partition): at the start of
    every tracking task and every dataset stage, the worker holds the same few kB as on
    the small set, far less than the capture's segments: with a dataset, with a spool
    directory, and with neither (each worker's own spool). (Without a spool, the read
    tasks' columns, then the tracked events, then the collected tables were held: the
    held bytes grew with the set.) The in-memory result's tracked
    partitions go to the client as each finishes, so they are not counted there."""
    small, big = a_set(tmp_path, 40), a_set(tmp_path, 240)
    maxima = []
    for files in (small, big):
        if path == "dataset":
            kwargs, skip = {"parquet_dir": tmp_path / f"ds{len(maxima)}"}, ()
        elif path == "memory":
            kwargs, skip = {"spool_dir": tmp_path}, ("track_partition",)
        else:
            kwargs, skip = {}, ("track_partition",)
        seen = held_while_running(one_worker, files, skip, **kwargs)
        names = {name for name, _ in seen}
        # (the per-service stage, `listen`, holds as little and may end unseen)
        assert names - {"listen"} == ({"track_and_index", "finish", "time_wait", "write"}
                                      if path == "dataset" else {"track_partition"})
        maxima.append(max(((sum(held.values()), name, held) for name, held in seen),
                          key=lambda x: x[0]))
    columns = [capture_columns_bytes(small), capture_columns_bytes(big)]
    assert columns[1] > 5 * columns[0]
    # What is held is a few handles per file and per partition, whose pickled size
    # varies by a few hundred bytes with the order Dask releases them in: a bound far
    # below what the capture's growth would add if any of it were held. (Each handle names
    # its columns: with the TCP timestamp columns, 15, the handles of this small set came
    # to 5.3 % of its columns: the absolute bound is 10 %, the growth bound stays 5 %.)
    assert maxima[1][0] - maxima[0][0] < (columns[1] - columns[0]) / 20, maxima
    assert maxima[1][0] < columns[1] / 10, maxima


class Boom(PerConnection):
    """Fails a partition's finishing task, having looked into the spool first."""

    seen: list[str] = []

    def on_connection(self, v: ConnView):
        Boom.seen = [p.name for p in Path(self.where).glob(PREFIX + "*/*")]
        raise RuntimeError("boom")
        yield  # pragma: no cover - a generator, as detectors are


def test_spool_removed_after_an_error(tmp_path, one_worker, monkeypatch):
    """A detector that fails on a worker, in the dataset's finishing stage, when the
    spool holds the read columns and the tracked events: the error reaches the caller and
    the spool is gone."""
    import tcplife.detect

    real = tcplife.detect.default_detectors
    Boom.where = str(tmp_path / "ds")  # type: ignore[attr-defined]
    monkeypatch.setattr(tcplife.detect, "default_detectors",
                        lambda options: [*real(options), Boom()])
    files = a_set(tmp_path, 20)
    with pytest.raises(RuntimeError, match="boom"):
        analyze_dask(files, scheduler=one_worker, partitions=3, parquet_dir=tmp_path / "ds")
    assert any(n.startswith("read-") for n in Boom.seen), Boom.seen
    assert any(n.endswith(".events.pkl") for n in Boom.seen), Boom.seen
    assert not list((tmp_path / "ds").glob(PREFIX + "*"))


def test_spool_removed_after_a_bad_file(tmp_path, one_worker):
    """A file that is no capture: the error reaches the caller (now before any read, as
    the files' first times are taken), and no spool is left behind."""
    bad = tmp_path / "bad.pcap"
    bad.write_bytes(b"not a capture at all")
    where = tmp_path / "spool"
    with pytest.raises(tcplife.CaptureError):
        analyze_dask([SAMPLES / "refused.client.pcap", bad], scheduler=one_worker,
                     spool_dir=where)
    assert not where.exists() or list(where.iterdir()) == []


def test_spooled_equals_in_memory_and_analyze(tmp_path, one_worker):
    files = a_set(tmp_path, 60)
    want = tcplife.analyze(files, time_wait_threshold=3)
    assert_same(analyze_dask(files, scheduler=one_worker, partitions=3,
                             spool_dir=tmp_path / "spool", time_wait_threshold=3), want)
    assert_dataset_same(analyze_dask(files, scheduler=one_worker, partitions=3,
                                     parquet_dir=tmp_path / "ds", time_wait_threshold=3), want)
    assert list((tmp_path / "spool").iterdir()) == []


def test_spool_parent():
    """The explicit directory; else the dataset's; else, for the local cluster only, the
    temporary directory; a caller's cluster without either: None, each worker's own."""
    import tempfile

    assert _spool_parent("/s", "/ds", None) == "/s"
    assert _spool_parent(None, "/ds", "tcp://x:1") == "/ds"
    assert _spool_parent(None, None, None) == tempfile.gettempdir()
    assert _spool_parent(None, None, "tcp://x:1") is None


def test_spool_pieces_round_trip(tmp_path):
    """Groups of columns written chunk by chunk (a later chunk with another column, as
    the read task adds ``gap_max``; a group without rows) read back one group at a time,
    equal to the in-memory groups; the spool directory is hidden and goes with its files."""
    import numpy as np

    chunks = [(0, {"a": np.arange(3, dtype=np.int64), "b": np.array([1, 2, 3], np.uint16)}),
              (2, {"a": np.array([7], dtype=np.int64), "b": np.array([9], dtype=np.uint16)}),
              (0, {"a": np.array([4], dtype=np.int64), "b": np.array([5], dtype=np.uint16)}),
              (0, {"c": np.array([-1, -2, -3, -4], dtype=np.int64)}),
              (2, {"c": np.array([8], dtype=np.int64)})]
    names = ("a", "b", "c")
    groups = [concatenated(names, [c for g, c in chunks if g == group]) for group in range(3)]
    with spool(tmp_path) as where:
        assert Path(where).name.startswith(PREFIX)
        appender = Appender(str(Path(where) / "g.bin"), 3, names)
        for group, chunk in chunks:
            appender.add(group, chunk)
        pieces = appender.close()
        assert all(type(p) is Piece for p in pieces)
        back = [p.load() for p in pieces]
        for got, want in zip(back, groups, strict=True):
            assert set(got) == set(want) == set(names)
            for name in names:
                assert got[name].dtype == want[name].dtype
                assert got[name].tolist() == want[name].tolist()
        assert back[0]["b"].dtype == np.uint16 and back[0]["b"].tolist() == [1, 2, 3, 5]
        assert back[0]["c"].tolist() == [-1, -2, -3, -4]
        assert back[1]["a"].tolist() == [] and back[1]["c"].tolist() == []
    assert list(tmp_path.iterdir()) == []


def test_worker_piece_carries_its_columns(tmp_path):
    """A piece of a worker's own spool, pickled (as Dask moves it to another worker),
    is its columns: they unpickle after its file is gone. The handle itself, read where
    its file is not, says so."""
    import numpy as np

    appender = Appender(str(tmp_path / "g.bin"), 2, ("a", "b"), kind=WorkerPiece)
    appender.add(1, {"a": np.arange(4, dtype=np.int64), "b": np.arange(4, dtype=np.uint16)})
    appender.add(1, {"a": np.array([9], dtype=np.int64), "b": np.array([7], np.uint16)})
    empty, piece = appender.close()
    assert type(piece) is WorkerPiece
    moved, moved_empty = pickle.dumps(piece), pickle.dumps(empty)
    (tmp_path / "g.bin").unlink()
    back = pickle.loads(moved)
    assert type(back) is dict and back["a"].tolist() == [0, 1, 2, 3, 9]
    assert back["b"].dtype == np.uint16 and back["b"].tolist() == [0, 1, 2, 3, 7]
    assert pickle.loads(moved_empty)["a"].tolist() == []
    with pytest.raises(WrongWorker, match="not here"):
        piece.load()


@pytest.mark.parametrize("opts", [{"time_wait_threshold": 3},
                                  {"time_wait": 0.5, "closed_linger": 1.0}])
def test_small_read_batches(opts, tmp_path, one_worker, monkeypatch):
    """Read tasks that read (and spool) a file in several batches, with timestamps that
    step back across them: the same rows as `analyze`."""
    monkeypatch.setattr(tcplife.engines.distributed, "_READ_BYTES", 4096)
    whole = write_pcap(tmp_path / "j.pcap", jittered(many_conversations(60, 3), 3))
    _, recs = records(whole)
    files = rotate(whole, random_cuts(len(recs), 3, 3), tmp_path / "rot")
    assert max(f.stat().st_size for f in files) > 3 * 4096
    want = tcplife.analyze(files, **opts)
    assert_same(analyze_dask(files, scheduler=one_worker, partitions=4,
                             spool_dir=tmp_path / "spool", **opts), want)
    assert_same(analyze_dask(files, scheduler=one_worker, partitions=4, **opts), want)


def test_spool_removed_while_a_task_still_writes(tmp_path):
    """A task of a failed analysis keeps creating files in the spool while it is removed
    (the race CI once lost: a file created between `rmtree`'s listing and its last
    ``rmdir`` left the directory behind). The spool must be gone all the same, and the
    writer must see it go."""
    import threading
    import time

    stop = threading.Event()
    created: list[int] = []
    lost: list[BaseException] = []

    def writer(where: str) -> None:
        n = 0
        while not stop.is_set():
            try:
                with open(os.path.join(where, f"f{n}.bin"), "wb") as f:
                    f.write(b"x" * 64)
            except FileNotFoundError as e:
                lost.append(e)
                return
            n += 1
            created.append(n)

    with spool(tmp_path) as where:
        assert where is not None
        thread = threading.Thread(target=writer, args=(where,))
        thread.start()
        while len(created) < 50:  # the writer is well under way
            time.sleep(0.001)
    thread.join(timeout=10)
    stop.set()
    thread.join()
    assert lost, "the writer never noticed the spool go"
    assert list(tmp_path.iterdir()) == []
