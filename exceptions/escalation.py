"""The SLA sweep: refresh every open case's SLA state; announce the cases newly at risk or
breached, and escalate the newly breached."""
import datetime as dt
import logging

from django.utils import timezone

from . import services
from .models import Case
from .signals import announce
from .sla import SlaState

log = logging.getLogger(__name__)


def sla_sweep(now: dt.datetime | None = None) -> dict[str, int]:
    """Refresh every open case's SLA; announce and escalate what changed."""
    now = now or timezone.now()
    policies = services._policies()
    calendars, changed, escalated = {}, [], 0
    for case in Case.objects.select_related("queue").filter(status__in=Case.OPEN_STATES):
        try:
            if case.queue_id not in calendars:
                calendars[case.queue_id] = case.queue.calendar()
            before = case.sla_state
            services.refresh_sla(case, now, calendars[case.queue_id], policies)
        except Exception:
            log.exception("could not refresh the SLA of case %s", case.pk)
            continue
        if case.sla_state != before:
            changed.append(case)
    Case.objects.bulk_update(changed, ["sla_state", "response_due_at", "resolution_due_at"],
                             batch_size=500)
    for state in (SlaState.AT_RISK, SlaState.BREACHED):
        announce([case for case in changed if case.sla_state == state], state)
    for case in changed:
        if case.sla_state == SlaState.BREACHED and case.escalated_at is None:
            try:
                services.escalate(case, now)
                escalated += 1
            except Exception:
                log.exception("could not escalate case %s", case.pk)
    return {"changed": len(changed), "escalated": escalated}
