"""Invoice readiness: what of a period's billable value is billed, in billing, ready,
or held up (unposted, billing set-up missing), and the invoices blocked now."""
import datetime as dt
from collections import defaultdict
from collections.abc import Mapping
from decimal import Decimal

from django.db.models import Count, Expression, F, Q, QuerySet, Sum, Value

from opsview import models as state
from opsview.selectors import (
    AMOUNT,
    BILLABLE_EXPENSE,
    BILLABLE_MILESTONE,
    BILLABLE_TIME,
    BILLED_NOW,
    EXPENSE_VALUE,
    IN_BILLING_NOW,
    MILESTONE_VALUE,
    TIME_VALUE,
    ZERO,
    counted_expenses,
    counted_invoices,
    counted_milestones,
    counted_time,
    total,
)
from reporting.kpis.formatting import Filters, Json, _clean, money, ratio
from reporting.kpis.periods import GROUPS, _by_currency

UNBILLED_NOW = Q(invoice__isnull=True) | Q(invoice__status__in=["", "voided"])


def _readiness(value: Expression, postable: bool) -> dict[str, Expression]:
    """Conditional sums splitting a population into billed, in billing, ready and the first
    failing reason (unposted, then missing billing set-up). `postable`: whether the items
    are posted to ERP (time and expenses) or not (milestones). The names avoid model
    fields, which an annotation would shadow."""
    rest = UNBILLED_NOW
    sums: dict[str, Expression] = {
        "sum_billable": total(value), "sum_invoiced": total(value, BILLED_NOW),
        "sum_in_billing": total(value, IN_BILLING_NOW),
        "sum_unposted": total(Value(ZERO, output_field=AMOUNT))}
    if postable:
        sums["sum_unposted"] = total(value, rest & Q(posted_at__isnull=True))
        rest &= Q(posted_at__isnull=False)
    sums["sum_missing_billing_setup"] = total(value, rest & ~SETUP_COMPLETE)
    sums["sum_ready"] = total(value, rest & SETUP_COMPLETE)
    return sums


SETUP_COMPLETE = state.billing_setup_complete_q("project__")


def readiness_population(first_day: dt.date, last_day: dt.date, filters: Filters | None = None,
                         ) -> list[tuple[QuerySet, str, Expression, bool]]:
    """(queryset, currency, value, postable) of each kind of item billable in a period:
    time-and-materials time, billable expenses and milestones of milestone projects,
    approved (milestones: completed) or later, dated in the period."""
    return [
        (counted_time(filters).filter(BILLABLE_TIME, work_date__range=(first_day, last_day)),
         "project__currency", TIME_VALUE, True),
        (counted_expenses(filters).filter(BILLABLE_EXPENSE,
                                          incurred_on__range=(first_day, last_day)),
         "currency", EXPENSE_VALUE, True),
        (counted_milestones(filters).filter(BILLABLE_MILESTONE,
                                            completed_on__range=(first_day, last_day)),
         "project__currency", MILESTONE_VALUE, False),
    ]


def _readiness_figures(f: Mapping[str, Decimal]) -> Json:
    not_ready = f["unposted"] + f["missing_billing_setup"]
    return {
        "billable_value": money(f["billable"]),
        "invoiced_value": money(f["invoiced"]),
        "in_billing_value": money(f["in_billing"]),
        "ready_value": money(f["ready"]),
        "not_ready_value": money(not_ready),
        "not_ready": {"unposted": money(f["unposted"]),
                      "missing_billing_setup": money(f["missing_billing_setup"])},
        "readiness_ratio": ratio(f["ready"], f["ready"] + not_ready),
    }


def invoice_readiness(*, period: str, first_day: dt.date, last_day: dt.date,
                      filters: Filters | None = None) -> Json:
    """What of a period's billable value is billed, in billing, ready to bill, and what
    stands in the way of the rest — as things stand now."""
    filters = filters or {}
    currencies: defaultdict[str, defaultdict[str, Decimal]] = defaultdict(
        lambda: defaultdict(lambda: ZERO))
    for queryset, currency, value, postable in readiness_population(first_day, last_day,
                                                                    filters):
        for ccy, row in _by_currency(queryset, currency, **_readiness(value, postable)).items():
            for name, amount in row.items():
                currencies[ccy][name.removeprefix("sum_")] += amount
    return {"period": period, "filters": _clean(filters),
            "currencies": {c: _readiness_figures(f) for c, f in sorted(currencies.items())},
            "blocked_invoices": blocked_invoices(filters)}


def blocked_invoices(filters: Filters | None = None) -> Json:
    """Invoices blocked right now: count, by reason, and amount per currency."""
    blocked = counted_invoices(filters).filter(status="blocked")
    by_reason = {(row["blocked_reason"] or "other"): row["n"] for row in
                 blocked.values("blocked_reason").annotate(n=Count("pk"))
                 .order_by("blocked_reason")}
    amounts = {row["currency"]: money(row["amount"]) for row in
               blocked.values("currency").annotate(amount=Sum("amount")).order_by("currency")}
    return {"count": sum(by_reason.values()), "by_reason": by_reason, "currencies": amounts}


def readiness_breakdown(*, first_day: dt.date, last_day: dt.date, group_by: str = "project",
                        filters: Filters | None = None) -> list[Json]:
    """Invoice readiness per project or client, per currency, largest not-ready first."""
    key, label = GROUPS[group_by]
    totals: defaultdict[tuple[str, str], defaultdict[str, Decimal]] = defaultdict(
        lambda: defaultdict(lambda: ZERO))
    names = {}
    for queryset, currency, value, postable in readiness_population(first_day, last_day,
                                                                    filters):
        for row in (queryset.values(key=F(key), label=F(label), ccy=F(currency))
                    .annotate(**_readiness(value, postable)).order_by()):
            names[row["key"]] = row["label"]
            for name, amount in row.items():
                if name.startswith("sum_"):
                    totals[(row["key"], row["ccy"])][name.removeprefix("sum_")] += amount
    rows = []
    for (key_value, currency), f in totals.items():
        figures = _readiness_figures(f)
        rows.append({"key": key_value, "name": names.get(key_value) or key_value,
                     "currency": currency, **{k: v for k, v in figures.items()
                                              if k != "not_ready"}, **figures["not_ready"]})
    return sorted(rows, key=lambda r: (-Decimal(r["not_ready_value"]), str(r["key"])))
