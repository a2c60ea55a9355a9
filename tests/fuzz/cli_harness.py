"""Run the real tcplife CLI over many inputs in one process, under a memory ceiling.

Owns: measuring, for each input, what a user would see from ``tcplife COMMAND FILE
--format jsonl`` -- exit status, standard output, standard error -- and how long it took,
with the address space capped (``RLIMIT_AS``: what the process has after its imports plus
``--headroom`` MiB), so that a header claiming gigabytes cannot be satisfied, and an alarm
per input as a hang detector. The click command runs in this process (one interpreter
start for hundreds of inputs) exactly as ``python -m tcplife`` runs it: same group, same
error handling, same exit statuses.

Prints one JSON object per input: name, status, stdout, stderr, seconds. Usage::

    python tests/fuzz/cli_harness.py [--headroom MIB] [--timeout S] [--command analyze]
        [--format jsonl] FILE...
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import resource
import signal
import sys
import time
from pathlib import Path
from typing import Any

from tcplife.cli.main import main as tcplife_main


class Hang(BaseException):
    """Raised by the alarm; a BaseException so that the CLI's own handler lets it by."""


def _alarm(signum: int, frame: Any) -> None:
    raise Hang()


def vm_size() -> int:
    """This process's virtual memory size in bytes (Linux /proc)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmSize:"):
            return int(line.split()[1]) * 1024
    return 0


def run_one(command: str, path: str, timeout: float, fmt: str = "jsonl") -> dict[str, Any]:
    out, err = io.StringIO(), io.StringIO()
    status: int | str = 0
    start = time.monotonic()
    signal.setitimer(signal.ITIMER_REAL, timeout)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            tcplife_main.main([*command.split(), path, "--format", fmt], prog_name="tcplife",
                              standalone_mode=True)
    except SystemExit as exc:
        status = exc.code if isinstance(exc.code, int) else 1
    except Hang:
        status = "hang"
    except MemoryError:
        status = "MemoryError"
    except BaseException as exc:  # noqa: BLE001 - reported, not raised: the test decides
        status = f"escaped {type(exc).__name__}: {exc}"
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
    return {"name": Path(path).name, "status": status, "stdout": out.getvalue(),
            "stderr": err.getvalue(), "seconds": time.monotonic() - start}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--headroom", type=int, default=1024, help="MiB above the start")
    parser.add_argument("--timeout", type=float, default=20.0, help="seconds per input")
    parser.add_argument("--command", default="analyze", help='e.g. "at +1"')
    parser.add_argument("--format", default="jsonl")
    parser.add_argument("paths", nargs="+")
    args = parser.parse_args(argv)
    limit = vm_size() + (args.headroom << 20)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    signal.signal(signal.SIGALRM, _alarm)
    for path in args.paths:
        print(json.dumps(run_one(args.command, path, args.timeout, args.format)),
              file=sys.__stdout__,
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
