"""Counters of what ingestion receives and processes, for Prometheus (prometheus-client).

They count in the process that does the work (a web worker takes deliveries, a Celery
worker processes them). With PROMETHEUS_MULTIPROC_DIR set in every process's environment,
prometheus-client writes them to files in that directory and /metrics adds up all the
processes on the host (docs/operations.md); without it (the embedded demo: one process)
they live in this process's memory.
"""
import datetime as dt
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram

if TYPE_CHECKING:  # intake and the batch's outcome count here: no import back at run time
    from .intake import IntakeResult
    from .outcome import BatchOutcome

REGISTRY = CollectorRegistry(auto_describe=True)

RECEIVED = Counter("opsview_events_received", "Events received at the webhook, by outcome.",
                   ["outcome"], registry=REGISTRY)
PROCESSED = Counter("opsview_events_processed", "Inbox events processed, by outcome.",
                    ["outcome"], registry=REGISTRY)
LATENCY = Histogram("opsview_processing_latency_seconds",
                    "From receipt at the webhook to processing by a worker.",
                    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, 3600),
                    registry=REGISTRY)


def count_intake(result: "IntakeResult") -> None:
    """Count one request's events by what intake did with them."""
    RECEIVED.labels("accepted").inc(result.accepted)
    RECEIVED.labels("duplicate").inc(result.duplicates)
    RECEIVED.labels("rejected").inc(len(result.rejected))


def count_batch(outcome: "BatchOutcome", now: dt.datetime) -> None:
    """Count one batch's rows by outcome, and their time from receipt to processing."""
    for name, rows in (("processed", outcome.processed), ("unhandled", outcome.unhandled),
                       ("dead", outcome.dead)):
        PROCESSED.labels(name).inc(len(rows))
        for row in rows:
            LATENCY.observe(max((now - row.received_at).total_seconds(), 0))
