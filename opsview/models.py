"""The business state that integration events imply.

Master data (clients, projects, people, assignments) is last-writer-wins by event time,
ties broken by event id. Transactions (time entries, expenses, milestones, invoices) follow
a lifecycle: the status is the highest rank seen, each stage keeps its own timestamp from
the event time, and each data field keeps the value of the latest event that carried it.
A record that names an entity not yet known points at a placeholder row until the master
record arrives; KPIs count only records whose named entities are all known.

Every lifecycle event is also kept as a `StageEvent`, so any past status can be rebuilt
("as of" is point in time, SPEC section 2), and the stretches of time during which an item
was unbilled WIP are kept as `WipSpan`s, derived from those events and the states of the
invoices the item was on.
"""
import datetime as dt
import hashlib
import secrets
from typing import Any, NoReturn

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import models
from django.db.models import Q
from django.utils import timezone

from .lifecycle import ExpenseStage, InvoiceStage, Kind, MilestoneStage, TimeEntryStage


class MasterRecord(models.Model):
    """Last-writer-wins state: the version is the (time, event id) of the event that wrote it."""

    is_placeholder = models.BooleanField(default=False)
    # A placeholder's: the earliest event time of the events that name it.
    placeholder_since = models.DateTimeField(null=True, blank=True)
    version_time = models.DateTimeField(null=True, blank=True)
    version_event_id = models.CharField(max_length=255, blank=True)
    # The earliest event time of the record's own upserts.
    first_event_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        abstract = True


class Client(MasterRecord):
    client_id = models.CharField(max_length=255, unique=True)
    name = models.CharField(max_length=255, blank=True)
    tax_id = models.CharField(max_length=64, blank=True)
    currency = models.CharField(max_length=3, blank=True)
    # The client that replaces this one after a merge in the source system.
    merged_into = models.CharField(max_length=255, blank=True)
    # When OpsView first received an upsert of this client ("first seen", by receipt).
    first_received_at = models.DateTimeField(null=True, blank=True)
    # Set by a person in triage when two similar clients are genuinely distinct.
    marked_distinct = models.BooleanField(default=False)

    class Meta:
        indexes = [models.Index(fields=["is_placeholder"], name="client_placeholder_idx")]

    def __str__(self):
        return self.name or self.client_id


class Project(MasterRecord):
    class BillingMethod(models.TextChoices):
        TIME_AND_MATERIALS = "time_and_materials"
        FIXED_FEE = "fixed_fee"
        MILESTONE = "milestone"
        NON_BILLABLE = "non_billable"

    class Status(models.TextChoices):
        ACTIVE = "active"
        ON_HOLD = "on_hold"
        CLOSED = "closed"

    project_id = models.CharField(max_length=255, unique=True)
    client = models.ForeignKey(Client, null=True, blank=True, on_delete=models.PROTECT,
                               related_name="projects")
    name = models.CharField(max_length=255, blank=True)
    practice = models.CharField(max_length=255, blank=True, db_index=True)
    legal_entity = models.CharField(max_length=255, blank=True, db_index=True)
    currency = models.CharField(max_length=3, blank=True)
    billing_method = models.CharField(max_length=32, choices=BillingMethod.choices, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, blank=True)
    rate_card_id = models.CharField(max_length=255, blank=True)
    po_required = models.BooleanField(default=False)
    po_number = models.CharField(max_length=255, blank=True)
    contract_value = models.DecimalField(max_digits=18, decimal_places=2, null=True, blank=True)
    budget_hours = models.DecimalField(max_digits=12, decimal_places=2, null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["is_placeholder"], name="project_placeholder_idx")]

    def __str__(self):
        return self.name or self.project_id

    @property
    def billing_setup_complete(self) -> bool:
        """A billing method that bills, a rate card where time is billed by the hour, a PO
        where the client requires one (SPEC section 4, invoice readiness)."""
        return (
            self.billing_method not in ("", self.BillingMethod.NON_BILLABLE)
            and (self.billing_method != self.BillingMethod.TIME_AND_MATERIALS
                 or bool(self.rate_card_id))
            and (not self.po_required or bool(self.po_number))
        )


def billing_setup_complete_q(prefix: str = "") -> Q:
    """The Q form of Project.billing_setup_complete, for set-based queries."""
    return (
        ~Q(**{f"{prefix}billing_method__in": ["", Project.BillingMethod.NON_BILLABLE]})
        & (~Q(**{f"{prefix}billing_method": Project.BillingMethod.TIME_AND_MATERIALS})
           | ~Q(**{f"{prefix}rate_card_id": ""}))
        & (Q(**{f"{prefix}po_required": False}) | ~Q(**{f"{prefix}po_number": ""}))
    )


class Person(MasterRecord):
    person_id = models.CharField(max_length=255, unique=True)
    name = models.CharField(max_length=255, blank=True)
    practice = models.CharField(max_length=255, blank=True, db_index=True)
    cost_rate = models.DecimalField(max_digits=12, decimal_places=2, null=True, blank=True)
    bill_rate = models.DecimalField(max_digits=12, decimal_places=2, null=True, blank=True)
    capacity_hours_per_week = models.DecimalField(max_digits=6, decimal_places=2, default=40)
    active = models.BooleanField(default=True)

    class Meta:
        verbose_name_plural = "people"
        indexes = [models.Index(fields=["is_placeholder"], name="person_placeholder_idx")]

    def __str__(self):
        return self.name or self.person_id


class Assignment(MasterRecord):
    assignment_id = models.CharField(max_length=255, unique=True)
    project = models.ForeignKey(Project, null=True, on_delete=models.PROTECT,
                                related_name="assignments")
    person = models.ForeignKey(Person, null=True, on_delete=models.PROTECT,
                               related_name="assignments")
    start_date = models.DateField(null=True, blank=True)
    end_date = models.DateField(null=True, blank=True)
    hours_per_week = models.DecimalField(max_digits=6, decimal_places=2, null=True, blank=True)
    bill_rate = models.DecimalField(max_digits=12, decimal_places=2, null=True, blank=True)

    def __str__(self):
        return self.assignment_id


class LifecycleRecord(models.Model):
    """A transaction: status by lifecycle rank, data fields by per-field last writer."""

    # Indexed together with a date on each model; a lone status index would only slow writes.
    status = models.CharField(max_length=16)
    status_rank = models.PositiveSmallIntegerField(default=0)
    status_time = models.DateTimeField(null=True, blank=True)
    status_event_id = models.CharField(max_length=255, blank=True)
    # {"field": [event time in epoch microseconds, event id]} for each data field written.
    field_versions = models.JSONField(default=dict, blank=True)
    first_seen_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        abstract = True


class TimeEntry(LifecycleRecord):
    KIND = Kind.TIME_ENTRY
    Stage = TimeEntryStage
    RANKS = TimeEntryStage.ranks()

    time_entry_id = models.CharField(max_length=255, unique=True)
    # Covered by the (project, status) and (person, work_date) indexes below.
    project = models.ForeignKey(Project, on_delete=models.PROTECT, related_name="time_entries",
                                db_index=False)
    person = models.ForeignKey(Person, on_delete=models.PROTECT, related_name="time_entries",
                               db_index=False)
    work_date = models.DateField(null=True, blank=True)
    hours = models.DecimalField(max_digits=8, decimal_places=2, default=0)
    billable = models.BooleanField(default=False)
    bill_rate = models.DecimalField(max_digits=12, decimal_places=2, null=True, blank=True)
    cost_rate = models.DecimalField(max_digits=12, decimal_places=2, null=True, blank=True)
    erp_document_id = models.CharField(max_length=255, blank=True)
    # The invoice the latest `invoiced` event names (a placeholder until it arrives).
    # Indexed by time_invoice_cover_idx below.
    invoice = models.ForeignKey("Invoice", null=True, blank=True, on_delete=models.PROTECT,
                                related_name="time_entries", db_index=False)
    submitted_at = models.DateTimeField(null=True, blank=True)
    approved_at = models.DateTimeField(null=True, blank=True)
    rejected_at = models.DateTimeField(null=True, blank=True)
    posted_at = models.DateTimeField(null=True, blank=True)
    invoiced_at = models.DateTimeField(null=True, blank=True)
    reversed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name_plural = "time entries"
        indexes = [
            models.Index(fields=["status", "work_date"], name="time_status_workdate_idx"),
            models.Index(fields=["project", "status"], name="time_project_status_idx"),
            models.Index(fields=["person", "work_date"], name="time_person_workdate_idx"),
            # Posting latency, reconciliation and touchless share read entries posted in a
            # window from the index alone (PostgreSQL; SQLite ignores the included columns).
            models.Index(fields=["posted_at"], name="time_posted_cover_idx",
                         include=["approved_at", "status", "project", "person"]),
            # The approved, never posted backlog (posting latency, approved_time_unposted),
            # its count, hours and value read from the index alone.
            models.Index(fields=["approved_at"], name="time_unposted_cover_idx",
                         include=["id", "project", "person", "hours", "bill_rate", "billable"],
                         condition=Q(posted_at__isnull=True,
                                     status__in=[TimeEntryStage.APPROVED,
                                                 TimeEntryStage.INVOICED])),
            # What invoices bill (billing's realization and lag, readiness in billing): the
            # entries of a set of invoices with their value columns, from the index alone.
            models.Index(fields=["invoice"], name="time_invoice_cover_idx",
                         include=["status", "hours", "bill_rate", "billable", "project",
                                  "person", "work_date"],
                         condition=Q(invoice__isnull=False)),
        ]

    def __str__(self):
        return self.time_entry_id


class Expense(LifecycleRecord):
    KIND = Kind.EXPENSE
    Stage = ExpenseStage
    RANKS = ExpenseStage.ranks()

    expense_id = models.CharField(max_length=255, unique=True)
    project = models.ForeignKey(Project, on_delete=models.PROTECT, related_name="expenses")
    person = models.ForeignKey(Person, on_delete=models.PROTECT, related_name="expenses")
    incurred_on = models.DateField(null=True, blank=True)
    amount = models.DecimalField(max_digits=14, decimal_places=2, default=0)
    currency = models.CharField(max_length=3, blank=True)
    billable = models.BooleanField(default=False)
    invoice = models.ForeignKey("Invoice", null=True, blank=True, on_delete=models.PROTECT,
                                related_name="expenses")
    approved_at = models.DateTimeField(null=True, blank=True)
    posted_at = models.DateTimeField(null=True, blank=True)
    invoiced_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["status", "incurred_on"], name="expense_status_date_idx"),
                   models.Index(fields=["posted_at"], name="expense_posted_cover_idx",
                                include=["approved_at", "status", "project", "person",
                                         "billable"]),
                   models.Index(fields=["approved_at"], name="expense_unposted_idx",
                                condition=Q(posted_at__isnull=True,
                                            status__in=[ExpenseStage.APPROVED,
                                                        ExpenseStage.INVOICED]))]

    def __str__(self):
        return self.expense_id


class Milestone(LifecycleRecord):
    KIND = Kind.MILESTONE
    Stage = MilestoneStage
    RANKS = MilestoneStage.ranks()

    milestone_id = models.CharField(max_length=255, unique=True)
    project = models.ForeignKey(Project, on_delete=models.PROTECT, related_name="milestones")
    name = models.CharField(max_length=255, blank=True)
    amount = models.DecimalField(max_digits=14, decimal_places=2, default=0)
    completed_on = models.DateField(null=True, blank=True)
    invoice = models.ForeignKey("Invoice", null=True, blank=True, on_delete=models.PROTECT,
                                related_name="milestones")
    completed_at = models.DateTimeField(null=True, blank=True)
    invoiced_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["status", "completed_on"], name="milestone_status_date_idx"),
        ]

    def __str__(self):
        return self.name or self.milestone_id


class Invoice(LifecycleRecord):
    """An invoice. One that items name before any `invoice.*` event announced it is a
    placeholder: the items on it are unbilled until it arrives."""

    KIND = Kind.INVOICE
    Stage = InvoiceStage
    RANKS = InvoiceStage.ranks()

    class BlockedReason(models.TextChoices):
        MISSING_PO = "missing_po"
        MISSING_PROJECT_METADATA = "missing_project_metadata"
        RATE_MISMATCH = "rate_mismatch"
        TAX_CONFIGURATION = "tax_configuration"
        CUSTOMER_MISMATCH = "customer_mismatch"
        OTHER = "other"

    invoice_id = models.CharField(max_length=255, unique=True)
    is_placeholder = models.BooleanField(default=False)
    placeholder_since = models.DateTimeField(null=True, blank=True)
    client = models.ForeignKey(Client, null=True, blank=True, on_delete=models.PROTECT,
                               related_name="invoices")
    project = models.ForeignKey(Project, null=True, blank=True, on_delete=models.PROTECT,
                                related_name="invoices")
    amount = models.DecimalField(max_digits=14, decimal_places=2, default=0)
    currency = models.CharField(max_length=3, blank=True)
    issued_on = models.DateField(null=True, blank=True)
    due_on = models.DateField(null=True, blank=True)
    paid_on = models.DateField(null=True, blank=True)
    blocked_reason = models.CharField(max_length=32, choices=BlockedReason.choices, blank=True)
    detail = models.TextField(blank=True)
    drafted_at = models.DateTimeField(null=True, blank=True)
    blocked_at = models.DateTimeField(null=True, blank=True)
    issued_at = models.DateTimeField(null=True, blank=True)
    paid_at = models.DateTimeField(null=True, blank=True)
    voided_at = models.DateTimeField(null=True, blank=True)
    # Derived from the invoice's events (SPEC section 2, "What an invoice bills"): when it was
    # first announced, and the dates it counts as issued, paid and voided on.
    announced_at = models.DateTimeField(null=True, blank=True)
    first_drafted_at = models.DateTimeField(null=True, blank=True)
    issued_date = models.DateField(null=True, blank=True)
    paid_date = models.DateField(null=True, blank=True)
    voided_date = models.DateField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["status", "issued_on"], name="invoice_status_issued_idx"),
                   models.Index(fields=["issued_date"], name="invoice_issued_date_idx")]

    def __str__(self):
        return self.invoice_id


class StageEvent(models.Model):
    """One lifecycle event of a transaction (time entry, expense, milestone or invoice): the
    history from which its status at any past moment is rebuilt."""

    Kind = Kind

    kind = models.CharField(max_length=16, choices=Kind.choices)
    record_id = models.BigIntegerField()  # the pk in the kind's table
    stage = models.CharField(max_length=16)
    rank = models.PositiveSmallIntegerField()
    at = models.DateTimeField()  # the event time
    event_id = models.CharField(max_length=255)
    # The inbox row it came from: an event is recorded once, whatever retries happen.
    inbox_event_id = models.BigIntegerField(unique=True)
    # An item's `invoiced` event: the invoice it names.
    invoice_ref = models.CharField(max_length=255, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["kind", "record_id"], name="stage_record_idx"),
            models.Index(fields=["invoice_ref"], name="stage_invoice_ref_idx",
                         condition=~Q(invoice_ref="")),
        ]

    def __str__(self):
        return f"{self.kind} {self.record_id} {self.stage} {self.at:%Y-%m-%d %H:%M}"


class WipSpan(models.Model):
    """A stretch of time [start, end) during which an item was unbilled WIP: approved (a
    milestone: completed) and on or after its date, and not on an invoice that was issued
    and not voided at that moment. `in_billing`: on a drafted or blocked invoice meanwhile.

    The item's figures are copied here so that WIP as of any date is read from this table
    alone; its value is computed from them and today's master data (billing method, rates).
    """

    kind = models.CharField(max_length=16, choices=StageEvent.Kind.choices)
    record_id = models.BigIntegerField()
    start = models.DateTimeField()
    end = models.DateTimeField(null=True, blank=True)  # open: still WIP now
    in_billing = models.BooleanField(default=False)
    project = models.ForeignKey(Project, on_delete=models.DO_NOTHING, db_constraint=False,
                                related_name="+")
    person = models.ForeignKey(Person, null=True, blank=True, on_delete=models.DO_NOTHING,
                               db_constraint=False, related_name="+")
    on_date = models.DateField()  # work_date, incurred_on or completed_on: ages count from it
    hours = models.DecimalField(max_digits=8, decimal_places=2, default=0)
    bill_rate = models.DecimalField(max_digits=12, decimal_places=2, null=True, blank=True)
    amount = models.DecimalField(max_digits=14, decimal_places=2, default=0)
    currency = models.CharField(max_length=3, blank=True)  # expenses carry their own
    billable = models.BooleanField(default=True)
    # Its billable value and the currency it counts in, under today's master data (a change
    # of billing method, currency or bill rate derives the item's spans again).
    value = models.DecimalField(max_digits=20, decimal_places=4, default=0)
    value_currency = models.CharField(max_length=3, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["kind", "record_id"], name="wipspan_record_idx"),
            # Today's WIP is the open spans: read from this index alone on PostgreSQL (it
            # carries every column the KPI reads). A past date's WIP uses a GiST index on
            # the range (migration 0006); spans closed after today come by their end.
            models.Index(fields=["start"], name="wipspan_open_cover_idx",
                         condition=Q(end__isnull=True),
                         include=["kind", "project", "person", "on_date", "hours", "bill_rate",
                                  "amount", "currency", "billable", "in_billing"]),
            models.Index(fields=["end"], name="wipspan_end_idx", condition=Q(end__isnull=False)),
        ]


OPEN_END = dt.date(9999, 12, 31)


class WipCell(models.Model):
    """The WIP spans summed by what the WIP figures group and filter by: project, kind,
    currency, in billing, the items' date, and the days the spans begin and end. An item is
    WIP at the end of day T when its span's start_day ≤ T < end_day, so WIP as of any date
    reads these cells instead of every item: kept by the worker with each span it writes,
    and equal to the spans' sum by construction (tests compare the two)."""

    project = models.ForeignKey(Project, on_delete=models.DO_NOTHING, db_constraint=False,
                                related_name="+")
    kind = models.CharField(max_length=16, choices=StageEvent.Kind.choices)
    currency = models.CharField(max_length=3, blank=True)
    in_billing = models.BooleanField(default=False)
    on_date = models.DateField()
    start_day = models.DateField()
    end_day = models.DateField(default=OPEN_END)  # OPEN_END: still WIP
    value = models.DecimalField(max_digits=22, decimal_places=4, default=0)
    items = models.IntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(
            fields=["project", "kind", "currency", "in_billing", "on_date", "start_day",
                    "end_day"], name="wipcell_key_uniq")]
        indexes = [
            # Today's WIP: the open cells, read from this index alone on PostgreSQL. A past
            # date's WIP uses a GiST index on the day range (migration).
            models.Index(fields=["start_day"], name="wipcell_open_cover_idx",
                         condition=Q(end_day=OPEN_END),
                         include=["project", "kind", "currency", "in_billing", "on_date",
                                  "value"]),
            models.Index(fields=["end_day"], name="wipcell_end_idx"),
            models.Index(fields=["items"], name="wipcell_empty_idx", condition=Q(items__lte=0)),
        ]


class WipDayChange(models.Model):
    """How the firm's whole WIP of a currency changes at the end of a day: the value of the
    cells that begin holding WIP that day less the value of those that stop. WIP as of T,
    unfiltered, is the sum of the changes up to T, so a trend of it reads a few thousand
    rows however many items there are. The workers only ever insert rows here (no row is
    updated, so concurrent workers never wait for one another on a busy day);
    `compact_wip_day_changes` folds them to one row per currency and day."""

    currency = models.CharField(max_length=3, blank=True)
    day = models.DateField()
    value = models.DecimalField(max_digits=22, decimal_places=4)
    items = models.IntegerField()  # how many more items hold WIP after the day than before

    class Meta:
        indexes = [models.Index(fields=["day"], include=["currency", "value", "items"],
                                name="wipdaychange_day_idx")]


class RevenueRecognition(MasterRecord):
    """Revenue recognized for a project and month; a later report for the month replaces it."""

    project = models.ForeignKey(Project, on_delete=models.PROTECT, related_name="revenue")
    period = models.CharField(max_length=7)
    amount = models.DecimalField(max_digits=14, decimal_places=2, default=0)
    currency = models.CharField(max_length=3, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["project", "period"],
                                    name="revenue_project_period_uniq")
        ]


class SyncAttempt(models.Model):
    """One sync.succeeded or sync.failed report from the middleware about itself."""

    # No database constraint: the partitioned inbox has no unique key on id alone. The
    # attempt keeps its own columns and outlives its inbox row when retention drops it.
    inbox_event = models.OneToOneField("ingestion.InboxEvent", on_delete=models.DO_NOTHING,
                                       related_name="sync_attempt", db_constraint=False)
    flow = models.CharField(max_length=255)
    source_system = models.CharField(max_length=255, blank=True)
    target_system = models.CharField(max_length=255, blank=True)
    object_type = models.CharField(max_length=255, blank=True)
    object_id = models.CharField(max_length=255, blank=True)
    succeeded = models.BooleanField()
    latency_ms = models.PositiveIntegerField(null=True, blank=True)
    attempt = models.PositiveIntegerField(null=True, blank=True)
    error_code = models.CharField(max_length=255, blank=True)
    error_message = models.TextField(blank=True)
    retryable = models.BooleanField(null=True)
    occurred_at = models.DateTimeField()

    class Meta:
        indexes = [
            models.Index(fields=["flow", "occurred_at"], name="sync_flow_time_idx"),
            models.Index(fields=["occurred_at"], name="sync_time_idx"),
            models.Index(fields=["flow", "object_type", "object_id", "occurred_at"],
                         name="sync_object_time_idx"),
            # The sync_failed rule reads failures only: a small slice of a large table.
            models.Index(fields=["flow", "object_type", "object_id"],
                         condition=models.Q(succeeded=False), name="sync_failure_idx"),
        ]


class ReconciliationReport(MasterRecord):
    """The latest count (and amount) comparison of one flow, object type and period."""

    flow = models.CharField(max_length=255)
    object_type = models.CharField(max_length=255)
    period_start = models.DateField()
    period_end = models.DateField()
    source_count = models.IntegerField()
    target_count = models.IntegerField()
    source_amount = models.DecimalField(max_digits=18, decimal_places=2, null=True, blank=True)
    target_amount = models.DecimalField(max_digits=18, decimal_places=2, null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["flow", "object_type", "period_start", "period_end"],
                                    name="recon_flow_object_period_uniq")
        ]

    @property
    def gap(self) -> int:
        return self.source_count - self.target_count


class ReconciliationReading(models.Model):
    """Every `reconciliation.reported` event, kept so a gap's case can say when it began."""

    flow = models.CharField(max_length=255)
    object_type = models.CharField(max_length=255)
    period_start = models.DateField()
    period_end = models.DateField()
    source_count = models.IntegerField()
    target_count = models.IntegerField()
    reported_at = models.DateTimeField()  # the event time
    event_id = models.CharField(max_length=255)
    inbox_event_id = models.BigIntegerField(unique=True)

    class Meta:
        indexes = [models.Index(fields=["flow", "object_type", "period_start", "period_end",
                                        "reported_at"], name="recon_reading_idx")]


class FlowRhythm(models.Model):
    """A flow's learned rhythm (SPEC section 3, stale_feed): for each hour of the week, the
    longest gap between consecutive events that began in that hour over the last 28 days."""

    flow = models.CharField(max_length=255, unique=True)
    # {"<hour of week 0..167>": longest gap in seconds}; hour 0 is Monday 00:00, firm time.
    longest_gaps = models.JSONField(default=dict, blank=True)
    # Events in the 28 days, or (when fewer than 50) ever, counted up to 50.
    events = models.PositiveIntegerField(default=0)
    first_event_at = models.DateTimeField(null=True, blank=True)  # ever
    computed_at = models.DateTimeField()

    def __str__(self):
        return self.flow


def validate_scopes(scopes: str) -> None:
    """Refuse scopes that are empty or not all among ApiToken.SCOPES."""
    unknown = set(scopes.split()) - set(ApiToken.SCOPES)
    if unknown or not scopes.split():
        raise ValidationError(f"scopes are space-separated words among "
                              f"{', '.join(ApiToken.SCOPES)}")


def hash_token(token: str) -> str:
    """The SHA-256 a token is stored and looked up by."""
    return hashlib.sha256(token.encode()).hexdigest()


class ApiToken(models.Model):
    """A bearer token for the API. Only its SHA-256 is stored; the token is shown once.

    Its scopes bound what it may do whatever its user may: `read` (the read API, /metrics)
    and `triage` (the case actions of the write API, which also need the user's triage
    permission)."""

    PREFIX = "opv_"
    SCOPES = ["read", "triage"]

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                             related_name="api_tokens")
    name = models.CharField(max_length=255, blank=True)
    token_hash = models.CharField(max_length=64, unique=True, editable=False)
    token_hint = models.CharField(max_length=12, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked = models.BooleanField(default=False)
    scopes = models.CharField(max_length=64, default="read", help_text=(
        "Space-separated: read (the read API and /metrics), triage (case actions)."),
        validators=[validate_scopes])

    def __str__(self):
        return f"{self.user} {self.token_hint}…"

    @property
    def scope_set(self) -> set[str]:
        return set(self.scopes.split())

    def set_new_token(self) -> str:
        """Give this (unsaved) row a fresh token; returns the plaintext, never stored."""
        token = self.PREFIX + secrets.token_urlsafe(32)
        self.token_hash = hash_token(token)
        self.token_hint = token[:8]
        return token

    @classmethod
    def issue(cls, user: Any, name: str = "", scopes: str = "read") -> tuple["ApiToken", str]:
        """Create a token for `user`; returns (ApiToken, plaintext token)."""
        validate_scopes(scopes)
        api_token = cls(user=user, name=name, scopes=scopes)
        token = api_token.set_new_token()
        api_token.save()
        return api_token, token

    @classmethod
    def authenticate(cls, token: str) -> Any:
        """The active user the token belongs to, or None."""
        api_token = cls.find(token)
        return api_token.user if api_token else None

    @classmethod
    def find(cls, token: str) -> "ApiToken | None":
        """The valid ApiToken (with its user) for a plaintext token, or None."""
        api_token = (
            cls.objects.select_related("user")
            .filter(token_hash=hash_token(token), revoked=False, user__is_active=True)
            .first()
        )
        if api_token is not None:
            cls.objects.filter(pk=api_token.pk).update(last_used_at=timezone.now())
        return api_token


class AuditEvent(models.Model):
    """Who changed a security-relevant setting, when, and from where. Append-only: a row
    cannot be changed or deleted, by a view, the admin or code (case history lives in
    exceptions.CaseEntry, with the same guarantee)."""

    at = models.DateTimeField(default=timezone.now, db_index=True)
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                              on_delete=models.PROTECT, related_name="+")
    actor_label = models.CharField(max_length=150)  # the username, or the command that acted
    action = models.CharField(max_length=64)
    target = models.CharField(max_length=255)  # e.g. "source:mulesoft", "api-token:7"
    remote_addr = models.GenericIPAddressField(null=True, blank=True)
    detail = models.JSONField(default=dict, blank=True)  # never a secret

    class Meta:
        ordering = ["-at", "-pk"]

    def __str__(self):
        return f"{self.at:%Y-%m-%d %H:%M} {self.actor_label} {self.action} {self.target}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self.pk is not None:
            raise PermissionDenied("audit events cannot be changed")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise PermissionDenied("audit events cannot be deleted")


class FxRate(models.Model):
    """A published exchange rate (`fx_rate.published`): 1 `base` = `rate` `quote` on `date`.
    The latest event (by time, ties by id) for a base, quote and date wins. Used only where
    a figure is asked for in a reporting currency."""

    base = models.CharField(max_length=3)
    quote = models.CharField(max_length=3)
    date = models.DateField()
    rate = models.DecimalField(max_digits=24, decimal_places=10)
    version_time = models.DateTimeField(null=True, blank=True)
    version_event_id = models.CharField(max_length=255, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["base", "quote", "date"],
                                               name="fxrate_base_quote_date_uniq")]

    def __str__(self):
        return f"1 {self.base} = {self.rate.normalize():f} {self.quote} on {self.date}"


class CloseCalendar(models.Model):
    """When a legal entity's books close for billing: the cut-off is the end of the Nth
    working day (Monday to Friday, less holidays) after the month. The calendar with a blank
    legal entity is the firm's: its N applies where an entity has none, and its holidays
    apply to every entity."""

    legal_entity = models.CharField(max_length=255, unique=True, blank=True,
                                    help_text="blank: the firm's calendar, for every entity")
    cutoff_working_day = models.PositiveSmallIntegerField(
        default=3, help_text="N: billing closes at the end of the Nth working day after the "
                             "month")

    class Meta:
        ordering = ["legal_entity"]
        constraints = [models.CheckConstraint(
            condition=Q(cutoff_working_day__gte=1) & Q(cutoff_working_day__lte=23),
            name="closecalendar_working_day_range")]

    def __str__(self):
        return f"{self.legal_entity or 'Firm'}: working day {self.cutoff_working_day}"


class CloseHoliday(models.Model):
    calendar = models.ForeignKey(CloseCalendar, on_delete=models.CASCADE,
                                 related_name="holidays")
    date = models.DateField()
    name = models.CharField(max_length=100, blank=True)

    class Meta:
        ordering = ["date"]
        constraints = [models.UniqueConstraint(fields=["calendar", "date"],
                                               name="closeholiday_calendar_date_uniq")]

    def __str__(self):
        return f"{self.date} {self.name}".strip()
