"""The read API: /api/v1/kpis/... answers the KPI functions' results; bad input is a 400."""
import pytest

from opsview.models import ApiToken

ENDPOINTS = ["wip", "invoice-readiness", "posting-latency", "utilization",
             "integration-health", "margin", "receivables"]


@pytest.mark.parametrize("name", ENDPOINTS)
def test_anonymous_request_is_401_problem(client, db, name):
    response = client.get(f"/api/v1/kpis/{name}")
    assert response.status_code == 401
    assert response["Content-Type"] == "application/problem+json"


@pytest.mark.parametrize("name", ENDPOINTS)
def test_bearer_token_authenticates(client, role_user, name):
    _, token = ApiToken.issue(role_user("cfo", "executive"))
    response = client.get(f"/api/v1/kpis/{name}", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.content
    assert client.get(f"/api/v1/kpis/{name}",
                      headers={"Authorization": "Bearer nope"}).status_code == 401


def test_wip_endpoint_returns_the_kpi_with_its_inputs(client, logged_in, firm):
    logged_in("executive")
    body = client.get("/api/v1/kpis/wip?as_of=2026-03-31&client=C1").json()
    assert body["as_of"] == "2026-03-31"
    assert body["filters"] == {"client": "C1"}
    assert body["currencies"]["USD"]["total"] == "16050.00"
    assert body["currencies"]["USD"]["fixed_fee"] == "6000.00"


def test_readiness_margin_and_receivables_endpoints(client, logged_in, firm):
    logged_in("finance_ops")
    readiness = client.get("/api/v1/kpis/invoice-readiness?period=2026-03").json()
    assert readiness["currencies"]["USD"]["ready_value"] == "860.00"
    assert readiness["blocked_invoices"]["currencies"] == {"GBP": "300.00", "USD": "700.00"}
    margin = client.get("/api/v1/kpis/margin?start=2026-03-01&end=2026-03-31"
                        "&group_by=practice").json()
    assert margin["group_by"] == "practice"
    assert {r["key"] for r in margin["rows"]} == {"Data", "Cloud"}
    receivables = client.get("/api/v1/kpis/receivables?as_of=2026-03-31").json()
    assert receivables["currencies"]["USD"]["dso_days"] == 120.0


def test_latency_utilization_and_health_endpoints(client, logged_in, firm):
    logged_in("integration")
    latency = client.get("/api/v1/kpis/posting-latency?start=2026-03-01&end=2026-03-31").json()
    assert latency["p50_seconds"] == 43200
    utilization = client.get("/api/v1/kpis/utilization?start=2026-03-01&end=2026-03-31").json()
    assert utilization["capacity_hours"] == "316.80"
    health = client.get("/api/v1/kpis/integration-health?window=24h").json()
    assert {"start", "end", "flows", "inbox", "duplicates", "reconciliation_gaps"} <= set(health)
    by_dates = client.get("/api/v1/kpis/integration-health?start=2026-03-01&end=2026-03-02")
    assert by_dates.json()["start"].startswith("2026-03-01")


@pytest.mark.parametrize("url,parameter", [
    ("/api/v1/kpis/wip?as_of=yesterday", "as_of"),
    ("/api/v1/kpis/invoice-readiness?period=2026-13", "period"),
    ("/api/v1/kpis/invoice-readiness?period=march", "period"),
    ("/api/v1/kpis/posting-latency?start=2026-03-31&end=2026-03-01", "start"),
    ("/api/v1/kpis/utilization?end=31/03/2026", "end"),
    ("/api/v1/kpis/integration-health?window=forever", "window"),
    ("/api/v1/kpis/integration-health?window=0h", "window"),
    ("/api/v1/kpis/integration-health?window=24h&start=2026-03-01", "window"),
    ("/api/v1/kpis/margin?group_by=person", "group_by"),
    ("/api/v1/kpis/receivables?as_of=2026-02-30", "as_of"),
    ("/api/v1/kpis/wip?client=" + "x" * 300, "client"),
    ("/api/v1/kpis/wip?legal_entity=a%00b", "legal_entity"),
    ("/api/v1/kpis/wip?as_of=0001-01-01", "as_of"),
    ("/api/v1/kpis/invoice-readiness?period=0000-01", "period"),
    ("/api/v1/kpis/invoice-readiness?period=9999-12", "period"),
    ("/api/v1/kpis/utilization?end=9999-12-31", "end"),
])
def test_bad_parameter_is_a_400_problem_naming_it(client, logged_in, url, parameter):
    logged_in("executive")
    response = client.get(url)
    assert response.status_code == 400
    problem = response.json()
    assert response["Content-Type"] == "application/problem+json"
    assert problem["status"] == 400
    assert parameter in problem["detail"]
    assert problem["errors"][0].startswith(parameter)


def test_the_api_only_answers_get(client, logged_in):
    logged_in("executive")
    assert client.post("/api/v1/kpis/wip").status_code == 405
