"""Business-hours arithmetic for SLAs, as pure functions (no database).

A calendar has a time zone, working weekdays, daily working hours and holidays. Business
time only runs inside working hours on working, non-holiday days, in the calendar's zone.
"""
import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from zoneinfo import ZoneInfo

AT_RISK = 0.75


class SlaState(StrEnum):
    """Where a case stands against its targets, from best to worst. (A waiting case shows
    "Paused" on the pages; its stored state is the one it had.)"""

    ON_TRACK = "on_track"
    AT_RISK = "at_risk"
    BREACHED = "breached"

    @classmethod
    def worst(cls, states: Sequence[str]) -> "SlaState":
        """The worst of `states`."""
        order = list(cls)
        return max((cls(state) for state in states), key=order.index)


@dataclass(frozen=True)
class Calendar:
    """A queue's business hours: time zone, working weekdays and hours, holidays."""

    time_zone: str = "UTC"
    working_days: frozenset = frozenset({0, 1, 2, 3, 4})
    work_start: dt.time = dt.time(9)
    work_end: dt.time = dt.time(17)
    holidays: frozenset = field(default_factory=frozenset)

    def _windows(self, day: dt.date) -> tuple[dt.datetime, dt.datetime] | None:
        """The working window of a local date, as aware datetimes, or None."""
        if day.weekday() not in self.working_days or day in self.holidays:
            return None
        zone = ZoneInfo(self.time_zone)
        return (dt.datetime.combine(day, self.work_start, zone),
                dt.datetime.combine(day, self.work_end, zone))


def business_seconds(start: dt.datetime, end: dt.datetime, calendar: Calendar) -> int:
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


def add_business_seconds(start: dt.datetime, seconds: float, calendar: Calendar,
                         max_days: int = 3660) -> dt.datetime:
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
                    return (lo + dt.timedelta(seconds=remaining)).astimezone(dt.UTC)
                remaining -= available
        day += dt.timedelta(days=1)
    raise ValueError("the calendar has no working time")


def sla_state(elapsed: float, target: float) -> SlaState:
    """on_track, at_risk (75 % used) or breached, for business seconds used of a target."""
    if target <= 0 or elapsed >= target:
        return SlaState.BREACHED
    if elapsed >= AT_RISK * target:
        return SlaState.AT_RISK
    return SlaState.ON_TRACK


def due_at(opened_at: dt.datetime, target_seconds: float, paused_seconds: float,
           calendar: Calendar) -> dt.datetime:
    """When a target falls due: business time after opening, pushed back by time paused."""
    return add_business_seconds(opened_at, target_seconds + paused_seconds, calendar)
