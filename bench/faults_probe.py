"""What bench/faults.py compares after each run, read from one database (DATABASE_URL).

    python bench/faults_probe.py --evaluate-at 2026-11-20T12:00:00Z

Runs the time-based rules and the SLA sweep once at the pinned moment (what beat would do,
with a clock that does not move between runs), then prints one JSON object: a digest of every
business table (rows by their external keys, surrogate keys and processing times left out),
the inbox by status and every open exception case by its fingerprint.
"""
from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from django.db.models import Field, Model

    from exceptions.models import Case

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

# Columns that differ between runs of the same events: surrogate keys, processing times and
# a client's receipt ("first seen" is by receipt, SPEC section 7).
VOLATILE = {"id", "updated_at", "first_seen_at", "placeholder_since", "received_at",
            "processed_at", "first_received_at"}


def natural(row: Model, field: Field) -> Any:
    """A foreign key as the related row's external id (client_id, project_id, ...)."""
    related = getattr(row, field.name)
    if related is None:
        return None
    for key in (f"{related._meta.model_name}_id", "event_id"):  # e.g. client_id; an inbox row
        if getattr(related, key, None):
            return getattr(related, key)
    return str(related)


def table_digest(model: type[Model]) -> dict[str, Any]:
    rows = []
    for row in model.objects.all().iterator(chunk_size=5000):
        values = {}
        for field in model._meta.concrete_fields:
            if field.is_relation:
                values[field.name] = natural(row, field)
            elif field.attname not in VOLATILE:
                values[field.attname] = getattr(row, field.attname)
        rows.append(json.dumps(values, sort_keys=True, default=str))
    rows.sort()
    return {"rows": len(rows), "sha256": hashlib.sha256("\n".join(rows).encode()).hexdigest()}


def case_key(case: Case) -> str:
    """A case's fingerprint, except a duplicate_client group's: it is named by its first
    client by receipt, which delivery order decides; the group's clients are the case."""
    if case.type == "duplicate_client":
        return "clients:" + ",".join(sorted(case.detail.get("client_ids", [])))
    return case.fingerprint


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--evaluate-at", required=True)
    args = parser.parse_args()

    import django

    django.setup()
    from django.db.models import Count

    from exceptions import rules
    from exceptions.models import Case
    from ingestion.models import InboxEvent, ProcessedBatch
    from opsview import models as state

    now = dt.datetime.fromisoformat(args.evaluate_at.replace("Z", "+00:00"))
    rules.evaluate_time_rules(now=now)
    tables = {model.__name__: table_digest(model) for model in (
        state.Client, state.Project, state.Person, state.Assignment, state.TimeEntry,
        state.Expense, state.Milestone, state.Invoice, state.RevenueRecognition,
        state.SyncAttempt, state.ReconciliationReport)}
    inbox = dict(InboxEvent.objects.values_list("status").annotate(n=Count("id")))
    open_cases = sorted([c.type, case_key(c), c.status, c.severity, str(c.money_at_stake)]
                        for c in Case.objects.filter(status__in=Case.OPEN_STATES))
    print(json.dumps({"tables": tables, "inbox": inbox, "open_cases": open_cases,
                      "unseen_batches": ProcessedBatch.objects.count(),
                      "cases": Case.objects.count()}))


if __name__ == "__main__":
    main()
