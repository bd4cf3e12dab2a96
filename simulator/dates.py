"""The calendar the simulated firm keeps: months, working days, RFC 3339 stamps."""
import datetime as dt

UTC = dt.UTC


def next_month(first):
    return (first.replace(day=28) + dt.timedelta(days=4)).replace(day=1)


def last_day(first):
    return next_month(first) - dt.timedelta(days=1)


def months(first_day, final_day):
    """The first day of each month from first_day's month to final_day's."""
    first = first_day.replace(day=1)
    while first <= final_day:
        yield first
        first = next_month(first)


def working_day(day):
    """The day itself, or the Monday after it when it falls on a weekend."""
    return day + dt.timedelta(days=7 - day.weekday()) if day.weekday() >= 5 else day


def at(day, hour, minute=0):
    return dt.datetime.combine(day, dt.time(hour, minute), UTC)


def stamp(moment):
    """A datetime as the RFC 3339 string events carry, so heap keys compare like event times."""
    return moment.isoformat().replace("+00:00", "Z")
