"""Each rule fires, groups by fingerprint, resolves itself when the condition clears and
reopens when it comes back — with an audit entry each time."""
import datetime as dt

from exceptions.models import Case, CaseEntry
from ingestion import pipeline
from ingestion.events import make_event
from ingestion.models import InboxEvent, Source

UTC = dt.UTC
NOW = dt.datetime.now(UTC).replace(microsecond=0)


def ago(**kwargs):
    return NOW - dt.timedelta(**kwargs)


def project(pid="P1", **extra):
    return make_event("project.upserted", {
        "project_id": pid, "client_id": "C1", "name": f"Project {pid}", "practice": "Data",
        "legal_entity": "US", "currency": "USD", "billing_method": "time_and_materials",
        "status": "active", "rate_card_id": "rc1", **extra}, time=ago(days=60))


def person():
    return make_event("person.upserted", {"person_id": "U1", "name": "Ann", "practice": "Data",
                                          "cost_rate": "50", "bill_rate": "100"},
                      time=ago(days=60))


def entry(stage, when, eid="T1", pid="P1"):
    return make_event(f"time_entry.{stage}", {
        "time_entry_id": eid, "project_id": pid, "person_id": "U1", "work_date": "2026-11-02",
        "hours": "8", "billable": True}, time=when)


def sync(ok, when, object_id="T1"):
    data = {"flow": "psa-to-erp", "source_system": "psa", "target_system": "erp",
            "object_type": "time_entry", "object_id": object_id, "attempt": 1}
    if not ok:
        data |= {"error_code": "ERP-409", "error_message": "period closed", "retryable": False}
    return make_event("sync.succeeded" if ok else "sync.failed", data, time=when)


def cases(case_type):
    return list(Case.objects.filter(type=case_type).order_by("pk"))


def actions(case):
    return [(e.actor_label, e.action) for e in case.entries.all()]


def test_sync_failure_opens_groups_clears_and_regresses(deliver, process):
    deliver.send(project(), person(), entry("approved", ago(hours=2)), sync(False, ago(hours=2)))
    process()
    [case] = cases("sync_failed")
    assert (case.status, case.queue.slug, case.money_at_stake) == ("open", "integration", 800)
    deliver.send(sync(False, ago(hours=1)))
    process()
    case.refresh_from_db()
    assert (case.times_seen, len(cases("sync_failed"))) == (2, 1)  # grouped, not a second case
    deliver.send(sync(True, ago(minutes=30)))
    process()
    case.refresh_from_db()
    assert (case.status, case.resolution_code) == ("resolved", "cleared")
    deliver.send(sync(False, ago(minutes=5)))
    process()
    case.refresh_from_db()
    assert (case.status, case.reopened_count) == ("open", 1)
    assert actions(case) == [("rule:sync_failed", "opened"), ("rule:sync_failed", "resolved"),
                             ("rule:sync_failed", "reopened")]


def test_dead_letters_group_by_source_type_and_error_and_clear_on_replay(deliver, process):
    bad = [make_event("client.upserted", {"client_id": f"C{i}"}) for i in range(3)]
    deliver.send(*bad)
    process()
    [case] = cases("dead_letter")
    assert case.detail["count"] == 3 and case.queue.slug == "integration"
    for row in InboxEvent.objects.filter(status="dead"):
        row.raw["data"]["name"] = "Fixed"
        row.save()
    pipeline.replay()
    case.refresh_from_db()
    assert case.status == "resolved"


def test_unknown_reference_is_the_only_case_a_placeholder_raises(deliver, process, evaluate):
    deliver.send(person(), entry("approved", ago(days=3), pid="P-NEW"))
    process()
    found = evaluate(NOW)
    assert [c.fingerprint for c in found["unknown_reference"]] == ["project:P-NEW"]
    assert "approved_time_unposted" not in found and "missing_billing_setup" not in found
    deliver.send(project("P-NEW"))
    process()
    assert cases("unknown_reference")[0].status == "resolved"
    assert evaluate(NOW)["approved_time_unposted"][0].status == "open"  # now it counts


def test_approved_time_unposted_past_the_posting_sla(deliver, process, evaluate):
    deliver.send(project(), person(), entry("approved", ago(hours=30)),
                 entry("approved", ago(hours=2), eid="T2"))
    process()
    [case] = evaluate(NOW)["approved_time_unposted"]
    # The money is all the project's approved, unposted time, the late and the fresh alike;
    # the problem began when the oldest approval ran out of its 24 h.
    assert (case.fingerprint, case.money_at_stake, case.queue.slug) == ("P1", 1600, "finance-ops")
    assert case.began_at == ago(hours=6)
    deliver.send(entry("posted", ago(hours=1)))
    process()
    assert evaluate(NOW)["approved_time_unposted"][0].status == "resolved"


def test_invoice_blocked_until_issued(deliver, process):
    data = {"invoice_id": "I1", "client_id": "C1", "amount": "1200.00", "currency": "USD"}
    deliver.send(make_event("client.upserted", {"client_id": "C1", "name": "Acme"}),
                 make_event("invoice.blocked", {**data, "blocked_reason": "missing_po"}))
    process()
    [case] = cases("invoice_blocked")
    assert (case.money_at_stake, case.severity) == (1200, "high")
    deliver.send(make_event("invoice.issued", {**data, "issued_on": "2026-11-20"}))
    process()
    assert cases("invoice_blocked")[0].status == "resolved"


def test_invoice_blocked_before_its_client_is_known_opens_when_the_client_arrives(
        deliver, process):
    """Order independence: a blocked invoice of an unknown client is an unknown reference,
    not yet a case; the client's record arriving later opens it at once, as in-order
    delivery would have, without waiting for the time-based evaluation."""
    deliver.send(make_event("invoice.blocked", {
        "invoice_id": "I1", "client_id": "C1", "amount": "1200.00", "currency": "USD",
        "blocked_reason": "missing_po"}))
    process()
    assert cases("invoice_blocked") == []
    deliver.send(make_event("client.upserted", {"client_id": "C1", "name": "Acme"}))
    process()
    [case] = cases("invoice_blocked")
    assert (case.status, case.money_at_stake) == ("open", 1200)


def test_milestone_not_invoiced_after_the_grace_period(deliver, process, evaluate):
    done = (NOW - dt.timedelta(days=10)).date().isoformat()
    fresh = (NOW - dt.timedelta(days=2)).date().isoformat()
    milestone = {"project_id": "P1", "name": "Go-live", "amount": "5000.00"}
    deliver.send(project(billing_method="milestone"), make_event("milestone.completed", {
        "milestone_id": "M1", "completed_on": done, **milestone}),
        make_event("milestone.completed", {"milestone_id": "M2", "completed_on": fresh,
                                           **milestone}))
    process()
    assert [c.fingerprint for c in evaluate(NOW)["milestone_not_invoiced"]] == ["M1"]
    deliver.send(make_event("milestone.invoiced", {"milestone_id": "M1", "invoice_id": "I9",
                                                   **milestone}))
    process()
    # Named on an invoice nobody has announced: not billed yet (SPEC section 7).
    assert evaluate(NOW)["milestone_not_invoiced"][0].status == "open"
    deliver.send(make_event("client.upserted", {"client_id": "C1", "name": "Acme"}),
                 make_event("invoice.issued", {"invoice_id": "I9", "client_id": "C1",
                                               "project_id": "P1", "amount": "5000.00",
                                               "currency": "USD", "issued_on": done}))
    process()
    assert evaluate(NOW)["milestone_not_invoiced"][0].status == "resolved"


def test_missing_billing_setup_until_rate_card_and_po(deliver, process, evaluate):
    no_rate = project("P2", rate_card_id=None)
    no_po = project("P3", po_required=True)
    deliver.send(no_rate, no_po, project("P4", billing_method="non_billable", rate_card_id=None))
    process()
    found = {c.fingerprint: c for c in evaluate(NOW)["missing_billing_setup"]}
    assert set(found) == {"P2", "P3"}
    assert found["P3"].detail["missing"] == ["PO"] and found["P2"].queue.slug == "delivery-ops"
    fixed = project("P3", po_required=True, po_number="PO-1")
    fixed["time"] = NOW.isoformat()
    deliver.send(fixed)
    process()
    assert {c.fingerprint: c.status for c in evaluate(NOW)["missing_billing_setup"]} == {
        "P2": "open", "P3": "resolved"}


def test_reconciliation_gap_until_a_later_report_has_none(deliver, process):
    def report(target, when):
        return make_event("reconciliation.reported", {
            "flow": "erp-to-crm", "object_type": "invoice", "period_start": "2026-10-01",
            "period_end": "2026-10-31", "source_count": 100, "target_count": target}, time=when)

    deliver.send(report(93, ago(hours=5)))
    process()
    assert "7 invoice missing" in cases("reconciliation_gap")[0].title
    deliver.send(report(100, ago(hours=1)))
    process()
    assert cases("reconciliation_gap")[0].status == "resolved"


def test_stale_feed_until_an_event_arrives(deliver, process, evaluate, source):
    Source.objects.filter(pk=source.pk).update(last_event_at=ago(hours=5),
                                               stale_after_minutes=60)
    [case] = evaluate(NOW)["stale_feed"]
    assert case.fingerprint == "source:mulesoft"
    deliver.send(project())
    process()
    case.refresh_from_db()
    assert case.status == "resolved"


def test_duplicate_clients_by_normalized_name_or_tax_id(deliver, process, evaluate, client,
                                                        logged_in):
    deliver.send(
        make_event("client.upserted", {"client_id": "C1", "name": "Acme Corp", "tax_id": "T1"}),
        make_event("client.upserted", {"client_id": "C2", "name": "ACME Corporation, Inc."}),
        make_event("client.upserted", {"client_id": "C3", "name": "Initech", "tax_id": "T1"}),
        make_event("client.upserted", {"client_id": "C4", "name": "Globex"}))
    process()
    # C1–C2 share a name, C1–C3 a tax id: one group, one case, named by its first client.
    [case] = evaluate(NOW)["duplicate_client"]
    assert case.fingerprint == "group:C1"
    assert case.detail["client_ids"] == ["C1", "C2", "C3"]
    logged_in("finance_ops")
    client.post(f"/exceptions/{case.pk}/resolve", {"code": "distinct"})
    [case] = evaluate(NOW)["duplicate_client"]
    assert case.status == "resolved"  # marked distinct: not raised again


def test_rule_settings_disable_a_rule(deliver, process, evaluate):
    from exceptions.models import RuleSetting

    deliver.send(project("P2", rate_card_id=None))
    process()
    assert evaluate(NOW)["missing_billing_setup"][0].status == "open"
    RuleSetting.objects.filter(case_type="missing_billing_setup").update(enabled=False)
    assert evaluate(NOW)["missing_billing_setup"][0].status == "resolved"


def test_every_rule_change_is_audited(deliver, process, evaluate):
    deliver.send(project("P2", rate_card_id=None))
    process()
    evaluate(NOW)
    entry = CaseEntry.objects.get(case__type="missing_billing_setup")
    assert (entry.actor_label, entry.action, entry.to_value) == (
        "rule:missing_billing_setup", "opened", "open")


def _regressed(case_type):
    [case] = cases(case_type)
    return case.status == "open" and case.reopened_count == 1


def test_missing_billing_setup_regresses_when_the_rate_card_goes_again(deliver, process,
                                                                         evaluate):
    def version(minutes, **extra):
        event = project("P2", **extra)
        event["time"] = ago(minutes=minutes).isoformat()
        return event

    deliver.send(version(30, rate_card_id=None))
    process()
    evaluate(NOW)
    deliver.send(version(20, rate_card_id="rc9"))
    process()
    evaluate(NOW)
    assert cases("missing_billing_setup")[0].status == "resolved"
    deliver.send(version(10, rate_card_id=None))
    process()
    evaluate(NOW)
    evaluate(NOW)  # re-evaluating does not open a second case
    assert _regressed("missing_billing_setup")
    assert len(cases("missing_billing_setup")) == 1


def test_reconciliation_gap_regresses_on_a_later_gap(deliver, process):
    def report(target, hours):
        return make_event("reconciliation.reported", {
            "flow": "erp-to-crm", "object_type": "invoice", "period_start": "2026-10-01",
            "period_end": "2026-10-31", "source_count": 10, "target_count": target},
            time=ago(hours=hours))

    for target, hours in ((8, 3), (10, 2), (9, 1)):
        deliver.send(report(target, hours))
        process()
    assert _regressed("reconciliation_gap")


def test_stale_feed_regresses_when_the_source_goes_quiet_again(deliver, process, evaluate,
                                                               source):
    Source.objects.filter(pk=source.pk).update(last_event_at=ago(hours=5),
                                               stale_after_minutes=60)
    evaluate(NOW)
    deliver.send(project())
    process()
    assert cases("stale_feed")[0].status == "resolved"
    Source.objects.filter(pk=source.pk).update(last_event_at=ago(hours=3))
    evaluate(NOW)
    assert _regressed("stale_feed")


def test_approved_time_unposted_groups_by_project_and_regresses(deliver, process, evaluate):
    deliver.send(project(), person(), entry("approved", ago(hours=30)),
                 entry("approved", ago(hours=40), eid="T2"))
    process()
    [case] = evaluate(NOW)["approved_time_unposted"]
    assert case.detail["entries"] == 2 and case.money_at_stake == 1600
    deliver.send(entry("posted", ago(hours=1)), entry("posted", ago(hours=1), eid="T2"))
    process()
    evaluate(NOW)
    deliver.send(entry("approved", ago(hours=26), eid="T3"))
    process()
    evaluate(NOW)
    assert _regressed("approved_time_unposted")


def test_dead_letter_regresses_when_the_same_error_comes_back(deliver, process):
    deliver.send(make_event("client.upserted", {"client_id": "C1"}))
    process()
    InboxEvent.objects.filter(status="dead").update(status="discarded")
    pipeline.replay()  # nothing dead any more
    from exceptions.rules import dead_letter, reconcile

    reconcile("dead_letter", dead_letter)
    assert cases("dead_letter")[0].status == "resolved"
    deliver.send(make_event("client.upserted", {"client_id": "C2"}))
    process()
    assert _regressed("dead_letter")


def test_sync_failure_of_one_object_is_one_case_however_often_it_fails(deliver, process):
    deliver.send(*[sync(False, ago(minutes=m)) for m in (50, 40, 30)])
    process()
    deliver.send(sync(False, ago(minutes=20)))
    process()
    [case] = cases("sync_failed")
    assert case.times_seen == 2  # one per batch that saw it failing
    assert case.detail["failures"] == 4
