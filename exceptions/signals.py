"""What happened to cases, announced after commit for whoever delivers it outside OpsView
(alerts, the case webhook). Exceptions knows nothing of its listeners; a listener failing
is logged and changes nothing here."""
import logging
from collections.abc import Iterable
from typing import Any

from django.db import transaction
from django.dispatch import Signal

log = logging.getLogger(__name__)

# Sent with `cases` (a list of Case), `action` (the audit action: opened, reopened, resolved,
# assigned, acknowledged, waiting, ignored, comment, escalated, at_risk, breached, …) and
# `notify_queues` (the queues whose own recipients hear of it: escalations only).
case_changed = Signal()


def announce(cases: Iterable[Any], action: str, *, notify_queues: Iterable[Any] = ()) -> None:
    """Send `case_changed` once the current transaction commits (at once outside one)."""
    cases = list(cases)
    if not cases:
        return

    def send() -> None:
        for receiver, result in case_changed.send_robust(
                sender=None, cases=cases, action=action, notify_queues=list(notify_queues)):
            if isinstance(result, Exception):
                log.error("announcing %s of %d case(s) failed in %s: %r", action, len(cases),
                          getattr(receiver, "__qualname__", receiver), result)

    transaction.on_commit(send)
