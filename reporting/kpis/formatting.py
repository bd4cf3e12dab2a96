"""How the KPIs write their figures, and the small maths they share: money as
two-place decimal strings, ratios, percentiles, weekdays and age buckets."""
import datetime as dt
import math
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

# The filters a KPI takes (legal_entity, practice, client, ...): name -> value.
Filters = dict[str, str]
# A KPI's answer: JSON-ready, as the API sends it.
Json = dict[str, Any]

CENT = Decimal("0.01")
AGING_BUCKETS = ["0-30", "31-60", "61-90", "90+"]


def money(value: Decimal | int | float | str | None) -> str:
    """A decimal string with two places: '1250.00'."""
    return str(Decimal(value or 0).quantize(CENT))


def ratio(numerator: Decimal | int | float,
          denominator: Decimal | int | float | None) -> float | None:
    """numerator / denominator to four places; None on an empty denominator."""
    if not denominator:
        return None
    return round(float(Decimal(numerator) / Decimal(denominator)), 4)


def percentile_cont(values: Iterable[float], fraction: float) -> float | None:
    """Linear interpolation between closest ranks, as PostgreSQL's percentile_cont."""
    ordered = sorted(values)
    if not ordered:
        return None
    position = fraction * (len(ordered) - 1)
    lower, upper = math.floor(position), math.ceil(position)
    return ordered[lower] + (ordered[upper] - ordered[lower]) * (position - lower)


def percentile_from_counts(counts: Mapping[Any, int], fraction: float) -> float | None:
    """percentile_cont of a multiset given as {value: how many times}: the answer of
    percentile_cont over the values repeated, in time proportional to the distinct ones."""
    items = sorted((value, n) for value, n in counts.items() if n > 0)
    total_count = sum(n for _, n in items)
    if not total_count:
        return None
    position = fraction * (total_count - 1)
    lower, upper = math.floor(position), math.ceil(position)
    found, seen = {}, 0
    for value, n in items:
        for rank in (lower, upper):
            if rank not in found and rank < seen + n:
                found[rank] = value
        seen += n
        if upper in found:
            break
    return found[lower] + (found[upper] - found[lower]) * (position - lower)


def weekdays(start: dt.date, end: dt.date) -> int:
    """Monday-to-Friday days between two dates, both included."""
    if end < start:
        return 0
    days = (end - start).days + 1
    full_weeks, rest = divmod(days, 7)
    count = full_weeks * 5
    for offset in range(rest):
        if (start + dt.timedelta(days=full_weeks * 7 + offset)).weekday() < 5:
            count += 1
    return count


def age_bucket(days: int) -> str:
    """The aging bucket ('0-30', '31-60', '61-90', '90+') of an age in days."""
    if days <= 30:
        return "0-30"
    if days <= 60:
        return "31-60"
    if days <= 90:
        return "61-90"
    return "90+"


def _iso(value: dt.date | dt.datetime | None) -> str | None:
    return value.isoformat() if value else None


def _clean(filters: Filters | None) -> Filters:
    return {k: v for k, v in (filters or {}).items() if v}
