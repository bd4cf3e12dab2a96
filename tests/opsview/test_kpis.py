"""Every KPI formula of SPEC section 4 on the small hand-worked firm of tests/opsview/firm.py."""
import datetime as dt
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reporting import kpis

from .firm import at, reconciliation, sync

MARCH = {"start": dt.date(2026, 3, 1), "end": dt.date(2026, 3, 31)}


def test_wip_counts_approved_unbilled_value_by_billing_method_currency_and_age(firm):
    result = kpis.wip(as_of=dt.date(2026, 3, 31))
    assert result["currencies"] == {
        # time: T1 800 + T2 750 (back since I5 was voided) + T3 200 + T12 150 — T4 is billed
        # on I3, T13 is fixed-fee time; expenses E1 90 + E3 60; milestones M1 5,000 + M2
        # 3,000 (on I9, which never arrived); fixed fee P4 9,000 recognized − 3,000 billed,
        # of which I8's 3,000 is in billing, aged from 28 Feb (its oldest unbilled period).
        "USD": {"total": "16050.00", "time": "1900.00", "expenses": "150.00",
                "milestones": "8000.00", "fixed_fee": "6000.00", "in_billing": "3000.00",
                "aging": {"0-30": "6010.00", "31-60": "9750.00", "61-90": "90.00",
                          "90+": "200.00"}},
        # T7 1,200, on I2, which is blocked: still WIP, in billing.
        "GBP": {"total": "1200.00", "time": "1200.00", "expenses": "0.00",
                "milestones": "0.00", "fixed_fee": "0.00", "in_billing": "1200.00",
                "aging": {"0-30": "1200.00", "31-60": "0.00", "61-90": "0.00", "90+": "0.00"}},
    }


def test_wip_age_bucket_edges_are_30_60_90_and_91_days(firm):
    # T3 (work 2025-12-01, 200.00) is 90 days old on 2026-03-01 and 91 days on 2026-03-02.
    day_90 = kpis.wip(as_of=dt.date(2026, 3, 1))["currencies"]["USD"]["aging"]
    day_91 = kpis.wip(as_of=dt.date(2026, 3, 2))["currencies"]["USD"]["aging"]
    assert day_90["61-90"] == "200.00" and day_90["90+"] == "0.00"
    assert day_91["90+"] == "200.00"


def test_wip_excludes_work_after_the_as_of_date(firm):
    assert kpis.wip(as_of=dt.date(2026, 4, 30))["currencies"]["USD"]["time"] == "2000.00"


def test_wip_filters_by_practice_client_and_legal_entity(firm):
    as_of = dt.date(2026, 3, 31)
    assert set(kpis.wip(as_of=as_of, filters={"practice": "Cloud"})["currencies"]) == {"GBP"}
    assert set(kpis.wip(as_of=as_of, filters={"client": "C1"})["currencies"]) == {"USD"}
    assert set(kpis.wip(as_of=as_of, filters={"legal_entity": "UK"})["currencies"]) == {"GBP"}
    assert kpis.wip(as_of=as_of, filters={"client": "nobody"})["currencies"] == {}


def test_placeholder_project_counts_once_its_master_arrives(firm, deliver, process):
    from .firm import project

    deliver.send(project("P9", "C1", "Data", "US", "USD", "time_and_materials",
                         rate_card_id="rc1"))
    process()
    # T9: 3 h × 100.00 on P9, 26 days old.
    usd = kpis.wip(as_of=dt.date(2026, 3, 31))["currencies"]["USD"]
    assert (usd["time"], usd["aging"]["0-30"]) == ("2200.00", "6310.00")


def test_invoice_readiness_splits_value_by_first_failing_reason(firm):
    result = kpis.invoice_readiness(period="2026-03", first_day=dt.date(2026, 3, 1),
                                    last_day=dt.date(2026, 3, 31))
    # Time and materials T1 800 (ready), T4 400 (billed), T12 150 (not posted); E3 60
    # (ready); milestone M1 5,000 on P3, which lacks its PO. T13 on fixed-fee P4 has no value.
    assert result["currencies"]["USD"] == {
        "billable_value": "6410.00", "invoiced_value": "400.00", "in_billing_value": "0.00",
        "ready_value": "860.00", "not_ready_value": "5150.00",
        "not_ready": {"unposted": "150.00", "missing_billing_setup": "5000.00"},
        "readiness_ratio": 0.1431,
    }
    # T7 is on I2, blocked: in billing, neither ready nor not ready.
    assert result["currencies"]["GBP"] == {
        "billable_value": "1200.00", "invoiced_value": "0.00", "in_billing_value": "1200.00",
        "ready_value": "0.00", "not_ready_value": "0.00",
        "not_ready": {"unposted": "0.00", "missing_billing_setup": "0.00"},
        "readiness_ratio": None,
    }
    assert result["blocked_invoices"] == {
        "count": 2, "by_reason": {"missing_po": 1, "rate_mismatch": 1},
        "currencies": {"GBP": "300.00", "USD": "700.00"}}


def test_invoice_readiness_ratio_is_null_on_an_empty_period(firm):
    result = kpis.invoice_readiness(period="2024-01", first_day=dt.date(2024, 1, 1),
                                    last_day=dt.date(2024, 1, 31))
    assert result["currencies"] == {}


def test_posting_latency_percentiles_interpolate_like_percentile_cont(firm):
    result = kpis.posting_latency(**MARCH)
    assert result["count"] == 3  # T4 (2 h), T1 (12 h), T7 (48 h); reversed T6 is out
    assert result["p50_seconds"] == 43200
    assert result["p90_seconds"] == 146880
    assert result["p95_seconds"] == 159840
    assert result["within_sla_ratio"] == 0.6667
    assert result["sla_seconds"] == 86400
    # T2 (billed once, on a voided invoice, never posted), T3, T8, T10, T12, T13.
    assert result["backlog"] == {"count": 6, "hours": "20.50",
                                 "oldest_approved_at": "2025-12-02T09:00:00+00:00",
                                 "currencies": {"USD": "1200.00"}}
    assert result["expenses"] == {  # E3 posted in 24 h; E1 approved in January, not posted
        "count": 1, "p50_seconds": 86400.0, "p90_seconds": 86400.0, "p95_seconds": 86400.0,
        "within_sla_ratio": 1.0,
        "backlog": {"count": 1, "oldest_approved_at": "2026-01-21T09:00:00+00:00",
                    "currencies": {"USD": "90.00"}}}


def test_posting_latency_of_an_empty_window_has_null_percentiles(firm):
    result = kpis.posting_latency(start=dt.date(2024, 1, 1), end=dt.date(2024, 1, 31))
    assert (result["count"], result["p50_seconds"], result["within_sla_ratio"]) == (0, None, None)


def test_posting_latency_trend_has_each_weeks_percentiles(firm):
    end = dt.date(2026, 3, 31)
    trend = kpis.posting_latency_trend(end=end, weeks=6)
    assert [week["week"] for week in trend][-1] == "2026-03-25"
    assert sum(week["count"] for week in trend) == 3  # March's three posted entries
    for week in trend:
        start = dt.date.fromisoformat(week["week"])
        alone = kpis.posting_latency(start=start, end=start + dt.timedelta(days=6))
        assert week == {"week": week["week"], **{key: alone[key] for key in (
            "count", "p50_seconds", "p90_seconds", "p95_seconds", "within_sla_ratio")}}


def test_percentile_cont_is_linear_interpolation():
    assert kpis.percentile_cont([7200, 43200, 172800], 0.9) == pytest.approx(146880)
    assert kpis.percentile_cont([1, 2, 3, 4], 0.5) == 2.5
    assert kpis.percentile_cont([5], 0.95) == 5
    assert kpis.percentile_cont([], 0.5) is None


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(-400, 400), min_size=1, max_size=60),
       st.sampled_from([0.0, 0.5, 0.9, 0.95, 1.0]))
def test_percentiles_from_counts_equal_percentile_cont_of_the_values(values, fraction):
    counts = Counter(values)
    counts[1000] = 0  # a value counted zero times is no value
    assert kpis.percentile_from_counts(counts, fraction) == pytest.approx(
        kpis.percentile_cont(values, fraction))


def test_percentiles_from_no_counts_are_none():
    assert kpis.percentile_from_counts({}, 0.5) is None
    assert kpis.percentile_from_counts({3: 0}, 0.5) is None


def test_weekdays_counts_monday_to_friday_inclusive():
    assert kpis.weekdays(dt.date(2026, 3, 1), dt.date(2026, 3, 31)) == 22
    assert kpis.weekdays(dt.date(2026, 3, 7), dt.date(2026, 3, 8)) == 0  # a weekend
    assert kpis.weekdays(dt.date(2026, 3, 9), dt.date(2026, 3, 9)) == 1
    assert kpis.weekdays(dt.date(2026, 3, 9), dt.date(2026, 3, 8)) == 0


def test_utilization_is_billable_hours_over_active_capacity(firm):
    result = kpis.utilization(**MARCH, now=at("2026-04-01T00:00:00"))
    # T13's 4 h on fixed-fee P4 are chargeable: billable hours, though no billable value.
    assert (result["billable_hours"], result["total_hours"], result["capacity_hours"]) == (
        "27.50", "34.50", "316.80")
    assert result["utilization_ratio"] == 0.0868
    assert result["by_practice"] == [
        {"practice": "Cloud", "billable_hours": "10.00", "total_hours": "10.00",
         "capacity_hours": "140.80", "utilization_ratio": 0.071},
        {"practice": "Data", "billable_hours": "17.50", "total_hours": "24.50",
         "capacity_hours": "176.00", "utilization_ratio": 0.0994},
    ]
    assert [p["person_id"] for p in result["by_person"]] == ["U2", "U1"]  # U3 is inactive
    assert result["freshness_seconds"] is not None


def test_utilization_by_practice_filter_limits_people_and_hours(firm):
    result = kpis.utilization(**MARCH, filters={"practice": "Cloud"})
    assert (result["billable_hours"], result["capacity_hours"]) == ("10.00", "140.80")


def test_margin_by_project(firm):
    rows = {r["key"]: r for r in kpis.margin(**MARCH, group_by="project")["rows"]}
    # Billed: I3; I5 was voided. Earned: T1 + T4 + T12 + E3.
    assert rows["P1"] == {"key": "P1", "name": "Project P1", "currency": "USD",
                          "earned_revenue": "1410.00", "labor_cost": "1025.00",
                          "margin": "385.00", "margin_ratio": 0.273,
                          "billed_revenue": "1000.00", "recognized_revenue": "900.00"}
    # Fixed fee: earned is March's recognized revenue; T13 is its labor cost.
    assert rows["P4"] == {"key": "P4", "name": "Project P4", "currency": "USD",
                          "earned_revenue": "3000.00", "labor_cost": "200.00",
                          "margin": "2800.00", "margin_ratio": 0.9333,
                          "billed_revenue": "0.00", "recognized_revenue": "3000.00"}
    assert (rows["P2"]["currency"], rows["P2"]["margin"], rows["P2"]["margin_ratio"]) == (
        "GBP", "600.00", 0.5)
    assert (rows["P3"]["earned_revenue"], rows["P3"]["labor_cost"],
            rows["P3"]["billed_revenue"]) == ("5000.00", "0.00", "500.00")


def test_margin_by_client_and_practice_keep_currencies_apart(firm):
    by_client = {(r["key"], r["currency"]): r for r in
                 kpis.margin(**MARCH, group_by="client")["rows"]}
    assert by_client[("C1", "USD")]["earned_revenue"] == "9410.00"
    assert by_client[("C1", "USD")]["billed_revenue"] == "1500.00"
    assert by_client[("C2", "GBP")]["margin"] == "600.00"
    by_practice = {(r["key"], r["currency"]) for r in
                   kpis.margin(**MARCH, group_by="practice")["rows"]}
    assert by_practice == {("Data", "USD"), ("Cloud", "GBP")}


def test_margin_ratio_is_null_without_earned_revenue(deliver, process, firm):
    rows = kpis.margin(start=dt.date(2026, 1, 1), end=dt.date(2026, 1, 31))["rows"]
    only_recognized = next(r for r in rows if r["key"] == "P2")
    assert only_recognized["recognized_revenue"] == "111.00"
    assert only_recognized["margin_ratio"] is None


def test_receivables_open_ar_and_dso(firm):
    result = kpis.receivables(as_of=dt.date(2026, 3, 31))
    # Open: I3, I6, I7. Issued in the 90 days: I3, I4, I7 (I5 was voided).
    assert result["currencies"] == {"USD": {"open_ar": "6000.00", "issued_90d": "4500.00",
                                            "dso_days": 120.0}}


def test_receivables_dso_is_null_without_recent_invoices(firm):
    result = kpis.receivables(as_of=dt.date(2025, 12, 31))
    assert result["currencies"]["USD"] == {"open_ar": "2000.00", "issued_90d": "2000.00",
                                           "dso_days": 90.0}
    later = kpis.receivables(as_of=dt.date(2026, 2, 28), filters={"client": "C2"})
    assert later["currencies"] == {}


def test_integration_health_per_flow(deliver, process):
    base = at("2026-03-10T10:00:00")
    minutes = dt.timedelta(minutes=1)
    deliver.send(
        sync("psa-to-erp", "te-1", False, base, 200),
        sync("psa-to-erp", "te-1", True, base + 5 * minutes, 100),
        sync("psa-to-erp", "te-2", False, base + 10 * minutes, 400),
        sync("psa-to-erp", "te-3", True, base + 15 * minutes, 300),
        reconciliation("psa-to-erp", "2026-02-01", "2026-02-28", 10, 8),
        reconciliation("psa-to-erp", "2026-01-01", "2026-01-31", 5, 5),
    )
    process()
    start = at("2026-03-10T00:00:00")
    result = kpis.integration_health(start=start, end=start + dt.timedelta(days=1),
                                     now=base + dt.timedelta(hours=5))
    assert result["flows"] == [{
        "flow": "psa-to-erp", "source_system": "psa", "target_system": "erp",
        "succeeded": 2, "failed": 2, "success_ratio": 0.5, "p95_latency_ms": 385.0,
        "last_event_at": "2026-03-10T10:15:00+00:00", "expected_silence_seconds": 14400,
        "stale": True, "open_failures": 1,
    }]
    assert result["reconciliation_gaps"] == [{
        "flow": "psa-to-erp", "object_type": "time_entry", "period_start": "2026-02-01",
        "period_end": "2026-02-28", "source_count": 10, "target_count": 8, "gap": 2}]
    assert result["inbox"]["pending"] == 0


def test_integration_health_counts_pending_dead_and_duplicates(deliver, process, event):
    now = dt.datetime.now(dt.UTC)
    good = event("client.upserted", {"client_id": "C1", "name": "Acme"})
    deliver.send(good, event("client.upserted", {"client_id": "C2"}))
    process()
    deliver.send(good, event("client.upserted", {"client_id": "C3", "name": "Initech"}))
    result = kpis.integration_health(start=now - dt.timedelta(hours=24),
                                     end=now + dt.timedelta(minutes=1))
    assert result["inbox"]["pending"] == 1
    assert result["inbox"]["dead"] == 1
    assert result["duplicates"] == 1
    assert result["inbox"]["oldest_pending_age_seconds"] >= 0
