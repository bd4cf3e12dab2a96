"""Closing the month (SPEC sections 4 and 7): reconciliation between what PSA approved, what
ERP posted and what was invoiced; and the period close — the cut-off, what is ready, what
slipped, and the cases that stand in the way.

Both are as things stand now, for a billing period P (a calendar month) and the KPI filters.
"""
import datetime as dt
from collections import defaultdict
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

from django.db.models import (
    BooleanField,
    Case,
    Count,
    Exists,
    Expression,
    F,
    OuterRef,
    Q,
    QuerySet,
    Sum,
    Value,
    When,
)
from django.db.models.expressions import Combinable
from django.utils import timezone

from opsview import models as state
from opsview.calendar import close_calendar, cutoff
from opsview.selectors import (
    APPROVED_OR_LATER,
    BILLABLE_EXPENSE,
    BILLABLE_TIME,
    BILLED_NOW,
    EXPENSE_VALUE,
    TIME_VALUE,
    ZERO,
    dated_items,
    opsview_counts,
    project_filters,
    total,
)
from opsview.timeline import day_start, firm_zone
from reporting import kpis
from reporting.kpis.formatting import Filters, Json

IDS_SHOWN = 100
GAPS = ["approved_not_posted", "posted_not_billed", "billed_not_posted", "reversed_but_billed"]
# kind in the answer: (object type, external id, value, currency, what has billable value)
RECONCILED = {
    "time": ("time_entry", "time_entry_id", TIME_VALUE, F("project__currency"), BILLABLE_TIME),
    "expenses": ("expense", "expense_id", EXPENSE_VALUE, F("currency"), BILLABLE_EXPENSE),
}


# --- Reconciliation --------------------------------------------------------------------------
def _reconciliation_sets(billable: Q) -> dict[str, Q]:
    """The sets of items reconciliation compares, as conditions over P's dated items."""
    counted = Q(status__in=APPROVED_OR_LATER)
    posted = counted & Q(posted_at__isnull=False)
    billed = counted & BILLED_NOW
    return {
        "approved": counted,
        "posted": posted,
        "billed": billed,
        # Approved and no posted event, whatever came after (SPEC section 7, Posted).
        "approved_not_posted": counted & Q(posted_at__isnull=True),
        # Billable value only: what should be on an invoice and is not.
        "posted_not_billed": posted & billable & ~BILLED_NOW,
        "billed_not_posted": billed & Q(posted_at__isnull=True),
    }


def reconciliation(*, period: str, first_day: dt.date, last_day: dt.date,
                   filters: Filters | None = None) -> Json:
    """Approved ↔ posted ↔ billed for P's time entries and expenses — counts of every item
    approved or later, hours, billable value per currency — and the lists behind each gap;
    beside them the middleware's own reports for P and whether they agree with OpsView."""
    filters = filters or {}
    result: Json = {"period": period, "filters": kpis._clean(filters)}
    for kind, (object_type, key, value, currency, billable) in RECONCILED.items():
        # Every set below is approved-or-later or reversed: saying so lets the (status,
        # date) index find the period's items instead of reading every item there is.
        items = dated_items(object_type, first_day, last_day, filters).filter(
            status__in=[*APPROVED_OR_LATER, "reversed"])
        result[kind] = _reconcile_kind(items, key, value, currency, billable,
                                       hours=kind == "time")
    result["reported"] = reported(first_day, last_day)
    return result


def _reconcile_kind(items: QuerySet, key: str, value: Expression, currency: Combinable,
                    billable: Q,
                    hours: bool) -> Json:
    """One grouped pass over the period's items — by currency, status and whether each is
    posted, billed now and billable — from which every set is summed."""
    flags = {"f_posted": Q(posted_at__isnull=False), "f_billed": BILLED_NOW,
             "f_billable": billable}
    rows = list(items.values(
        "status", ccy=currency,
        **{name: Case(When(condition, then=Value(True)), default=Value(False),
                      output_field=BooleanField()) for name, condition in flags.items()})
        .annotate(n=Count("pk"), v=total(value), **({"h": Sum("hours")} if hours else {}))
        .order_by())
    figures = {}
    for name, holds in SETS.items():
        if holds is None:
            figures[name] = _reversed_while_billed(items, key, value, currency)
            continue
        members = [row for row in rows if holds(row)]
        part = {"count": sum(row["n"] for row in members)}
        if hours:
            part["hours"] = kpis.money(sum((row["h"] or ZERO for row in members), ZERO))
        part["currencies"] = _currencies(members)
        if name in GAPS:
            part["ids"] = _first_ids(items.filter(_reconciliation_sets(billable)[name]), key,
                                     part["count"]) if part["count"] else []
        figures[name] = part
    return figures


def _counted(row: Mapping[str, Any]) -> bool:
    return row["status"] in APPROVED_OR_LATER


# Each set of `_reconciliation_sets` as a test of one group of `_reconcile_kind`.
SETS = {
    "approved": _counted,
    "posted": lambda r: _counted(r) and r["f_posted"],
    "billed": lambda r: _counted(r) and r["f_billed"],
    "approved_not_posted": lambda r: _counted(r) and not r["f_posted"],
    "posted_not_billed": lambda r: (_counted(r) and r["f_posted"] and r["f_billable"]
                                    and not r["f_billed"]),
    "billed_not_posted": lambda r: _counted(r) and r["f_billed"] and not r["f_posted"],
    "reversed_but_billed": None,
}


def _currencies(rows: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """{currency: billable value} of the currencies holding billable items of the set
    (blank ones, on records not known yet, left out)."""
    totals: dict[str, Decimal] = {}
    for row in rows:
        if row["ccy"] and row["f_billable"]:
            totals[row["ccy"]] = totals.get(row["ccy"], ZERO) + row["v"]
    return {c: kpis.money(v) for c, v in sorted(totals.items())}


# Below this many, a gap's ids are read by the period's index and sorted here; above it the
# id order of the unique index finds the first hundred at once.
SORT_HERE = 5000


def _first_ids(items: QuerySet, key: str, count: int) -> list[Any]:
    if count <= SORT_HERE:
        return sorted(items.values_list(key, flat=True))[:IDS_SHOWN]
    return list(items.order_by(key).values_list(key, flat=True)[:IDS_SHOWN])


def _reversed_while_billed(items: QuerySet, key: str, value: Expression, currency: Combinable,
                           ) -> Json:
    """Items reversed while the invoice billing them was issued and not voided: it still
    bills them, so the invoice needs a credit note. Only time entries are reversed."""
    if not hasattr(items.model, "reversed_at"):
        return {"count": 0, "currencies": {}, "ids": []}
    zone = firm_zone()
    rows = [r for r in items.filter(status="reversed").filter(BILLED_NOW)
            .values(key, "reversed_at", issued=F("invoice__issued_date"), value_=value,
                    ccy=currency)
            if r["issued"] and r["reversed_at"]
            and day_start(r["issued"], zone) <= r["reversed_at"]]
    totals: defaultdict[str, Decimal] = defaultdict(lambda: ZERO)
    for row in rows:
        if row["ccy"]:
            totals[row["ccy"]] += row["value_"]
    return {"count": len(rows),
            "currencies": {c: kpis.money(v) for c, v in sorted(totals.items())},
            "ids": sorted(r[key] for r in rows)[:IDS_SHOWN]}


def reported(first_day: dt.date, last_day: dt.date) -> list[Json]:
    """The latest report per flow, object type and period lying in [first_day, last_day],
    with OpsView's own counts (time entries and expenses; null for other object types) and
    whether the report agrees with them. The middleware reports whole flows, so no filter
    applies."""
    rows = []
    for report in state.ReconciliationReport.objects.filter(
            period_start__gte=first_day, period_end__lte=last_day).order_by(
            "flow", "object_type", "period_start", "period_end"):
        own = opsview_counts(report.object_type, report.period_start, report.period_end)
        rows.append({
            "flow": report.flow, "object_type": report.object_type,
            "period_start": report.period_start.isoformat(),
            "period_end": report.period_end.isoformat(),
            "source_count": report.source_count, "target_count": report.target_count,
            "opsview_source_count": own[0], "opsview_target_count": own[1],
            "agrees": None if own[0] is None
            else (report.source_count, report.target_count) == own,
            "reported_at": kpis._iso(report.version_time),
        })
    return rows


# --- The cut-off ---------------------------------------------------------------------------
def _cutoff_figures(last_day: dt.date, legal_entity: str | None, now: dt.datetime) -> Json:
    day, moment = cutoff(last_day, legal_entity or "")  # no legal entity: the firm's
    return {"cutoff_date": day.isoformat(), "cutoff_at": moment.isoformat(),
            "seconds_to_cutoff": round((moment - now).total_seconds())}


# --- Period close ----------------------------------------------------------------------------
def period_close(*, period: str, first_day: dt.date, last_day: dt.date,
                 filters: Filters | None = None, now: dt.datetime | None = None) -> Json:
    """Where the billing of P stands against its cut-off: readiness of P's population,
    what slipped past the cut-off once it has passed, and the open cases blocking P."""
    filters = filters or {}
    now = now or timezone.now()
    legal_entity = filters.get("legal_entity", "")
    head = _cutoff_figures(last_day, legal_entity, now)
    moment = dt.datetime.fromisoformat(head["cutoff_at"])
    readiness = kpis.invoice_readiness(period=period, first_day=first_day, last_day=last_day,
                                       filters=filters)
    slipped = slipped_values(first_day, last_day, moment, filters) if now >= moment else None
    currencies = {}
    for currency, f in readiness["currencies"].items():
        currencies[currency] = {
            "billable_value": f["billable_value"], "billed_value": f["invoiced_value"],
            "in_billing_value": f["in_billing_value"], "ready_value": f["ready_value"],
            "not_ready_value": f["not_ready_value"], "not_ready": f["not_ready"],
            "readiness_ratio": f["readiness_ratio"],
            "slipped_value": None if slipped is None
            else kpis.money(slipped.get(currency, ZERO)),
        }
    result = {"period": period, "filters": kpis._clean(filters), **head,
              "working_day": close_calendar(legal_entity)[0], "passed": now >= moment,
              "currencies": currencies,
              "blocking_cases": blocking_cases(first_day, last_day, moment, filters, now)}
    if not legal_entity:
        result["cutoffs"] = [{"legal_entity": entity,
                              **_cutoff_figures(last_day, entity, now)}
                             for entity in kpis.filter_choices()["legal_entities"]]
    return result


def _span_exists(kind: str, *conditions: Q, **lookups: Any) -> Exists:
    return Exists(state.WipSpan.objects.filter(*conditions, kind=kind, record_id=OuterRef("pk"),
                                               **lookups))


def billed_by(kind: str, moment: dt.datetime, cutoff_date: dt.date) -> Q:
    """A Q over items of `kind`: billed at `moment` — counted then and not unbilled WIP
    then. An item is WIP while one of its spans holds it, so one whose spans all ended by
    then had been billed; one never WIP at all was billed the moment it was counted
    (approved; a milestone: completed)."""
    holds = _span_exists(kind, Q(end__isnull=True) | Q(end__gte=moment), start__lt=moment)
    counted_then = (Q(completed_on__lte=cutoff_date) if kind == "milestone"
                    else Q(approved_at__lt=moment))
    return ((_span_exists(kind, start__lt=moment) & ~holds)
            | (~_span_exists(kind) & counted_then))


def slipped_values(first_day: dt.date, last_day: dt.date, moment: dt.datetime,
                   filters: Filters | None) -> dict[str, Decimal]:
    """{currency: value} of P's population (as it stands now) not billed by `moment`."""
    cutoff_date = (moment - dt.timedelta(microseconds=1)).astimezone(firm_zone()).date()
    totals: defaultdict[str, Decimal] = defaultdict(lambda: ZERO)
    for queryset, currency, value, _ in kpis.readiness_population(first_day, last_day,
                                                                  filters):
        kind = queryset.model.KIND
        for row in (queryset.exclude(billed_by(kind, moment, cutoff_date))
                    .values(ccy=F(currency)).annotate(value_=total(value)).order_by()):
            totals[row["ccy"]] += row["value_"]
    return totals


# Case types that stand in the way of billing a period, and what they are about.
PROJECT_CASES = ["approved_time_unposted", "approved_expense_unposted", "missing_billing_setup"]


def blocking_case_filter(first_day: dt.date, last_day: dt.date,
                         filters: Filters | None = None) -> Q:
    """A Q over open cases: those that block billing of P — on a project with an unbilled
    item of P's population, on an invoice holding P's items, or on one of P's milestones.
    Read from the open cases' side: there are far fewer of them than items."""
    from exceptions.models import Case

    open_cases = Case.objects.filter(status__in=Case.OPEN_STATES)
    candidates = set(open_cases.filter(type__in=PROJECT_CASES, object_kind="project")
                     .values_list("object_id", flat=True))
    blocked = set(open_cases.filter(type="invoice_blocked").values_list("object_id", flat=True))
    projects, invoices = set(), set()
    for queryset, _, _, _ in kpis.readiness_population(first_day, last_day, filters):
        unbilled = queryset.exclude(BILLED_NOW)
        if candidates:
            projects |= set(unbilled.filter(project__project_id__in=candidates).values_list(
                "project__project_id", flat=True).distinct())
        if blocked:
            invoices |= set(unbilled.filter(invoice__invoice_id__in=blocked).values_list(
                "invoice__invoice_id", flat=True).distinct())
    milestones = set(state.Milestone.objects.filter(
        completed_on__range=(first_day, last_day), project__is_placeholder=False).filter(
        project_filters(filters)).values_list("milestone_id", flat=True))
    return (Q(type__in=PROJECT_CASES, object_kind="project", object_id__in=projects)
            | Q(type="invoice_blocked", object_id__in=invoices)
            | Q(type="milestone_not_invoiced", object_id__in=milestones))


def blocking_cases(first_day: dt.date, last_day: dt.date, cutoff_at: dt.datetime,
                   filters: Filters | None = None, now: dt.datetime | None = None) -> Json:
    """The open cases blocking P, largest money at stake first. Each is due by the cut-off
    at the latest (SPEC section 3): its due time is the earlier of its resolution target
    and the cut-off, and it is breached past it. At risk: nobody owns it, or its resolution
    target falls after the cut-off."""
    from exceptions.models import Case

    now = now or timezone.now()
    cases = (Case.objects.filter(blocking_case_filter(first_day, last_day, filters),
                                 status__in=Case.OPEN_STATES)
             .select_related("owner").order_by(F("money_at_stake").desc(nulls_last=True),
                                               "resolution_due_at", "pk"))
    rows: list[Json] = []
    money: defaultdict[str, Decimal] = defaultdict(lambda: ZERO)
    for case in cases:
        due = min(filter(None, [case.resolution_due_at, cutoff_at]))
        late = case.resolution_due_at is None or case.resolution_due_at > cutoff_at
        if case.money_at_stake is not None and case.currency:
            money[case.currency] += case.money_at_stake
        rows.append({
            "id": case.pk, "type": case.type, "title": case.title, "status": case.status,
            "object_kind": case.object_kind, "object_id": case.object_id,
            "project_id": case.project_id or None,
            "owner": case.owner.username if case.owner else None,
            "money_at_stake": None if case.money_at_stake is None
            else kpis.money(case.money_at_stake),
            "currency": case.currency or None,
            "resolution_due_at": kpis._iso(case.resolution_due_at),
            "due_at": due.isoformat(),
            "at_risk": case.owner_id is None or late,
            "breached": now >= due or case.sla_state == "breached",
        })
    return {"count": len(rows), "at_risk": sum(r["at_risk"] for r in rows),
            "breached": sum(r["breached"] for r in rows),
            "currencies": {c: kpis.money(v) for c, v in sorted(money.items())},
            "cases": rows}
