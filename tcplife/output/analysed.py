"""What the output layer reads from an engine's answer: `Analysed`.

Owns one `Protocol`: the tables of the contract, what the reader counted, the options and
the sources. `tcplife.engines.analysis.Result` has this shape (so do the live and Dask
engines' results, which are `Result`s); the exporters (`tcplife.output.export`) and the
chart (`tcplife.output.plot`) are written against it, so the output layer never imports
the engines that sit above it.
"""

from __future__ import annotations

from typing import Any, Protocol

from tcplife.capture.stats import ReadStats
from tcplife.core.options import Options


class Analysed(Protocol):
    """An analysis as the output layer sees it."""

    stats: ReadStats
    options: Options
    sources: list[str]

    @property
    def connections(self) -> Any:
        """The connections table (a DataFrame)."""

    @property
    def transitions(self) -> Any:
        """The transitions table (a DataFrame)."""

    @property
    def anomalies(self) -> Any:
        """The anomalies table (a DataFrame)."""

    def table(self, name: str) -> Any:
        """Table ``name`` as it is at hand (`tcplife.output.rows.Rows` or a DataFrame)."""
