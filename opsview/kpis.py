"""The KPIs of SPEC section 4: one function each, plain arguments in, JSON-ready dicts out.

The pages, the read API and the tests all call these functions. Money and hours come out as
decimal strings with two places, ratios as numbers (None on an empty denominator), durations
in seconds. Amounts are grouped by currency and never converted. Time entries that were
rejected or reversed count nowhere; a record whose project or person is still a placeholder
is not counted until the master record arrives.
"""
import datetime as dt
import math
from collections import defaultdict
from decimal import Decimal

from django.conf import settings
from django.db import connection
from django.db.models import (
    Case,
    Count,
    DecimalField,
    ExpressionWrapper,
    F,
    Max,
    Min,
    Q,
    Sum,
    Value,
    When,
)
from django.db.models.functions import Coalesce
from django.utils import timezone

from ingestion.models import DuplicateDelivery, InboxEvent

from . import models as state

CENT = Decimal("0.01")
ZERO = Decimal("0")
AMOUNT = DecimalField(max_digits=24, decimal_places=6)
APPROVED_OR_LATER = ["approved", "posted", "invoiced"]
AGING_BUCKETS = ["0-30", "31-60", "61-90", "90+"]


# --- Formatting ------------------------------------------------------------------------------
def money(value):
    """A decimal string with two places: '1250.00'."""
    return str(Decimal(value or 0).quantize(CENT))


def ratio(numerator, denominator):
    if not denominator:
        return None
    return round(float(Decimal(numerator) / Decimal(denominator)), 4)


def percentile_cont(values, fraction):
    """Linear interpolation between closest ranks, as PostgreSQL's percentile_cont."""
    ordered = sorted(values)
    if not ordered:
        return None
    position = fraction * (len(ordered) - 1)
    lower, upper = math.floor(position), math.ceil(position)
    return ordered[lower] + (ordered[upper] - ordered[lower]) * (position - lower)


def weekdays(start, end):
    """Monday-to-Friday days between two dates, both included."""
    if end < start:
        return 0
    days = (end - start).days + 1
    full_weeks, rest = divmod(days, 7)
    count = full_weeks * 5
    for offset in range(rest):
        if (start + dt.timedelta(days=full_weeks * 7 + offset)).weekday() < 5:
            count += 1
    return count


# --- Shared querysets ----------------------------------------------------------------------
def _project_filters(filters, prefix="project__"):
    q = Q()
    if filters.get("legal_entity"):
        q &= Q(**{f"{prefix}legal_entity": filters["legal_entity"]})
    if filters.get("practice"):
        q &= Q(**{f"{prefix}practice": filters["practice"]})
    if filters.get("client"):
        q &= Q(**{f"{prefix}client__client_id": filters["client"]})
    return q


def counted_time(filters=None, statuses=APPROVED_OR_LATER):
    return state.TimeEntry.objects.filter(
        _project_filters(filters or {}), status__in=statuses,
        project__is_placeholder=False, person__is_placeholder=False)


def counted_expenses(filters=None, statuses=APPROVED_OR_LATER):
    return state.Expense.objects.filter(
        _project_filters(filters or {}), status__in=statuses,
        project__is_placeholder=False, person__is_placeholder=False)


def counted_milestones(filters=None, statuses=("completed", "invoiced")):
    return state.Milestone.objects.filter(
        _project_filters(filters or {}), status__in=statuses, project__is_placeholder=False)


# hours × bill rate when billable (the entry's rate, else the person's), else 0
TIME_VALUE = Case(
    When(billable=True, then=ExpressionWrapper(
        F("hours") * Coalesce(F("bill_rate"), F("person__bill_rate"), Value(ZERO)),
        output_field=AMOUNT)),
    default=Value(ZERO), output_field=AMOUNT)
LABOR_COST = ExpressionWrapper(
    F("hours") * Coalesce(F("cost_rate"), F("person__cost_rate"), Value(ZERO)),
    output_field=AMOUNT)


def _sum(expression, **filter_kwargs):
    condition = Q(**filter_kwargs) if filter_kwargs else None
    return Coalesce(Sum(expression, filter=condition), Value(ZERO), output_field=AMOUNT)



def _by_currency(queryset, currency_field, **aggregates):
    """{currency: {name: value}} from one grouped query."""
    return {row.pop("ccy"): row for row in
            queryset.values(ccy=F(currency_field)).annotate(**aggregates).order_by()}


# --- Unbilled WIP --------------------------------------------------------------------------
def _aging(date_field, value, as_of):
    edges = {"0-30": Q(**{f"{date_field}__gte": as_of - dt.timedelta(days=30)}),
             "31-60": Q(**{f"{date_field}__lte": as_of - dt.timedelta(days=31),
                           f"{date_field}__gte": as_of - dt.timedelta(days=60)}),
             "61-90": Q(**{f"{date_field}__lte": as_of - dt.timedelta(days=61),
                           f"{date_field}__gte": as_of - dt.timedelta(days=90)}),
             "90+": Q(**{f"{date_field}__lte": as_of - dt.timedelta(days=91)})}
    return {f"age_{i}": Coalesce(Sum(value, filter=edges[bucket]), Value(ZERO),
                                 output_field=AMOUNT)
            for i, bucket in enumerate(AGING_BUCKETS)}


def wip_parts(*, as_of, filters=None):
    """(time, expenses, milestones) querysets of unbilled WIP as of a date."""
    filters = filters or {}
    time = counted_time(filters, ["approved", "posted"]).filter(
        billable=True, work_date__lte=as_of)
    expenses = counted_expenses(filters, ["approved", "posted"]).filter(
        billable=True, incurred_on__lte=as_of)
    milestones = counted_milestones(filters, ["completed"]).filter(completed_on__lte=as_of)
    return time, expenses, milestones


def wip(*, as_of, filters=None):
    time, expenses, milestones = wip_parts(as_of=as_of, filters=filters)
    parts = {
        "time": _by_currency(time, "project__currency", value=_sum(TIME_VALUE),
                             **_aging("work_date", TIME_VALUE, as_of)),
        "expenses": _by_currency(expenses, "currency", value=_sum(F("amount")),
                                 **_aging("incurred_on", F("amount"), as_of)),
        "milestones": _by_currency(milestones, "project__currency", value=_sum(F("amount")),
                                   **_aging("completed_on", F("amount"), as_of)),
    }
    currencies = {}
    for part, rows in parts.items():
        for currency, row in rows.items():
            figures = currencies.setdefault(currency, {"total": ZERO, "time": ZERO,
                                                       "expenses": ZERO, "milestones": ZERO,
                                                       "aging": dict.fromkeys(AGING_BUCKETS, ZERO)})
            figures[part] += row["value"]
            figures["total"] += row["value"]
            for i, bucket in enumerate(AGING_BUCKETS):
                figures["aging"][bucket] += row[f"age_{i}"]
    return {
        "as_of": as_of.isoformat(),
        "filters": _clean(filters),
        "currencies": {
            currency: {**{k: money(figures[k]) for k in ("total", "time", "expenses",
                                                         "milestones")},
                       "aging": {b: money(v) for b, v in figures["aging"].items()}}
            for currency, figures in sorted(currencies.items()) if currency
        },
    }


GROUPS = {
    "client": ("project__client__client_id", "project__client__name"),
    "project": ("project__project_id", "project__name"),
    "practice": ("project__practice", "project__practice"),
    "legal_entity": ("project__legal_entity", "project__legal_entity"),
}


def wip_breakdown(*, as_of, group_by="client", filters=None):
    """WIP rows by client, project, practice or legal entity, with aging, per currency."""
    key, label = GROUPS[group_by]
    time, expenses, milestones = wip_parts(as_of=as_of, filters=filters)
    totals = defaultdict(lambda: {"total": ZERO, **dict.fromkeys(AGING_BUCKETS, ZERO)})
    sources = [
        (time, "project__currency", TIME_VALUE, "work_date"),
        (expenses, "currency", F("amount"), "incurred_on"),
        (milestones, "project__currency", F("amount"), "completed_on"),
    ]
    names = {}
    for queryset, currency, value, date_field in sources:
        rows = (queryset.values(key=F(key), label=F(label), ccy=F(currency))
                .annotate(value=_sum(value), **_aging(date_field, value, as_of)).order_by())
        for row in rows:
            figures = totals[(row["key"], row["ccy"])]
            names[row["key"]] = row["label"]
            figures["total"] += row["value"]
            for i, bucket in enumerate(AGING_BUCKETS):
                figures[bucket] += row[f"age_{i}"]
    result = [
        {"key": key_value, "name": names.get(key_value) or key_value, "currency": currency,
         **{name: money(value) for name, value in figures.items()}}
        for (key_value, currency), figures in totals.items()
    ]
    return sorted(result, key=lambda r: (r["currency"], -Decimal(r["total"]), str(r["key"])))


# --- Invoice readiness ---------------------------------------------------------------------
SETUP_COMPLETE = state.billing_setup_complete_q("project__")


def invoice_readiness(*, period, first_day, last_day, filters=None):
    filters = filters or {}
    time = counted_time(filters).filter(billable=True, work_date__range=(first_day, last_day))
    expenses = counted_expenses(filters).filter(billable=True,
                                                incurred_on__range=(first_day, last_day))
    milestones = counted_milestones(filters).filter(completed_on__range=(first_day, last_day))
    sources = [
        _by_currency(time, "project__currency", **_readiness(TIME_VALUE, "approved")),
        _by_currency(expenses, "currency", **_readiness(F("amount"), "approved")),
        _by_currency(milestones, "project__currency", **_readiness(F("amount"), None)),
    ]
    currencies = {}
    for rows in sources:
        for currency, row in rows.items():
            figures = currencies.setdefault(currency, defaultdict(lambda: ZERO))
            for name, value in row.items():
                figures[name.removeprefix("sum_")] += value
    result = {}
    for currency, f in sorted(currencies.items()):
        not_ready = f["unposted"] + f["missing_billing_setup"]
        result[currency] = {
            "billable_value": money(f["billable"]),
            "invoiced_value": money(f["invoiced"]),
            "ready_value": money(f["ready"]),
            "not_ready_value": money(not_ready),
            "not_ready": {"unposted": money(f["unposted"]),
                          "missing_billing_setup": money(f["missing_billing_setup"])},
            "readiness_ratio": ratio(f["ready"], f["ready"] + not_ready),
        }
    blocked = blocked_invoices(filters)
    return {"period": period, "filters": _clean(filters), "currencies": result,
            "blocked_invoices": blocked}


def _readiness(value, unposted_status):
    """Conditional sums splitting a population into invoiced, ready and the first failing
    reason. `unposted_status` is the status meaning 'not yet posted' (None: milestones).
    The names avoid model fields ("billable"), which an annotation would shadow."""
    pending = ~Q(status="invoiced")
    sums = {"sum_billable": _sum(value), "sum_invoiced": _sum(value, status="invoiced"),
            "sum_unposted": _sum(Value(ZERO, output_field=AMOUNT))}
    if unposted_status:
        sums["sum_unposted"] = _filtered_sum(value, pending & Q(status=unposted_status))
        pending &= ~Q(status=unposted_status)
    sums["sum_missing_billing_setup"] = _filtered_sum(value, pending & ~SETUP_COMPLETE)
    sums["sum_ready"] = _filtered_sum(value, pending & SETUP_COMPLETE)
    return sums


def _filtered_sum(value, condition):
    return Coalesce(Sum(value, filter=condition), Value(ZERO), output_field=AMOUNT)


def counted_invoices(filters=None):
    """Invoices of known clients; the client filter on the invoice's own client."""
    filters = filters or {}
    invoices = state.Invoice.objects.filter(client__is_placeholder=False)
    if filters.get("client"):
        invoices = invoices.filter(client__client_id=filters["client"])
    if filters.get("legal_entity"):
        invoices = invoices.filter(project__legal_entity=filters["legal_entity"])
    if filters.get("practice"):
        invoices = invoices.filter(project__practice=filters["practice"])
    return invoices


def blocked_invoices(filters=None):
    """Invoices blocked right now, by reason."""
    rows = (counted_invoices(filters).filter(status="blocked").values("blocked_reason")
            .annotate(n=Count("pk")).order_by("blocked_reason"))
    by_reason = {row["blocked_reason"] or "other": row["n"] for row in rows}
    return {"count": sum(by_reason.values()), "by_reason": by_reason}


# --- Posting latency -----------------------------------------------------------------------
def posting_latency(*, start, end, filters=None, sla_seconds=None):
    filters = filters or {}
    sla_seconds = sla_seconds or settings.POSTING_SLA_HOURS * 3600
    latencies, within = _latency_percentiles(_posted_between(start, end, filters), sla_seconds)
    backlog = counted_time(filters, ["approved"])
    backlog_totals = backlog.aggregate(count=Count("pk"), hours=Sum("hours"),
                                       oldest=Min("approved_at"))
    backlog_values = _by_currency(backlog, "project__currency", value=_sum(TIME_VALUE))
    return {
        "start": start.isoformat(), "end": end.isoformat(), "filters": _clean(filters),
        "sla_seconds": sla_seconds,
        **latencies,
        "within_sla_ratio": ratio(within, latencies["count"]),
        "backlog": {
            "count": backlog_totals["count"],
            "hours": money(backlog_totals["hours"]),
            "oldest_approved_at": _iso(backlog_totals["oldest"]),
            "currencies": {c: money(r["value"]) for c, r in sorted(backlog_values.items())},
        },
    }


def _posted_between(start, end, filters):
    """Counted time entries posted in [start, end] (days), with an approval time."""
    window_start, window_end = _day_bounds(start, end)
    return counted_time(filters, ["posted", "invoiced"]).filter(
        posted_at__gte=window_start, posted_at__lt=window_end, approved_at__isnull=False)


def _latency_percentiles(posted, sla_seconds):
    """Count, p50/p90/p95 of posted_at − approved_at, and how many were within the SLA."""
    fractions = {"p50_seconds": 0.5, "p90_seconds": 0.9, "p95_seconds": 0.95}
    if connection.vendor == "postgresql":
        sql, params = posted.values("posted_at", "approved_at").query.sql_with_params()
        latency = "extract(epoch FROM q.posted_at - q.approved_at)"
        with connection.cursor() as cursor:
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
                               for name, v in zip(fractions, values)}}, within


# --- Utilization ---------------------------------------------------------------------------
def utilization(*, start, end, filters=None, now=None):
    filters = filters or {}
    now = now or timezone.now()
    entries = counted_time({k: v for k, v in filters.items() if k != "practice"}).filter(
        work_date__range=(start, end))
    people = state.Person.objects.filter(is_placeholder=False)
    if filters.get("practice"):
        entries = entries.filter(person__practice=filters["practice"])
        people = people.filter(practice=filters["practice"])
    factor = Decimal(weekdays(start, end)) / Decimal(5)
    hours = {row["person_id"]: row for row in entries.values("person_id").annotate(
        billable=_sum(F("hours"), billable=True), total=_sum(F("hours"))).order_by()}
    by_person, by_practice = [], defaultdict(lambda: defaultdict(lambda: ZERO))
    totals = defaultdict(lambda: ZERO)
    active = people.filter(Q(active=True) | Q(pk__in=list(hours)))
    for person in active.values("pk", "person_id", "name", "practice", "active",
                                "capacity_hours_per_week").order_by("practice", "person_id"):
        worked = hours.get(person["pk"], {"billable": ZERO, "total": ZERO})
        capacity = person["capacity_hours_per_week"] * factor if person["active"] else ZERO
        by_person.append({
            "person_id": person["person_id"], "name": person["name"],
            "practice": person["practice"], "billable_hours": money(worked["billable"]),
            "total_hours": money(worked["total"]), "capacity_hours": money(capacity),
            "utilization_ratio": ratio(worked["billable"], capacity),
        })
        for bucket in (by_practice[person["practice"]], totals):
            bucket["billable"] += worked["billable"]
            bucket["total"] += worked["total"]
            bucket["capacity"] += capacity
    newest = InboxEvent.objects.filter(type__startswith="time_entry.").aggregate(
        newest=Max("received_at"))["newest"]
    return {
        "start": start.isoformat(), "end": end.isoformat(), "filters": _clean(filters),
        "weekdays": weekdays(start, end),
        "billable_hours": money(totals["billable"]), "total_hours": money(totals["total"]),
        "capacity_hours": money(totals["capacity"]),
        "utilization_ratio": ratio(totals["billable"], totals["capacity"]),
        "freshness_seconds": None if newest is None else round((now - newest).total_seconds()),
        "by_practice": [
            {"practice": practice, "billable_hours": money(f["billable"]),
             "total_hours": money(f["total"]), "capacity_hours": money(f["capacity"]),
             "utilization_ratio": ratio(f["billable"], f["capacity"])}
            for practice, f in sorted(by_practice.items())
        ],
        "by_person": by_person,
    }


# --- Integration health --------------------------------------------------------------------
def integration_health(*, start, end, now=None):
    """Flows, inbox, duplicates and reconciliation gaps for event times in [start, end)."""
    now = now or timezone.now()
    attempts = state.SyncAttempt.objects.filter(occurred_at__gte=start, occurred_at__lt=end)
    flows = {row["flow"]: row for row in attempts.values("flow").annotate(
        n_ok=Count("pk", filter=Q(succeeded=True)),
        n_failed=Count("pk", filter=Q(succeeded=False)),
        src=Max("source_system"), tgt=Max("target_system"),
    ).order_by()}
    last_events = _last_event_by_flow()
    p95 = _p95_latency_by_flow(attempts)
    open_failures = open_sync_failures_by_flow()
    stale_after = dt.timedelta(minutes=settings.STALE_FLOW_MINUTES)
    result_flows = []
    for flow in sorted(set(flows) | set(last_events)):
        row = flows.get(flow, {"n_ok": 0, "n_failed": 0})
        last = last_events.get(flow)
        result_flows.append({
            "flow": flow,
            "source_system": row.get("src") or _systems(flow)[0],
            "target_system": row.get("tgt") or _systems(flow)[1],
            "succeeded": row["n_ok"], "failed": row["n_failed"],
            "success_ratio": ratio(row["n_ok"], row["n_ok"] + row["n_failed"]),
            "p95_latency_ms": p95.get(flow),
            "last_event_at": _iso(last),
            "stale": last is None or now - last > stale_after,
            "open_failures": open_failures.get(flow, 0),
        })
    pending = InboxEvent.objects.filter(status=InboxEvent.Status.PENDING).aggregate(
        n=Count("pk"), oldest=Min("received_at"))
    gaps = state.ReconciliationReport.objects.exclude(source_count=F("target_count"))
    return {
        "start": start.isoformat(), "end": end.isoformat(),
        "flows": result_flows,
        "inbox": {
            "pending": pending["n"],
            "oldest_pending_age_seconds": None if pending["oldest"] is None
            else round((now - pending["oldest"]).total_seconds()),
            "dead": InboxEvent.objects.filter(status=InboxEvent.Status.DEAD).count(),
            "unhandled": InboxEvent.objects.filter(status=InboxEvent.Status.UNHANDLED).count(),
        },
        "duplicates": DuplicateDelivery.objects.filter(received_at__gte=start,
                                                       received_at__lt=end).count(),
        "conflicts": DuplicateDelivery.objects.filter(received_at__gte=start, received_at__lt=end,
                                                      conflict=True).count(),
        "reconciliation_gaps": [
            {"flow": g.flow, "object_type": g.object_type,
             "period_start": g.period_start.isoformat(), "period_end": g.period_end.isoformat(),
             "source_count": g.source_count, "target_count": g.target_count,
             "gap": g.source_count - g.target_count}
            for g in gaps.order_by("flow", "object_type", "period_start")
        ],
    }


def _last_event_by_flow():
    """{flow: newest occurred_at}; on PostgreSQL a skip scan of the (flow, occurred_at) index
    instead of grouping every sync attempt ever received."""
    if connection.vendor != "postgresql":
        return dict(state.SyncAttempt.objects.values("flow").annotate(last=Max("occurred_at"))
                    .order_by().values_list("flow", "last"))
    table = state.SyncAttempt._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(f"""
            WITH RECURSIVE flows AS (
                (SELECT flow FROM {table} ORDER BY flow LIMIT 1)
                UNION ALL
                SELECT (SELECT s.flow FROM {table} s WHERE s.flow > flows.flow
                        ORDER BY s.flow LIMIT 1) FROM flows WHERE flows.flow IS NOT NULL)
            SELECT flow, (SELECT max(occurred_at) FROM {table} s WHERE s.flow = flows.flow)
            FROM flows WHERE flow IS NOT NULL""")
        return dict(cursor.fetchall())


def _systems(flow):
    row = (state.SyncAttempt.objects.filter(flow=flow).order_by("-occurred_at")
           .values("source_system", "target_system").first())
    return (row["source_system"], row["target_system"]) if row else ("", "")


def _p95_latency_by_flow(attempts):
    attempts = attempts.filter(latency_ms__isnull=False)
    if connection.vendor == "postgresql":
        sql, params = attempts.values("pk").query.sql_with_params()
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT flow, percentile_cont(0.95) WITHIN GROUP (ORDER BY latency_ms) "
                f"FROM {state.SyncAttempt._meta.db_table} WHERE id IN ({sql}) GROUP BY flow",
                params)
            return {flow: round(float(value), 1) for flow, value in cursor.fetchall()}
    latencies = defaultdict(list)
    for flow, latency in attempts.values_list("flow", "latency_ms"):
        latencies[flow].append(latency)
    return {flow: round(float(percentile_cont(values, 0.95)), 1)
            for flow, values in latencies.items()}


def open_sync_failures_by_flow():
    """Objects per flow whose latest sync attempt failed."""
    try:
        from exceptions.kpis import open_sync_failures_by_flow as from_cases
    except ImportError:
        from_cases = None
    if from_cases is not None:
        return from_cases()
    latest = (state.SyncAttempt.objects.values("flow", "object_type", "object_id")
              .annotate(last=Max("occurred_at")).order_by())
    failed = defaultdict(int)
    last_by_object = {(r["flow"], r["object_type"], r["object_id"]): r["last"] for r in latest}
    for flow, object_type, object_id, occurred_at in (
            state.SyncAttempt.objects.filter(succeeded=False)
            .values_list("flow", "object_type", "object_id", "occurred_at")):
        if last_by_object.get((flow, object_type, object_id)) == occurred_at:
            failed[flow] += 1
    return dict(failed)


# --- Margin and billing --------------------------------------------------------------------
MARGIN_GROUPS = {
    "project": ("project__project_id", "project__name"),
    "practice": ("project__practice", "project__practice"),
    "client": ("project__client__client_id", "project__client__name"),
}


def margin(*, start, end, group_by="project", filters=None):
    filters = filters or {}
    key, label = MARGIN_GROUPS[group_by]
    time = counted_time(filters).filter(work_date__range=(start, end))
    expenses = counted_expenses(filters).filter(billable=True, incurred_on__range=(start, end))
    milestones = counted_milestones(filters).filter(completed_on__range=(start, end))
    invoice_key = {"project": "project__project_id", "practice": "project__practice",
                   "client": "client__client_id"}[group_by]
    invoice_label = {"project": "project__name", "practice": "project__practice",
                     "client": "client__name"}[group_by]
    invoices = counted_invoices(filters).filter(status__in=["issued", "paid"],
                                                issued_on__range=(start, end))
    revenue = state.RevenueRecognition.objects.filter(
        _project_filters(filters), project__is_placeholder=False,
        period__gte=start.strftime("%Y-%m"), period__lte=end.strftime("%Y-%m"))

    rows = defaultdict(lambda: defaultdict(lambda: ZERO))
    names = {}

    def collect(queryset, key_field, label_field, currency_field, **aggregate):
        for row in (queryset.values(key=F(key_field), label=F(label_field),
                                    ccy=F(currency_field))
                    .annotate(**aggregate).order_by()):
            names[row["key"]] = row["label"]
            for name, value in row.items():
                if name not in ("key", "label", "ccy"):
                    rows[(row["key"], row["ccy"])][name] += value

    collect(time, key, label, "project__currency",
            earned=_sum(TIME_VALUE), labor_cost=_sum(LABOR_COST))
    collect(expenses, key, label, "currency", earned=_sum(F("amount")))
    collect(milestones, key, label, "project__currency", earned=_sum(F("amount")))
    collect(invoices, invoice_key, invoice_label, "currency", billed=_sum(F("amount")))
    collect(revenue, key, label, "currency", recognized=_sum(F("amount")))
    result = []
    for (key_value, currency), f in rows.items():
        profit = f["earned"] - f["labor_cost"]
        result.append({
            "key": key_value, "name": names.get(key_value) or key_value, "currency": currency,
            "earned_revenue": money(f["earned"]), "labor_cost": money(f["labor_cost"]),
            "margin": money(profit), "margin_ratio": ratio(profit, f["earned"]),
            "billed_revenue": money(f["billed"]), "recognized_revenue": money(f["recognized"]),
        })
    result.sort(key=lambda r: (r["currency"], -Decimal(r["earned_revenue"]), str(r["key"])))
    return {"start": start.isoformat(), "end": end.isoformat(), "group_by": group_by,
            "filters": _clean(filters), "rows": result}


# --- Receivables ---------------------------------------------------------------------------
def receivables(*, as_of, filters=None):
    invoices = counted_invoices(filters).filter(issued_on__lte=as_of)
    since = as_of - dt.timedelta(days=90)
    rows = _by_currency(
        invoices, "currency",
        open_ar=_sum(F("amount"), status="issued"),
        issued_90d=_sum(F("amount"), status__in=["issued", "paid"], issued_on__gt=since),
    )
    return {
        "as_of": as_of.isoformat(), "filters": _clean(filters),
        "currencies": {
            currency: {"open_ar": money(r["open_ar"]), "issued_90d": money(r["issued_90d"]),
                       "dso_days": None if not r["issued_90d"]
                       else round(float(r["open_ar"] / r["issued_90d"] * 90), 1)}
            for currency, r in sorted(rows.items()) if currency
        },
    }


# --- Helpers -------------------------------------------------------------------------------
def _day_bounds(start, end):
    """[start 00:00 UTC, end + 1 day 00:00 UTC): inclusive dates as a half-open interval."""
    tz = dt.timezone.utc
    return (dt.datetime.combine(start, dt.time.min, tz),
            dt.datetime.combine(end + dt.timedelta(days=1), dt.time.min, tz))


def _iso(value):
    return value.isoformat() if value else None


def _clean(filters):
    return {k: v for k, v in (filters or {}).items() if v}


# --- Series and breakdowns for the pages ----------------------------------------------------
def readiness_breakdown(*, first_day, last_day, group_by="project", filters=None):
    """Invoice readiness per project or client, per currency, largest not-ready first."""
    key, label = GROUPS[group_by]
    filters = filters or {}
    sources = [
        (counted_time(filters).filter(billable=True, work_date__range=(first_day, last_day)),
         "project__currency", TIME_VALUE, "approved"),
        (counted_expenses(filters).filter(billable=True,
                                          incurred_on__range=(first_day, last_day)),
         "currency", F("amount"), "approved"),
        (counted_milestones(filters).filter(completed_on__range=(first_day, last_day)),
         "project__currency", F("amount"), None),
    ]
    totals = defaultdict(lambda: defaultdict(lambda: ZERO))
    names = {}
    for queryset, currency, value, unposted in sources:
        for row in (queryset.values(key=F(key), label=F(label), ccy=F(currency))
                    .annotate(**_readiness(value, unposted)).order_by()):
            names[row["key"]] = row["label"]
            for name, amount in row.items():
                if name.startswith("sum_"):
                    totals[(row["key"], row["ccy"])][name.removeprefix("sum_")] += amount
    rows = []
    for (key_value, currency), f in totals.items():
        not_ready = f["unposted"] + f["missing_billing_setup"]
        rows.append({"key": key_value, "name": names.get(key_value) or key_value,
                     "currency": currency, "billable_value": money(f["billable"]),
                     "invoiced_value": money(f["invoiced"]), "ready_value": money(f["ready"]),
                     "unposted": money(f["unposted"]),
                     "missing_billing_setup": money(f["missing_billing_setup"]),
                     "not_ready_value": money(not_ready),
                     "readiness_ratio": ratio(f["ready"], f["ready"] + not_ready)})
    return sorted(rows, key=lambda r: (-Decimal(r["not_ready_value"]), str(r["key"])))


def posting_latency_trend(*, end, weeks=12, filters=None):
    """Weekly posting-latency percentiles for the `weeks` weeks ending on `end`."""
    sla_seconds = settings.POSTING_SLA_HOURS * 3600
    result = []
    for back in range(weeks - 1, -1, -1):
        week_end = end - dt.timedelta(days=7 * back)
        week_start = week_end - dt.timedelta(days=6)
        # The percentiles alone: the unposted backlog is not a weekly figure.
        figures, within = _latency_percentiles(
            _posted_between(week_start, week_end, filters or {}), sla_seconds)
        result.append({"week": week_start.isoformat(), **figures,
                       "within_sla_ratio": ratio(within, figures["count"])})
    return result


def flow_series(*, start, end):
    """Sync attempts per flow and day, succeeded and failed, for event times in [start, end)."""
    from django.db.models.functions import TruncDate

    rows = (state.SyncAttempt.objects.filter(occurred_at__gte=start, occurred_at__lt=end)
            .annotate(day=TruncDate("occurred_at")).values("day", "flow")
            .annotate(n_ok=Count("pk", filter=Q(succeeded=True)),
                      n_failed=Count("pk", filter=Q(succeeded=False))).order_by("day", "flow"))
    return [{"day": r["day"].isoformat(), "flow": r["flow"], "succeeded": r["n_ok"],
             "failed": r["n_failed"]} for r in rows]


def wip_entries(*, as_of, filters=None, limit=200):
    """The unbilled time entries behind a WIP figure, oldest first (the drill-down)."""
    time, _, _ = wip_parts(as_of=as_of, filters=filters)
    rows = (time.annotate(value=TIME_VALUE)
            .values("time_entry_id", "work_date", "hours", "status", "value",
                    "project__project_id", "project__name", "project__currency",
                    "person__name", "project__client__name")
            .order_by("work_date", "time_entry_id")[:limit])
    return [{"time_entry_id": r["time_entry_id"], "work_date": r["work_date"].isoformat(),
             "age_days": (as_of - r["work_date"]).days, "client": r["project__client__name"],
             "project": r["project__name"] or r["project__project_id"],
             "person": r["person__name"], "status": r["status"], "hours": money(r["hours"]),
             "value": money(r["value"]), "currency": r["project__currency"]} for r in rows]


def filter_choices():
    """The values the filters offer: legal entities, practices and clients that exist."""
    projects = state.Project.objects.filter(is_placeholder=False)
    return {
        "legal_entities": sorted(set(projects.values_list("legal_entity", flat=True)) - {""}),
        "practices": sorted(set(projects.values_list("practice", flat=True)) - {""}),
        "clients": list(state.Client.objects.filter(is_placeholder=False)
                        .order_by("name").values_list("client_id", "name")),
    }
