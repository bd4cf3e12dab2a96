"""Cross-checks a controller would make by hand, over several simulated firms: every figure
agrees with every other figure that says the same thing another way.

Each firm (small size, three seeds) is delivered through the webhook's own intake, processed,
and evaluated by every rule once for the module; the checks read it.
"""
import datetime as dt
import itertools
from collections import defaultdict
from decimal import Decimal

import pytest
from django.db.models import F
from django.utils import timezone

from exceptions import rules
from exceptions.kpis import exceptions_kpi
from exceptions.models import Case, CaseEntry
from ingestion.intake import store_events
from ingestion.management.commands.rebuild_state import STATE_TABLES
from ingestion.models import DuplicateDelivery, InboxEvent, Source
from ingestion.pipeline import drain_inbox
from opsview import derived, selectors
from opsview import models as state
from opsview.timeline import end_of
from reporting import kpis
from simulator import FirmSimulator

SEEDS = [42, 7, 1234]


@pytest.fixture(scope="module", params=SEEDS)
def firm(request, django_db_setup, django_db_blocker):
    """A simulated firm, committed for the module's tests and removed after them."""
    with django_db_blocker.unblock():
        source = Source.objects.create(slug=f"sim-{request.param}", name="simulator",
                                       rate_limit_per_minute=0)
        simulator = FirmSimulator("small", seed=request.param)
        events = simulator.events()
        while batch := list(itertools.islice(events, 500)):
            store_events(source, batch)
        drain_inbox()
        now = timezone.now()
        rules.evaluate_time_rules(now=now)
        yield {"seed": request.param, "today": timezone.localdate(), "now": now}
        CaseEntry.objects.all().delete()
        Case.objects.all().delete()
        for model in STATE_TABLES:
            model.objects.all().delete()
        DuplicateDelivery.objects.all().delete()
        InboxEvent.objects.all().delete()
        Source.objects.all().delete()


def dec(value):
    return Decimal(value or 0)


def sum_by_currency(rows, amount, currency="currency"):
    totals = defaultdict(Decimal)
    for row in rows:
        totals[row[currency]] += dec(row[amount])
    return {c: kpis.money(v) for c, v in totals.items() if v}


def nonzero(mapping):
    return {c: v for c, v in mapping.items() if dec(v)}


AS_OF_BACK = [0, 15, 45, 75]


@pytest.mark.django_db
def test_billed_revenue_in_margin_is_the_issued_not_voided_invoices(firm):
    start = firm["today"] - dt.timedelta(days=200)
    rows = kpis.margin(start=start, end=firm["today"], group_by="client")["rows"]
    invoices = state.Invoice.objects.filter(
        is_placeholder=False, client__is_placeholder=False,
        issued_date__range=(start, firm["today"])).exclude(status="voided")
    assert sum_by_currency(rows, "billed_revenue") == sum_by_currency(
        invoices.values("amount", "currency"), "amount")
    assert invoices.exists()


@pytest.mark.django_db
def test_the_wip_entries_add_up_to_the_wip_total_on_every_date(firm):
    for back in AS_OF_BACK:
        day = firm["today"] - dt.timedelta(days=back)
        totals = {c: f["total"] for c, f in kpis.wip(as_of=day)["currencies"].items()}
        assert sum_by_currency(kpis.wip_entries(as_of=day), "value") == nonzero(totals), day


@pytest.mark.django_db
def test_wip_by_client_project_practice_and_entity_adds_up_to_the_total(firm):
    day = firm["today"]
    totals = nonzero({c: f["total"] for c, f in kpis.wip(as_of=day)["currencies"].items()})
    for group_by in kpis.GROUPS:
        rows = kpis.wip_breakdown(as_of=day, group_by=group_by)
        assert sum_by_currency(rows, "total") == totals, group_by


@pytest.mark.django_db
def test_wip_parts_and_age_buckets_each_add_up_to_the_total(firm):
    for back in AS_OF_BACK:
        day = firm["today"] - dt.timedelta(days=back)
        for currency, f in kpis.wip(as_of=day)["currencies"].items():
            parts = sum(dec(f[p]) for p in ("time", "expenses", "milestones", "fixed_fee"))
            assert kpis.money(parts) == f["total"], (day, currency)
            assert kpis.money(sum(dec(v) for v in f["aging"].values())) == f["total"]
            assert dec(f["in_billing"]) <= dec(f["total"])


@pytest.mark.django_db
def test_todays_as_of_wip_is_the_wip_asked_without_a_date(firm, client, django_user_model):
    client.force_login(django_user_model.objects.create_user("cfo-cross", password="x"))
    without = client.get("/api/v1/kpis/wip").json()
    with_today = kpis.wip(as_of=firm["today"])
    assert without["currencies"] == with_today["currencies"]
    assert without["as_of"] == firm["today"].isoformat()


@pytest.mark.django_db
def test_todays_time_wip_is_the_approved_time_not_billed_now(firm):
    """The spans (point in time) and the current statuses tell the same story for today."""
    items = (state.TimeEntry.objects.filter(
        status__in=["approved", "posted", "invoiced"], billable=True,
        project__billing_method="time_and_materials", project__is_placeholder=False,
        person__is_placeholder=False, work_date__lte=firm["today"])
        .exclude(invoice__status__in=["issued", "paid"])
        .select_related("person"))
    expected = defaultdict(Decimal)
    for entry in items.select_related("project"):
        rate = entry.bill_rate if entry.bill_rate is not None else (entry.person.bill_rate or 0)
        expected[entry.project.currency] += entry.hours * rate
    wip = kpis.wip(as_of=firm["today"])["currencies"]
    assert {c: kpis.money(v) for c, v in expected.items() if v} == nonzero(
        {c: f["time"] for c, f in wip.items()})


@pytest.mark.django_db
def test_readiness_splits_each_periods_billable_value_without_remainder(firm):
    for back in (0, 31, 62):
        month = (firm["today"] - dt.timedelta(days=back)).replace(day=1)
        last = (month + dt.timedelta(days=32)).replace(day=1) - dt.timedelta(days=1)
        result = kpis.invoice_readiness(period=month.strftime("%Y-%m"), first_day=month,
                                        last_day=last)
        for currency, f in result["currencies"].items():
            parts = (dec(f["invoiced_value"]) + dec(f["in_billing_value"])
                     + dec(f["ready_value"]) + dec(f["not_ready_value"]))
            assert kpis.money(parts) == f["billable_value"], (month, currency)
            reasons = dec(f["not_ready"]["unposted"]) + dec(f["not_ready"]["missing_billing_setup"])
            assert kpis.money(reasons) == f["not_ready_value"]
        rows = kpis.readiness_breakdown(first_day=month, last_day=last, group_by="project")
        assert sum_by_currency(rows, "billable_value") == nonzero(
            {c: f["billable_value"] for c, f in result["currencies"].items()})


@pytest.mark.django_db
def test_no_open_sync_failure_for_an_object_that_arrived_after_it(firm):
    evidence = {"time_entry": (state.TimeEntry, "time_entry_id", ["posted", "invoiced"]),
                "expense": (state.Expense, "expense_id", ["posted", "invoiced"]),
                "invoice": (state.Invoice, "invoice_id", ["issued", "paid"])}
    open_cases = Case.objects.filter(type="sync_failed", status__in=Case.OPEN_STATES)
    assert open_cases.exists()
    for case in open_cases:
        last_failure = state.SyncAttempt.objects.filter(
            flow=case.detail["flow"], object_type=case.detail["object_type"],
            object_id=case.object_id, succeeded=False).latest("occurred_at").occurred_at
        assert not state.SyncAttempt.objects.filter(
            flow=case.detail["flow"], object_type=case.detail["object_type"],
            object_id=case.object_id, succeeded=True, occurred_at__gt=last_failure).exists()
        if case.object_kind in evidence:
            model, key, stages = evidence[case.object_kind]
            record = model.objects.filter(**{key: case.object_id}).first()
            if record:
                assert not state.StageEvent.objects.filter(
                    kind=model.KIND, record_id=record.pk, stage__in=stages,
                    at__gt=last_failure).exists(), case.title


@pytest.mark.django_db
def test_every_case_began_at_or_before_it_was_opened(firm):
    assert Case.objects.count() > 10
    for case in Case.objects.all():
        assert case.began_at <= case.opened_at, (case.type, case.title)


@pytest.mark.django_db
def test_every_blocked_invoice_has_one_open_case_and_the_counts_agree(firm):
    blocked = set(state.Invoice.objects.filter(status="blocked", is_placeholder=False,
                                               client__is_placeholder=False)
                  .values_list("invoice_id", flat=True))
    cases = list(Case.objects.filter(type="invoice_blocked", status__in=Case.OPEN_STATES)
                 .values_list("object_id", flat=True))
    assert sorted(cases) == sorted(blocked) and blocked
    readiness = kpis.invoice_readiness(period="2000-01", first_day=dt.date(2000, 1, 1),
                                       last_day=dt.date(2000, 1, 31))
    assert readiness["blocked_invoices"]["count"] == len(blocked)


@pytest.mark.django_db
def test_one_unknown_reference_per_placeholder_and_no_other_case_about_it(firm):
    placeholders = []
    for kind, model, key in (("project", state.Project, "project_id"),
                             ("person", state.Person, "person_id"),
                             ("client", state.Client, "client_id"),
                             ("invoice", state.Invoice, "invoice_id")):
        placeholders += [f"{kind}:{external}" for external in model.objects.filter(
            is_placeholder=True).values_list(key, flat=True)]
    cases = sorted(Case.objects.filter(type="unknown_reference", status__in=Case.OPEN_STATES)
                   .values_list("fingerprint", flat=True))
    assert cases == sorted(placeholders) and cases
    ghost_projects = [p.split(":", 1)[1] for p in placeholders if p.startswith("project:")]
    assert not Case.objects.exclude(type="unknown_reference").filter(
        project_id__in=ghost_projects).exists()


@pytest.mark.django_db
def test_the_exceptions_kpi_counts_the_open_cases_every_way(firm):
    result = exceptions_kpi(now=firm["now"])
    open_count = Case.objects.filter(status__in=Case.OPEN_STATES).count()
    assert result["open"] == open_count
    for breakdown in ("by_type", "by_queue", "by_severity", "by_owner", "aging"):
        assert sum(result[breakdown].values()) == open_count, breakdown
    assert result["breached"] > 0  # the simulated firm has old problems


@pytest.mark.django_db
def test_labor_cost_and_earned_revenue_are_the_same_whichever_way_margin_groups(firm):
    start = firm["today"] - dt.timedelta(days=120)
    totals = []
    for group_by in ("project", "practice", "client"):
        rows = kpis.margin(start=start, end=firm["today"], group_by=group_by)["rows"]
        totals.append((sum_by_currency(rows, "labor_cost"),
                       sum_by_currency(rows, "earned_revenue")))
    assert totals[0] == totals[1] == totals[2]


@pytest.mark.django_db
def test_receivables_open_ar_is_the_issued_unpaid_invoices(firm):
    today = firm["today"]
    open_invoices = state.Invoice.objects.filter(
        is_placeholder=False, client__is_placeholder=False, status="issued",
        issued_date__lte=today)
    result = kpis.receivables(as_of=today)["currencies"]
    assert nonzero({c: f["open_ar"] for c, f in result.items()}) == sum_by_currency(
        open_invoices.values("amount", "currency"), "amount")


@pytest.mark.django_db
def test_utilization_people_and_practices_add_up(firm):
    result = kpis.utilization(start=firm["today"] - dt.timedelta(days=30), end=firm["today"])
    for key in ("billable_hours", "total_hours", "capacity_hours"):
        assert kpis.money(sum(dec(p[key]) for p in result["by_person"])) == result[key]
        assert kpis.money(sum(dec(p[key]) for p in result["by_practice"])) == result[key]


@pytest.mark.django_db
def test_a_past_figure_is_what_the_history_up_to_that_date_alone_gives(firm):
    """As of T depends on nothing that happened after T: forget every event after T,
    rebuild what derives from the history, and WIP and receivables as of T do not move."""
    for back in (20, 45):
        day = firm["today"] - dt.timedelta(days=back)
        before = (kpis.wip(as_of=day)["currencies"], kpis.receivables(as_of=day)["currencies"])
        later = state.StageEvent.objects.filter(at__gte=end_of(day))
        assert later.exists()  # the check means something: there is history after T
        later.delete()
        derived.refresh({kind: set(model.objects.values_list("pk", flat=True))
                         for kind, (model, _) in derived.ITEMS.items()},
                        set(state.Invoice.objects.values_list("pk", flat=True)))
        after = (kpis.wip(as_of=day)["currencies"], kpis.receivables(as_of=day)["currencies"])
        assert after == before, day


# --- Month end ---------------------------------------------------------------------------------
def months_back(today, count=3):
    from opsview.periods import month_bounds, previous_month

    first = today.replace(day=1)
    for _ in range(count):
        yield first.strftime("%Y-%m"), *month_bounds(first)
        first = previous_month(first)


@pytest.mark.django_db
def test_reconciliation_counts_are_opsviews_own_and_its_gaps_add_up(firm):
    from opsview import selectors
    from reporting import close

    for period, first, last in months_back(firm["today"]):
        result = close.reconciliation(period=period, first_day=first, last_day=last)
        for kind, object_type in (("time", "time_entry"), ("expenses", "expense")):
            figures = result[kind]
            own = selectors.opsview_counts(object_type, first, last)
            assert (figures["approved"]["count"], figures["posted"]["count"]) == own, period
            assert (figures["approved"]["count"] == figures["posted"]["count"]
                    + figures["approved_not_posted"]["count"])
            assert set(figures["billed_not_posted"]["ids"]) <= set(
                figures["approved_not_posted"]["ids"]) or figures["approved_not_posted"][
                "count"] > 100
            for gap in close.GAPS:
                assert figures[gap]["ids"] == sorted(figures[gap]["ids"])
                assert len(figures[gap]["ids"]) == min(100, figures[gap]["count"])
        for report in result["reported"]:
            if report["opsview_source_count"] is not None:
                assert report["agrees"] == (
                    (report["source_count"], report["target_count"])
                    == (report["opsview_source_count"], report["opsview_target_count"]))


@pytest.mark.django_db
def test_the_planted_month_end_gaps_show_on_the_reconciliation(firm):
    from reporting import close

    simulator = FirmSimulator("small", seed=firm["seed"])
    list(simulator.events())
    _, month = simulator.planted["erp_only_expense"]
    first = dt.date.fromisoformat(f"{month}-01")
    last = (first + dt.timedelta(days=32)).replace(day=1) - dt.timedelta(days=1)
    reported = {(r["flow"], r["object_type"]): r for r in close.reconciliation(
        period=month, first_day=first, last_day=last)["reported"]}
    expense = reported[("expenses-to-erp", "expense")]
    assert expense["agrees"] is False
    assert expense["target_count"] == expense["opsview_target_count"] + 1


@pytest.mark.django_db
def test_period_close_splits_the_period_as_readiness_does(firm):
    from reporting import close

    for period, first, last in months_back(firm["today"]):
        closed = close.period_close(period=period, first_day=first, last_day=last,
                                    now=firm["now"])
        readiness = kpis.invoice_readiness(period=period, first_day=first, last_day=last)
        for currency, f in readiness["currencies"].items():
            mine = closed["currencies"][currency]
            assert (mine["billable_value"], mine["billed_value"], mine["ready_value"],
                    mine["not_ready_value"]) == (f["billable_value"], f["invoiced_value"],
                                                 f["ready_value"], f["not_ready_value"])
            if mine["slipped_value"] is not None:
                # What slipped is part of the period and at least what is unbilled now.
                unbilled = dec(f["billable_value"]) - dec(f["invoiced_value"])
                assert unbilled <= dec(mine["slipped_value"]) <= dec(f["billable_value"])
        blocking = closed["blocking_cases"]
        assert blocking["count"] == len(blocking["cases"])
        assert sum_by_currency([c for c in blocking["cases"] if c["money_at_stake"]],
                               "money_at_stake") == nonzero(blocking["currencies"])


@pytest.mark.django_db
def test_the_last_trend_point_is_the_kpi_asked_for_that_date(firm):
    from reporting import trends

    today = firm["today"]
    start = today - dt.timedelta(days=120)
    for metric, figures, key in (("wip", kpis.wip(as_of=today)["currencies"], "total"),
                                 ("open_ar", kpis.receivables(as_of=today)["currencies"],
                                  "open_ar"),
                                 ("dso", kpis.receivables(as_of=today)["currencies"],
                                  "dso_days")):
        for interval in ("month", "week"):
            last = trends.trends(metric=metric, interval=interval, start=start,
                                 end=today)["points"][-1]
            assert last == {"end": today.isoformat(),
                            "currencies": {c: f[key] for c, f in figures.items()}}
    # Cases open at the end of today, from the audit trail, are the cases open now.
    assert trends.open_cases_at(today) == Case.objects.filter(
        status__in=Case.OPEN_STATES).count()
    blocked = state.Invoice.objects.filter(status="blocked", is_placeholder=False,
                                           client__is_placeholder=False).count()
    assert trends.blocked_invoices_at(today) == blocked


@pytest.mark.django_db
def test_every_wip_trend_point_is_the_wip_asked_for_its_date(firm):
    """A trend reads the fixed-fee books once for all its points: each point must still be
    the WIP total asked for that date alone."""
    from reporting import trends

    today = firm["today"]
    for interval in ("month", "week"):
        points = trends.trends(metric="wip", interval=interval,
                               start=today - dt.timedelta(days=150), end=today)["points"]
        assert len(points) > 4
        for point in points:
            figures = kpis.wip(as_of=dt.date.fromisoformat(point["end"]))["currencies"]
            assert point["currencies"] == {c: f["total"] for c, f in figures.items()}


@pytest.mark.django_db
def test_a_reporting_total_is_the_sum_of_the_converted_amounts(firm):
    from reporting import fx

    today = firm["today"]
    for target in ("EUR", "USD", "GBP"):
        amounts = {c: f["total"] for c, f in kpis.wip(as_of=today)["currencies"].items()}
        block = fx.reporting(amounts, target, today)
        assert block["unconverted"] == []  # the treasury publishes every pair
        rates = {(r["base"], r["quote"]): Decimal(r["rate"]) for r in block["rates"]}
        converted = Decimal(0)
        for currency, amount in amounts.items():
            if currency == target:
                converted += dec(amount)
            elif (currency, target) in rates:
                converted += dec(amount) * rates[(currency, target)]
            else:
                converted += dec(amount) / rates[(target, currency)]
        assert block["total"] == kpis.money(converted)
        assert all(r["date"] <= today.isoformat() for r in block["rates"])


@pytest.mark.django_db
def test_wip_from_the_rollup_cells_equals_wip_from_every_item(firm):
    """The cells the worker keeps (read by the WIP figures) against the item-by-item spans
    they sum, per currency, kind, in-billing flag and age bucket, on several dates."""
    for back in AS_OF_BACK + [120]:
        day = firm["today"] - dt.timedelta(days=back)
        from_cells = defaultdict(Decimal)
        for row in kpis._wip_rows(day, {}, "kind", ccy=F("currency")):
            from_cells[(row["ccy"], row["kind"], row["billing"], row["age"])] += row["value"]
        from_items = defaultdict(Decimal)
        for spans in selectors.spans_as_of(day):
            for kind, currency, billing, on_date, value in spans.values_list(
                    "kind", "value_currency", "in_billing", "on_date", "value"):
                key = (currency, kind, billing, kpis.age_bucket((day - on_date).days))
                from_items[key] += value
        assert {k: v for k, v in from_cells.items() if v} == {
            k: v for k, v in from_items.items() if v}, day
        assert from_items or back > 60  # the check means something: there is WIP


def wip_from_cells(day):
    """{currency: value} of the cells holding WIP at the end of `day`, every project."""
    totals = defaultdict(Decimal)
    for cells in selectors.cells_as_of(day):
        for currency, value in cells.values_list("currency", "value"):
            totals[currency] += value
    return dict(totals)


@pytest.mark.django_db
def test_the_whole_firms_wip_from_the_day_changes_equals_the_cells_before_and_after_folding(
        firm):
    """The day changes the workers append (read by the unfiltered WIP trend) against the
    cells, on every day of the firm's history; again once folded to a row per currency and
    day, and again after the migration's backfill derives them from the cells alone."""
    today = firm["today"]
    days = [today - dt.timedelta(days=back) for back in range(-3, 220)]
    expected = {day: wip_from_cells(day) for day in days}
    assert any(expected[day] for day in days)  # the check means something: there is WIP
    assert selectors.wip_by_day(days) == expected

    appended = state.WipDayChange.objects.count()
    removed = derived.compact_day_changes()
    folded = state.WipDayChange.objects.values_list("currency", "day").distinct().count()
    assert removed > 0 and state.WipDayChange.objects.count() == folded == appended - removed
    assert selectors.wip_by_day(days) == expected

    import importlib

    from django.apps import apps
    backfill = importlib.import_module("opsview.migrations.0013_wip_day_changes")
    state.WipDayChange.objects.all().delete()
    backfill.from_cells(apps, None)
    assert selectors.wip_by_day(days) == expected


@pytest.mark.django_db
def test_the_fixed_fee_totals_a_trend_reads_are_the_positions_summed(firm):
    """A trend asks the fixed-fee books for totals only; on every day they must be what the
    project-by-project positions of the WIP figures add up to."""
    from reporting.kpis.wip import FixedFeeBooks

    today = firm["today"]
    days = [today - dt.timedelta(days=back) for back in range(0, 400, 3)]
    books = FixedFeeBooks({}, up_to=today)
    totals = books.totals(days)
    seen = 0
    for day in days:
        summed = defaultdict(Decimal)
        for position in books.positions(day):
            summed[position["currency"]] += position["value"]
        assert totals[day] == dict(summed), day
        seen += bool(summed)
    assert seen > 10  # fixed-fee WIP on many of the days
