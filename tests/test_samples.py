"""The sample captures inside the package (`tcplife.samples`) and ``--sample`` on the CLI.

The packaged files must stay copies of ``sample_pcaps/`` (byte-identical, or its gzip), so
that the golden tests over ``sample_pcaps/`` hold for them too; each is a capture whose
frames are counted here by walking the pcap records directly, not by tcplife's reader.
The CLI runs in a subprocess from a directory that is not the checkout, as a user would.
"""

from __future__ import annotations

import gzip
import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from tcplife import samples
from tcplife.cli.main import main

REPO = Path(__file__).resolve().parents[1]
SAMPLE_PCAPS = REPO / "sample_pcaps"
PACKAGE_DIR = REPO / "tcplife" / "samples"
READING_COMMANDS = ("analyze", "timeline", "anomalies", "at", "frames", "ladder", "export")


def pcap_records(data: bytes) -> int:
    """Frames in a classic pcap, by walking its record headers (16 bytes each, the
    included length at offset 8)."""
    magic = data[:4]
    order = {b"\xd4\xc3\xb2\xa1": "<", b"\x4d\x3c\xb2\xa1": "<",
             b"\xa1\xb2\xc3\xd4": ">", b"\xa1\xb2\x3c\x4d": ">"}[magic]
    offset, count = 24, 0
    while offset < len(data):
        (included,) = struct.unpack_from(order + "I", data, offset + 8)
        offset += 16 + included
        count += 1
    assert offset == len(data), "the last record runs past the end of the file"
    return count


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "tcplife", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def test_names_are_unique_and_each_has_one_line() -> None:
    names = samples.names()
    assert 4 <= len(names) <= 6 and len(set(names)) == len(names)
    for name in names:
        text = samples.describe(name)
        assert text and "\n" not in text and len(text) <= 110, name


@pytest.mark.parametrize("name", samples.names())
def test_sample_is_a_copy_of_a_lab_capture(name: str) -> None:
    sample = next(s for s in samples.SAMPLES if s.name == name)
    path = samples.path(name)
    assert path.is_file() and path.name == sample.file
    original = (SAMPLE_PCAPS / sample.original).read_bytes()
    packaged = path.read_bytes()
    if sample.file.endswith(".gz"):
        assert gzip.decompress(packaged) == original
    else:
        assert packaged == original
    # the lab checked its ground truth on this capture
    expected = json.loads((SAMPLE_PCAPS / (sample.original.split(".")[0] + ".expected.json"))
                          .read_text())
    assert sample.original in {c["file"] for c in expected["captures"].values()}


@pytest.mark.parametrize("name", samples.names())
def test_sample_is_a_capture_tcplife_reads_whole(name: str) -> None:
    import tcplife

    path = samples.path(name)
    data = path.read_bytes()
    if path.suffix == ".gz":
        data = gzip.decompress(data)
    frames = pcap_records(data)
    result = tcplife.analyze(path)
    assert result.stats.frames == frames > 0
    assert not result.warnings
    assert len(result.connections) >= 1


def test_package_data_covers_every_sample_and_nothing_else() -> None:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    config = tomllib.loads((REPO / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]["tcplife.samples"]
    shipped = {p.name for pattern in patterns for p in PACKAGE_DIR.glob(pattern)}
    assert shipped == {s.file for s in samples.SAMPLES}
    data_files = {p.name for p in PACKAGE_DIR.iterdir()
                  if p.is_file() and p.suffix not in (".py", ".pyc")}
    assert data_files == shipped
    assert sum((PACKAGE_DIR / f).stat().st_size for f in shipped) < 300_000


def test_unknown_name_lists_the_names() -> None:
    with pytest.raises(samples.UnknownSample) as caught:
        samples.path("nope")
    assert all(name in str(caught.value) for name in samples.names())
    with pytest.raises(LookupError):
        samples.describe("nope")


def test_analyze_sample_from_another_directory(tmp_path: Path) -> None:
    proc = run_cli("analyze", "--sample", "refused", "--format", "jsonl", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    # refused.client.pcap: one SYN answered by RST (the lab's server was bound, not listening)
    assert [(r["close_kind"], r["server_port"], r["packets"]) for r in rows] == \
        [("refused", 8080, 2)]
    table = run_cli("analyze", "--sample", "clean", "--format", "table", cwd=tmp_path)
    assert table.returncode == 0, table.stderr
    assert "clean_traffic.client.pcap" in table.stdout and "240" in table.stdout


def test_sample_list(tmp_path: Path) -> None:
    proc = run_cli("analyze", "--sample", "list", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    for line, name in zip(lines, samples.names(), strict=True):
        assert line.split(None, 1) == [name, samples.describe(name)]


def test_unknown_sample_is_a_usage_error_listing_the_names(tmp_path: Path) -> None:
    proc = run_cli("analyze", "--sample", "nope", cwd=tmp_path)
    assert proc.returncode == 2 and not proc.stdout
    assert "'nope'" in proc.stderr and "Traceback" not in proc.stderr
    assert all(name in proc.stderr for name in samples.names())


@pytest.mark.parametrize("args", [[], ["--sample", "refused", "x.pcap"]],
                         ids=["neither", "both"])
def test_sample_or_captures_exactly_one(args: list[str]) -> None:
    result = CliRunner().invoke(main, ["analyze", *args])
    assert result.exit_code == 2, result.output
    assert "CAPTURE" in result.output and "--sample" in result.output


@pytest.mark.parametrize("command", READING_COMMANDS)
def test_every_reading_command_takes_sample(command: str, tmp_path: Path) -> None:
    extra = {"at": ["end"], "ladder": ["--conn", "0"], "export": ["-d", str(tmp_path)]}
    args = [command, *extra.get(command, []), "--sample", "close_wait"]
    if command != "export":
        args += ["--format", "csv"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert result.output.strip()
    listing = CliRunner().invoke(main, [command, "--sample", "list"])
    assert listing.exit_code == 0 and listing.output.split()[0] == samples.names()[0]


def test_path_from_a_zip_archive_is_a_copy(tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """Imported from a zip (no file on disk): `path` copies the sample out once."""
    import zipfile

    archive = tmp_path / "tcplife.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        for sample in samples.SAMPLES:
            zipped.write(PACKAGE_DIR / sample.file, f"tcplife/samples/{sample.file}")
    monkeypatch.setattr(samples.resources, "files",
                        lambda package: zipfile.Path(archive, "tcplife/samples/"))
    monkeypatch.setattr(samples.tempfile, "gettempdir", lambda: str(tmp_path / "tmp"))
    copy = samples.path("dead_peer")
    assert copy.parent == tmp_path / "tmp" / "tcplife-samples"
    assert copy.read_bytes() == (PACKAGE_DIR / "keepalive_dead_peer.client.pcap").read_bytes()
    assert samples.path("dead_peer") == copy and len(list(copy.parent.iterdir())) == 1
