"""Live capture source: a network interface -> frames -> decoded TCP `Segment`s.

Owns: opening an interface through libpcap (the `cypcap` binding), the BPF filter, reading
what the kernel has captured in batches, decoding it with the file reader's `Decoder`,
optionally writing every frame to a pcap file as it comes (`--write`), and the drop counts
(kernel and interface) that libpcap reports, and giving up root once the interface is
open (`tcplife.capture.privileges`). Must not know about connection state.

Why cypcap (see docs/live.md): a binding of the modern libpcap API
(``pcap_create``/``pcap_activate`` with buffer size, immediate mode, timestamp precision,
``pcap_stats``, selectable fd, dumpers), Cython-compiled, whose wheels carry libpcap 1.10
(TPACKET_V3 ring) so ``pip install`` needs no compiler or libpcap-dev. Measured on this
machine it hands over a packet in ~0.3 µs (``dispatch``), against ~0.6-1.3 µs for
pcapy-ng (whose wheels carry libpcap 1.9 and whose batch call has no wire length).

Timestamps: microsecond precision (what tcpdump writes by default). cypcap gives the time
as a float; microseconds since the epoch stay exact in a float64 (< 2**53), so
``round(ts * 1e6)`` recovers the kernel's value and the `--write` file holds the same
timestamps that the live analysis used.
"""

from __future__ import annotations

import contextlib
import io
import os
import select
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tcplife.core.segment import Segment

from .decode import Decoder
from .errors import CaptureError
from .privileges import Dropped, PrivilegeError, drop_privileges, plan
from .stats import ReadStats

try:  # an optional import only in the sense that file mode must work without it
    import cypcap
except ImportError:  # pragma: no cover - cypcap is a dependency
    cypcap = None

#: Enough for link + IPv4/IPv6 (with options or extension headers) + TCP with options.
DEFAULT_SNAPLEN = 256
#: libpcap's read timeout: the longest a packet waits in the kernel ring before we see it.
READ_TIMEOUT_MS = 100
DEFAULT_BUFFER_MB = 32


@dataclass
class LiveStats:
    """What libpcap counted (``pcap_stats``), beside the decoder's `ReadStats`."""

    received: int = 0  #: packets that passed the filter (ps_recv)
    dropped: int = 0  #: dropped by the kernel: the ring was full (ps_drop)
    if_dropped: int = 0  #: dropped by the interface or its driver (ps_ifdrop)

    @property
    def total_dropped(self) -> int:
        return self.dropped + self.if_dropped


def _privilege_hint(iface: str) -> str:
    return (f"cannot capture on {iface}: permission denied; live capture needs root or the "
            "CAP_NET_RAW capability (e.g. sudo setcap cap_net_raw,cap_net_admin=eip "
            "on the Python interpreter)")


class LiveCapture:
    """One open interface. `read` returns the segments the kernel has captured so far
    (waiting at most the read timeout when there are none)."""

    def __init__(self, iface: str = "any", bpf: str | None = None, *,
                 snaplen: int = DEFAULT_SNAPLEN, promisc: bool = False,
                 buffer_mb: int = DEFAULT_BUFFER_MB, write: str | os.PathLike[str] | None = None,
                 timeout_ms: int = READ_TIMEOUT_MS, user: str | None = None,
                 user_chosen: bool = True) -> None:
        if cypcap is None:  # pragma: no cover
            raise CaptureError("live capture needs the cypcap package (pip install cypcap)")
        self.iface = iface
        self.bpf = bpf or ""
        self.stats = ReadStats()
        self.live_stats = LiveStats()
        self.frames = 0
        self._decoder = Decoder(self.stats, f"live:{iface}", verify_checksums=False)
        self._dumper: Any = None
        try:  # who to become is settled before anything is opened
            how = None if user is None else plan(user, chosen=user_chosen)
        except PrivilegeError as exc:
            raise CaptureError(f"live capture on {iface}: {exc}") from exc
        self._pcap = pcap = cypcap.create(iface)
        try:
            pcap.set_snaplen(snaplen)
            pcap.set_promisc(promisc)
            pcap.set_timeout(timeout_ms)
            # Immediate mode: packets are handed over as they come. Without it, cypcap's
            # libpcap (TPACKET_V3) kept packets in a partly filled ring block indefinitely
            # on this kernel (6.18): the block's retire timeout never delivered them.
            pcap.set_immediate_mode(True)
            pcap.set_buffer_size(buffer_mb << 20)
            pcap.set_tstamp_precision(cypcap.TstampPrecision.MICRO)
            pcap.activate()
            self.linktype = int(pcap.datalink())
            if self.bpf:
                # cypcap 0.6's compile prints a number on stdout, which would corrupt the
                # JSON lines written there: keep it off.
                with contextlib.redirect_stdout(io.StringIO()):
                    program = pcap.compile(self.bpf)
                pcap.setfilter(program)
            # Non-blocking, waiting in select(): with TPACKET_V3 a blocking read returns
            # only once a packet comes, so the clock could not run on an idle interface.
            pcap.setnonblock(True)
            self._fd = pcap.get_selectable_fd()
            if write is not None:
                self._dumper = pcap.dump_open(os.fspath(write))
            #: what giving up privileges did (None: not asked to, ``user`` None)
            self.dropped: Dropped | None = None
            if how is not None:  # the interface is open: root is no longer needed
                self.dropped = drop_privileges(
                    how, files=() if write is None else (os.fspath(write),))
        except cypcap.Error as exc:
            pcap.close()
            raise CaptureError(self._describe(exc)) from exc
        except PrivilegeError as exc:
            pcap.close()
            raise CaptureError(f"live capture on {iface}: {exc}") from exc
        except BaseException:
            pcap.close()
            raise
        self._pending: list[Segment] = []
        self._callback = self._make_callback()

    def _describe(self, exc: Any) -> str:
        code, msg = exc.args[0], str(exc.args[1]) if len(exc.args) > 1 else str(exc)
        codes = cypcap.ErrorCode
        if code in (codes.PERM_DENIED, codes.PROMISC_PERM_DENIED) or "ermission" in msg:
            return _privilege_hint(self.iface)
        if code == codes.NO_SUCH_DEVICE:
            return f"no such interface: {self.iface} (see `ip link`; `any` captures on all)"
        if code == codes.IFACE_NOT_UP:
            return f"interface {self.iface} is down"
        if "filter" in msg:
            return f"bad capture filter {self.bpf!r}: {msg}"
        return f"cannot capture on {self.iface}: {msg}"

    def _make_callback(self) -> Callable[[Any, bytes], None]:
        pending = self._pending
        decode = self._decoder.decode
        linktype = self.linktype
        stats = self.stats
        dump = self._dumper.dump if self._dumper is not None else None

        def on_packet(hdr: Any, data: bytes) -> None:
            self.frames += 1
            ts_ns = round(hdr.ts * 1e6) * 1000
            if dump is not None:
                dump(hdr, data)
            stats.frames += 1
            stats.link_types[linktype] += 1
            if stats.first_ts_ns is None:
                stats.first_ts_ns = ts_ns
            stats.last_ts_ns = ts_ns
            seg = decode(self.frames, ts_ns, linktype, hdr.len, data)
            if seg is not None:
                pending.append(seg)

        return on_packet

    def read(self, wait: float = READ_TIMEOUT_MS / 1000, limit: int = 50_000) -> list[Segment]:
        """The segments captured since the last call, waiting up to ``wait`` seconds when
        there are none yet (so possibly none). At most about ``limit`` frames are taken at
        once, so that a caller under load still gets control back. Frames are numbered from
        1 over every frame the filter passed, TCP or not, as in the written file."""
        if wait > 0:
            with contextlib.suppress(InterruptedError):
                select.select([self._fd], [], [], wait)
        start = self.frames
        try:
            while self.frames - start < limit:
                before = self.frames
                self._pcap.dispatch(limit - (self.frames - start), self._callback)
                if self.frames == before:
                    break
        except cypcap.Error as exc:
            raise CaptureError(self._describe(exc)) from exc
        out = self._pending[:]
        self._pending.clear()
        return out

    def fileno(self) -> int:
        return int(self._fd)

    def update_stats(self) -> LiveStats:
        """Refresh and return libpcap's counters (cheap: one getsockopt)."""
        if self._pcap is None:
            return self.live_stats
        try:
            st = self._pcap.stats()
        except (cypcap.Error, OSError):
            return self.live_stats
        self.live_stats = LiveStats(int(st.recv), int(st.drop), int(st.ifdrop))
        return self.live_stats

    def flush(self) -> None:
        if self._dumper is not None:
            self._dumper.flush()

    def close(self) -> None:
        if self._pcap is None:
            return
        self.update_stats()
        if self._dumper is not None:
            self._dumper.close()
            self._dumper = None
        self._pcap.close()
        self._pcap = None

    def __enter__(self) -> LiveCapture:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
