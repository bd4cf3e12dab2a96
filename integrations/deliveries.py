"""Sending a Delivery: one attempt, its answer recorded, and the next attempt scheduled with
exponential backoff until it is delivered or given up. The plain functions here are what the
Celery tasks and the tests call."""
import datetime as dt
import logging
import uuid
from collections.abc import Callable

import apprise
from django.conf import settings
from django.utils import timezone

from core import outbound
from exceptions import services
from exceptions.models import Case
from ingestion.events import STRUCTURED
from ingestion.signing import signed_headers

from .models import Delivery

log = logging.getLogger(__name__)


def new_message_id() -> str:
    return f"msg_{uuid.uuid4().hex}"


def backoff(attempts: int) -> int:
    """Seconds before attempt number `attempts + 1`: doubling from DELIVERY_BACKOFF_SECONDS,
    capped at DELIVERY_BACKOFF_MAX_SECONDS."""
    return min(settings.DELIVERY_BACKOFF_SECONDS * 2 ** max(attempts - 1, 0),
               settings.DELIVERY_BACKOFF_MAX_SECONDS)


def _signed_post(url: str, secret: str, delivery: Delivery) -> outbound.Answer:
    body = delivery.body.encode()
    headers = {**signed_headers(secret, delivery.message_id, body),
               "content-type": STRUCTURED, "user-agent": "OpsView-Webhooks/1"}
    return outbound.post(url, body, headers, timeout=settings.DELIVERY_TIMEOUT_SECONDS)


def _send_retry_request(delivery: Delivery) -> outbound.Answer:
    source = delivery.source
    if source is None or not source.accepts_retries:
        return outbound.Answer(None, error="the source takes no retry requests any more")
    return _signed_post(source.callback_url, source.callback_secret, delivery)


def _send_case_webhook(delivery: Delivery) -> outbound.Answer:
    webhook = delivery.webhook
    if webhook is None or not webhook.enabled:
        return outbound.Answer(None, error="the webhook is disabled")
    return _signed_post(webhook.url, webhook.secret, delivery)


def _send_alert(delivery: Delivery) -> outbound.Answer:
    from .alerts import queue_urls

    if delivery.subscription is not None:
        urls = [delivery.subscription.url]
    elif delivery.queue is not None:
        urls = queue_urls(delivery.queue)
    else:
        urls = []
    if not urls:
        return outbound.Answer(None, error="nobody to tell")
    notifier = apprise.Apprise()
    for url in urls:
        notifier.add(url)
    # Apprise says only whether every service took the message; its own log (which may name
    # a service's address) is kept at WARNING and never copied here.
    if notifier.notify(title=delivery.title, body=delivery.body):
        return outbound.Answer(200, f"delivered to {len(urls)} service(s)")
    return outbound.Answer(None, error=f"not delivered to every one of {len(urls)} service(s)")


SENDERS: dict[str, Callable[[Delivery], outbound.Answer]] = {
    Delivery.Kind.RETRY_REQUEST: _send_retry_request,
    Delivery.Kind.CASE_WEBHOOK: _send_case_webhook,
    Delivery.Kind.ALERT: _send_alert,
}


def attempt(delivery: Delivery, now: dt.datetime | None = None) -> int | None:
    """Try `delivery` once. Returns the seconds until the next attempt, or None when it is
    delivered or given up."""
    now = now or timezone.now()
    try:
        answer = SENDERS[delivery.kind](delivery)
    except Exception as error:
        log.exception("delivery %s failed in its sender", delivery.pk)
        answer = outbound.Answer(None, error=type(error).__name__)
    delivery.attempts += 1
    delivery.log = [*delivery.log, {"at": now.isoformat(), "answer": answer.summary()}][-50:]
    wait = None
    if answer.ok:
        delivery.status, delivery.delivered_at = Delivery.Status.DELIVERED, now
    elif delivery.attempts >= settings.DELIVERY_MAX_ATTEMPTS:
        delivery.status = Delivery.Status.GIVEN_UP
    else:
        wait = backoff(delivery.attempts)
        delivery.next_attempt_at = now + dt.timedelta(seconds=wait)
    delivery.save(update_fields=["attempts", "log", "status", "delivered_at", "next_attempt_at"])
    if delivery.kind == Delivery.Kind.RETRY_REQUEST and delivery.case is not None:
        _note_on_case(delivery, delivery.case, answer, wait, now)
    return wait


def _note_on_case(delivery: Delivery, case: Case, answer: outbound.Answer, wait: int | None,
                  now: dt.datetime) -> None:
    """The case's timeline shows each attempt of a retry request and the answer."""
    outcome = ("delivered" if answer.ok else
               f"next attempt in {wait} s" if wait is not None else "given up")
    services.note(case, "rule:retry", "retry_attempt",
                  f"Retry request to {delivery.source.slug if delivery.source else '?'}, "
                  f"attempt {delivery.attempts}: {answer.summary()} ({outcome})", now=now)


def due(now: dt.datetime | None = None, limit: int = 200) -> list[Delivery]:
    """Pending deliveries whose next attempt is due."""
    now = now or timezone.now()
    return list(Delivery.objects.filter(status=Delivery.Status.PENDING, next_attempt_at__lte=now)
                .select_related("source", "subscription", "webhook", "queue", "case")
                .order_by("next_attempt_at")[:limit])


def send_due(now: dt.datetime | None = None) -> list[int | None]:
    """Attempt every due delivery once (the sweeper, and `process_inbox`'s kin in tests)."""
    return [attempt(delivery, now) for delivery in due(now)]
