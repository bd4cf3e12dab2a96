"""The triage flow as finance ops works it, in headless Chromium."""
import pytest
from playwright.sync_api import expect

from exceptions import services
from exceptions.models import Case, CaseEntry, Queue
from tests.conftest import screenshot

pytestmark = pytest.mark.browser


@pytest.fixture
def cases(page):
    queue = Queue.objects.get(slug="finance-ops")
    made = []
    for i, (kind, money) in enumerate([("invoice_blocked", 1200), ("milestone_not_invoiced",
                                                                    9000),
                                       ("approved_time_unposted", 300),
                                       ("invoice_blocked", 50)]):
        case = Case(type=kind, fingerprint=f"F{i}", title=f"Case {i} {kind}", queue=queue,
                    object_kind="invoice", object_id=f"I{i}", money_at_stake=money,
                    currency="USD", severity="high")
        services.refresh_sla(case)
        case.save()
        made.append(case)
    return made


def rows(page):
    return page.locator("tr.case-row td.title a").all_inner_texts()


def test_filter_claim_resolve_bulk_and_keyboard(page, browser_login, cases):
    browser_login("finance_ops", username="fiona")
    page.goto(page.base_url + "/exceptions/?sort=money")
    assert rows(page)[0] == "Case 1 milestone_not_invoiced"  # most money first
    screenshot(page, "triage-queue")

    page.select_option("select[name=type]", "invoice_blocked")
    page.click("#case-filters button[type=submit]")
    page.wait_for_url("**type=invoice_blocked**")
    assert sorted(rows(page)) == ["Case 0 invoice_blocked", "Case 3 invoice_blocked"]

    # Claim inline: the row updates without a page reload.
    page.evaluate("window.notReloaded = true")
    row = page.locator(f"#case-{cases[0].pk}")
    row.locator("summary").click()  # one action menu per row
    row.locator("button", has_text="Claim").click()
    expect(page.locator(f"#case-{cases[0].pk}")).to_contain_text("fiona")
    assert page.evaluate("window.notReloaded") is True
    # The row shows its new state: claimed, it no longer offers Claim.
    page.locator(f"#case-{cases[0].pk} summary").click()
    expect(page.locator(f"#case-{cases[0].pk} .menu")).not_to_contain_text("Claim")
    page.locator(f"#case-{cases[0].pk} button", has_text="Resolve").click()
    expect(page.locator(f"#case-{cases[0].pk}")).to_contain_text("Resolved")
    expect(page.locator("#undo-notice")).to_contain_text("1 case resolved")

    # Keyboard: j moves to the next row, a claims it, ? shows the help.
    page.goto(page.base_url + "/exceptions/?sort=money")
    page.keyboard.press("j")
    page.keyboard.press("a")
    expect(page.locator(f"#case-{cases[1].pk}")).to_contain_text("fiona")
    page.keyboard.press("?")
    assert page.locator("#help").is_visible()
    assert page.evaluate("document.activeElement.id") == "help"  # the dialog takes focus
    screenshot(page, "triage-help")
    page.keyboard.press("Escape")
    assert page.evaluate("document.activeElement.id") != "help"

    # Bulk: select two cases and acknowledge them together.
    page.check(f"#case-{cases[2].pk} input[name=ids]")
    page.check(f"#case-{cases[3].pk} input[name=ids]")
    assert page.locator("#selected-count").inner_text() == "2"
    page.click("#bulk-form button[value=acknowledge]")
    page.wait_for_load_state()
    assert {c.status for c in Case.objects.filter(pk__in=[cases[2].pk, cases[3].pk])} == {
        "acknowledged"}
    assert CaseEntry.objects.filter(case=cases[0], action="resolved").exists()


def test_case_page_shows_timeline_and_object(page, browser_login, cases):
    browser_login("finance_ops")
    page.goto(page.base_url + f"/exceptions/{cases[0].pk}/")
    page.fill("textarea[name=comment]", "Asked the client for a PO")
    page.click("form.comment button")
    page.wait_for_load_state()
    assert "Asked the client for a PO" in page.locator(".timeline").inner_text()
    screenshot(page, "triage-case")


def test_an_executive_sees_no_actions(page, browser_login, cases):
    browser_login("executive")
    page.goto(page.base_url + "/exceptions/")
    assert page.locator("tr.case-row").count() == 4
    assert page.locator("tr.case-row button, tr.case-row summary").count() == 0
    assert page.locator("#bulk-form").count() == 0
