"""Dashboard pages and their panels, for every role; CSV export of each panel's table."""
from html import escape

import pytest

from reporting.views import PAGES, PANELS


@pytest.mark.parametrize("name", sorted(PAGES))
def test_anonymous_visitor_is_sent_to_login(client, db, name):
    url = "/" if name == "home" else f"/{name}/"
    response = client.get(url)
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]
    assert client.get(f"/panels/{PAGES[name][2][0]}/").status_code == 302


@pytest.mark.parametrize("role", ["finance_ops", "delivery_ops", "integration", "executive"])
def test_every_page_and_panel_renders_for_every_role(client, logged_in, firm, role):
    logged_in(role)
    for name, (title, _, panels, _) in PAGES.items():
        url = "/" if name == "home" else f"/{name}/"
        response = client.get(url + "?period=2026-03")
        assert response.status_code == 200
        assert escape(title) in response.content.decode()
        for panel in panels:
            assert client.get(f"/panels/{panel}/?period=2026-03").status_code == 200, panel


@pytest.mark.parametrize("panel", sorted(PANELS))
def test_each_panel_exports_its_table_as_csv(client, logged_in, firm, panel):
    logged_in("executive")
    response = client.get(f"/panels/{panel}/?period=2026-03&format=csv")
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv"
    assert response.getvalue().decode().splitlines()[0]


def test_wip_panel_numbers_follow_the_filters(client, logged_in, firm):
    logged_in("finance_ops")
    everything = client.get("/panels/wip_summary/?period=2026-03&format=csv").getvalue().decode()
    cloud = client.get("/panels/wip_summary/?period=2026-03&practice=Cloud&format=csv")
    cloud = cloud.getvalue().decode()
    assert "USD,16050.00" in everything and "GBP,1200.00" in everything
    assert "USD" not in cloud and "GBP,1200.00" in cloud


def test_a_bad_period_is_explained_not_a_500(client, logged_in, firm):
    logged_in("executive")
    response = client.get("/wip/?period=2026-99")
    assert response.status_code == 200
    assert "is not a month" in response.content.decode()


def test_a_nul_in_a_filter_is_explained_not_a_500(client, logged_in, firm):
    logged_in("executive")
    response = client.get("/wip/?client=a%00b")
    assert response.status_code == 200
    assert "must not contain NUL" in response.content.decode()


def test_panels_are_shared_for_the_cache_interval(client, logged_in, firm, settings,
                                                  deliver, event, process):
    from django.core.cache import cache

    settings.PANEL_CACHE_SECONDS = 30
    logged_in("executive")
    url = "/panels/wip_summary/?period=2026-03&format=csv"
    before = client.get(url).getvalue().decode()
    deliver.send(event("expense.approved", {
        "expense_id": "X-NEW", "project_id": "P1", "person_id": "U1",
        "incurred_on": "2026-03-10", "amount": "1000.00", "currency": "USD",
        "billable": True}, time="2026-03-11T09:00:00Z"))
    process()
    assert client.get(url).getvalue().decode() == before  # within the interval: the same figures
    cache.clear()
    assert client.get(url).getvalue().decode() != before  # after it: recomputed


def test_unknown_panel_is_404(client, logged_in):
    logged_in("executive")
    assert client.get("/panels/nope/").status_code == 404


def test_csv_cells_cannot_start_a_spreadsheet_formula(client, logged_in, deliver, process,
                                                      event):
    deliver.send(event("client.upserted", {"client_id": "X", "name": "=HYPERLINK(\"x\")"}),
                 event("project.upserted", {
                     "project_id": "PX", "client_id": "X", "name": "P", "practice": "Data",
                     "legal_entity": "US", "currency": "USD", "status": "active",
                     "billing_method": "milestone"}),
                 event("milestone.completed", {"milestone_id": "m", "project_id": "PX",
                                               "name": "m", "amount": "5",
                                               "completed_on": "2026-03-02"}))
    process()
    logged_in("executive")
    body = client.get("/panels/wip_groups/?period=2026-03&format=csv").getvalue().decode()
    assert "'=HYPERLINK" in body
