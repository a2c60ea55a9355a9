"""What a test needs beyond a fresh clone, and how its absence is reported.

Owns: the checks for the third-party corpus (``../shared/corpus``, beside the checkout),
root, command-line tools (tshark, tcpdump, nft, ...) and optional Python packages. A test
calls ``require_*`` (or carries the `needs` mark, checked before it runs): where something
is missing it is skipped, with a reason naming what is missing. With
``TCPLIFE_REQUIRE_ALL=1`` (``.ci/run`` sets it) the same is a failure, so that nothing is
skipped silently where everything should be present; conftest.py then also fails any
other skip.
"""

from __future__ import annotations

import importlib
import os
import shutil
from pathlib import Path
from types import ModuleType
from typing import NoReturn

import pytest

#: Set to 1 to make every missing requirement (and every other skip) a failure.
REQUIRE_ALL = "TCPLIFE_REQUIRE_ALL"
#: The third-party captures (origins and licences in its SOURCES.md), beside the checkout.
CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"
CORPUS_PCAPS = CORPUS / "pcaps"


def require_all() -> bool:
    """Is a missing requirement a failure (``TCPLIFE_REQUIRE_ALL`` set, not 0)?"""
    return os.environ.get(REQUIRE_ALL, "") not in ("", "0")


def missing(what: str) -> NoReturn:
    """Skip the test because ``what`` is missing, or fail it under `REQUIRE_ALL`."""
    if require_all():
        pytest.fail(f"needs {what} ({REQUIRE_ALL}=1: nothing may be skipped)", pytrace=False)
    pytest.skip(f"needs {what}")


def require_tool(*tools: str) -> None:
    """Every command in ``tools`` on PATH."""
    absent = [tool for tool in tools if shutil.which(tool) is None]
    if absent:
        missing(f"{' and '.join(absent)} (not on PATH)")


def require_root() -> None:
    """Running as root (network namespaces, nftables, raw capture)."""
    if os.geteuid() != 0:
        missing("root (network namespaces, nftables, capture on an interface)")


def require_module(name: str, install: str | None = None) -> ModuleType:
    """The Python module ``name``, imported; ``install`` is what provides it."""
    try:
        return importlib.import_module(name)
    except ImportError:
        missing(f"the Python package {install or name} (pip install '.[test]')")


def corpus_present() -> bool:
    return CORPUS_PCAPS.is_dir() and any(CORPUS_PCAPS.iterdir())


def require_corpus() -> Path:
    """The third-party corpus's captures directory."""
    if not corpus_present():
        missing(f"the third-party corpus at {CORPUS_PCAPS} (../shared/corpus beside the "
                "checkout; see README)")
    return CORPUS_PCAPS


def needs(*tools: str, root: bool = False, corpus: bool = False,
          modules: tuple[str, ...] = ()) -> pytest.MarkDecorator:
    """A mark for a test (or, as ``pytestmark``, a module) that needs these; checked by
    `check_marks` before the test runs, with the ``require_*`` functions."""
    return pytest.mark.needs(tools=tools, root=root, corpus=corpus, modules=modules)


def check_marks(item: pytest.Item) -> None:
    """Skip (or fail) ``item`` if a `needs` mark on it names something missing."""
    for mark in item.iter_markers("needs"):
        if mark.kwargs.get("corpus"):
            require_corpus()
        if mark.kwargs.get("root"):
            require_root()
        require_tool(*mark.kwargs.get("tools", ()))
        for module in mark.kwargs.get("modules", ()):
            require_module(module)
