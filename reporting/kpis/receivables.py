"""Receivables: open AR and DSO as of a date."""
import datetime as dt

from django.db.models import F, Q

from opsview.selectors import counted_invoices, total
from reporting.kpis.formatting import Filters, Json, _clean, money
from reporting.kpis.periods import _by_currency


def receivables(*, as_of: dt.date, filters: Filters | None = None) -> Json:
    """Open AR and DSO as of the end of a date: invoices issued by then, not paid and not
    voided by then."""
    not_voided = Q(voided_date__isnull=True) | Q(voided_date__gt=as_of)
    invoices = counted_invoices(filters).filter(not_voided, issued_date__lte=as_of)
    since = as_of - dt.timedelta(days=89)
    rows = _by_currency(
        invoices, "currency",
        open_ar=total(F("amount"), Q(paid_date__isnull=True) | Q(paid_date__gt=as_of)),
        issued_90d=total(F("amount"), Q(issued_date__gte=since)),
    )
    return {
        "as_of": as_of.isoformat(), "filters": _clean(filters),
        "currencies": {
            currency: {"open_ar": money(r["open_ar"]), "issued_90d": money(r["issued_90d"]),
                       "dso_days": None if not r["issued_90d"]
                       else round(float(r["open_ar"] / r["issued_90d"] * 90), 1)}
            for currency, r in sorted(rows.items()) if currency
        },
    }
