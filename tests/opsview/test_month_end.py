"""The month-end KPIs of SPEC section 4 on the hand-worked firm with its month-end events
(tests/opsview/firm.py, `month_end_events` and `close_calendars`): reconciliation, period
close, billing, trends and the reporting currency. Every figure is worked out by hand in
the comments."""
import datetime as dt

import pytest

from exceptions import rules, services
from exceptions.models import Case
from reporting import billing, close, fx, kpis, trends

from .firm import at, make_event

MARCH = {"period": "2026-03", "first_day": dt.date(2026, 3, 1), "last_day": dt.date(2026, 3, 31)}
NOW = at("2026-04-06T12:00:00")  # Monday, after the US cut-off, before the firm's


# --- Reconciliation ----------------------------------------------------------------------------
def test_reconciliation_of_march_time_counts_hours_value_and_gaps(closing_firm):
    time = close.reconciliation(**MARCH)["time"]
    # Approved or later, dated in March: T1 8 h, T4 4, T7 10 (GBP), T8 7 (not billable),
    # T9 3 (on P9, not known yet: value unknown), T12 1.5, T13 4 (fixed fee: no value), T20 2.
    # T5 was rejected, T6 and T21 reversed, T11 only submitted.
    assert time["approved"] == {"count": 8, "hours": "39.50",
                                "currencies": {"GBP": "1200.00", "USD": "1550.00"}}
    # With a posted event: T1, T4, T7.
    assert time["posted"] == {"count": 3, "hours": "22.00",
                              "currencies": {"GBP": "1200.00", "USD": "1200.00"}}
    # On an issued invoice now: T4 and T20 on I3, T1 on I10.
    assert time["billed"] == {"count": 3, "hours": "14.00", "currencies": {"USD": "1400.00"}}
    # No posted event: T8, T9, T12, T13, T20 (billed although never posted).
    assert time["approved_not_posted"] == {
        "count": 5, "hours": "17.50", "currencies": {"USD": "350.00"},
        "ids": ["T12", "T13", "T20", "T8", "T9"]}
    # Posted, billable value, not billed now: T7 (in billing on the blocked I2).
    assert time["posted_not_billed"] == {"count": 1, "hours": "10.00",
                                         "currencies": {"GBP": "1200.00"}, "ids": ["T7"]}
    assert time["billed_not_posted"] == {"count": 1, "hours": "2.00",
                                         "currencies": {"USD": "200.00"}, "ids": ["T20"]}
    # T21 was reversed on the 25th while I3, issued on the 10th, billed it.
    assert time["reversed_but_billed"] == {"count": 1, "currencies": {"USD": "300.00"},
                                           "ids": ["T21"]}


def test_reconciliation_of_march_expenses(closing_firm):
    expenses = close.reconciliation(**MARCH)["expenses"]
    # E2 (50.00, not billable) and E3 (60.00, posted, billed on I11 since 6 April).
    assert expenses["approved"] == {"count": 2, "currencies": {"USD": "60.00"}}
    assert expenses["posted"] == {"count": 1, "currencies": {"USD": "60.00"}}
    assert expenses["billed"] == {"count": 1, "currencies": {"USD": "60.00"}}
    # E2 has no billable value: counted, but no currency holds value for it.
    assert expenses["approved_not_posted"] == {"count": 1, "currencies": {}, "ids": ["E2"]}
    assert expenses["posted_not_billed"]["count"] == 0


def test_reported_counts_sit_beside_opsviews_own(closing_firm):
    reported = close.reconciliation(**MARCH)["reported"]
    rows = {(r["flow"], r["object_type"]): r for r in reported}
    assert len(reported) == 3  # February's report is not in March
    assert rows[("psa-to-erp", "time_entry")] | {"reported_at": None} == {
        "flow": "psa-to-erp", "object_type": "time_entry", "period_start": "2026-03-01",
        "period_end": "2026-03-31", "source_count": 8, "target_count": 3,
        "opsview_source_count": 8, "opsview_target_count": 3, "agrees": True,
        "reported_at": None}
    # ERP says both expenses arrived; OpsView saw one posting.
    expense = rows[("expenses-to-erp", "expense")]
    assert (expense["opsview_source_count"], expense["opsview_target_count"],
            expense["agrees"]) == (2, 1, False)
    # OpsView keeps no count of invoices: nothing to agree with.
    invoice = rows[("erp-to-crm", "invoice")]
    assert (invoice["opsview_source_count"], invoice["agrees"]) == (None, None)


def test_reconciliation_filters_by_legal_entity(closing_firm):
    uk = close.reconciliation(**MARCH, filters={"legal_entity": "UK"})
    assert uk["time"]["approved"] == {"count": 1, "hours": "10.00",
                                      "currencies": {"GBP": "1200.00"}}
    assert uk["expenses"]["approved"]["count"] == 0


def test_reconciliation_lists_the_first_hundred_ids_in_ascending_order(firm, deliver, process):
    from .firm import entry

    events = []
    for n in range(105):
        events += entry(f"B{n:03d}", "P1", "U1", "2026-05-04", "1.00",
                        [("approved", "2026-05-04T18:00:00")])
    deliver.send(*events)
    process()
    gap = close.reconciliation(period="2026-05", first_day=dt.date(2026, 5, 1),
                               last_day=dt.date(2026, 5, 31))["time"]["approved_not_posted"]
    assert gap["count"] == 105
    assert gap["ids"] == [f"B{n:03d}" for n in range(100)]


# --- Period close --------------------------------------------------------------------------
def test_the_cut_off_is_the_first_instant_after_the_nth_working_day(closing_firm):
    # Firm: 3rd working day, Good Friday off: 1, 2, 6 April → cut-off 7 April 00:00.
    result = close.period_close(**MARCH, now=NOW)
    assert (result["cutoff_at"], result["seconds_to_cutoff"]) == (
        "2026-04-07T00:00:00+00:00", 12 * 3600)
    assert result["passed"] is False
    assert {c["legal_entity"]: c["cutoff_date"] for c in result["cutoffs"]} == {
        "UK": "2026-04-08", "US": "2026-04-02"}
    # The US closes on its 2nd working day: 2 April, so by the 6th it is 3.5 days past.
    us = close.period_close(**MARCH, filters={"legal_entity": "US"}, now=NOW)
    assert (us["cutoff_at"], us["seconds_to_cutoff"]) == ("2026-04-03T00:00:00+00:00",
                                                          -84 * 3600)


def test_period_close_splits_the_period_like_readiness(closing_firm):
    result = close.period_close(**MARCH, now=NOW)
    # Population USD 6,610: T1 800 (billed on I10), T4 400 and T20 200 (I3), E3 60 (I11),
    # T12 150 (not posted), M1 5,000 (P3 has no PO). Nothing is ready: ratio 0.
    assert result["currencies"]["USD"] == {
        "billable_value": "6610.00", "billed_value": "1460.00", "in_billing_value": "0.00",
        "ready_value": "0.00", "not_ready_value": "5150.00",
        "not_ready": {"unposted": "150.00", "missing_billing_setup": "5000.00"},
        "readiness_ratio": 0.0, "slipped_value": None}  # the cut-off is still ahead
    readiness = kpis.invoice_readiness(**MARCH)["currencies"]
    assert result["currencies"]["GBP"]["billable_value"] == readiness["GBP"]["billable_value"]


def test_slipped_value_is_what_was_not_billed_by_the_cut_off(closing_firm):
    later = at("2026-04-20T00:00:00")
    # The firm's cut-off (7 April): T4, T20 (I3, March) and E3 (I11, issued 6 April) were
    # billed by then; T1 (I10, issued the 10th), T12 and M1 were not: 6,610 − 660 = 5,950.
    # T7 (GBP 1,200) is still on the blocked I2.
    firm = close.period_close(**MARCH, now=later)["currencies"]
    assert (firm["USD"]["slipped_value"], firm["GBP"]["slipped_value"]) == ("5950.00",
                                                                            "1200.00")
    # The US cut-off (3 April) came before I11 was issued: E3 slipped too.
    us = close.period_close(**MARCH, filters={"legal_entity": "US"}, now=later)
    assert us["currencies"]["USD"]["slipped_value"] == "6010.00"


@pytest.fixture
def cases_on_april_6(closing_firm):
    rules.evaluate_time_rules(now=NOW)


def test_blocking_cases_are_those_on_the_periods_population_by_money(cases_on_april_6):
    result = close.period_close(**MARCH, now=NOW)["blocking_cases"]
    # P3's missing PO (M1 5,000 + M2 3,000 unbilled), M1 not invoiced (5,000), P1's unposted
    # time (T2 750, T3 200, T10 100, T12 150, T20 200 = 1,400: T12 is March's), P2's missing
    # rate card (T7 1,200 GBP), I2 blocked holding T7 (300 GBP), P1's unposted expense E1
    # (90). Not blocking: I1 (holds nothing of March), P4's unposted T13 (fixed fee: not in
    # the population), the unknown invoice I9 and project P9.
    assert [(c["type"], c["object_id"], c["money_at_stake"]) for c in result["cases"]] == [
        ("missing_billing_setup", "P3", "8000.00"),
        ("milestone_not_invoiced", "M1", "5000.00"),
        ("approved_time_unposted", "P1", "1400.00"),
        ("missing_billing_setup", "P2", "1200.00"),
        ("invoice_blocked", "I2", "300.00"),
        ("approved_expense_unposted", "P1", "90.00"),
    ]
    assert result["count"] == 6
    assert result["currencies"] == {"GBP": "1500.00", "USD": "14490.00"}
    # Nobody owns any of them: all at risk.
    assert result["at_risk"] == 6


def test_a_blocking_case_is_due_by_the_cut_off_and_owning_it_takes_it_off_risk(
        cases_on_april_6, role_user):
    cutoff = "2026-04-07T00:00:00+00:00"
    for case in close.period_close(**MARCH, now=NOW)["blocking_cases"]["cases"]:
        assert case["due_at"] <= cutoff or case["due_at"].startswith("2026-04-06")
        assert case["due_at"] == min(case["resolution_due_at"], cutoff)
    # P1's unposted time began in December: long due, breached, but owned it is not at risk.
    unposted = Case.objects.get(type="approved_time_unposted", fingerprint="P1")
    services.assign(unposted, role_user("fin", "finance_ops"), unposted.owner, now=NOW)
    result = close.period_close(**MARCH, now=NOW)["blocking_cases"]
    row = next(c for c in result["cases"] if c["id"] == unposted.pk)
    assert (row["owner"], row["at_risk"], row["breached"]) == ("fin", False, True)
    assert result["at_risk"] == 5
    # Past the US cut-off every case blocking the US's March is breached.
    us = close.period_close(**MARCH, filters={"legal_entity": "US"}, now=NOW)
    assert us["blocking_cases"]["breached"] == us["blocking_cases"]["count"] == 4


# --- Billing -----------------------------------------------------------------------------------
APRIL = {"start": dt.date(2026, 4, 1), "end": dt.date(2026, 4, 30)}


def test_billing_realization_cycle_lag_and_collection(closing_firm):
    usd = billing.billing(**APRIL)["currencies"]["USD"]
    # Issued in April: I10 720.00 (T1, standard 800.00), I11 60.00 (E3, standard 60.00).
    # Realization 780 / 860; cycle I10 2 days (8 → 10), I11 3 days (3 → 6); lag T1 worked
    # 30 March, billed 10 April: 11 days; I10 paid in 20 days.
    assert usd == {"count": 2, "billed_value": "780.00", "standard_value": "860.00",
                   "realization_ratio": 0.907, "cycle_days": {"p50": 2.5, "p90": 2.9},
                   "billing_lag_days": {"p50": 11.0, "p90": 11.0},
                   "collection_days": {"p50": 20.0, "p90": 20.0}}


def test_billing_of_march_leaves_the_voided_invoice_and_reversed_time_out(closing_firm):
    usd = billing.billing(start=dt.date(2026, 3, 1), end=dt.date(2026, 3, 31))["currencies"]
    # I3 (1,000, T&M) and I4 (500, milestone project); I5 was voided. I3 bills T4 400 and T20
    # 200; T21 was reversed: out of its standard value and its lag. I3 had no drafted event.
    # Lags from I3's issue on 10 March: T4 worked on the 1st, 9 days; T20 on the 16th, put on
    # the invoice after it was issued, −6 days: p50 1.5, p90 −6 + 0.9 × 15 = 7.5.
    assert usd["USD"] == {"count": 2, "billed_value": "1500.00", "standard_value": "600.00",
                          "realization_ratio": 1.6667, "cycle_days": {"p50": None, "p90": None},
                          "billing_lag_days": {"p50": 1.5, "p90": 7.5},
                          "collection_days": {"p50": 15.0, "p90": 15.0}}


def test_touchless_share_of_posted_time(closing_firm):
    # Posted in April: T22 (after a failed sync) and T23.
    assert billing.billing(**APRIL)["touchless_ratio"] == 0.5
    assert billing.billing(start=dt.date(2026, 3, 1),
                           end=dt.date(2026, 3, 31))["touchless_ratio"] == 1.0


# --- Reporting currency ------------------------------------------------------------------------
def test_wip_in_a_reporting_currency_cites_its_rates(closing_firm):
    wip = kpis.wip(as_of=dt.date(2026, 3, 31))
    amounts = {c: f["total"] for c, f in wip["currencies"].items()}
    # USD 16,050 × 0.9 (31 March: the later event wins over 0.88) + GBP 1,200 / 0.85
    # (30 March, inverted) = 14,445 + 1,411.7647… = 15,856.76.
    assert fx.reporting(amounts, "EUR", dt.date(2026, 3, 31)) == {
        "currency": "EUR", "total": "15856.76",
        "rates": [{"base": "EUR", "quote": "GBP", "rate": "0.85", "date": "2026-03-30"},
                  {"base": "USD", "quote": "EUR", "rate": "0.9", "date": "2026-03-31"}],
        "unconverted": []}
    # On 30 March no USD rate was published yet: USD is named, never guessed.
    assert fx.reporting(amounts, "EUR", dt.date(2026, 3, 30))["unconverted"] == ["USD"]
    assert fx.reporting(amounts, "USD", dt.date(2026, 3, 31)) == {
        "currency": "USD", "total": "16050.00", "rates": [], "unconverted": ["GBP"]}


def test_a_rate_is_last_writer_wins_whatever_the_delivery_order(closing_firm, deliver,
                                                               process):
    from opsview.models import FxRate

    stale = make_event("fx_rate.published", {"base": "USD", "quote": "EUR", "rate": "0.5",
                                             "date": "2026-03-31"},
                       time=at("2026-03-31T08:00:00"))
    deliver.send(stale)
    process()
    assert str(FxRate.objects.get(base="USD", quote="EUR", date="2026-03-31").rate.normalize()) \
        == "0.9"


def test_a_rate_of_a_currency_into_itself_is_a_dead_letter(db, deliver, process):
    from ingestion.models import InboxEvent

    deliver.send(make_event("fx_rate.published", {"base": "EUR", "quote": "EUR", "rate": "1",
                                                  "date": "2026-03-31"}))
    process()
    assert InboxEvent.objects.get().status == "dead"


# --- Trends ------------------------------------------------------------------------------------
def test_wip_trend_is_wip_at_each_month_end(closing_firm):
    result = trends.trends(metric="wip", interval="month", start=dt.date(2026, 1, 1),
                           end=dt.date(2026, 3, 31))
    # 31 Jan: T3 200 + E1 90 + P4's January 3,000 = 3,290. 28 Feb: T2 750 + T3 200 + E1 90
    # + M2 3,000 + P4 6,000 − I7 3,000 = 7,040. 31 Mar: the WIP of test_kpis.
    assert result["points"] == [
        {"end": "2026-01-31", "currencies": {"USD": "3290.00"}},
        {"end": "2026-02-28", "currencies": {"USD": "7040.00"}},
        {"end": "2026-03-31", "currencies": {"GBP": "1200.00", "USD": "16050.00"}}]


def test_weekly_intervals_are_iso_weeks_with_a_partial_last_one(closing_firm):
    result = trends.trends(metric="posting_p95", interval="week", start=dt.date(2026, 3, 2),
                           end=dt.date(2026, 3, 18))
    # Mon 2 – Sun 8 (T4 posted in 2 h), 9 – 15 (T7 in 48 h), 16 – Wed 18 (T21 in 15 h).
    assert result["points"] == [{"end": "2026-03-08", "value": 7200.0},
                                {"end": "2026-03-15", "value": 172800.0},
                                {"end": "2026-03-18", "value": None}]


def test_readiness_trend_is_each_months_readiness_now(closing_firm):
    result = trends.trends(metric="readiness_ratio", interval="month",
                           start=dt.date(2026, 2, 1), end=dt.date(2026, 3, 31))
    march = kpis.invoice_readiness(**MARCH)["currencies"]
    assert result["points"][-1] == {"end": "2026-03-31", "currencies": {
        c: f["readiness_ratio"] for c, f in march.items()}}


def test_open_cases_at_a_date_come_from_the_audit_trail(cases_on_april_6, role_user):
    # The rules evaluated on 6 April opened these (the event-driven ones ran today, later).
    opened = Case.objects.filter(status__in=Case.OPEN_STATES, opened_at=NOW).count()
    assert opened >= 6
    case = Case.objects.get(type="milestone_not_invoiced", fingerprint="M1")
    services.resolve(case, role_user("fin", "finance_ops"), "fixed",
                     now=at("2026-04-08T10:00:00"))
    result = trends.trends(metric="open_cases", interval="week", start=dt.date(2026, 3, 30),
                           end=dt.date(2026, 4, 12))
    # Opened on 6 April (the week to the 5th had none); M1's case resolved on the 8th.
    assert result["points"] == [{"end": "2026-04-05", "value": 0},
                                {"end": "2026-04-12", "value": opened - 1}]
    assert trends.open_cases_at(dt.date(2026, 4, 7)) == opened
