"""A value the contract accepts is never truncated, never fails later, and one object never
stops other rules or the sweep (the column widths follow the contract's 255 characters)."""
import datetime as dt
import os

import pytest
from django.core.management import call_command

from exceptions import services
from exceptions.models import Case
from exceptions.rules import evaluate_time_rules
from ingestion.events import make_event
from ingestion.models import InboxEvent
from opsview.models import Project, SyncAttempt

LONG = "x" * 250


def long(prefix):
    return (prefix + LONG)[:255]


def test_a_sync_failure_with_every_field_at_its_contract_limit_opens_one_case(deliver,
                                                                              process):
    failure = make_event("sync.failed", {
        "flow": long("flow-"), "source_system": long("src-"), "target_system": long("tgt-"),
        "object_type": long("type-"), "object_id": long("id-"), "error_code": long("code-"),
        "error_message": "m" * 5000, "retryable": True})
    other = make_event("sync.failed", {
        "flow": "psa-to-erp", "source_system": "psa", "target_system": "erp",
        "object_type": "time_entry", "object_id": "T1", "error_code": "E1",
        "error_message": "period closed", "retryable": True})
    deliver.send(failure, other)
    process()
    assert InboxEvent.objects.filter(status="processed").count() == 2
    attempt = SyncAttempt.objects.get(object_id=long("id-"))
    assert (attempt.flow, attempt.object_type, attempt.error_code) == (
        long("flow-"), long("type-"), long("code-"))  # nothing truncated
    assert Case.objects.filter(type="sync_failed").count() == 2
    case = Case.objects.get(type="sync_failed", object_id=long("id-"))
    assert case.object_kind == long("type-") and len(case.fingerprint) <= 500
    # Later evaluations, the sweep and process_inbox keep working, for this case and others.
    results = evaluate_time_rules()
    assert not any(isinstance(r, dict) and r.get("error") for r in results.values())
    with open(os.devnull, "w") as quiet:
        call_command("process_inbox", stdout=quiet)
    deliver.send(make_event("sync.succeeded", {
        "flow": long("flow-"), "source_system": "s", "target_system": "t",
        "object_type": long("type-"), "object_id": long("id-")}))
    process()
    case.refresh_from_db()
    assert case.status == "resolved"


def test_master_data_at_the_contract_limit_is_stored_whole(deliver, process):
    deliver.send(make_event("project.upserted", {
        "project_id": long("P-"), "client_id": long("C-"), "name": long("name-"),
        "practice": long("practice-"), "legal_entity": long("entity-"), "currency": "USD",
        "billing_method": "time_and_materials", "status": "active",
        "rate_card_id": long("rc-"), "po_number": long("po-")}))
    process()
    project = Project.objects.get()
    assert (project.practice, project.legal_entity, project.po_number) == (
        long("practice-"), long("entity-"), long("po-"))
    evaluate_time_rules(now=dt.datetime.now(dt.UTC))
    assert Case.objects.filter(type="unknown_reference", object_id=long("C-")).exists()


def test_cases_cannot_be_given_to_someone_who_cannot_triage(case, role_user):
    executive = role_user("cfo", "executive")
    finance = role_user("fin", "finance_ops")
    with pytest.raises(services.TransitionError, match="cannot triage"):
        services.assign(case, executive, finance)
    case.refresh_from_db()
    assert case.owner is None and not case.entries.filter(action="assigned").exists()
    services.assign(case, finance, finance)
    assert case.owner == finance


def test_the_assign_action_refuses_an_executive_with_a_clear_answer(client, case, role_user):
    role_user("cfo", "executive")
    client.force_login(role_user("fin", "finance_ops"))
    response = client.post(f"/exceptions/{case.pk}/assign", {"owner": "cfo"},
                           headers={"HX-Request": "true"})
    assert response.status_code == 409
    assert "cannot triage" in response.content.decode()
    case.refresh_from_db()
    assert case.owner is None
