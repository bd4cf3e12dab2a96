"""RFC 9457 problem documents for every rejection the ingestion and read APIs make."""
from typing import Any

from django.http import JsonResponse

PROBLEM_BASE = "/problems/"


class Problem(Exception):
    """A client error that becomes an application/problem+json response."""

    def __init__(self, status: int, slug: str, title: str, detail: str,
                 errors: list[Any] | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.slug = slug
        self.title = title
        self.detail = detail
        self.errors = list(errors or [])
        self.headers = dict(headers or {})

    def as_dict(self) -> dict[str, Any]:
        """The problem document (RFC 9457) as JSON-ready data."""
        return {
            "type": PROBLEM_BASE + self.slug,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
            "errors": self.errors,
        }


def problem_response(problem: Problem) -> JsonResponse:
    """The problem as an application/problem+json response with its headers."""
    response = JsonResponse(problem.as_dict(), status=problem.status,
                            content_type="application/problem+json")
    for name, value in problem.headers.items():
        response[name] = value
    return response


def unauthorized() -> Problem:
    """One body for every authentication failure, so sources cannot be enumerated."""
    return Problem(401, "unauthorized", "Unauthorized",
                   "The request could not be authenticated for this source.")
