"""tcplife: reconstruct the life of every TCP connection in a packet capture.

The public surface: `analyze` (captures -> `Result` with DataFrames), the sans-IO
`Tracker` (segments -> events) for embedding and live capture, and the vocabulary.
"""

from __future__ import annotations

from tcplife.analysis import Result, analyze
from tcplife.capture import CaptureError, ReadStats, read_segments
from tcplife.dataset import ParquetDataset
from tcplife.distributed import analyze_dask
from tcplife.live import LiveSession, live
from tcplife.options import Options
from tcplife.segment import Segment
from tcplife.states import State
from tcplife.tracker import Tracker

__version__ = "0.1.0"

__all__ = ["CaptureError", "LiveSession", "Options", "ParquetDataset", "ReadStats", "Result",
           "Segment", "State", "Tracker", "__version__", "analyze", "analyze_dask", "live",
           "read_segments"]
