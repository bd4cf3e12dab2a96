"""Posting latency: how long approved time and expenses took to reach ERP, the unposted
backlog, and the weekly series the page draws."""
import datetime as dt

from django.conf import settings
from django.db import connection, connections
from django.db.models import Count, Expression, F, Min, QuerySet

from opsview.selectors import (
    BILLABLE_EXPENSE,
    EXPENSE_VALUE,
    TIME_VALUE,
    ZERO,
    counted_expenses,
    counted_time,
    total,
    unposted_expenses,
    unposted_time,
)
from reporting.kpis.formatting import Filters, Json, _clean, _iso, money, percentile_cont, ratio
from reporting.kpis.periods import _day_bounds


def posting_latency(*, start: dt.date, end: dt.date, filters: Filters | None = None,
                    sla_seconds: int | None = None) -> Json:
    """How long approved time (and, apart, billable expenses) took to reach ERP, and what
    is approved and still not posted."""
    filters = filters or {}
    sla_seconds = sla_seconds or settings.POSTING_SLA_HOURS * 3600
    window = _day_bounds(start, end)
    latencies, within = _latency_percentiles(_posted_between(
        counted_time(filters, ["posted", "invoiced"]), window), sla_seconds)
    backlog = _backlog(unposted_time(filters), "project__currency", TIME_VALUE, hours=True)
    expense_latencies, expenses_within = _latency_percentiles(_posted_between(
        counted_expenses(filters, ["posted", "invoiced"]).filter(BILLABLE_EXPENSE), window),
        sla_seconds)
    expense_backlog = _backlog(unposted_expenses(filters), "currency", EXPENSE_VALUE)
    return {
        "start": start.isoformat(), "end": end.isoformat(), "filters": _clean(filters),
        "sla_seconds": sla_seconds,
        **latencies,
        "within_sla_ratio": ratio(within, latencies["count"]),
        "backlog": backlog,
        "expenses": {
            **expense_latencies,
            "within_sla_ratio": ratio(expenses_within, expense_latencies["count"]),
            "backlog": expense_backlog,
        },
    }


def _backlog(items: QuerySet, currency: str, value: Expression,
             hours: bool = False) -> Json:
    """Count, (hours,) oldest approval and value per currency of approved, unposted items,
    in one grouped query."""
    sums = {"n": Count("pk"), "oldest": Min("approved_at"), "value": total(value)}
    if hours:
        sums["h"] = total(F("hours"))
    rows = list(items.values(ccy=F(currency)).annotate(**sums).order_by())
    backlog = {"count": sum(r["n"] for r in rows)}
    if hours:
        backlog["hours"] = money(sum((r["h"] for r in rows), ZERO))
    return {**backlog,
            "oldest_approved_at": _iso(min((r["oldest"] for r in rows), default=None)),
            "currencies": {r["ccy"]: money(r["value"]) for r in sorted(rows, key=lambda r: r["ccy"])
                           if r["ccy"]}}


def _posted_between(items: QuerySet, window: tuple[dt.datetime, dt.datetime]) -> QuerySet:
    """Items posted within the window (instants), with an approval time."""
    return items.filter(posted_at__gte=window[0], posted_at__lt=window[1],
                        approved_at__isnull=False)


def _latency_percentiles(posted: QuerySet, sla_seconds: int) -> tuple[Json, int]:
    """Count, p50/p90/p95 of posted_at − approved_at, and how many were within the SLA."""
    fractions = {"p50_seconds": 0.5, "p90_seconds": 0.9, "p95_seconds": 0.95}
    if connection.vendor == "postgresql":
        sql, params = posted.values("posted_at", "approved_at").query.sql_with_params()
        latency = "extract(epoch FROM q.posted_at - q.approved_at)"
        with connections[posted.db].cursor() as cursor:  # the replica when routed there
            # percentile_cont is the contract's definition; the ORM cannot say it.
            cursor.execute(
                f"SELECT count(*), count(*) FILTER (WHERE {latency} <= %s), "
                + ", ".join(f"percentile_cont({f}) WITHIN GROUP (ORDER BY {latency})"
                            for f in fractions.values())
                + f" FROM ({sql}) q", [sla_seconds, *params])
            count, within, *values = cursor.fetchone()
    else:
        seconds = [(p - a).total_seconds()
                   for p, a in posted.values_list("posted_at", "approved_at")]
        count, within = len(seconds), sum(1 for s in seconds if s <= sla_seconds)
        values = [percentile_cont(seconds, f) for f in fractions.values()]
    return {"count": count, **{name: None if v is None else round(float(v), 3)
                               for name, v in zip(fractions, values, strict=True)}}, within


def posting_latency_trend(*, end: dt.date, weeks: int = 12,
                          filters: Filters | None = None) -> list[Json]:
    """Weekly posting-latency percentiles for the `weeks` weeks ending on `end`."""
    sla_seconds = settings.POSTING_SLA_HOURS * 3600
    result = []
    for back in range(weeks - 1, -1, -1):
        week_end = end - dt.timedelta(days=7 * back)
        week_start = week_end - dt.timedelta(days=6)
        # The percentiles alone: the unposted backlog is not a weekly figure.
        figures, within = _latency_percentiles(_posted_between(
            counted_time(filters or {}, ["posted", "invoiced"]),
            _day_bounds(week_start, week_end)), sla_seconds)
        result.append({"week": week_start.isoformat(), **figures,
                       "within_sla_ratio": ratio(within, figures["count"])})
    return result
