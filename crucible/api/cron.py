"""Five-field cron schedules (minute hour day-of-month month day-of-week), as a CronJob's `schedule`
reads them, and when one next fires. Pure and dependency-free: the spec validator, the CRD generator
and the operator (whose image stays small) all use it.

Each field takes `*`, a number, a range `a-b`, a step `*/n` or `a-b/n`, and comma lists of those;
months and weekdays also take their three-letter English names (JAN, MON), and day-of-week 7 is Sunday
like 0. When both day-of-month and day-of-week are restricted, a day matching either fires (as in
Vixie cron and Kubernetes). `@hourly`, `@daily` (`@midnight`), `@weekly`, `@monthly`, `@yearly`
(`@annually`) stand for their usual expansions. Times are UTC.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

MACROS = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
}
MONTHS = ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"]
WEEKDAYS = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"]
# (name, lowest, highest, names for lowest.. in order)
FIELDS = (
    ("minute", 0, 59, None),
    ("hour", 0, 23, None),
    ("day of month", 1, 31, None),
    ("month", 1, 12, MONTHS),
    ("day of week", 0, 7, WEEKDAYS),
)
# Far enough for any valid schedule (29 February on a Monday recurs within 28 years).
HORIZON_DAYS = 366 * 29


class CronError(ValueError):
    """A schedule that is not five valid cron fields."""


@dataclass(frozen=True)
class Schedule:
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday
    any_day: bool  # day of month is `*`
    any_weekday: bool  # day of week is `*`

    def _day_matches(self, day: date) -> bool:
        if day.month not in self.months:
            return False
        by_date = day.day in self.days
        by_weekday = (day.isoweekday() % 7) in self.weekdays
        if self.any_day or self.any_weekday:
            return by_date and by_weekday
        return by_date or by_weekday

    def next_after(self, moment: datetime) -> datetime:
        """The first time strictly after `moment` (aware, or naive meaning UTC) the schedule fires."""
        moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
        start = moment.replace(second=0, microsecond=0) + timedelta(minutes=1)
        hours, minutes = sorted(self.hours), sorted(self.minutes)
        for offset in range(HORIZON_DAYS):
            day = start.date() + timedelta(days=offset)
            if not self._day_matches(day):
                continue
            earliest = start.time() if offset == 0 else time(0, 0)
            for hour in hours:
                if hour < earliest.hour:
                    continue
                for minute in minutes:
                    if hour == earliest.hour and minute < earliest.minute:
                        continue
                    return datetime.combine(day, time(hour, minute), tzinfo=UTC)
        raise CronError("the schedule never fires")


def _value(text: str, low: int, high: int, names: list[str] | None, field: str) -> int:
    if names and text.upper() in names:
        return names.index(text.upper()) + low
    if not text.isdigit():
        allowed = f" or one of {', '.join(names)}" if names else ""
        raise CronError(f"{field}: {text!r} is not a number{allowed}")
    number = int(text)
    if not low <= number <= high:
        raise CronError(f"{field}: {number} is outside {low}-{high}")
    return number


def _field(text: str, low: int, high: int, names: list[str] | None, field: str) -> frozenset[int]:
    values: set[int] = set()
    for part in text.split(","):
        span, _, step_text = part.partition("/")
        step = 1
        if step_text:
            if not step_text.isdigit() or int(step_text) < 1:
                raise CronError(f"{field}: step {step_text!r} must be a positive number")
            step = int(step_text)
        if span == "*":
            first, last = low, high
        elif "-" in span:
            first_text, _, last_text = span.partition("-")
            first = _value(first_text, low, high, names, field)
            last = _value(last_text, low, high, names, field)
            if first > last:
                raise CronError(f"{field}: range {span!r} runs backwards")
        else:
            first = _value(span, low, high, names, field)
            last = high if step_text else first
        values.update(range(first, last + 1, step))
    return frozenset(values)


def parse(expression: str) -> Schedule:
    """The schedule of a five-field cron expression (or a macro); CronError says which field is wrong."""
    text = MACROS.get(expression.strip().lower(), expression.strip())
    parts = text.split()
    if len(parts) != 5:
        raise CronError(
            f"{expression!r} has {len(parts)} fields; a schedule has 5 (minute hour day-of-month month "
            "day-of-week), such as '0 3 * * *', or is one of " + ", ".join(MACROS)
        )
    minutes, hours, days, months, weekdays = (
        _field(part, low, high, names, name)
        for part, (name, low, high, names) in zip(parts, FIELDS, strict=True)
    )
    weekdays = frozenset(day % 7 for day in weekdays)
    return Schedule(minutes, hours, days, months, weekdays, parts[2] == "*", parts[4] == "*")


def first_firing(expression: str, since: datetime, until: datetime) -> datetime | None:
    """The first time in (since, until] the schedule fires, or None when it does not fire in it."""
    moment = parse(expression).next_after(since)
    return moment if moment <= until else None
