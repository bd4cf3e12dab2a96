"""The machinery every exception rule shares: findings, their reconciliation into cases,
routing, the per-type lock, due-by-cut-off dates, and the money helpers.

Each rule is one set-based query that yields findings (one per fingerprint). `reconcile`
turns a rule's findings into cases: new fingerprints open cases, known ones update (last
seen, times seen, money at stake), resolved ones whose condition is back reopen (a
regression), and open ones whose condition cleared resolve themselves — each with an audit
entry by the rule.

Reconciling a case type is serialized across workers (a PostgreSQL advisory lock per type;
SQLite serializes writers anyway), and the rule's query runs under that lock: otherwise a
worker whose findings predate another's commit could resolve the case the other just
opened, and the result would depend on the order batches were processed in.
"""
import datetime as dt
import zlib
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.db import connection, transaction
from django.db.models import F, Min, Q, QuerySet
from django.db.models.expressions import Combinable
from django.utils import timezone

from core.bulk import update_rows
from opsview import models as state
from opsview import selectors

from .. import services
from ..models import (
    Case,
    CaseEntry,
    Queue,
    ResolutionCode,
    RoutingRule,
    RuleSetting,
    fingerprint_key,
)
from ..signals import announce
from ..sla import Calendar, SlaState
from .registry import REGISTRY


@dataclass
class Finding:
    """One occurrence of a rule's condition: what its case says and is about."""

    fingerprint: str
    title: str
    object_kind: str
    object_id: str
    money: Decimal | None = None
    currency: str = ""
    client_id: str = ""
    project_id: str = ""
    practice: str = ""
    legal_entity: str = ""
    severity: str | None = None
    detail: dict = field(default_factory=dict)
    # When the business problem began (SPEC section 3); None: when the case opens.
    began_at: dt.datetime | None = None
    # The earliest period whose billing it blocks (YYYY-MM) and that period's cut-off.
    blocks_period: str = ""
    cutoff_at: dt.datetime | None = None


def rule_setting(case_type: str) -> RuleSetting:
    """The rule's setting (switch, severity, queue, parameters). A rule nobody configured
    gets one from its declaration — its default queue, else the first queue there is —
    saved, so the admin shows it from then on."""
    setting = RuleSetting.objects.select_related("queue").filter(case_type=case_type).first()
    if setting is not None:
        return setting
    declared = REGISTRY.get(case_type)
    queue = (declared and Queue.objects.filter(slug=declared.queue).first()) or (
        Queue.objects.order_by("pk").first()
        or Queue.objects.create(slug="triage", name="Triage"))
    if declared is None:  # not a declared rule: somewhere to land, nothing saved
        return RuleSetting(case_type=case_type, queue=queue)
    setting, _ = RuleSetting.objects.select_related("queue").get_or_create(
        case_type=case_type, defaults={"queue": queue, "severity": declared.severity,
                                       "parameters": declared.default_parameters()})
    return setting


def parameter(case_type: str, name: str) -> Any:
    """A rule's parameter: its setting's, else the default its declaration gives."""
    parameters = rule_setting(case_type).parameters
    if name in parameters:
        return parameters[name]
    default = REGISTRY[case_type].parameters[name]
    return default() if callable(default) else default


def route(case: Case, rules: list[RoutingRule]) -> tuple[Queue | None, Any]:
    """The queue and owner of the first routing rule matching the case (None, None: none)."""
    for rule in rules:
        if rule.matches(case):
            return rule.queue, rule.owner
    return None, None


# --- Reconciliation --------------------------------------------------------------------------
# Advisory-lock keys: (this namespace, a stable number per case type).
LOCK_NAMESPACE = 0x0B5E


@contextmanager
def exclusive(case_type: str) -> Iterator[None]:
    """A transaction in which no other worker reconciles `case_type`."""
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)",
                               [LOCK_NAMESPACE, zlib.crc32(case_type.encode()) & 0x7FFFFFFF])
        yield


def reconcile(case_type: str, find: Callable[[], list[Finding]], *,
              now: dt.datetime | None = None, scope: Q | None = None,
              count: bool = True) -> dict[str, int]:
    """Make the open cases of `case_type` (within `scope`, a Q on Case) match the findings
    that `find()` returns, computed under the type's lock."""
    now = now or timezone.now()
    with exclusive(case_type):
        return _reconcile(case_type, find(), now, scope, count)


def _reconcile(case_type: str, findings: list[Finding], now: dt.datetime, scope: Q | None,
               count: bool) -> dict[str, int]:
    open_in_scope = Case.objects.filter(type=case_type, status__in=Case.OPEN_STATES)
    if scope is not None:
        open_in_scope = open_in_scope.filter(scope)
    if not findings and not open_in_scope.exists():
        return {"opened": 0, "updated": 0, "resolved": 0}  # the common case, in one query
    setting = rule_setting(case_type)
    if not setting.enabled:
        findings = []
    if findings and case_type in REGISTRY and REGISTRY[case_type].blocks:
        due_by_cutoffs(case_type, findings)
    label = f"rule:{case_type}"
    wanted = {fingerprint_key(f.fingerprint): f for f in findings}
    known = {c.fingerprint: c for c in
             Case.objects.select_related("queue").filter(type=case_type,
                                                         fingerprint__in=list(wanted))}
    rules = list(RoutingRule.objects.filter(active=True).select_related("queue", "owner"))
    policies = services._policies()
    thresholds = services.money_thresholds()
    calendars: dict[int, Calendar] = {}
    created, updated, entries, reopened = [], [], [], []
    for fingerprint, finding in wanted.items():
        case = known.get(fingerprint)
        if case is None:
            case = Case(type=case_type, fingerprint=fingerprint, severity=finding.severity
                        or setting.severity, queue=setting.queue, first_seen_at=now,
                        last_seen_at=now, opened_at=now)
            _fill(case, finding, now)
            case.severity = services.severity_for_money(case.severity, case.money_at_stake,
                                                        case.currency, thresholds)
            queue, owner = route(case, rules)
            case.queue, case.owner = queue or setting.queue, owner
            services.refresh_sla(case, now, _calendar(case.queue, calendars), policies)
            created.append(case)
            continue
        before = [getattr(case, name) for name in UPDATABLE]
        _fill(case, finding, now)
        if count:  # an occurrence: event-driven rules see each one
            case.times_seen += 1
            case.last_seen_at = now
        if case.status == Case.Status.RESOLVED:  # the condition is back: a regression
            entries.append(services.entry(case, label, "reopened", field="status",
                                          from_value=Case.Status.RESOLVED,
                                          to_value=Case.Status.OPEN,
                                          comment="The condition came back.", at=now))
            case.status, case.resolution_code, case.resolved_at = Case.Status.OPEN, "", None
            case.opened_at, case.acknowledged_at, case.escalated_at = now, None, None
            case.waiting_business_seconds, case.sla_state = 0, SlaState.ON_TRACK
            case.reopened_count += 1
            _fill(case, finding, now)
            reopened.append(case)
        if (case.began_at != before[UPDATABLE.index("began_at")] or case.opened_at == now
                or case.cutoff_at != before[UPDATABLE.index("cutoff_at")]):
            services.refresh_sla(case, now, _calendar(case.queue, calendars), policies)
        if [getattr(case, name) for name in UPDATABLE] != before:
            updated.append(case)  # time-driven re-evaluation writes only what changed

    still_open = Case.objects.select_related("queue").filter(type=case_type,
                                                             status__in=Case.OPEN_STATES)
    if scope is not None:
        still_open = still_open.filter(scope)
    cleared = list(still_open.exclude(fingerprint__in=list(wanted)))
    for case in cleared:
        entries.append(services.entry(case, label, "resolved", field="status",
                                      from_value=case.status, to_value=Case.Status.RESOLVED,
                                      comment="The condition cleared.", at=now))
        case.status, case.resolution_code = Case.Status.RESOLVED, ResolutionCode.CLEARED
        case.resolved_at = now
        updated.append(case)

    Case.objects.bulk_create(created, batch_size=500)
    created = list(Case.objects.filter(type=case_type,
                                       fingerprint__in=[c.fingerprint for c in created]))
    entries += [services.entry(c, label, "opened", field="status",
                               to_value=Case.Status.OPEN,
                               comment=c.title, at=now) for c in created]
    update_rows(Case, updated, UPDATABLE)
    CaseEntry.objects.bulk_create(entries, batch_size=500)
    announce(created, "opened")
    announce(reopened, "reopened")
    announce(cleared, "resolved")
    return {"opened": len(created), "updated": len(updated) - len(cleared),
            "resolved": len(cleared)}


UPDATABLE = ["title", "money_at_stake", "currency", "client_id", "project_id", "practice",
             "legal_entity", "detail", "last_seen_at", "times_seen", "status", "resolution_code",
             "resolved_at", "opened_at", "began_at", "acknowledged_at", "escalated_at",
             "waiting_business_seconds", "sla_state", "reopened_count", "response_due_at",
             "resolution_due_at", "object_kind", "object_id", "blocks_period", "cutoff_at"]


def _fill(case: Case, finding: Finding, now: dt.datetime) -> None:
    case.title = finding.title[:300]
    case.object_kind, case.object_id = finding.object_kind[:255], finding.object_id[:255]
    # A problem cannot have begun after OpsView opened its case: clamped, so the age and
    # the resolution clock never start later than the response clock.
    case.began_at = min(finding.began_at or case.opened_at or now, case.opened_at or now)
    case.blocks_period, case.cutoff_at = finding.blocks_period, finding.cutoff_at
    case.money_at_stake = finding.money
    case.currency = finding.currency or ""
    for name in ("client_id", "project_id", "practice", "legal_entity"):
        setattr(case, name, (getattr(finding, name) or "")[:255])
    case.detail = finding.detail


def _calendar(queue: Queue, cache: dict[int, Calendar]) -> Calendar:
    if queue.pk not in cache:
        cache[queue.pk] = queue.calendar()
    return cache[queue.pk]


# --- Due by the cut-off ------------------------------------------------------------------------
# The case types that can block billing of a period declare what they are about (SPEC section
# 7, Period close): a project with unbilled items of the period, an invoice holding them, one
# of the period's milestones.
def due_by_cutoffs(case_type: str, findings: list[Finding]) -> None:
    """Give each finding the earliest period whose billing it blocks, and that period's
    cut-off (its legal entity's close calendar): the case is due by it at the latest."""
    from opsview.calendar import cutoff
    from opsview.periods import month_bounds

    ids = {f.object_id for f in findings}
    kind = REGISTRY[case_type].blocks
    if kind == "project":
        # Unbilled items of a billing population: exactly the open WIP cells.
        earliest = dict(state.WipCell.objects.filter(
            end_day=state.OPEN_END, items__gt=0, project__project_id__in=ids)
            .values("project__project_id").annotate(first=Min("on_date"))
            .values_list("project__project_id", "first").order_by())
    elif kind == "invoice":
        earliest = {}
        for model, date_field in ((state.TimeEntry, "work_date"),
                                  (state.Expense, "incurred_on"),
                                  (state.Milestone, "completed_on")):
            for invoice_id, first in (model.objects.filter(invoice__invoice_id__in=ids)
                                      .values("invoice__invoice_id")
                                      .annotate(first=Min(date_field))
                                      .values_list("invoice__invoice_id", "first").order_by()):
                if first and (invoice_id not in earliest or first < earliest[invoice_id]):
                    earliest[invoice_id] = first
    else:
        earliest = dict(state.Milestone.objects.filter(milestone_id__in=ids).values_list(
            "milestone_id", "completed_on"))
    cutoffs = {}
    for finding in findings:
        first = earliest.get(finding.object_id)
        if first is None:
            continue
        _, last_day = month_bounds(first)
        key = (last_day, finding.legal_entity)
        if key not in cutoffs:
            cutoffs[key] = cutoff(last_day, finding.legal_entity)[1]
        finding.blocks_period, finding.cutoff_at = first.strftime("%Y-%m"), cutoffs[key]


# --- Helpers of the finders -----------------------------------------------------------------
def project_fields(prefix: str = "") -> dict[str, F]:
    """The case fields of a project (its client, practice, entity, currency) as
    annotations on a query of `prefix`-related rows."""
    # Prefixed names: an annotation may not shadow a model field.
    return {"c_client": F(f"{prefix}client__client_id"), "c_practice": F(f"{prefix}practice"),
            "c_entity": F(f"{prefix}legal_entity"), "c_currency": F(f"{prefix}currency")}


def money_for_objects(findings: list[Finding]) -> None:
    """Money at stake of the object a sync failure holds back: a time entry's value, an
    expense's, invoice's or milestone's amount, in its currency."""
    by_kind = defaultdict(list)
    for finding in findings:
        by_kind[finding.object_kind].append(finding)
    if by_kind["time_entry"]:
        _fill_money(by_kind["time_entry"], selectors.counted_time(statuses=list(
            state.TimeEntry.RANKS)), "time_entry_id", selectors.TIME_VALUE,
            F("project__currency"))
    if by_kind["expense"]:
        _fill_money(by_kind["expense"], selectors.counted_expenses(statuses=list(
            state.Expense.RANKS)), "expense_id", F("amount"), F("currency"))
    if by_kind["milestone"]:
        _fill_money(by_kind["milestone"], selectors.counted_milestones(statuses=list(
            state.Milestone.RANKS)), "milestone_id", F("amount"), F("project__currency"))
    invoices = by_kind["invoice"]
    if invoices:
        amounts = {r["invoice_id"]: r for r in state.Invoice.objects.filter(
            is_placeholder=False, invoice_id__in=[f.object_id for f in invoices]).values(
            "invoice_id", "amount", "currency", client_key=F("client__client_id"),
            project_key=F("project__project_id"), p_practice=F("project__practice"),
            p_entity=F("project__legal_entity"))}
        for finding in invoices:
            row = amounts.get(finding.object_id)
            if row:
                finding.money, finding.currency = row["amount"], row["currency"]
                finding.client_id = row["client_key"] or ""
                finding.project_id = row["project_key"] or ""
                finding.practice = row["p_practice"] or ""
                finding.legal_entity = row["p_entity"] or ""


def _fill_money(findings: list[Finding], items: QuerySet[Any], key_field: str,
                value: Combinable, currency: Combinable) -> None:
    rows = {r[key_field]: r for r in items.filter(
        **{f"{key_field}__in": [f.object_id for f in findings]}).values(
        key_field, "project__project_id", value_=value, ccy=currency,
        **project_fields("project__"))}
    for finding in findings:
        row = rows.get(finding.object_id)
        if row:
            finding.money, finding.currency = row["value_"], row["ccy"]
            finding.project_id, finding.client_id = row["project__project_id"], row["c_client"]
            finding.practice, finding.legal_entity = row["c_practice"], row["c_entity"]


