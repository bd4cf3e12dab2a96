"""Dates as the KPIs read them: inclusive days as instants in the firm's zone, a
month's last day, the months ending in a window, and the per-currency grouped
query and the groupings (client, project, practice, legal entity) they share."""
import datetime as dt
import functools
from typing import Any

from django.db.models import Expression, F, QuerySet

from opsview.timeline import day_start, end_of


def _by_currency(queryset: QuerySet, currency: str | Expression,
                 **aggregates: Expression) -> dict[str, dict[str, Any]]:
    """{currency: {name: value}} from one grouped query."""
    return {row.pop("ccy"): row for row in
            queryset.values(ccy=currency if not isinstance(currency, str) else F(currency))
            .annotate(**aggregates).order_by()}


@functools.lru_cache(maxsize=1024)
def _period_end(period: str) -> dt.date:
    year, month = int(period[:4]), int(period[5:7])
    return dt.date(year + month // 12, month % 12 + 1, 1) - dt.timedelta(days=1)


GROUPS = {
    "client": ("project__client__client_id", "project__client__name"),
    "project": ("project__project_id", "project__name"),
    "practice": ("project__practice", "project__practice"),
    "legal_entity": ("project__legal_entity", "project__legal_entity"),
}


def periods_ending_in(start: dt.date, end: dt.date) -> list[str]:
    """The months (YYYY-MM) whose last day lies in [start, end]."""
    periods, month = [], start.replace(day=1)
    while month <= end:
        if start <= _period_end(month.strftime("%Y-%m")) <= end:
            periods.append(month.strftime("%Y-%m"))
        month = (month + dt.timedelta(days=32)).replace(day=1)
    return periods


def _day_bounds(start: dt.date, end: dt.date) -> tuple[dt.datetime, dt.datetime]:
    """[start 00:00, end + 1 day 00:00) in the firm's time zone: inclusive dates as a
    half-open interval of instants."""
    return day_start(start), end_of(end)
