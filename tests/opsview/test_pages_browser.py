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
    assert page.locator(".panel-wip_summary .kpi .value").inner_text() == "1,200\u00a0GBP"


def test_a_hostile_client_name_is_text_in_the_charts(page, browser_login):
    """plotly.js draws links and bold from HTML in labels: a client named with markup must
    show that markup as text (artifacts/chart-hostile-client.png)."""
    import datetime as dt

    from ingestion import pipeline
    from ingestion.events import make_event
    from ingestion.intake import store_events
    from ingestion.models import Source

    from .test_charts import HOSTILE

    renamed = make_event("client.upserted", {"client_id": "C1", "name": HOSTILE},
                         time=dt.datetime.now(dt.UTC) + dt.timedelta(minutes=1))
    store_events(Source.objects.create(slug="psa", name="PSA"), firm_events() + [renamed])
    pipeline.drain_inbox()
    browser_login("executive")
    page.goto(page.base_url + "/margin/?period=2026-03&group_by=client")
    chart = page.locator(".panel-margin_table .main-svg").first
    chart.wait_for()
    panel = page.locator(".panel-margin_table")
    labels = panel.locator(".xtick text").all_text_contents()
    assert any("<b>Bold</b>" in label and "</a>" in label for label in labels), labels
    assert panel.locator("svg a").count() == 0  # no link drawn
    assert panel.locator("svg tspan[style*='bold']").count() == 0  # no bold drawn
    screenshot(page, "chart-hostile-client")
