from typing import Any

from django import template

from exceptions.models import Case

from ..retries import can_retry

register = template.Library()


@register.inclusion_tag("integrations/partials/retry_action.html")
def retry_action(case: Case) -> dict[str, Any]:
    """The "Request retry" button, on cases whose object a middleware could retry."""
    return {"case": case, "retryable": can_retry(case)}
