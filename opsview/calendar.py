"""Each legal entity's close calendar: the cut-off of a billing period, read from the
calendars and holidays set in the admin. Used by the period close and by the rules that
date a case by the cut-off."""
import datetime as dt

from opsview import models as state
from opsview.periods import cutoff_day
from opsview.timeline import end_of


def close_calendar(legal_entity: str = "") -> tuple[int, frozenset[dt.date]]:
    """(N, holidays) of a legal entity: its own N (else the firm's, else 3), and the firm's
    holidays with its own."""
    calendars = {c.legal_entity: c for c in state.CloseCalendar.objects.filter(
        legal_entity__in={"", legal_entity or ""}).prefetch_related("holidays")}
    own, firm = calendars.get(legal_entity or ""), calendars.get("")
    chosen = own or firm
    working_day = chosen.cutoff_working_day if chosen else 3
    holidays = frozenset(h.date for c in calendars.values() for h in c.holidays.all())
    return working_day, holidays


def cutoff(last_day: dt.date, legal_entity: str = "") -> tuple[dt.date, dt.datetime]:
    """(cut-off date, cutoff_at): the Nth working day after the period and the first
    instant after it (00:00 of the next day, firm time zone)."""
    working_day, holidays = close_calendar(legal_entity)
    day = cutoff_day(last_day, working_day, holidays)
    return day, end_of(day)
