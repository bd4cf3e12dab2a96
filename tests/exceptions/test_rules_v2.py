"""The cases of SPEC version 2: clocks from the business moment, sync failures cleared by the
object's own evidence, one duplicate_client case per group, learned stale feeds, unposted
expenses and reconciliation against OpsView's own counts."""
import datetime as dt

from exceptions.models import Case
from ingestion.events import make_event
from opsview.models import FlowRhythm
from opsview.rhythm import learn_rhythms

from .test_rules import NOW, ago, cases, entry, person, project, sync


def expense(stage, when, eid="E1", billable=True, **extra):
    return make_event(f"expense.{stage}", {
        "expense_id": eid, "project_id": "P1", "person_id": "U1", "incurred_on": "2026-11-02",
        "amount": "250.00", "currency": "USD", "billable": billable, **extra}, time=when)


def test_an_invoice_blocked_for_weeks_is_weeks_old_and_breached_when_its_case_opens(
        deliver, process):
    data = {"invoice_id": "I1", "client_id": "C1", "amount": "1200.00", "currency": "USD"}
    deliver.send(make_event("client.upserted", {"client_id": "C1", "name": "Acme"}),
                 make_event("invoice.blocked", {**data, "blocked_reason": "missing_po"},
                            time=ago(days=58)))
    process()
    [case] = cases("invoice_blocked")
    assert case.began_at == ago(days=58)
    assert case.opened_at > case.began_at
    assert case.age.days == 58
    assert case.sla_state == "breached"  # the resolution target ran from the blocking
    assert case.response_due_at > case.opened_at  # the response target from the opening


def test_a_sync_failure_clears_when_the_object_itself_shows_it_arrived(deliver, process):
    deliver.send(project(), person(), entry("approved", ago(hours=5)),
                 sync(False, ago(hours=4)))
    process()
    [case] = cases("sync_failed")
    assert case.began_at == ago(hours=4) and case.status == "open"
    deliver.send(entry("posted", ago(hours=3)))  # the entry reached ERP after the failure
    process()
    case.refresh_from_db()
    assert (case.status, case.resolution_code) == ("resolved", "cleared")


def test_evidence_before_the_failure_does_not_clear_it(deliver, process, evaluate):
    deliver.send(project(), person(), entry("approved", ago(hours=6)),
                 entry("posted", ago(hours=5)), sync(False, ago(hours=4)))
    process()
    assert evaluate(NOW)["sync_failed"][0].status == "open"


def test_a_reversal_is_not_evidence_of_arrival(deliver, process, evaluate):
    deliver.send(project(), person(), entry("approved", ago(hours=6)),
                 sync(False, ago(hours=4)), entry("reversed", ago(hours=2)))
    process()
    assert evaluate(NOW)["sync_failed"][0].status == "open"


def test_a_sync_failure_began_with_the_first_failure_of_the_current_run(deliver, process):
    deliver.send(sync(False, ago(hours=9)), sync(True, ago(hours=8)),
                 *[sync(False, ago(hours=h)) for h in (6, 5, 4)])
    process()
    [case] = cases("sync_failed")
    assert case.began_at == ago(hours=6)
    assert (case.detail["failures"], case.severity) == (3, "high")


def test_every_case_began_at_or_before_it_was_opened(deliver, process, evaluate):
    deliver.send(project(), person(), entry("approved", ago(hours=30)),
                 sync(False, ago(hours=2), object_id="T1"),
                 make_event("invoice.blocked", {"invoice_id": "I1", "client_id": "C1",
                                                "amount": "1.00", "currency": "USD",
                                                "blocked_reason": "other"}, time=ago(days=3)),
                 make_event("client.upserted", {"client_id": "C1", "name": "Acme"}))
    process()
    evaluate(NOW)
    assert Case.objects.count() >= 3
    for case in Case.objects.all():
        assert case.began_at <= case.opened_at, case.type


def test_approved_expenses_unposted_past_the_posting_sla(deliver, process, evaluate):
    deliver.send(project(), person(), expense("approved", ago(hours=30)),
                 expense("approved", ago(hours=40), eid="E2", billable=False))
    process()
    [case] = evaluate(NOW)["approved_expense_unposted"]
    assert (case.fingerprint, case.money_at_stake, case.currency) == ("P1", 250, "USD")
    assert case.began_at == ago(hours=6)  # 30 h ago + the 24 h SLA
    assert case.queue.slug == "finance-ops"
    deliver.send(expense("posted", ago(hours=1)))
    process()
    assert evaluate(NOW)["approved_expense_unposted"][0].status == "resolved"


def test_time_billed_without_a_posted_event_is_still_unposted(deliver, process, evaluate):
    deliver.send(project(), person(), entry("approved", ago(hours=30)),
                 make_event("time_entry.invoiced", {
                     "time_entry_id": "T1", "project_id": "P1", "person_id": "U1",
                     "work_date": "2026-11-02", "hours": "8", "billable": True,
                     "invoice_id": "I1"}, time=ago(hours=20)))
    process()
    assert evaluate(NOW)["approved_time_unposted"][0].status == "open"


def test_a_client_joining_a_duplicate_group_updates_its_one_case(deliver, process, evaluate):
    deliver.send(make_event("client.upserted", {"client_id": "C1", "name": "Acme Corp",
                                                "tax_id": "T1"}))
    process()
    deliver.send(make_event("client.upserted", {"client_id": "C2", "name": "ACME Inc."}))
    process()
    [case] = evaluate(NOW)["duplicate_client"]
    assert case.detail["client_ids"] == ["C1", "C2"]
    deliver.send(make_event("client.upserted", {"client_id": "C3", "name": "Initech",
                                                "tax_id": "T1"}))
    process()
    [case] = evaluate(NOW)["duplicate_client"]
    assert case.fingerprint == "group:C1" and case.detail["client_ids"] == ["C1", "C2", "C3"]


def test_a_merged_client_no_longer_counts_as_a_duplicate(deliver, process, evaluate):
    deliver.send(make_event("client.upserted", {"client_id": "C1", "name": "Acme Corp"}),
                 make_event("client.upserted", {"client_id": "C2", "name": "ACME Inc."}))
    process()
    assert evaluate(NOW)["duplicate_client"][0].status == "open"
    deliver.send(make_event("client.upserted", {"client_id": "C2", "name": "ACME Inc.",
                                                "merged_into": "C1"}))
    process()
    assert evaluate(NOW)["duplicate_client"][0].status == "resolved"


def test_a_report_that_disagrees_with_opsviews_own_counts_is_a_gap(deliver, process):
    deliver.send(project(), person(), entry("approved", ago(days=2)),
                 entry("approved", ago(days=2), eid="T2"), entry("posted", ago(days=1)))
    process()

    def report(source, target, hours):
        return make_event("reconciliation.reported", {
            "flow": "psa-to-erp", "object_type": "time_entry", "period_start": "2026-11-01",
            "period_end": "2026-11-30", "source_count": source, "target_count": target},
            time=ago(hours=hours))

    deliver.send(report(3, 3, 5))  # no gap of its own, but OpsView has 2 approved, 1 posted
    process()
    [case] = cases("reconciliation_gap")
    assert case.detail["opsview_source_count"] == 2
    assert "approved 3 against OpsView's 2, posted 3 against OpsView's 1" in case.title
    assert case.began_at == ago(hours=5)
    deliver.send(report(3, 3, 4))  # the same disagreement: the case began with the first
    process()
    case.refresh_from_db()
    assert case.began_at == ago(hours=5)
    deliver.send(entry("posted", ago(hours=4), eid="T2"), report(2, 2, 3))  # agrees at last
    process()
    case.refresh_from_db()
    assert case.status == "resolved"


def stale_flows(evaluate, moment):
    return [c for c in evaluate(moment).get("stale_feed", [])
            if c.status == "open" and c.fingerprint.startswith("flow:")]


def test_a_flow_is_stale_past_its_learned_silence_not_a_fixed_threshold(deliver, process,
                                                                        evaluate):
    # Twelve-hourly for five weeks: the longest gap that begins at that hour is 12 h, so
    # 18 h of silence is normal and 19 h is not (a fixed 4 h would call it stale at once).
    start = NOW - dt.timedelta(days=35)
    last = start + dt.timedelta(hours=12 * 69)
    batch = [make_event("sync.succeeded", {
        "flow": "expenses-to-erp", "source_system": "expenses", "target_system": "erp",
        "object_type": "expense", "object_id": f"X{i}"}, time=start + dt.timedelta(hours=12 * i))
        for i in range(70)]
    deliver.send(*batch)
    process()
    learn_rhythms(last + dt.timedelta(hours=1), force=True)
    rhythm = FlowRhythm.objects.get(flow="expenses-to-erp")
    assert rhythm.events >= 50
    assert stale_flows(evaluate, last + dt.timedelta(hours=17)) == []
    [case] = stale_flows(evaluate, last + dt.timedelta(hours=19))
    assert (case.fingerprint, case.severity) == ("flow:expenses-to-erp", "high")
    assert case.began_at == last + dt.timedelta(hours=18)
    assert case.detail["expected_silence_seconds"] == 18 * 3600


def test_a_flow_without_four_weeks_of_history_uses_the_configured_threshold(
        deliver, process, evaluate):
    deliver.send(*[sync(True, ago(hours=h), object_id=f"T{h}") for h in range(10, 5, -1)])
    process()
    assert stale_flows(evaluate, ago(hours=6) + dt.timedelta(hours=3, minutes=59)) == []
    [case] = stale_flows(evaluate, ago(hours=6) + dt.timedelta(hours=4, minutes=1))
    assert case.detail["expected_silence_seconds"] == 4 * 3600


def test_missing_billing_setup_began_at_the_first_billable_approval(deliver, process,
                                                                    evaluate):
    deliver.send(project(rate_card_id=None), person(), entry("approved", ago(days=9)),
                 entry("approved", ago(days=4), eid="T2"))
    process()
    [case] = evaluate(NOW)["missing_billing_setup"]
    assert case.began_at == ago(days=9)
    assert case.money_at_stake == 1600  # both entries, approved and unbilled


def test_a_fixed_fee_project_needs_no_rate_card(deliver, process, evaluate):
    deliver.send(project("P7", billing_method="fixed_fee", rate_card_id=None),
                 project("P8", billing_method="fixed_fee", rate_card_id=None, po_required=True))
    process()
    assert [c.fingerprint for c in evaluate(NOW)["missing_billing_setup"]] == ["P8"]


def test_a_case_blocking_a_closed_period_is_breached_at_once(deliver, process, evaluate):
    """Approved time from two months ago, unposted: the case blocks that month's billing,
    whose cut-off (the 3rd working day after it) has passed — breached, though its own
    business-hours target has not."""
    from opsview.periods import month_bounds

    first, _ = month_bounds(NOW.date())
    old_month = (first - dt.timedelta(days=40)).replace(day=10)
    work = make_event("time_entry.approved", {
        "time_entry_id": "T1", "project_id": "P1", "person_id": "U1",
        "work_date": old_month.isoformat(), "hours": "8", "billable": True},
        time=ago(hours=26))
    deliver.send(project(), person(), work)
    process()
    [case] = evaluate(NOW)["approved_time_unposted"]
    assert case.blocks_period == old_month.strftime("%Y-%m")
    assert case.cutoff_at < NOW and case.resolution_due_at == case.cutoff_at
    assert case.sla_state == "breached"


def test_a_case_blocking_this_month_is_due_by_its_cut_off_at_the_latest(deliver, process,
                                                                       evaluate):
    work = make_event("time_entry.approved", {
        "time_entry_id": "T1", "project_id": "P1", "person_id": "U1",
        "work_date": NOW.date().isoformat(), "hours": "8", "billable": True},
        time=ago(hours=26))
    deliver.send(project(), person(), work)
    process()
    [case] = evaluate(NOW)["approved_time_unposted"]
    assert case.blocks_period == NOW.strftime("%Y-%m") and case.cutoff_at > NOW
    assert case.resolution_due_at <= case.cutoff_at
