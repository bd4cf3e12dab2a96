"""Calendar arithmetic of the month-end close, as pure functions (no database): billing
periods, the cut-off working day, and the intervals a trend is cut into."""
import calendar
import datetime as dt
from collections.abc import Set as AbstractSet

WEEK, MONTH = "week", "month"


def month_bounds(day: dt.date) -> tuple[dt.date, dt.date]:
    """(first day, last day) of the month holding `day`."""
    first = day.replace(day=1)
    return first, first.replace(day=calendar.monthrange(first.year, first.month)[1])


def period_of(day: dt.date) -> str:
    """The billing period holding `day`, as YYYY-MM."""
    return day.strftime("%Y-%m")


def previous_month(first: dt.date) -> dt.date:
    """The first day of the month before the one starting on `first`."""
    return month_bounds(first - dt.timedelta(days=1))[0]


def is_working_day(day: dt.date, holidays: AbstractSet[dt.date] = frozenset()) -> bool:
    """Monday to Friday, and not a holiday."""
    return day.weekday() < 5 and day not in holidays


def cutoff_day(last_day: dt.date, working_day: int = 3,
               holidays: AbstractSet[dt.date] = frozenset()) -> dt.date:
    """The Nth working day (Monday to Friday, less holidays) after a period's last day.

    >>> cutoff_day(dt.date(2026, 3, 31), 3)   # Wed 1, Thu 2, Fri 3 April
    datetime.date(2026, 4, 3)
    """
    if working_day < 1:
        raise ValueError("the cut-off is at least the first working day after the period")
    day, counted = last_day, 0
    while counted < working_day:
        day += dt.timedelta(days=1)
        if is_working_day(day, holidays):
            counted += 1
    return day


def intervals(start: dt.date, end: dt.date, interval: str) -> list[tuple[dt.date, dt.date]]:
    """[(first day, last day)] of the ISO weeks (Monday to Sunday) or calendar months that
    cover [start, end], clipped to it: a first partial interval begins at `start`, a last
    partial one ends at `end`."""
    if interval not in (WEEK, MONTH):
        raise ValueError(f"interval must be {WEEK} or {MONTH}")
    result, first = [], start
    while first <= end:
        if interval == WEEK:
            last = first + dt.timedelta(days=6 - first.weekday())
        else:
            last = month_bounds(first)[1]
        result.append((first, min(last, end)))
        first = last + dt.timedelta(days=1)
    return result

