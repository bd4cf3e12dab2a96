"""Display filters: the one money formatter and ratios as percentages."""
from decimal import Decimal, InvalidOperation

from django import template

register = template.Library()


@register.filter
def money(value, places=0):
    """'1234567.50' → '1,234,568' (or with `places` decimals); '—' when missing."""
    if value in (None, ""):
        return "—"
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        return value
    return f"{number:,.{int(places)}f}"


@register.filter
def pct(value):
    if value is None or value == "":
        return "—"
    return f"{float(value) * 100:.1f} %"


@register.filter
def hours(seconds):
    if seconds is None:
        return "—"
    return f"{seconds / 3600:,.1f} h"


@register.filter
def get(mapping, key):
    return (mapping or {}).get(key)


@register.filter
def label(value):
    """'at_risk' → 'At risk'."""
    return str(value or "").replace("_", " ").capitalize()
