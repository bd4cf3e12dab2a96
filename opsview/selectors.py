"""The read queries the KPIs and the exception rules share: which records count, what an item
is worth (SPEC section 2, billing methods) and where it stands in billing.

Items whose project or person is still a placeholder are not counted until the master
record arrives. Values are billable value: time on time-and-materials projects at its rate,
billable expenses on any project that bills, milestones on milestone projects.
"""
import datetime as dt
from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping
from decimal import Decimal
from typing import Any

from django.db import connection, connections
from django.db.models import (
    Case,
    Count,
    DecimalField,
    ExpressionWrapper,
    F,
    Max,
    Q,
    QuerySet,
    Sum,
    Value,
    When,
)
from django.db.models.expressions import RawSQL
from django.db.models.functions import Coalesce
from django.utils import timezone

from . import models as state
from .lifecycle import ExpenseStage, InvoiceStage, Kind, MilestoneStage, TimeEntryStage
from .timeline import end_of

ZERO = Decimal("0")
AMOUNT = DecimalField(max_digits=24, decimal_places=6)
# Time entries and expenses share these stage values (TimeEntryStage, ExpenseStage).
APPROVED_OR_LATER = [TimeEntryStage.APPROVED, TimeEntryStage.POSTED, TimeEntryStage.INVOICED]
T_AND_M = state.Project.BillingMethod.TIME_AND_MATERIALS
NOT_BILLING = ["", state.Project.BillingMethod.NON_BILLABLE]
# The state of the invoice an item is on, now.
BILLED_NOW = Q(invoice__status__in=[InvoiceStage.ISSUED, InvoiceStage.PAID])
IN_BILLING_NOW = Q(invoice__status__in=[InvoiceStage.DRAFTED, InvoiceStage.BLOCKED])


def project_filters(filters: Mapping[str, str] | None, prefix: str = "project__") -> Q:
    """The KPI filters (legal entity, practice, client id) as a Q over a project."""
    q = Q()
    filters = filters or {}
    if filters.get("legal_entity"):
        q &= Q(**{f"{prefix}legal_entity": filters["legal_entity"]})
    if filters.get("practice"):
        q &= Q(**{f"{prefix}practice": filters["practice"]})
    if filters.get("client"):
        q &= Q(**{f"{prefix}client__client_id": filters["client"]})
    return q


def counted_time(filters: Mapping[str, str] | None = None,
                 statuses: Iterable[str] = APPROVED_OR_LATER) -> QuerySet:
    """Time entries in these statuses whose project and person are known."""
    return state.TimeEntry.objects.filter(
        project_filters(filters), status__in=statuses,
        project__is_placeholder=False, person__is_placeholder=False)


def counted_expenses(filters: Mapping[str, str] | None = None,
                     statuses: Iterable[str] = APPROVED_OR_LATER) -> QuerySet:
    """Expenses in these statuses whose project and person are known."""
    return state.Expense.objects.filter(
        project_filters(filters), status__in=statuses,
        project__is_placeholder=False, person__is_placeholder=False)


def counted_milestones(filters: Mapping[str, str] | None = None,
                       statuses: Iterable[str] = (MilestoneStage.COMPLETED,
                                                  MilestoneStage.INVOICED)) -> QuerySet:
    """Milestones in these statuses whose project is known."""
    return state.Milestone.objects.filter(
        project_filters(filters), status__in=statuses, project__is_placeholder=False)


def counted_invoices(filters: Mapping[str, str] | None = None) -> QuerySet:
    """Announced invoices of known clients; the client filter on the invoice's own client,
    the practice and legal entity filters on its project."""
    filters = filters or {}
    invoices = state.Invoice.objects.filter(is_placeholder=False, client__is_placeholder=False)
    if filters.get("client"):
        invoices = invoices.filter(client__client_id=filters["client"])
    if filters.get("legal_entity"):
        invoices = invoices.filter(project__legal_entity=filters["legal_entity"])
    if filters.get("practice"):
        invoices = invoices.filter(project__practice=filters["practice"])
    return invoices


# --- Values --------------------------------------------------------------------------------
def _rate():
    return Coalesce(F("bill_rate"), F("person__bill_rate"), Value(ZERO))


BILLABLE_TIME = Q(billable=True, project__billing_method=T_AND_M)
BILLABLE_EXPENSE = Q(billable=True) & ~Q(project__billing_method__in=NOT_BILLING)
BILLABLE_MILESTONE = Q(project__billing_method=state.Project.BillingMethod.MILESTONE)
# hours × rate (the entry's, else the person's) for billable time on a time-and-materials
# project; time on other projects has no billable value of its own.
TIME_VALUE = Case(
    When(BILLABLE_TIME, then=ExpressionWrapper(F("hours") * _rate(), output_field=AMOUNT)),
    default=Value(ZERO), output_field=AMOUNT)
EXPENSE_VALUE = Case(When(BILLABLE_EXPENSE, then=F("amount")), default=Value(ZERO),
                     output_field=AMOUNT)
MILESTONE_VALUE = Case(When(BILLABLE_MILESTONE, then=F("amount")), default=Value(ZERO),
                       output_field=AMOUNT)
LABOR_COST = ExpressionWrapper(
    F("hours") * Coalesce(F("cost_rate"), F("person__cost_rate"), Value(ZERO)),
    output_field=AMOUNT)


def total(expression: Any, condition: Q | None = None) -> Coalesce:
    """The sum of `expression` over the rows meeting `condition`, zero when none do."""
    return Coalesce(Sum(expression, filter=condition), Value(ZERO), output_field=AMOUNT)


# --- Posting -------------------------------------------------------------------------------
def unposted_time(filters: Mapping[str, str] | None = None) -> QuerySet:
    """Time approved and never posted (SPEC section 7: only a `posted` event posts),
    whatever came after, unless rejected or reversed."""
    return counted_time(filters, [TimeEntryStage.APPROVED, TimeEntryStage.INVOICED]).filter(
        approved_at__isnull=False, posted_at__isnull=True)


def unposted_expenses(filters: Mapping[str, str] | None = None) -> QuerySet:
    """Billable expenses approved and never posted."""
    return counted_expenses(filters, [ExpenseStage.APPROVED, ExpenseStage.INVOICED]).filter(
        BILLABLE_EXPENSE, approved_at__isnull=False, posted_at__isnull=True)


# --- WIP spans -----------------------------------------------------------------------------
def spans_as_of(day: dt.date, filters: Mapping[str, str] | None = None) -> list[QuerySet]:
    """The WIP spans that hold an item at the end of `day` (firm time zone): a list of
    querysets whose union that is, each answered by its own index. Spans exist only for items
    with billable value on known projects and people (`opsview.derived`)."""
    moment = end_of(day)
    spans = state.WipSpan.objects.filter(project_filters(filters))
    if moment > timezone.now():
        # Today: the open spans, and the few closed after the end of the day (an invoice
        # issued on a later date).
        return [spans.filter(end__isnull=True, start__lt=moment),
                spans.filter(end__gte=moment, start__lt=moment)]
    if connection.vendor == "postgresql":
        # The GiST index on the span's range answers this without reading every span.
        return [spans.filter(RawSQL(
            "tstzrange(opsview_wipspan.start, opsview_wipspan.\"end\", '[)') @> %s",
            [moment - dt.timedelta(microseconds=1)], output_field=state.models.BooleanField()))]
    return [spans.filter(Q(start__lt=moment) & (Q(end__isnull=True) | Q(end__gte=moment)))]


def cells_as_of(day: dt.date, filters: Mapping[str, str] | None = None) -> list[QuerySet]:
    """The WIP cells that hold value at the end of `day`: start_day ≤ day < end_day. A list
    of querysets whose union that is, each answered by its own index."""
    cells = state.WipCell.objects.filter(project_filters(filters), items__gt=0)
    if end_of(day) > timezone.now():
        # Today: the open cells, and the few closed after today (a later issue date).
        return [cells.filter(end_day=state.OPEN_END, start_day__lte=day),
                cells.filter(end_day__gt=day, start_day__lte=day).exclude(
                    end_day=state.OPEN_END)]
    if connection.vendor == "postgresql":
        return [cells.filter(RawSQL(
            "daterange(opsview_wipcell.start_day, opsview_wipcell.end_day, '[)') @> %s",
            [day], output_field=state.models.BooleanField()))]
    return [cells.filter(start_day__lte=day, end_day__gt=day)]


def wip_by_day(days: Collection[dt.date]) -> dict[dt.date, dict[str, Decimal]]:
    """{day: {currency: value}}: the firm's whole WIP in cells at the end of each day — what
    summing `cells_as_of(day)` with no filter gives, currencies whose cells hold no value
    included — from the day changes instead of the cells."""
    rows = (state.WipDayChange.objects.filter(day__lte=max(days)).values_list("currency", "day")
            .annotate(value=Sum("value"), items=Sum("items")).order_by("day"))
    value: defaultdict[str, Decimal] = defaultdict(lambda: ZERO)
    items: defaultdict[str, int] = defaultdict(int)
    result: dict[dt.date, dict[str, Decimal]] = {}
    pending = sorted(days, reverse=True)

    def held() -> dict[str, Decimal]:
        return {currency: value[currency] for currency, count in items.items() if count > 0}

    for currency, day, change, count in rows:
        while pending and pending[-1] < day:
            result[pending.pop()] = held()
        value[currency] += change
        items[currency] += count
    while pending:
        result[pending.pop()] = held()
    return result


# --- Integration telemetry ------------------------------------------------------------------
def last_event_by_flow() -> dict[str, dt.datetime]:
    """{flow: newest occurred_at}; on PostgreSQL a skip scan of the (flow, occurred_at) index
    instead of grouping every sync attempt ever received."""
    if connection.vendor != "postgresql":
        return dict(state.SyncAttempt.objects.values("flow").annotate(last=Max("occurred_at"))
                    .order_by().values_list("flow", "last"))
    table = state.SyncAttempt._meta.db_table
    with connections[state.SyncAttempt.objects.db].cursor() as cursor:
        cursor.execute(f"""
            WITH RECURSIVE flows AS (
                (SELECT flow FROM {table} ORDER BY flow LIMIT 1)
                UNION ALL
                SELECT (SELECT s.flow FROM {table} s WHERE s.flow > flows.flow
                        ORDER BY s.flow LIMIT 1) FROM flows WHERE flows.flow IS NOT NULL)
            SELECT flow, (SELECT max(occurred_at) FROM {table} s WHERE s.flow = flows.flow)
            FROM flows WHERE flow IS NOT NULL""")
        return dict(cursor.fetchall())


# --- Reconciliation ------------------------------------------------------------------------
COUNTED_OBJECTS: dict[str, tuple[type[state.TimeEntry] | type[state.Expense], str]] = {
    Kind.TIME_ENTRY: (state.TimeEntry, "work_date"),
    Kind.EXPENSE: (state.Expense, "incurred_on"),
}


def dated_items(object_type: str, first_day: dt.date, last_day: dt.date,
                filters: Mapping[str, str] | None = None) -> QuerySet:
    """Every time entry or expense dated in a period, whatever its status, including those
    on records not known yet: the middleware moved them, so reconciliation counts them."""
    model, date_field = COUNTED_OBJECTS[object_type]
    return model.objects.filter(project_filters(filters),
                                **{f"{date_field}__range": (first_day, last_day)})


def opsview_counts(object_type: str, period_start: dt.date, period_end: dt.date,
                   filters: Mapping[str, str] | None = None) -> tuple[int | None, int | None]:
    """(approved-or-later, posted) counts of OpsView's own time entries or expenses dated
    in the period, or (None, None) for object types OpsView does not count."""
    if object_type not in COUNTED_OBJECTS:
        return None, None
    counts = dated_items(object_type, period_start, period_end, filters).filter(
        status__in=APPROVED_OR_LATER).aggregate(
        approved=Count("pk"), posted=Count("pk", filter=Q(posted_at__isnull=False)))
    return counts["approved"], counts["posted"]
