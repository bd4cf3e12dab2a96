"""GET /api/v1/exceptions (paginated) and /api/v1/exceptions.csv; POST
/api/v1/exceptions/{id}/actions, the triage actions of the case page for machines.

The case filter (exceptions.filters.CaseFilter) reads the list's parameters, as on the
case pages; CaseListParams describes them for the document, from the same choices.
"""
import json
from collections.abc import Mapping
from typing import Any, cast

from django.contrib.auth.models import User
from django.core.paginator import EmptyPage, Paginator
from django.db.models import QuerySet
from django.http import HttpRequest
from django.http.response import HttpResponseBase
from ninja import Field, Query, Schema
from pydantic import JsonValue, create_model

from core.problems import Problem
from exceptions import services
from exceptions.filters import AGE_BUCKETS, SORTS, CaseFilter
from exceptions.models import Case, CaseEntry, CaseType, Severity
from exceptions.schemas import serialize
from exceptions.views import ACTIONS, _apply, can_triage, cases_csv
from reporting import api_schemas as answers
from reporting.api import (
    READ_AUTH,
    READ_ERRORS,
    READ_METHODS,
    WRITE_AUTH,
    WRITE_METHODS,
    ProblemRouter,
    bad_parameter,
    json_answer,
    problem_doc,
)


def described(description: str, **schema: Any) -> Any:
    """A parameter the case filter reads: declared here for the document only (as a
    string, so that the filter, not pydantic, judges it and words its refusal)."""
    return Field(None, description=description, json_schema_extra=schema or None)


class CaseListParams(Schema):
    """The case list's filters and page."""

    status: str = described("Case status; `active` (default) is every open state.",
                            enum=["active", *Case.Status.values])
    type: str = described("Case type.", enum=CaseType.values)
    queue: str = described("Queue slug.", maxLength=50)
    owner: str = described("A username, or me, unassigned, someone.")
    breached: str = described("Only cases whose SLA is (true) or is not (false) breached.",
                              type="boolean")
    severity: str = described("Severity.", enum=Severity.values)
    sla: str = described("SLA state.", enum=["on_track", "at_risk", "breached"])
    age: str = described("Age bucket.", enum=list(AGE_BUCKETS))
    client: str = described("Client id.")
    project: str = described("Project id.")
    q: str = described("Search in title, object id and fingerprint.")
    sort: str = described("Order (default: resolution due first).", enum=list(SORTS))


class PageParams(CaseListParams):
    page: str = described("Page number, from 1.", type="integer", minimum=1, maximum=10**6)
    page_size: str = described("Cases per page (default 50).", type="integer", minimum=1,
                               maximum=500)


def _filtered(request: HttpRequest) -> QuerySet[Case]:
    case_filter = CaseFilter(request.GET, queryset=Case.objects.select_related("queue", "owner"),
                             user=request.user)
    if not case_filter.is_valid():
        name, errors = next(iter(case_filter.errors.items()))
        raise bad_parameter(name, " ".join(errors).rstrip("."))
    return case_filter.qs


def _int(params: Mapping[str, Any], name: str, default: int, maximum: int) -> int:
    value = params.get(name) or default
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise bad_parameter(name, f"{str(value)[:20]!r} is not a whole number") from None
    if not 1 <= number <= maximum:
        raise bad_parameter(name, f"must be between 1 and {maximum}")
    return number


def case_list(request: HttpRequest, query: Query[PageParams]) -> HttpResponseBase:
    """A page of the cases the filters select."""
    size = _int(request.GET, "page_size", 50, 500)
    paginator = Paginator(_filtered(request), size)
    number = _int(request.GET, "page", 1, 10**6)
    try:
        page = paginator.page(number)
    except EmptyPage:
        raise bad_parameter("page", f"there are {paginator.num_pages} pages") from None
    return json_answer({"count": paginator.count, "page": number, "page_size": size,
                        "pages": paginator.num_pages, "results": [serialize(c) for c in page]})


def case_csv(request: HttpRequest, query: Query[CaseListParams]) -> HttpResponseBase:
    """Every case the filters select, as CSV."""
    return cases_csv(_filtered(request))


# --- The write API ---------------------------------------------------------------------------
TEXT_LIMITS = {"owner": 150, "code": 32, "comment": 5000}


def bad_field(name: str, message: str, status: int = 400) -> Problem:
    """The problem naming the body's field at fault."""
    return Problem(status, "invalid-field", "Invalid field", f"Field {name!r}: {message}.",
                   [f"{name}: {message}"])


def _action_body(request: HttpRequest) -> dict[str, str]:
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


def case_action(request: HttpRequest, id: int) -> HttpResponseBase:  # id: the path's name
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
        # Signed in: a session's user, or the user a bearer token acts for (api.py).
        _apply(case, fields["action"], cast(User, request.user), fields)
    except services.TransitionError as error:
        field = "owner" if fields["action"] == "assign" else "status"
        raise bad_field(field, str(error), status=409) from None
    case.refresh_from_db()
    entries = CaseEntry.objects.filter(case=case, pk__gt=last).order_by("pk")
    return json_answer({"case": serialize(case), "entries": [
        {"at": e.at.isoformat(), "actor": e.actor_label, "action": e.action,
         "field": e.field or None, "from": e.from_value or None, "to": e.to_value or None,
         "comment": e.comment or None} for e in entries]})


# The body the action reads (_action_body), for the document.
ACTION_NAMES: list[JsonValue] = [*sorted(ACTIONS)]
# pydantic's (type, field) pairs; its stubs do not take `str | None` as a type form.
TEXT_FIELDS: dict[str, Any] = {name: (str | None, Field(None, max_length=limit))
                               for name, limit in TEXT_LIMITS.items()}
ActionBody = create_model(
    "CaseActionBody", action=(str, Field(..., json_schema_extra={"enum": ACTION_NAMES})),
    **TEXT_FIELDS)
ACTION_BODY = ActionBody.model_json_schema()
ACTION_BODY["properties"]["code"] = {
    "enum": [*services.RESOLUTION_CODES, None],
    "description": "resolve: the resolution code (default fixed)"}
ACTION_BODY["properties"]["owner"]["description"] = "assign: a username, or null/empty for nobody"
ACTION_BODY["properties"]["comment"]["description"] = (
    "comment: the text; wait, resolve, ignore, reopen: an optional note")


def case_routers() -> tuple[ProblemRouter, ProblemRouter]:
    """The case list and export (read API), and the triage actions (write API)."""
    read = ProblemRouter(auth=READ_AUTH, tags=["read"])
    read.add_api_operation(
        "exceptions", list(READ_METHODS), case_list, url_name="api-exceptions",
        operation_id="listExceptions", summary="Exception cases, filtered and paginated",
        response={200: answers.CaseList}, openapi_extra={"responses": READ_ERRORS})
    read.add_api_operation(
        "exceptions.csv", list(READ_METHODS), case_csv, url_name="api-exceptions-csv",
        operation_id="exportExceptionsCsv", summary="Exception cases as CSV",
        openapi_extra={"responses": {**READ_ERRORS, 200: {
            "description": "One row per case, same filters as /api/v1/exceptions.",
            "content": {"text/csv": {"schema": {"type": "string"}}}}}})
    write = ProblemRouter(auth=WRITE_AUTH, tags=["write"])
    write.add_api_operation(
        "exceptions/{int:id}/actions", list(WRITE_METHODS), case_action,
        url_name="api-exception-actions", operation_id="actOnException",
        summary="A triage action on a case: claim, assign, acknowledge, wait, resolve, "
                "ignore, reopen, comment",
        description="The case page's actions: the same permission (the user's "
                    "exceptions.triage_case, and the token's `triage` scope), validation "
                    "and audit entries. A session also needs its CSRF token.",
        response={200: answers.CaseAction}, by_alias=True, openapi_extra={
            "requestBody": {"required": True, "content": {
                "application/json": {"schema": ACTION_BODY}}},
            "responses": {
                200: {"description": "Done: the case as it is now, and the audit entries "
                                       "the action wrote."},
                400: problem_doc("The body is not a JSON object, or a field is invalid; "
                                   "the problem names it."),
                401: READ_ERRORS[401],
                403: problem_doc("The token lacks the `triage` scope, the user may not "
                                   "triage, or a session sent no CSRF token."),
                404: problem_doc("No such case."),
                405: problem_doc("Another method than POST."),
                409: problem_doc("The case's status does not allow the action (reopen a "
                                   "closed case first), or the owner cannot triage."),
                503: READ_ERRORS[503]}})
    return read, write
