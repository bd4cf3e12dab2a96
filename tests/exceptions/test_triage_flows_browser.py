"""The triage flows of round two in headless Chromium: filter by client name, saved views,
grouped cases, undo, a dead letter's payload corrected and replayed; axe-core on the
exceptions and case pages at 1440 and 390 px."""
import json

import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import expect

from exceptions import services
from exceptions.models import Case, CaseEntry, Queue, SavedView
from ingestion import intake, pipeline
from ingestion.events import make_event
from ingestion.models import InboxEvent, Source
from opsview.models import Client
from tests.conftest import screenshot

pytestmark = pytest.mark.browser


def add_case(fingerprint, title, *, case_type="invoice_blocked", queue="finance-ops", **fields):
    case = Case(type=case_type, fingerprint=fingerprint, title=title,
                queue=Queue.objects.get(slug=queue), object_kind="invoice",
                object_id=fingerprint, **fields)
    services.refresh_sla(case)
    case.save()
    return case


@pytest.fixture
def firm(page):
    Client.objects.create(client_id="C-17", name="Acme Holdings")
    Client.objects.create(client_id="C-18", name="Globex")
    made = {
        "acme": add_case("I1", "Invoice I1 blocked", client_id="C-17", severity="high",
                         money_at_stake=133604, currency="EUR"),
        "globex": add_case("I2", "Invoice I2 blocked", client_id="C-18",
                           money_at_stake=500, currency="USD"),
    }
    made["syncs"] = [add_case(f"psa|time_entry|T{n}", f"psa: time entry T{n} failed to sync",
                              case_type="sync_failed", queue="integration",
                              detail={"flow": "psa-to-erp", "error_code": "E42"})
                     for n in range(3)]
    return made


def axe_check(page, name):
    """0 critical and 0 serious axe-core violations, at 1440 px and at 390 px."""
    for width in (1440, 390):
        page.set_viewport_size({"width": width, "height": 900})
        screenshot(page, f"{name}-{width}")
        results = Axe().run(page)
        bad = [(v["id"], v["impact"], [n["target"] for n in v["nodes"]][:3])
               for v in results.response["violations"]
               if v["impact"] in ("critical", "serious")]
        assert not bad, f"{name} at {width} px: {bad}"
    page.set_viewport_size({"width": 1440, "height": 900})


def test_filter_by_client_name_with_suggestions_then_save_the_view(page, browser_login, firm):
    browser_login("finance_ops", username="fiona")
    page.goto(page.base_url + "/exceptions/")
    page.fill("input[name=client]", "Acm")
    expect(page.locator("#client-options option")).to_have_count(1)
    assert page.locator("#client-options option").get_attribute("value") == "Acme Holdings"
    page.fill("input[name=client]", "Acme Holdings")
    page.click("#case-filters button[type=submit]")
    page.wait_for_url("**client=Acme+Holdings**")
    assert page.locator("tr.case-row td.title a").all_inner_texts() == ["Invoice I1 blocked"]
    expect(page.locator("tr.case-row").first).to_contain_text("€133,604.00")

    # Save it as a shared view: it appears in the side list with its count.
    page.fill("#view-name", "Acme")
    page.check("#saved-views input[name=shared]")
    page.locator("#saved-views button", has_text="Save view").click()
    expect(page.locator("#saved-views li.active")).to_contain_text("Acme")
    expect(page.locator("#saved-views li.active .count")).to_have_text("1")
    assert SavedView.objects.get().shared
    page.goto(page.base_url + "/exceptions/")
    page.locator("#saved-views a", has_text="Acme").click()
    page.wait_for_url("**client=Acme**")
    assert page.locator("tr.case-row").count() == 1
    screenshot(page, "triage-saved-view")


def test_grouped_cases_expand_and_take_a_bulk_action(page, browser_login, firm):
    browser_login("integration", username="ines")
    page.goto(page.base_url + "/exceptions/?view=grouped")
    group = page.locator("tr.group-row", has_text="3 similar cases")
    expect(group).to_contain_text("flow psa-to-erp · error E42")
    members = page.locator('tr.member[data-group="sync_failed|psa-to-erp|E42"]')
    assert members.count() == 3 and not members.first.is_visible()
    group.locator(".group-toggle").click()
    expect(members.first).to_be_visible()
    assert group.locator(".group-toggle").get_attribute("aria-expanded") == "true"
    screenshot(page, "triage-grouped")
    group.locator("summary").click()
    group.locator("button", has_text="Acknowledge all").click()
    page.wait_for_load_state()
    assert {c.status for c in Case.objects.filter(type="sync_failed")} == {"acknowledged"}
    assert Case.objects.get(pk=firm["acme"].pk).status == "open"


def test_resolve_with_r_then_undo(page, browser_login, firm):
    browser_login("finance_ops", username="fiona")
    page.goto(page.base_url + "/exceptions/?type=invoice_blocked&sort=money")
    acme = firm["acme"]
    page.check(f"#case-{firm['globex'].pk} input[name=ids]")
    assert page.locator("#selected-count").inner_text() == "1"
    page.locator("h1").click()  # the keyboard acts on the list, not the checkbox
    page.keyboard.press("j")
    page.keyboard.press("r")
    expect(page.locator(f"#case-{acme.pk}")).to_contain_text("Resolved")
    # After a row action the selection starts again.
    expect(page.locator("#selected-count")).to_have_text("0")
    assert not page.locator(f"#case-{firm['globex'].pk} input[name=ids]").is_checked()
    notice = page.locator("#undo-notice")
    expect(notice).to_contain_text("1 case resolved")
    screenshot(page, "triage-undo")
    with page.expect_navigation():
        notice.locator("button", has_text="Undo").click()
    expect(page.locator(".messages")).to_contain_text("Undone: 1 case(s)")
    expect(page.locator(f"#case-{acme.pk}")).to_contain_text("Open")
    assert CaseEntry.objects.filter(case=acme, action="undone").exists()


@pytest.fixture
def dead_letter(page):
    source = Source.objects.create(slug="mulesoft", name="MuleSoft", rate_limit_per_minute=0)
    intake.store_events(source, [make_event("client.upserted",
                                            {"client_id": "C-77", "currency": "EUR"})])
    pipeline.drain_inbox()
    return Case.objects.get(type="dead_letter"), InboxEvent.objects.get(status="dead")


def test_correct_a_dead_letter_and_replay_it(page, browser_login, dead_letter):
    case, row = dead_letter
    browser_login("integration", username="ines")
    page.goto(page.base_url + f"/exceptions/{case.pk}/")
    failing = page.locator("table.payload tr.failing")
    expect(failing).to_contain_text("data.name")
    screenshot(page, "triage-dead-letter")
    editor = page.locator(f"#payload-{row.pk}")
    # Bad JSON first: refused, said clearly, nothing changed.
    editor.fill("{oops")
    page.click("form.correction button[type=submit]")
    expect(page.locator(".correction-problem")).to_contain_text("not valid JSON")
    assert InboxEvent.objects.get(pk=row.pk).status == "dead"
    corrected = json.loads(json.dumps(row.raw))
    corrected["data"]["name"] = "Acme Corrected"
    page.locator(f"#payload-{row.pk}").fill(json.dumps(corrected, indent=2))
    page.click("form.correction button[type=submit]")
    expect(page.locator(".messages")).to_contain_text("processed")
    assert Client.objects.get(client_id="C-77").name == "Acme Corrected"
    assert InboxEvent.objects.get(pk=row.pk).raw == row.raw
    expect(page.locator(".timeline")).to_contain_text("corrected as")


def test_exceptions_and_case_pages_pass_axe_at_both_widths(page, browser_login, firm,
                                                           dead_letter):
    browser_login("finance_ops", username="fiona")
    page.goto(page.base_url + "/exceptions/")
    axe_check(page, "axe-exceptions")
    page.goto(page.base_url + "/exceptions/?view=grouped")
    axe_check(page, "axe-exceptions-grouped")
    page.goto(page.base_url + f"/exceptions/{firm['acme'].pk}/")
    axe_check(page, "axe-case")
    page.goto(page.base_url + f"/exceptions/{dead_letter[0].pk}/")
    axe_check(page, "axe-case-dead-letter")
    # The ? dialog takes focus and gives it back.
    page.goto(page.base_url + "/exceptions/")
    page.focus("#search")
    page.keyboard.press("Escape")
    page.locator("body").click(position={"x": 5, "y": 300})
    page.keyboard.press("?")
    assert page.evaluate("document.activeElement.id") == "help"
    page.keyboard.press("Escape")
    assert page.locator("#help").is_hidden()
