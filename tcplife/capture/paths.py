"""Which files a capture argument names: a file, ``-``, a directory or a glob.

Owns: `capture_files` (a directory's or a glob's files in natural name order, as
``tcpdump -C``/``-W`` number them: cap, cap1, cap2, cap10). Knows nothing of what the
files hold.
"""

from __future__ import annotations

import glob
import os
import re
from collections.abc import Iterable
from typing import Any


def natural(name: str) -> list[Any]:
    """``cap2`` before ``cap10`` (tcpdump -C numbering), text compared as text."""
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", name)]


def capture_files(source: str | os.PathLike[str] | Iterable[str | os.PathLike[str]]
                  ) -> list[str]:
    """The capture files of a directory (files only, in natural name order), a glob
    (natural order) or a list (kept in its order)."""
    if not isinstance(source, (str, os.PathLike)):
        return [os.fspath(p) for p in source]
    text = os.fspath(source)
    if os.path.isfile(text) or text == "-":
        return [text]
    if os.path.isdir(text):
        names = [os.path.join(text, n) for n in os.listdir(text)
                 if os.path.isfile(os.path.join(text, n)) and not n.startswith(".")]
    elif glob.has_magic(text):
        names = [n for n in glob.glob(text) if os.path.isfile(n)]
        if not names:  # a file name with [ or * in it, or a typo: the reader says which
            return [text]
    else:
        return [text]
    return sorted(names, key=lambda n: natural(os.path.basename(n)))
