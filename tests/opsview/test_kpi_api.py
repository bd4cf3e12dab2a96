"""The read API: /api/v1/kpis/... answers the KPI functions' results; bad input is a 400."""
import pytest

from opsview.models import ApiToken

ENDPOINTS = ["wip", "invoice-readiness", "posting-latency", "utilization",
             "integration-health", "margin", "receivables", "billing", "reconciliation",
             "period-close", "trends?metric=wip"]


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
    ("/api/v1/kpis/reconciliation?period=2026-3", "period"),
    ("/api/v1/kpis/period-close?period=2026-00", "period"),
    ("/api/v1/kpis/period-close?period=2026-03&currency=EURO", "currency"),
    ("/api/v1/kpis/wip?currency=1%24", "currency"),
    ("/api/v1/kpis/billing?start=2026-04-01&end=2026-03-01", "start"),
    ("/api/v1/kpis/billing?currency=%E2%82%AC", "currency"),
    ("/api/v1/kpis/trends", "metric"),
    ("/api/v1/kpis/trends?metric=margin", "metric"),
    ("/api/v1/kpis/trends?metric=wip&interval=day", "interval"),
    ("/api/v1/kpis/trends?metric=readiness_ratio&interval=week", "interval"),
    ("/api/v1/kpis/trends?metric=wip&start=1900-01-01&end=2100-01-01", "start"),
    ("/api/v1/kpis/trends?metric=wip&end=2026-13-01", "end"),
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


def test_month_end_endpoints_answer_the_kpi_functions(client, logged_in, closing_firm):
    logged_in("finance_ops")
    recon = client.get("/api/v1/kpis/reconciliation?period=2026-03&legal_entity=US").json()
    assert recon["filters"] == {"legal_entity": "US"}
    assert recon["time"]["billed_not_posted"]["ids"] == ["T20"]
    close = client.get("/api/v1/kpis/period-close?period=2026-03&legal_entity=UK").json()
    assert close["cutoff_at"] == "2026-04-09T00:00:00+00:00"
    assert close["currencies"]["GBP"]["slipped_value"] == "1200.00"
    billing = client.get("/api/v1/kpis/billing?start=2026-04-01&end=2026-04-30").json()
    assert billing["currencies"]["USD"]["realization_ratio"] == 0.907
    trend = client.get("/api/v1/kpis/trends?metric=open_ar&start=2026-02-01"
                       "&end=2026-03-31").json()
    assert trend["points"][-1] == {"end": "2026-03-31", "currencies": {"USD": "6000.00"}}


def test_the_reporting_block_is_added_only_when_asked(client, logged_in, closing_firm):
    logged_in("executive")
    plain = client.get("/api/v1/kpis/wip?as_of=2026-03-31").json()
    assert "reporting" not in plain
    eur = client.get("/api/v1/kpis/wip?as_of=2026-03-31&currency=eur").json()
    assert eur["reporting"]["currency"] == "EUR" and eur["reporting"]["total"] == "15856.76"
    # Nothing is published for yen: every currency is named, none converted.
    yen = client.get("/api/v1/kpis/receivables?as_of=2026-03-31&currency=JPY").json()
    assert yen["reporting"] == {"currency": "JPY", "total": "0.00", "rates": [],
                                "unconverted": ["USD"]}
    # Margin converts its earned revenue; no rate links GBP and USD.
    margin = client.get("/api/v1/kpis/margin?start=2026-03-01&end=2026-03-31"
                        "&currency=USD").json()
    assert margin["reporting"]["unconverted"] == ["GBP"]
    for name in ("invoice-readiness?period=2026-03", "posting-latency", "billing",
                 "period-close?period=2026-03"):
        body = client.get(f"/api/v1/kpis/{name}{'&' if '?' in name else '?'}currency=EUR")
        assert set(body.json()["reporting"]) == {"currency", "total", "rates", "unconverted"}
