"""The detectors' package and Zeek's replay as modules: every public name still importable
from where it was (`tcplife.detect`, `tcplife.peers.zeek`), and numpy loaded only when a
TIME_WAIT name is asked for (checked in a fresh interpreter, by ``sys.modules``).
"""

from __future__ import annotations

from pathlib import Path

from probe import loaded_after

import tcplife.detect
import tcplife.peers.zeek

REPO = Path(__file__).resolve().parents[1]

#: what the engines and tests import from `tcplife.detect`
DETECT_NAMES = ["BoundedTimeWaitAccumulation", "ConnView", "Detector", "DetectorSet",
                "FinWait2Timeout", "HandshakeIncomplete", "LingeringCloseWait",
                "ListenOverflow", "MIN_RTO_NS", "MissingFinalAck", "Notes", "PerConnection",
                "Refused", "Resets", "Service", "SimultaneousClose", "SimultaneousOpen",
                "Spans", "TimeWaitAccumulation", "TimeWaitLimits", "clock",
                "default_detectors", "secs"]
#: what `tcplife.peers.zeek` offered before Zeek's endpoint moved to its own module
ZEEK_NAMES = ["CLOSED", "ENDPOINT_STATE_NAMES", "ESTABLISHED", "HANDSHAKE_INACTIVITY_TIMEOUT_NS",
              "HIST_ACK_PKT", "HIST_DATA_PKT", "HIST_FIN_PKT", "HIST_FIN_RST_PKT",
              "HIST_MULTI_FLAG_PKT", "HIST_RST_PKT", "HIST_SYN_PKT", "INACTIVE",
              "LIKELY_SERVER_PORTS", "PARTIAL", "RESET", "SYN_ACK_SENT", "SYN_SENT",
              "TCP_INACTIVITY_TIMEOUT_NS", "ZeekRecord", "ZeekRecorder", "ZeekReplay",
              "conn_state", "likely_server", "records_from_json", "records_json"]


def test_every_public_name_is_importable_where_it_was() -> None:
    for name in DETECT_NAMES:
        assert getattr(tcplife.detect, name) is not None, name
    assert set(DETECT_NAMES) <= set(tcplife.detect.__all__)
    assert set(DETECT_NAMES) <= set(dir(tcplife.detect))
    for name in ZEEK_NAMES:
        assert getattr(tcplife.peers.zeek, name) is not None, name


def test_an_unknown_name_is_an_attribute_error() -> None:
    try:
        tcplife.detect.NoSuchDetector  # type: ignore[attr-defined]  # noqa: B018
    except AttributeError:
        pass
    else:  # pragma: no cover - the failure
        raise AssertionError("tcplife.detect.NoSuchDetector resolved")


def test_the_detectors_load_numpy_only_for_time_wait() -> None:
    heavy = ("numpy", "pandas", "rich", "click", "dpkt", "pyarrow")
    assert loaded_after("import tcplife.detect", heavy) == []
    assert loaded_after("from tcplife.detect import DetectorSet, Resets, ConnView",
                         heavy) == []
    # and the probe can see it: a TIME_WAIT name, or the default detectors, load numpy
    assert loaded_after("from tcplife.detect import Spans", heavy) == ["numpy"]
    assert loaded_after("import tcplife.detect as d; from tcplife.core.options import "
                         "Options; d.DetectorSet(Options())", heavy) == ["numpy"]
