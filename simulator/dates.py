"""The calendar the simulated firm keeps: months, working days, RFC 3339 stamps."""
import datetime as dt
from collections.abc import Iterator
from typing import Any

# An event as the simulator makes it: a CloudEvents 1.0 dict (ingestion.events.make_event).
Event = dict[str, Any]

UTC = dt.UTC


def next_month(first: dt.date) -> dt.date:
    """The first day of the month after `first`'s."""
    return (first.replace(day=28) + dt.timedelta(days=4)).replace(day=1)


def last_day(first: dt.date) -> dt.date:
    """The last day of `first`'s month."""
    return next_month(first) - dt.timedelta(days=1)


def months(first_day: dt.date, final_day: dt.date) -> Iterator[dt.date]:
    """The first day of each month from first_day's month to final_day's."""
    first = first_day.replace(day=1)
    while first <= final_day:
        yield first
        first = next_month(first)


def working_day(day: dt.date) -> dt.date:
    """The day itself, or the Monday after it when it falls on a weekend."""
    return day + dt.timedelta(days=7 - day.weekday()) if day.weekday() >= 5 else day


def at(day: dt.date, hour: int, minute: int = 0) -> dt.datetime:
    """The UTC instant at hour:minute of a day."""
    return dt.datetime.combine(day, dt.time(hour, minute), UTC)


def stamp(moment: dt.datetime) -> str:
    """A datetime as the RFC 3339 string events carry, so heap keys compare like event times."""
    return moment.isoformat().replace("+00:00", "Z")
