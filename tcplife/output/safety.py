"""Output safety: text that came from a capture or a file name, made harmless where shown.

Owns three small rules, applied by the writers in `tcplife.output.formats` and the messages of
`tcplife.cli.main`:

* `csv_text`: a CSV text cell that a spreadsheet would run as a formula (it begins with
  ``=``, ``+``, ``-``, ``@``, a tab or a carriage return; OWASP "CSV Injection") gets a
  leading ``'``, which spreadsheets show as text and do not evaluate. Only text cells:
  numbers (a negative duration, a time before 1970) stay numbers.
* `terminal_text`: control characters (C0, DEL, C1: ESC sequences can recolour, retitle
  or rewrite a terminal) and the Unicode bidirectional overrides (which reorder what is
  shown) are written as visible escapes (``\\x1b``, ``\\u202e``) before text reaches a
  terminal. Rich does not do it: it strips a few codes and passes ESC through.
* `open_output`: ``-o FILE`` opens exactly FILE, never a derived name, and never writes
  through a symbolic link to a regular file (an attacker's link in a shared directory
  would redirect the write); links to devices and pipes (``/dev/stdout``) are fine.

Knows nothing of DataFrames, rich or click: strings and paths in, strings and files out.
"""

from __future__ import annotations

import errno
import os
import stat
from typing import IO, Any

#: first characters that make a spreadsheet evaluate a cell (OWASP CSV Injection)
FORMULA_START = frozenset("=+-@\t\r")

_ESCAPES: dict[int, str] = {c: f"\\x{c:02x}" for c in (*range(0x20), 0x7F, *range(0x80, 0xA0))}
_ESCAPES.update({c: f"\\u{c:04x}" for c in (*range(0x202A, 0x202F), *range(0x2066, 0x206A),
                                             0x200E, 0x200F, 0x061C)})


def csv_text(value: Any) -> Any:
    """`value` unchanged unless it is text a spreadsheet would evaluate: then ``'`` + it."""
    if isinstance(value, str) and value and value[0] in FORMULA_START:
        return "'" + value
    return value


def terminal_text(text: str) -> str:
    """`text` with control and bidi-override characters written as visible escapes."""
    if text.isprintable():  # the common case; isprintable is False for all of them
        return text
    return text.translate(_ESCAPES)


def open_output(path: str | os.PathLike[str], binary: bool = False) -> IO[Any]:
    """Open `path` for writing (created or truncated), refusing a symbolic link whose
    target is a regular file or does not exist. Raises OSError, naming the path."""
    name = os.fspath(path)
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0)
    if os.path.islink(name):
        try:
            target = os.stat(name).st_mode
        except OSError:
            target = None  # dangling: writing would create a file where the link points
        if target is None or stat.S_ISREG(target) or stat.S_ISDIR(target):
            raise OSError(errno.ELOOP, "is a symbolic link; refusing to write through it "
                          "(name its target instead)", name)
    else:
        flags |= getattr(os, "O_NOFOLLOW", 0)  # and if one appears meanwhile: ELOOP
    fd = os.open(name, flags, 0o666)
    try:
        if binary:
            return os.fdopen(fd, "wb")
        return os.fdopen(fd, "w", encoding="utf-8", newline="")
    except BaseException:
        os.close(fd)
        raise
