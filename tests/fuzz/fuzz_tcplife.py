"""Coverage-guided fuzzing of tcplife with atheris (libFuzzer for Python).

Two targets:

* ``capture``: the input is a capture file. Both readers (`read_segments` and the bulk
  `read_batches`) must agree on it exactly, segments and `ReadStats`, or both raise the
  same `CaptureError`; the segments then go through the tracker and the detectors, whose
  event stream must obey the state table (`invariants.check_events`).
* ``tracker``: the input is turned into a hostile segment sequence
  (`invariants.segments_from`) fed to the tracker: the table's rules hold, a replay gives
  the same events, the fast path (`tcplife.engines.drive`) gives the same events.

Anything else raised is a crash: libFuzzer stops and writes the input to
``crash-<sha1>`` (``-artifact_prefix=DIR/``); make it a regression test. Run::

    python tests/fuzz/fuzz_tcplife.py capture -max_total_time=600 CORPUS_DIR SEED_DIR...
    python tests/fuzz/fuzz_tcplife.py tracker -max_total_time=600 CORPUS_DIR

with sample captures as seeds (``python tests/fuzz/mutate.py SEED_DIR`` writes a few
hundred more). Reproduce a crash: ``python tests/fuzz/fuzz_tcplife.py capture crash-...``.
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

import atheris

sys.path.insert(0, str(Path(__file__).resolve().parent))

with atheris.instrument_imports(include=["tcplife"]):
    from tcplife.capture import CaptureError, ReadStats, read_segments
    from tcplife.capture.columns import AddressBook, Batch
    from tcplife.capture.fastread import read_batches
    from tcplife.core.options import Options
    from tcplife.engines.drive import drive
    from tcplife.engines.wiring import new_tracker

from invariants import check_events, segments_from  # noqa: E402


def _events(segments: list, options: Options) -> list:  # type: ignore[type-arg]
    tracker = new_tracker(options)
    out: list = []  # type: ignore[type-arg]
    for seg in segments:
        out.extend(tracker.feed(seg))
    out.extend(tracker.finish())
    return out


def capture(data: bytes) -> None:
    plain_stats, fast_stats = ReadStats(), ReadStats()
    try:
        plain = list(read_segments(io.BytesIO(data), plain_stats))
    except CaptureError as exc:
        try:
            read_batches(io.BytesIO(data), fast_stats)
        except CaptureError as fast_exc:
            assert str(fast_exc) == str(exc)
            return
        raise AssertionError("read_batches read what read_segments refused") from None
    fast = [s for b in read_batches(io.BytesIO(data), fast_stats, batch_bytes=4096)
            for s in b.segments()]
    assert fast == plain, "read_batches and read_segments disagree on the segments"
    assert fast_stats == plain_stats, "read_batches and read_segments disagree on stats"
    options = Options()
    events = _events(plain, options)
    check_events(events)  # (the detectors judged them: `new_tracker`)


def tracker(data: bytes) -> None:
    segments = segments_from(data)
    options = Options()
    events = _events(segments, options)
    check_events(events)
    assert _events(segments, options) == events, "replay differs"
    tracker_, fast, book = new_tracker(options), [], AddressBook()
    batches = [Batch.from_segments(segments[i:i + 7], book) for i in range(0, len(segments), 7)]
    drive(batches, tracker_, fast.extend)
    fast.extend(tracker_.finish())
    assert fast == events, "the fast path differs"


TARGETS = {"capture": capture, "tracker": tracker}


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in TARGETS:
        sys.exit(f"usage: {sys.argv[0]} {{{'|'.join(TARGETS)}}} [libFuzzer options] [DIRS]")
    target = TARGETS[sys.argv.pop(1)]
    atheris.Setup(sys.argv, target)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
