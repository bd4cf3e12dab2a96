"""The lifecycles of transactions: each kind's stages, their ranks and the column each dates.

A transaction's status is the stage of greatest (rank, event time, event id) among its
events; stages that share a rank (approved and rejected) are decided by time. Each stage
dates its own column, `<stage>_at`. These enumerations are the one place a stage and its
rank are written down: the models' RANKS, the history's ranks and the event catalog
(`ingestion.catalog`) are read from them. Values are the strings stored in the database.
"""
from enum import StrEnum

from django.db import models


class Kind(models.TextChoices):
    """The kinds of transaction that have a lifecycle (`StageEvent.kind`)."""

    TIME_ENTRY = "time_entry"
    EXPENSE = "expense"
    MILESTONE = "milestone"
    INVOICE = "invoice"


class LifecycleStage(StrEnum):
    """A stage with its rank; subclasses list a kind's stages as NAME = "value", rank."""

    rank: int

    def __new__(cls, value: str, rank: int) -> "LifecycleStage":
        member = str.__new__(cls, value)
        member._value_ = value
        member.rank = rank
        return member

    @property
    def stamp(self) -> str:
        """The model field that keeps the latest event time of this stage."""
        return f"{self.value}_at"

    @property
    def bills(self) -> bool:
        """Whether an event of this stage names the invoice that bills the item."""
        return self.value == "invoiced"

    @classmethod
    def ranks(cls) -> dict[str, int]:
        """{stage: rank}, in declaration order."""
        return {member.value: member.rank for member in cls}


class TimeEntryStage(LifecycleStage):
    SUBMITTED = "submitted", 1
    APPROVED = "approved", 2
    REJECTED = "rejected", 2
    POSTED = "posted", 3
    INVOICED = "invoiced", 4
    REVERSED = "reversed", 5


class ExpenseStage(LifecycleStage):
    APPROVED = "approved", 1
    POSTED = "posted", 2
    INVOICED = "invoiced", 3


class MilestoneStage(LifecycleStage):
    COMPLETED = "completed", 1
    INVOICED = "invoiced", 2


class InvoiceStage(LifecycleStage):
    # A blocked invoice that is then issued is unblocked; voided ends every path.
    DRAFTED = "drafted", 1
    BLOCKED = "blocked", 2
    ISSUED = "issued", 3
    PAID = "paid", 4
    VOIDED = "voided", 5


class InvoiceState(StrEnum):
    """What an invoice is to the items on it at an instant (`opsview.timeline`)."""

    BILLED = "billed"
    IN_BILLING = "in_billing"
    VOIDED = "voided"
    UNANNOUNCED = "unannounced"


# The stages an item counts in (approved or later); rejected and reversed items count nowhere.
# Keyed by Kind, whose members are the kind strings callers look up.
COUNTED_STAGES: dict[str, frozenset[LifecycleStage]] = {
    Kind.TIME_ENTRY: frozenset({TimeEntryStage.APPROVED, TimeEntryStage.POSTED,
                                TimeEntryStage.INVOICED}),
    Kind.EXPENSE: frozenset({ExpenseStage.APPROVED, ExpenseStage.POSTED,
                             ExpenseStage.INVOICED}),
    Kind.MILESTONE: frozenset({MilestoneStage.COMPLETED, MilestoneStage.INVOICED}),
}
# The stage every item kind has: its event names the invoice that bills the item.
INVOICED = TimeEntryStage.INVOICED.value
