"""What the dashboards say: words for codes, money with its currency, dates people read,
every WIP entry reachable, the integration page's links into the case list."""
import csv
import io
import re

import pytest

from opsview import labels
from reporting.templatetags.opsview import millis, money_in

RAW_CODES = ["missing_po", "rate_mismatch", "fixed_upstream", "approved_time_unposted",
             "missing_billing_setup", "invoice_blocked"]
ISO_MINUTE = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d")


def text_of(response):
    """The visible text of a panel (tags, attributes and JSON chart data left out)."""
    html = response.content.decode()
    html = re.sub(r"<script.*?</script>", "", html, flags=re.S)
    return re.sub(r"<[^>]+>", " ", html)


def test_codes_read_as_words():
    assert labels.label("missing_po") == "Missing purchase order"
    assert labels.label("fixed_upstream") == "Fixed in the source system"
    assert labels.label("some_new_code") == "Some new code"


def test_money_is_shown_with_its_currency_and_latency_in_a_unit():
    assert money_in("771000.00", "EUR") == "771,000\u00a0EUR"
    assert money_in(None, "EUR") == "—"
    assert millis(1846.7) == "1.8 s" and millis(850) == "850 ms"


def test_dates_read_as_dates():
    assert labels.readable_date("2026-09-04") == "4 Sep 2026"
    assert labels.readable_time("2026-09-04T18:01:00+00:00") == "4 Sep 2026, 18:01"
    assert labels.readable_time(None) == "—"


@pytest.mark.parametrize("panel", ["overview_cards", "blocked_invoices", "readiness_summary",
                                   "wip_summary", "wip_entries", "health_summary",
                                   "latency_summary", "close_cases", "receivables",
                                   "billing_summary", "recon_reported", "health_gaps"])
def test_no_panel_shows_raw_codes_or_machine_dates(client, logged_in, firm, panel):
    logged_in("executive")
    text = text_of(client.get(f"/panels/{panel}/?period=2026-03"))
    for code in RAW_CODES:
        assert code not in text, (panel, code)
    assert not ISO_MINUTE.search(text), (panel, ISO_MINUTE.search(text))
    assert not re.search(r"\b\d{4}-\d\d-\d\d\b", text), panel


def test_blockers_are_named_and_amounts_carry_their_currency(client, logged_in, firm):
    logged_in("executive")
    blockers = text_of(client.get("/panels/blocked_invoices/?period=2026-03"))
    assert "Missing purchase order" in blockers and "Rate mismatch" in blockers
    wip = text_of(client.get("/panels/wip_summary/?period=2026-03"))
    assert "16,050\u00a0USD" in wip and "1,200\u00a0GBP" in wip


def test_an_empty_period_says_so(client, logged_in, firm):
    logged_in("executive")
    for panel in ("latency_trend", "wip_summary", "overview_charts"):
        text = text_of(client.get(f"/panels/{panel}/?period=2019-01"))
        assert "No data for this period" in text, panel


def test_a_drawn_chart_offers_its_numbers_as_a_table(client, logged_in, firm):
    logged_in("executive")
    html = client.get("/panels/wip_summary/?period=2026-03").content.decode()
    assert "Show as table" in html
    assert re.search(r'<th scope="row">USD</th>', html)


@pytest.fixture
def many_entries(monkeypatch):
    """120 WIP entries (the KPI itself is tested in test_kpis.py)."""
    from reporting import kpis

    rows = [{"kind": "time_entry", "id": f"T{i:03}", "date": "2026-03-02", "age_days": 29,
             "client": "Acme", "project": "P1", "person": "Ann", "hours": "1.00",
             "value": "100.00", "currency": "USD", "in_billing": False} for i in range(120)]
    monkeypatch.setattr(kpis, "wip_entries", lambda **kwargs: [dict(r) for r in rows])


def test_wip_entries_are_paginated_and_every_row_is_reachable(client, logged_in, many_entries):
    logged_in("finance_ops")
    first = text_of(client.get("/panels/wip_entries/?period=2026-03"))
    assert "Rows 1–50 of 120" in first and "T000" in first and "T050" not in first
    third = client.get("/panels/wip_entries/?period=2026-03&entries_page=3")
    assert "Rows 101–120 of 120" in text_of(third) and "T119" in text_of(third)
    assert "Next 50" not in text_of(third) and "Previous 50" in text_of(third)
    beyond = text_of(client.get("/panels/wip_entries/?period=2026-03&entries_page=99"))
    assert "Rows 101–120 of 120" in beyond
    bad = client.get("/wip/?period=2026-03&entries_page=x")
    assert bad.status_code == 200 and "entries_page must be a whole number" in text_of(bad)


def test_the_wip_entries_export_streams_every_row(client, logged_in, many_entries):
    logged_in("finance_ops")
    response = client.get("/panels/wip_entries/?period=2026-03&entries_page=2&format=csv")
    assert response.streaming
    rows = list(csv.reader(io.StringIO(response.getvalue().decode())))
    assert len(rows) == 121 and rows[1][1] == "T000" and rows[-1][1] == "T119"


def test_the_integration_page_has_no_filters_that_change_nothing(client, logged_in, firm):
    logged_in("integration")
    html = client.get("/integration/").content.decode()
    assert 'id="filters"' not in html
    assert 'id="filters"' in client.get("/wip/").content.decode()


@pytest.fixture
def flows_today(deliver, process):
    import datetime as dt

    from .firm import sync

    now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    deliver.send(sync("psa-to-erp", "T1", True, now, latency=900),
                 sync("psa-to-erp", "T2", False, now), sync("crm-to-psa", "T3", False, now))
    process()


def test_each_flow_links_to_its_cases_and_keeps_its_colour(client, logged_in, flows_today):
    logged_in("integration")
    html = client.get("/panels/health_summary/").content.decode()
    assert "/exceptions/?type=sync_failed&amp;q=psa-to-erp" in html
    assert "/exceptions/?type=stale_feed&amp;q=psa-to-erp" in html
    assert "/exceptions/?type=dead_letter" in html
    swatches = re.findall(r'--swatch: (#[0-9a-f]{6})', html)
    assert len(set(swatches)) == 2
    chart = client.get("/panels/health_throughput/").content.decode()
    assert all(swatch in chart for swatch in swatches)


def test_the_flow_links_find_the_flows_cases(client, logged_in, firm):
    from exceptions.models import Case, Queue

    Case.objects.create(type="sync_failed", fingerprint="x", queue=Queue.objects.first(),
                        title="psa-to-erp: time_entry T9 failed to sync (E1)", severity="high")
    logged_in("integration")
    listing = client.get("/exceptions/?type=sync_failed&q=psa-to-erp").content.decode()
    assert "T9 failed to sync" in listing
