"""The month-end pages as a person sees them, in headless Chromium at 1440 px: each renders
its panels and charts, and changing a filter changes the numbers."""
import pytest

from tests.conftest import screenshot

from .firm import close_calendars, firm_events, month_end_events

pytestmark = pytest.mark.browser
PAGES = [("/close/", "close"), ("/reconciliation/", "reconciliation"),
         ("/billing/", "billing"), ("/trends/", "trends"), ("/", "overview")]


@pytest.fixture
def closing_firm(page):
    from exceptions import rules
    from ingestion import pipeline
    from ingestion.intake import store_events
    from ingestion.models import Source

    store_events(Source.objects.create(slug="psa", name="PSA"),
                 firm_events() + month_end_events())
    pipeline.drain_inbox()
    close_calendars()
    rules.evaluate_time_rules()


def open_page(page, path):
    page.goto(page.base_url + path)
    page.wait_for_load_state("networkidle")
    assert page.locator(".loading").count() == 0, f"{path}: a panel did not load"


def test_every_month_end_page_renders_its_charts(page, browser_login, closing_firm):
    browser_login("executive")
    for path, name in PAGES:
        period = "2026-04" if name == "billing" else "2026-03"
        open_page(page, f"{path}?period={period}")
        page.wait_for_selector(".main-svg", timeout=15_000)
        screenshot(page, f"month-end-{name}")
    # Every trend draws: one chart per metric of SPEC section 4.
    open_page(page, "/trends/?period=2026-03")
    page.wait_for_function("document.querySelectorAll('.main-svg').length >= 7")


def test_the_close_page_follows_the_legal_entity(page, browser_login, closing_firm):
    browser_login("finance_ops")
    open_page(page, "/close/?period=2026-03")
    firm = page.locator(".panel-close_summary .kpi .sub").first.inner_text()
    assert "end of Mon 6 Apr 2026" in firm  # the firm's 3rd working day, Good Friday off
    assert page.locator(".panel-close_summary table.data").inner_text().count("end of") == 2
    page.select_option("select[name=legal_entity]", "US")
    page.click("#filters button[type=submit]")
    page.wait_for_url("**legal_entity=US**")
    page.wait_for_load_state("networkidle")
    summary = page.locator(".panel-close_summary .kpi .sub").first
    assert "end of Thu 2 Apr 2026" in summary.inner_text()
    # The US slipped E3 too (I11 was issued after its cut-off): 6,010 rather than 5,950.
    assert "6,010" in page.locator(".panel-close_summary").inner_text()
    rows = page.locator(".panel-close_cases tbody tr")
    assert rows.count() >= 4 and "breached" in rows.first.inner_text()
    screenshot(page, "month-end-close-us")


def test_reconciliation_gaps_link_to_each_items_timeline(page, browser_login, closing_firm):
    browser_login("finance_ops")
    open_page(page, "/reconciliation/?period=2026-03")
    summary = page.locator(".panel-recon_summary").inner_text()
    assert "Billed, never posted" in summary
    page.click(".panel-recon_gaps a:text-is('T20')")
    page.wait_for_url("**/items/time_entry/T20/")
    timeline = page.locator("main").inner_text()
    assert "time entry invoiced" in timeline and "invoice I3 issued" in timeline
    open_page(page, "/reconciliation/?period=2026-03&legal_entity=UK")
    rows = page.locator(".panel-recon_summary tbody tr").all_inner_texts()
    assert any(r.startswith("Time entries") and "Approved in PSA" in r and "\t1\t" in r
               for r in rows), rows


def test_a_reporting_currency_converts_the_overview_and_names_its_rates(page, browser_login,
                                                                       closing_firm):
    browser_login("executive")
    open_page(page, "/wip/?period=2026-03")
    assert page.locator(".reporting").count() == 0  # nothing converted unless asked
    page.select_option("select[name=currency]", "EUR")
    page.click("#filters button[type=submit]")
    page.wait_for_url("**currency=EUR**")
    page.wait_for_load_state("networkidle")
    block = page.locator(".panel-wip_summary .reporting").inner_text()
    assert "15,857 EUR" in block and "1 USD = 0.9 EUR (2026-03-31)" in block
    open_page(page, "/?period=2026-03&currency=JPY")
    assert "Not included — no published rate: GBP, USD" in page.locator(
        ".panel-overview_cards").inner_text()
    screenshot(page, "month-end-overview-jpy")


def test_trends_by_week_have_more_points_than_by_month(page, browser_login, closing_firm):
    browser_login("executive")
    open_page(page, "/trends/?period=2026-03")
    monthly = page.evaluate("document.querySelector('#panel-trend_wip .chart').data[0].x.length")
    open_page(page, "/trends/?period=2026-03&interval=week")
    weekly = page.evaluate("document.querySelector('#panel-trend_wip .chart').data[0].x.length")
    assert (monthly, weekly) == (12, 12)
    first_week = page.evaluate("document.querySelector('#panel-trend_wip .chart').data[0].x[0]")
    assert first_week >= "2026-01-01"  # twelve weeks back, not twelve months
