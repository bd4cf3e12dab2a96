"""The KPI endpoints of the read API, each declared once.

A declaration names the KPI function, its parameters (a Schema from reporting.api_params),
its answer (a Schema from reporting.api_schemas) and, where a reporting currency applies,
its headline amounts. The endpoint /api/v1/kpis/<name>, its URL name kpi-<name> (the
replica routing and the tests know it by that name), its operation in the OpenAPI document
and its parameter parsing all follow from it. docs/api.md says how to add one.
"""
from collections.abc import Callable
from dataclasses import dataclass

from django.http import HttpRequest
from django.http.response import HttpResponseBase
from ninja import Query, Schema

from exceptions import kpis as case_kpis
from reporting import api_params as params
from reporting import api_schemas as answers
from reporting import billing, close, kpis, trends
from reporting.api import (READ_AUTH, READ_ERRORS, READ_METHODS, ProblemRouter, json_answer,
                           sum_rows)
from reporting.api import with_reporting as converted


@dataclass(frozen=True)
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
    Kpi("wip", kpis.wip, params.WipParams, answers.WipKpi,
        "Unbilled work in progress and its aging", _by_currency("total")),
    Kpi("invoice-readiness", kpis.invoice_readiness, params.ReadinessParams,
        answers.InvoiceReadinessKpi, "Invoice readiness of a billing period",
        _by_currency("billable_value")),
    Kpi("posting-latency", kpis.posting_latency, params.ReportedWindowParams,
        answers.PostingLatencyKpi, "Approval-to-posting latency and the unposted backlog",
        lambda result: result["backlog"]["currencies"]),
    Kpi("utilization", kpis.utilization, params.WindowParams, answers.UtilizationKpi,
        "Utilization"),
    Kpi("integration-health", kpis.integration_health, params.HealthParams,
        answers.IntegrationHealthKpi,
        "Integration health per flow, inbox and reconciliation gaps"),
    Kpi("margin", kpis.margin, params.MarginParams, answers.MarginKpi,
        "Margin by project, practice or client",
        lambda result: sum_rows(result["rows"], "earned_revenue")),
    Kpi("receivables", kpis.receivables, params.ReceivablesParams, answers.ReceivablesKpi,
        "Open receivables and DSO", _by_currency("open_ar")),
    Kpi("billing", billing.billing, params.BillingParams, answers.BillingKpi,
        "Billing: realization, cycle time, billing lag, collection, touchless posting",
        _by_currency("billed_value")),
    Kpi("reconciliation", close.reconciliation, params.ReconciliationParams,
        answers.ReconciliationKpi,
        "Approved, posted and billed time and expenses of a period, the gaps between them "
        "and the middleware's own reports"),
    Kpi("period-close", close.period_close, params.PeriodCloseParams, answers.PeriodCloseKpi,
        "A period against its billing cut-off: readiness, slipped value, blocking cases",
        _by_currency("billable_value")),
    Kpi("trends", trends.trends, params.TrendsParams, answers.TrendsKpi,
        "A KPI per ISO week or calendar month"),
    Kpi("exceptions", case_kpis.exceptions_kpi, params.FilterParams, answers.ExceptionsKpi,
        "Exception cases: open, breached, aging, MTTA/MTTR"),
)


def endpoint(kpi: Kpi) -> Callable[..., HttpResponseBase]:
    """The view of one KPI: its parameters parsed, its function called, the reporting
    currency's block added when asked for."""

    def answer(request: HttpRequest, query: Query[kpi.params]) -> HttpResponseBase:
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
