"""Sample captures that ship inside the package, to try tcplife without a capture of one's own.

Owns: the list of samples, their one-line descriptions and where their files are once
installed (`names`, `describe`, `path`). Each file is a copy of a kernel-lab capture in the
repository's ``sample_pcaps/`` (the large one gzipped; tcplife reads either), where its
``NAME.expected.json`` holds what the kernel's ``ss`` said during the run. Knows nothing of
the analysis or of the command line (``tcplife analyze --sample NAME`` uses this module).
In Python: ``tcplife.analyze(tcplife.samples.path("refused"))``.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

__all__ = ["SAMPLES", "Sample", "UnknownSample", "describe", "names", "path"]


@dataclass(frozen=True)
class Sample:
    """One packaged capture: its ``file`` in this package, a copy (or the gzip) of
    ``sample_pcaps/<original>``, and what it shows."""

    name: str
    file: str
    description: str

    @property
    def original(self) -> str:
        """The file's name in the repository's ``sample_pcaps/``."""
        return self.file.removesuffix(".gz")


#: The samples, in the order `names` lists them.
SAMPLES: tuple[Sample, ...] = (
    Sample("clean", "clean_traffic.client.pcap.gz",
           "240 ordinary request/response connections, nothing wrong: only the client's "
           "pile of TIME_WAIT sockets"),
    Sample("refused", "refused.client.pcap",
           "a SYN answered by RST: nothing listens on the port (ECONNREFUSED)"),
    Sample("unread_data", "close_unread_data.client.pcap",
           "the client closes with received data unread: its kernel sends RST, not FIN"),
    Sample("close_wait", "port_reuse_close_wait.server.pcap",
           "the server never closes (CLOSE_WAIT) until the client reuses the port and "
           "resets it"),
    Sample("port_reuse", "port_reuse_after_time_wait.client.pcap",
           "the client reconnects from the same port; the server's TIME_WAIT socket "
           "takes the new SYN"),
    Sample("dead_peer", "keepalive_dead_peer.client.pcap",
           "keep-alive probes to a vanished peer go unanswered; the client's kernel "
           "gives up with RST"),
)

_BY_NAME = {sample.name: sample for sample in SAMPLES}


class UnknownSample(LookupError):
    """A sample name that is not one of `names`; the message lists them."""

    def __init__(self, name: str) -> None:
        super().__init__(f"no sample {name!r}; the samples are: {', '.join(names())}")
        self.name = name


def names() -> list[str]:
    """The samples' names."""
    return [sample.name for sample in SAMPLES]


def _sample(name: str) -> Sample:
    try:
        return _BY_NAME[name]
    except KeyError:
        raise UnknownSample(name) from None


def describe(name: str) -> str:
    """What sample ``name`` shows, in one line."""
    return _sample(name).description


def path(name: str) -> Path:
    """The file of sample ``name``, a pcap (gzipped for the large one) that
    `tcplife.analyze`, the CLI, tshark and tcpdump read. Installed as a directory (pip
    install, editable or not) it is the file in the package; from a zip archive it is a
    copy made once in the temporary directory."""
    sample = _sample(name)
    resource = resources.files(__name__) / sample.file
    if isinstance(resource, Path):
        return resource
    copy = Path(tempfile.gettempdir()) / "tcplife-samples" / sample.file
    if not copy.exists():
        copy.parent.mkdir(parents=True, exist_ok=True)
        partial = copy.with_name(copy.name + ".part")
        with resource.open("rb") as source, open(partial, "wb") as target:
            shutil.copyfileobj(source, target)
        partial.replace(copy)
    return copy
