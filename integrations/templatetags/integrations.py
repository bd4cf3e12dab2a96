from django import template

from ..retries import can_retry

register = template.Library()


@register.inclusion_tag("integrations/partials/retry_action.html")
def retry_action(case):
    """The "Request retry" button, on cases whose object a middleware could retry."""
    return {"case": case, "retryable": can_retry(case)}
