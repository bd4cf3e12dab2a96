"""Human labels for the codes the triage pages show: case types, statuses, resolution codes,
blocked reasons, SLA states. A code without its own label reads as a sentence ("at_risk" →
"At risk")."""

LABELS = {
    # Case types
    "sync_failed": "Sync failed", "dead_letter": "Dead letter",
    "unknown_reference": "Unknown reference", "stale_feed": "Stale feed",
    "reconciliation_gap": "Reconciliation gap",
    "approved_time_unposted": "Approved time not posted",
    "approved_expense_unposted": "Approved expense not posted",
    "invoice_blocked": "Invoice blocked", "milestone_not_invoiced": "Milestone not invoiced",
    "missing_billing_setup": "Missing billing set-up", "duplicate_client": "Duplicate client",
    # Resolution codes
    "fixed": "Fixed", "fixed_upstream": "Fixed upstream", "duplicate": "Duplicate",
    "not_a_problem": "Not a problem", "distinct": "Distinct (not duplicates)",
    "cleared": "Cleared by itself",
    # Invoice blocked reasons
    "missing_po": "Missing PO", "missing_project_metadata": "Missing project metadata",
    "rate_mismatch": "Rate mismatch", "tax_configuration": "Tax configuration",
    "customer_mismatch": "Customer mismatch",
    # SLA states
    "on_track": "On track", "at_risk": "At risk", "breached": "Breached", "paused": "Paused",
}

CURRENCY_SYMBOLS = {"USD": "$", "EUR": "€", "GBP": "£", "JPY": "¥", "INR": "₹"}


def human(code):
    code = str(code or "")
    return LABELS.get(code) or code.replace("_", " ").capitalize()
