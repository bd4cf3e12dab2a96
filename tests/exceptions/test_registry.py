"""The rule registry: each exception rule declared once, and the tables derived from it.

A rule without a case type (or a case type without a rule) fails here, as does a
declaration whose defaults drifted from what the migrations seeded."""
import datetime as dt

import pytest

from exceptions import groups, labels, rules
from exceptions.models import CaseType, RuleSetting
from exceptions.rules.registry import rule
from ingestion.announce import BatchChanges, SyncSeen

NOW = dt.datetime(2026, 9, 15, 12, tzinfo=dt.UTC)


def test_every_case_type_has_exactly_one_rule():
    assert sorted(rules.REGISTRY) == sorted(CaseType.values)


def test_a_case_type_cannot_be_declared_twice():
    with pytest.raises(ValueError, match="declared twice"):
        rule(CaseType.DEAD_LETTER, "Again", queue="integration")(lambda: [])


@pytest.mark.django_db
def test_the_declared_defaults_are_those_the_migrations_seeded():
    seeded = {s.case_type: (s.queue.slug, s.severity, s.parameters)
              for s in RuleSetting.objects.select_related("queue")}
    declared = {code: (r.queue, r.severity, r.default_parameters())
                for code, r in rules.REGISTRY.items()}
    # A rule added later needs no seeding: its setting is made when it first runs.
    assert seeded == {code: declared[code] for code in seeded}
    assert len(seeded) >= 11


@pytest.mark.django_db
def test_a_rule_nobody_configured_gets_its_declared_setting(evaluate):
    RuleSetting.objects.filter(case_type="milestone_not_invoiced").delete()
    evaluate(NOW)
    setting = RuleSetting.objects.select_related("queue").get(case_type="milestone_not_invoiced")
    assert (setting.queue.slug, setting.severity, setting.parameters, setting.enabled) == (
        "finance-ops", "medium", {"grace_days": 5}, True)


@pytest.mark.django_db
def test_a_parameter_missing_from_a_setting_falls_back_to_the_declaration(settings):
    settings.POSTING_SLA_HOURS = 36
    RuleSetting.objects.filter(case_type="approved_time_unposted").update(parameters={})
    assert rules.parameter("approved_time_unposted", "posting_sla_hours") == 36
    RuleSetting.objects.filter(case_type="approved_time_unposted").update(
        parameters={"posting_sla_hours": 12})
    assert rules.parameter("approved_time_unposted", "posting_sla_hours") == 12


def test_blocking_is_derived_from_the_declarations():
    assert rules.BLOCKING == {
        "approved_time_unposted": "project", "approved_expense_unposted": "project",
        "missing_billing_setup": "project", "invoice_blocked": "invoice",
        "milestone_not_invoiced": "milestone"}


def test_every_rule_runs_time_based():
    assert list(rules.TIME_RULES) == list(rules.REGISTRY)
    assert list(rules.REGISTRY)[:2] == ["sync_failed", "dead_letter"]


def _woken(changes):
    return [code for code, _, _ in rules._event_driven(changes, NOW)]


@pytest.mark.django_db
def test_a_batch_wakes_only_the_rules_it_can_have_changed():
    assert _woken(BatchChanges()) == []
    assert _woken(BatchChanges(touched={"opsview.Client": {1}})) == [
        "unknown_reference", "invoice_blocked", "duplicate_client"]
    assert _woken(BatchChanges(touched={"opsview.ReconciliationReport": {1}})) == [
        "reconciliation_gap"]
    assert _woken(BatchChanges(dead=True, dead_letters_changed=True)) == ["dead_letter"]


@pytest.mark.django_db
def test_a_batch_of_events_with_a_failed_sync_wakes_its_case_and_the_feeds():
    changes = BatchChanges(events=True, sync_attempts=[SyncSeen("psa-to-erp", "time_entry",
                                                                "T1", False)])
    woken = list(rules._event_driven(changes, NOW))
    assert [code for code, _, _ in woken] == ["sync_failed", "stale_feed", "stale_feed"]
    assert woken[0][2]["count"] is True and woken[1][2]["count"] is False


def test_case_type_labels_and_groupings_come_from_the_declarations():
    assert labels.human("approved_expense_unposted") == "Approved expense not posted"
    assert labels.human("missing_billing_setup") == "Missing billing set-up"
    assert all(labels.human(code) == r.label for code, r in rules.REGISTRY.items())
    assert groups.label("sync_failed|psa-to-erp|E42") == (
        "Sync failed · flow psa-to-erp · error E42")
    assert groups.label("invoice_blocked") == "Invoice blocked"


@pytest.mark.django_db
def test_after_a_batch_the_rules_run_in_their_declared_batch_order():
    everything = BatchChanges(
        events=True, dead=True, dead_letters_changed=True,
        touched={"opsview.Client": {1}, "opsview.ReconciliationReport": {1}},
        sync_attempts=[SyncSeen("psa-to-erp", "time_entry", "T1", False)])
    woken = list(dict.fromkeys(_woken(everything)))
    assert woken == ["sync_failed", "dead_letter", "unknown_reference", "invoice_blocked",
                     "reconciliation_gap", "duplicate_client", "stale_feed"]
