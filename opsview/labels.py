"""The words people read for the codes OpsView stores: one table for every page, chart and
table heading, so `missing_po` is "Missing purchase order" wherever it appears."""
import datetime as dt
import re

CODES = {
    # Why an invoice is blocked (Invoice.BlockedReason).
    "missing_po": "Missing purchase order",
    "missing_project_metadata": "Project details missing",
    "rate_mismatch": "Rate mismatch",
    "tax_configuration": "Tax set-up",
    "customer_mismatch": "Customer mismatch",
    "other": "Other",
    # Case types.
    "sync_failed": "Sync failed",
    "dead_letter": "Dead letter",
    "unknown_reference": "Unknown reference",
    "stale_feed": "Stale feed",
    "reconciliation_gap": "Reconciliation gap",
    "approved_time_unposted": "Approved time not posted",
    "approved_expense_unposted": "Approved expenses not posted",
    "invoice_blocked": "Invoice blocked",
    "milestone_not_invoiced": "Milestone not invoiced",
    "missing_billing_setup": "Billing set-up missing",
    "duplicate_client": "Possible duplicate client",
    # Resolution codes and case states.
    "fixed": "Fixed",
    "fixed_upstream": "Fixed in the source system",
    "duplicate": "Duplicate",
    "not_a_problem": "Not a problem",
    "distinct": "Distinct records",
    "open": "Open", "acknowledged": "Acknowledged", "waiting": "Waiting", "resolved": "Resolved",
    "ignored": "Ignored",
    "on_track": "On track", "at_risk": "At risk", "breached": "Breached",
    # Items and their stages.
    "time_entry": "Time entry", "expense": "Expense", "milestone": "Milestone",
    "invoice": "Invoice", "fixed_fee": "Fixed fee",
    "time_and_materials": "Time and materials", "non_billable": "Non-billable",
    "on_hold": "On hold", "active": "Active", "closed": "Closed",
    "legal_entity": "Legal entity",
}


def label(code: object) -> str:
    """'missing_po' → 'Missing purchase order'; an unknown code → 'Some code'."""
    code = "" if code is None else str(code)
    return CODES.get(code) or code.replace("_", " ").capitalize()


CODE_IN_TEXT = re.compile(r"\b[a-z]+(?:_[a-z]+)+\b")


def words(text: object) -> str:
    """Text written by the rules ('Invoice I2 blocked: rate_mismatch') with the codes in it
    as words ('Invoice I2 blocked: rate mismatch')."""
    return CODE_IN_TEXT.sub(lambda m: label(m.group()).lower() if m.group() in CODES
                            else m.group(), str(text or ""))


def readable_time(value: dt.datetime | dt.date | str | None) -> str:
    """An ISO date-time (string or datetime) → '4 Sep 2026, 18:01' in the site's time zone;
    a date → '4 Sep 2026'; '—' when missing."""
    from django.utils import timezone

    if value in (None, ""):
        return "—"
    if isinstance(value, str):
        text = value
        if len(text) == 10:
            return readable_date(text)
        try:
            value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            return text
    if isinstance(value, dt.datetime):
        if timezone.is_aware(value):
            value = timezone.localtime(value)
        return f"{value.day} {value:%b %Y, %H:%M}"
    return readable_date(value)


def readable_date(value: dt.datetime | dt.date | str | None) -> str:
    """'2026-09-04' → '4 Sep 2026'; a date-time → its readable_time."""
    if isinstance(value, str) and len(value) == 10:
        text = value
        try:
            value = dt.date.fromisoformat(text)
        except ValueError:
            return text
    if isinstance(value, dt.datetime):
        return readable_time(value)
    if isinstance(value, dt.date):
        return f"{value.day} {value:%b %Y}"
    return "—" if value in (None, "") else str(value)
