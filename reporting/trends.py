"""Trends (SPEC section 4): one point per ISO week or calendar month, each computed by the
same KPI function as the figure asked directly — as-of figures at the interval's end,
window figures over the interval. The last interval ends at `end`, partial or not.
"""
import datetime as dt
from typing import Any

from django.db.models import Exists, OuterRef, Q, QuerySet, Subquery

from opsview import models as state
from opsview.periods import MONTH, WEEK, intervals, month_bounds, period_of
from opsview.timeline import end_of
from reporting import kpis
from reporting.kpis.formatting import Filters

# metric: (kind, key) — kind "as_of" reads the figure at the interval's end, "window" over
# the interval, "period" the month's own figure as things stand now.
METRICS = {
    "wip": ("as_of", "total"),
    "open_ar": ("as_of", "open_ar"),
    "dso": ("as_of", "dso_days"),
    "readiness_ratio": ("period", "readiness_ratio"),
    "posting_p95": ("window", "p95_seconds"),
    "utilization": ("window", "utilization_ratio"),
    "open_cases": ("as_of", None),
}
PER_CURRENCY = {"wip", "open_ar", "dso", "readiness_ratio"}
MONTH_ONLY = {"readiness_ratio"}
MAX_POINTS = 120


def point(metric: str, first: dt.date, last: dt.date, filters: Filters | None = None,
          ) -> dict[str, Any]:
    """The metric for one interval [first, last]."""
    filters = filters or {}
    if metric == "wip":
        figures = kpis.wip(as_of=last, filters=filters)["currencies"]
    elif metric in ("open_ar", "dso"):
        figures = kpis.receivables(as_of=last, filters=filters)["currencies"]
    elif metric == "readiness_ratio":
        month_first, month_last = month_bounds(first)
        figures = kpis.invoice_readiness(period=period_of(first), first_day=month_first,
                                         last_day=month_last, filters=filters)["currencies"]
    elif metric == "posting_p95":
        return {"end": last.isoformat(), "value": kpis.posting_latency(
            start=first, end=last, filters=filters)["p95_seconds"]}
    elif metric == "utilization":
        return {"end": last.isoformat(), "value": kpis.utilization(
            start=first, end=last, filters=filters)["utilization_ratio"]}
    else:
        return {"end": last.isoformat(), "value": open_cases_at(last, filters)}
    key = METRICS[metric][1]
    return {"end": last.isoformat(),
            "currencies": {currency: f[key] for currency, f in figures.items()}}


def trends(*, metric: str, interval: str, start: dt.date, end: dt.date,
           filters: Filters | None = None) -> dict[str, Any]:
    """{metric, interval, start, end, points}: a point per interval of [start, end]."""
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {', '.join(METRICS)}")
    if metric in MONTH_ONLY and interval != MONTH:
        raise ValueError(f"{metric} is a monthly figure: interval must be month")
    spans = intervals(start, end, interval)
    if metric == "wip":  # every point at once: the fixed-fee books are read once
        totals = kpis.wip_totals([last for _, last in spans], filters)
        points = [{"end": last.isoformat(), "currencies": totals[last]} for _, last in spans]
    else:
        points = [point(metric, first, last, filters) for first, last in spans]
    return {"metric": metric, "interval": interval, "start": start.isoformat(),
            "end": end.isoformat(), "filters": kpis._clean(filters), "points": points}


def default_start(end: dt.date, interval: str, points: int = 12) -> dt.date:
    """The first day of the week or month `points` − 1 intervals before end's."""
    if interval == WEEK:
        return end - dt.timedelta(days=end.weekday() + 7 * (points - 1))
    first = end.replace(day=1)
    for _ in range(points - 1):
        first = month_bounds(first - dt.timedelta(days=1))[0]
    return first


# --- Cases at a past moment, from their audit trail ----------------------------------------
def cases_open_at(day: dt.date, filters: Filters | None = None) -> QuerySet:
    """Cases open at the end of `day`: opened by then and not resolved or ignored by then.
    A case's status at a moment is the last status its audit trail recorded before it."""
    from exceptions.kpis import filter_cases
    from exceptions.models import Case, CaseEntry

    moment = end_of(day)
    status_then = (CaseEntry.objects.filter(case=OuterRef("pk"), field="status",
                                            at__lt=moment)
                   .order_by("-at", "-pk").values("to_value")[:1])
    return filter_cases(Case.objects.all(), filters).annotate(
        status_then=Subquery(status_then)).filter(status_then__in=Case.OPEN_STATES)


def open_cases_at(day: dt.date, filters: Filters | None = None) -> int:
    """How many cases were open at the end of `day`."""
    return cases_open_at(day, filters).count()


def breached_cases_at(day: dt.date, filters: Filters | None = None) -> int:
    """Of the cases open at the end of `day`, those past their resolution target then."""
    return cases_open_at(day, filters).filter(
        Q(resolution_due_at__lt=end_of(day))).count()


def blocked_invoices_at(day: dt.date, filters: Filters | None = None) -> int:
    """Invoices blocked at the end of `day`: a `blocked` event by then and no issue, payment
    or void by then (a later stage ends the block, SPEC section 2)."""
    moment = end_of(day)

    def stage(*names: str) -> Exists:
        return Exists(state.StageEvent.objects.filter(
            kind="invoice", record_id=OuterRef("pk"), stage__in=names, at__lt=moment))

    return (kpis.counted_invoices(filters).filter(stage("blocked"))
            .exclude(stage("issued", "paid", "voided")).count())
