"""Exception cases: what is late or broken, who owns it, and by when it must be handled."""
import datetime
import hashlib
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.db import models
from django.utils import timezone

from .sla import Calendar, SlaState


class CaseType(models.TextChoices):
    SYNC_FAILED = "sync_failed"
    DEAD_LETTER = "dead_letter"
    UNKNOWN_REFERENCE = "unknown_reference"
    STALE_FEED = "stale_feed"
    RECONCILIATION_GAP = "reconciliation_gap"
    APPROVED_TIME_UNPOSTED = "approved_time_unposted"
    INVOICE_BLOCKED = "invoice_blocked"
    MILESTONE_NOT_INVOICED = "milestone_not_invoiced"
    MISSING_BILLING_SETUP = "missing_billing_setup"
    DUPLICATE_CLIENT = "duplicate_client"
    APPROVED_EXPENSE_UNPOSTED = "approved_expense_unposted"


class Severity(models.TextChoices):
    CRITICAL = "critical"
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"


SEVERITY_ORDER = ["low", "medium", "high", "critical"]


class ResolutionCode(models.TextChoices):
    """Why a case was closed. A person picks any but `CLEARED`, the rule's own (the
    condition went away)."""

    FIXED = "fixed"
    FIXED_UPSTREAM = "fixed_upstream"
    DUPLICATE = "duplicate"
    NOT_A_PROBLEM = "not_a_problem"
    DISTINCT = "distinct"
    CLEARED = "cleared"



class Queue(models.Model):
    """A work queue with its business-hours calendar."""

    slug = models.SlugField(unique=True)
    name = models.CharField(max_length=100)
    members = models.ManyToManyField(settings.AUTH_USER_MODEL, blank=True, related_name="queues")
    time_zone = models.CharField(max_length=64, default="UTC")
    # Weekday numbers, Monday = 0.
    working_days = models.CharField(max_length=20, default="0,1,2,3,4")
    # Times, not strings: a queue created in code (not through a form) computes with them.
    work_start = models.TimeField(default=datetime.time(9))
    work_end = models.TimeField(default=datetime.time(17))
    escalation_queue = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL)
    notify_emails = models.TextField(blank=True, help_text="one address a line")
    notify_webhook_url = models.URLField(blank=True, help_text="Slack-compatible incoming webhook")

    def __str__(self) -> str:
        return self.name

    def calendar(self) -> Calendar:
        """The queue's business hours, for SLA arithmetic."""
        return Calendar(
            time_zone=self.time_zone,
            working_days=frozenset(int(d) for d in self.working_days.split(",") if d.strip()),
            work_start=self.work_start, work_end=self.work_end,
            holidays=frozenset(self.holidays.values_list("date", flat=True)),
        )


class Holiday(models.Model):
    queue = models.ForeignKey(Queue, on_delete=models.CASCADE, related_name="holidays")
    date = models.DateField()
    name = models.CharField(max_length=100, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["queue", "date"], name="holiday_uniq")]


class SlaPolicy(models.Model):
    """Response and resolution targets, in business minutes, for a case type and severity.
    A blank case type applies to every type without a policy of its own."""

    case_type = models.CharField(max_length=32, choices=CaseType.choices, blank=True)
    severity = models.CharField(max_length=10, choices=Severity.choices)
    response_minutes = models.PositiveIntegerField()
    resolution_minutes = models.PositiveIntegerField()
    escalate_notify = models.BooleanField(default=True)
    escalate_raise_severity = models.BooleanField(default=True)
    escalate_move_queue = models.BooleanField(default=False)

    class Meta:
        verbose_name_plural = "SLA policies"
        constraints = [models.UniqueConstraint(fields=["case_type", "severity"],
                                               name="sla_policy_uniq")]

    def __str__(self):
        return f"{self.case_type or 'any type'} / {self.severity}"


class RuleSetting(models.Model):
    """Each rule's switch, default severity, default queue and parameters."""

    case_type = models.CharField(max_length=32, choices=CaseType.choices, unique=True)
    enabled = models.BooleanField(default=True)
    severity = models.CharField(max_length=10, choices=Severity.choices, default="medium")
    queue = models.ForeignKey(Queue, on_delete=models.PROTECT)
    parameters = models.JSONField(default=dict, blank=True)

    def __str__(self):
        return self.case_type


class RoutingRule(models.Model):
    """Send matching cases to a queue (and optionally an owner). Lower priority wins first;
    blank fields match anything."""

    priority = models.PositiveIntegerField(default=100)
    case_type = models.CharField(max_length=32, choices=CaseType.choices, blank=True)
    client_id = models.CharField("client id", max_length=255, blank=True)
    practice = models.CharField(max_length=255, blank=True)
    legal_entity = models.CharField(max_length=255, blank=True)
    project_id = models.CharField("project id", max_length=255, blank=True)
    queue = models.ForeignKey(Queue, on_delete=models.PROTECT)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                              on_delete=models.SET_NULL)
    active = models.BooleanField(default=True)

    class Meta:
        ordering = ["priority", "pk"]

    def matches(self, case: "Case") -> bool:
        """Whether every field this rule sets equals the case's."""
        return all(not wanted or getattr(case, field) == wanted for field, wanted in (
            ("type", self.case_type), ("client_id", self.client_id),
            ("practice", self.practice), ("legal_entity", self.legal_entity),
            ("project_id", self.project_id)))


FINGERPRINT_LENGTH = 500


class Case(models.Model):
    class Status(models.TextChoices):
        OPEN = "open"
        ACKNOWLEDGED = "acknowledged"
        WAITING = "waiting"
        RESOLVED = "resolved"
        IGNORED = "ignored"

    OPEN_STATES = [Status.OPEN, Status.ACKNOWLEDGED, Status.WAITING]

    type = models.CharField(max_length=32, choices=CaseType.choices)
    fingerprint = models.CharField(max_length=FINGERPRINT_LENGTH)
    title = models.CharField(max_length=300)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.OPEN)
    severity = models.CharField(max_length=10, choices=Severity.choices, default="medium")
    queue = models.ForeignKey(Queue, on_delete=models.PROTECT, related_name="cases")
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                              on_delete=models.SET_NULL, related_name="cases")
    money_at_stake = models.DecimalField(max_digits=18, decimal_places=2, null=True, blank=True)
    currency = models.CharField(max_length=3, blank=True)
    # The business object the case concerns, and the fields routing and filters use.
    object_kind = models.CharField(max_length=255)
    object_id = models.CharField(max_length=255)
    client_id = models.CharField(max_length=255, blank=True)
    project_id = models.CharField(max_length=255, blank=True)
    practice = models.CharField(max_length=255, blank=True)
    legal_entity = models.CharField(max_length=255, blank=True)
    detail = models.JSONField(default=dict, blank=True)
    first_seen_at = models.DateTimeField(default=timezone.now)
    last_seen_at = models.DateTimeField(default=timezone.now)
    times_seen = models.PositiveIntegerField(default=1)
    # When the business problem began (SPEC section 3), often before OpsView noticed it: the
    # resolution target, the age and the time to resolve count from here.
    began_at = models.DateTimeField(default=timezone.now)
    # When OpsView opened the current episode: the response target counts from here.
    opened_at = models.DateTimeField(default=timezone.now)
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolution_code = models.CharField(max_length=32, blank=True)
    waiting_since = models.DateTimeField(null=True, blank=True)
    waiting_business_seconds = models.PositiveIntegerField(default=0)
    response_due_at = models.DateTimeField(null=True, blank=True)
    resolution_due_at = models.DateTimeField(null=True, blank=True)
    # A case that blocks billing of a period is due by that period's cut-off at the latest
    # (SPEC section 3): the earliest period it blocks, and that period's cut-off.
    blocks_period = models.CharField(max_length=7, blank=True)
    cutoff_at = models.DateTimeField(null=True, blank=True)
    sla_state = models.CharField(max_length=10, default=SlaState.ON_TRACK.value)  # an SlaState
    escalated_at = models.DateTimeField(null=True, blank=True)
    reopened_count = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["type", "fingerprint"],
                                               name="case_fingerprint_uniq")]
        indexes = [
            models.Index(fields=["status", "type"], name="case_status_type_idx"),
            models.Index(fields=["queue", "status"], name="case_queue_status_idx"),
            models.Index(fields=["resolution_due_at"], name="case_due_idx"),
            models.Index(fields=["began_at"], name="case_began_idx"),
        ]
        permissions = [("triage_case", "Can triage exception cases")]

    def __str__(self):
        return self.title

    @property
    def is_open(self) -> bool:
        return self.status in self.OPEN_STATES

    @property
    def age(self) -> datetime.timedelta:
        """How long the business problem has lasted (until now, or until it was closed)."""
        return (self.resolved_at or timezone.now()) - self.began_at


def fingerprint_key(text: str) -> str:
    """A fingerprint that fits its column: one built from long contract values (a 255-char
    flow, object type and id) keeps its start and a digest of the whole, so it stays unique."""
    if len(text) <= FINGERPRINT_LENGTH:
        return text
    return text[:FINGERPRINT_LENGTH - 65] + "#" + hashlib.sha256(text.encode()).hexdigest()


class CaseEntry(models.Model):
    """One immutable audit entry: who, when, what, from → to. Comments are entries too."""

    case = models.ForeignKey(Case, on_delete=models.PROTECT, related_name="entries")
    at = models.DateTimeField(default=timezone.now)
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                              on_delete=models.PROTECT)
    actor_label = models.CharField(max_length=150)  # the user's name, or "rule:<type>"
    action = models.CharField(max_length=32)
    field = models.CharField(max_length=32, blank=True)
    from_value = models.CharField(max_length=255, blank=True)
    to_value = models.CharField(max_length=255, blank=True)
    comment = models.TextField(blank=True)

    class Meta:
        ordering = ["at", "pk"]
        verbose_name_plural = "case entries"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self.pk is not None:
            raise PermissionDenied("audit entries cannot be changed")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> Any:
        raise PermissionDenied("audit entries cannot be deleted")


class Undo(models.Model):
    """What one resolve or ignore (of one case or a bulk selection) changed, so the person
    who did it can take it back for a short while (settings.TRIAGE_UNDO_SECONDS)."""

    actor = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                              related_name="+")
    action = models.CharField(max_length=16)  # resolved | ignored
    at = models.DateTimeField(default=timezone.now)
    # {case pk: {"status", "owner", "resolution_code", "waiting"}} as they were before.
    previous = models.JSONField(default=dict)
    undone_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.action} {len(self.previous)} case(s)"

    @property
    def window(self) -> int:
        return settings.TRIAGE_UNDO_SECONDS

    def expires_at(self) -> datetime.datetime:
        """When the undo window closes."""
        return self.at + datetime.timedelta(seconds=self.window)


class MoneyThreshold(models.Model):
    """A case whose money at stake in `currency` reaches `amount` is at least `severity`.
    Per currency: amounts in different currencies are not compared."""

    currency = models.CharField(max_length=3, help_text="ISO 4217 code, e.g. EUR")
    amount = models.DecimalField(max_digits=18, decimal_places=2)
    severity = models.CharField(max_length=10, choices=Severity.choices)

    class Meta:
        ordering = ["currency", "amount"]
        constraints = [models.UniqueConstraint(fields=["currency", "severity"],
                                               name="money_threshold_uniq")]

    def __str__(self):
        return f"{self.severity} from {self.amount} {self.currency}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        self.currency = self.currency.upper()
        super().save(*args, **kwargs)


class SavedView(models.Model):
    """A named set of filters on the case list (its query string), personal or shared with
    everyone, listed beside the list with its live count, like a service desk's queues."""

    name = models.CharField(max_length=80)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                              related_name="saved_views")
    shared = models.BooleanField(default=False)
    query = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name", "pk"]
        constraints = [models.UniqueConstraint(fields=["owner", "name"],
                                               name="saved_view_name_uniq")]

    def __str__(self):
        return self.name


class PayloadCorrection(models.Model):
    """A dead letter's event as a triager corrected it: the original inbox row keeps its
    payload and errors (only its status says it was superseded), the corrected event is a
    new inbox row processed by the pipeline."""

    case = models.ForeignKey(Case, on_delete=models.PROTECT, related_name="corrections")
    # No database constraints (the partitioned inbox has no unique key on id alone);
    # retention keeps every inbox row a correction names.
    original = models.ForeignKey("ingestion.InboxEvent", on_delete=models.PROTECT,
                                 related_name="corrections", db_constraint=False)
    corrected = models.OneToOneField("ingestion.InboxEvent", on_delete=models.PROTECT,
                                     related_name="correction_of", db_constraint=False)
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT,
                              related_name="+")
    at = models.DateTimeField(default=timezone.now)
    comment = models.TextField(blank=True)

    def __str__(self):
        return f"inbox {self.original_id} corrected as {self.corrected_id}"
