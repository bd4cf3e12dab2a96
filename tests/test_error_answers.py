"""Every refusal is safe to show and, on the machine paths (/api/, /ingest/), an RFC 9457
problem document: writes to the read API get the documented 405 whatever the credentials,
and no answer echoes the request as markup."""
import pytest
from django.test import Client
from django.urls import get_resolver

from opsview.models import ApiToken

API_ROUTES = ["/api/v1/kpis/wip", "/api/v1/kpis/invoice-readiness",
              "/api/v1/kpis/posting-latency", "/api/v1/kpis/utilization",
              "/api/v1/kpis/integration-health", "/api/v1/kpis/margin",
              "/api/v1/kpis/receivables", "/api/v1/kpis/exceptions", "/api/v1/kpis/billing",
              "/api/v1/kpis/reconciliation", "/api/v1/kpis/period-close",
              "/api/v1/kpis/trends", "/api/v1/exceptions", "/api/v1/exceptions.csv"]
# The write API answers POST only (tests/integrations/test_write_api.py); other methods are
# its own documented 405.
WRITE_ROUTES = ["/api/v1/exceptions/<int:id>/actions"]
HOSTILE = "<script>alert(1)</script>"


def assert_problem(response, status):
    assert response.status_code == status, response.content[:300]
    assert response["Content-Type"] == "application/problem+json", response.content[:300]
    body = response.json()
    assert body["status"] == status and {"type", "title", "detail", "errors"} <= body.keys()
    return body


def test_every_read_api_route_is_listed():
    """A new route under /api/v1/ must be added above, so the write checks cover it."""
    api = next(p for p in get_resolver().url_patterns if str(p.pattern) == "api/v1/")

    def paths(patterns, prefix):
        for pattern in patterns:
            if hasattr(pattern, "url_patterns"):
                yield from paths(pattern.url_patterns, prefix + str(pattern.pattern))
            else:
                yield prefix + str(pattern.pattern)

    assert set(paths(api.url_patterns, "/api/v1/")) == set(API_ROUTES) | set(WRITE_ROUTES)


@pytest.fixture
def bearer(role_user):
    _, token = ApiToken.issue(role_user("cfo", "executive"))
    return {"Authorization": f"Bearer {token}"}


@pytest.mark.parametrize("method", ["post", "put", "patch", "delete"])
@pytest.mark.parametrize("path", API_ROUTES)
def test_a_write_with_a_bearer_token_is_the_documented_405(bearer, method, path):
    client = Client(enforce_csrf_checks=True)
    response = getattr(client, method)(path, data="{}", content_type="application/json",
                                       headers=bearer)
    assert_problem(response, 405)
    assert response["Allow"] == "GET, HEAD"


@pytest.mark.parametrize("path", ["/api/v1/kpis/wip", "/api/v1/exceptions"])
def test_a_write_with_a_session_and_no_csrf_token_is_405_too(role_user, path):
    client = Client(enforce_csrf_checks=True)
    client.force_login(role_user("finance", "finance_ops"))
    assert_problem(client.post(path), 405)


@pytest.mark.parametrize("method", ["get", "post"])
def test_an_unknown_api_path_is_a_404_problem(bearer, method):
    response = getattr(Client(enforce_csrf_checks=True), method)(
        "/api/v1/kpis/" + HOSTILE, headers=bearer)
    body = assert_problem(response, 404)
    assert HOSTILE not in response.content.decode()
    assert body["detail"]


def test_an_unknown_ingest_path_is_a_404_problem(db):
    assert_problem(Client().post("/ingest/schemas/nope/deeper"), 404)


def test_a_bad_host_on_the_api_is_a_400_problem(db):
    response = Client().get("/api/v1/kpis/wip", HTTP_HOST="evil.example")
    assert_problem(response, 400)


# --- Triage answers that name what was sent ---------------------------------------------------
def assert_plain_text(response, status):
    assert response.status_code == status
    assert response["Content-Type"].startswith("text/plain"), response["Content-Type"]
    assert response["X-Content-Type-Options"] == "nosniff"


def test_an_unknown_case_action_is_answered_as_text(client, logged_in, case):
    logged_in("finance_ops")
    response = client.post(f"/exceptions/{case.pk}/%3Cimg%20src%3Dx%20onerror%3Dalert(1)%3E")
    assert_plain_text(response, 400)


def test_an_unknown_bulk_action_is_answered_as_text(client, logged_in, case):
    logged_in("finance_ops")
    assert_plain_text(client.post("/exceptions/bulk", {"action": HOSTILE, "ids": [case.pk]}), 400)


def test_a_refused_transition_is_answered_as_text(client, logged_in, case):
    logged_in("finance_ops")
    response = client.post(f"/exceptions/{case.pk}/assign", {"owner": HOSTILE},
                           headers={"HX-Request": "true"})
    assert_plain_text(response, 409)


def test_the_handshake_never_fails_on_what_it_echoes(client, db):
    response = client.options("/ingest/any/events",
                              headers={"WebHook-Request-Origin": "a.example\r\nX-Injected: 1"})
    assert response.status_code == 200
    assert "X-Injected" not in response.headers
    assert "WebHook-Allowed-Origin" not in response.headers
