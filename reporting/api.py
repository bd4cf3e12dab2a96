"""The API's edges: authentication (session or bearer token, with its scopes), the read and
write decorators, and parameter parsing.

Every endpoint answers JSON; every rejection is an RFC 9457 problem document that names
the parameter at fault.
"""
import calendar
import datetime as dt
import functools
import re
from decimal import Decimal

from django.contrib.auth.decorators import login_not_required
from django.http import JsonResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt

from core.problems import Problem, problem_response
from opsview.models import ApiToken
from reporting import billing, close, fx, kpis, trends


def api_endpoint(view):
    """Authenticate by session or `Authorization: Bearer` (a token with the `read` scope);
    turn Problems into responses.

    Exempt from CSRF: the read API changes nothing, so a write is refused by the documented
    405 problem document (whatever the credentials) rather than by the CSRF check's page."""

    @csrf_exempt
    @login_not_required
    @functools.wraps(view)
    def wrapper(request, *args, **kwargs):
        if request.method not in ("GET", "HEAD"):
            return _method_not_allowed(request, "GET, HEAD", "The read API only answers GET.")
        refused = authenticate(request, "read")
        return refused or _answer(view, request, *args, **kwargs)

    return wrapper


def api_action_endpoint(view):
    """The write API's edge: POST only, by a bearer token with the `triage` scope or by a
    session with its CSRF token; every refusal a problem document."""

    @csrf_exempt  # checked below for sessions only: a bearer token is no ambient credential
    @login_not_required
    @functools.wraps(view)
    def wrapper(request, *args, **kwargs):
        if request.method != "POST":
            return _method_not_allowed(request, "POST", "This resource only answers POST.")
        refused = authenticate(request, "triage")
        if refused:
            return refused
        if not request.api_token and _csrf_refusal(request):
            return problem_response(Problem(
                403, "csrf", "Forbidden", "A session needs its CSRF token (X-CSRFToken).",
                ["csrf: missing or incorrect"]))
        return _answer(view, request, *args, **kwargs)

    return wrapper


def authenticate(request, scope):
    """Set request.user (and request.api_token) from the bearer token or the session; a
    response when the request may not go on: 401 without credentials, 403 for a token
    without `scope`."""
    request.api_token = None
    header = request.headers.get("Authorization", "")
    if header.lower().startswith("bearer "):
        api_token = ApiToken.find(header[7:].strip())
        if api_token is None:
            return _unauthenticated("The bearer token is not valid.")
        if scope not in api_token.scope_set:
            return problem_response(Problem(
                403, "insufficient-scope", "Forbidden",
                f"This token's scopes ({api_token.scopes}) do not include {scope}.",
                [f"scope: {scope} is required"]))
        request.user, request.api_token = api_token.user, api_token
    elif not request.user.is_authenticated:
        return _unauthenticated("Log in or send Authorization: Bearer <token>.")
    return None


def _csrf_refusal(request):
    from django.middleware.csrf import CsrfViewMiddleware

    return CsrfViewMiddleware(lambda r: None).process_view(request, None, (), {})


def _method_not_allowed(request, allow, detail):
    response = problem_response(Problem(405, "method-not-allowed", "Method Not Allowed",
                                        detail, [f"method: {request.method}"]))
    response["Allow"] = allow
    return response


def _answer(view, request, *args, **kwargs):
    try:
        result = view(request, *args, **kwargs)
    except Problem as problem:
        return problem_response(problem)
    if isinstance(result, dict):
        return JsonResponse(result, json_dumps_params={"allow_nan": False})
    return result


def _unauthenticated(detail):
    response = problem_response(Problem(401, "unauthenticated", "Unauthorized", detail))
    response["WWW-Authenticate"] = 'Bearer realm="opsview"'
    return response


def bad_parameter(name, message):
    return Problem(400, "invalid-parameter", "Invalid parameter",
                   f"Parameter {name!r}: {message}.", [f"{name}: {message}"])


# Dates outside these years are refused: windows and aging buckets computed from them
# would leave the calendar, and no firm's books hold them.
FIRST_YEAR, LAST_YEAR = 1900, 2199


def date_param(params, name, default=None):
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


def period_param(params, name="period", default=None):
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


def choice_param(params, name, choices, default=None):
    value = params.get(name) or default
    if value not in choices:
        raise bad_parameter(name, f"must be one of {', '.join(choices)}")
    return value


def currency_param(params, name="currency"):
    """A reporting currency (ISO 4217, three letters; lower case is read as upper), or None
    when not asked for."""
    value = params.get(name, "")
    if not value:
        return None
    if not re.fullmatch(r"[A-Za-z]{3}", value):
        raise bad_parameter(name, f"{value[:40]!r} is not an ISO 4217 currency code such as "
                                  "EUR")
    return value.upper()


def window_param(params, name="window", default="24h"):
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


def kpi_filters(params):
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


def window_dates(params, default_days=30):
    """start= and end= dates (inclusive); by default the last `default_days` days."""
    today = timezone.localdate()
    end = date_param(params, "end", default=today)
    start = date_param(params, "start", default=end - dt.timedelta(days=default_days - 1))
    if start > end:
        raise bad_parameter("start", "must not be after end")
    if (end - start).days > 3660:
        raise bad_parameter("start", "the window may span at most ten years")
    return start, end


# The headline amounts a reporting currency converts (SPEC section 7).
HEADLINES = {
    "wip": lambda r: {c: f["total"] for c, f in r["currencies"].items()},
    "invoice-readiness": lambda r: {c: f["billable_value"] for c, f in r["currencies"].items()},
    "posting-latency": lambda r: r["backlog"]["currencies"],
    "margin": lambda r: _sum_rows(r["rows"], "earned_revenue"),
    "receivables": lambda r: {c: f["open_ar"] for c, f in r["currencies"].items()},
    "billing": lambda r: {c: f["billed_value"] for c, f in r["currencies"].items()},
    "period-close": lambda r: {c: f["billable_value"] for c, f in r["currencies"].items()},
}


def _sum_rows(rows, key):
    totals = {}
    for row in rows:
        totals[row["currency"]] = totals.get(row["currency"], 0) + Decimal(row[key])
    return totals


def with_reporting(result, name, currency, on):
    """Add the `reporting` block when a reporting currency was asked for: the KPI's headline
    amounts converted with the rates published on or before `on`."""
    if currency:
        result["reporting"] = fx.reporting(HEADLINES[name](result), currency, on)
    return result


@api_endpoint
def wip_kpi(request):
    as_of = date_param(request.GET, "as_of", default=timezone.localdate())
    currency = currency_param(request.GET)
    return with_reporting(kpis.wip(as_of=as_of, filters=kpi_filters(request.GET)), "wip",
                          currency, as_of)


def _period(params):
    return period_param(params, default=timezone.localdate().strftime("%Y-%m"))


@api_endpoint
def invoice_readiness_kpi(request):
    period, first, last = _period(request.GET)
    currency = currency_param(request.GET)
    return with_reporting(kpis.invoice_readiness(period=period, first_day=first, last_day=last,
                                                 filters=kpi_filters(request.GET)),
                          "invoice-readiness", currency, last)


@api_endpoint
def posting_latency_kpi(request):
    start, end = window_dates(request.GET)
    currency = currency_param(request.GET)
    return with_reporting(kpis.posting_latency(start=start, end=end,
                                               filters=kpi_filters(request.GET)),
                          "posting-latency", currency, end)


@api_endpoint
def utilization_kpi(request):
    start, end = window_dates(request.GET)
    return kpis.utilization(start=start, end=end, filters=kpi_filters(request.GET))


@api_endpoint
def integration_health_kpi(request):
    start, end = health_window(request.GET)
    return kpis.integration_health(start=start, end=end)


def health_window(params):
    """`window=24h` ending now (the default), or `start=`/`end=` dates (inclusive)."""
    if params.get("start") or params.get("end"):
        if params.get("window"):
            raise bad_parameter("window", "give either window or start/end, not both")
        start, end = window_dates(params, default_days=1)
        return kpis._day_bounds(start, end)
    now = timezone.now()
    return now - window_param(params), now


@api_endpoint
def margin_kpi(request):
    start, end = window_dates(request.GET)
    group_by = choice_param(request.GET, "group_by", ["project", "practice", "client"],
                            default="project")
    currency = currency_param(request.GET)
    return with_reporting(kpis.margin(start=start, end=end, group_by=group_by,
                                      filters=kpi_filters(request.GET)),
                          "margin", currency, end)


@api_endpoint
def receivables_kpi(request):
    as_of = date_param(request.GET, "as_of", default=timezone.localdate())
    currency = currency_param(request.GET)
    return with_reporting(kpis.receivables(as_of=as_of, filters=kpi_filters(request.GET)),
                          "receivables", currency, as_of)


@api_endpoint
def billing_kpi(request):
    start, end = window_dates(request.GET, default_days=90)
    currency = currency_param(request.GET)
    return with_reporting(billing.billing(start=start, end=end,
                                          filters=kpi_filters(request.GET)),
                          "billing", currency, end)


def _last_month():
    return (timezone.localdate().replace(day=1) - dt.timedelta(days=1)).strftime("%Y-%m")


@api_endpoint
def reconciliation_kpi(request):
    period, first, last = period_param(request.GET, default=_last_month())
    return close.reconciliation(period=period, first_day=first, last_day=last,
                                filters=kpi_filters(request.GET))


@api_endpoint
def period_close_kpi(request):
    period, first, last = period_param(request.GET, default=_last_month())
    currency = currency_param(request.GET)
    return with_reporting(close.period_close(period=period, first_day=first, last_day=last,
                                             filters=kpi_filters(request.GET)),
                          "period-close", currency, last)


@api_endpoint
def trends_kpi(request):
    metric = choice_param(request.GET, "metric", list(trends.METRICS))
    interval = choice_param(request.GET, "interval", [trends.MONTH, trends.WEEK],
                            default=trends.MONTH)
    if metric in trends.MONTH_ONLY and interval != trends.MONTH:
        raise bad_parameter("interval", f"{metric} is a monthly figure: must be month")
    end = date_param(request.GET, "end", default=timezone.localdate())
    start = date_param(request.GET, "start", default=trends.default_start(end, interval))
    if start > end:
        raise bad_parameter("start", "must not be after end")
    if len(trends.intervals(start, end, interval)) > trends.MAX_POINTS:
        raise bad_parameter("start", f"at most {trends.MAX_POINTS} intervals")
    return trends.trends(metric=metric, interval=interval, start=start, end=end,
                         filters=kpi_filters(request.GET))
