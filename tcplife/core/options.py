"""Timeouts and thresholds that a capture cannot show, with Linux's defaults.

Owns: the `Options` record and its validation. Every field is a keyword argument of
`tcplife.analyze` and an option of the CLI.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

NS = 1_000_000_000


@dataclass(frozen=True)
class Options:
    """Timeouts in seconds (floats).

    time_wait: TIME_WAIT length; Linux hard-codes TCP_TIMEWAIT_LEN = 60 s.
    fin_wait_2: lifetime of an orphaned FIN_WAIT_2 socket (net.ipv4.tcp_fin_timeout, 60 s).
    syn_sent: how long connect() keeps retrying SYNs: 2**(tcp_syn_retries+1) - 1 seconds
        after the first SYN, 127 s for the default 6 (kernels with
        tcp_syn_linear_timeouts=4 send the first retries 1 s apart, but give up at the
        same time: measured in the kernel lab with tcp_syn_retries=2, 7 s).
    syn_received: how long a request socket retransmits its SYN-ACK: tcp_synack_retries=5
        gives 1+2+4+8+16+32 = 63 s.
    retransmit: how long after its first retransmission a side retransmitting data into
        silence keeps trying before its kernel gives up, silently (tcp_retries2=15: about
        924.6 s, 15.4 min; Linux sends no RST then, the socket is just gone).
    close_wait_linger: how long CLOSE_WAIT may last before it counts as an anomaly.
    idle: when a silent flow is given up (live mode) and its state no longer trusted.
    closed_linger: how long a fully closed connection is kept to absorb late packets
        (retransmissions, RSTs) before it is emitted and forgotten.
    time_wait_threshold: how many sockets of one host in TIME_WAIT at once count as an
        accumulation (a count, not seconds), whatever the risk.
    port_range_low, port_range_high: the clients' ephemeral port range
        (net.ipv4.ip_local_port_range, 32768-60999): how many TIME_WAIT sockets one client
        can hold towards one server address and port.
    max_tw_buckets: how many TIME_WAIT sockets a host may hold at all
        (net.ipv4.tcp_max_tw_buckets, 262,144): the server's limit.
    time_wait_share: the share of the limit (0-1) that a host's TIME_WAIT peak, or the
        count its rate of new TIME_WAIT sockets projects over ``time_wait``, must pass to
        count as an accumulation.
    """

    time_wait: float = 60.0
    fin_wait_2: float = 60.0
    syn_sent: float = 127.0
    syn_received: float = 63.0
    retransmit: float = 924.6
    close_wait_linger: float = 10.0
    idle: float = 300.0
    closed_linger: float = 120.0
    time_wait_threshold: float = 1000
    port_range_low: float = 32768
    port_range_high: float = 60999
    max_tw_buckets: float = 262144
    time_wait_share: float = 0.25

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"option {f.name} must be a non-negative number")
        if self.port_range_high < self.port_range_low:
            raise ValueError("option port_range_high must not be below port_range_low")
        # The tracker asks for these per segment: converted once.
        object.__setattr__(self, "_ns", {f.name: int(round(getattr(self, f.name) * NS))
                                         for f in fields(self)})

    def ns(self, name: str) -> int:
        """An option converted to integer nanoseconds, by name (the timeouts are also
        typed attributes: `time_wait_ns`, ...)."""
        return self._ns[name]  # type: ignore[attr-defined,no-any-return]

    @property
    def time_wait_ns(self) -> int:
        """``time_wait`` in integer nanoseconds."""
        return self._ns["time_wait"]  # type: ignore[attr-defined,no-any-return]

    @property
    def fin_wait_2_ns(self) -> int:
        """``fin_wait_2`` in integer nanoseconds."""
        return self._ns["fin_wait_2"]  # type: ignore[attr-defined,no-any-return]

    @property
    def syn_sent_ns(self) -> int:
        """``syn_sent`` in integer nanoseconds."""
        return self._ns["syn_sent"]  # type: ignore[attr-defined,no-any-return]

    @property
    def syn_received_ns(self) -> int:
        """``syn_received`` in integer nanoseconds."""
        return self._ns["syn_received"]  # type: ignore[attr-defined,no-any-return]

    @property
    def retransmit_ns(self) -> int:
        """``retransmit`` in integer nanoseconds."""
        return self._ns["retransmit"]  # type: ignore[attr-defined,no-any-return]

    @property
    def close_wait_linger_ns(self) -> int:
        """``close_wait_linger`` in integer nanoseconds."""
        return self._ns["close_wait_linger"]  # type: ignore[attr-defined,no-any-return]

    @property
    def idle_ns(self) -> int:
        """``idle`` in integer nanoseconds."""
        return self._ns["idle"]  # type: ignore[attr-defined,no-any-return]

    @property
    def closed_linger_ns(self) -> int:
        """``closed_linger`` in integer nanoseconds."""
        return self._ns["closed_linger"]  # type: ignore[attr-defined,no-any-return]

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))
