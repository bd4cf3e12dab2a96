"""Re-apply routing rules to open cases when the rules change."""
from .models import Case, RoutingRule
from .rules import route
from .services import Actor, _change


def reroute_open_cases(actor: Actor = "rule:routing") -> int:
    """Move each open case to the queue (and unowned ones to the owner) the active routing
    rules now give it; each move audited. Returns how many moved."""
    rules = list(RoutingRule.objects.filter(active=True).select_related("queue", "owner"))
    moved = 0
    for case in Case.objects.select_related("queue", "owner").filter(
            status__in=Case.OPEN_STATES):
        queue, owner = route(case, rules)
        if queue is None:
            continue
        changes = {"queue": queue}
        if owner is not None and case.owner is None:
            changes["owner"] = owner
        if queue != case.queue or changes.get("owner"):
            _change(case, actor, changes, action="rerouted")
            moved += 1
    return moved
