"""Date ranges given on the command line (`--since` / `--until`), as stored-timestamp bounds.

Our tables store UTC ISO 8601 text with microseconds (`graph.instrument.now_iso`), which sorts
as time; bounds are formatted the same way so a plain text comparison selects the range.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

_DATE_ONLY = re.compile(r"\d{4}-\d{2}-\d{2}")


class RangeError(ValueError):
    """A date or range the commands cannot use."""


@dataclass(frozen=True)
class TimeRange:
    """`start <= t < end` in stored-timestamp text; either end may be open (None)."""

    start: str | None
    end: str | None

    def contains(self, stamp: str) -> bool:
        """Whether a stored timestamp falls inside the range."""
        after_start = self.start is None or stamp >= self.start
        return after_start and (self.end is None or stamp < self.end)


def _stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def _parse(value: str, flag: str) -> tuple[datetime, bool]:
    text = (value or "").strip()
    if not text:
        raise RangeError(f"{flag} needs a date (YYYY-MM-DD) or an ISO 8601 time")
    if len(text) > 64:
        raise RangeError(f"{flag} {text[:20]!r}... is not a date")
    try:
        if _DATE_ONLY.fullmatch(text):
            return datetime.combine(date.fromisoformat(text), datetime.min.time(), UTC), True
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise RangeError(f"{flag} {text!r} is not a date (YYYY-MM-DD) or an ISO 8601 time") \
            from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)), False


def parse_range(since: str | None, until: str | None) -> TimeRange:
    """Build a range from CLI values; dates are whole UTC days, so `--until` includes its day."""
    start = end = None
    if since is not None:
        start = _stamp(_parse(since, "--since")[0])
    if until is not None:
        moment, whole_day = _parse(until, "--until")
        end = _stamp(moment + timedelta(days=1) if whole_day else moment)
    if start is not None and end is not None and end <= start:
        raise RangeError(f"--until {until} is not after --since {since}")
    return TimeRange(start, end)
