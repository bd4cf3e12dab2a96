"""GET /api/v1/exceptions (paginated), /api/v1/exceptions.csv and /api/v1/kpis/exceptions."""
from django.core.paginator import EmptyPage, Paginator

from opsview.api import api_endpoint, bad_parameter, kpi_filters

from . import kpis
from .filters import CaseFilter
from .models import Case
from .views import cases_csv


def _filtered(request):
    case_filter = CaseFilter(request.GET, queryset=Case.objects.select_related("queue", "owner"),
                             user=request.user)
    if not case_filter.is_valid():
        name, errors = next(iter(case_filter.errors.items()))
        raise bad_parameter(name, " ".join(errors).rstrip("."))
    return case_filter.qs


def _int(params, name, default, maximum):
    value = params.get(name) or default
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise bad_parameter(name, f"{str(value)[:20]!r} is not a whole number") from None
    if not 1 <= number <= maximum:
        raise bad_parameter(name, f"must be between 1 and {maximum}")
    return number


@api_endpoint
def case_list(request):
    size = _int(request.GET, "page_size", 50, 500)
    paginator = Paginator(_filtered(request), size)
    number = _int(request.GET, "page", 1, 10**6)
    try:
        page = paginator.page(number)
    except EmptyPage:
        raise bad_parameter("page", f"there are {paginator.num_pages} pages") from None
    return {"count": paginator.count, "page": number, "page_size": size,
            "pages": paginator.num_pages, "results": [serialize(c) for c in page]}


def serialize(case):
    return {
        "id": case.pk, "type": case.type, "fingerprint": case.fingerprint, "title": case.title,
        "status": case.status, "severity": case.severity, "queue": case.queue.slug,
        "owner": case.owner.username if case.owner else None,
        "money_at_stake": None if case.money_at_stake is None else f"{case.money_at_stake:.2f}",
        "currency": case.currency or None,
        "object": {"kind": case.object_kind, "id": case.object_id},
        "client_id": case.client_id or None, "project_id": case.project_id or None,
        "began_at": case.began_at.isoformat(), "opened_at": case.opened_at.isoformat(),
        "first_seen_at": case.first_seen_at.isoformat(),
        "last_seen_at": case.last_seen_at.isoformat(), "times_seen": case.times_seen,
        "sla": {"state": case.sla_state, "breached": case.sla_state == "breached",
                "response_due_at": _iso(case.response_due_at),
                "resolution_due_at": _iso(case.resolution_due_at),
                "blocks_period": case.blocks_period or None,
                "cutoff_at": _iso(case.cutoff_at),
                "acknowledged_at": _iso(case.acknowledged_at)},
        "resolved_at": _iso(case.resolved_at), "resolution_code": case.resolution_code or None,
    }


def _iso(value):
    return value.isoformat() if value else None


@api_endpoint
def case_csv(request):
    return cases_csv(_filtered(request))


@api_endpoint
def exceptions_kpi(request):
    return kpis.exceptions_kpi(filters=kpi_filters(request.GET))
