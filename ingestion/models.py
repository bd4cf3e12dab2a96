"""Sources that send events, and the durable inbox every accepted event lands in first."""
import base64
import secrets

from django.core.validators import URLValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone

HTTP_ONLY = URLValidator(schemes=["http", "https"])


def new_webhook_secret() -> str:
    """A fresh random signing secret in the `whsec_<base64>` form."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


class Source(models.Model):
    """A middleware or system that posts events to /ingest/<slug>/events."""

    slug = models.SlugField(max_length=64, unique=True)
    name = models.CharField(max_length=128)
    # Two active secrets allow rotation: the new one signs, the previous still verifies.
    secret = models.CharField(max_length=128, default=new_webhook_secret)
    previous_secret = models.CharField(max_length=128, blank=True)
    enabled = models.BooleanField(default=True)
    rate_limit_per_minute = models.PositiveIntegerField(
        default=6000, help_text="Requests per minute; 0 means unlimited.")
    # A feed silent for longer than this raises a stale_feed case.
    stale_after_minutes = models.PositiveIntegerField(default=60)
    last_event_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    # Where OpsView asks this middleware to retry a record (a signed CloudEvent), and the
    # secret it signs those requests with: its own, never the inbound one, shown once.
    callback_url = models.URLField(blank=True, max_length=500, validators=[HTTP_ONLY], help_text=(
        "http(s) URL that receives opsview.retry.requested; blank: no retries from OpsView"))
    callback_secret = models.CharField(max_length=128, blank=True)

    def __str__(self):
        return self.slug

    @property
    def accepts_retries(self) -> bool:
        """Whether OpsView can ask this source to send events again."""
        return bool(self.enabled and self.callback_url and self.callback_secret)

    def new_callback_secret(self) -> str:
        """Make (or replace) the secret that signs retry requests; returns it, once."""
        self.callback_secret = new_webhook_secret()
        self.save(update_fields=["callback_secret"])
        return self.callback_secret

    @property
    def active_secrets(self) -> list[str]:
        """The secrets a signature may match: the current one and one being retired."""
        return [s for s in (self.secret, self.previous_secret) if s]

    def rotate_secret(self) -> str:
        """Make a new secret current and keep the old one valid until it is retired."""
        self.previous_secret = self.secret
        self.secret = new_webhook_secret()
        self.save(update_fields=["secret", "previous_secret"])
        return self.secret

    def retire_previous_secret(self) -> None:
        """Stop accepting the secret replaced by the last rotation."""
        self.previous_secret = ""
        self.save(update_fields=["previous_secret"])


class InboxEvent(models.Model):
    """One authenticated event, stored before it is acknowledged and processed after."""

    class Status(models.TextChoices):
        PENDING = "pending"
        PROCESSED = "processed"
        UNHANDLED = "unhandled"  # an event type OpsView does not know: kept, visible
        DEAD = "dead"  # envelope or data invalid, or processing failed: kept for replay
        DISCARDED = "discarded"  # a dead letter a person chose not to replay

    source = models.ForeignKey(Source, on_delete=models.PROTECT, related_name="events")
    # The CloudEvents `source`: one middleware may relay several systems that reuse ids.
    # db_default keeps writers that name their columns (bench loaders) valid.
    event_source = models.CharField(max_length=500, blank=True, default="", db_default="")
    # Null only for dead letters whose envelope had no usable id: NULL, unlike "", keeps them
    # apart from any real id.
    event_id = models.CharField(max_length=255, null=True, blank=True)  # noqa: DJ001
    type = models.CharField(max_length=255, blank=True)
    time = models.DateTimeField(null=True, blank=True)
    subject = models.CharField(max_length=500, blank=True)
    correlation_id = models.CharField(max_length=255, blank=True)
    raw = models.JSONField(null=True)  # SQL NULL holds a JSON null event
    # sha256 of the raw event's canonical JSON: a repeat of the key with other content is a
    # conflict, found without loading raw. "" on rows stored before it was kept.
    content_digest = models.CharField(max_length=64, blank=True, default="", db_default="")
    received_at = models.DateTimeField(default=timezone.now)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    errors = models.JSONField(default=list, blank=True)
    processed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        # The idempotency key is unique in InboxKey: on PostgreSQL this table is partitioned
        # by month of received_at, and a partitioned table's unique keys must hold it.
        indexes = [
            models.Index(fields=["source", "event_source", "event_id"], name="inbox_key_idx"),
            models.Index(fields=["received_at"], name="inbox_pending_idx",
                         condition=Q(status="pending")),
            models.Index(fields=["status", "type"], name="inbox_status_type_idx"),
            models.Index(fields=["correlation_id"], name="inbox_correlation_idx",
                         condition=~Q(correlation_id="")),
            models.Index(fields=["type", "time"], name="inbox_type_time_idx"),
            models.Index(fields=["subject"], name="inbox_subject_idx", condition=~Q(subject="")),
            # Data freshness: the newest time-entry event, without scanning the inbox.
            models.Index(fields=["received_at"], name="inbox_time_entry_recv_idx",
                         condition=Q(type__startswith="time_entry.")),
        ]

    def __str__(self):
        return f"{self.source_id}:{self.event_id or '∅'} {self.type}"


class InboxKey(models.Model):
    """The idempotency key (SPEC section 1) of every event ever stored with an id. Kept
    apart from the partitioned inbox so it stays unique across months, and kept when
    retention drops old inbox rows: a late redelivery is still a duplicate. Dead letters
    without an id have none."""

    # A source deleted (possible once its inbox rows are gone) takes its keys with it.
    source = models.ForeignKey(Source, on_delete=models.CASCADE, related_name="+")
    event_source = models.CharField(max_length=500, blank=True, default="", db_default="")
    event_id = models.CharField(max_length=255)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["source", "event_source", "event_id"],
                                    name="inbox_idempotency_key_uniq"),
        ]

    def __str__(self):
        return f"{self.source_id}:{self.event_source}:{self.event_id}"


class DuplicateDelivery(models.Model):
    """A delivery of an event already in the inbox: counted, never applied again. A repeat
    whose content differs from the stored event is a conflict, kept for inspection."""

    source = models.ForeignKey(Source, on_delete=models.CASCADE, related_name="duplicates")
    event_source = models.CharField(max_length=500, blank=True, default="", db_default="")
    event_id = models.CharField(max_length=255)
    received_at = models.DateTimeField(default=timezone.now, db_index=True)
    conflict = models.BooleanField(default=False, db_default=False)
    raw = models.JSONField(null=True, blank=True)  # the conflicting event; null otherwise

    class Meta:
        verbose_name_plural = "duplicate deliveries"
        indexes = [
            models.Index(fields=["received_at"], name="duplicate_conflict_recv_idx",
                         condition=Q(conflict=True)),
        ]

    def __str__(self):
        return f"{self.source_id}:{self.event_id}{' (conflict)' if self.conflict else ''}"

    def stored_event(self) -> "InboxEvent | None":
        """The inbox row this delivery repeated."""
        return InboxEvent.objects.filter(source_id=self.source_id, event_source=self.event_source,
                                         event_id=self.event_id).first()


class ProcessedBatch(models.Model):
    """A processed batch the exception rules have not seen yet: written in the batch's own
    transaction and deleted once its event-driven rules have run, so a worker killed or a
    database restarted between the two leaves it for the sweeper instead of losing it."""

    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    changes = models.JSONField()  # ingestion.pipeline.BatchChanges.as_json()
    attempts = models.PositiveSmallIntegerField(default=0)

    def __str__(self):
        return f"batch {self.pk} of {self.created_at:%Y-%m-%d %H:%M:%S}"
