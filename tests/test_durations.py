from datetime import timedelta

import pytest
from hypothesis import given, strategies as st

from smtpgate.durations import format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "expected"),
    [("90d", timedelta(days=90)), ("24h", timedelta(hours=24)), ("1h30m", timedelta(minutes=90)),
     ("250ms", timedelta(milliseconds=250)), ("45", timedelta(seconds=45)), ("2w", timedelta(weeks=2))],
)
def test_parse(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "soon", "5x", "h", "1h x", "-5m"])
def test_refused_with_examples(text: str) -> None:
    with pytest.raises(ValueError, match="90d"):
        parse_duration(text)


@given(st.integers(min_value=0, max_value=10**8))
def test_format_round_trips(seconds: int) -> None:
    delta = timedelta(seconds=seconds)
    assert parse_duration(format_duration(delta)) == delta
