"""`tcplife analyze --engine dask --scheduler ADDRESS` on a separate Dask cluster: a
scheduler and two worker processes started with Dask's own command line, as an operator
runs them, and the tcplife command line in a third process. With neither ``--spool-dir``
nor a Parquet dataset, each worker spools in its own scratch directory; the output must
equal the one-process analysis of the same files, and no spool may be left behind in
any worker's directory.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

distributed = pytest.importorskip("distributed")

from test_distributed import SAMPLES, rotate  # noqa: E402

from tcplife.engines.spool import PREFIX  # noqa: E402

#: how long the cluster may take to come up (a loaded CI machine starts Python slowly)
START_TIMEOUT = 120


def _wait_for(what: str, ready, procs: list[subprocess.Popen]) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while not ready():
        for p in procs:
            if p.poll() is not None:
                raise AssertionError(f"{what}: a cluster process exited ({p.args})")
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not up after {START_TIMEOUT} s")
        time.sleep(0.2)


@pytest.fixture()
def cluster(tmp_path):
    """A scheduler and two single-threaded worker processes, all separate processes;
    yields the scheduler's address and the workers' local-directory root."""
    info, scratch = tmp_path / "scheduler.json", tmp_path / "scratch"
    scratch.mkdir()
    procs = [subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler",
                               "--scheduler-file", str(info), "--host", "127.0.0.1",
                               "--port", "0", "--dashboard-address", ":0"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    try:
        _wait_for("scheduler", info.exists, procs)
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "distributed.cli.dask_worker", "--scheduler-file",
             str(info), "--nworkers", "2", "--nthreads", "1", "--local-directory",
             str(scratch), "--host", "127.0.0.1", "--dashboard-address", ":0"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        address = json.loads(info.read_text())["address"]
        with distributed.Client(address, timeout=START_TIMEOUT) as probe:
            _wait_for("workers", lambda: len(probe.nthreads()) == 2, procs)
        yield address, scratch
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in reversed(procs):
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def spools_left(scratch: Path) -> list[Path]:
    return list(scratch.rglob(PREFIX + "*"))


def test_cli_on_a_separate_cluster_with_worker_spools(tmp_path, cluster):
    address, scratch = cluster
    files = rotate(SAMPLES / "many_short.client.pcap", list(range(5, 400, 37)),
                   tmp_path / "rot")
    assert len(files) > 5
    env = {**os.environ, "PYTHONWARNINGS": "error::UserWarning"}
    run = [sys.executable, "-m", "tcplife", "analyze", "--format", "csv"]
    single = subprocess.run([*run, str(tmp_path / "rot")], capture_output=True, text=True,
                            env=env, timeout=300)
    dask = subprocess.run([*run, str(tmp_path / "rot"), "--engine", "dask", "--scheduler",
                           address, "--partitions", "3"], capture_output=True, text=True,
                          env=env, timeout=300)
    assert single.returncode == 0, single.stderr
    assert dask.returncode == 0, dask.stderr
    assert dask.stdout == single.stdout
    assert single.stdout.count("\n") > 10
    # Each worker has its own directory there, and no spool is left in any.
    assert len([d for d in (scratch / "dask-scratch-space").iterdir()
                if d.name.startswith("worker-") and d.is_dir()]) == 2
    assert spools_left(scratch) == []
