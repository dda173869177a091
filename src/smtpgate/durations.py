"""Human durations ("90d", "24h", "15m") used by the config and the CLI.

Written by hand because it is ten lines and every library for it brings a calendar we
do not want: operators type days and hours, never months.
"""

from __future__ import annotations

import re
from datetime import timedelta

_UNITS_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}
_PART = re.compile(r"(\d+)\s*(ms|[smhdw])")


def parse_duration(text: str) -> timedelta:
    """Parse "90d", "1h30m", "45s", "250ms" or a bare number of seconds; raise ValueError otherwise."""
    cleaned = str(text).strip().lower()
    if cleaned.isdigit():
        return timedelta(seconds=int(cleaned))
    pos = 0
    millis = 0
    for match in _PART.finditer(cleaned):
        if cleaned[pos:match.start()].strip():
            break
        millis += int(match.group(1)) * _UNITS_MS[match.group(2)]
        pos = match.end()
    if pos == 0 or cleaned[pos:].strip():
        raise ValueError(
            f"{text!r} is not a duration: use a number and a unit, such as 90d, 24h, 15m, 30s or 250ms"
        )
    return timedelta(milliseconds=millis)


def format_duration(delta: timedelta) -> str:
    """The shortest exact form: 86400 s -> "1d", 5400 s -> "1h30m"."""
    seconds = int(delta.total_seconds())
    if seconds == 0:
        return "0s"
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)
