"""Which files the command-line arguments name, and whether each one is a capture.

Owns: expanding a directory (its files) or a glob (its matches) into files in natural name
order (cap2 before cap10); checking every file before anything is read. A file found in
a directory or by a glob that is not a capture (a README, a .json) is skipped with a
warning naming it; a file named explicitly that is missing, unreadable or not a capture
is a `CaptureError` (one line naming it). Reading order is not decided here: captures are
merged by time (`tcplife.capture.merge`). Must not know about connection state.
"""

from __future__ import annotations

import glob
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from .errors import CaptureError
from .files import open_capture


def _natural(name: str) -> list[Any]:
    """``cap2`` before ``cap10`` (tcpdump -C numbering), text compared as text."""
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", name)]


def _expand(text: str) -> tuple[list[str], bool]:
    """(files, whether they were found in a directory or by a glob)."""
    if text == "-" or os.path.isfile(text):
        return [text], False
    if os.path.isdir(text):
        names = [os.path.join(text, n) for n in os.listdir(text)
                 if os.path.isfile(os.path.join(text, n)) and not n.startswith(".")]
    elif glob.has_magic(text):
        names = [n for n in glob.glob(text) if os.path.isfile(n)]
        if not names:  # a file name with [ or * in it, or a typo: the reader says which
            return [text], False
    else:
        return [text], False
    return sorted(names, key=lambda n: _natural(os.path.basename(n))), True


def capture_files(source: str | os.PathLike[str] | Iterable[str | os.PathLike[str]]
                  ) -> list[str]:
    """The files of a directory (files only, in natural name order), a glob (natural
    order) or a list (kept in its order); nothing is opened."""
    if not isinstance(source, (str, os.PathLike)):
        return [os.fspath(p) for p in source]
    return _expand(os.fspath(source))[0]


@dataclass
class Captures:
    """What `find_captures` found: the capture files, and the files it skipped."""

    files: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def check_capture(path: str) -> None:
    """Raise `CaptureError` unless `path` opens as a pcap or pcapng capture (header only)."""
    if os.path.isdir(path):
        raise CaptureError(f"{path}: is a directory with no capture in it")
    open_capture(path).close()


def find_captures(arguments: Iterable[str]) -> Captures:
    """The capture files the arguments name, each checked (its header read): directories
    and globs expanded, their non-captures skipped with a warning; an argument naming a
    file that is not a capture, or cannot be read, raises `CaptureError`. ``-``
    (standard input) is kept unchecked. An argument that finds no capture at all (an
    empty directory) raises too."""
    found = Captures()
    for argument in arguments:
        files, expanded = _expand(argument)
        kept = 0
        for path in files:
            if path == "-":
                found.files.append(path)
                kept += 1
                continue
            try:
                check_capture(path)
            except CaptureError as exc:
                if not expanded:
                    raise
                reason = str(exc).removeprefix(f"{path}: ")
                found.warnings.append(f"skipped {path}: {reason}")
                continue
            found.files.append(path)
            kept += 1
        if expanded and not kept:
            names = [os.path.basename(f) for f in files]
            shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3
                                            else "")
            raise CaptureError(f"{argument}: no capture files in it"
                               + (f" (not captures: {shown})" if files else ""))
    return found
