"""Human labels for the codes the triage pages show: case types, statuses, resolution codes,
blocked reasons, SLA states. A code without its own label reads as a sentence ("at_risk" →
"At risk")."""

from .rules.registry import REGISTRY

# Case types are labelled where their rules are declared (exceptions.rules).
LABELS = {
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


def human(code: object) -> str:
    """The label of a code: a case type's declared one, this table's, else the code as a
    sentence."""
    code = str(code or "")
    declared = REGISTRY.get(code)
    if declared is not None:
        return declared.label
    return LABELS.get(code) or code.replace("_", " ").capitalize()
