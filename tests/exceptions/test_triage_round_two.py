"""Triage round two: landing by role, row actions that show the new state, filters by
client and project name, groups of similar cases, paused SLAs, undo."""
import datetime as dt

import pytest
from django.utils import timezone

from exceptions import groups, services
from exceptions.models import Case, CaseEntry, Queue, Undo
from opsview.models import Client, Project


def make_case(fingerprint, *, case_type="invoice_blocked", queue="finance-ops", owner=None,
              money=None, currency="", detail=None, object_id=None, **fields):
    case = Case(type=case_type, fingerprint=fingerprint, title=f"Case {fingerprint}",
                queue=Queue.objects.get(slug=queue), object_kind="invoice",
                object_id=object_id or fingerprint, owner=owner, money_at_stake=money,
                currency=currency, detail=detail or {}, **fields)
    services.refresh_sla(case)
    case.save()
    return case


def titles(response):
    return [c.title for c in response.context["page"]]


# --- 1. Each role lands where its work is ---------------------------------------------------
def test_login_lands_on_start_which_sends_a_triager_to_their_queue(client, role_user):
    role_user("fiona", "finance_ops")
    response = client.post("/accounts/login/", {"username": "fiona",
                                                "password": "opsview-test-pass-1"})
    assert response["Location"] == "/start/"
    response = client.get("/start/")
    assert response.status_code == 302
    assert response["Location"] == "/exceptions/?work=finance-ops&sort=mine"


def test_an_executive_lands_on_the_overview(client, logged_in):
    logged_in("executive")
    assert client.get("/start/")["Location"] == "/"


def test_my_work_lists_my_cases_first_then_my_queues_unowned(client, logged_in):
    user = logged_in("finance_ops", username="fiona")
    make_case("unowned", resolution_due_at=None)
    mine_elsewhere = make_case("mine-in-integration", queue="integration", owner=user)
    make_case("integration-unowned", queue="integration")
    response = client.get("/exceptions/?work=finance-ops&sort=mine")
    assert titles(response) == [mine_elsewhere.title, "Case unowned"]


# --- 2. One action menu per row; the row shows its new state --------------------------------
def test_a_claimed_row_no_longer_offers_claim(client, logged_in, case):
    logged_in("finance_ops", username="fiona")
    page = client.get("/exceptions/").content.decode()
    assert page.count("Actions for case") >= 1 and ">Claim<" in page
    response = client.post(f"/exceptions/{case.pk}/claim", {"from": "list"},
                           headers={"HX-Request": "true"})
    row = response.content.decode()
    assert "fiona" in row and ">Claim<" not in row and ">Acknowledge<" in row


# --- 3. Filter by client and project name, with suggestions ---------------------------------
@pytest.fixture
def named(db):
    acme = Client.objects.create(client_id="C-17", name="Acme Holdings")
    Client.objects.create(client_id="C-18", name="Globex")
    Project.objects.create(project_id="P-9", client=acme, name="Acme ERP rollout",
                           practice="x", legal_entity="y", currency="USD",
                           billing_method="time_and_materials", status="active")


def test_filter_by_client_and_project_name(client, logged_in, named):
    logged_in("finance_ops")
    make_case("A", client_id="C-17", project_id="P-9")
    make_case("G", client_id="C-18")
    assert titles(client.get("/exceptions/?client=acme")) == ["Case A"]
    assert titles(client.get("/exceptions/?client=C-18")) == ["Case G"]
    assert titles(client.get("/exceptions/?project=erp rollout")) == ["Case A"]
    assert titles(client.get("/exceptions/?client=nobody")) == []


def test_suggestions_offer_names_for_what_was_typed(client, logged_in, named):
    logged_in("executive")
    options = client.get("/exceptions/suggest/client?client=acm").content.decode()
    assert 'value="Acme Holdings"' in options and "Globex" not in options
    options = client.get("/exceptions/suggest/project?project=erp").content.decode()
    assert "Acme ERP rollout" in options
    assert client.get("/exceptions/suggest/invoice?q=x").status_code == 404


# --- 4. Groups of near-identical cases ------------------------------------------------------
def sync_case(n, flow="psa-to-erp", code="E42"):
    return make_case(f"{flow}|time_entry|T{n}", case_type="sync_failed", queue="integration",
                     detail={"flow": flow, "error_code": code}, object_id=f"T{n}")


def test_sync_failures_of_one_flow_and_code_form_one_group(db):
    for n in range(3):
        sync_case(n)
    sync_case(9, code="E99")
    make_case("dl-a|time_entry.approved|data.hours", case_type="dead_letter",
              queue="integration", object_id="dl-a")
    make_case("dl-a|expense.approved|data.hours", case_type="dead_letter",
              queue="integration", object_id="dl-a")
    make_case("dl-a|expense.approved|data.amount", case_type="dead_letter",
              queue="integration", object_id="dl-a")
    found = {g.key: g.size for g in groups.group(Case.objects.order_by("pk"))}
    assert found == {"sync_failed|psa-to-erp|E42": 3, "sync_failed|psa-to-erp|E99": 1,
                     "dead_letter|dl-a|data.hours": 2, "dead_letter|dl-a|data.amount": 1}
    assert groups.members(Case.objects.all(), "sync_failed|psa-to-erp|E42").count() == 3
    assert groups.members(Case.objects.all(), "sync_failed|too|many|parts").count() == 0


def test_grouped_list_shows_a_group_row_and_bulk_acts_on_the_group(client, logged_in):
    logged_in("integration")
    cases = [sync_case(n) for n in range(3)]
    other = sync_case(9, code="E99")
    page = client.get("/exceptions/?view=grouped").content.decode()
    assert "3 similar cases" in page and "flow psa-to-erp · error E42" in page
    response = client.post("/exceptions/bulk", {"action": "acknowledge",
                                                "group": "sync_failed|psa-to-erp|E42",
                                                "query": "view=grouped"})
    assert response.status_code == 302
    assert {c.status for c in Case.objects.filter(pk__in=[c.pk for c in cases])} == {
        "acknowledged"}
    assert Case.objects.get(pk=other.pk).status == "open"


# --- 5. A waiting case's SLA shows paused ---------------------------------------------------
def test_a_waiting_case_shows_its_sla_paused(client, logged_in, case):
    logged_in("finance_ops")
    client.post(f"/exceptions/{case.pk}/wait", {"comment": "PO asked"})
    assert "Paused" in client.get("/exceptions/").content.decode()
    assert "Paused" in client.get(f"/exceptions/{case.pk}/").content.decode()


# --- 6. Undo resolve and ignore -------------------------------------------------------------
def test_undo_restores_status_and_owner_and_is_audited(client, logged_in, case):
    user = logged_in("finance_ops", username="fiona")
    client.post(f"/exceptions/{case.pk}/claim")
    client.post(f"/exceptions/{case.pk}/wait", {"comment": "asked"})
    response = client.post(f"/exceptions/{case.pk}/resolve", {"code": "fixed", "from": "list"},
                           headers={"HX-Request": "true"})
    assert 'id="undo-notice"' in response.content.decode() and "Undo" in response.content.decode()
    undo = Undo.objects.get()
    response = client.post(f"/exceptions/undo/{undo.pk}", {"next": "/exceptions/"})
    assert response.status_code == 302 and response["Location"] == "/exceptions/"
    case.refresh_from_db()
    assert (case.status, case.owner, case.resolution_code) == ("waiting", user, "")
    assert case.waiting_since is not None and case.resolved_at is None
    assert CaseEntry.objects.filter(case=case, action="undone", field="status",
                                    from_value="resolved", to_value="waiting").exists()
    # Only once.
    client.post(f"/exceptions/undo/{undo.pk}")
    assert CaseEntry.objects.filter(case=case, action="undone").count() == 2  # status, code


def test_undo_by_someone_else_or_too_late_is_refused(client, logged_in, role_user, case):
    fiona = role_user("fiona", "finance_ops")
    undo, _ = services.close_undoably([case], "ignore", fiona)
    logged_in("finance_ops", username="other")
    response = client.post(f"/exceptions/undo/{undo.pk}", headers={"HX-Request": "true"})
    assert response.status_code == 409 and b"only the person" in response.content
    later = timezone.now() + dt.timedelta(seconds=31)
    with pytest.raises(services.UndoRefused, match="window"):
        services.undo(undo, fiona, now=later)
    assert Case.objects.get(pk=case.pk).status == "ignored"


def test_bulk_resolve_offers_one_undo_for_all(client, logged_in):
    logged_in("finance_ops")
    cases = [make_case(f"B{n}") for n in range(3)]
    client.post("/exceptions/bulk", {"action": "resolve", "code": "duplicate",
                                     "ids": [c.pk for c in cases]})
    page = client.get("/exceptions/?status=resolved").content.decode()
    assert "3 cases resolved." in page
    undo = Undo.objects.get()
    client.post(f"/exceptions/undo/{undo.pk}")
    assert set(Case.objects.values_list("status", flat=True)) == {"open"}


def test_undo_leaves_a_case_changed_since_alone(role_user, case):
    fiona = role_user("fiona", "finance_ops")
    undo, _ = services.close_undoably([case], "resolve", fiona)
    services.reopen(Case.objects.get(pk=case.pk), role_user("bob", "finance_ops"))
    restored, left = services.undo(undo, fiona)
    assert (restored, [c.pk for c in left]) == ([], [case.pk])


def test_resolving_on_the_case_page_offers_undo_there_once(client, logged_in, case):
    logged_in("finance_ops")
    response = client.post(f"/exceptions/{case.pk}/ignore", follow=True)
    page = response.content.decode()
    assert "1 case ignored." in page and f"/exceptions/undo/{Undo.objects.get().pk}" in page
    assert "1 case ignored." not in client.get(f"/exceptions/{case.pk}/").content.decode()


def test_anonymous_users_reach_none_of_the_new_routes(client, case):
    for url in ("/start/", "/exceptions/suggest/client?client=a", "/exceptions/views/"):
        response = client.get(url)
        assert response.status_code == 302 and "/accounts/login/" in response["Location"]
    for url in ("/exceptions/undo/1", "/exceptions/views/save", "/exceptions/views/1/delete",
                f"/exceptions/{case.pk}/correct/1"):
        response = client.post(url, {"name": "x", "payload": "{}"})
        assert response.status_code == 302 and "/accounts/login/" in response["Location"]
    assert not Undo.objects.exists()
