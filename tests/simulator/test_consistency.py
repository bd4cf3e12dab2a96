"""The simulated firm keeps its books like a real one (SPEC v2), checked on the events alone:
every invoice an item names arrives, invoices bill what their items are worth, nothing is
billed before it is approved, failed syncs recover, fixed fees stay within their contract,
reconciliation reports count what was sent, and every planted fault is there."""
import datetime as dt
import functools
import re
from collections import Counter, defaultdict
from decimal import Decimal
from pathlib import Path

import pytest

from ingestion.catalog import CONTRACTS, validate_data
from simulator import FirmSimulator

END = dt.datetime(2026, 11, 20, 18, tzinfo=dt.UTC)
SEEDS = [42, 7, 1234]
CENT = Decimal("0.01")
pytestmark = pytest.mark.parametrize("seed", SEEDS)


@functools.cache
def simulated(seed):
    simulator = FirmSimulator("small", seed=seed, end=END)
    return simulator, list(simulator.events())


class Books:
    """The firm as its events tell it: each event once (the first of a (source, id)), valid
    ones only, grouped by the object they are about."""

    def __init__(self, seed):
        self.simulator, deliveries = simulated(seed)
        seen, self.events = set(), []
        for event in deliveries:
            if (event["source"], event["id"]) in seen or event["type"] not in CONTRACTS:
                continue
            seen.add((event["source"], event["id"]))
            try:
                validate_data(event["type"], event["data"])
            except ValueError:
                continue
            self.events.append(event)
        self.by_type = defaultdict(list)
        for event in sorted(self.events, key=lambda e: e["time"]):
            self.by_type[event["type"]].append(event)
        self.projects = {e["data"]["project_id"]: e["data"]
                         for e in self.by_type["project.upserted"]}
        self.people = {e["data"]["person_id"]: e["data"] for e in self.by_type["person.upserted"]}
        self.planted = self.simulator.planted

    def of(self, *types):
        return [e for t in types for e in self.by_type[t]]

    def lifecycles(self, kind):
        """object id → {stage: first event time}, for time_entry, expense, invoice, milestone."""
        key, stages = f"{kind}_id", defaultdict(dict)
        for event in self.events:
            if event["type"].startswith(f"{kind}."):
                stage = event["type"].split(".")[1]
                stages[event["data"][key]].setdefault(stage, event["time"])
        return stages

    def value(self, event):
        data = event["data"]
        if event["type"].startswith("expense."):
            return Decimal(data["amount"])
        rate = data.get("bill_rate") or self.people[data["person_id"]]["bill_rate"]
        return Decimal(data["hours"]) * Decimal(rate)

    def invoice_ids(self):
        return {e["data"]["invoice_id"] for e in self.events if e["type"].startswith("invoice.")}


@functools.cache
def books(seed):
    return Books(seed)


def _documented():
    """The `planted` keys named in the first column of docs/simulator.md's tables, as
    "(`key`)" or "(`key`, …)"."""
    lines = (Path(__file__).parents[2] / "docs" / "simulator.md").read_text().splitlines()
    return {key for line in lines if line.startswith("| ")
            for key in re.findall(r"\(`([a-z_]+)`[,)]", line.split("|")[1])}


DOCUMENTED = _documented()


def _moment(event):
    return dt.datetime.fromisoformat(event["time"])


def test_every_invoice_an_item_names_arrives_except_the_planted_unknown_one(seed):
    firm = books(seed)
    named = {e["data"]["invoice_id"]
             for e in firm.of("time_entry.invoiced", "expense.invoiced", "milestone.invoiced")}
    missing = named - firm.invoice_ids()
    assert missing == {firm.planted["unknown_invoice"][0]}


def test_time_and_materials_invoices_bill_the_value_of_their_items(seed):
    firm = books(seed)
    standard = defaultdict(Decimal)
    for event in firm.of("time_entry.invoiced", "expense.invoiced"):
        standard[event["data"]["invoice_id"]] += firm.value(event)
    amounts = {e["data"]["invoice_id"]: Decimal(e["data"]["amount"])
               for e in firm.of("invoice.drafted")}
    written_down = 0
    for invoice_id, value in standard.items():
        if invoice_id not in amounts:
            continue  # the planted unknown invoice
        # Written down to 90 % at the most; a cent of rounding either way.
        assert value * Decimal("0.90") - CENT <= amounts[invoice_id] <= value, invoice_id
        written_down += amounts[invoice_id] < value
    assert len(standard) > 10 and written_down < len(standard) / 4


def test_each_month_bills_what_was_approved_and_posted_by_its_run(seed):
    firm = books(seed)
    runs = defaultdict(list)  # project → (month, drafted) of its monthly invoices
    for event in firm.of("invoice.drafted"):
        data = event["data"]
        *_, month = data["invoice_id"].split("-")
        if data["invoice_id"] == f"INV-{data['project_id']}-{month}":
            runs[data["project_id"]].append((f"{month[:4]}-{month[4:]}", _moment(event)))
    invoiced = {e["data"].get("time_entry_id") or e["data"]["expense_id"]
                for e in firm.of("time_entry.invoiced", "expense.invoiced")}
    unbilled = []
    for event in firm.of("time_entry.posted", "expense.posted"):
        data = event["data"]
        if not data["billable"] or (event["type"] == "time_entry.posted" and firm.projects[
                data["project_id"]]["billing_method"] != "time_and_materials"):
            continue
        month = (data.get("work_date") or data["incurred_on"])[:7]
        ready = _moment(event) + dt.timedelta(hours=1)  # a run bills what was posted by then
        if any(month <= run_month and ready <= drafted
               for run_month, drafted in runs[data["project_id"]]):
            unbilled.append(data.get("time_entry_id") or data["expense_id"])
    reversed_ = {e["data"]["time_entry_id"] for e in firm.of("time_entry.reversed")}
    assert set(unbilled) - invoiced - reversed_ == set()
    assert len(invoiced) > 500


def test_each_item_is_billed_once_except_after_a_void(seed):
    firm = books(seed)
    voided, reissued = firm.planted["voided_invoice"]
    invoices = defaultdict(list)
    for event in firm.of("time_entry.invoiced", "expense.invoiced"):
        data = event["data"]
        invoices[data.get("time_entry_id") or data["expense_id"]].append(data["invoice_id"])
    again = {item: names for item, names in invoices.items() if len(names) > 1}
    assert again and all(names == [voided, reissued] for names in again.values())


def test_only_time_and_materials_time_is_invoiced_and_non_billable_time_is_not_billable(seed):
    firm = books(seed)
    for event in firm.of("time_entry.invoiced"):
        project = firm.projects[event["data"]["project_id"]]
        assert project["billing_method"] == "time_and_materials"
        assert event["data"]["billable"]
    for event in firm.of("time_entry.approved", "expense.approved"):
        project = firm.projects.get(event["data"]["project_id"])
        if project and project["billing_method"] == "non_billable":
            assert not event["data"]["billable"]
        elif project and event["type"] == "time_entry.approved" and project[
                "billing_method"] in ("fixed_fee", "milestone"):
            assert event["data"]["billable"]  # chargeable, never invoiced itself


def test_nothing_is_invoiced_before_it_is_approved_and_posted(seed):
    firm = books(seed)
    billed_unposted = firm.planted["billed_not_posted"][0]
    for kind in ("time_entry", "expense"):
        for item_id, stages in firm.lifecycles(kind).items():
            if "invoiced" not in stages:
                continue
            assert stages["approved"] < stages["invoiced"], item_id
            if item_id != billed_unposted:
                assert stages["posted"] < stages["invoiced"], item_id
    assert "posted" not in firm.lifecycles("time_entry")[billed_unposted]


def test_invoices_go_drafted_then_issued_then_paid_with_their_dates(seed):
    firm = books(seed)
    for invoice_id, stages in firm.lifecycles("invoice").items():
        assert "drafted" in stages, invoice_id
        order = [stages[s] for s in ("drafted", "blocked", "issued", "paid") if s in stages]
        assert order == sorted(order), invoice_id
    for event in firm.of("invoice.drafted"):
        project = firm.projects[event["data"]["project_id"]]
        assert event["data"]["client_id"] == project["client_id"]
        assert event["data"]["currency"] == project["currency"]
    for event in firm.of("invoice.issued", "invoice.paid"):
        data = event["data"]
        assert data["issued_on"] <= data["due_on"]
        assert event["type"] != "invoice.paid" or data["paid_on"] >= data["issued_on"]


def test_milestones_are_billed_on_their_own_invoice_for_their_amount(seed):
    firm = books(seed)
    drafted = {e["data"]["invoice_id"]: e["data"] for e in firm.of("invoice.drafted")}
    for event in firm.of("milestone.invoiced"):
        invoice = drafted[event["data"]["invoice_id"]]
        assert invoice["amount"] == event["data"]["amount"]
        assert invoice["project_id"] == event["data"]["project_id"]
    completed = firm.lifecycles("milestone")
    assert all(stages["completed"] < stages.get("invoiced", "9") for stages in completed.values())
    late = firm.planted["late_milestone"][0]
    assert "invoiced" not in completed[late]
    completed_on = dt.date.fromisoformat(
        next(e for e in firm.of("milestone.completed")
             if e["data"]["milestone_id"] == late)["data"]["completed_on"])
    assert 35 <= (END.date() - completed_on).days <= 49


def test_fixed_fee_revenue_stays_within_the_contract_and_bills_on_schedule(seed):
    firm = books(seed)
    recognized = {}
    for event in firm.of("revenue.recognized"):  # by time: the latest per period wins
        recognized[(event["data"]["project_id"], event["data"]["period"])] = event["data"]
    per_project = defaultdict(Decimal)
    for (project_id, _), data in recognized.items():
        assert firm.projects[project_id]["billing_method"] == "fixed_fee"
        per_project[project_id] += Decimal(data["amount"])
    fixed_fees = [p for p in firm.projects.values() if p["billing_method"] == "fixed_fee"]
    assert fixed_fees and set(per_project) == {p["project_id"] for p in fixed_fees}
    billed = defaultdict(Decimal)
    for event in firm.of("invoice.drafted"):
        data = event["data"]
        if data["project_id"] in per_project and "-FF" in data["invoice_id"]:
            billed[data["project_id"]] += Decimal(data["amount"])
    for project in fixed_fees:
        contract = Decimal(project["contract_value"])
        assert per_project[project["project_id"]] <= contract
        assert billed[project["project_id"]] <= contract
    assert billed, "instalments"
    corrections = Counter((e["data"]["project_id"], e["data"]["period"])
                          for e in firm.of("revenue.recognized"))
    assert len(corrections) == len(recognized)


def test_every_sync_failure_but_the_planted_open_ones_is_followed_by_its_evidence(seed):
    firm = books(seed)
    evidence = defaultdict(list)  # (object type, id) → times that show it arrived
    for event in firm.of("sync.succeeded"):
        evidence[(event["data"]["object_type"], event["data"]["object_id"])].append(event["time"])
    for kind, stage in (("time_entry", "posted"), ("expense", "posted"), ("invoice", "issued"),
                        ("milestone", "invoiced")):
        for event in firm.of(f"{kind}.{stage}"):
            evidence[(kind, event["data"][f"{kind}_id"])].append(event["time"])
    open_failures = set()
    for event in firm.of("sync.failed"):
        key = (event["data"]["object_type"], event["data"]["object_id"])
        if not any(when > event["time"] for when in evidence[key]):
            open_failures.add(key[1])
    assert open_failures == set(firm.planted["open_sync_failures"])
    assert len(open_failures) == 3
    entries = firm.lifecycles("time_entry")
    for event in firm.of("sync.failed", "sync.succeeded"):
        if event["data"]["object_type"] == "time_entry":
            assert event["data"]["object_id"] in entries


def test_reconciliation_reports_count_what_was_sent_but_the_planted_gap(seed):
    firm = books(seed)
    approved, posted = Counter(), Counter()
    work_months = {e["data"]["time_entry_id"]: e["data"]["work_date"][:7]
                   for e in firm.of("time_entry.approved")}
    for entry_id, stages in firm.lifecycles("time_entry").items():
        if "reversed" in stages or "approved" not in stages:
            continue
        approved[work_months[entry_id]] += 1
        posted[work_months[entry_id]] += "posted" in stages
    issued = Counter(e["data"]["issued_on"][:7] for e in firm.of("invoice.issued"))
    expenses = {kind: Counter(e["data"]["incurred_on"][:7] for e in firm.of(f"expense.{kind}"))
                for kind in ("approved", "posted")}
    gap_flow, gap_period = firm.planted["reconciliation_gap"]
    _, erp_only_period = firm.planted["erp_only_expense"]
    reports = firm.of("reconciliation.reported")
    assert len(reports) >= 4
    for report in reports:
        data = report["data"]
        period = data["period_start"][:7]
        if data["object_type"] == "time_entry":
            expected = (approved[period], posted[period])
            if (data["flow"], period) == (gap_flow, gap_period):
                assert data["target_count"] < expected[1]
                expected = (expected[0], data["target_count"])
        elif data["object_type"] == "expense":  # ERP holds one the expense tool never sent
            expected = (expenses["approved"][period],
                        expenses["posted"][period] + (period == erp_only_period))
        else:
            expected = (issued[period], issued[period])
        assert (data["source_count"], data["target_count"]) == expected, data


def test_every_planted_problem_and_fault_is_in_the_docs_and_shows_in_the_events(seed):
    firm = books(seed)
    deliveries = simulated(seed)[1]
    planted = firm.planted
    assert set(planted) == DOCUMENTED
    types = Counter(e["type"] for e in deliveries)
    ids = Counter(e["id"] for e in deliveries)
    assert types["timesheet.locked"] == 1
    assert sum(n - 1 for n in ids.values()) >= len(deliveries) // 100, "duplicate deliveries"
    times = [e["time"] for e in deliveries]
    assert times != sorted(times), "out-of-order delivery"
    shared = [e for e in deliveries if e["id"] == planted["shared_event_id"][0]]
    assert len({e["source"] for e in shared}) == 2
    repeats = {str(e["data"]) for e in deliveries if e["id"] == planted["conflicting_repeat"][0]}
    assert len(repeats) == 2
    clients = {e["data"]["client_id"]: e["data"] for e in firm.of("client.upserted")}
    first, twin, third = (clients[c] for c in planted["duplicate_clients"])
    assert first["tax_id"] != twin["tax_id"] == third["tax_id"]
    merged, survivor = planted["merged_client"]
    assert clients[merged]["merged_into"] == survivor
    assert "PRJ-NEW-1" in firm.projects and "PRJ-NEW-2" not in firm.projects
    entries = firm.lifecycles("time_entry")
    assert min(entries["TE-ORPHAN-1"].values()) < next(
        e["time"] for e in firm.of("project.upserted") if e["data"]["project_id"] == "PRJ-NEW-1")
    invoices = firm.lifecycles("invoice")
    voided, reissued = planted["voided_invoice"]
    assert "voided" in invoices[voided] and "issued" in invoices[reissued]
    flow_times = [e["time"] for e in firm.of("sync.succeeded", "sync.failed")
                  if e["data"]["flow"] == planted["stale_feed"][0]]
    assert max(flow_times) < (END - dt.timedelta(days=3)).isoformat()
    assert sum(r["data"]["source_count"] != r["data"]["target_count"]
               for r in firm.of("reconciliation.reported")
               if r["data"]["period_start"][:7] == planted["reconciliation_gap"][1]) >= 1


def test_some_problems_are_old(seed):
    firm = books(seed)
    planted, end = firm.planted, END.isoformat()
    blocked = firm.lifecycles("invoice")
    ages = sorted((END - dt.datetime.fromisoformat(blocked[i]["blocked"])).days
                  for i in planted["invoices_still_blocked"])
    assert ages[-1] >= 45 and ages[0] < 45, "blocked for weeks, and recently"
    projects = {e["data"]["time_entry_id"]: e["data"]["project_id"]
                for e in firm.of("time_entry.approved")}
    unposted = [stages["approved"] for entry_id, stages in firm.lifecycles("time_entry").items()
                if "approved" in stages and "posted" not in stages
                and projects[entry_id] == planted["unposted_project"][0]]
    assert (END - dt.datetime.fromisoformat(min(unposted))).days >= 55
    failures = {e["data"]["object_id"]: e["time"] for e in reversed(firm.of("sync.failed"))}
    oldest = min(failures[entry_id] for entry_id in planted["open_sync_failures"])
    assert 8 <= (END - dt.datetime.fromisoformat(oldest)).days <= 12
    no_rate_card, no_po = (firm.projects[p] for p in planted["missing_billing_setup"])
    assert "rate_card_id" not in no_rate_card and no_po["po_required"] and "po_number" not in no_po
    assert all(e["time"] <= end.replace("+00:00", "Z") for e in firm.events)
