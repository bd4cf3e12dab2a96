"""Display filters: the one money formatter, ratios as percentages, codes as words and
dates as people read them."""
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from django import template

from core.money import money, money_in
from opsview import labels
from reporting import charts

register = template.Library()


register.filter("money", money)
register.filter("money_in", money_in)


@register.filter
def pct(value: float | None) -> str:
    if value is None or value == "":
        return "—"
    return f"{float(value) * 100:.1f} %"


@register.filter
def hours(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    return f"{seconds / 3600:,.1f} h"


@register.filter
def millis(value: float | None) -> str:
    """A latency in milliseconds as people read it: '850 ms', '1.8 s', '2.5 min'."""
    if value in (None, ""):
        return "—"
    value = float(value)
    if value < 1000:
        return f"{value:,.0f} ms"
    if value < 120_000:
        return f"{value / 1000:,.1f} s"
    return f"{value / 60_000:,.1f} min"


@register.filter
def get(mapping: Mapping[Any, Any] | None, key: Any) -> Any:
    """mapping[key] in a template, None when missing."""
    return (mapping or {}).get(key)


@register.filter
def label(value: str) -> str:
    """'at_risk' → 'At risk', 'missing_po' → 'Missing purchase order'."""
    return labels.label(value)


@register.filter
def words(text: str) -> str:
    """Codes inside a sentence as words: 'blocked: missing_po' → 'blocked: missing purchase
    order'."""
    return labels.words(text)


@register.filter
def when(value: Any) -> str:
    """'2026-09-04T18:01:00+00:00' → '4 Sep 2026, 18:01' (local time)."""
    return labels.readable_time(value)


@register.filter
def day(value: Any) -> str:
    """'2026-09-04' → '4 Sep 2026'."""
    return labels.readable_date(value)


@register.filter
def add_money(value: Any, other: Any) -> Decimal | None:
    """The sum of two decimal strings."""
    try:
        return Decimal(str(value)) + Decimal(str(other))
    except InvalidOperation:
        return None


@register.filter
def days(value: float | None) -> str:
    """'4.5 d', or '—' when missing."""
    return "—" if value is None else f"{value:g} d"


@register.filter
def countdown(seconds: float) -> str:
    """'2 d 4 h left' or 'passed 3 d 2 h ago'."""
    from reporting.views import _countdown

    return _countdown(int(seconds))


@register.filter
def change(line: Mapping[str, Any] | None, unit: str) -> str:
    """A trend line's last change, signed, in the card's unit: money and counts as numbers,
    a ratio in percentage points, DSO in days."""
    line = line or {}
    delta = line.get("change")
    if delta is None:
        return "new"
    arrow = "▲" if delta > 0 else "▼" if delta < 0 else "="
    if unit == "points":
        return f"{arrow} {abs(delta) * 100:.1f} pts"
    if unit == "days":
        return f"{arrow} {abs(delta):.1f} d"
    if unit == "money" and line.get("relative") is not None:
        return f"{arrow} {abs(line['relative']) * 100:.0f} %"
    return f"{arrow} {abs(delta):,.0f}"


@register.filter
def trend_class(line: Mapping[str, Any] | None, good_when: str) -> str:
    """good, bad or flat: whether the last change is the direction that is good news."""
    delta = (line or {}).get("change")
    if not delta:
        return "flat"
    return "good" if (delta > 0) == (good_when == "up") else "bad"


@register.filter
def chart_table(spec: charts.Spec | None) -> dict[str, Any] | None:
    """The chart's numbers as a table (its text alternative)."""
    return charts.table_of(spec) if spec else None
