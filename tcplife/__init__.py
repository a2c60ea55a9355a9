"""tcplife: reconstruct the life of every TCP connection in a packet capture."""

from __future__ import annotations

__version__ = "0.1.0"
