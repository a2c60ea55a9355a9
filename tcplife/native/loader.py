"""Which core runs: the compiled engine (``tcplife._engine``, built from engine/*.c) or
the Python core (`tcplife.core`, the reference).

Owns: loading the engine once, refusing one whose tables differ in memory from the
Python core's (`tcplife.native.cgen.engine_tables`: one source of truth), and the choice
of core: ``TCPLIFE_CORE=python`` (or ``c``) in the environment, else the engine when it
loaded. `status()` says what was found and why, for ``tcplife --version`` and the docs.
Knows nothing of what the engine computes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from types import ModuleType

#: what the engine runs of an analysis so far (the stages wired to it; issue 21 adds the
#: rest): `describe` says so
USED_FOR: tuple[str, ...] = ("reading captures", "tracking connections (with the peers' "
                             "replays and the anomaly detectors) in analyses of files")

#: the environment variable that forces a core: "python" or "c" ("auto": the default)
ENV = "TCPLIFE_CORE"
CORES = ("auto", "python", "c")


class EngineUnavailable(RuntimeError):
    """The compiled engine was asked for and cannot run (not built, or refused)."""


@dataclass(frozen=True)
class Status:
    """What the loader found."""

    built: bool  #: ``tcplife._engine`` could be imported
    usable: bool  #: and its tables equal the Python core's
    reason: str  #: why not, or what it is
    tables_sha256: str | None = None


@lru_cache(maxsize=1)
def _load() -> tuple[ModuleType | None, Status]:
    try:
        import tcplife._engine as _engine
    except ImportError as exc:
        return None, Status(False, False, f"not built ({exc}): pip install with a C compiler")
    from tcplife.native.cgen import engine_tables, fingerprint

    theirs, ours = _engine.tables(), engine_tables()
    if theirs != ours:
        differ = sorted(k for k in set(theirs) | set(ours) if theirs.get(k) != ours.get(k))
        return None, Status(True, False, "refused: its tables differ from the Python core's "
                            f"({', '.join(differ)}): rebuild it (pip install .)",
                            _engine.TABLES_SHA256)
    return _engine, Status(True, True, f"built from tables {fingerprint(ours)[:12]}",
                           _engine.TABLES_SHA256)


def status() -> Status:
    return _load()[1]


def engine() -> ModuleType:
    """The compiled engine; `EngineUnavailable` says why not."""
    module, st = _load()
    if module is None:
        raise EngineUnavailable(f"the compiled engine is {st.reason}")
    return module


def requested(core: str | None = None) -> str:
    """The core asked for: ``core`` if given, else ``$TCPLIFE_CORE``, else "auto"."""
    choice = (core or os.environ.get(ENV) or "auto").strip().lower()
    if choice not in CORES:
        raise ValueError(f"unknown core {choice!r}: choose from {', '.join(CORES)}")
    return choice


def use_engine(core: str | None = None) -> bool:
    """Should the compiled engine run? "auto": when it loaded; "c": it must (else
    `EngineUnavailable`); "python": never."""
    choice = requested(core)
    if choice == "python":
        return False
    if choice == "c":
        engine()
        return True
    return status().usable


def describe() -> str:
    """One line for ``tcplife --version``: which core is active, and why."""
    st = status()
    try:
        choice = requested()
    except ValueError as exc:
        return f"core: python ({exc})"
    engine_text = f"compiled engine {st.reason}"
    if choice == "python":
        return f"core: python ({ENV}=python; {engine_text})"
    if not st.usable:
        return f"core: python ({engine_text})"
    if not USED_FOR:
        return f"core: python ({engine_text}, not used yet: its tracker is not complete)"
    return (f"core: c (the compiled engine for {' and '.join(USED_FOR)}; the Python core "
            f"for live mode and the Dask engine; {engine_text})")
