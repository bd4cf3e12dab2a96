"""The KPIs of SPEC section 4 (version 2): one function each, plain arguments in, JSON-ready
dicts out.

The pages, the read API and the tests all call these functions. Money and hours come out as
decimal strings with two places, ratios as numbers (None on an empty denominator), durations
in seconds. Amounts are grouped by currency and never converted. "Value" is billable value
(`opsview.selectors`); "as of T" is point in time, read from the WIP spans and the invoices'
dates (`opsview.timeline`).
"""
import datetime as dt
import functools
import math
from collections import defaultdict
from decimal import Decimal

from django.conf import settings
from django.db import connection, connections
from django.db.models import (
    Case,
    CharField,
    Count,
    F,
    Max,
    Min,
    Q,
    Sum,
    Value,
    When,
)
from django.db.models.functions import TruncDate
from django.utils import timezone

from ingestion.models import DuplicateDelivery, InboxEvent
from opsview import models as state
from opsview import selectors
from opsview.rhythm import expected_silence
from opsview.selectors import (
    AMOUNT,
    BILLABLE_EXPENSE,
    BILLABLE_MILESTONE,
    BILLABLE_TIME,
    BILLED_NOW,
    EXPENSE_VALUE,
    IN_BILLING_NOW,
    LABOR_COST,
    MILESTONE_VALUE,
    TIME_VALUE,
    ZERO,
    cells_as_of,
    counted_expenses,
    counted_invoices,
    counted_milestones,
    counted_time,
    project_filters,
    spans_as_of,
    total,
    unposted_expenses,
    unposted_time,
)
from opsview.timeline import day_start, end_of, firm_zone

CENT = Decimal("0.01")
AGING_BUCKETS = ["0-30", "31-60", "61-90", "90+"]
WIP_PARTS = ["time", "expenses", "milestones", "fixed_fee"]
SPAN_PART = {"time_entry": "time", "expense": "expenses", "milestone": "milestones"}


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


def percentile_from_counts(counts, fraction):
    """percentile_cont of a multiset given as {value: how many times}: the answer of
    percentile_cont over the values repeated, in time proportional to the distinct ones."""
    items = sorted((value, n) for value, n in counts.items() if n > 0)
    total_count = sum(n for _, n in items)
    if not total_count:
        return None
    position = fraction * (total_count - 1)
    lower, upper = math.floor(position), math.ceil(position)
    found, seen = {}, 0
    for value, n in items:
        for rank in (lower, upper):
            if rank not in found and rank < seen + n:
                found[rank] = value
        seen += n
        if upper in found:
            break
    return found[lower] + (found[upper] - found[lower]) * (position - lower)


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


def age_bucket(days):
    if days <= 30:
        return "0-30"
    if days <= 60:
        return "31-60"
    if days <= 90:
        return "61-90"
    return "90+"


def _by_currency(queryset, currency, **aggregates):
    """{currency: {name: value}} from one grouped query."""
    return {row.pop("ccy"): row for row in
            queryset.values(ccy=currency if not isinstance(currency, str) else F(currency))
            .annotate(**aggregates).order_by()}


# --- Unbilled WIP --------------------------------------------------------------------------
def _age(as_of):
    """The age bucket of a span's item as of a date (age = as-of − the item's date), as an
    expression to group by: one sum per group, not one conditional sum per bucket."""
    return Case(
        When(on_date__gte=as_of - dt.timedelta(days=30), then=Value(AGING_BUCKETS[0])),
        When(on_date__gte=as_of - dt.timedelta(days=60), then=Value(AGING_BUCKETS[1])),
        When(on_date__gte=as_of - dt.timedelta(days=90), then=Value(AGING_BUCKETS[2])),
        default=Value(AGING_BUCKETS[3]), output_field=CharField())


def _wip_rows(as_of, filters, *keys, **named_keys):
    """Value of the WIP cells holding value as of a date, summed per the given keys, age
    bucket and in-billing flag."""
    return [row for cells in cells_as_of(as_of, filters)
            for row in cells.values(*keys, age=_age(as_of), billing=F("in_billing"),
                                    **named_keys)
            .annotate(value=total(F("value"))).order_by()]


def _blank_wip():
    return {"total": ZERO, **dict.fromkeys(WIP_PARTS, ZERO), "in_billing": ZERO,
            "aging": dict.fromkeys(AGING_BUCKETS, ZERO)}


def wip(*, as_of, filters=None):
    """Unbilled WIP as of the end of a date: approved work not billed then, per currency."""
    filters = filters or {}
    currencies = defaultdict(_blank_wip)
    for row in _wip_rows(as_of, filters, "kind", ccy=F("currency")):
        figures = currencies[row["ccy"]]
        figures[SPAN_PART[row["kind"]]] += row["value"]
        figures["total"] += row["value"]
        figures["aging"][row["age"]] += row["value"]
        if row["billing"]:
            figures["in_billing"] += row["value"]
    for position in fixed_fee_wip(as_of=as_of, filters=filters):
        figures = currencies[position["currency"]]
        figures["fixed_fee"] += position["value"]
        figures["total"] += position["value"]
        figures["in_billing"] += position["in_billing"]
        figures["aging"][age_bucket(position["age_days"])] += position["value"]
    return {
        "as_of": as_of.isoformat(),
        "filters": _clean(filters),
        "currencies": {
            currency: {**{k: money(figures[k]) for k in ("total", *WIP_PARTS, "in_billing")},
                       "aging": {b: money(v) for b, v in figures["aging"].items()}}
            for currency, figures in sorted(currencies.items()) if currency
        },
    }


def wip_totals(days, filters=None):
    """{day: {currency: total}}: the WIP total wip(as_of=day) gives, for several days at
    once (a trend), the fixed-fee books read once for all of them."""
    filters = filters or {}
    books = FixedFeeBooks(filters, up_to=max(days))
    result = {}
    for day in days:
        totals = defaultdict(lambda: ZERO)
        for cells in cells_as_of(day, filters):
            for currency, value in (cells.values(ccy=F("currency"))
                                    .annotate(value=total(F("value")))
                                    .values_list("ccy", "value").order_by()):
                totals[currency] += value
        for position in books.positions(day):
            totals[position["currency"]] += position["value"]
        result[day] = {currency: money(value) for currency, value in sorted(totals.items())
                       if currency}
    return result


def fixed_fee_wip(*, as_of, filters=None):
    """Per fixed-fee project with unbilled revenue as of a date: recognized revenue up to
    that month less the invoices on the project issued and not voided by then (less the
    expenses they bill), floored at 0; `in_billing` the part its drafted or blocked
    invoices cover; aged from the last day of the oldest period the billing has not yet
    covered (billing covers periods oldest first)."""
    return FixedFeeBooks(filters, up_to=as_of).positions(as_of)


class FixedFeeBooks:
    """The fixed-fee projects' recognized revenue, invoices and invoiced expenses up to a
    day, read once (a handful of queries), so that their WIP can be told as of that day or
    any day before it — one day for the WIP figures, a dozen for a trend."""

    def __init__(self, filters, up_to):
        fixed_fee = state.Project.objects.filter(
            project_filters(filters, prefix=""), is_placeholder=False,
            billing_method=state.Project.BillingMethod.FIXED_FEE)
        self.projects = {p["pk"]: p for p in fixed_fee.values(
            "pk", "project_id", "name", "currency", "practice", "legal_entity",
            client_key=F("client__client_id"), client_name=F("client__name"))}
        self.revenue = defaultdict(list)  # project pk -> [(period, amount)], oldest first
        self.invoices, self.owners, self.expense_events = {}, set(), defaultdict(list)
        self.expense_amounts = {}
        if not self.projects:
            return
        for project_id, period, amount in (state.RevenueRecognition.objects
                                           .filter(project__in=fixed_fee,
                                                   period__lte=up_to.strftime("%Y-%m"))
                                           .order_by("period")
                                           .values_list("project_id", "period", "amount")):
            self.revenue[project_id].append((period, amount))
        if self.revenue:
            self._read_billing(fixed_fee.values("pk"), end_of(up_to))

    def _read_billing(self, projects, moment):
        """Each project's invoices — its own, and those its milestones name though they are
        filed under no or another project — and the invoiced events of its billable expenses
        (only expenses ever invoiced can be on an invoice). The projects go to the database
        as a subquery, not as a list of thousands of ids."""
        # Announced before the end of a day is announced on a local date up to it: dates
        # read faster than instants, and a trend asks by day.
        fields = ("pk", "amount", "issued_date", "voided_date", "announced_on")
        invoices = state.Invoice.objects.filter(is_placeholder=False).annotate(
            announced_on=TruncDate("announced_at", tzinfo=firm_zone()))
        own = invoices.filter(project_id__in=projects).values_list("project_id", *fields)
        named = invoices.filter(milestones__project_id__in=projects).exclude(
            project_id=F("milestones__project_id")).values_list(
            "milestones__project_id", *fields).distinct()  # once, however many milestones
        for rows in (own, named):
            for project_pk, pk, *dates in rows:
                self.owners.add((project_pk, pk))
                self.invoices[pk] = dates
        self.expense_amounts = dict(state.Expense.objects.filter(
            project_id__in=projects, billable=True, invoice__isnull=False).values_list(
            "pk", "amount"))
        if self.expense_amounts:
            for record_id, at, event_id, ref in state.StageEvent.objects.filter(
                    kind="expense", stage="invoiced", record_id__in=list(self.expense_amounts),
                    at__lt=moment).order_by("at", "event_id").values_list(
                    "record_id", "at", "event_id", "invoice_ref"):
                self.expense_events[record_id].append((at, ref))

    def _invoice_states(self, as_of):
        """{invoice pk: (amount, "billed" | "in_billing" | None)} at the end of `as_of`."""
        states = {}
        for pk, (amount, issued, voided, announced_on) in self.invoices.items():
            state_then = None
            if voided is None or voided > as_of:
                if issued is not None and issued <= as_of:
                    state_then = "billed"
                elif announced_on is not None and announced_on <= as_of:
                    state_then = "in_billing"
            states[pk] = (amount or ZERO, state_then)
        return states

    def _expenses_on(self, as_of):
        """{invoice pk: value of the billable expenses on it at the end of `as_of`}: the
        invoice each expense's latest `invoiced` event by then names."""
        moment, result = end_of(as_of), defaultdict(lambda: ZERO)
        for record_id, events in self.expense_events.items():
            latest = None
            for at, ref in events:  # oldest first
                if at >= moment:
                    break
                latest = ref
            if latest is not None:
                result[latest] += self.expense_amounts[record_id]
        return result

    def positions(self, as_of):
        if not self.revenue:
            return []
        states, expenses = self._invoice_states(as_of), self._expenses_on(as_of)
        billed, in_billing = defaultdict(lambda: ZERO), defaultdict(lambda: ZERO)
        for project_pk, pk in self.owners:
            amount, state_then = states[pk]
            net = amount - expenses.get(pk, ZERO)
            if state_then == "billed":
                billed[project_pk] += net
            elif state_then == "in_billing":
                in_billing[project_pk] += net
        month, positions = as_of.strftime("%Y-%m"), []
        for pk, all_periods in self.revenue.items():
            periods = [(period, amount) for period, amount in all_periods if period <= month]
            if not periods:
                continue
            recognized = sum((amount for _, amount in periods), ZERO)
            covered = billed.get(pk, ZERO)
            value = max(ZERO, recognized - covered)
            if not value:
                continue
            cumulative, oldest = ZERO, periods[-1][0]
            for period, amount in periods:
                cumulative += amount
                if cumulative > covered:
                    oldest = period
                    break
            project = self.projects[pk]
            positions.append({
                "project_pk": pk, "project_id": project["project_id"], "name": project["name"],
                "client": project["client_key"], "client_name": project["client_name"],
                "practice": project["practice"], "legal_entity": project["legal_entity"],
                "currency": project["currency"], "value": value,
                "in_billing": min(value, max(ZERO, in_billing.get(pk, ZERO))),
                "age_days": max(0, (as_of - _period_end(oldest)).days),
                "oldest_period": oldest})
        return positions


@functools.lru_cache(maxsize=1024)
def _period_end(period):
    year, month = int(period[:4]), int(period[5:7])
    return dt.date(year + month // 12, month % 12 + 1, 1) - dt.timedelta(days=1)


GROUPS = {
    "client": ("project__client__client_id", "project__client__name"),
    "project": ("project__project_id", "project__name"),
    "practice": ("project__practice", "project__practice"),
    "legal_entity": ("project__legal_entity", "project__legal_entity"),
}
FIXED_FEE_GROUP = {"client": ("client", "client_name"), "project": ("project_id", "name"),
                   "practice": ("practice", "practice"),
                   "legal_entity": ("legal_entity", "legal_entity")}


def wip_breakdown(*, as_of, group_by="client", filters=None):
    """WIP rows by client, project, practice or legal entity, with aging, per currency."""
    key, label = GROUPS[group_by]
    totals = defaultdict(lambda: {"total": ZERO, "in_billing": ZERO,
                                  **dict.fromkeys(AGING_BUCKETS, ZERO)})
    names = {}
    for row in _wip_rows(as_of, filters, key=F(key), label=F(label), ccy=F("currency")):
        figures = totals[(row["key"], row["ccy"])]
        names[row["key"]] = row["label"]
        figures["total"] += row["value"]
        figures[row["age"]] += row["value"]
        if row["billing"]:
            figures["in_billing"] += row["value"]
    ff_key, ff_label = FIXED_FEE_GROUP[group_by]
    for position in fixed_fee_wip(as_of=as_of, filters=filters):
        figures = totals[(position[ff_key], position["currency"])]
        names[position[ff_key]] = position[ff_label]
        figures["total"] += position["value"]
        figures["in_billing"] += position["in_billing"]
        figures[age_bucket(position["age_days"])] += position["value"]
    result = [
        {"key": key_value, "name": names.get(key_value) or key_value, "currency": currency,
         **{name: money(value) for name, value in figures.items()}}
        for (key_value, currency), figures in totals.items()
    ]
    return sorted(result, key=lambda r: (r["currency"], -Decimal(r["total"]), str(r["key"])))


ENTRY_SOURCES = {
    "time_entry": (state.TimeEntry, "time_entry_id"),
    "expense": (state.Expense, "expense_id"),
    "milestone": (state.Milestone, "milestone_id"),
}


def wip_entries(*, as_of, filters=None, limit=None):
    """Everything behind a WIP figure, oldest first: each unbilled time entry, expense and
    milestone, and each fixed-fee project's unbilled revenue. Its values add up to the WIP
    total."""
    spans = [span for part in spans_as_of(as_of, filters) for span in part.values(
        "kind", "record_id", "on_date", "hours", "in_billing", "value",
        ccy=F("value_currency"), client=F("project__client__name"),
        project_key=F("project__project_id"),
        project_name=F("project__name"), person_name=F("person__name"))
        .order_by("on_date", "kind", "record_id")[:limit]]
    external = {}
    for kind, (model, key) in ENTRY_SOURCES.items():
        pks = [s["record_id"] for s in spans if s["kind"] == kind]
        if pks:
            external[kind] = dict(model.objects.filter(pk__in=pks)
                                  .values_list("pk", key))
    rows = [{
        "kind": s["kind"], "id": external.get(s["kind"], {}).get(s["record_id"], ""),
        "date": s["on_date"].isoformat(), "age_days": (as_of - s["on_date"]).days,
        "client": s["client"], "project": s["project_name"] or s["project_key"],
        "person": s["person_name"] or "",
        "hours": money(s["hours"]) if s["kind"] == "time_entry" else None,
        "value": money(s["value"]), "currency": s["ccy"], "in_billing": s["in_billing"]}
        for s in spans]
    for position in fixed_fee_wip(as_of=as_of, filters=filters):
        oldest_end = _period_end(position["oldest_period"])
        rows.append({"kind": "fixed_fee", "id": position["project_id"],
                     "date": oldest_end.isoformat(), "age_days": position["age_days"],
                     "client": position["client_name"],
                     "project": position["name"] or position["project_id"], "person": "",
                     "hours": None, "value": money(position["value"]),
                     "currency": position["currency"],
                     "in_billing": position["in_billing"] > 0})
    rows.sort(key=lambda r: (r["date"], r["kind"], r["id"]))
    return rows[:limit] if limit else rows


# --- Invoice readiness ---------------------------------------------------------------------
UNBILLED_NOW = Q(invoice__isnull=True) | Q(invoice__status__in=["", "voided"])


def _readiness(value, postable):
    """Conditional sums splitting a population into billed, in billing, ready and the first
    failing reason (unposted, then missing billing set-up). `postable`: whether the items
    are posted to ERP (time and expenses) or not (milestones). The names avoid model
    fields, which an annotation would shadow."""
    rest = UNBILLED_NOW
    sums = {"sum_billable": total(value), "sum_invoiced": total(value, BILLED_NOW),
            "sum_in_billing": total(value, IN_BILLING_NOW),
            "sum_unposted": total(Value(ZERO, output_field=AMOUNT))}
    if postable:
        sums["sum_unposted"] = total(value, rest & Q(posted_at__isnull=True))
        rest &= Q(posted_at__isnull=False)
    sums["sum_missing_billing_setup"] = total(value, rest & ~SETUP_COMPLETE)
    sums["sum_ready"] = total(value, rest & SETUP_COMPLETE)
    return sums


SETUP_COMPLETE = state.billing_setup_complete_q("project__")


def readiness_population(first_day, last_day, filters=None):
    """(queryset, currency, value, postable) of each kind of item billable in a period:
    time-and-materials time, billable expenses and milestones of milestone projects,
    approved (milestones: completed) or later, dated in the period."""
    return [
        (counted_time(filters).filter(BILLABLE_TIME, work_date__range=(first_day, last_day)),
         "project__currency", TIME_VALUE, True),
        (counted_expenses(filters).filter(BILLABLE_EXPENSE,
                                          incurred_on__range=(first_day, last_day)),
         "currency", EXPENSE_VALUE, True),
        (counted_milestones(filters).filter(BILLABLE_MILESTONE,
                                            completed_on__range=(first_day, last_day)),
         "project__currency", MILESTONE_VALUE, False),
    ]


def _readiness_figures(f):
    not_ready = f["unposted"] + f["missing_billing_setup"]
    return {
        "billable_value": money(f["billable"]),
        "invoiced_value": money(f["invoiced"]),
        "in_billing_value": money(f["in_billing"]),
        "ready_value": money(f["ready"]),
        "not_ready_value": money(not_ready),
        "not_ready": {"unposted": money(f["unposted"]),
                      "missing_billing_setup": money(f["missing_billing_setup"])},
        "readiness_ratio": ratio(f["ready"], f["ready"] + not_ready),
    }


def invoice_readiness(*, period, first_day, last_day, filters=None):
    """What of a period's billable value is billed, in billing, ready to bill, and what
    stands in the way of the rest — as things stand now."""
    filters = filters or {}
    currencies = defaultdict(lambda: defaultdict(lambda: ZERO))
    for queryset, currency, value, postable in readiness_population(first_day, last_day,
                                                                    filters):
        for ccy, row in _by_currency(queryset, currency, **_readiness(value, postable)).items():
            for name, amount in row.items():
                currencies[ccy][name.removeprefix("sum_")] += amount
    return {"period": period, "filters": _clean(filters),
            "currencies": {c: _readiness_figures(f) for c, f in sorted(currencies.items())},
            "blocked_invoices": blocked_invoices(filters)}


def blocked_invoices(filters=None):
    """Invoices blocked right now: count, by reason, and amount per currency."""
    blocked = counted_invoices(filters).filter(status="blocked")
    by_reason = {(row["blocked_reason"] or "other"): row["n"] for row in
                 blocked.values("blocked_reason").annotate(n=Count("pk"))
                 .order_by("blocked_reason")}
    amounts = {row["currency"]: money(row["amount"]) for row in
               blocked.values("currency").annotate(amount=Sum("amount")).order_by("currency")}
    return {"count": sum(by_reason.values()), "by_reason": by_reason, "currencies": amounts}


def readiness_breakdown(*, first_day, last_day, group_by="project", filters=None):
    """Invoice readiness per project or client, per currency, largest not-ready first."""
    key, label = GROUPS[group_by]
    totals = defaultdict(lambda: defaultdict(lambda: ZERO))
    names = {}
    for queryset, currency, value, postable in readiness_population(first_day, last_day,
                                                                    filters):
        for row in (queryset.values(key=F(key), label=F(label), ccy=F(currency))
                    .annotate(**_readiness(value, postable)).order_by()):
            names[row["key"]] = row["label"]
            for name, amount in row.items():
                if name.startswith("sum_"):
                    totals[(row["key"], row["ccy"])][name.removeprefix("sum_")] += amount
    rows = []
    for (key_value, currency), f in totals.items():
        figures = _readiness_figures(f)
        rows.append({"key": key_value, "name": names.get(key_value) or key_value,
                     "currency": currency, **{k: v for k, v in figures.items()
                                              if k != "not_ready"}, **figures["not_ready"]})
    return sorted(rows, key=lambda r: (-Decimal(r["not_ready_value"]), str(r["key"])))


# --- Posting latency -----------------------------------------------------------------------
def posting_latency(*, start, end, filters=None, sla_seconds=None):
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


def _backlog(items, currency, value, hours=False):
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


def _posted_between(items, window):
    """Items posted within the window (instants), with an approval time."""
    return items.filter(posted_at__gte=window[0], posted_at__lt=window[1],
                        approved_at__isnull=False)


def _latency_percentiles(posted, sla_seconds):
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
                               for name, v in zip(fractions, values)}}, within


# --- Utilization ---------------------------------------------------------------------------
def utilization(*, start, end, filters=None, now=None):
    """Billable hours (time flagged billable on projects that bill — chargeable time on
    fixed-fee and milestone projects included) against active people's capacity."""
    filters = filters or {}
    now = now or timezone.now()
    entries = counted_time({k: v for k, v in filters.items() if k != "practice"}).filter(
        work_date__range=(start, end))
    people = state.Person.objects.filter(is_placeholder=False)
    if filters.get("practice"):
        entries = entries.filter(person__practice=filters["practice"])
        people = people.filter(practice=filters["practice"])
    factor = Decimal(weekdays(start, end)) / Decimal(5)
    chargeable = Q(billable=True) & ~Q(project__billing_method=state.Project.BillingMethod
                                       .NON_BILLABLE)
    hours = {row["person_id"]: row for row in entries.values("person_id").annotate(
        billable=total(F("hours"), chargeable), total=total(F("hours"))).order_by()}
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
    last_events = selectors.last_event_by_flow()
    rhythms = {r.flow: r for r in state.FlowRhythm.objects.all()}
    p95 = _p95_latency_by_flow(attempts)
    open_failures = open_sync_failures_by_flow()
    zone = firm_zone()
    result_flows = []
    for flow in sorted(set(flows) | set(last_events)):
        row = flows.get(flow, {"n_ok": 0, "n_failed": 0})
        last = last_events.get(flow)
        silence = expected_silence(rhythms.get(flow), last, zone) if last else None
        result_flows.append({
            "flow": flow,
            "source_system": row.get("src") or _systems(flow)[0],
            "target_system": row.get("tgt") or _systems(flow)[1],
            "succeeded": row["n_ok"], "failed": row["n_failed"],
            "success_ratio": ratio(row["n_ok"], row["n_ok"] + row["n_failed"]),
            "p95_latency_ms": p95.get(flow),
            "last_event_at": _iso(last),
            "expected_silence_seconds": None if silence is None
            else round(silence.total_seconds()),
            "stale": last is None or now - last > silence,
            "open_failures": open_failures.get(flow, 0),
        })
    pending = InboxEvent.objects.filter(status=InboxEvent.Status.PENDING).aggregate(
        n=Count("pk"), oldest=Min("received_at"))
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
            for g in state.ReconciliationReport.objects.exclude(
                source_count=F("target_count")).order_by("flow", "object_type", "period_start")
        ],
    }


def _systems(flow):
    row = (state.SyncAttempt.objects.filter(flow=flow).order_by("-occurred_at")
           .values("source_system", "target_system").first())
    return (row["source_system"], row["target_system"]) if row else ("", "")


def _p95_latency_by_flow(attempts):
    attempts = attempts.filter(latency_ms__isnull=False)
    if connection.vendor == "postgresql":
        sql, params = attempts.values("pk").query.sql_with_params()
        with connections[attempts.db].cursor() as cursor:
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
    """Open sync_failed cases per flow."""
    from exceptions.kpis import open_sync_failures_by_flow as from_cases

    return from_cases()


# --- Margin --------------------------------------------------------------------------------
MARGIN_GROUPS = {
    "project": ("project__project_id", "project__name"),
    "practice": ("project__practice", "project__practice"),
    "client": ("project__client__client_id", "project__client__name"),
}
INVOICE_GROUPS = {"project": ("project__project_id", "project__name"),
                  "practice": ("project__practice", "project__practice"),
                  "client": ("client__client_id", "client__name")}


def periods_ending_in(start, end):
    """The months (YYYY-MM) whose last day lies in [start, end]."""
    periods, month = [], start.replace(day=1)
    while month <= end:
        if start <= _period_end(month.strftime("%Y-%m")) <= end:
            periods.append(month.strftime("%Y-%m"))
        month = (month + dt.timedelta(days=32)).replace(day=1)
    return periods


def margin(*, start, end, group_by="project", filters=None):
    """Earned revenue (by billing method) against labor cost, with billed and recognized
    revenue beside them, per group and currency."""
    filters = filters or {}
    key, label = MARGIN_GROUPS[group_by]
    periods = periods_ending_in(start, end)
    time = counted_time(filters).filter(work_date__range=(start, end))
    expenses = counted_expenses(filters).filter(BILLABLE_EXPENSE, incurred_on__range=(start, end))
    milestones = counted_milestones(filters).filter(BILLABLE_MILESTONE,
                                                    completed_on__range=(start, end))
    invoices = counted_invoices(filters).filter(issued_date__range=(start, end)).exclude(
        status="voided")
    revenue = state.RevenueRecognition.objects.filter(
        project_filters(filters), project__is_placeholder=False, period__in=periods)

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

    invoice_key, invoice_label = INVOICE_GROUPS[group_by]
    collect(time, key, label, "project__currency",
            earned=total(TIME_VALUE), labor_cost=total(LABOR_COST))
    collect(expenses, key, label, "currency", earned=total(EXPENSE_VALUE))
    collect(milestones, key, label, "project__currency", earned=total(MILESTONE_VALUE))
    collect(invoices, invoice_key, invoice_label, "currency", billed=total(F("amount")))
    collect(revenue, key, label, "currency", recognized=total(F("amount")))
    collect(revenue.filter(project__billing_method=state.Project.BillingMethod.FIXED_FEE),
            key, label, "currency", earned=total(F("amount")))
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
    """Open AR and DSO as of the end of a date: invoices issued by then, not paid and not
    voided by then."""
    not_voided = Q(voided_date__isnull=True) | Q(voided_date__gt=as_of)
    invoices = counted_invoices(filters).filter(not_voided, issued_date__lte=as_of)
    since = as_of - dt.timedelta(days=89)
    rows = _by_currency(
        invoices, "currency",
        open_ar=total(F("amount"), Q(paid_date__isnull=True) | Q(paid_date__gt=as_of)),
        issued_90d=total(F("amount"), Q(issued_date__gte=since)),
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
    """[start 00:00, end + 1 day 00:00) in the firm's time zone: inclusive dates as a
    half-open interval of instants."""
    return day_start(start), end_of(end)


def _iso(value):
    return value.isoformat() if value else None


def _clean(filters):
    return {k: v for k, v in (filters or {}).items() if v}


# --- Series for the pages ------------------------------------------------------------------
def posting_latency_trend(*, end, weeks=12, filters=None):
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


def flow_series(*, start, end):
    """Sync attempts per flow and day, succeeded and failed, for event times in [start, end)."""
    rows = (state.SyncAttempt.objects.filter(occurred_at__gte=start, occurred_at__lt=end)
            .annotate(day=TruncDate("occurred_at")).values("day", "flow")
            .annotate(n_ok=Count("pk", filter=Q(succeeded=True)),
                      n_failed=Count("pk", filter=Q(succeeded=False))).order_by("day", "flow"))
    return [{"day": r["day"].isoformat(), "flow": r["flow"], "succeeded": r["n_ok"],
             "failed": r["n_failed"]} for r in rows]


def filter_choices():
    """The values the filters offer: legal entities, practices and clients that exist."""
    projects = state.Project.objects.filter(is_placeholder=False)
    return {
        "legal_entities": sorted(set(projects.values_list("legal_entity", flat=True)) - {""}),
        "practices": sorted(set(projects.values_list("practice", flat=True)) - {""}),
        "clients": list(state.Client.objects.filter(is_placeholder=False)
                        .order_by("name").values_list("client_id", "name")),
    }
