"""Retry through the middleware: "Request retry" on a case sends the Source that carries its
object a signed CloudEvent `opsview.retry.requested` naming the object, the flow and the
correlation id. The middleware retries; its later `sync.succeeded` (or the object's own
arrival) clears the case by the rules of SPEC section 3 — nothing here resolves a case."""
from collections.abc import Callable, Iterable
from typing import Any

from django.contrib.auth.models import User
from django.db.models import Model, Q

from exceptions import services
from exceptions.models import Case
from ingestion.events import dumps, make_event
from ingestion.models import InboxEvent, Source
from opsview.models import Expense, SyncAttempt, TimeEntry

from .alerts import case_url
from .deliveries import new_message_id
from .models import Delivery
from .tasks import enqueue

EVENT_TYPE = "opsview.retry.requested"
ITEMS = 500  # item ids named in one request


class RetryRefused(services.TransitionError):
    """This case has nothing a middleware could retry, or nobody to ask."""


def _sync_failed(case: Case) -> dict[str, Any]:
    detail = case.detail
    last = (SyncAttempt.objects.filter(flow=detail.get("flow", ""),
                                       object_type=detail.get("object_type", ""),
                                       object_id=detail.get("object_id", ""), succeeded=False)
            .order_by("-occurred_at").first())
    # Read apart: retention may have dropped the attempt's inbox row (no join would find it).
    event = (InboxEvent.objects.select_related("source").filter(pk=last.inbox_event_id).first()
             if last else None)
    return {"flow": detail.get("flow", ""), "object_type": detail.get("object_type", ""),
            "object_id": detail.get("object_id", ""), "reason": "sync_failed",
            "correlationid": (event.correlation_id if event else "")
            or detail.get("object_id", ""),
            "source": event.source if event else None}


def _resend(case: Case) -> dict[str, Any]:
    """The record itself (an unknown reference, a blocked invoice): send it again."""
    return {"flow": "", "object_type": case.object_kind, "object_id": case.object_id,
            "reason": case.type, "correlationid": case.object_id}


def _unposted(model: type[Model], object_type: str) -> Callable[[Case], dict[str, Any]]:
    """The project's approved, unposted items: post them again."""
    key = f"{object_type}_id"

    def target(case: Case) -> dict[str, Any]:
        items = list(model._default_manager.filter(project__project_id=case.object_id,
                                          status="approved")
                     .order_by(key).values_list(key, flat=True)[:ITEMS])
        return {"flow": "", "object_type": object_type, "object_id": case.object_id,
                "items": items, "reason": case.type, "correlationid": case.object_id,
                "project_id": case.object_id}
    return target


# The case types where a retry means something, and what it names.
TARGETS = {
    "sync_failed": _sync_failed,
    "unknown_reference": _resend,
    "invoice_blocked": _resend,
    "approved_time_unposted": _unposted(TimeEntry, "time_entry"),
    "approved_expense_unposted": _unposted(Expense, "expense"),
}


def can_retry(case: Case) -> bool:
    """Whether a retry means something for the case: a type with a target, still open."""
    return case.type in TARGETS and case.is_open


def _source_for(case: Case, target: dict[str, Any]) -> Source | None:
    """The source that told OpsView about the object, if it takes retries; else the one
    source that takes retries, if there is exactly one."""
    source = target.pop("source", None)
    if source is None:
        key = target["correlationid"]
        event = (InboxEvent.objects.filter(Q(correlation_id=key) | Q(subject=key))
                 .select_related("source").order_by("-received_at").first())
        source = event.source if event else None
    if source is not None and source.accepts_retries:
        return source
    able = list(Source.objects.filter(enabled=True).exclude(callback_url="")
                .exclude(callback_secret=""))
    return able[0] if len(able) == 1 else None


def request_retry(case: Case, actor: User) -> Delivery:
    """Queue a signed retry request for the case's object and note it on the case."""
    if not can_retry(case):
        raise RetryRefused(f"a {case.type} case has nothing to retry"
                           if case.type not in TARGETS else "the case is closed")
    target = TARGETS[case.type](case)
    source = _source_for(case, target)
    if source is None:
        raise RetryRefused("no source with a callback URL and secret carries this object")
    data = {**target, "case": {"id": case.pk, "type": case.type, "url": case_url(case)},
            "requested_by": getattr(actor, "username", str(actor))}
    event = make_event(EVENT_TYPE, data, source="urn:opsview",
                       subject=f"{target['object_type']}/{target['object_id']}",
                       correlationid=target["correlationid"] or None)
    delivery = Delivery.objects.create(
        kind=Delivery.Kind.RETRY_REQUEST, case=case, source=source, body=dumps(event),
        title=f"Retry {target['object_type']} {target['object_id']}",
        requested_by=data["requested_by"], message_id=new_message_id())
    services.note(case, actor, "retry_requested",
                  f"Asked {source.slug} to retry {target['object_type']} "
                  f"{target['object_id']}" + (f" in flow {target['flow']}" if target["flow"]
                                             else "") + f" (event {event['id']}).")
    enqueue(delivery.pk)
    return delivery


def request_retries(cases: Iterable[Case], actor: User,
                    ) -> tuple[int, list[tuple[Case, str]]]:
    """The bulk action: (requested, [(case, reason) refused])."""
    requested, refused = 0, []
    for case in cases:
        try:
            request_retry(case, actor)
            requested += 1
        except RetryRefused as error:
            refused.append((case, str(error)))
    return requested, refused
