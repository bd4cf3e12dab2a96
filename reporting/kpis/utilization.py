"""Utilization: billable hours against active people's capacity."""
import datetime as dt
from collections import defaultdict
from decimal import Decimal
from typing import Any

from django.db.models import F, Max, Q
from django.utils import timezone

from ingestion.models import InboxEvent
from opsview import models as state
from opsview.selectors import ZERO, counted_time, total
from reporting.kpis.formatting import Filters, Json, _clean, money, ratio, weekdays


def utilization(*, start: dt.date, end: dt.date, filters: Filters | None = None,
                now: dt.datetime | None = None) -> Json:
    """Billable hours (time flagged billable on projects that bill — chargeable time on
    fixed-fee and milestone projects included) against active people's capacity."""
    filters = filters or {}
    now = now or timezone.now()
    entries = counted_time({k: v for k, v in filters.items() if k != "practice"}).filter(
        work_date__range=(start, end))
    people = state.Person.objects.filter(is_placeholder=False)
    if filters.get("practice"):
        entries = entries.filter(person__practice=filters["practice"])
        people = people.filter(practice=filters["practice"])
    factor = Decimal(weekdays(start, end)) / Decimal(5)
    chargeable = Q(billable=True) & ~Q(project__billing_method=state.Project.BillingMethod
                                       .NON_BILLABLE)
    hours = {row["person_id"]: row for row in entries.values("person_id").annotate(
        billable=total(F("hours"), chargeable), total=total(F("hours"))).order_by()}
    by_person: list[dict[str, Any]] = []
    by_practice: defaultdict[str, defaultdict[str, Decimal]] = defaultdict(
        lambda: defaultdict(lambda: ZERO))
    totals: defaultdict[str, Decimal] = defaultdict(lambda: ZERO)
    active = people.filter(Q(active=True) | Q(pk__in=list(hours)))
    for person in active.values("pk", "person_id", "name", "practice", "active",
                                "capacity_hours_per_week").order_by("practice", "person_id"):
        worked = hours.get(person["pk"], {"billable": ZERO, "total": ZERO})
        capacity = person["capacity_hours_per_week"] * factor if person["active"] else ZERO
        by_person.append({
            "person_id": person["person_id"], "name": person["name"],
            "practice": person["practice"], "billable_hours": money(worked["billable"]),
            "total_hours": money(worked["total"]), "capacity_hours": money(capacity),
            "utilization_ratio": ratio(worked["billable"], capacity),
        })
        for bucket in (by_practice[person["practice"]], totals):
            bucket["billable"] += worked["billable"]
            bucket["total"] += worked["total"]
            bucket["capacity"] += capacity
    newest = InboxEvent.objects.filter(type__startswith="time_entry.").aggregate(
        newest=Max("received_at"))["newest"]
    return {
        "start": start.isoformat(), "end": end.isoformat(), "filters": _clean(filters),
        "weekdays": weekdays(start, end),
        "billable_hours": money(totals["billable"]), "total_hours": money(totals["total"]),
        "capacity_hours": money(totals["capacity"]),
        "utilization_ratio": ratio(totals["billable"], totals["capacity"]),
        "freshness_seconds": None if newest is None else round((now - newest).total_seconds()),
        "by_practice": [
            {"practice": practice, "billable_hours": money(f["billable"]),
             "total_hours": money(f["total"]), "capacity_hours": money(f["capacity"]),
             "utilization_ratio": ratio(f["billable"], f["capacity"])}
            for practice, f in sorted(by_practice.items())
        ],
        "by_person": by_person,
    }
