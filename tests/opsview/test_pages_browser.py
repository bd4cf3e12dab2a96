"""The dashboards as a person sees them, in headless Chromium."""
import pytest

from tests.conftest import screenshot

from .firm import firm_events

pytestmark = pytest.mark.browser
PAGES = [("/", "overview"), ("/readiness/", "readiness"), ("/wip/", "wip"),
         ("/latency/", "latency"), ("/integration/", "integration"), ("/margin/", "margin")]


@pytest.fixture
def firm(page):
    from ingestion import pipeline
    from ingestion.intake import store_events
    from ingestion.models import Source

    store_events(Source.objects.create(slug="psa", name="PSA"), firm_events())
    pipeline.drain_inbox()


def test_every_dashboard_renders_its_charts(page, browser_login, firm):
    browser_login("executive")
    for path, name in PAGES:
        page.goto(page.base_url + path + "?period=2026-03")
        page.wait_for_load_state("networkidle")
        assert page.locator(".loading").count() == 0, f"{name}: a panel did not load"
        if name not in ("integration",):
            page.wait_for_selector(".main-svg", timeout=15_000)
        screenshot(page, f"dashboard-{name}")


def test_changing_a_filter_changes_the_numbers(page, browser_login, firm):
    browser_login("finance_ops")
    page.goto(page.base_url + "/wip/?period=2026-03")
    page.wait_for_selector(".panel-wip_summary .kpi .value")
    before = page.locator(".panel-wip_summary .kpi .label").all_inner_texts()
    assert before == ["GBP", "USD"]
    page.select_option("select[name=practice]", "Cloud")
    page.click("#filters button[type=submit]")
    page.wait_for_url("**practice=Cloud**")
    page.wait_for_selector(".panel-wip_summary .kpi .value")
    assert page.locator(".panel-wip_summary .kpi .label").all_inner_texts() == ["GBP"]
    assert page.locator(".panel-wip_summary .kpi .value").inner_text() == "1,200"
