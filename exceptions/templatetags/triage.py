"""Display filters of the triage pages: human labels for codes, money with its currency."""
from decimal import Decimal
from typing import Any

from django import template

from core.money import money

from .. import labels

register = template.Library()


@register.filter
def human(code: object) -> str:
    """'missing_po' → 'Missing PO'."""
    return labels.human(code)


@register.filter
def in_currency(amount: Decimal | int | float | str | None, currency: str | None) -> str:
    """1234.5, 'EUR' → '€1,234.50'; an unknown currency keeps its code ('1,234.50 CHF')."""
    if amount in (None, ""):
        return "—"
    shown = money(amount, 2)
    symbol = labels.CURRENCY_SYMBOLS.get(currency or "")
    if symbol:
        return f"-{symbol}{shown[1:]}" if shown.startswith("-") else f"{symbol}{shown}"
    return f"{shown} {currency}".strip()


CODED_FIELDS = {"status", "resolution_code", "severity", "sla_state", "type"}


@register.filter
def field_value(value: Any, field_name: str) -> Any:
    """An audit entry's value as people read it: codes labelled, names and ids as they are."""
    if value in (None, ""):
        return "—"
    return labels.human(value) if field_name in CODED_FIELDS else value


@register.filter
def listed(value: Any) -> Any:
    """A case detail's value as text: a list as its items, comma-separated."""
    if isinstance(value, list | tuple):
        return ", ".join(str(item) for item in value) or "—"
    return "—" if value in (None, "") else value
