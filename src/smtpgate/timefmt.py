"""How times are written in JSON output and audit records: ISO 8601 in UTC with a `Z`."""

from __future__ import annotations

from datetime import datetime


def iso_utc(value: datetime | None) -> str | None:
    """`2026-11-28T05:32:52.573Z` for an aware UTC datetime; None stays None."""
    return value.isoformat().replace("+00:00", "Z") if value else None
