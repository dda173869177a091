"""What every concern of the operations layer shares: the runtime and the journal."""

from __future__ import annotations

from datetime import timedelta

from smtpgate.durations import parse_duration
from smtpgate.errors import Invalid
from smtpgate.ops.journal import Journal
from smtpgate.runtime import Runtime


class Concern:
    def __init__(self, runtime: Runtime, journal: Journal) -> None:
        self.rt = runtime
        self.journal = journal


def duration(value: str | timedelta | None, field: str) -> timedelta | None:
    """A duration typed by an operator ("90d"), refused with the field named."""
    if value is None or isinstance(value, timedelta):
        return value
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise Invalid(str(exc), code="invalid-duration", field=field, value=value) from None
