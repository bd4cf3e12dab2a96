"""Dashboard pages. Each page is a set of panels; each panel is an htmx partial that loads
and refreshes on its own, computed by the same KPI functions as the read API, and exports
the table behind it as CSV."""
import datetime as dt
import hashlib
import logging
from dataclasses import dataclass, field
from decimal import Decimal
from urllib.parse import urlencode

from django.conf import settings
from django.core.cache import cache
from django.http import Http404
from django.shortcuts import render
from django.urls import NoReverseMatch, reverse
from django.utils import timezone

from core.csvexport import csv_response
from ingestion.problems import Problem

from . import charts, kpis
from .api import kpi_filters, period_param

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

    @classmethod
    def from_request(cls, request):
        today = timezone.localdate()
        errors = []
        try:
            period, first, last = period_param(request.GET, default=today.strftime("%Y-%m"))
        except Problem as problem:
            errors.append(problem.detail)
            period, first, last = period_param({}, default=today.strftime("%Y-%m"))
        try:
            filters = kpi_filters(request.GET)
        except Problem as problem:
            errors.append(problem.detail)
            filters = {}
        group_by = request.GET.get("group_by", "client")
        if group_by not in kpis.GROUPS:
            errors.append(f"group_by must be one of {', '.join(kpis.GROUPS)}")
            group_by = "client"
        return cls(period=period, first_day=first, last_day=last, as_of=min(last, today),
                   kpi=filters, group_by=group_by, errors=errors)

    def query(self, **overrides):
        params = {"period": self.period, **self.kpi, "group_by": self.group_by, **overrides}
        return urlencode({k: v for k, v in params.items() if v})


# --- Panels ----------------------------------------------------------------------------------
def _table(columns, rows):
    """(header labels, row tuples) for the panel's table and its CSV export."""
    return {"columns": [label for label, _ in columns],
            "rows": [[row.get(key) if isinstance(row, dict) else row[i]
                      for i, (_, key) in enumerate(columns)] for row in rows]}


def overview_cards(f):
    wip = kpis.wip(as_of=f.as_of, filters=f.kpi)
    readiness = kpis.invoice_readiness(period=f.period, first_day=f.first_day,
                                       last_day=f.last_day, filters=f.kpi)
    receivables = kpis.receivables(as_of=f.as_of, filters=f.kpi)
    cases = _case_summary(f)
    return {"wip": wip, "readiness": readiness, "receivables": receivables, "cases": cases,
            "table": _table([("Currency", 0), ("Unbilled WIP", 1), ("Readiness", 2),
                             ("Open AR", 3), ("DSO days", 4)], [
                [c, wip["currencies"].get(c, {}).get("total"),
                 readiness["currencies"].get(c, {}).get("readiness_ratio"),
                 receivables["currencies"].get(c, {}).get("open_ar"),
                 receivables["currencies"].get(c, {}).get("dso_days")]
                for c in sorted(set(wip["currencies"]) | set(readiness["currencies"])
                                | set(receivables["currencies"]))])}


def _case_summary(f):
    try:
        from exceptions.kpis import exceptions_kpi
    except ImportError:
        return None
    return exceptions_kpi(filters=f.kpi)


def overview_charts(f):
    wip = kpis.wip(as_of=f.as_of, filters=f.kpi)
    margin = kpis.margin(start=f.first_day, end=f.last_day, group_by="practice", filters=f.kpi)
    return {"aging_chart": charts.wip_aging_by_currency(wip),
            "margin_chart": charts.margin_bars(margin["rows"]),
            "table": _margin_table(margin["rows"])}


def readiness_summary(f):
    result = kpis.invoice_readiness(period=f.period, first_day=f.first_day,
                                    last_day=f.last_day, filters=f.kpi)
    return {"result": result, "chart": charts.readiness(result) if result["currencies"] else None,
            "unposted_url": _queue_url(type="approved_time_unposted"),
            "setup_url": _queue_url(type="missing_billing_setup"),
            "table": _table([("Currency", 0), ("Billable", 1), ("Invoiced", 2), ("Ready", 3),
                             ("Not posted", 4), ("Billing set-up missing", 5), ("Readiness", 6)],
                            [[c, v["billable_value"], v["invoiced_value"], v["ready_value"],
                              v["not_ready"]["unposted"], v["not_ready"]["missing_billing_setup"],
                              v["readiness_ratio"]] for c, v in result["currencies"].items()])}


def readiness_table(f):
    group_by = f.group_by if f.group_by in ("project", "client") else "project"
    rows = kpis.readiness_breakdown(first_day=f.first_day, last_day=f.last_day,
                                    group_by=group_by, filters=f.kpi)
    return {"rows": rows[:50], "group_by": group_by,
            "table": _table([(group_by.title(), "name"), ("Currency", "currency"),
                             ("Billable", "billable_value"), ("Ready", "ready_value"),
                             ("Not posted", "unposted"),
                             ("Billing set-up missing", "missing_billing_setup"),
                             ("Invoiced", "invoiced_value"), ("Readiness", "readiness_ratio")],
                            rows)}


def blocked_invoices(f):
    blocked = kpis.blocked_invoices(f.kpi)
    unmilestoned = kpis.counted_milestones(f.kpi, ["completed"]).filter(
        completed_on__lte=f.as_of).count()
    return {"blocked": blocked, "milestones_not_invoiced": unmilestoned,
            "reasons": [(reason, count, _queue_url(type="invoice_blocked"))
                        for reason, count in blocked["by_reason"].items()],
            "table": _table([("Reason", 0), ("Blocked invoices", 1)],
                            list(blocked["by_reason"].items()))}


def wip_summary(f):
    result = kpis.wip(as_of=f.as_of, filters=f.kpi)
    return {"result": result, "chart": charts.wip_aging_by_currency(result),
            "table": _table([("Currency", 0), ("Total", 1), ("Time", 2), ("Expenses", 3),
                             ("Milestones", 4), ("0-30", 5), ("31-60", 6), ("61-90", 7),
                             ("90+", 8)],
                            [[c, v["total"], v["time"], v["expenses"], v["milestones"],
                              *v["aging"].values()] for c, v in result["currencies"].items()])}


def wip_groups(f):
    rows = kpis.wip_breakdown(as_of=f.as_of, group_by=f.group_by, filters=f.kpi)
    currencies = sorted({r["currency"] for r in rows})
    main = max(currencies, key=lambda c: sum(Decimal(r["total"]) for r in rows
                                             if r["currency"] == c)) if currencies else None
    if f.group_by != "project":
        for row in rows:
            row["drill"] = f.query(**{f.group_by: row["key"]})
    return {"rows": rows[:60], "group_by": f.group_by, "currency": main,
            "chart": charts.wip_aging([r for r in rows if r["currency"] == main]) if main else None,
            "table": _table([(f.group_by.replace("_", " ").title(), "name"),
                             ("Currency", "currency"), ("Total", "total"), ("0-30", "0-30"),
                             ("31-60", "31-60"), ("61-90", "61-90"), ("90+", "90+")], rows)}


def wip_entries(f):
    rows = kpis.wip_entries(as_of=f.as_of, filters=f.kpi)
    return {"rows": rows, "table": _table([
        ("Entry", "time_entry_id"), ("Work date", "work_date"), ("Age (days)", "age_days"),
        ("Client", "client"), ("Project", "project"), ("Person", "person"),
        ("Status", "status"), ("Hours", "hours"), ("Value", "value"),
        ("Currency", "currency")], rows)}


def latency_summary(f):
    result = kpis.posting_latency(start=f.first_day, end=f.last_day, filters=f.kpi)
    return {"result": result, "table": _table(
        [("Posted", 0), ("p50 h", 1), ("p90 h", 2), ("p95 h", 3), ("Within SLA", 4),
         ("Backlog entries", 5), ("Backlog hours", 6)],
        [[result["count"], *[_hours(result[k]) for k in ("p50_seconds", "p90_seconds",
                                                         "p95_seconds")],
          result["within_sla_ratio"], result["backlog"]["count"], result["backlog"]["hours"]]])}


def latency_trend(f):
    weeks = kpis.posting_latency_trend(end=f.as_of, filters=f.kpi)
    return {"chart": charts.latency_trend(weeks), "table": _table(
        [("Week of", "week"), ("Posted", "count"), ("p50 s", "p50_seconds"),
         ("p90 s", "p90_seconds"), ("p95 s", "p95_seconds"), ("Within SLA", "within_sla_ratio")],
        weeks)}


def utilization(f):
    result = kpis.utilization(start=f.first_day, end=min(f.last_day, f.as_of), filters=f.kpi)
    return {"result": result, "chart": charts.utilization_by_practice(result),
            "people": sorted(result["by_person"], key=lambda p: p["utilization_ratio"] or 0)[:15],
            "table": _table([("Person", "person_id"), ("Name", "name"), ("Practice", "practice"),
                             ("Billable h", "billable_hours"), ("All h", "total_hours"),
                             ("Capacity h", "capacity_hours"),
                             ("Utilization", "utilization_ratio")], result["by_person"])}


def health_summary(f):
    now = timezone.now()
    result = kpis.integration_health(start=now - dt.timedelta(hours=24), end=now)
    return {"result": result, "stale": [flow for flow in result["flows"] if flow["stale"]],
            "table": _table([("Flow", "flow"), ("From", "source_system"), ("To", "target_system"),
                             ("Succeeded", "succeeded"), ("Failed", "failed"),
                             ("Success ratio", "success_ratio"),
                             ("p95 latency ms", "p95_latency_ms"),
                             ("Last event", "last_event_at"), ("Stale", "stale"),
                             ("Open failures", "open_failures")], result["flows"])}


def health_throughput(f):
    now = timezone.now()
    series = kpis.flow_series(start=now - dt.timedelta(days=14), end=now)
    return {"chart": charts.flow_throughput(series) if series else None,
            "table": _table([("Day", "day"), ("Flow", "flow"), ("Succeeded", "succeeded"),
                             ("Failed", "failed")], series)}


def health_gaps(f):
    now = timezone.now()
    gaps = kpis.integration_health(start=now - dt.timedelta(hours=24),
                                   end=now)["reconciliation_gaps"]
    return {"gaps": gaps, "table": _table(
        [("Flow", "flow"), ("Object", "object_type"), ("From", "period_start"),
         ("To", "period_end"), ("Source", "source_count"), ("Target", "target_count"),
         ("Gap", "gap")], gaps)}


def margin_table(f):
    group_by = f.group_by if f.group_by in kpis.MARGIN_GROUPS else "client"
    result = kpis.margin(start=f.first_day, end=f.last_day, group_by=group_by, filters=f.kpi)
    return {"rows": result["rows"][:60], "group_by": group_by,
            "chart": charts.margin_bars(result["rows"]) if result["rows"] else None,
            "table": _margin_table(result["rows"])}


def _margin_table(rows):
    return _table([("Group", "name"), ("Currency", "currency"), ("Earned", "earned_revenue"),
                   ("Labor cost", "labor_cost"), ("Margin", "margin"),
                   ("Margin ratio", "margin_ratio"), ("Billed", "billed_revenue"),
                   ("Recognized", "recognized_revenue")], rows)


def receivables(f):
    result = kpis.receivables(as_of=f.as_of, filters=f.kpi)
    return {"result": result, "table": _table(
        [("Currency", 0), ("Open AR", 1), ("Issued, last 90 days", 2), ("DSO days", 3)],
        [[c, v["open_ar"], v["issued_90d"], v["dso_days"]]
         for c, v in result["currencies"].items()])}


def _hours(seconds):
    return None if seconds is None else round(seconds / 3600, 1)


def _queue_url(**params):
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
}

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
    "integration": ("Integration health", "Every flow between the systems, refreshed every "
                    "30 seconds.", ["health_summary", "health_throughput", "health_gaps"], 30),
    "margin": ("Margin & billing", "Earned, billed and recognized revenue against labor cost; "
               "receivables.", ["margin_table", "receivables"], None),
}


def page(request, name):
    title, subtitle, panels, refresh = PAGES[name]
    f = Filters.from_request(request)
    return render(request, "opsview/page.html", {
        "page": name, "title": title, "subtitle": subtitle, "panels": panels,
        "refresh": refresh, "filters": f, "choices": kpis.filter_choices(),
        "query": f.query(),
    })


def panel(request, name):
    if name not in PANELS:
        raise Http404("no such panel")
    f = Filters.from_request(request)
    context = _panel_context(name, f)
    if request.GET.get("format") == "csv":
        return csv_response(f"{name}.csv", context["table"]["columns"], context["table"]["rows"])
    return render(request, f"opsview/partials/{name}.html",
                  {**context, "filters": f, "query": f.query(), "panel": name})


def _panel_context(name, f):
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


def home(request):
    return page(request, "home")
