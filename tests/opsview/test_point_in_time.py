"""As of T is point in time (SPEC section 2): past figures are rebuilt from event times, on
the hand-worked firm of tests/opsview/firm.py."""
import datetime as dt

import pytest

from exceptions.models import Case
from exceptions.rules import evaluate_time_rules
from reporting import kpis

from .firm import at, entry, invoice


def usd(day, part="time"):
    return kpis.wip(as_of=day)["currencies"]["USD"][part]


@pytest.mark.parametrize(("day", "expected", "why"), [
    ("2026-03-04", "1950.00", "T2, T3, T4 and T6 (posted on the 4th, reversed on the 5th)"),
    ("2026-03-05", "1350.00", "T6 reversed"),
    ("2026-03-06", "600.00", "T2 billed on I5, issued on the 6th"),
    ("2026-03-07", "1350.00", "I5 voided: T2 back in WIP"),
    ("2026-03-14", "1350.00", "T4 still unbilled"),
    ("2026-03-15", "950.00", "T4 billed on I3 from its invoicing on the 15th"),
])
def test_wip_as_of_a_past_date_follows_each_items_status_then(firm, day, expected, why):
    assert usd(dt.date.fromisoformat(day)) == expected, why


def test_in_billing_begins_when_the_invoice_is_announced(firm):
    # T7 was invoiced on I2 on the 19th; I2's first event (blocked) came on the 20th.
    before = kpis.wip(as_of=dt.date(2026, 3, 19))["currencies"]["GBP"]
    after = kpis.wip(as_of=dt.date(2026, 3, 20))["currencies"]["GBP"]
    assert (before["time"], before["in_billing"]) == ("1200.00", "0.00")
    assert (after["time"], after["in_billing"]) == ("1200.00", "1200.00")


@pytest.mark.parametrize(("day", "value", "in_billing", "bucket"), [
    ("2026-01-31", "3000.00", "0.00", "0-30"),    # January recognized, nothing billed yet
    ("2026-02-28", "3000.00", "0.00", "0-30"),    # I7 covers January; February unbilled
    ("2026-03-31", "6000.00", "3000.00", "31-60"),  # I8 drafted; oldest unbilled: February
])
def test_fixed_fee_wip_is_recognized_revenue_less_billing_aged_oldest_period_first(
        firm, day, value, in_billing, bucket):
    [position] = kpis.fixed_fee_wip(as_of=dt.date.fromisoformat(day))
    assert (kpis.money(position["value"]), kpis.money(position["in_billing"])) == (
        value, in_billing)
    assert kpis.age_bucket(position["age_days"]) == bucket


@pytest.mark.parametrize(("day", "open_ar", "issued_90d", "dso"), [
    ("2026-03-06", "5900.00", "3900.00", 136.2),  # I4, I5, I6, I7 open
    ("2026-03-07", "5500.00", "3500.00", 141.4),  # I5 voided
    ("2026-03-20", "6000.00", "4500.00", 120.0),  # I4 paid, I3 issued on the 10th
])
def test_receivables_as_of_a_past_date(firm, day, open_ar, issued_90d, dso):
    result = kpis.receivables(as_of=dt.date.fromisoformat(day))
    assert result["currencies"]["USD"] == {"open_ar": open_ar, "issued_90d": issued_90d,
                                           "dso_days": dso}


def test_a_late_fact_corrects_history_but_later_events_never_change_it(firm, deliver,
                                                                      process):
    day = dt.date(2026, 3, 12)
    before = usd(day)
    # Posted, reversed and billed after the 12th: the 12th's figure stays what it was.
    deliver.send(*entry("T3", "P1", "U1", "2025-12-01", "2.00",
                        [("reversed", "2026-03-20T09:00:00")]))
    process()
    assert usd(day) == before
    # An approval that happened on the 11th, delivered late: the 12th's figure includes it.
    deliver.send(*entry("T20", "P1", "U1", "2026-03-09", "1.00",
                        [("approved", "2026-03-11T09:00:00")]))
    process()
    assert usd(day) == f"{float(before) + 100:.2f}"


def test_the_wip_entries_add_up_to_the_wip_total(firm):
    for day in (dt.date(2026, 3, 6), dt.date(2026, 3, 31)):
        totals = {}
        for row in kpis.wip_entries(as_of=day):
            totals[row["currency"]] = totals.get(row["currency"], 0) + float(row["value"])
        wip = kpis.wip(as_of=day)["currencies"]
        assert {c: f"{v:.2f}" for c, v in totals.items()} == {
            c: figures["total"] for c, figures in wip.items()}


def test_an_invoice_nobody_announced_leaves_its_items_unbilled_with_one_case(firm):
    # M2 names I9, which never arrives: counted as WIP, and one unknown_reference case.
    evaluate_time_rules(now=at("2026-04-01T00:00:00"))
    [case] = Case.objects.filter(type="unknown_reference", object_kind="invoice")
    assert (case.object_id, case.status, str(case.money_at_stake)) == ("I9", "open", "3000.00")
    assert case.began_at == at("2026-02-10T12:00:00")  # the event that first named it
    assert not Case.objects.filter(type="milestone_not_invoiced", object_id="M2",
                                   status="resolved").exists()


def test_the_invoice_arriving_bills_its_items_and_clears_the_case(firm, deliver, process):
    deliver.send(*invoice("I9", "C1", "3000.00", [("issued", "2026-02-12T09:00:00")],
                          project_id="P3", issued_on="2026-02-12"))
    process()
    assert usd(dt.date(2026, 3, 31), "milestones") == "5000.00"  # M2 billed
    assert usd(dt.date(2026, 2, 11), "milestones") == "3000.00"  # not yet on the 11th
    assert not Case.objects.filter(type="unknown_reference", object_id="I9",
                                   status="open").exists()
