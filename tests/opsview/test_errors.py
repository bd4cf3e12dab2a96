"""A request that cannot reach the database gets 503 with Retry-After, not a 500: a problem
document on the APIs, a page that retries for people. bench/faults.py shows the same with
PostgreSQL really down; here the failure is raised where the query would run."""
import json

import pytest
from django.db import InterfaceError, OperationalError

from reporting import catalog, views


def _database_gone(*args, **kwargs):
    raise OperationalError("connection to server at 127.0.0.1, port 5432 failed: refused")


@pytest.fixture
def browser_client(logged_in, client):
    """A logged-in client that returns the 5xx response, as a browser sees it."""
    logged_in("executive")
    client.raise_request_exception = False
    return client


def test_read_api_answers_503_problem_when_the_database_is_away(browser_client, monkeypatch):
    wip = next(kpi for kpi in catalog.KPIS if kpi.name == "wip")
    monkeypatch.setattr(wip, "function", _database_gone)  # what the endpoint calls
    response = browser_client.get("/api/v1/kpis/wip")
    assert response.status_code == 503
    assert response["Content-Type"] == "application/problem+json"
    assert response["Retry-After"] == "5"
    problem = json.loads(response.content)
    assert problem["status"] == 503 and problem["type"].endswith("/unavailable")
    assert "nothing was changed" in problem["detail"]


def test_a_panel_answers_a_503_page_that_retries(browser_client, monkeypatch):
    def gone(f):
        raise InterfaceError("connection already closed")

    monkeypatch.setitem(views.PANELS, "wip_summary", gone)
    response = browser_client.get("/panels/wip_summary/?period=2026-03")
    assert response.status_code == 503
    assert response["Retry-After"] == "5"
    body = response.content.decode()
    assert "cannot reach its database" in body and 'http-equiv="refresh"' in body
    assert "opsview/app.css" in body  # styled like the app, from a static file


def test_other_failures_stay_500(browser_client, monkeypatch):
    def broken(f):
        raise ZeroDivisionError

    monkeypatch.setitem(views.PANELS, "wip_summary", broken)
    response = browser_client.get("/panels/wip_summary/?period=2026-03")
    assert response.status_code == 500
    assert "Retry-After" not in response
