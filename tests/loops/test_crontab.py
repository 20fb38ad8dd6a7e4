"""Crontab day-of-week numbers (0 and 7 = Sunday) read as crontab does, not as APScheduler 3."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from loops.crontab import crontab_days, crontab_trigger


@pytest.mark.parametrize(
    ("field", "expected"),
    [
        ("1", "mon"),
        ("0", "sun"),
        ("7", "sun"),
        ("1-5", "mon,tue,wed,thu,fri"),
        ("5-7", "sun,fri,sat"),
        ("*/2", "sun,tue,thu,sat"),
        ("1/3", "mon,thu"),
        ("mon,wed", "mon,wed"),
        ("sat-sun", "sat-sun"),  # left to APScheduler, which reads it as Saturday and Sunday
        ("5-0", "5-0"),  # left to APScheduler, which rejects it
        ("0-7", "*"),
        ("*", "*"),
        ("8", "8"),
    ],
)
def test_day_of_week_field(field: str, expected: str) -> None:
    assert crontab_days(field) == expected


def test_monday_at_three_fires_on_mondays_in_its_zone() -> None:
    trigger = crontab_trigger("0 3 * * 1", timezone="Europe/Berlin")
    fire = trigger.get_next_fire_time(None, datetime(2025, 3, 1, tzinfo=UTC))  # a Saturday
    assert fire.isoformat() == "2025-03-03T03:00:00+01:00"
    assert fire.strftime("%A") == "Monday"


@pytest.mark.parametrize("expr", ["0 3 * *", "0 3 * * 8", "0 3 * * 5-0", "61 * * * *"])
def test_bad_expressions_are_refused(expr: str) -> None:
    with pytest.raises(ValueError):
        crontab_trigger(expr, timezone="UTC")
