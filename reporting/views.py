"""Dashboard pages. Each page is a set of panels; each panel is an htmx partial that loads
and refreshes on its own, computed by the same KPI functions as the read API, and exports
the table behind it as CSV."""
import datetime as dt
import hashlib
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Self
from urllib.parse import urlencode

from django.conf import settings
from django.core.cache import cache
from django.db.models import Field, Model
from django.http import Http404, HttpRequest, HttpResponse
from django.http.response import HttpResponseBase
from django.shortcuts import render
from django.urls import NoReverseMatch, reverse
from django.utils import timezone

from core.csvexport import csv_stream
from core.problems import Problem
from opsview import labels, selectors
from opsview import models as state
from opsview.periods import month_bounds, period_of, previous_month
from reporting import billing, charts, close, fx, kpis, trends
from reporting.api import currency_param, kpi_filters, period_param

log = logging.getLogger(__name__)


@dataclass
class Filters:
    """The filters of SPEC section 5, kept in the query string so any view can be shared."""

    period: str
    first_day: dt.date
    last_day: dt.date
    as_of: dt.date
    kpi: dict
    group_by: str = "client"
    errors: list = field(default_factory=list)
    currency: str | None = None  # a reporting currency, only when asked for
    interval: str = "month"
    entries_page: int = 1  # the page of the WIP entries table

    @classmethod
    def from_request(cls, request: HttpRequest, default_period: str | None = None) -> Self:
        today = timezone.localdate()
        default_period = default_period or today.strftime("%Y-%m")
        errors = []
        try:
            period, first, last = period_param(request.GET, default=default_period)
        except Problem as problem:
            errors.append(problem.detail)
            period, first, last = period_param({}, default=default_period)
        try:
            filters = kpi_filters(request.GET)
        except Problem as problem:
            errors.append(problem.detail)
            filters = {}
        group_by = request.GET.get("group_by", "client")
        if group_by not in kpis.GROUPS:
            errors.append(f"group_by must be one of {', '.join(kpis.GROUPS)}")
            group_by = "client"
        try:
            currency = currency_param(request.GET)
        except Problem as problem:
            errors.append(problem.detail)
            currency = None
        interval = request.GET.get("interval") or trends.MONTH
        if interval not in (trends.MONTH, trends.WEEK):
            errors.append("interval must be month or week")
            interval = trends.MONTH
        entries_page = request.GET.get("entries_page") or "1"
        if not entries_page.isdigit() or int(entries_page) < 1:
            errors.append("entries_page must be a whole number from 1")
            entries_page = "1"
        return cls(period=period, first_day=first, last_day=last, as_of=min(last, today),
                   kpi=filters, group_by=group_by, errors=errors, currency=currency,
                   interval=interval, entries_page=int(entries_page))

    @property
    def period_label(self) -> str:
        """'2026-03' → 'March 2026'."""
        return f"{self.first_day:%B %Y}"

    @property
    def as_of_label(self) -> str:
        return labels.readable_date(self.as_of)

    def query(self, **overrides: Any) -> str:
        params = {"period": self.period, **self.kpi, "group_by": self.group_by,
                  "currency": self.currency,
                  "interval": self.interval if self.interval != trends.MONTH else None,
                  "entries_page": self.entries_page if self.entries_page > 1 else None,
                  **overrides}
        return urlencode({k: v for k, v in params.items() if v})


# --- Panels ----------------------------------------------------------------------------------
def _table(columns: list[tuple[str, Any]], rows: Iterable[Any]) -> dict[str, list[Any]]:
    """(header labels, row tuples) for the panel's table and its CSV export."""
    return {"columns": [label for label, _ in columns],
            "rows": [[row.get(key) if isinstance(row, dict) else row[i]
                      for i, (_, key) in enumerate(columns)] for row in rows]}


def overview_cards(f: Filters) -> dict[str, Any]:
    wip = kpis.wip(as_of=f.as_of, filters=f.kpi)
    readiness = kpis.invoice_readiness(period=f.period, first_day=f.first_day,
                                       last_day=f.last_day, filters=f.kpi)
    receivables = kpis.receivables(as_of=f.as_of, filters=f.kpi)
    cases = _case_summary(f)
    history = overview_history(f)
    return {"wip": wip, "readiness": readiness, "receivables": receivables, "cases": cases,
            "history": history,
            "reporting": _reporting(f, {"wip": (wip, "total", f.as_of),
                                        "open_ar": (receivables, "open_ar", f.as_of)}),
            "table": _table([("Currency", 0), ("Unbilled WIP", 1), ("Readiness", 2),
                             ("Open AR", 3), ("DSO days", 4)], [
                [c, wip["currencies"].get(c, {}).get("total"),
                 readiness["currencies"].get(c, {}).get("readiness_ratio"),
                 receivables["currencies"].get(c, {}).get("open_ar"),
                 receivables["currencies"].get(c, {}).get("dso_days")]
                for c in sorted(set(wip["currencies"]) | set(readiness["currencies"])
                                | set(receivables["currencies"]))])}


HISTORY_MONTHS = 6


def overview_history(f: Filters) -> dict[str, Any]:
    """The overview's figures at the end of each of the last months (the current month up
    to the as-of date), for each card's change against the previous month and its trend
    line; per-currency figures by currency."""
    months = [month_bounds(f.first_day)]
    for _ in range(HISTORY_MONTHS - 1):
        months.insert(0, month_bounds(previous_month(months[0][0])))
    ends = [min(last, f.as_of) for _, last in months]
    series = {}
    for metric in ("wip", "dso", "open_ar"):
        series[metric] = _by_currency_series(
            [trends.point(metric, first, end, f.kpi)
             for (first, _), end in zip(months, ends, strict=True)])
    readiness = [trends.point("readiness_ratio", first, last, f.kpi) for first, last in months]
    series["readiness"] = _by_currency_series(readiness)
    series["open_cases"] = _series([trends.open_cases_at(end, f.kpi) for end in ends])
    series["breached"] = _series([trends.breached_cases_at(end, f.kpi) for end in ends])
    series["blocked"] = _series([trends.blocked_invoices_at(end, f.kpi) for end in ends])
    labels = [period_of(first) for first, _ in months]
    return {"series": series, "labels": labels, "previous": months[-2][0].strftime("%b")}


def _by_currency_series(points: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    currencies = sorted({c for p in points for c in p["currencies"]})
    return {c: _series([p["currencies"].get(c) for p in points]) for c in currencies}


def _series(values: list[Any]) -> dict[str, Any]:
    """A trend line's figures: the values, the change of the last against the one before,
    and the polyline of a small chart (pure numbers; the template draws it)."""
    numbers = [None if v is None else float(Decimal(str(v))) for v in values]
    last, before = numbers[-1], numbers[-2] if len(numbers) > 1 else None
    change = None if last is None or before is None else last - before
    return {"values": numbers, "last": last, "change": change,
            "relative": None if change is None or not before else change / abs(before),
            "points": charts.sparkline(numbers)}


def _reporting(f: Filters, figures: dict[str, tuple[dict[str, Any], str, dt.date]]
               ) -> dict[str, Any] | None:
    """{name: reporting block} of the headline amounts in the reporting currency asked
    for, or None: figures is {name: (KPI result, key of its per-currency amount, date)}."""
    if not f.currency:
        return None
    return {name: fx.reporting({c: v[key] for c, v in result["currencies"].items()},
                               f.currency, on)
            for name, (result, key, on) in figures.items()}


def _case_summary(f: Filters) -> dict[str, Any]:
    from exceptions.kpis import exceptions_kpi

    return exceptions_kpi(filters=f.kpi)


def _open_cases(f: Filters, case_type: str) -> int:
    from exceptions.kpis import open_cases

    return open_cases(f.kpi).filter(type=case_type).count()


def overview_charts(f: Filters) -> dict[str, Any]:
    wip = kpis.wip(as_of=f.as_of, filters=f.kpi)
    margin = kpis.margin(start=f.first_day, end=f.last_day, group_by="practice", filters=f.kpi)
    return {"aging_chart": charts.wip_aging_by_currency(wip),
            "margin_chart": charts.margin_bars(margin["rows"]),
            "table": _margin_table(margin["rows"])}


def readiness_summary(f: Filters) -> dict[str, Any]:
    result = kpis.invoice_readiness(period=f.period, first_day=f.first_day,
                                    last_day=f.last_day, filters=f.kpi)
    return {"result": result, "chart": charts.readiness(result) if result["currencies"] else None,
            "unposted_url": _queue_url(type="approved_time_unposted"),
            "setup_url": _queue_url(type="missing_billing_setup"),
            "table": _table([("Currency", 0), ("Billable", 1), ("Invoiced", 2), ("In billing", 3),
                             ("Ready", 4), ("Not posted", 5), ("Billing set-up missing", 6),
                             ("Readiness", 7)],
                            [[c, v["billable_value"], v["invoiced_value"], v["in_billing_value"],
                              v["ready_value"], v["not_ready"]["unposted"],
                              v["not_ready"]["missing_billing_setup"], v["readiness_ratio"]]
                             for c, v in result["currencies"].items()])}


def readiness_table(f: Filters) -> dict[str, Any]:
    group_by = f.group_by if f.group_by in ("project", "client") else "project"
    rows = kpis.readiness_breakdown(first_day=f.first_day, last_day=f.last_day,
                                    group_by=group_by, filters=f.kpi)
    return {"rows": rows[:50], "group_by": group_by,
            "table": _table([(group_by.title(), "name"), ("Currency", "currency"),
                             ("Billable", "billable_value"), ("Ready", "ready_value"),
                             ("Not posted", "unposted"),
                             ("Billing set-up missing", "missing_billing_setup"),
                             ("In billing", "in_billing_value"),
                             ("Invoiced", "invoiced_value"), ("Readiness", "readiness_ratio")],
                            rows)}


def blocked_invoices(f: Filters) -> dict[str, Any]:
    blocked = kpis.blocked_invoices(f.kpi)
    unmilestoned = _open_cases(f, "milestone_not_invoiced")
    return {"blocked": blocked, "milestones_not_invoiced": unmilestoned,
            "reasons": [(reason, count, _queue_url(type="invoice_blocked"))
                        for reason, count in blocked["by_reason"].items()],
            "table": _table([("Reason", 0), ("Blocked invoices", 1)],
                            list(blocked["by_reason"].items()))}


def wip_summary(f: Filters) -> dict[str, Any]:
    result = kpis.wip(as_of=f.as_of, filters=f.kpi)
    return {"result": result, "chart": charts.wip_aging_by_currency(result),
            "reporting": _reporting(f, {"wip": (result, "total", f.as_of)}),
            "table": _table([("Currency", 0), ("Total", 1), ("Time", 2), ("Expenses", 3),
                             ("Milestones", 4), ("Fixed fee", 5), ("In billing", 6),
                             ("0-30", 7), ("31-60", 8), ("61-90", 9), ("90+", 10)],
                            [[c, v["total"], v["time"], v["expenses"], v["milestones"],
                              v["fixed_fee"], v["in_billing"], *v["aging"].values()]
                             for c, v in result["currencies"].items()])}


def wip_groups(f: Filters) -> dict[str, Any]:
    rows = kpis.wip_breakdown(as_of=f.as_of, group_by=f.group_by, filters=f.kpi)
    currencies = sorted({r["currency"] for r in rows})
    main = max(currencies, key=lambda c: sum(Decimal(r["total"]) for r in rows
                                             if r["currency"] == c)) if currencies else None
    if f.group_by != "project":
        for row in rows:
            row["drill"] = f.query(**{f.group_by: row["key"]}, entries_page=None)
    return {"rows": rows[:60], "group_by": f.group_by, "currency": main,
            "chart": charts.wip_aging([r for r in rows if r["currency"] == main],
                                      currency=main) if main else None,
            "table": _table([(f.group_by.replace("_", " ").title(), "name"),
                             ("Currency", "currency"), ("Total", "total"),
                             ("In billing", "in_billing"), ("0-30", "0-30"),
                             ("31-60", "31-60"), ("61-90", "61-90"), ("90+", "90+")], rows)}


WIP_KINDS = {"time_entry": "Time", "expense": "Expense", "milestone": "Milestone",
             "fixed_fee": "Fixed fee"}


ENTRIES_PER_PAGE = 50


def wip_entries(f: Filters) -> dict[str, Any]:
    """Every item behind the WIP: the page shows ENTRIES_PER_PAGE of them at a time, the CSV
    all of them."""
    rows = kpis.wip_entries(as_of=f.as_of, filters=f.kpi)
    for row in rows:
        row["kind_label"] = WIP_KINDS[row["kind"]]
    pages = max(1, -(-len(rows) // ENTRIES_PER_PAGE))
    number = min(f.entries_page, pages)
    first = (number - 1) * ENTRIES_PER_PAGE
    shown = rows[first:first + ENTRIES_PER_PAGE]
    return {"rows": shown, "count": len(rows), "first": first + 1 if shown else 0,
            "last": first + len(shown), "page_number": number, "pages": pages,
            "previous": f.query(entries_page=number - 1 if number > 2 else None)
            if number > 1 else None,
            "next": f.query(entries_page=number + 1) if number < pages else None,
            "table": _table([
        ("Kind", "kind_label"), ("Item", "id"), ("Date", "date"), ("Age (days)", "age_days"),
        ("Client", "client"), ("Project", "project"), ("Person", "person"),
        ("Hours", "hours"), ("Value", "value"), ("Currency", "currency"),
        ("In billing", "in_billing")], rows)}


def latency_summary(f: Filters) -> dict[str, Any]:
    result = kpis.posting_latency(start=f.first_day, end=f.last_day, filters=f.kpi)
    rows = [["Time entries", result], ["Billable expenses", result["expenses"]]]
    return {"result": result, "table": _table(
        [("Items", 0), ("Posted", 1), ("p50 h", 2), ("p90 h", 3), ("p95 h", 4),
         ("Within SLA", 5), ("Approved, not posted", 6)],
        [[label, figures["count"], *[_hours(figures[k]) for k in (
            "p50_seconds", "p90_seconds", "p95_seconds")],
          figures["within_sla_ratio"], figures["backlog"]["count"]] for label, figures in rows])}


def latency_trend(f: Filters) -> dict[str, Any]:
    weeks = kpis.posting_latency_trend(end=f.as_of, filters=f.kpi)
    return {"chart": charts.latency_trend(weeks), "table": _table(
        [("Week of", "week"), ("Posted", "count"), ("p50 s", "p50_seconds"),
         ("p90 s", "p90_seconds"), ("p95 s", "p95_seconds"), ("Within SLA", "within_sla_ratio")],
        weeks)}


def utilization(f: Filters) -> dict[str, Any]:
    result = kpis.utilization(start=f.first_day, end=min(f.last_day, f.as_of), filters=f.kpi)
    return {"result": result, "chart": charts.utilization_by_practice(result),
            "people": sorted(result["by_person"], key=lambda p: p["utilization_ratio"] or 0)[:15],
            "table": _table([("Person", "person_id"), ("Name", "name"), ("Practice", "practice"),
                             ("Billable h", "billable_hours"), ("All h", "total_hours"),
                             ("Capacity h", "capacity_hours"),
                             ("Utilization", "utilization_ratio")], result["by_person"])}


def health_summary(f: Filters) -> dict[str, Any]:
    now = timezone.now()
    result = kpis.integration_health(start=now - dt.timedelta(hours=24), end=now)
    colors = _flow_colors()
    for flow in result["flows"]:
        # Into the case list, filtered by type and by the flow's name in the case's title.
        flow["color"] = colors.get(flow["flow"])
        flow["failures_url"] = _queue_url(type="sync_failed", q=flow["flow"])
        flow["stale_url"] = _queue_url(type="stale_feed", q=flow["flow"])
        flow["gaps_url"] = _queue_url(type="reconciliation_gap", q=flow["flow"])
    return {"result": result, "stale": [flow for flow in result["flows"] if flow["stale"]],
            "dead_letters_url": _queue_url(type="dead_letter"),
            "table": _table([("Flow", "flow"), ("From", "source_system"), ("To", "target_system"),
                             ("Succeeded", "succeeded"), ("Failed", "failed"),
                             ("Success ratio", "success_ratio"),
                             ("p95 latency ms", "p95_latency_ms"),
                             ("Last event", "last_event_at"),
                             ("Expected silence s", "expected_silence_seconds"),
                             ("Stale", "stale"), ("Open failures", "open_failures")],
                            result["flows"])}


def _flow_colors() -> dict[str, str]:
    """Every flow ever seen, coloured by name order: a flow keeps its colour on every chart
    and table whichever flows a window happens to show."""
    return charts.flow_colors(selectors.last_event_by_flow())


def health_throughput(f: Filters) -> dict[str, Any]:
    now = timezone.now()
    series = kpis.flow_series(start=now - dt.timedelta(days=14), end=now)
    return {"chart": charts.flow_throughput(series, _flow_colors()) if series else None,
            "table": _table([("Day", "day"), ("Flow", "flow"), ("Succeeded", "succeeded"),
                             ("Failed", "failed")], series)}


def health_gaps(f: Filters) -> dict[str, Any]:
    now = timezone.now()
    gaps = kpis.integration_health(start=now - dt.timedelta(hours=24),
                                   end=now)["reconciliation_gaps"]
    return {"gaps": gaps, "table": _table(
        [("Flow", "flow"), ("Object", "object_type"), ("From", "period_start"),
         ("To", "period_end"), ("Source", "source_count"), ("Target", "target_count"),
         ("Gap", "gap")], gaps)}


def margin_table(f: Filters) -> dict[str, Any]:
    group_by = f.group_by if f.group_by in kpis.MARGIN_GROUPS else "client"
    result = kpis.margin(start=f.first_day, end=f.last_day, group_by=group_by, filters=f.kpi)
    earned: dict[str, Decimal] = {}
    for row in result["rows"]:
        earned[row["currency"]] = earned.get(row["currency"], 0) + Decimal(row["earned_revenue"])
    return {"rows": result["rows"][:60], "group_by": group_by,
            "reporting": _reporting(f, {"earned": (
                {"currencies": {c: {"v": v} for c, v in earned.items()}}, "v", f.last_day)}),
            "chart": charts.margin_bars(result["rows"]) if result["rows"] else None,
            "table": _margin_table(result["rows"])}


def _margin_table(rows: list[dict[str, Any]]) -> dict[str, list[Any]]:
    return _table([("Group", "name"), ("Currency", "currency"), ("Earned", "earned_revenue"),
                   ("Labor cost", "labor_cost"), ("Margin", "margin"),
                   ("Margin ratio", "margin_ratio"), ("Billed", "billed_revenue"),
                   ("Recognized", "recognized_revenue")], rows)


def receivables(f: Filters) -> dict[str, Any]:
    result = kpis.receivables(as_of=f.as_of, filters=f.kpi)
    return {"result": result,
            "reporting": _reporting(f, {"open_ar": (result, "open_ar", f.as_of)}),
            "table": _table(
        [("Currency", 0), ("Open AR", 1), ("Issued, last 90 days", 2), ("DSO days", 3)],
        [[c, v["open_ar"], v["issued_90d"], v["dso_days"]]
         for c, v in result["currencies"].items()])}


# --- Month-end close ---------------------------------------------------------------------------
RECON_KINDS = [("time", "Time entries"), ("expenses", "Expenses")]
RECON_STAGES = [("approved", "Approved in PSA"), ("posted", "Posted to ERP"),
                ("billed", "Billed"), ("approved_not_posted", "Approved, not posted"),
                ("posted_not_billed", "Posted, not billed"),
                ("billed_not_posted", "Billed, never posted"),
                ("reversed_but_billed", "Reversed, still billed")]
GAP_HELP = {
    "approved_not_posted": "approved in PSA with no posting in ERP",
    "posted_not_billed": "in ERP, billable, on no issued invoice",
    "billed_not_posted": "on an issued invoice although ERP never had it",
    "reversed_but_billed": "reversed while an issued invoice bills it: needs a credit note",
}


def _reconciliation(f: Filters) -> dict[str, Any]:
    return close.reconciliation(period=f.period, first_day=f.first_day, last_day=f.last_day,
                                filters=f.kpi)


def recon_summary(f: Filters) -> dict[str, Any]:
    result = _reconciliation(f)
    rows = []
    for kind, kind_label in RECON_KINDS:
        for stage, label in RECON_STAGES:
            figures = result[kind][stage]
            rows.append({"kind": kind_label, "stage": label, "gap": stage in GAP_HELP,
                         "count": figures["count"], "hours": figures.get("hours"),
                         "values": figures["currencies"],
                         "value": " · ".join(f"{v} {c}" for c, v in figures["currencies"].items())})
    return {"result": result, "rows": rows, "chart": charts.reconciliation_bars(result),
            "table": _table([("Items", "kind"), ("Stage", "stage"), ("Count", "count"),
                             ("Hours", "hours"), ("Billable value", "value")], rows)}


ITEM_KINDS = {"time": "time_entry", "expenses": "expense"}


def recon_gaps(f: Filters) -> dict[str, Any]:
    result = _reconciliation(f)
    gaps, rows = [], []
    for kind, kind_label in RECON_KINDS:
        for stage, label in RECON_STAGES:
            if stage not in GAP_HELP:
                continue
            figures = result[kind][stage]
            links = [(item_id, _item_url(ITEM_KINDS[kind], item_id)) for item_id in figures["ids"]]
            gaps.append({"kind": kind_label, "label": label, "help": GAP_HELP[stage],
                         "count": figures["count"], "currencies": figures["currencies"],
                         "links": links})
            rows += [[kind_label, label, item_id] for item_id in figures["ids"]]
    return {"gaps": gaps, "table": _table([("Items", 0), ("Gap", 1), ("Id", 2)], rows)}


def recon_reported(f: Filters) -> dict[str, Any]:
    reported = _reconciliation(f)["reported"]
    return {"reported": reported, "table": _table(
        [("Flow", "flow"), ("Object", "object_type"), ("From", "period_start"),
         ("To", "period_end"), ("Middleware source", "source_count"),
         ("Middleware target", "target_count"), ("OpsView approved", "opsview_source_count"),
         ("OpsView posted", "opsview_target_count"), ("Agrees", "agrees")], reported)}


def _period_close(f: Filters) -> dict[str, Any]:
    return close.period_close(period=f.period, first_day=f.first_day, last_day=f.last_day,
                              filters=f.kpi)


def close_summary(f: Filters) -> dict[str, Any]:
    result = _period_close(f)
    rows = [[c, v["billable_value"], v["billed_value"], v["in_billing_value"], v["ready_value"],
             v["not_ready"]["unposted"], v["not_ready"]["missing_billing_setup"],
             v["slipped_value"]] for c, v in result["currencies"].items()]
    for row in [result, *result.get("cutoffs", [])]:
        row["cutoff_day"] = dt.date.fromisoformat(row["cutoff_date"])
    return {"result": result, "countdown": _countdown(result["seconds_to_cutoff"]),
            "chart": charts.close_bars(result) if result["currencies"] else None,
            "reporting": _reporting(f, {"billable": (result, "billable_value", f.last_day)}),
            "table": _table([("Currency", 0), ("Billable", 1), ("Billed", 2), ("In billing", 3),
                             ("Ready", 4), ("Not posted", 5), ("Billing set-up missing", 6),
                             ("Slipped past the cut-off", 7)], rows)}


def _countdown(seconds: int) -> str:
    """'1 d 4 h left', '12 days left', 'passed 3 days ago': hours only while they matter."""
    days, rest = divmod(abs(seconds), 86400)
    if days >= 2:
        text = f"{days} days"
    elif days:
        text = f"1 d {rest // 3600} h"
    else:
        text = f"{rest // 3600} h {rest % 3600 // 60} min"
    return f"{text} left" if seconds >= 0 else f"passed {text} ago"


def close_cases(f: Filters) -> dict[str, Any]:
    result = _period_close(f)
    cases = result["blocking_cases"]
    for case in cases["cases"]:
        case["url"] = _case_url(case["id"])
        case["due"] = dt.datetime.fromisoformat(case["due_at"])
    return {"blocking": cases, "cutoff_at": result["cutoff_at"], "table": _table(
        [("Case", "id"), ("Type", "type"), ("Title", "title"), ("Owner", "owner"),
         ("Money at stake", "money_at_stake"), ("Currency", "currency"),
         ("Due (by the cut-off at the latest)", "due_at"), ("At risk", "at_risk"),
         ("Breached", "breached")], cases["cases"])}


def billing_summary(f: Filters) -> dict[str, Any]:
    result = billing.billing(start=f.first_day, end=min(f.last_day, f.as_of), filters=f.kpi)
    rows = [[c, v["count"], v["billed_value"], v["standard_value"], v["realization_ratio"],
             v["cycle_days"]["p50"], v["cycle_days"]["p90"], v["billing_lag_days"]["p50"],
             v["billing_lag_days"]["p90"], v["collection_days"]["p50"],
             v["collection_days"]["p90"]] for c, v in result["currencies"].items()]
    return {"result": result, "chart": charts.billing_days(result) if rows else None,
            "period_label": f"{labels.readable_date(result['start'])} – "
                            f"{labels.readable_date(result['end'])}",
            "reporting": _reporting(f, {"billed": (result, "billed_value", f.last_day)}),
            "table": _table([("Currency", 0), ("Invoices", 1), ("Billed", 2), ("Standard", 3),
                             ("Realization", 4), ("Cycle p50 d", 5), ("Cycle p90 d", 6),
                             ("Lag p50 d", 7), ("Lag p90 d", 8), ("Collection p50 d", 9),
                             ("Collection p90 d", 10)], rows)}


TREND_TITLES = {"wip": "Unbilled WIP", "open_ar": "Open receivables", "dso": "DSO (days)",
                "readiness_ratio": "Invoice readiness", "posting_p95": "Posting p95 (hours)",
                "utilization": "Utilization", "open_cases": "Open exception cases"}
RATIOS = {"readiness_ratio", "utilization"}


def trend_panel(metric: str) -> Callable[[Filters], dict[str, Any]]:
    def panel(f: Filters) -> dict[str, Any]:
        interval = trends.MONTH if metric in trends.MONTH_ONLY else f.interval
        result = trends.trends(metric=metric, interval=interval,
                               start=trends.default_start(f.as_of, interval), end=f.as_of,
                               filters=f.kpi)
        points = result["points"]
        if metric == "posting_p95":
            points = [{**p, "value": None if p["value"] is None else round(p["value"] / 3600, 1)}
                      for p in points]
        if "currencies" in (points[0] if points else {}):
            currencies = sorted({c for p in points for c in p["currencies"]})
            rows = [[p["end"], *[p["currencies"].get(c) for c in currencies]] for p in points]
            columns = [("Interval ending", 0)] + [(c, i + 1) for i, c in enumerate(currencies)]
        else:
            rows, columns = [[p["end"], p["value"]] for p in points], [
                ("Interval ending", 0), (TREND_TITLES[metric], 1)]
        return {"title": TREND_TITLES[metric], "interval": interval,
                "chart": charts.trend_lines(points, TREND_TITLES[metric], metric in RATIOS),
                "table": _table(columns, rows)}
    return panel


def _case_url(pk: int) -> str | None:
    try:
        return reverse("exceptions:case", args=[pk])
    except NoReverseMatch:
        return None


def _item_url(kind: str, item_id: str) -> str:
    return reverse("item", args=[kind, item_id])


ITEMS: dict[str, tuple[type[Model], str, str]] = {
         "time_entry": (state.TimeEntry, "time_entry_id", "Time entry"),
         "expense": (state.Expense, "expense_id", "Expense"),
         "milestone": (state.Milestone, "milestone_id", "Milestone"),
         "invoice": (state.Invoice, "invoice_id", "Invoice")}


def item(request: HttpRequest, kind: str, item_id: str) -> HttpResponse:
    """A time entry, expense, milestone or invoice and its timeline: every lifecycle event,
    its invoice's events, the syncs and cases naming it. An id OpsView holds no record of
    still shows what names it: reconciliation is about what one system has and another
    has not."""
    if kind not in ITEMS:
        raise Http404("no such kind of item")
    model, key, label = ITEMS[kind]
    record = model._default_manager.filter(**{key: item_id}).select_related("project").first() \
        if kind != "invoice" else model._default_manager.filter(**{key: item_id}).first()
    timeline = []
    if record is not None:
        timeline += [{"at": e.at, "what": f"{label.lower()} {labels.label(e.stage).lower()}",
                      "detail": f"invoice {e.invoice_ref}" if e.invoice_ref else ""}
                     for e in state.StageEvent.objects.filter(kind=kind, record_id=record.pk)]
        invoice = getattr(record, "invoice", None) if kind != "invoice" else None
        if invoice is not None:
            timeline += [{"at": e.at, "what": f"invoice {invoice.invoice_id} {e.stage}",
                          "detail": ""}
                         for e in state.StageEvent.objects.filter(kind="invoice",
                                                                  record_id=invoice.pk)]
    timeline += [{"at": a.occurred_at, "what": f"{a.flow}: sync "
                                                f"{'succeeded' if a.succeeded else 'failed'}",
                  "detail": a.error_code or ""}
                 for a in state.SyncAttempt.objects.filter(object_id=item_id)[:100]]
    from exceptions.models import Case

    cases = [{"case": c, "url": _case_url(c.pk)} for c in
             Case.objects.filter(object_id=item_id).order_by("-opened_at")[:20]]
    hidden = {"id", "field_versions", "status_event_id", "status_rank", "updated_at",
              "first_seen_at", "placeholder_since", "status_time"}
    fields = [] if record is None else [
        (f.verbose_name, _shown(record, f)) for f in model._meta.concrete_fields
        if f.name not in hidden and getattr(record, f.name) not in (None, "")]
    return render(request, "opsview/item.html", {
        "kind": kind, "label": label, "item_id": item_id, "record": record, "fields": fields,
        "timeline": sorted(timeline, key=lambda e: e["at"]), "cases": cases})


MONEY_FIELDS = {"amount", "bill_rate", "cost_rate", "contract_value"}


def _shown(record: Model, field: Field) -> Any:
    """A record's field as people read it: money with its currency, readable dates, codes
    as words."""
    from django.db import models as db

    value = getattr(record, field.name)
    if field.name in MONEY_FIELDS:
        currency = getattr(record, "currency", "") or getattr(
            getattr(record, "project", None), "currency", "")
        return f"{value:,.2f} {currency}".strip()
    if isinstance(field, (db.DateTimeField, db.DateField)):
        return labels.readable_time(value)
    if field.choices or field.name in ("status", "stage", "blocked_reason"):
        return labels.label(value)
    if isinstance(value, bool):
        return "Yes" if value else "No"
    return value


def _hours(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds / 3600, 1)


def _queue_url(**params: str) -> str | None:
    try:
        return reverse("exceptions:queue") + "?" + urlencode(params)
    except NoReverseMatch:
        return None


PANELS = {
    "overview_cards": overview_cards, "overview_charts": overview_charts,
    "readiness_summary": readiness_summary, "readiness_table": readiness_table,
    "blocked_invoices": blocked_invoices,
    "wip_summary": wip_summary, "wip_groups": wip_groups, "wip_entries": wip_entries,
    "latency_summary": latency_summary, "latency_trend": latency_trend,
    "utilization": utilization,
    "health_summary": health_summary, "health_throughput": health_throughput,
    "health_gaps": health_gaps,
    "margin_table": margin_table, "receivables": receivables,
    "recon_summary": recon_summary, "recon_gaps": recon_gaps, "recon_reported": recon_reported,
    "close_summary": close_summary, "close_cases": close_cases,
    "billing_summary": billing_summary,
    **{f"trend_{metric}": trend_panel(metric) for metric in trends.METRICS},
}
# Panels drawn by one template for several KPIs.
PANEL_TEMPLATES = {f"trend_{metric}": "trend" for metric in trends.METRICS}
# Pages whose panels have fixed windows (the last 24 hours, 14 days): no filter form.
UNFILTERED_PAGES = {"integration"}
# Pages about a closed month open on the last one.
LAST_MONTH_PAGES = {"close", "reconciliation"}

PAGES = {
    "home": ("Overview", "Where money stands this period, and what is stuck.",
             ["overview_cards", "overview_charts"], None),
    "readiness": ("Invoice readiness", "What can be invoiced this billing period, and what "
                  "stands in the way.", ["readiness_summary", "blocked_invoices",
                                         "readiness_table"], None),
    "wip": ("Unbilled WIP", "Work done and approved but not yet invoiced, by age.",
            ["wip_summary", "wip_groups", "wip_entries"], None),
    "latency": ("Posting latency & utilization", "How fast approved time reaches ERP, and how "
                "busy people are.", ["latency_summary", "latency_trend", "utilization"], None),
    "integration": ("Integration health", "Every flow between the systems over the last 24 "
                    "hours and 14 days, refreshed every 30 seconds.",
                    ["health_summary", "health_throughput", "health_gaps"], 30),
    "margin": ("Margin & billing", "Earned, billed and recognized revenue against labor cost; "
               "receivables.", ["margin_table", "receivables"], None),
    "close": ("Period close", "Can the month be billed by its cut-off, and who must act "
              "before it.", ["close_summary", "close_cases"], 60),
    "reconciliation": ("Reconciliation", "Does what PSA approved match what ERP posted and "
                       "what was invoiced — and which items are the difference.",
                       ["recon_summary", "recon_gaps", "recon_reported"], None),
    "billing": ("Billing", "How much of standard value is billed, and how fast work becomes "
                "an invoice and an invoice becomes cash.", ["billing_summary"], None),
    "trends": ("Trends", "How the business moves, week by week or month by month.",
               [f"trend_{metric}" for metric in trends.METRICS], None),
}


def _default_period(name: str) -> str | None:
    if name in LAST_MONTH_PAGES:
        return period_of(previous_month(timezone.localdate().replace(day=1)))
    return None


def page(request: HttpRequest, name: str) -> HttpResponse:
    title, subtitle, panels, refresh = PAGES[name]
    f = Filters.from_request(request, _default_period(name))
    return render(request, "opsview/page.html", {
        "page": name, "title": title, "subtitle": subtitle, "panels": panels,
        "filterable": name not in UNFILTERED_PAGES,
        "refresh": refresh, "filters": f, "choices": {**kpis.filter_choices(),
                                                      "currencies": reporting_currencies()},
        "query": f.query(),
    })


def panel(request: HttpRequest, name: str) -> HttpResponseBase:
    if name not in PANELS:
        raise Http404("no such panel")
    f = Filters.from_request(request)
    context = _panel_context(name, f)
    if request.GET.get("format") == "csv":
        return csv_stream(f"{name}.csv", context["table"]["columns"], context["table"]["rows"])
    return render(request, f"opsview/partials/{PANEL_TEMPLATES.get(name, name)}.html",
                  {**context, "filters": f, "query": f.query(), "panel": name})


def _panel_context(name: str, f: Filters) -> dict[str, Any]:
    """A panel's figures, shared for PANEL_CACHE_SECONDS by everyone who asks for the same
    panel with the same filters: open dashboards refreshing on a timer then cost the
    database one computation per interval, not one per viewer. The read API is not cached."""
    seconds = settings.PANEL_CACHE_SECONDS
    if not seconds:
        return PANELS[name](f)
    key = "panel:" + hashlib.sha256(
        f"{name}?{f.query()}&as_of={f.as_of}".encode()).hexdigest()
    try:
        context = cache.get(key)
    except Exception as exc:  # noqa: BLE001 - the cache is away: compute, as without one
        log.warning("panel cache unavailable: %s", exc)
        return PANELS[name](f)
    if context is None:
        context = PANELS[name](f)
        try:
            cache.set(key, context, seconds)
        except Exception as exc:  # noqa: BLE001
            log.warning("panel cache unavailable: %s", exc)
    return context


def home(request: HttpRequest) -> HttpResponse:
    return page(request, "home")


def reporting_currencies() -> list[str]:
    """The currencies a reporting currency can be chosen from: those rates are published
    for, and the projects' own."""
    published = set(state.FxRate.objects.values_list("base", flat=True).distinct()) | set(
        state.FxRate.objects.values_list("quote", flat=True).distinct())
    own = set(state.Project.objects.filter(is_placeholder=False).values_list(
        "currency", flat=True).distinct())
    return sorted((published | own) - {""})
