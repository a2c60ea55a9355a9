"""Capture filters: a BPF expression, as ``tcpdump -r FILE EXPR`` takes it, applied to frames.

Owns: `CaptureFilter`, the expression compiled by libpcap (the `cypcap` binding live mode
uses) once per link type, and asked of each frame's captured bytes with the frame's
captured and wire lengths (``pcap_offline_filter``, what tcpdump runs on a file); and
`FilterError`, for an expression libpcap will not compile. A frame the filter leaves out
keeps its number (frame N stays frame N of its file, so tshark finds it) and is counted
in `ReadStats.filtered_out` by the readers. Must not know about file formats or
connection state.

Cost: about 0.1 µs in libpcap per frame plus a Python call and a copy of the frame's
bytes; both readers call it frame by frame.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable

from .errors import CaptureError

try:
    import cypcap
except ImportError:  # pragma: no cover - cypcap is a dependency
    cypcap = None

#: what a filter is compiled for: libpcap's largest snap length, so ``len``, ``greater``
#: and ``less`` see the wire length and nothing is cut
SNAPLEN = 262144
#: a link type to check an expression against before any capture is open (Ethernet)
CHECK_LINKTYPE = 1

#: (captured bytes, wire length) -> keep the frame?
Matcher = Callable[[bytes, int], bool]


class FilterError(CaptureError, ValueError):
    """libpcap will not compile the expression (for this link type)."""


def _compile(expression: str, linktype: int) -> object:
    if cypcap is None:  # pragma: no cover
        raise FilterError("a capture filter needs the cypcap package (pip install cypcap)")
    try:
        # cypcap 0.6's compile prints on stdout, where rows go: keep it off
        with contextlib.redirect_stdout(io.StringIO()):
            return cypcap.compile(linktype, SNAPLEN, expression, True,
                                  cypcap.NETMASK_UNKNOWN)
    except cypcap.Error as exc:
        detail = str(exc.args[1]) if len(exc.args) > 1 else str(exc)
        raise FilterError(f"filter {expression!r}: {detail}") from None


class CaptureFilter:
    """One BPF expression; `matcher` gives the test for frames of one link type."""

    def __init__(self, expression: str) -> None:
        self.expression = expression
        self._matchers: dict[int, Matcher] = {}

    def __repr__(self) -> str:
        return f"CaptureFilter({self.expression!r})"

    def check(self) -> CaptureFilter:
        """Compile it for Ethernet, raising `FilterError` now if libpcap refuses it."""
        self.matcher(CHECK_LINKTYPE)
        return self

    def matcher(self, linktype: int) -> Matcher:
        """``keep(data, wire_len)`` for frames of `linktype`; `FilterError` (naming the
        link type) where the expression means nothing for it."""
        found = self._matchers.get(linktype)
        if found is None:
            try:
                program = _compile(self.expression, linktype)
            except FilterError as exc:
                if linktype == CHECK_LINKTYPE:
                    raise
                raise FilterError(f"{exc} (for link type {linktype})") from None
            test = program.offline_filter  # type: ignore[attr-defined]
            header = cypcap.Pkthdr

            def found(data: bytes, wire_len: int) -> bool:
                return test(header(0.0, len(data), wire_len), data)

            self._matchers[linktype] = found
        return found


def as_filter(value: str | CaptureFilter | None) -> CaptureFilter | None:
    """An expression, a `CaptureFilter` or None (no filter; so is an empty expression)."""
    if value is None or isinstance(value, CaptureFilter):
        return value
    if not str(value).strip():
        return None
    return CaptureFilter(str(value))
