"""Answers for requests that failed on the server's side.

A database that is down or restarting is not a fault of the request: the answer is
`503 Service Unavailable` with `Retry-After` — an RFC 9457 problem document on the APIs, a
short page that retries on its own for people — so that API clients, senders and browsers
come back, instead of a `500` that reads like a bug. Any other failure keeps Django's 500.
"""
import logging
import sys
from collections.abc import Callable
from http import HTTPStatus

from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse
from django.templatetags.static import static
from django.views import defaults

from core.problems import Problem, problem_response

log = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 5
DATABASE_UNAVAILABLE = (OperationalError, InterfaceError)
MACHINE_PATHS = ("/api/", "/ingest/")

# Standalone: rendering must not need the database (no user, no context processors). The
# stylesheet is a static file, served without it.
UNAVAILABLE_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="refresh" content="{seconds}">
<title>OpsView is unavailable</title>
<link rel="stylesheet" href="{stylesheet}"></head>
<body><main class="login-page"><section class="login-card">
<h1>Ops<span>View</span> cannot reach its database</h1>
<p class="muted">Nothing was changed. This page tries again in {seconds} seconds.</p>
</section></main></body></html>
"""


def database_unavailable(request: HttpRequest,
                         detail: str = "The database cannot be reached right now; nothing "
                                       "was changed. Retry later.") -> HttpResponse:
    """The 503 for a request that could not reach the database."""
    if request.path.startswith(MACHINE_PATHS):
        return problem_response(Problem(
            503, "unavailable", "Service Unavailable", detail, ["database unavailable"],
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)}))
    page = UNAVAILABLE_PAGE.format(seconds=RETRY_AFTER_SECONDS,
                                   stylesheet=static("opsview/app.css"))
    response = HttpResponse(page, status=503)
    response["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


class ProblemDocumentsMiddleware:
    """On the machine paths (/api/, /ingest/) every error answer is a problem document,
    including those Django makes before or around a view (unknown path, a Host not allowed,
    a method a view refuses): API clients and senders parse one format, and nothing of the
    request is echoed back. Headers that tell the client what to do next are kept."""

    KEPT_HEADERS = ("Allow", "Retry-After", "WWW-Authenticate")
    DETAILS = {
        400: "The request could not be read (a Host that is not allowed, or a malformed "
             "header or body).",
        403: "This request is not allowed.",
        404: "Nothing is served at this path; the API document is at /api/schema/.",
        405: "This path does not answer this method.",
    }

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if (response.status_code < 400 or not request.path.startswith(MACHINE_PATHS)
                or response.get("Content-Type") == "application/problem+json"):
            return response
        status = HTTPStatus(response.status_code)
        problem = problem_response(Problem(
            status.value, status.phrase.lower().replace(" ", "-"), status.phrase,
            self.DETAILS.get(status.value, "The request could not be answered.")))
        for name in self.KEPT_HEADERS:
            if name in response:
                problem[name] = response[name]
        return problem


def server_error(request: HttpRequest) -> HttpResponse:
    """handler500: Django calls it while handling the exception, so sys.exc_info() names it."""
    if isinstance(sys.exc_info()[1], DATABASE_UNAVAILABLE):
        return database_unavailable(request)
    return defaults.server_error(request)
