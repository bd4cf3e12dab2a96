"""The OpenAPI document at /api/schema/, and schemathesis driving every operation in it.

Schemathesis generates requests from the document (valid ones and, for the ingestion
endpoint's bodies, deliberately invalid ones) and checks each response: never a 5xx, a
status code and content type the document declares, a body that matches the declared schema.
Requests run in-process through Django's WSGI application.
"""
import io
import os
import re
import time

import pytest
import schemathesis
from django.core.wsgi import get_wsgi_application
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from openapi_spec_validator import validate
from schemathesis import GenerationMode
from schemathesis.checks import CHECKS

from ingestion.events import STRUCTURED
from ingestion.models import InboxEvent, Source
from ingestion.signing import signed_headers
from opsview.models import ApiToken
from reporting.openapi import document
from tests.conftest import make_role_user

SOURCE = "fuzz"
# Examples per operation and mode; raise it for a deeper run (docs/testing.md).
EXAMPLES = int(os.environ.get("OPSVIEW_FUZZ_EXAMPLES", "40"))


def signing(app):
    """A WSGI wrapper that signs every delivery to /ingest/fuzz/events with fuzz's secret,
    the way a middleware would, so the generated bodies get past verification and reach
    the parser, the inbox and processing."""

    def wrapper(environ, start_response):
        path = environ.get("PATH_INFO", "")
        if environ.get("REQUEST_METHOD") == "POST" and path == f"/ingest/{SOURCE}/events":
            length = int(environ.get("CONTENT_LENGTH") or 0)
            body = environ["wsgi.input"].read(length)
            environ["wsgi.input"] = io.BytesIO(body)
            secret = Source.objects.get(slug=SOURCE).secret
            headers = signed_headers(secret, f"msg_{time.monotonic_ns()}", body)
            for name, value in headers.items():
                environ["HTTP_" + name.upper().replace("-", "_")] = value
        return app(environ, start_response)

    return wrapper


APP = signing(get_wsgi_application())
SCHEMA = schemathesis.openapi.from_wsgi("/api/schema/", APP)
OPERATIONS = [result.ok() for result in SCHEMA.get_all_operations()]
# The CSV export is checked for status and content type; its body is not JSON.
CHECK_NAMES = ["not_a_server_error", "status_code_conformance", "content_type_conformance",
          "response_schema_conformance", "response_headers_conformance"]


def test_the_document_is_valid_openapi_3_1(client):
    response = client.get("/api/schema/")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/vnd.oai.openapi+json"
    body = response.json()
    validate(body)
    assert body["openapi"] == "3.1.0"


def test_the_document_covers_every_api_route():
    from django.urls import get_resolver

    from config import urls

    documented = set(document()["paths"])
    routes = {"/ingest/{source}/events", "/ingest/schemas/", "/ingest/schemas/{event_type}.json",
              "/api/schema/"}
    for pattern in get_resolver(urls).url_patterns:
        if str(pattern.pattern) == "api/v1/":
            routes |= _flatten("/api/v1/", pattern)
    assert routes <= documented, routes - documented


def _flatten(prefix, resolver):
    found = set()
    for pattern in resolver.url_patterns:
        if hasattr(pattern, "url_patterns"):
            found |= _flatten(prefix + str(pattern.pattern), pattern)
        else:
            found.add(re.sub(r"<\w+:(\w+)>", r"{\1}", prefix + str(pattern.pattern)))
    return found


def test_event_types_in_the_document_are_the_contract_catalog():
    from ingestion import catalog

    envelope = document()["components"]["schemas"]["CloudEvent"]
    assert envelope["properties"]["type"]["enum"] == sorted(catalog.CONTRACTS)


@pytest.fixture(autouse=True)
def _keep_the_test_connection():
    """Requests go through the plain WSGI handler, which closes a connection left inside a
    transaction when a request ends; the test's transaction must survive (Django's test
    client does the same)."""
    from django.core import signals
    from django.db import close_old_connections

    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


@pytest.fixture
def fuzz_source(db):
    return Source.objects.create(slug=SOURCE, name="Fuzz", rate_limit_per_minute=0)


@pytest.fixture
def bearer(db):
    _, token = ApiToken.issue(make_role_user("schemathesis", "finance_ops"), name="fuzz",
                              scopes="read triage")
    return {"Authorization": f"Bearer {token}"}


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE],
                         ids=lambda mode: mode.value)
@pytest.mark.parametrize("operation", OPERATIONS, ids=lambda op: op.label)
def test_every_operation_holds_to_the_document(operation, mode, fuzz_source, bearer, case):
    """Valid requests and deliberately invalid ones (negative mode: wrong types, values
    outside the declared ranges, missing required parts) alike."""
    a_case = case  # the fixture; `case` below is schemathesis's generated request
    checks = [c for c in CHECKS.get_all() if c.__name__ in CHECK_NAMES]
    strategy = operation.as_strategy(generation_mode=mode)

    @settings(max_examples=EXAMPLES, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(case=strategy)
    def run(case):
        if "source" in (case.path_parameters or {}):
            case.path_parameters["source"] = SOURCE
        if "id" in (case.path_parameters or {}) and mode is GenerationMode.POSITIVE:
            case.path_parameters["id"] = a_case.pk  # actions on a case that exists
        response = case.call(headers=bearer)
        case.validate_response(response, checks=checks)

    try:
        run()
    except Unsatisfiable:  # nothing to break: an operation without parameters or body
        assert mode is GenerationMode.NEGATIVE
        pytest.skip("no invalid request can be built for this operation")
    # Nothing half-written: every row the fuzzing stored is an inbox row or a dead letter
    # with its reason, and processing drains the inbox completely.
    from ingestion import pipeline

    pipeline.drain_inbox()
    assert not InboxEvent.objects.filter(status="pending").exists()
    assert not InboxEvent.objects.filter(status="dead", errors=[]).exists()


def test_a_malformed_bearer_token_or_none_is_a_401_problem(client, db):
    for headers in ({}, {"Authorization": "Bearer not-a-token"},
                    {"Authorization": "Bearer \u00e9\u00e9"}):
        response = client.get("/api/v1/kpis/wip", headers=headers)
        assert response.status_code == 401
        assert response["Content-Type"] == "application/problem+json"
        assert response.json()["status"] == 401


def test_structured_mode_is_declared_with_its_media_type():
    content = document()["paths"]["/ingest/{source}/events"]["post"]["requestBody"]["content"]
    assert STRUCTURED in content
