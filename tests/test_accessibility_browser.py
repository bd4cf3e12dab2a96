"""Every page at 1440 and 390 px in Chromium: axe-core finds no critical or serious
violation, the page never scrolls sideways (tables scroll in their own box), the nav folds
into a menu on a phone, and the skip link reaches the content.

axe-core's own script comes from the axe-playwright-python package (test extras), never
from the network."""
import pytest

from tests.conftest import screenshot

pytestmark = pytest.mark.browser
WIDTHS = [1440, 390]
DASHBOARDS = ["/", "/readiness/", "/wip/", "/latency/", "/integration/", "/margin/",
              "/close/", "/reconciliation/", "/billing/", "/trends/"]
OTHER_PAGES = ["/items/invoice/I1/", "/api/docs/"]
EXCEPTIONS_PAGES = ["/exceptions/", "/exceptions/{case}/", "/exceptions/?view=grouped"]


@pytest.fixture
def firm_with_case(page):
    from exceptions import services
    from exceptions.models import Case, Queue
    from ingestion import pipeline
    from ingestion.intake import store_events
    from ingestion.models import Source

    from .opsview.firm import firm_events

    store_events(Source.objects.create(slug="psa", name="PSA"), firm_events())
    pipeline.drain_inbox()
    case = Case(type="invoice_blocked", fingerprint="I9", title="Invoice I9 blocked: missing_po",
                severity="high", queue=Queue.objects.get(slug="finance-ops"),
                object_kind="invoice", object_id="I1", money_at_stake=1200, currency="USD")
    services.refresh_sla(case)
    case.save()
    return case


def serious_violations(page):
    from axe_playwright_python.sync_playwright import Axe

    results = Axe().run(page)
    return [(v["id"], v["impact"], v["help"], [n["target"] for n in v["nodes"]][:5])
            for v in results.response["violations"] if v["impact"] in ("critical", "serious")]


def visit(page, path, width):
    page.set_viewport_size({"width": width, "height": 900})
    page.goto(page.base_url + path + ("?period=2026-03" if path in DASHBOARDS else ""))
    page.wait_for_load_state("networkidle")
    assert page.locator(".loading").count() == 0, f"{path}: a panel did not load"


def check(page, path, width):
    """The page fits `width` and axe finds nothing critical or serious."""
    visit(page, path, width)
    page_width = page.evaluate("document.documentElement.scrollWidth")
    assert page_width <= width, f"{path} at {width} px is {page_width} px wide"
    found = serious_violations(page)
    name = path.strip("/").replace("/", "-") or "overview"
    screenshot(page, f"a11y-{name}-{width}")
    assert not found, f"{path} at {width} px: {found}"


@pytest.mark.parametrize("width", WIDTHS)
def test_dashboards_pass_axe_and_fit_the_screen(page, browser_login, firm_with_case, width):
    browser_login("executive")
    for path in DASHBOARDS + OTHER_PAGES:
        check(page, path, width)


@pytest.mark.parametrize("width", WIDTHS)
def test_exceptions_pages_pass_axe_and_fit_the_screen(page, browser_login, firm_with_case,
                                                      width):
    browser_login("finance_ops")
    for path in EXCEPTIONS_PAGES:
        check(page, path.format(case=firm_with_case.pk), width)


@pytest.mark.parametrize("width", WIDTHS)
def test_login_and_admin_pass_axe(page, width):
    from django.contrib.auth.models import User

    from tests.conftest import PASSWORD

    check(page, "/accounts/login/", width)
    User.objects.create_superuser("root", "root@example.com", PASSWORD)
    page.fill("#id_username", "root")
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(lambda url: "/accounts/login" not in url)
    check(page, "/admin/", width)


def test_on_a_phone_the_nav_folds_into_a_menu(page, browser_login):
    browser_login("executive")
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(page.base_url + "/wip/")
    nav = page.locator("#mainnav")
    assert not nav.is_visible()
    page.click(".navtoggle")
    assert nav.is_visible() and page.locator(".navtoggle").get_attribute(
        "aria-expanded") == "true"
    page.click("#mainnav >> text=Overview")
    page.wait_for_url(page.base_url + "/")
    page.set_viewport_size({"width": 1440, "height": 900})
    assert page.locator("#mainnav").is_visible() and not page.locator(".navtoggle").is_visible()


def test_the_skip_link_is_the_first_stop_and_reaches_the_content(page, browser_login):
    browser_login("executive")
    page.goto(page.base_url + "/wip/")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "main"


def test_a_chart_shows_its_numbers_as_a_table(page, browser_login, firm_with_case):
    browser_login("executive")
    page.goto(page.base_url + "/wip/?period=2026-03")
    page.wait_for_selector(".panel-wip_summary .main-svg")
    numbers = page.locator(".panel-wip_summary details.chart-numbers")
    assert not numbers.locator("table").is_visible()
    numbers.locator("summary").click()
    cells = numbers.locator("tbody th").all_inner_texts()
    assert cells == ["GBP", "USD"]
