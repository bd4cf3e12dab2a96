"""The API's edges: authentication (session or bearer token, with its scopes), the 405 and
401 answers, and parameter parsing. The ninja API (reporting.api_urls) and the plain
/metrics view share them.

Every endpoint answers JSON; every rejection is an RFC 9457 problem document that names
the parameter at fault.
"""
import calendar
import datetime as dt
import functools
import re
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

from django.contrib.auth.decorators import login_not_required
from django.contrib.auth.models import User
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.http.response import HttpResponseBase
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from ninja import NinjaAPI, Router
from ninja.errors import AuthenticationError, ValidationError
from ninja.operation import PathView
from ninja.security.base import AuthBase

from core.problems import Problem, problem_response
from opsview.models import ApiToken
from reporting import fx, kpis


def api_endpoint(view: Callable) -> Callable:
    """A plain Django view as a read-API resource (/metrics): authenticated by session or
    `Authorization: Bearer` (a token with the `read` scope), GET or HEAD only, Problems
    turned into responses. The /api/v1/ endpoints get the same from the ninja API
    (reporting.api_urls), built from the same functions.

    Exempt from CSRF: the read API changes nothing, so a write is refused by the documented
    405 problem document (whatever the credentials) rather than by the CSRF check's page."""

    @csrf_exempt
    @login_not_required
    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        if request.method not in READ_METHODS:
            return method_not_allowed(request, READ_METHODS)
        try:
            authenticate(request, "read")
            return json_answer(view(request, *args, **kwargs))
        except Problem as problem:
            return problem_response(problem)

    return wrapper


def authenticate(request: HttpRequest, scope: str, csrf: bool = False) -> None:
    """Set request.user (and request.api_token) from the bearer token or the session, or
    raise the Problem that refuses the request: 401 without credentials, 403 for a token
    without `scope` (and, with `csrf`, for a session without its CSRF token)."""
    if bearer_token(request, scope) is None and session_user(request, csrf) is None:
        raise unauthenticated("Log in or send Authorization: Bearer <token>.")


def bearer_token(request: HttpRequest, scope: str) -> ApiToken | None:
    """The request's bearer token, if it sends one, after checking it and its scope; None
    when the request sends no bearer token."""
    request.api_token = None  # type: ignore[attr-defined]  # the API's own, as request.user
    header = request.headers.get("Authorization", "")
    if not header.lower().startswith("bearer "):
        return None
    api_token = ApiToken.find(header[7:].strip())
    if api_token is None:
        raise unauthenticated("The bearer token is not valid.")
    if scope not in api_token.scope_set:
        raise Problem(403, "insufficient-scope", "Forbidden",
                      f"This token's scopes ({api_token.scopes}) do not include {scope}.",
                      [f"scope: {scope} is required"])
    request.user = api_token.user
    request.api_token = api_token  # type: ignore[attr-defined]
    return api_token


def session_user(request: HttpRequest, csrf: bool = False) -> User | None:
    """The logged-in user, or None; with `csrf`, a session must also send its CSRF token
    (a session cookie is an ambient credential, a bearer token is not)."""
    request.api_token = None  # type: ignore[attr-defined]
    if not request.user.is_authenticated:
        return None
    if csrf and _csrf_refusal(request):
        raise Problem(403, "csrf", "Forbidden", "A session needs its CSRF token (X-CSRFToken).",
                      ["csrf: missing or incorrect"])
    return request.user


def _csrf_refusal(request: HttpRequest) -> HttpResponseBase | None:
    from django.middleware.csrf import CsrfViewMiddleware

    return CsrfViewMiddleware(_csrf_guarded).process_view(request, _csrf_guarded, (), {})


def _csrf_guarded(request: HttpRequest) -> HttpResponse:
    """The view _csrf_refusal's check stands in front of: the middleware only reads its
    csrf_exempt flag (it has none) and never calls it."""
    return HttpResponse(status=204)


READ_METHODS = ("GET", "HEAD")
WRITE_METHODS = ("POST",)
# What a 405 says, by the methods the resource answers.
REFUSALS = {READ_METHODS: "The read API only answers GET.",
            WRITE_METHODS: "This resource only answers POST."}


def method_not_allowed(request: HttpRequest, allowed: tuple[str, ...]) -> HttpResponse:
    """The 405 problem document, with `Allow`."""
    response = problem_response(Problem(405, "method-not-allowed", "Method Not Allowed",
                                        REFUSALS[allowed], [f"method: {request.method}"]))
    response["Allow"] = ", ".join(allowed)
    return response


def json_answer(result: Any) -> HttpResponseBase:
    """A KPI's or resource's dict as the JSON answer (NaN refused); a response as it is."""
    if isinstance(result, dict):
        return JsonResponse(result, json_dumps_params={"allow_nan": False})
    return result


def unauthenticated(detail: str) -> Problem:
    """The 401 problem, with the challenge naming the bearer scheme."""
    return Problem(401, "unauthenticated", "Unauthorized", detail,
                   headers={"WWW-Authenticate": 'Bearer realm="opsview"'})


def bad_parameter(name: str, message: str) -> Problem:
    """The 400 problem naming the parameter at fault."""
    return Problem(400, "invalid-parameter", "Invalid parameter",
                   f"Parameter {name!r}: {message}.", [f"{name}: {message}"])


# Dates outside these years are refused: windows and aging buckets computed from them
# would leave the calendar, and no firm's books hold them.
FIRST_YEAR, LAST_YEAR = 1900, 2199


def date_param(params: Mapping[str, str], name: str,
               default: dt.date | None = None) -> dt.date:
    """A date YYYY-MM-DD, in the years the API accepts; `default` when not given."""
    value = params.get(name)
    if value in (None, ""):
        if default is None:
            raise bad_parameter(name, "is required (YYYY-MM-DD)")
        return default
    try:
        day = dt.date.fromisoformat(value)
    except ValueError:
        raise bad_parameter(name, f"{value[:40]!r} is not a date (YYYY-MM-DD)") from None
    if not FIRST_YEAR <= day.year <= LAST_YEAR:
        raise bad_parameter(name, f"must be a date in the years {FIRST_YEAR}-{LAST_YEAR}")
    return day


def period_param(params: Mapping[str, str], name: str = "period",
                 default: str | None = None) -> tuple[str, dt.date, dt.date]:
    """A billing period YYYY-MM as (first day, last day)."""
    value = params.get(name) or default
    if not value or not re.fullmatch(r"\d{4}-(0[1-9]|1[0-2])", value):
        raise bad_parameter(name, f"{str(value)[:40]!r} is not a month (YYYY-MM)")
    year, month = int(value[:4]), int(value[5:])
    if not FIRST_YEAR <= year <= LAST_YEAR:
        raise bad_parameter(name, f"must be a month in the years {FIRST_YEAR}-{LAST_YEAR}")
    first = dt.date(year, month, 1)
    last = first.replace(day=calendar.monthrange(year, month)[1])
    return value, first, last


def choice_param(params: Mapping[str, str], name: str, choices: list[str],
                 default: str | None = None) -> str:
    """One of `choices`; `default` when not given."""
    value = params.get(name) or default
    if value not in choices:
        raise bad_parameter(name, f"must be one of {', '.join(choices)}")
    return value


def currency_param(params: Mapping[str, str], name: str = "currency") -> str | None:
    """A reporting currency (ISO 4217, three letters; lower case is read as upper), or None
    when not asked for."""
    value = params.get(name, "")
    if not value:
        return None
    if not re.fullmatch(r"[A-Za-z]{3}", value):
        raise bad_parameter(name, f"{value[:40]!r} is not an ISO 4217 currency code such as "
                                  "EUR")
    return value.upper()


def window_param(params: Mapping[str, str], name: str = "window",
                 default: str = "24h") -> dt.timedelta:
    """A duration like 24h, 90m, 7d, as a timedelta."""
    value = params.get(name) or default
    match = re.fullmatch(r"(\d{1,5})([mhd])", value)
    if not match:
        raise bad_parameter(name, f"{value[:40]!r} is not a window such as 24h, 90m or 7d")
    amount, unit = int(match[1]), match[2]
    delta = {"m": dt.timedelta(minutes=amount), "h": dt.timedelta(hours=amount),
             "d": dt.timedelta(days=amount)}[unit]
    if delta <= dt.timedelta(0) or delta > dt.timedelta(days=366):
        raise bad_parameter(name, "must be between 1m and 366d")
    return delta


# --- KPI endpoints -------------------------------------------------------------------------
FILTER_NAMES = ("legal_entity", "practice", "client")


def kpi_filters(params: Mapping[str, str]) -> dict[str, str]:
    """The record filters asked for (legal_entity, practice, client), each checked."""
    filters = {}
    for name in FILTER_NAMES:
        value = params.get(name, "")
        if len(value) > 255:
            raise bad_parameter(name, "is longer than 255 characters")
        if "\x00" in value:
            raise bad_parameter(name, "must not contain NUL characters")
        if value:
            filters[name] = value
    return filters


def window_dates(params: Mapping[str, str],
                 default_days: int = 30) -> tuple[dt.date, dt.date]:
    """start= and end= dates (inclusive); by default the last `default_days` days."""
    today = timezone.localdate()
    end = date_param(params, "end", default=today)
    start = date_param(params, "start", default=end - dt.timedelta(days=default_days - 1))
    return check_span(start, end), end


def check_span(start: dt.date, end: dt.date) -> dt.date:
    """`start`, once it is known not to be after `end` nor more than ten years before."""
    if start > end:
        raise bad_parameter("start", "must not be after end")
    if (end - start).days > 3660:
        raise bad_parameter("start", "the window may span at most ten years")
    return start


def sum_rows(rows: list[dict], key: str) -> dict[str, Decimal]:
    """Per currency, the sum of one amount of a KPI's rows."""
    totals: dict[str, Decimal] = {}
    for row in rows:
        totals[row["currency"]] = totals.get(row["currency"], Decimal(0)) + Decimal(row[key])
    return totals


def with_reporting(result: dict, headline: Callable[[dict], dict], currency: str | None,
                   on: dt.date) -> dict:
    """Add the `reporting` block when a reporting currency was asked for: the KPI's headline
    amounts (`headline` of the result) converted with the rates published on or before
    `on`."""
    if currency:
        result["reporting"] = fx.reporting(headline(result), currency, on)
    return result


def health_window(params: Mapping[str, str]) -> tuple[dt.datetime, dt.datetime]:
    """`window=24h` ending now (the default), or `start=`/`end=` dates (inclusive)."""
    if params.get("start") or params.get("end"):
        if params.get("window"):
            raise bad_parameter("window", "give either window or start/end, not both")
        start, end = window_dates(params, default_days=1)
        return kpis._day_bounds(start, end)
    now = timezone.now()
    return now - window_param(params), now


# --- The ninja API's edges -----------------------------------------------------------------
class BearerAuth(AuthBase):
    """`Authorization: Bearer <token>`, a token holding `scope`; passes to the next scheme
    when the request sends no bearer token."""

    openapi_type = "http"
    openapi_scheme = "bearer"
    openapi_description = "A token from `create_api_token` or the admin."

    def __init__(self, scope: str) -> None:
        self.scope = scope
        super().__init__()

    def __call__(self, request: HttpRequest) -> ApiToken | None:
        return bearer_token(request, self.scope)


class SessionAuth(AuthBase):
    """The browser's session; with `csrf`, it must send its CSRF token as well."""

    openapi_type = "apiKey"
    openapi_in = "cookie"
    openapi_name = "sessionid"

    def __init__(self, csrf: bool = False) -> None:
        self.csrf = csrf
        super().__init__()

    def __call__(self, request: HttpRequest) -> User | None:
        return session_user(request, self.csrf)


READ_AUTH = [BearerAuth("read"), SessionAuth()]
WRITE_AUTH = [BearerAuth("triage"), SessionAuth(csrf=True)]


class _RefusingPathView(PathView):
    """One path's operations; any other method is the 405 problem document, before any
    authentication (ninja's own answer is a plain text 405). The view is public to
    LoginRequiredMiddleware: the API authenticates for itself."""

    def _sync_view(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        if self._find_operation(request) is None:
            allowed = tuple(method for op in self.operations for method in op.methods)
            return method_not_allowed(request, allowed)
        return super()._sync_view(request, *args, **kwargs)

    def get_view(self) -> Callable:
        return login_not_required(super().get_view())

    def clone(self) -> "PathView":
        cloned = super().clone()
        cloned.__class__ = type(self)
        return cloned


class ProblemRouter(Router):
    """A ninja Router whose paths refuse other methods with a problem document."""

    def add_api_operation(self, path: str, methods: list[str], view_func: Callable,
                          **kwargs: Any) -> None:
        self.path_operations.setdefault(path, _RefusingPathView())
        super().add_api_operation(path, methods, view_func, **kwargs)


def install_problem_handlers(api: NinjaAPI) -> None:
    """Every refusal as the API's own problem document: Problems as they are, a request
    without credentials as the 401, anything pydantic refused as a 400 naming the
    parameter. Any other exception goes on to Django (the 503 for a database that is away,
    the replica's retry on the primary, the 500)."""

    def problem(request: HttpRequest, exc: Problem) -> HttpResponse:
        return problem_response(exc)

    def no_credentials(request: HttpRequest, exc: AuthenticationError) -> HttpResponse:
        return problem_response(unauthenticated("Log in or send Authorization: Bearer <token>."))

    def invalid(request: HttpRequest, exc: ValidationError) -> HttpResponse:
        error = exc.errors[0]
        name = str(error.get("loc", ["", "parameter"])[-1])
        return problem_response(bad_parameter(name, str(error.get("msg", "is invalid"))))

    def unexpected(request: HttpRequest, exc: Exception) -> HttpResponse:
        raise exc

    # ninja's annotation has the handler take the exception or its class; it is handed the
    # exception, as these handlers say.
    api.add_exception_handler(Problem, problem)  # type: ignore[arg-type]
    api.add_exception_handler(AuthenticationError, no_credentials)  # type: ignore[arg-type]
    api.add_exception_handler(ValidationError, invalid)  # type: ignore[arg-type]
    api.add_exception_handler(Exception, unexpected)  # type: ignore[arg-type]


# --- How the edges answer, for the OpenAPI document ---------------------------------------
PROBLEM_MEDIA_TYPE = "application/problem+json"
RETRY_AFTER = {"Retry-After": {"schema": {"type": "string"}, "description": "Seconds to wait."}}


def problem_doc(description: str, headers: dict | None = None) -> dict:
    """An error answer in the document: a problem document, with these headers."""
    answer = {"description": description, "content": {
        PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}}}
    if headers:
        answer["headers"] = headers
    return answer


UNAVAILABLE = problem_doc("The database cannot be reached (down or restarting); nothing was "
                          "changed. Retry after the given seconds.", RETRY_AFTER)
READ_ERRORS = {
    200: {"description": "The figures and the inputs they used."},
    400: problem_doc("A parameter is invalid; the problem names it."),
    401: problem_doc("No session and no valid bearer token."),
    503: UNAVAILABLE,
}
