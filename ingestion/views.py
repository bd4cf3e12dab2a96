"""The webhook: verify, then parse, then commit to the inbox, then answer."""
import logging
import re

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET

from core.errors import DATABASE_UNAVAILABLE, database_unavailable
from core.problems import Problem, problem_response, unauthorized
from core.throttle import over_limit

from . import catalog
from .intake import IntakeResult, parse_events, store_events
from .models import Source
from .signing import VerificationError, signature_headers, verify

log = logging.getLogger(__name__)


@csrf_exempt
def webhook(request: HttpRequest, source: str) -> HttpResponse:
    """Receive events for one source: POST delivers, OPTIONS is the handshake."""
    if request.method == "OPTIONS":
        return _handshake(request)
    if request.method != "POST":
        response = problem_response(Problem(
            405, "method-not-allowed", "Method Not Allowed", "Send events with POST.",
            [f"method: {request.method}"]))
        response["Allow"] = "POST, OPTIONS"
        return response
    try:
        result = _accept(request, source)
    except Problem as problem:
        return problem_response(problem)
    except DATABASE_UNAVAILABLE as exc:
        # The database is down or restarting: nothing of this request was committed, so the
        # sender must retry (Standard Webhooks senders do on any 5xx).
        log.warning("webhook for %s not accepted, database unavailable: %s", source[:64], exc)
        return database_unavailable(
            request, "The inbox cannot be written right now; nothing from this request was "
                     "accepted. Retry later.")
    return JsonResponse(result.as_dict(), status=202)


def _accept(request: HttpRequest, slug: str) -> IntakeResult:
    limit = settings.INGEST_MAX_BODY_BYTES
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        declared = 0
    if declared > limit:
        raise _too_large(declared, limit)
    body = _read_body(request, limit + 1)
    if len(body) > limit:
        raise _too_large(len(body), limit)

    source = Source.objects.filter(slug=slug, enabled=True).first()
    if source is None:
        log.info("webhook for unknown or disabled source %r", slug[:64])
        raise unauthorized()
    headers = request.headers
    try:
        verify(source.active_secrets, *signature_headers(headers), body,
               tolerance=settings.INGEST_TIMESTAMP_TOLERANCE_SECONDS)
    except VerificationError as exc:
        log.info("webhook for %s rejected: %s", source.slug, exc)
        raise unauthorized() from None

    retry_after = over_limit(f"source:{source.pk}", source.rate_limit_per_minute)
    if retry_after:
        raise Problem(429, "rate-limited", "Too Many Requests",
                      f"Source {source.slug} is over its limit of "
                      f"{source.rate_limit_per_minute} requests per minute.",
                      [f"retry after {retry_after} s"], headers={"Retry-After": str(retry_after)})

    events = parse_events(request.content_type, {k.lower(): v for k, v in headers.items()}, body)
    return store_events(source, events)


def _read_body(request: HttpRequest, most: int) -> bytes:
    """At most `most` bytes of the body. A chunked body has no Content-Length, so Django
    reads it as empty: it is read from the server's stream instead, to its end, when the
    server says it decoded the chunks and ends the stream (`wsgi.input_terminated`, as
    gunicorn does); otherwise the sender is told to send a Content-Length."""
    chunked = "chunked" in request.headers.get("Transfer-Encoding", "").lower()
    if request.META.get("CONTENT_LENGTH") or not chunked:
        return request.read(most)
    if not request.META.get("wsgi.input_terminated"):
        raise Problem(411, "length-required", "Length Required",
                      "This server cannot read a chunked body to its end: send the body with "
                      "a Content-Length header.", ["content-length: missing"])
    stream, parts, size = request.META["wsgi.input"], [], 0
    while size < most and (part := stream.read(most - size)):
        parts.append(part)
        size += len(part)
    return b"".join(parts)


def _too_large(size: int, limit: int) -> Problem:
    return Problem(413, "body-too-large", "Content Too Large",
                   f"The body is over the limit of {limit} bytes.",
                   [f"body: {size} bytes, limit {limit}"])


_VISIBLE_ASCII = re.compile(r"[\x21-\x7e]{1,255}")


def _handshake(request: HttpRequest) -> HttpResponse:
    """CloudEvents webhook validation (abuse protection) handshake."""
    response = HttpResponse(status=200)
    response["Allow"] = "POST"
    origin = request.headers.get("WebHook-Request-Origin", "")
    if _VISIBLE_ASCII.fullmatch(origin):  # echoed only when it is a plain header value
        response["WebHook-Allowed-Origin"] = origin
    rate = request.headers.get("WebHook-Request-Rate")
    if rate:
        response["WebHook-Allowed-Rate"] = rate if rate.isdigit() else "*"
    return response


@require_GET
def schema_catalog(request: HttpRequest) -> JsonResponse:
    """The list of event types, each with the address of its JSON Schema."""
    listing = {
        "specversion": "1.0",
        "types": [
            {"type": event_type,
             "schema": request.build_absolute_uri(f"/ingest/schemas/{event_type}.json")}
            for event_type in sorted(catalog.CONTRACTS)
        ],
    }
    return JsonResponse(listing)


@require_GET
def schema_detail(request: HttpRequest, event_type: str) -> HttpResponse:
    """The JSON Schema of one event type's data, or a 404 problem."""
    if event_type not in catalog.CONTRACTS:
        return problem_response(Problem(404, "unknown-event-type", "Unknown event type",
                                        f"No schema for event type {event_type!r}.",
                                        [f"type: {event_type[:100]}"]))
    return JsonResponse(catalog.json_schema(event_type),
                        content_type="application/schema+json")
