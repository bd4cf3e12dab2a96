"""The answers of the read and write API as ninja Schemas: the generated OpenAPI document
describes each answer from these, and the contract tests (tests/test_openapi.py) hold
every answer to them.

They describe, they do not shape: an endpoint answers its KPI function's dict as it is,
so every model allows more keys than it names (the contract says a client must accept
them), and a key is named where a client relies on its type.
"""
import datetime as dt
from typing import Annotated, Any

from ninja import Field, Schema
from pydantic import ConfigDict

from exceptions.filters import AGE_BUCKETS
from exceptions import models as cases
from reporting.api_params import GroupBy, Interval

Money = Annotated[str, Field(pattern=r"^-?\d+\.\d{2}$", description="Decimal, two places")]
Ratio = Annotated[float | None, Field(description="null where the denominator is 0")]
Seconds = Annotated[float | None, Field(description="Seconds")]
Instant = dt.datetime | None
Month = Annotated[str, Field(pattern=r"^\d{4}-\d{2}$")]


class Answer(Schema):
    """An object with these keys at least."""

    model_config = ConfigDict(extra="allow")


def by_currency(value: Any) -> Any:
    """A mapping keyed by ISO 4217 currency code."""
    return Annotated[dict[str, value], Field(description="Keyed by ISO 4217 currency code")]


class Problem(Schema):
    """RFC 9457 problem details."""

    type: str
    title: str
    status: int
    detail: str
    errors: list[str]


class FxRate(Answer):
    base: Any
    quote: Any
    rate: str
    date: dt.date


class Reporting(Answer):
    """The headline amounts converted into the currency asked for (`currency=`)."""

    currency: Annotated[str, Field(pattern="^[A-Z]{3}$")]
    total: Money
    rates: list[FxRate]
    unconverted: list[str]


class Reported(Answer):
    """An answer that may carry the `reporting` block."""

    reporting: Reporting | None = None


class WipCurrency(Answer):
    total: Money
    time: Money
    expenses: Money
    milestones: Money
    fixed_fee: Money
    in_billing: Money
    aging: Annotated[dict[str, Any], Field(description="By age in days: 0-30, 31-60, 61-90, "
                                                           "90+")]


class WipKpi(Reported):
    as_of: dt.date
    currencies: by_currency(WipCurrency)


class NotReady(Answer):
    unposted: Any
    missing_billing_setup: Any


class ReadinessCurrency(Answer):
    billable_value: Any
    invoiced_value: Any
    in_billing_value: Money
    ready_value: Any
    not_ready_value: Any
    not_ready: NotReady
    readiness_ratio: Ratio


class BlockedInvoices(Answer):
    count: int
    by_reason: Any
    currencies: by_currency(Money)


class InvoiceReadinessKpi(Reported):
    period: Month
    currencies: by_currency(ReadinessCurrency)
    blocked_invoices: BlockedInvoices


class Backlog(Answer):
    count: Any
    hours: Any
    oldest_approved_at: Instant
    currencies: Any


class ExpenseBacklog(Answer):
    count: Any
    oldest_approved_at: Instant
    currencies: Any


class ExpenseLatency(Answer):
    count: int
    p50_seconds: Seconds
    p90_seconds: Seconds
    p95_seconds: Seconds
    within_sla_ratio: Ratio
    backlog: ExpenseBacklog


class PostingLatencyKpi(Reported):
    start: Any
    end: Any
    sla_seconds: Any
    count: int
    p50_seconds: Seconds
    p90_seconds: Seconds
    p95_seconds: Seconds
    within_sla_ratio: Ratio
    backlog: Backlog
    expenses: ExpenseLatency


class PracticeUtilization(Answer):
    practice: Any
    billable_hours: Any
    capacity_hours: Any
    utilization_ratio: Any


class PersonUtilization(Answer):
    person_id: Any


class UtilizationKpi(Answer):
    start: Any
    end: Any
    billable_hours: Money
    total_hours: Money
    capacity_hours: Money
    utilization_ratio: Ratio
    freshness_seconds: Seconds
    by_practice: list[PracticeUtilization]
    by_person: list[PersonUtilization]


class FlowHealth(Answer):
    flow: Any
    source_system: Any
    target_system: Any
    succeeded: Any
    failed: Any
    success_ratio: Ratio
    p95_latency_ms: Any
    last_event_at: Any
    expected_silence_seconds: Seconds
    stale: bool
    open_failures: Any


class InboxHealth(Answer):
    pending: Any
    oldest_pending_age_seconds: Any
    dead: Any


class ReconciliationGap(Answer):
    flow: Any
    object_type: Any
    period_start: Any
    period_end: Any
    source_count: Any
    target_count: Any
    gap: Any


class IntegrationHealthKpi(Answer):
    start: Any
    end: Any
    flows: list[FlowHealth]
    inbox: InboxHealth
    duplicates: Any
    conflicts: Any
    reconciliation_gaps: list[ReconciliationGap]


class MarginRow(Answer):
    key: Any
    currency: Any
    earned_revenue: Any
    labor_cost: Any
    margin: Any
    margin_ratio: Ratio
    billed_revenue: Any
    recognized_revenue: Any


class MarginKpi(Reported):
    start: Any
    end: Any
    group_by: GroupBy
    rows: list[MarginRow]


class ReceivablesCurrency(Answer):
    open_ar: Any
    issued_90d: Any
    dso_days: Ratio


class ReceivablesKpi(Reported):
    as_of: Any
    currencies: by_currency(ReceivablesCurrency)


class Days(Answer):
    """Days."""

    p50: float | None
    p90: float | None


class BillingCurrency(Answer):
    count: int
    billed_value: Money
    standard_value: Money
    realization_ratio: Ratio
    cycle_days: Days
    billing_lag_days: Days
    collection_days: Days


class BillingKpi(Reported):
    start: Any
    end: Any
    currencies: by_currency(BillingCurrency)
    touchless_ratio: Ratio


Ids = Annotated[list[str], Field(max_length=100)]


class Counted(Answer):
    """The figures of one kind of item (time or expenses) at one stage."""

    count: int
    currencies: by_currency(Money)


class TimeCounted(Counted):
    hours: Any


class Gap(Counted):
    ids: Ids


class TimeGap(TimeCounted):
    ids: Ids


class ReversedButBilled(Counted):
    ids: Ids


class ExpensesReconciled(Answer):
    approved: Counted
    posted: Counted
    billed: Counted
    approved_not_posted: Gap
    posted_not_billed: Gap
    billed_not_posted: Gap
    reversed_but_billed: ReversedButBilled


class TimeReconciled(Answer):
    approved: TimeCounted
    posted: TimeCounted
    billed: TimeCounted
    approved_not_posted: TimeGap
    posted_not_billed: TimeGap
    billed_not_posted: TimeGap
    reversed_but_billed: ReversedButBilled


class ReportedCount(Answer):
    flow: Any
    object_type: Any
    period_start: Any
    period_end: Any
    source_count: int
    target_count: int
    opsview_source_count: int | None
    opsview_target_count: int | None
    agrees: bool | None


class ReconciliationKpi(Answer):
    period: Month
    time: TimeReconciled
    expenses: ExpensesReconciled
    reported: list[ReportedCount]


class CloseCurrency(Answer):
    billable_value: Money
    billed_value: Money
    in_billing_value: Money
    ready_value: Money
    not_ready_value: Money
    not_ready: NotReady
    slipped_value: Money | None = Field(description="null until the cut-off has passed")


class BlockingCases(Answer):
    count: int
    at_risk: int
    currencies: by_currency(Money)


class PeriodCloseKpi(Reported):
    period: Any
    cutoff_at: dt.datetime
    seconds_to_cutoff: int
    currencies: by_currency(CloseCurrency)
    blocking_cases: BlockingCases


class TrendPoint(Answer):
    end: dt.date
    value: float | None


class TrendCurrencyPoint(Answer):
    end: dt.date
    currencies: by_currency(Money | float | None)


class TrendsKpi(Answer):
    metric: Any
    interval: Interval
    points: list[TrendPoint | TrendCurrencyPoint]


CaseAging = Annotated[dict[str, Any], Field(
    description="Open cases by age bucket: " + ", ".join(AGE_BUCKETS))]


class ExceptionsKpi(Answer):
    open: int
    breached: int
    at_risk: int
    by_type: Any
    by_queue: Any
    by_severity: Any
    by_owner: Any
    aging: CaseAging
    mtta_seconds: Seconds
    mttr_seconds: Seconds


class CaseObject(Answer):
    kind: Any
    id: Any


class CaseSla(Answer):
    state: Any
    breached: Any
    response_due_at: Any
    resolution_due_at: Any
    acknowledged_at: Any


class Case(Answer):
    """A case as the API shows it."""

    id: int
    type: cases.CaseType
    fingerprint: Any
    title: Any
    status: cases.Case.Status
    severity: cases.Severity
    queue: Any
    owner: str | None
    money_at_stake: Money | None
    currency: Any
    object: Any
    began_at: Instant
    opened_at: Instant
    first_seen_at: Any
    last_seen_at: Any
    times_seen: Any
    sla: CaseSla
    resolved_at: Any
    resolution_code: Any


class CaseList(Answer):
    count: int
    page: int
    page_size: int
    pages: int
    results: list[Case]


class CaseEntry(Answer):
    at: dt.datetime
    actor: str
    action: str
    field: Any
    from_: Any = Field(alias="from")
    to: Any
    comment: Any


class CaseAction(Answer):
    case: Case
    entries: list[CaseEntry]
