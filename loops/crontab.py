"""Crontab expressions as APScheduler 3 triggers, with crontab's day-of-week numbers.

APScheduler 3 reads the day-of-week field with 0 = Monday, where crontab has 0 (and 7) =
Sunday, so ``CronTrigger.from_crontab("0 3 * * 1")`` would fire on Tuesdays. The field is
rewritten to day names, which both read alike, before the trigger is built.
"""

from __future__ import annotations

import re

from apscheduler.triggers.cron import CronTrigger  # type: ignore[import-untyped]

DAY_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_ITEM = re.compile(r"^(?P<first>\*|\w+)(?:-(?P<last>\w+))?(?:/(?P<step>\d+))?$")


def crontab_trigger(expr: str, timezone: str) -> CronTrigger:
    """The trigger of a 5-field crontab expression in `timezone`.

    Raises:
        ValueError: not 5 fields, or a field APScheduler rejects (its message says which).
    """
    fields = expr.split()
    if len(fields) != 5:
        raise ValueError(f"Wrong number of fields; got {len(fields)}, expected 5")
    minute, hour, day, month, day_of_week = fields
    return CronTrigger(
        minute=minute,
        hour=hour,
        day=day,
        month=month,
        day_of_week=crontab_days(day_of_week),
        timezone=timezone,
    )


def crontab_days(field: str) -> str:
    """A crontab day-of-week field as APScheduler reads it: day names, or ``*`` for all.

    A field this cannot read is returned as it is, for APScheduler to reject with its reason.
    """
    days: set[int] = set()
    for item in field.split(","):
        found = _days(item.strip().lower())
        if found is None:
            return field
        days |= found
    if days == set(range(7)):
        return "*"
    return ",".join(DAY_NAMES[d] for d in sorted(days))


def _days(item: str) -> set[int] | None:
    match = _ITEM.match(item)
    if match is None:
        return None
    first, last, step = match["first"], match["last"], match["step"]
    if first == "*":
        if last is not None:
            return None
        start, end = 0, 6
    else:
        start_day = _day(first)
        end_day = _day(last) if last is not None else (6 if step else start_day)
        if start_day is None or end_day is None:
            return None
        start, end = start_day, end_day
    stride = int(step) if step else 1
    if stride < 1 or end < start:
        return None
    return {d % 7 for d in range(start, end + 1, stride)}


def _day(token: str) -> int | None:
    """0-7 (7 is Sunday again) or a day name."""
    if token.isdigit():
        value = int(token)
        return value if value <= 7 else None
    return DAY_NAMES.index(token) if token in DAY_NAMES else None
