"""The outbound case webhook: every case change, signed, for a ticketing system to mirror."""
from collections.abc import Iterable

from exceptions.models import Case
from exceptions.schemas import serialize
from ingestion.events import dumps, make_event

from .deliveries import new_message_id
from .models import CaseWebhook, Delivery

EVENT_TYPE = "opsview.case.changed"


def webhook_deliveries(cases: Iterable[Case], action: str) -> list[Delivery]:
    """Unsaved deliveries: each enabled webhook hears of each case, with the case as the API
    shows it and the action that changed it."""
    hooks = list(CaseWebhook.objects.filter(enabled=True))
    made = []
    for case in cases if hooks else []:
        event = make_event(EVENT_TYPE, {"action": action, "case": serialize(case)},
                           source="urn:opsview", subject=f"case/{case.pk}")
        made += [Delivery(kind=Delivery.Kind.CASE_WEBHOOK, webhook=hook, case=case,
                          title=f"case {case.pk} {action}", body=dumps(event),
                          message_id=new_message_id()) for hook in hooks]
    return made
