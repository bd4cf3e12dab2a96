"""The firm simulator: deterministic, valid except where it injects faults, end to end."""
import datetime as dt
import itertools
import re
from collections import Counter, defaultdict
from io import StringIO

import pytest
from django.core.management import call_command
from pydantic import ValidationError

from ingestion.catalog import CONTRACTS, validate_data
from ingestion.contracts import Envelope
from ingestion.models import InboxEvent
from opsview.models import Client, Invoice, Project, TimeEntry
from reporting import kpis
from simulator import FirmSimulator, Size

END = dt.datetime(2026, 11, 20, 18, tzinfo=dt.UTC)
TINY = Size(clients=6, people=16, months=3)
INJECTED_INVALID = {"TE-BAD-1", "INV-BAD-1"}


def simulate(seed=7):
    return list(FirmSimulator(TINY, seed=seed, end=END).events())


def test_same_seed_gives_identical_events_ids_included():
    assert simulate(7) == simulate(7)
    assert simulate(7) != simulate(8)


def test_every_event_validates_except_the_injected_faults():
    invalid, unknown = set(), set()
    for event in simulate():
        Envelope.model_validate(event)
        if event["type"] not in CONTRACTS:
            unknown.add(event["type"])
            continue
        try:
            validate_data(event["type"], event["data"])
        except ValidationError:
            invalid.add(event["data"].get("time_entry_id") or event["data"].get("invoice_id"))
    assert invalid == INJECTED_INVALID
    assert unknown == {"timesheet.locked"}


def test_no_event_happens_after_the_end_of_the_span():
    assert max(e["time"] for e in simulate()) <= "2026-11-20T18:00:00Z"


def test_the_faults_of_the_field_are_all_there():
    events = simulate()
    types = Counter(e["type"] for e in events)
    ids = Counter(e["id"] for e in events)
    assert any(n > 1 for n in ids.values()), "duplicate deliveries"
    times = [e["time"] for e in events]
    assert times != sorted(times), "out-of-order delivery"
    for kind in ("sync.failed", "sync.succeeded", "reconciliation.reported", "invoice.blocked",
                 "invoice.paid", "milestone.completed", "expense.posted", "revenue.recognized",
                 "time_entry.rejected", "assignment.upserted"):
        assert types[kind], kind
    reasons = {e["data"]["blocked_reason"] for e in events if e["type"] == "invoice.blocked"}
    assert reasons >= {"missing_po", "missing_project_metadata", "rate_mismatch",
                       "tax_configuration", "customer_mismatch", "other"}
    projects = [e["data"] for e in events if e["type"] == "project.upserted"]
    assert any("rate_card_id" not in p and p["billing_method"] != "non_billable"
               for p in projects), "a billable project without a rate card"
    reports = [e["data"] for e in events if e["type"] == "reconciliation.reported"]
    assert any(r["source_count"] != r["target_count"] for r in reports)


def test_simulate_command_builds_a_living_firm(db):
    out = StringIO()
    call_command("simulate", "--size", "small", "--end", "2026-11-20", "--process", stdout=out)
    duplicates = re.search(r"duplicates (\d+)", out.getvalue())
    assert duplicates and int(duplicates.group(1)) > 0
    assert re.search(r"^  open_sync_failures: TE-\d+, TE-\d+, TE-\d+$", out.getvalue(),
                     re.MULTILINE)
    assert InboxEvent.objects.filter(status="pending").count() == 0
    assert InboxEvent.objects.filter(status="dead").count() == 2
    assert InboxEvent.objects.filter(status="unhandled").count() == 1
    assert TimeEntry.objects.count() > 1000
    assert TimeEntry.objects.filter(status="approved").exists()
    assert Invoice.objects.filter(status="paid").exists()
    assert Invoice.objects.filter(status="blocked").exists()
    assert Project.objects.filter(is_placeholder=True).exists()
    assert Client.objects.filter(name="ACME Corporation").exists()
    wip = kpis.wip(as_of=dt.date(2026, 11, 20))
    assert {"USD", "GBP", "EUR"} <= set(wip["currencies"])
    assert all(float(figures["total"]) > 0 for figures in wip["currencies"].values())


def test_http_mode_goes_through_the_real_front_door(live_server, transactional_db, source,
                                                    django_db_serialized_rollback):
    out = StringIO()
    call_command("simulate", "--size", "small", "--end", "2026-11-20", "--url", live_server.url,
                 "--source", source.slug, "--secret", source.secret, "--batch", "1000",
                 stdout=out)
    assert "rejected 0" in out.getvalue()
    assert InboxEvent.objects.filter(source=source).count() > 1000


def test_http_mode_needs_the_secret(db):
    from django.core.management import CommandError

    with pytest.raises(CommandError):
        call_command("simulate", "--url", "http://127.0.0.1:9", stdout=StringIO())


def test_a_large_firm_streams_its_year_lazily():
    simulator = FirmSimulator("large", seed=1, end=END)
    events = simulator.events()
    first = list(itertools.islice(events, 5000))
    assert len(first) == 5000
    assert simulator.estimated_deliveries() > 2_000_000
    assert {e["type"] for e in first} >= {"client.upserted", "person.upserted"}


def test_the_estimate_of_deliveries_is_close():
    simulator = FirmSimulator("small", seed=42, end=END)
    delivered = sum(1 for _ in simulator.events())
    assert 0.9 < simulator.estimated_deliveries() / delivered < 1.1


def test_live_events_post_what_was_approved_and_sync_the_entries_they_name():
    simulator = FirmSimulator(TINY, seed=3, end=END)
    simulator.master_data()
    now = dt.datetime(2026, 11, 20, 12, 30, tzinfo=dt.UTC)
    events = simulator.live_events(now, count=200)
    stages = defaultdict(dict)
    for event in events:
        if event["type"].startswith("time_entry."):
            stages[event["data"]["time_entry_id"]][event["type"]] = event["time"]
    assert len(stages) == 200
    assert all(entry["time_entry.approved"] < entry["time_entry.posted"] == "2026-11-20T12:30:00Z"
               for entry in stages.values())
    syncs = [e for e in events if e["type"].startswith("sync.")]
    assert {e["data"]["object_id"] for e in syncs} == set(stages)
    assert sum(e["type"] == "sync.failed" for e in syncs) < 10


def test_the_span_follows_start_or_months():
    by_months = FirmSimulator(TINY, seed=1, end=END, months=1)
    assert (by_months.end - by_months.start).days == 30
    by_start = FirmSimulator(TINY, seed=1, end=END, start=dt.date(2026, 10, 1))
    assert by_start.start == dt.datetime(2026, 10, 1, tzinfo=dt.UTC)
    assert min(e["time"] for e in by_start.events()
               if e["type"].startswith("time_entry.")) >= "2026-09-"


def test_live_mode_keeps_sending_current_events(db):
    out = StringIO()
    call_command("simulate", "--size", "small", "--months", "1", "--live", "--duration", "1",
                 "--interval", "0.2", "--process", stdout=out)
    assert "live feed" in out.getvalue()
    assert TimeEntry.objects.filter(time_entry_id__startswith="TE-LIVE-").exists()
