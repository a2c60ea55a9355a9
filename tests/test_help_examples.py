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

import click
import pytest
from click.testing import CliRunner

from tcplife import samples
from tcplife.cli import main

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


def run_example(args: list[str]) -> click.testing.Result:
    clean = str(samples.path("clean"))
    args = [clean if arg == "capture.pcap" else arg for arg in args]
    runner = CliRunner()
    with runner.isolated_filesystem():
        result = runner.invoke(main, args)
        written = [name for _, _, files in os.walk(".") for name in files]
    assert result.exit_code == 0, f"tcplife {shlex.join(args)}: {result.output}"
    if "--sample" in args:  # a sample example is chosen to show something, quietly
        assert result.output.strip() or written, f"tcplife {shlex.join(args)}: no output"
        assert "warning" not in result.output, result.output
    return result


def test_every_command_is_covered() -> None:
    assert {"analyze", "timeline", "anomalies", "at", "frames", "ladder", "export",
            "live"} <= set(COMMANDS)


def test_main_help_ends_with_examples_that_run() -> None:
    for args in help_examples([]):
        run_example(args)


@pytest.mark.parametrize("command", [c for c in COMMANDS if c != "live"])
def test_help_ends_with_examples_that_run(command: str) -> None:
    examples = help_examples([command])
    assert all(args[0] == command for args in examples)
    assert any("--sample" in args for args in examples), "one example needs no capture"
    for args in examples:
        run_example(args)


def test_live_help_ends_with_examples_that_run() -> None:
    examples = help_examples(["live"])
    assert all(args[0] == "live" for args in examples)
    require_root()
    require_module("cypcap")
    for args in examples:
        # on lo, for a moment, as JSON lines: the options as printed, bounded
        args = ["lo" if prev in ("-i", "--interface") else arg
                for prev, arg in zip(["", *args[:-1]], args, strict=True)]
        if "--duration" in args:
            args[args.index("--duration") + 1] = "0.3"
        else:
            args += ["--duration", "0.3"]
        if "--format" not in args:
            args += ["--format", "jsonl"]
        result = run_example(args)
        assert "stopped" in result.output, result.output
