"""Triage actions: permissions, audit entries, SLA pause while waiting, the read API."""
import datetime as dt

import pytest
from django.core.exceptions import PermissionDenied

from exceptions import services
from exceptions.models import Case, CaseEntry, Queue

UTC = dt.UTC
ACTIONS = ["claim", "assign", "acknowledge", "wait", "resolve", "ignore", "reopen", "comment"]


@pytest.mark.parametrize("action", ACTIONS)
def test_an_executive_can_see_but_every_mutation_is_403(client, logged_in, case, action):
    logged_in("executive")
    assert client.get("/exceptions/").status_code == 200
    assert client.get(f"/exceptions/{case.pk}/").status_code == 200
    assert client.post(f"/exceptions/{case.pk}/{action}", {"comment": "x"}).status_code == 403
    assert client.post("/exceptions/bulk", {"action": "claim", "ids": [case.pk]}).status_code == 403
    assert client.post(f"/exceptions/{case.pk}/replay").status_code == 403
    assert not CaseEntry.objects.exists()


def test_anonymous_user_is_sent_to_login(client, case):
    for url in ("/exceptions/", f"/exceptions/{case.pk}/", "/exceptions/export.csv"):
        response = client.get(url)
        assert response.status_code == 302 and "/accounts/login/" in response["Location"]
    assert client.post(f"/exceptions/{case.pk}/claim").status_code == 302
    assert Case.objects.get().owner is None


def test_each_action_writes_its_audit_entry(client, logged_in, case):
    user = logged_in("finance_ops")
    for action, data in [("claim", {}), ("acknowledge", {}), ("wait", {"comment": "PO asked"}),
                         ("comment", {"comment": "customer replied"}),
                         ("resolve", {"code": "fixed"}), ("reopen", {}), ("ignore", {})]:
        assert client.post(f"/exceptions/{case.pk}/{action}", data).status_code == 302, action
    trail = [(e.action, e.field, e.from_value, e.to_value) for e in case.entries.all()]
    assert trail == [
        ("assigned", "owner", "", user.username),
        ("acknowledged", "status", "open", "acknowledged"),
        ("waiting", "status", "acknowledged", "waiting"),
        ("comment", "", "", ""),
        ("resolved", "status", "waiting", "resolved"),
        ("resolved", "resolution_code", "", "fixed"),
        ("reopened", "status", "resolved", "open"),
        ("reopened", "resolution_code", "fixed", ""),
        ("ignored", "status", "open", "ignored"),
    ]
    assert all(e.actor == user for e in case.entries.all())


def test_audit_entries_cannot_be_changed_or_deleted(client, logged_in, case):
    logged_in("finance_ops")
    client.post(f"/exceptions/{case.pk}/claim")
    entry = CaseEntry.objects.get()
    entry.comment = "rewritten"
    with pytest.raises(PermissionDenied):
        entry.save()
    with pytest.raises(PermissionDenied):
        entry.delete()


def test_a_bad_transition_is_refused_clearly(client, logged_in, case):
    logged_in("finance_ops")
    client.post(f"/exceptions/{case.pk}/resolve", {"code": "fixed"})
    response = client.post(f"/exceptions/{case.pk}/claim", headers={"HX-Request": "true"})
    assert response.status_code == 409 and b"reopen it first" in response.content
    response = client.post(f"/exceptions/{case.pk}/reopen")
    assert client.post(f"/exceptions/{case.pk}/resolve", {"code": "because"}).status_code == 302
    assert Case.objects.get().status == "open"  # unknown resolution code changed nothing


def test_sla_pauses_while_waiting(case):
    monday = dt.datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
    case.opened_at = monday
    services.refresh_sla(case, monday)
    assert case.resolution_due_at == monday + dt.timedelta(hours=8)  # high: 8 business hours
    services.wait(case, "someone", now=monday + dt.timedelta(hours=2))
    services.acknowledge(case, "someone", now=monday + dt.timedelta(hours=5))
    assert case.waiting_business_seconds == 3 * 3600
    services.refresh_sla(case, monday + dt.timedelta(hours=5))
    assert case.resolution_due_at == monday + dt.timedelta(hours=11 - 8, days=1)  # Tue 12:00


def test_sla_state_goes_at_risk_then_breached_and_escalates(case,
                                                            django_capture_on_commit_callbacks):
    from exceptions.escalation import sla_sweep

    monday = dt.datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
    case.opened_at = monday
    case.acknowledged_at = monday
    case.queue.notify_emails = "finance-lead@example.com"
    case.queue.save()
    case.save()
    sla_sweep(monday + dt.timedelta(hours=6, minutes=1))  # 75 % of 8 h
    case.refresh_from_db()
    assert case.sla_state == "at_risk"
    with django_capture_on_commit_callbacks(execute=True):
        sla_sweep(monday + dt.timedelta(hours=8))
    case.refresh_from_db()
    assert (case.sla_state, case.severity, case.queue.slug) == ("breached", "critical",
                                                                "escalations")
    assert case.escalated_at is not None
    # The finance-ops queue's own recipients hear of the escalation (tests/integrations).
    from integrations.models import Delivery

    [told] = Delivery.objects.filter(kind="alert", queue__slug="finance-ops", case=case)
    assert told.title.endswith("escalated")


def test_exceptions_api_filters_and_paginates(client, logged_in, case):
    logged_in("executive")
    body = client.get("/api/v1/exceptions?type=invoice_blocked&page_size=10").json()
    assert body["count"] == 1 and body["results"][0]["money_at_stake"] == "1200.00"
    assert body["results"][0]["sla"]["breached"] is False
    assert client.get("/api/v1/exceptions?type=sync_failed").json()["count"] == 0
    assert client.get("/api/v1/exceptions?breached=true").json()["count"] == 0
    assert client.get("/api/v1/exceptions?breached=false").json()["count"] == 1
    maybe = client.get("/api/v1/exceptions?breached=maybe")
    assert maybe.status_code == 400 and "breached" in maybe.json()["detail"]
    assert client.get("/api/v1/exceptions?status=resolved").json()["count"] == 0
    bad = client.get("/api/v1/exceptions?type=nope")
    assert bad.status_code == 400 and "type" in bad.json()["detail"]
    assert client.get("/api/v1/exceptions?page=9").status_code == 400
    csv_body = client.get("/api/v1/exceptions.csv").content.decode()
    assert csv_body.startswith("id,type,status") and "Invoice I1 blocked" in csv_body


def test_exceptions_kpi_shape(client, logged_in, case):
    logged_in("executive")
    body = client.get("/api/v1/kpis/exceptions").json()
    assert body["open"] == 1 and body["by_type"] == {"invoice_blocked": 1}
    assert body["by_queue"] == {"finance-ops": 1} and body["by_owner"] == {"unassigned": 1}
    assert set(body["aging"]) == {"<4h", "4-24h", "1-3d", "3-7d", ">7d"}
    assert body["aging"]["<4h"] == 1
    assert {"breached", "at_risk", "by_severity", "mtta_seconds", "mttr_seconds"} <= set(body)
    assert client.get("/api/v1/kpis/exceptions").status_code == 200
    client.logout()
    assert client.get("/api/v1/kpis/exceptions").status_code == 401


def test_queue_filters_by_owner_and_sorts_by_money(client, logged_in, case):
    user = logged_in("finance_ops")
    other = Case.objects.create(type="sync_failed", fingerprint="x", title="Sync x",
                                queue=case.queue, object_kind="time_entry", object_id="x",
                                money_at_stake=5000, currency="USD")
    services.claim(case, user)
    mine = client.get("/exceptions/?owner=me").content.decode()
    assert "Invoice I1 blocked" in mine and "Sync x" not in mine
    page = client.get("/exceptions/?sort=money").content.decode()
    assert page.index("Sync x") < page.index("Invoice I1 blocked")
    assert other.pk


def test_the_admin_cannot_change_or_delete_audit_entries(client, case, django_user_model):
    admin = django_user_model.objects.create_superuser("root", "root@example.com", "pw-12345678")
    services.claim(case, admin)
    entry = CaseEntry.objects.get()
    client.force_login(admin)
    assert client.get(f"/admin/exceptions/caseentry/{entry.pk}/change/").status_code == 200
    assert client.post(f"/admin/exceptions/caseentry/{entry.pk}/change/",
                       {"comment": "rewritten"}).status_code == 403
    assert client.post(f"/admin/exceptions/caseentry/{entry.pk}/delete/",
                       {"post": "yes"}).status_code == 403
    assert client.post(f"/admin/exceptions/case/{case.pk}/delete/",
                       {"post": "yes"}).status_code == 403
    assert CaseEntry.objects.get().comment == ""


def test_a_routing_rule_change_reroutes_open_cases_with_an_audit_entry(case, role_user):
    from exceptions.models import RoutingRule
    from exceptions.routing import reroute_open_cases

    owner = role_user("finance_ops")
    integration = Queue.objects.get(slug="integration")
    case.client_id = "C9"
    case.save()
    resolved = Case.objects.create(type="invoice_blocked", fingerprint="I2", title="done",
                                   severity="high", queue=case.queue, client_id="C9",
                                   status=Case.Status.RESOLVED)
    RoutingRule.objects.create(priority=1, client_id="C9", queue=integration, owner=owner)

    assert reroute_open_cases() == 1
    case.refresh_from_db()
    resolved.refresh_from_db()
    assert (case.queue, case.owner) == (integration, owner)
    assert resolved.queue.slug == "finance-ops"  # closed cases stay where they were resolved
    entry = CaseEntry.objects.get(case=case, field="queue")
    assert (entry.from_value, entry.to_value) == ("Finance ops", "Integration")
