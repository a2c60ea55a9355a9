"""tcplife: reconstruct the life of every TCP connection in a packet capture.

The public surface: `analyze` (captures -> `Result` with DataFrames), the sans-IO
`Tracker` (segments -> events) for embedding and live capture, and the vocabulary.

Names are imported on first use (PEP 562), so ``import tcplife`` and the command line
start without loading pandas, numpy, pyarrow, matplotlib or dask; each is imported by
the part that needs it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from tcplife.version import __version__

#: public name -> the module that defines it
_WHERE: dict[str, str] = {
    "CaptureError": "tcplife.capture", "ReadStats": "tcplife.capture",
    "read_segments": "tcplife.capture", "Result": "tcplife.engines.analysis",
    "analyze": "tcplife.engines.analysis", "ParquetDataset": "tcplife.engines.dataset",
    "analyze_dask": "tcplife.engines.distributed", "LiveSession": "tcplife.engines.live",
    "live": "tcplife.engines.live", "Options": "tcplife.core.options",
    "Segment": "tcplife.core.segment",
    "State": "tcplife.core.states", "Tracker": "tcplife.core.tracker",
}

__all__ = ["CaptureError", "LiveSession", "Options", "ParquetDataset", "ReadStats", "Result",
           "Segment", "State", "Tracker", "__version__", "analyze", "analyze_dask", "live",
           "read_segments"]

if TYPE_CHECKING:
    from tcplife.capture import CaptureError, ReadStats, read_segments
    from tcplife.core.options import Options
    from tcplife.core.segment import Segment
    from tcplife.core.states import State
    from tcplife.core.tracker import Tracker
    from tcplife.engines.analysis import Result, analyze
    from tcplife.engines.dataset import ParquetDataset
    from tcplife.engines.distributed import analyze_dask
    from tcplife.engines.live import LiveSession, live


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:  # a submodule (tcplife.samples, tcplife.output.filters, ...), as before
        try:
            value = importlib.import_module(f"tcplife.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"tcplife.{name}":
                raise
            raise AttributeError(f"module 'tcplife' has no attribute {name!r}") from None
        globals()[name] = value
        return value
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # once: later lookups do not come here
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
