"""The KPI endpoints of the read API, each declared once.

A declaration names the KPI function, its parameters (a Schema from reporting.api_params),
its answer (a Schema, below: the keys a client relies on, with their types; an answer may
hold more) and, where a reporting currency applies, its headline amounts. The endpoint
/api/v1/kpis/<name>, its URL name kpi-<name> (the replica routing and the tests know it by
that name), its operation in the OpenAPI document and its parameter parsing all follow
from it. docs/api.md says how to add one.
"""
import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

from django.http import HttpRequest
from django.http.response import HttpResponseBase
from ninja import Field, Query, Schema

from exceptions import kpis as case_kpis
from exceptions.filters import AGE_BUCKETS
from reporting import api_params as params
from reporting import billing, close, kpis, trends
from reporting.api import READ_AUTH, READ_ERRORS, READ_METHODS, ProblemRouter, json_answer, sum_rows
from reporting.api import with_reporting as converted
from reporting.api_params import GroupBy, Interval
from reporting.api_schemas import (
    Answer,
    ByCurrency,
    Instant,
    Money,
    Month,
    Ratio,
    Seconds,
)


# --- The answers ----------------------------------------------------------------------------
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
    currencies: ByCurrency[WipCurrency]


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
    currencies: ByCurrency[Money]


class InvoiceReadinessKpi(Reported):
    period: Month
    currencies: ByCurrency[ReadinessCurrency]
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
    currencies: ByCurrency[ReceivablesCurrency]


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
    currencies: ByCurrency[BillingCurrency]
    touchless_ratio: Ratio


Ids = Annotated[list[str], Field(max_length=100)]


class Counted(Answer):
    """The figures of one kind of item (time or expenses) at one stage."""

    count: int
    currencies: ByCurrency[Money]


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
    currencies: ByCurrency[Money]


class PeriodCloseKpi(Reported):
    period: Any
    cutoff_at: dt.datetime
    seconds_to_cutoff: int
    currencies: ByCurrency[CloseCurrency]
    blocking_cases: BlockingCases


class TrendPoint(Answer):
    end: dt.date
    value: float | None


class TrendCurrencyPoint(Answer):
    end: dt.date
    currencies: ByCurrency[Money | float | None]


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



# --- The declarations -------------------------------------------------------------------------
@dataclass
class Kpi:
    """One KPI endpoint: GET /api/v1/kpis/<name>."""

    name: str
    function: Callable[..., dict]
    params: type[params.KpiParams]
    answer: type[Schema]
    summary: str
    # The amounts a reporting currency (`currency=`) converts, from the KPI's result; a KPI
    # without them takes no `currency` (its params have no Currency).
    headline: Callable[[dict], dict] | None = None

    @property
    def url_name(self) -> str:
        return f"kpi-{self.name}"

    @property
    def operation_id(self) -> str:
        return "kpi" + "".join(part.title() for part in self.name.split("-"))


def _by_currency(key: str) -> Callable[[dict], dict]:
    """The headline: one amount of each currency's figures."""
    return lambda result: {code: figures[key] for code, figures in result["currencies"].items()}


KPIS = (
    Kpi("wip", kpis.wip, params.WipParams, WipKpi,
        "Unbilled work in progress and its aging", _by_currency("total")),
    Kpi("invoice-readiness", kpis.invoice_readiness, params.ReadinessParams,
        InvoiceReadinessKpi, "Invoice readiness of a billing period",
        _by_currency("billable_value")),
    Kpi("posting-latency", kpis.posting_latency, params.ReportedWindowParams,
        PostingLatencyKpi, "Approval-to-posting latency and the unposted backlog",
        lambda result: result["backlog"]["currencies"]),
    Kpi("utilization", kpis.utilization, params.WindowParams, UtilizationKpi,
        "Utilization"),
    Kpi("integration-health", kpis.integration_health, params.HealthParams,
        IntegrationHealthKpi,
        "Integration health per flow, inbox and reconciliation gaps"),
    Kpi("margin", kpis.margin, params.MarginParams, MarginKpi,
        "Margin by project, practice or client",
        lambda result: sum_rows(result["rows"], "earned_revenue")),
    Kpi("receivables", kpis.receivables, params.ReceivablesParams, ReceivablesKpi,
        "Open receivables and DSO", _by_currency("open_ar")),
    Kpi("billing", billing.billing, params.BillingParams, BillingKpi,
        "Billing: realization, cycle time, billing lag, collection, touchless posting",
        _by_currency("billed_value")),
    Kpi("reconciliation", close.reconciliation, params.ReconciliationParams,
        ReconciliationKpi,
        "Approved, posted and billed time and expenses of a period, the gaps between them "
        "and the middleware's own reports"),
    Kpi("period-close", close.period_close, params.PeriodCloseParams, PeriodCloseKpi,
        "A period against its billing cut-off: readiness, slipped value, blocking cases",
        _by_currency("billable_value")),
    Kpi("trends", trends.trends, params.TrendsParams, TrendsKpi,
        "A KPI per ISO week or calendar month"),
    Kpi("exceptions", case_kpis.exceptions_kpi, params.FilterParams, ExceptionsKpi,
        "Exception cases: open, breached, aging, MTTA/MTTR"),
)


def endpoint(kpi: Kpi) -> Callable[..., HttpResponseBase]:
    """The view of one KPI: its parameters parsed, its function called, the reporting
    currency's block added when asked for."""

    # The KPI's own parameter schema, known only when the endpoint is made.
    def answer(request: HttpRequest,
               query: Query[kpi.params],  # type: ignore[name-defined]
               ) -> HttpResponseBase:
        result = kpi.function(**query.arguments())
        if kpi.headline is not None:
            converted(result, kpi.headline, query.currency, query.reported_on())
        return json_answer(result)

    answer.__name__ = kpi.url_name.replace("-", "_")
    return answer


def kpi_router() -> ProblemRouter:
    """The read API's KPI endpoints, one per declaration."""
    router = ProblemRouter(auth=READ_AUTH, tags=["read"])
    for kpi in KPIS:
        router.add_api_operation(
            f"kpis/{kpi.name}", list(READ_METHODS), endpoint(kpi), url_name=kpi.url_name,
            operation_id=kpi.operation_id, summary=kpi.summary, response={200: kpi.answer},
            openapi_extra={"responses": READ_ERRORS})
    return router
