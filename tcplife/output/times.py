"""Times as people type them, one parser for the CLI (``at``, ``--since``, ``--until``) and
Python (`Result.state_at`).

Owns: `parse_time` (text -> `When`) and `When.resolve` (-> integer ns, given the capture's
first and last frame), with the warnings a person needs: a time outside the capture names
the capture's span; a time of day in a capture that spans days says which day it took.
Forms (CONTRACT "Times"): epoch seconds (``1795310419.5``), ISO 8601 (UTC unless it says
otherwise), ``HH:MM:SS[.ffffff]`` (a time of day, UTC, on the capture's date: what every
table prints), ``start``, ``end`` (the first and last frame), ``+S`` (S seconds after the
first frame) and ``-S`` (S seconds before the last). Knows nothing of click or pandas.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import date, datetime, time, timedelta, timezone
from typing import Any

NS = 1_000_000_000
_CLOCK = re.compile(r"^(\d{1,2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?$")
_OFFSET = re.compile(r"^([+-])(\d+(?:\.\d*)?|\.\d+)$")

FORMS = ("epoch seconds, an ISO 8601 time, HH:MM:SS[.ffffff] (on the capture's date), "
         "start, end, +SECONDS (after the first frame) or -SECONDS (before the last)")


class TimeError(ValueError):
    """Text that is none of the time forms."""


@dataclass(frozen=True)
class When:
    """A parsed time, absolute or relative to the capture: ``kind`` is ``abs`` (``ns``),
    ``start``, ``end``, ``after`` / ``before`` (``ns`` after the first / before the last
    frame) or ``clock`` (``ns`` since midnight UTC)."""

    kind: str
    ns: int = 0
    text: str = ""

    def resolve(self, first_ns: int | None, last_ns: int | None) -> tuple[int, list[str]]:
        """Integer ns since the epoch, and warnings (outside the capture, which day)."""
        notes: list[str] = []
        if self.kind == "abs":
            at = self.ns
        elif first_ns is None or last_ns is None:
            raise TimeError(f"{self.text!r} needs a capture to count from, and this one "
                            "has no frame")
        elif self.kind == "start":
            at = first_ns
        elif self.kind == "end":
            at = last_ns
        elif self.kind == "after":
            at = first_ns + self.ns
        elif self.kind == "before":
            at = last_ns - self.ns
        else:  # clock: on the capture's first day on which it falls inside the capture
            days = _days(first_ns, last_ns)
            candidates = [_midnight_ns(d) + self.ns for d in days]
            inside = [c for c in candidates if first_ns <= c <= last_ns]
            at = inside[0] if inside else candidates[0]
            if len(days) > 1:
                notes.append(f"{self.text} taken on {_day(at)}: the capture spans "
                             f"{days[0]} to {days[-1]} (give an ISO 8601 time to choose)")
        if first_ns is not None and last_ns is not None and not first_ns <= at <= last_ns:
            notes.append(f"{self.text} ({_stamp(at)}) is outside the capture, which spans "
                         f"{_stamp(first_ns)} to {_stamp(last_ns)}")
        return at, notes


def parse_time(value: Any) -> When:
    """Any of the forms (module docstring), a number of epoch seconds, a datetime or a
    pandas Timestamp -> `When`. Raises `TimeError`."""
    if isinstance(value, When):
        return value
    if isinstance(value, bool):
        raise TimeError(f"{value!r} is not a time: give {FORMS}")
    if isinstance(value, int):
        return When("abs", value * NS, str(value))
    if isinstance(value, float):
        if value != value:  # NaN
            raise TimeError(f"{value!r} is not a time: give {FORMS}")
        return When("abs", int(round(value * 1e6)) * 1000, str(value))  # no float noise
    if hasattr(value, "value") and hasattr(value, "tzinfo"):  # a pandas Timestamp: its
        return When("abs", int(value.value), str(value))      # UTC ns (naive: as UTC)
    if isinstance(value, datetime):
        stamp = value if value.tzinfo else value.replace(tzinfo=timezone.utc)
        return When("abs", _datetime_ns(stamp), str(value))
    if hasattr(value, "dtype") and hasattr(value, "item"):  # a numpy number
        return parse_time(value.item())
    text = str(value).strip()
    low = text.lower()
    if low in ("start", "end"):
        return When(low, 0, text)
    match = _OFFSET.match(text)
    if match:
        ns = int(round(float(match.group(2)) * 1e6)) * 1000
        return When("after" if match.group(1) == "+" else "before", ns, text)
    match = _CLOCK.match(text)
    if match:
        hours, minutes, seconds = (int(g) for g in match.group(1, 2, 3))
        if hours > 23 or minutes > 59 or seconds > 60:
            raise TimeError(f"{text!r} is not a time of day")
        frac = (match.group(4) or "").ljust(9, "0")
        return When("clock", ((hours * 60 + minutes) * 60 + seconds) * NS + int(frac), text)
    try:
        number = float(text)
    except ValueError:
        pass
    else:
        return replace(parse_time(number), text=text)
    try:
        stamp = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise TimeError(f"{text!r} is not a time: give {FORMS}") from None
    return replace(parse_time(stamp), text=text)


def _datetime_ns(stamp: datetime) -> int:
    delta = stamp - datetime(1970, 1, 1, tzinfo=timezone.utc)
    return (delta.days * 86400 + delta.seconds) * NS + delta.microseconds * 1000


def _days(first_ns: int, last_ns: int) -> list[date]:
    first, last = _date(first_ns), _date(last_ns)
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


def _date(ns: int) -> date:
    return datetime.fromtimestamp(ns // NS, tz=timezone.utc).date()


def _midnight_ns(day: date) -> int:
    return _datetime_ns(datetime.combine(day, time(0), tzinfo=timezone.utc))


def _day(ns: int) -> str:
    return _date(ns).isoformat()


def _stamp(ns: int) -> str:
    dt = datetime.fromtimestamp(ns // NS, tz=timezone.utc)
    return f"{dt:%Y-%m-%d %H:%M:%S}.{(ns % NS) // 1000:06d} UTC"
