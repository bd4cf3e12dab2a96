"""Celery tasks for outbound deliveries: thin wrappers around integrations.deliveries."""
import datetime as dt
import logging

from celery import shared_task
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from . import alerts, deliveries
from .models import Delivery

log = logging.getLogger(__name__)


@shared_task(name="integrations.tasks.deliver", acks_late=True)
def deliver(delivery_id: int) -> int | None:
    """One attempt; a failure schedules the next after its backoff. The row is claimed by a
    conditional update (a lease past the time-out), so the sweeper and a scheduled retry
    never send the same attempt twice, and no transaction is held while a receiver answers."""
    now = timezone.now()
    lease = now + dt.timedelta(seconds=4 * settings.DELIVERY_TIMEOUT_SECONDS + 60)
    claimed = Delivery.objects.filter(pk=delivery_id, status=Delivery.Status.PENDING,
                                      next_attempt_at__lte=now).update(next_attempt_at=lease)
    if not claimed:
        return None
    delivery = (Delivery.objects.select_related("source", "subscription", "webhook", "queue",
                                                "case").get(pk=delivery_id))
    wait = deliveries.attempt(delivery, now)
    if wait is not None and not settings.CELERY_TASK_ALWAYS_EAGER:
        enqueue(delivery_id, countdown=wait)
    return wait


def enqueue(delivery_id: int, countdown: int | None = None) -> None:
    """Queue a delivery after commit; a broker outage only delays it (the sweeper)."""

    def send() -> None:
        try:
            deliver.apply_async((delivery_id,), countdown=countdown)
        except Exception:  # broker down: the row stays pending and the sweeper re-sends it
            if settings.CELERY_TASK_ALWAYS_EAGER:
                raise
            log.warning("could not enqueue delivery %s; the sweeper will", delivery_id)

    transaction.on_commit(send)


@shared_task(name="integrations.tasks.sweep_deliveries")
def sweep_deliveries() -> None:
    """Re-enqueue deliveries overdue by more than a minute: their message was lost."""
    late = timezone.now() - dt.timedelta(seconds=60)
    for delivery in deliveries.due(late):
        enqueue(delivery.pk)


@shared_task(name="integrations.tasks.send_digests")
def send_digests() -> int:
    """Beat's daily task: queue each subscription's digest."""
    return alerts.queue_digests()
