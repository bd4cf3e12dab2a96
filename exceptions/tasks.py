"""Beat tasks for the rules and the SLA sweep: thin wrappers."""
from celery import shared_task

from . import escalation, rules


@shared_task(name="exceptions.tasks.evaluate_time_rules")
def evaluate_time_rules() -> dict:
    """Beat: every rule over the whole state, then the SLA sweep."""
    return rules.evaluate_time_rules()


@shared_task(name="exceptions.tasks.sla_sweep")
def sla_sweep() -> dict[str, int]:
    """Beat: refresh every open case's SLA."""
    return escalation.sla_sweep()
