"""Integration health: flows, inbox, duplicates, reconciliation gaps, and the daily
series of sync attempts the page draws."""
import datetime as dt
from collections import defaultdict

from django.db import connection, connections
from django.db.models import Count, F, Max, Min, Q, QuerySet
from django.db.models.functions import TruncDate
from django.utils import timezone

from ingestion.models import DuplicateDelivery, InboxEvent
from opsview import models as state
from opsview import selectors
from opsview.rhythm import expected_silence
from opsview.timeline import firm_zone
from reporting.kpis.formatting import Json, _iso, percentile_cont, ratio


def integration_health(*, start: dt.datetime, end: dt.datetime,
                       now: dt.datetime | None = None) -> Json:
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
            "stale": last is None or silence is None or now - last > silence,
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


def _systems(flow: str) -> tuple[str, str]:
    row = (state.SyncAttempt.objects.filter(flow=flow).order_by("-occurred_at")
           .values("source_system", "target_system").first())
    return (row["source_system"], row["target_system"]) if row else ("", "")


def _p95_latency_by_flow(attempts: QuerySet) -> dict[str, float]:
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
    return {flow: round(float(percentile_cont(values, 0.95) or 0), 1)  # values never empty
            for flow, values in latencies.items()}


def open_sync_failures_by_flow() -> dict[str, int]:
    """Open sync_failed cases per flow."""
    from exceptions.kpis import open_sync_failures_by_flow as from_cases

    return from_cases()


def flow_series(*, start: dt.datetime, end: dt.datetime) -> list[Json]:
    """Sync attempts per flow and day, succeeded and failed, for event times in [start, end)."""
    rows = (state.SyncAttempt.objects.filter(occurred_at__gte=start, occurred_at__lt=end)
            .annotate(day=TruncDate("occurred_at")).values("day", "flow")
            .annotate(n_ok=Count("pk", filter=Q(succeeded=True)),
                      n_failed=Count("pk", filter=Q(succeeded=False))).order_by("day", "flow"))
    return [{"day": r["day"].isoformat(), "flow": r["flow"], "succeeded": r["n_ok"],
             "failed": r["n_failed"]} for r in rows]
