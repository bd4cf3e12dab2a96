"""The billing KPI (SPEC section 4): over a window of issue dates, per currency, what was
billed against the standard value of the work it bills (realization), how long invoices
took from draft to issue, from work to invoice and from invoice to cash; and how much of
the time posted in the window reached ERP without anyone having to touch it.
"""
import datetime as dt
from collections import defaultdict
from collections.abc import Iterable
from decimal import Decimal
from typing import Any, cast

from django.db.models import Count, F, Q, QuerySet

from exceptions.models import Case
from opsview import models as state
from opsview.selectors import (
    APPROVED_OR_LATER,
    EXPENSE_VALUE,
    T_AND_M,
    TIME_VALUE,
    ZERO,
    counted_invoices,
    counted_time,
    total,
)
from opsview.timeline import firm_zone, local_date
from reporting.kpis import (
    _clean,
    _day_bounds,
    money,
    percentile_cont,
    percentile_from_counts,
    ratio,
)
from reporting.kpis.formatting import Filters

FRACTIONS = {"p50": 0.5, "p90": 0.9}


def billing(*, start: dt.date, end: dt.date, filters: Filters | None = None) -> dict[str, Any]:
    """Invoices issued in [start, end] and not voided, per currency: count, billed value;
    for those on time-and-materials projects the standard value of the time and expenses
    they bill and the realization ratio; cycle, billing-lag and collection days (p50/p90);
    and the touchless share of the time posted in the window."""
    filters = filters or {}
    invoices = counted_invoices(filters).filter(issued_date__range=(start, end)).exclude(
        status="voided")
    paid = counted_invoices(filters).filter(paid_date__range=(start, end)).exclude(
        status="voided")
    figures: defaultdict[str, dict[str, Any]] = defaultdict(
        lambda: {"count": 0, "billed": ZERO, "standard": ZERO, "realized": ZERO})
    for row in invoices.values("currency").annotate(n=Count("pk"), amount=total(F("amount"))
                                                     ).order_by():
        figures[row["currency"]].update(count=row["n"], billed=row["amount"])
    for currency, amount, standard in _t_and_m_invoices(invoices):
        figures[currency]["standard"] += standard
        figures[currency]["realized"] += amount
    cycle = _days_by_currency(
        (c, issued, local_date(drafted, firm_zone())) for c, issued, drafted in
        invoices.filter(first_drafted_at__isnull=False).values_list(
            "currency", "issued_date", "first_drafted_at"))
    collection = _days_by_currency(paid.filter(issued_date__isnull=False).values_list(
        "currency", "paid_date", "issued_date"))
    lag = _billing_lag(invoices)
    return {
        "start": start.isoformat(), "end": end.isoformat(), "filters": _clean(filters),
        "currencies": {currency: {
            "count": f["count"], "billed_value": money(f["billed"]),
            "standard_value": money(f["standard"]),
            "realization_ratio": ratio(f["realized"], f["standard"]),
            "cycle_days": cycle.get(currency, _no_days()),
            "billing_lag_days": lag.get(currency, _no_days()),
            "collection_days": collection.get(currency, _no_days()),
        } for currency, f in sorted(figures.items()) if currency},
        "touchless_ratio": touchless_ratio(start, end, filters),
    }


def _t_and_m_invoices(invoices: QuerySet) -> list[tuple[str, Decimal, Decimal]]:
    """(currency, amount, standard value) of each invoice on a time-and-materials project
    that bills time or expenses: the value of the items it bills now, reversed ones out."""
    standard: defaultdict[int, Decimal] = defaultdict(lambda: ZERO)
    billing_items = False
    tm_invoices = invoices.filter(project__billing_method=T_AND_M)
    for model, value in ((state.TimeEntry, TIME_VALUE), (state.Expense, EXPENSE_VALUE)):
        for invoice_pk, worth in (model.objects.filter(invoice__in=tm_invoices,
                                                       status__in=APPROVED_OR_LATER)
                                  .values("invoice_id").annotate(worth=total(value))
                                  .values_list("invoice_id", "worth").order_by()):
            standard[invoice_pk] += worth
            billing_items = True
    if not billing_items:
        return []
    return [(currency, amount, standard[pk]) for pk, currency, amount in
            tm_invoices.filter(pk__in=list(standard)).values_list("pk", "currency", "amount")]


def _no_days() -> dict[str, float | None]:
    return dict.fromkeys(FRACTIONS)


def _days_by_currency(rows: Iterable[tuple[str, dt.date, dt.date]],
                      ) -> dict[str, dict[str, float]]:
    """{currency: {p50, p90}} of (later date − earlier date) in days, from (currency, later,
    earlier) rows."""
    days: defaultdict[str, list[int]] = defaultdict(list)
    for currency, later, earlier in rows:
        days[currency].append((later - earlier).days)
    # Every list holds a value, so every percentile is a number.
    return {currency: {name: round(float(cast(float, percentile_cont(values, f))), 1)
                       for name, f in FRACTIONS.items()}
            for currency, values in days.items()}


def _billing_lag(invoices: QuerySet) -> dict[str, dict[str, float]]:
    """{currency: {p50, p90}} of the days from each billed time entry's work_date to its
    invoice's issue date, over the invoices on time-and-materials projects; reversed
    entries count nowhere. Hundreds of thousands of entries share a few thousand (issue
    date, work date) pairs: the database counts the pairs, percentiles come from the counts."""
    pairs = (state.TimeEntry.objects.filter(
        invoice__in=invoices.filter(project__billing_method=T_AND_M),
        status__in=APPROVED_OR_LATER, work_date__isnull=False)
        .values_list("invoice__currency", "invoice__issued_date", "work_date")
        .annotate(n=Count("pk")).order_by())
    days: defaultdict[str, defaultdict[int, int]] = defaultdict(lambda: defaultdict(int))
    for currency, issued, worked, n in pairs:
        days[currency][(issued - worked).days] += n
    return {currency: {name: round(float(cast(float, percentile_from_counts(counts, f))), 1)
                       for name, f in FRACTIONS.items()}
            for currency, counts in days.items()}


def touchless_ratio(start: dt.date, end: dt.date, filters: Filters | None = None,
                    ) -> float | None:
    """Of the time entries posted in the window, the share that no `sync.failed` and no case
    names: they went from approval to ERP without anyone's help."""
    posted_from, posted_to = _day_bounds(start, end)
    posted = counted_time(filters, ["posted", "invoiced"]).filter(
        posted_at__gte=posted_from, posted_at__lt=posted_to)
    failed = state.SyncAttempt.objects.filter(succeeded=False, object_type="time_entry")
    named = Case.objects.filter(object_kind="time_entry")
    counts = posted.aggregate(
        n=Count("pk"),
        touched=Count("pk", filter=Q(time_entry_id__in=failed.values("object_id"))
                      | Q(time_entry_id__in=named.values("object_id"))))
    return ratio(counts["n"] - counts["touched"], counts["n"])
