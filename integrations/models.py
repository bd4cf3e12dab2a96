"""What OpsView sends out: alert subscriptions, case webhooks, and every delivery with its
attempts. Secrets (a webhook's signing secret, an alert URL's tokens) are never rendered
after they are set, and never logged."""
import apprise
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q
from django.utils import timezone

from exceptions.models import Case, CaseType, Queue, Severity
from ingestion.models import HTTP_ONLY, Source, new_webhook_secret

TRIGGERS = ["opened", "at_risk", "breached", "escalated", "digest"]


def validate_alert_url(url: str) -> None:
    """An Apprise URL whose service is in ALERT_SCHEMES: what an admin may point alerts at."""
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme not in settings.ALERT_SCHEMES:
        raise ValidationError(f"the scheme must be one of {', '.join(settings.ALERT_SCHEMES)}")
    if apprise.Apprise.instantiate(url) is None:
        raise ValidationError("this is not a notification URL Apprise can use")


class AlertSubscription(models.Model):
    """Who hears of which cases, and when: a notification URL (Apprise: Slack, Teams,
    PagerDuty, email and more), narrowed by queue, case type and least severity."""

    name = models.CharField(max_length=100)
    # Holds the service's tokens: shown masked once set (Apprise's privacy form).
    url = models.CharField("notification URL", max_length=1000,
                           validators=[validate_alert_url])
    queue = models.ForeignKey(Queue, null=True, blank=True, on_delete=models.CASCADE,
                              help_text="blank: every queue")
    case_type = models.CharField(max_length=32, choices=CaseType.choices, blank=True,
                                 help_text="blank: every type")
    min_severity = models.CharField("least severity", max_length=10, choices=Severity.choices,
                                    default="low")
    on_opened = models.BooleanField("case opened", default=True)
    on_at_risk = models.BooleanField("at risk", default=False)
    on_breached = models.BooleanField("breached", default=True)
    on_escalated = models.BooleanField("escalated", default=True)
    daily_digest = models.BooleanField(default=False)
    enabled = models.BooleanField(default=True)

    def __str__(self):
        return self.name

    def wants(self, trigger: str) -> bool:
        """Whether the subscription is on for a trigger (opened, at_risk, ..., digest)."""
        return self.enabled and getattr(self, "daily_digest" if trigger == "digest"
                                        else f"on_{trigger}")

    def masked_url(self) -> str:
        """The URL with its tokens masked (Apprise's privacy form)."""
        service = apprise.Apprise.instantiate(self.url)
        return service.url(privacy=True) if service else "—"


class CaseWebhook(models.Model):
    """A receiver (a ticketing system) that mirrors cases: every change is posted to it as a
    signed CloudEvent `opsview.case.changed`, Standard Webhooks signing with its own secret."""

    name = models.CharField(max_length=100)
    url = models.URLField(max_length=500, validators=[HTTP_ONLY])
    secret = models.CharField(max_length=128, default=new_webhook_secret)
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self):
        return self.name

    def new_secret(self) -> str:
        """A fresh signing secret, saved; returned to be shown once."""
        self.secret = new_webhook_secret()
        self.save(update_fields=["secret"])
        return self.secret


class Delivery(models.Model):
    """One message to one receiver, tried until it is delivered or given up. The body is
    kept; the signature is made at each attempt from the receiver's current secret, so no
    secret is stored here."""

    class Kind(models.TextChoices):
        RETRY_REQUEST = "retry_request"
        ALERT = "alert"
        CASE_WEBHOOK = "case_webhook"

    class Status(models.TextChoices):
        PENDING = "pending"
        DELIVERED = "delivered"
        GIVEN_UP = "given_up"

    kind = models.CharField(max_length=16, choices=Kind.choices)
    # Standard Webhooks message id: the same on every attempt, so a receiver can de-duplicate.
    message_id = models.CharField(max_length=64, unique=True)
    case = models.ForeignKey(Case, null=True, blank=True, on_delete=models.CASCADE,
                             related_name="deliveries")
    source = models.ForeignKey(Source, null=True, blank=True, on_delete=models.CASCADE)
    subscription = models.ForeignKey(AlertSubscription, null=True, blank=True,
                                     on_delete=models.CASCADE)
    webhook = models.ForeignKey(CaseWebhook, null=True, blank=True, on_delete=models.CASCADE)
    # An escalation told to a queue's own recipients (its addresses and webhook).
    queue = models.ForeignKey(Queue, null=True, blank=True, on_delete=models.CASCADE)
    title = models.CharField(max_length=300, blank=True)
    body = models.TextField()
    requested_by = models.CharField(max_length=150, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    delivered_at = models.DateTimeField(null=True, blank=True)
    # [{"at", "answer"}] per attempt: the status code and the start of the answer.
    log = models.JSONField(default=list, blank=True)

    class Meta:
        verbose_name_plural = "deliveries"
        indexes = [models.Index(fields=["next_attempt_at"], name="delivery_due_idx",
                                condition=Q(status="pending"))]

    def __str__(self):
        return f"{self.kind} {self.message_id} ({self.status})"
