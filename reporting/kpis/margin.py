"""Margin: earned revenue by billing method against labor cost, with billed and
recognized revenue beside them."""
import datetime as dt
from collections import defaultdict
from decimal import Decimal

from django.db.models import Expression, F, QuerySet

from opsview import models as state
from opsview.selectors import (
    BILLABLE_EXPENSE,
    BILLABLE_MILESTONE,
    EXPENSE_VALUE,
    LABOR_COST,
    MILESTONE_VALUE,
    TIME_VALUE,
    ZERO,
    counted_expenses,
    counted_invoices,
    counted_milestones,
    counted_time,
    project_filters,
    total,
)
from reporting.kpis.formatting import Filters, Json, _clean, money, ratio
from reporting.kpis.periods import periods_ending_in

MARGIN_GROUPS = {
    "project": ("project__project_id", "project__name"),
    "practice": ("project__practice", "project__practice"),
    "client": ("project__client__client_id", "project__client__name"),
}
INVOICE_GROUPS = {"project": ("project__project_id", "project__name"),
                  "practice": ("project__practice", "project__practice"),
                  "client": ("client__client_id", "client__name")}


def margin(*, start: dt.date, end: dt.date, group_by: str = "project",
           filters: Filters | None = None) -> Json:
    """Earned revenue (by billing method) against labor cost, with billed and recognized
    revenue beside them, per group and currency."""
    filters = filters or {}
    key, label = MARGIN_GROUPS[group_by]
    periods = periods_ending_in(start, end)
    time = counted_time(filters).filter(work_date__range=(start, end))
    expenses = counted_expenses(filters).filter(BILLABLE_EXPENSE, incurred_on__range=(start, end))
    milestones = counted_milestones(filters).filter(BILLABLE_MILESTONE,
                                                    completed_on__range=(start, end))
    invoices = counted_invoices(filters).filter(issued_date__range=(start, end)).exclude(
        status="voided")
    revenue = state.RevenueRecognition.objects.filter(
        project_filters(filters), project__is_placeholder=False, period__in=periods)

    rows: defaultdict[tuple[str, str], defaultdict[str, Decimal]] = defaultdict(
        lambda: defaultdict(lambda: ZERO))
    names = {}

    def collect(queryset: QuerySet, key_field: str, label_field: str, currency_field: str,
                **aggregate: Expression) -> None:
        for row in (queryset.values(key=F(key_field), label=F(label_field),
                                    ccy=F(currency_field))
                    .annotate(**aggregate).order_by()):
            names[row["key"]] = row["label"]
            for name, value in row.items():
                if name not in ("key", "label", "ccy"):
                    rows[(row["key"], row["ccy"])][name] += value

    invoice_key, invoice_label = INVOICE_GROUPS[group_by]
    collect(time, key, label, "project__currency",
            earned=total(TIME_VALUE), labor_cost=total(LABOR_COST))
    collect(expenses, key, label, "currency", earned=total(EXPENSE_VALUE))
    collect(milestones, key, label, "project__currency", earned=total(MILESTONE_VALUE))
    collect(invoices, invoice_key, invoice_label, "currency", billed=total(F("amount")))
    collect(revenue, key, label, "currency", recognized=total(F("amount")))
    collect(revenue.filter(project__billing_method=state.Project.BillingMethod.FIXED_FEE),
            key, label, "currency", earned=total(F("amount")))
    result: list[Json] = []
    for (key_value, currency), f in rows.items():
        profit = f["earned"] - f["labor_cost"]
        result.append({
            "key": key_value, "name": names.get(key_value) or key_value, "currency": currency,
            "earned_revenue": money(f["earned"]), "labor_cost": money(f["labor_cost"]),
            "margin": money(profit), "margin_ratio": ratio(profit, f["earned"]),
            "billed_revenue": money(f["billed"]), "recognized_revenue": money(f["recognized"]),
        })
    result.sort(key=lambda r: (r["currency"], -Decimal(r["earned_revenue"]), str(r["key"])))
    return {"start": start.isoformat(), "end": end.isoformat(), "group_by": group_by,
            "filters": _clean(filters), "rows": result}
