"""The event catalog: every event type OpsView understands, declared once.

A declaration names the type string, its pydantic contract, the state it merges into (a
`Target`: model, key, merge rule and applier), its lifecycle stage where it has one (the
stage carries its rank and the field its event time dates, `opsview.lifecycle`), and the
fields its event time dates. From the declarations come the contract table (CONTRACTS), the
order and dispatch of appliers (`pipeline.apply_events`), each lifecycle event's rank and
timestamp field, and the JSON Schemas served at /ingest/schemas/.

Adding an event type is one declaration here, plus its contract in `contracts.py` (recipe in
docs/events.md).
"""
import builtins
import functools
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from django.db import models

from opsview import models as state
from opsview.lifecycle import (
    ExpenseStage,
    InvoiceStage,
    LifecycleStage,
    MilestoneStage,
    TimeEntryStage,
)

from . import merge
from .contracts import (
    AssignmentUpserted,
    ClientUpserted,
    Contract,
    ExpenseEvent,
    ExpenseInvoiced,
    FxRatePublished,
    InvoiceBlocked,
    InvoiceEvent,
    MilestoneCompleted,
    MilestoneInvoiced,
    PersonUpserted,
    ProjectUpserted,
    ReconciliationReported,
    RevenueRecognized,
    SyncFailed,
    SyncSucceeded,
    TimeEntryEvent,
    TimeEntryInvoiced,
)
from .merge import Events
from .models import InboxEvent
from .outcome import BatchOutcome


class Merge(StrEnum):
    """How the events of a target combine into its state (docs/ingestion.md)."""

    MASTER = "master"  # the whole record of the greatest (event time, event id)
    LIFECYCLE = "lifecycle"  # status by (rank, time, id); a timestamp per stage; field versions
    LATEST = "latest"  # a keyed figure: the values of the greatest (event time, event id)
    READINGS = "readings"  # every reading kept, and the latest per key as the report
    LOG = "log"  # every event kept once, as it came


@dataclass(frozen=True)
class Target:
    """The state a family of event types merges into. Targets are applied in the order of
    TARGETS, so references resolve to masters written in the same batch."""

    name: str
    model: type[models.Model]
    key: tuple[str, ...]
    merge: Merge
    # apply(events, outcome) with events [(inbox row, contract)] of this target's types.
    apply: Callable[[Events, BatchOutcome], Any]


@dataclass(frozen=True)
class EventType:
    """One event type: what it is called, what its data must hold, where it goes."""

    type: str
    contract: builtins.type[Contract]  # `type` is the field above in this class
    target: Target
    stage: LifecycleStage | None = None
    # The target's fields this event's time dates (beyond the version every event keeps).
    dated_by: tuple[str, ...] = ()

    @property
    def rank(self) -> int | None:
        """The lifecycle rank of its stage, or None outside a lifecycle."""
        return self.stage.rank if self.stage else None


def _stage_of(row: InboxEvent) -> LifecycleStage:
    stage = EVENT_TYPES[row.type].stage
    if stage is None:
        raise KeyError(f"{row.type} has no lifecycle stage")
    return stage


def _lifecycle(name: str, model: type[models.Model], key: str,
               apply: Callable[..., Any]) -> Target:
    return Target(name, model, (key,), Merge.LIFECYCLE,
                  functools.partial(apply, stage_of=_stage_of))


CLIENT = Target("client", state.Client, ("client_id",), Merge.MASTER, merge.apply_clients)
PROJECT = Target("project", state.Project, ("project_id",), Merge.MASTER, merge.apply_projects)
PERSON = Target("person", state.Person, ("person_id",), Merge.MASTER, merge.apply_people)
ASSIGNMENT = Target("assignment", state.Assignment, ("assignment_id",), Merge.MASTER,
                    merge.apply_assignments)
TIME_ENTRY = _lifecycle("time_entry", state.TimeEntry, "time_entry_id", merge.apply_time_entries)
EXPENSE = _lifecycle("expense", state.Expense, "expense_id", merge.apply_expenses)
MILESTONE = _lifecycle("milestone", state.Milestone, "milestone_id", merge.apply_milestones)
INVOICE = _lifecycle("invoice", state.Invoice, "invoice_id", merge.apply_invoices)
REVENUE = Target("revenue", state.RevenueRecognition, ("project", "period"), Merge.LATEST,
                 merge.apply_revenue)
FX_RATE = Target("fx_rate", state.FxRate, ("base", "quote", "date"), Merge.LATEST,
                 merge.apply_fx_rates)
SYNC = Target("sync", state.SyncAttempt, ("inbox_event",), Merge.LOG, merge.apply_sync)
RECONCILIATION = Target("reconciliation", state.ReconciliationReport,
                        ("flow", "object_type", "period_start", "period_end"), Merge.READINGS,
                        merge.apply_reconciliations)

# The order in which a batch's events are applied: masters before what names them.
TARGETS = (CLIENT, PROJECT, PERSON, ASSIGNMENT, TIME_ENTRY, EXPENSE, MILESTONE, INVOICE,
           REVENUE, FX_RATE, SYNC, RECONCILIATION)


def master(type_: str, contract: type[Contract], target: Target) -> EventType:
    """A master-data upsert: it dates the record's first event."""
    return EventType(type_, contract, target, dated_by=("first_event_at",))


def lifecycle(target: Target, stage: LifecycleStage, contract: type[Contract]) -> EventType:
    """A lifecycle event `<target>.<stage>`: it dates its stage's own field."""
    return EventType(f"{target.name}.{stage.value}", contract, target, stage=stage,
                     dated_by=(stage.stamp,))


def figure(type_: str, contract: type[Contract], target: Target,
           dated_by: tuple[str, ...] = ()) -> EventType:
    """A keyed figure, a reading or a log entry."""
    return EventType(type_, contract, target, dated_by=dated_by)


CATALOG: tuple[EventType, ...] = (
    master("client.upserted", ClientUpserted, CLIENT),
    master("project.upserted", ProjectUpserted, PROJECT),
    master("person.upserted", PersonUpserted, PERSON),
    master("assignment.upserted", AssignmentUpserted, ASSIGNMENT),
    lifecycle(TIME_ENTRY, TimeEntryStage.SUBMITTED, TimeEntryEvent),
    lifecycle(TIME_ENTRY, TimeEntryStage.APPROVED, TimeEntryEvent),
    lifecycle(TIME_ENTRY, TimeEntryStage.REJECTED, TimeEntryEvent),
    lifecycle(TIME_ENTRY, TimeEntryStage.POSTED, TimeEntryEvent),
    lifecycle(TIME_ENTRY, TimeEntryStage.REVERSED, TimeEntryEvent),
    lifecycle(TIME_ENTRY, TimeEntryStage.INVOICED, TimeEntryInvoiced),
    lifecycle(EXPENSE, ExpenseStage.APPROVED, ExpenseEvent),
    lifecycle(EXPENSE, ExpenseStage.POSTED, ExpenseEvent),
    lifecycle(EXPENSE, ExpenseStage.INVOICED, ExpenseInvoiced),
    lifecycle(MILESTONE, MilestoneStage.COMPLETED, MilestoneCompleted),
    lifecycle(MILESTONE, MilestoneStage.INVOICED, MilestoneInvoiced),
    lifecycle(INVOICE, InvoiceStage.DRAFTED, InvoiceEvent),
    lifecycle(INVOICE, InvoiceStage.ISSUED, InvoiceEvent),
    lifecycle(INVOICE, InvoiceStage.PAID, InvoiceEvent),
    lifecycle(INVOICE, InvoiceStage.VOIDED, InvoiceEvent),
    lifecycle(INVOICE, InvoiceStage.BLOCKED, InvoiceBlocked),
    figure("revenue.recognized", RevenueRecognized, REVENUE),
    figure("fx_rate.published", FxRatePublished, FX_RATE),
    figure("sync.succeeded", SyncSucceeded, SYNC, dated_by=("occurred_at",)),
    figure("sync.failed", SyncFailed, SYNC, dated_by=("occurred_at",)),
    figure("reconciliation.reported", ReconciliationReported, RECONCILIATION),
)

EVENT_TYPES: dict[str, EventType] = {declared.type: declared for declared in CATALOG}
CONTRACTS: dict[str, type[Contract]] = {t: declared.contract
                                        for t, declared in EVENT_TYPES.items()}


def validate_data(event_type: str, data: Any) -> Contract:
    """The contract instance for an event's data; raises ValidationError or KeyError."""
    return CONTRACTS[event_type].model_validate(data if data is not None else {})


def json_schema(event_type: str) -> dict[str, Any]:
    """The JSON Schema of an event type's data, as served at /ingest/schemas/<type>.json."""
    schema = CONTRACTS[event_type].model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = f"/ingest/schemas/{event_type}.json"
    schema["title"] = event_type
    return schema
