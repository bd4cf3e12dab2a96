"""The SLA sweep: refresh every open case's SLA state; escalate the newly breached."""
import json
import logging
import urllib.request

from django.conf import settings
from django.core.mail import send_mail
from django.utils import timezone

from . import services
from .models import Case

log = logging.getLogger(__name__)


def notify(case, message, queue):
    """Email the queue's addresses and post Slack-compatible JSON to its webhook."""
    url = f"{settings.OPSVIEW_BASE_URL}/exceptions/{case.pk}/"
    text = f"{message}\n{case.get_type_display()} · {case.severity} · {queue.name}\n{url}"
    recipients = [line.strip() for line in queue.notify_emails.splitlines() if line.strip()]
    if recipients:
        try:
            send_mail(f"[OpsView] {message}"[:200], text, None, recipients)
        except OSError:
            log.exception("could not email %s about case %s", recipients, case.pk)
    if queue.notify_webhook_url:
        body = json.dumps({"text": text, "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": f"*{message}*\n<{url}|Open the case>"}}]
        }).encode()
        request = urllib.request.Request(queue.notify_webhook_url, data=body,
                                         headers={"Content-Type": "application/json"})
        try:
            urllib.request.urlopen(request, timeout=5).close()
        except OSError:
            log.exception("could not post case %s to the queue webhook", case.pk)


def sla_sweep(now=None):
    now = now or timezone.now()
    policies = services._policies()
    calendars, changed, escalated = {}, [], 0
    for case in Case.objects.select_related("queue").filter(status__in=Case.OPEN_STATES):
        try:
            if case.queue_id not in calendars:
                calendars[case.queue_id] = case.queue.calendar()
            before = case.sla_state
            services.refresh_sla(case, now, calendars[case.queue_id], policies)
        except Exception:  # noqa: BLE001 - one case (a calendar without hours) stops no other
            log.exception("could not refresh the SLA of case %s", case.pk)
            continue
        if case.sla_state != before:
            changed.append(case)
    Case.objects.bulk_update(changed, ["sla_state", "response_due_at", "resolution_due_at"],
                             batch_size=500)
    for case in changed:
        if case.sla_state == "breached" and case.escalated_at is None:
            try:
                services.escalate(case, now, notify)
                escalated += 1
            except Exception:  # noqa: BLE001
                log.exception("could not escalate case %s", case.pk)
    return {"changed": len(changed), "escalated": escalated}
