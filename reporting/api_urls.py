"""Read API routes under /api/v1/."""
from django.urls import include, path

from reporting import api

urlpatterns = [
    path("kpis/wip", api.wip_kpi, name="kpi-wip"),
    path("kpis/invoice-readiness", api.invoice_readiness_kpi, name="kpi-invoice-readiness"),
    path("kpis/posting-latency", api.posting_latency_kpi, name="kpi-posting-latency"),
    path("kpis/utilization", api.utilization_kpi, name="kpi-utilization"),
    path("kpis/integration-health", api.integration_health_kpi, name="kpi-integration-health"),
    path("kpis/margin", api.margin_kpi, name="kpi-margin"),
    path("kpis/receivables", api.receivables_kpi, name="kpi-receivables"),
    path("kpis/billing", api.billing_kpi, name="kpi-billing"),
    path("kpis/reconciliation", api.reconciliation_kpi, name="kpi-reconciliation"),
    path("kpis/period-close", api.period_close_kpi, name="kpi-period-close"),
    path("kpis/trends", api.trends_kpi, name="kpi-trends"),
    path("", include("reporting.case_api_urls")),
]
