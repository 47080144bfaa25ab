"""Cron schedules of spec.retraining: what a CronJob's schedule means, and when it next fires."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from crucible.api.cron import CronError, first_firing, parse


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.mark.parametrize(
    ("expression", "after", "fires"),
    [
        ("* * * * *", "2026-12-01T10:00:30", "2026-12-01T10:01:00"),
        ("0 3 * * *", "2026-12-01T03:00:00", "2026-12-02T03:00:00"),  # strictly after
        ("0 3 * * *", "2026-12-01T02:59:59", "2026-12-01T03:00:00"),
        ("*/15 9-17 * * MON-FRI", "2026-12-04T17:50:00", "2026-12-07T09:00:00"),  # Friday -> Monday
        ("30 2 1 JAN,jul *", "2026-02-01T00:00:00", "2026-07-01T02:30:00"),
        ("0 0 29 2 *", "2026-03-01T00:00:00", "2028-02-29T00:00:00"),  # the next leap day
        ("0 0 * * 7", "2026-12-01T00:00:00", "2026-12-06T00:00:00"),  # 7 is Sunday, like 0
        ("0 0 13 * FRI", "2026-12-01T00:00:00", "2026-12-04T00:00:00"),  # either the 13th or a Friday
        ("5-20/5 * * * *", "2026-12-01T10:20:00", "2026-12-01T11:05:00"),
        ("@daily", "2026-12-31T23:59:00", "2027-01-01T00:00:00"),
        ("@weekly", "2026-12-01T00:00:00", "2026-12-06T00:00:00"),
    ],
)
def test_the_next_firing(expression: str, after: str, fires: str) -> None:
    assert parse(expression).next_after(at(after)) == at(fires)


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("0 3 * *", "has 4 fields; a schedule has 5"),
        ("61 * * * *", "minute: 61 is outside 0-59"),
        ("0 24 * * *", "hour: 24 is outside 0-23"),
        ("0 0 0 * *", "day of month: 0 is outside 1-31"),
        ("0 0 * FOO *", "month: 'FOO' is not a number or one of JAN"),
        ("0 0 * * 1-8", "day of week: 8 is outside 0-7"),
        ("*/0 * * * *", "minute: step '0' must be a positive number"),
        ("0 0 * * 5-1", "day of week: range '5-1' runs backwards"),
        ("@often", "has 1 fields"),
    ],
)
def test_a_bad_schedule_names_its_field(expression: str, message: str) -> None:
    with pytest.raises(CronError, match=message.replace("(", r"\(").replace("*", r"\*")):
        parse(expression)


def test_a_schedule_that_never_fires_is_refused() -> None:
    with pytest.raises(CronError, match="never fires"):
        parse("0 0 31 2 *").next_after(at("2026-01-01T00:00:00"))


def test_first_firing_in_a_window() -> None:
    assert first_firing("0 * * * *", at("2026-12-01T10:00:00"), at("2026-12-01T12:30:00")) == at(
        "2026-12-01T11:00:00"
    )
    assert first_firing("0 * * * *", at("2026-12-01T10:00:00"), at("2026-12-01T10:59:59")) is None
