"""Exception rules: conditions in the business state that become owned cases.

Each rule is declared once, beside its finder, in its family's module (`sync`, `billing`,
`clients`) with `registry.rule`; the machinery they share is in `engine`. This package runs
them: the event-driven rules after each processed batch (only those the batch can have
changed) and every rule over the whole state from beat, both dispatched from the registry.
"""
import datetime as dt
import logging
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

from django.utils import timezone

from opsview.rhythm import learn_rhythms

from .. import services
from ..escalation import sla_sweep

# Importing a family declares its rules.
from . import billing, clients, sync
from .billing import (
    approved_expense_unposted,
    approved_time_unposted,
    invoice_blocked,
    milestone_not_invoiced,
    missing_billing_setup,
)
from .clients import client_groups, duplicate_client, normalize_name
from .engine import (
    LOCK_NAMESPACE,
    UPDATABLE,
    Finding,
    due_by_cutoffs,
    exclusive,
    parameter,
    reconcile,
    route,
    rule_setting,
)
from .registry import REGISTRY, Rule, Run, blocking, rule
from .sync import (
    EVIDENCE,
    MONEY_OBJECTS,
    PLACEHOLDER_KINDS,
    dead_letter,
    reconciliation_gap,
    shows_gap,
    stale_feed,
    sync_failed,
    unknown_reference,
)

# The order rules are evaluated in: these families in this order, each in the order it
# declares its rules (import order, which tools may sort, decides nothing).
FAMILIES = (sync, billing, clients)
_family = {family.__name__: index for index, family in enumerate(FAMILIES)}
_ordered = sorted(REGISTRY.values(), key=lambda declared: _family[declared.find.__module__])
REGISTRY.clear()
REGISTRY.update((declared.code, declared) for declared in _ordered)

__all__ = [
    "BLOCKING", "EVIDENCE", "LOCK_NAMESPACE", "MONEY_OBJECTS", "PLACEHOLDER_KINDS", "REGISTRY",
    "TIME_RULES", "UPDATABLE", "Finding", "Rule", "Run", "approved_expense_unposted",
    "approved_time_unposted", "blocking", "client_groups", "dead_letter", "due_by_cutoffs",
    "duplicate_client", "evaluate_time_rules", "exclusive", "invoice_blocked",
    "milestone_not_invoiced", "missing_billing_setup", "normalize_name", "on_batch_processed",
    "parameter", "reconcile", "reconciliation_gap", "route", "rule", "rule_setting",
    "shows_gap", "stale_feed", "sync_failed", "unknown_reference",
]

log = logging.getLogger(__name__)

# Derived from the declarations: {case type: object kind whose period's billing it blocks}
# and {case type: its finder over the whole state, given the moment}.
BLOCKING: dict[str, str] = blocking()
TIME_RULES: dict[str, Callable[[dt.datetime], list[Finding]]] = {
    code: declared.find_at for code, declared in REGISTRY.items()}


def on_batch_processed(changes: Any) -> bool:
    """Event-driven rules, run after each processed inbox batch (`changes`, an
    ingestion.pipeline.BatchChanges); only those the batch can have changed. Each runs on
    its own: one failing is logged and stops no other. True when all of them ran."""
    now, ran = timezone.now(), True
    for case_type, find, options in _event_driven(changes, now):
        try:
            reconcile(case_type, find, now=now, **options)
        except Exception:
            log.exception("event-driven rule %s failed for a batch", case_type)
            ran = False
    return ran


def _event_driven(changes: Any, now: dt.datetime) -> Iterator[tuple[str, Callable, dict]]:
    """(case type, finder, reconcile options) of each rule this batch can have changed."""
    for declared in sorted(REGISTRY.values(), key=lambda declared: declared.batch_order):
        for run in declared.runs(changes, now):
            yield declared.code, run.find, {"scope": run.scope, "count": run.count}


def evaluate_time_rules(now: dt.datetime | None = None) -> dict[str, Any]:
    """Every rule over the whole state (time-driven ones included), then the SLA sweep. One
    rule failing is logged and does not stop the others."""
    now = now or timezone.now()
    try:
        learn_rhythms(now)
    except Exception:
        log.exception("could not learn the flows' rhythms")
    results: dict[str, Any] = {}
    for case_type, find in TIME_RULES.items():
        try:
            results[case_type] = reconcile(case_type, partial(find, now), now=now,
                                           count=False)
        except Exception:
            log.exception("rule %s failed", case_type)
            results[case_type] = {"error": True}
    # Money at stake changes as the state does: open cases reaching a threshold are raised.
    results["severity_by_money"] = services.apply_money_thresholds(now=now)
    results["sla"] = sla_sweep(now)
    return results
