"""Turns announced case changes into deliveries: alerts for the triggers people subscribe to,
and the case webhook for every change."""
from collections.abc import Iterable, Sequence
from typing import Any

from exceptions.models import Case, Queue

from .alerts import alert_deliveries
from .models import TRIGGERS, Delivery
from .tasks import enqueue
from .webhooks import webhook_deliveries

ALERTED = set(TRIGGERS) - {"digest"}


def on_case_changed(sender: object, *, cases: Sequence[Case], action: str,
                    notify_queues: Iterable[Queue] = (), **kwargs: Any) -> None:
    deliveries = webhook_deliveries(cases, action)
    # An escalation whose policy does not notify names no queues and alerts nobody.
    if action in ALERTED and (action != "escalated" or notify_queues):
        deliveries += alert_deliveries(cases, action, notify_queues)
    for delivery in Delivery.objects.bulk_create(deliveries):
        enqueue(delivery.pk)
