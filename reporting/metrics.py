"""GET /metrics: the business and the pipeline in the Prometheus text format, for the
monitoring a firm already runs. Behind a bearer token with the `read` scope (or a session).

The business gauges are read from the database by the same functions as the dashboards and
the API, so they are right whichever process changed the state; they are computed at most
every METRICS_CACHE_SECONDS and shared through the cache, so a scrape stays cheap. The
ingest and processing counters and the latency histogram are ingestion.metrics's.
"""
import datetime as dt
import os
import time
from collections.abc import Iterator
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db.models import Count, Min
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector

from exceptions.models import Case
from ingestion import metrics as pipeline_metrics
from ingestion.models import InboxEvent
from opsview import selectors
from reporting import kpis
from reporting.api import api_endpoint

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
CACHE_KEY = "opsview:metrics:business"


def business_figures(now: dt.datetime | None = None) -> dict[str, Any]:
    """Plain numbers for the gauges (JSON-safe, so the cache can share them)."""
    now = now or timezone.now()
    today = timezone.localdate(now)
    period = today.strftime("%Y-%m")
    first = today.replace(day=1)
    readiness = kpis.invoice_readiness(period=period, first_day=first, last_day=today)
    pending = InboxEvent.objects.filter(status=InboxEvent.Status.PENDING).aggregate(
        n=Count("pk"), oldest=Min("received_at"))
    cases = (Case.objects.filter(status__in=Case.OPEN_STATES)
             .values("type", "severity", "sla_state").annotate(n=Count("pk")).order_by())
    return {
        "wip": {ccy: float(f["total"]) for ccy, f in kpis.wip(as_of=today)["currencies"].items()},
        "not_ready": {ccy: float(f["not_ready_value"])
                      for ccy, f in readiness["currencies"].items()},
        "open_ar": {ccy: float(f["open_ar"])
                    for ccy, f in kpis.receivables(as_of=today)["currencies"].items()},
        "cases": [[r["type"], r["severity"], r["sla_state"], r["n"]] for r in cases],
        "inbox_pending": pending["n"],
        "inbox_oldest_age": (now - pending["oldest"]).total_seconds() if pending["oldest"]
        else 0.0,
        "dead_letters": InboxEvent.objects.filter(status=InboxEvent.Status.DEAD).count(),
        "flow_silence": {flow: (now - last).total_seconds()
                         for flow, last in selectors.last_event_by_flow().items() if last},
        "computed_at": time.time(),
    }


class BusinessCollector:
    """A Prometheus collector of the business gauges (WIP, readiness, AR, cases, inbox)."""

    def __init__(self, figures: dict[str, Any]) -> None:
        self.figures = figures

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """The business gauges, from the figures given."""
        figures = self.figures
        for name, key, text in (
                ("opsview_unbilled_wip", "wip", "Unbilled work in progress today."),
                ("opsview_not_ready_value", "not_ready",
                 "This month's billable value not ready to bill."),
                ("opsview_open_ar", "open_ar", "Open accounts receivable.")):
            gauge = GaugeMetricFamily(name, text, labels=["currency"])
            for currency, value in sorted(figures[key].items()):
                gauge.add_metric([currency], value)
            yield gauge
        cases = GaugeMetricFamily("opsview_open_cases", "Open exception cases.",
                                  labels=["type", "severity", "sla_state"])
        for case_type, severity, state, count in figures["cases"]:
            cases.add_metric([case_type, severity, state], count)
        yield cases
        yield GaugeMetricFamily("opsview_inbox_pending", "Inbox events waiting to be processed.",
                                value=figures["inbox_pending"])
        yield GaugeMetricFamily("opsview_inbox_oldest_pending_age_seconds",
                                "Age of the oldest pending inbox event (0: none).",
                                value=figures["inbox_oldest_age"])
        yield GaugeMetricFamily("opsview_dead_letters", "Dead letters kept for replay.",
                                value=figures["dead_letters"])
        silence = GaugeMetricFamily("opsview_flow_seconds_since_last_event",
                                    "Seconds since each flow's last sync event.",
                                    labels=["flow"])
        for flow, seconds in sorted(figures["flow_silence"].items()):
            silence.add_metric([flow], seconds)
        yield silence
        yield GaugeMetricFamily("opsview_business_metrics_age_seconds",
                                "How old the business gauges above are (they are cached).",
                                value=max(time.time() - figures["computed_at"], 0))


def cached_figures() -> dict[str, Any]:
    """business_figures(), shared through the cache for METRICS_CACHE_SECONDS."""
    figures = cache.get(CACHE_KEY) if settings.METRICS_CACHE_SECONDS else None
    if figures is None:
        figures = business_figures()
        if settings.METRICS_CACHE_SECONDS:
            cache.set(CACHE_KEY, figures, settings.METRICS_CACHE_SECONDS)
    return figures


def exposition() -> bytes:
    """The whole /metrics body."""
    business = CollectorRegistry()
    business.register(BusinessCollector(cached_figures()))
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        pipeline = CollectorRegistry()
        MultiProcessCollector(pipeline)
    else:
        pipeline = pipeline_metrics.REGISTRY
    return generate_latest(business) + generate_latest(pipeline)


@api_endpoint
def metrics_view(request: HttpRequest) -> HttpResponse:
    """GET /metrics: the Prometheus text format."""
    return HttpResponse(exposition(), content_type=CONTENT_TYPE)
