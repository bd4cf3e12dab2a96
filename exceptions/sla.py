"""Business-hours arithmetic for SLAs, as pure functions (no database).

A calendar has a time zone, working weekdays, daily working hours and holidays. Business
time only runs inside working hours on working, non-holiday days, in the calendar's zone.
"""
import datetime as dt
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

AT_RISK = 0.75


@dataclass(frozen=True)
class Calendar:
    time_zone: str = "UTC"
    working_days: frozenset = frozenset({0, 1, 2, 3, 4})
    work_start: dt.time = dt.time(9)
    work_end: dt.time = dt.time(17)
    holidays: frozenset = field(default_factory=frozenset)

    def _windows(self, day):
        """The working window of a local date, as aware datetimes, or None."""
        if day.weekday() not in self.working_days or day in self.holidays:
            return None
        zone = ZoneInfo(self.time_zone)
        return (dt.datetime.combine(day, self.work_start, zone),
                dt.datetime.combine(day, self.work_end, zone))


def business_seconds(start, end, calendar):
    """Business seconds in [start, end)."""
    if end <= start:
        return 0
    zone = ZoneInfo(calendar.time_zone)
    day, last = start.astimezone(zone).date(), end.astimezone(zone).date()
    total = 0.0
    while day <= last:
        window = calendar._windows(day)
        if window:
            lo, hi = max(window[0], start), min(window[1], end)
            if hi > lo:
                total += (hi - lo).total_seconds()
        day += dt.timedelta(days=1)
    return int(total)


def add_business_seconds(start, seconds, calendar, max_days=3660):
    """The moment `seconds` of business time after `start`."""
    zone = ZoneInfo(calendar.time_zone)
    remaining = float(seconds)
    day = start.astimezone(zone).date()
    for _ in range(max_days):
        window = calendar._windows(day)
        if window:
            lo = max(window[0], start)
            if window[1] > lo:
                available = (window[1] - lo).total_seconds()
                if remaining <= available:
                    return (lo + dt.timedelta(seconds=remaining)).astimezone(dt.timezone.utc)
                remaining -= available
        day += dt.timedelta(days=1)
    raise ValueError("the calendar has no working time")


def sla_state(elapsed, target):
    """on_track, at_risk (75 % used) or breached, for business seconds used of a target."""
    if target <= 0 or elapsed >= target:
        return "breached"
    if elapsed >= AT_RISK * target:
        return "at_risk"
    return "on_track"


def due_at(opened_at, target_seconds, paused_seconds, calendar):
    """When a target falls due: business time after opening, pushed back by time paused."""
    return add_business_seconds(opened_at, target_seconds + paused_seconds, calendar)
