"""The exceptions KPI of SPEC section 4, used by the dashboards and /api/v1/kpis/exceptions."""
import datetime as dt
from typing import Any

from django.db.models import Avg, Count, F, QuerySet
from django.utils import timezone

from .models import Case, CaseType
from .sla import SlaState

AGING = [("<4h", 0, 4), ("4-24h", 4, 24), ("1-3d", 24, 72), ("3-7d", 72, 168), (">7d", 168, None)]


def open_cases(filters: dict | None = None) -> QuerySet:
    """The open cases about the KPI filters' client, practice and legal entity."""
    return filter_cases(Case.objects.filter(status__in=Case.OPEN_STATES), filters)


def filter_cases(cases: QuerySet, filters: dict | None = None) -> QuerySet:
    """Cases about the KPI filters' client, practice and legal entity."""
    filters = filters or {}
    if filters.get("client"):
        cases = cases.filter(client_id=filters["client"])
    if filters.get("practice"):
        cases = cases.filter(practice=filters["practice"])
    if filters.get("legal_entity"):
        cases = cases.filter(legal_entity=filters["legal_entity"])
    return cases


def exceptions_kpi(*, filters: dict | None = None,
                   now: dt.datetime | None = None) -> dict[str, Any]:
    """Open cases by type, queue, severity, owner and age; SLA counts; MTTA and MTTR."""
    now = now or timezone.now()
    cases = open_cases(filters)

    def counts(field: str) -> dict[str, int]:
        return {row[field] or "unassigned": row["n"] for row in
                cases.values(field).annotate(n=Count("pk")).order_by(field)}

    # Ages and the time to resolve count from when the problem began; the time to
    # acknowledge from when OpsView opened the case (SPEC section 3).
    aging = {label: cases.filter(
        began_at__lte=now - dt.timedelta(hours=low),
        **({"began_at__gt": now - dt.timedelta(hours=high)} if high else {})).count()
        for label, low, high in AGING}
    mtta = (Case.objects.filter(acknowledged_at__isnull=False)
            .aggregate(v=Avg(F("acknowledged_at") - F("opened_at")))["v"])
    mttr = (Case.objects.filter(status=Case.Status.RESOLVED, resolved_at__isnull=False)
            .aggregate(v=Avg(F("resolved_at") - F("began_at")))["v"])
    return {
        "open": cases.count(),
        "breached": cases.filter(sla_state=SlaState.BREACHED).count(),
        "at_risk": cases.filter(sla_state=SlaState.AT_RISK).count(),
        "by_type": counts("type"), "by_queue": {row["queue__slug"]: row["n"] for row in
                                                cases.values("queue__slug").annotate(
                                                    n=Count("pk")).order_by()},
        "by_severity": counts("severity"),
        "by_owner": {row["owner__username"] or "unassigned": row["n"] for row in
                     cases.values("owner__username").annotate(n=Count("pk")).order_by()},
        "aging": aging,
        "mtta_seconds": None if mtta is None else round(mtta.total_seconds()),
        "mttr_seconds": None if mttr is None else round(mttr.total_seconds()),
        "filters": {k: v for k, v in (filters or {}).items() if v},
    }


def open_sync_failures_by_flow() -> dict[str, int]:
    """{flow: its open sync_failed cases}."""
    return {row["detail__flow"]: row["n"] for row in
            Case.objects.filter(type=CaseType.SYNC_FAILED, status__in=Case.OPEN_STATES)
            .values("detail__flow").annotate(n=Count("pk")).order_by()}
