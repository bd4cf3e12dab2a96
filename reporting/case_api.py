"""GET /api/v1/exceptions (paginated), /api/v1/exceptions.csv and /api/v1/kpis/exceptions;
POST /api/v1/exceptions/{id}/actions, the triage actions of the case page for machines."""
import json

from django.core.paginator import EmptyPage, Paginator

from core.problems import Problem
from exceptions import kpis, services
from exceptions.filters import CaseFilter
from exceptions.models import Case, CaseEntry
from exceptions.schemas import serialize
from exceptions.views import ACTIONS, _apply, can_triage, cases_csv
from reporting.api import api_action_endpoint, api_endpoint, bad_parameter, kpi_filters


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


@api_endpoint
def case_csv(request):
    return cases_csv(_filtered(request))


@api_endpoint
def exceptions_kpi(request):
    return kpis.exceptions_kpi(filters=kpi_filters(request.GET))


# --- The write API ---------------------------------------------------------------------------
TEXT_LIMITS = {"owner": 150, "code": 32, "comment": 5000}


def bad_field(name, message, status=400):
    return Problem(status, "invalid-field", "Invalid field", f"Field {name!r}: {message}.",
                   [f"{name}: {message}"])


def _action_body(request):
    """The JSON body as the action's fields, each checked the way the case page checks it."""
    try:
        body = json.loads(request.body or b"null")
    except (ValueError, UnicodeDecodeError):
        raise bad_field("body", "is not JSON") from None
    if not isinstance(body, dict):
        raise bad_field("body", "must be a JSON object")
    action = body.get("action")
    if not isinstance(action, str) or action not in ACTIONS:
        raise bad_field("action", f"must be one of {', '.join(sorted(ACTIONS))}")
    fields = {"action": action}
    for name, limit in TEXT_LIMITS.items():
        value = body.get(name)
        if value is not None and not isinstance(value, str):
            raise bad_field(name, "must be a string")
        if value is not None and len(value) > limit:
            raise bad_field(name, f"must be at most {limit} characters")
        if value is not None and "\x00" in value:
            raise bad_field(name, "must not contain NUL characters")
        fields[name] = value or ""
    if action == "resolve" and fields["code"] not in ("", *services.RESOLUTION_CODES):
        raise bad_field("code", f"must be one of {', '.join(services.RESOLUTION_CODES)}")
    fields["code"] = fields["code"] or "fixed"
    if action == "comment" and not fields["comment"].strip():
        raise bad_field("comment", "a comment needs some text")
    if action == "assign" and fields["owner"]:
        from django.contrib.auth.models import User

        if not User.objects.filter(username=fields["owner"]).exists():
            raise bad_field("owner", "no such user")
    return fields


@api_action_endpoint
def case_action(request, id):  # noqa: A002 - the path parameter's public name
    """One triage action, with the same permission check, validation, service call and audit
    entries as the case page."""
    if not can_triage(request.user):
        raise Problem(403, "forbidden", "Forbidden", "You can see cases but not change them.",
                      ["permission: exceptions.triage_case is required"])
    fields = _action_body(request)
    case = Case.objects.select_related("queue", "owner").filter(pk=id).first()
    if case is None:
        raise Problem(404, "not-found", "Not Found", "No case with this id.",
                      [f"id: no case {id}"])
    last = case.entries.order_by("-pk").values_list("pk", flat=True).first() or 0
    try:
        _apply(case, fields["action"], request.user, fields)
    except services.TransitionError as error:
        field = "owner" if fields["action"] == "assign" else "status"
        raise bad_field(field, str(error), status=409) from None
    case.refresh_from_db()
    entries = CaseEntry.objects.filter(case=case, pk__gt=last).order_by("pk")
    return {"case": serialize(case), "entries": [
        {"at": e.at.isoformat(), "actor": e.actor_label, "action": e.action,
         "field": e.field or None, "from": e.from_value or None, "to": e.to_value or None,
         "comment": e.comment or None} for e in entries]}
