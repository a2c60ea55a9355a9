"""Every command's ``--help`` ends with examples, and each example runs as printed.

The examples are read back from the help text itself (the lines after the last
``Examples:``), so a help that loses its examples, or an example that stops working
(a renamed option, a sample gone, a time outside the sample), fails here. ``capture.pcap``
in an example stands for the reader's capture: the ``clean`` sample is put in its place.
``live`` captures on ``lo`` for a moment, as root.
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from tcplife import samples
from tcplife.cli.main import main

from needs import require_module, require_root

COMMANDS = sorted(main.commands)


def help_examples(args: list[str]) -> list[list[str]]:
    """The examples that end ``tcplife ARGS --help``, each split into its arguments (after
    ``tcplife``)."""
    result = CliRunner().invoke(main, [*args, "--help"])
    assert result.exit_code == 0, result.output
    lines = result.output.rstrip().splitlines()
    starts = [i for i, line in enumerate(lines) if line.strip() == "Examples:"]
    assert starts, f"tcplife {' '.join(args)} --help has no Examples: section"
    examples = lines[starts[-1] + 1:]
    assert 1 <= len(examples) <= 3
    for line in examples:
        assert line.startswith("    tcplife "), f"not an example: {line!r} (help must end " \
            "with its examples)"
    return [shlex.split(line)[1:] for line in examples]


def mkdir(path: Path) -> Path:
    path.mkdir()
    return path


def run_example(args: list[str], cwd: Path) -> click.testing.Result:
    """Run ``tcplife ARGS`` in-process in the empty directory ``cwd``."""
    clean = str(samples.path("clean"))
    args = [clean if arg == "capture.pcap" else arg for arg in args]
    before = os.getcwd()
    os.chdir(cwd)
    try:
        result = CliRunner().invoke(main, args)
    finally:
        os.chdir(before)
    written = [name for _, _, files in os.walk(cwd) for name in files]
    assert result.exit_code == 0, f"tcplife {shlex.join(args)}: {result.output}"
    if "--sample" in args:  # a sample example is chosen to show something, quietly
        assert result.output.strip() or written, f"tcplife {shlex.join(args)}: no output"
        assert "warning" not in result.output, result.output
    return result


def test_every_command_is_covered() -> None:
    assert {"analyze", "timeline", "anomalies", "at", "frames", "ladder", "export",
            "live"} <= set(COMMANDS)


def test_main_help_ends_with_examples_that_run(tmp_path: Path) -> None:
    for n, args in enumerate(help_examples([])):
        run_example(args, mkdir(tmp_path / str(n)))


@pytest.mark.parametrize("command", [c for c in COMMANDS if c != "live"])
def test_help_ends_with_examples_that_run(command: str, tmp_path: Path) -> None:
    examples = help_examples([command])
    assert all(args[0] == command for args in examples)
    assert any("--sample" in args for args in examples), "one example needs no capture"
    for n, args in enumerate(examples):
        run_example(args, mkdir(tmp_path / str(n)))


def test_live_help_ends_with_examples_that_run(tmp_path: Path) -> None:
    examples = help_examples(["live"])
    assert all(args[0] == "live" for args in examples)
    require_root()
    require_module("cypcap")
    for n, args in enumerate(examples):
        # on lo, for a moment, as JSON lines: the options as printed, bounded
        args = ["lo" if prev in ("-i", "--interface") else arg
                for prev, arg in zip(["", *args[:-1]], args, strict=True)]
        if "--duration" in args:
            args[args.index("--duration") + 1] = "0.3"
        else:
            args += ["--duration", "0.3"]
        if "--format" not in args:
            args += ["--format", "jsonl"]
        if "--user" not in args:  # in this process: giving up root would end the suite's
            args += ["--user", "root"]
        result = run_example(args, mkdir(tmp_path / str(n)))
        assert "stopped" in result.output, result.output
