"""The one exception of the capture layer.

Owns: `CaptureError`, raised only when an input cannot be read at all (missing file, no
permission, not a pcap/pcapng capture, gzip or capture header broken). Damage found after
the header is never an exception: it ends the read with a warning in `ReadStats.warnings`.
Must not know about anything downstream of the capture layer.
"""

from __future__ import annotations


class CaptureError(Exception):
    """The input cannot be read at all; the message is one human line naming the input."""
