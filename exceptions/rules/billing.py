"""The finance-operations family: approved items not posted in time, blocked invoices,
milestones not invoiced, and projects that bill without a complete billing set-up. Each of
them can hold up a period's billing, so its cases are due by that period's cut-off."""
import datetime as dt
from collections import defaultdict
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db.models import Count, F, Min, Q, QuerySet
from django.db.models.expressions import Combinable

from opsview import models as state
from opsview import selectors
from opsview.timeline import day_start, firm_zone

from ..models import CaseType, Severity
from .engine import Finding, parameter, project_fields
from .registry import rule

# The posting SLA's default: the environment's, read when used.
POSTING_SLA = {"posting_sla_hours": lambda: settings.POSTING_SLA_HOURS}
# A blocked invoice of a client or project not known yet is an unknown reference, not yet a
# case: the master record arriving later must open it, as in-order delivery would.
INVOICE_AND_MASTERS = ("opsview.Invoice", "opsview.Client", "opsview.Project")


def _posting_sla(case_type: str) -> dt.timedelta:
    return dt.timedelta(hours=parameter(case_type, "posting_sla_hours"))


@rule(CaseType.APPROVED_TIME_UNPOSTED, "Approved time not posted", queue="finance-ops",
      parameters=POSTING_SLA, blocks="project")
def approved_time_unposted(now: dt.datetime) -> list[Finding]:
    """Per project: time approved longer than the posting SLA ago and never posted. Began
    when the oldest such approval ran out of its SLA; its money is the value of all the
    project's approved, unposted time."""
    return _unposted(CaseType.APPROVED_TIME_UNPOSTED, selectors.unposted_time(),
                     selectors.TIME_VALUE, "project__currency", "entries", now)


@rule(CaseType.APPROVED_EXPENSE_UNPOSTED, "Approved expense not posted", queue="finance-ops",
      parameters=POSTING_SLA, blocks="project")
def approved_expense_unposted(now: dt.datetime) -> list[Finding]:
    """Likewise for billable expenses."""
    return _unposted(CaseType.APPROVED_EXPENSE_UNPOSTED, selectors.unposted_expenses(),
                     selectors.EXPENSE_VALUE, "currency", "expenses", now)


def _unposted(case_type: str, unposted: QuerySet, value: Combinable, currency: str, noun: str,
              now: dt.datetime) -> list[Finding]:
    sla = _posting_sla(case_type)
    overdue = set(unposted.filter(approved_at__lt=now - sla).values_list(
        "project_id", flat=True).distinct())
    rows = (unposted.filter(project_id__in=overdue)
            .values("project__project_id", "project__name", ccy=F(currency),
                    **project_fields("project__"))
            .annotate(items=Count("pk"), value=selectors.total(value),
                      oldest=Min("approved_at")).order_by())
    projects = defaultdict(list)
    for row in rows:
        projects[row["project__project_id"]].append(row)
    findings = []
    for project_id, per_currency in projects.items():
        main = max(per_currency, key=lambda r: r["value"])
        oldest = min(r["oldest"] for r in per_currency)
        items = sum(r["items"] for r in per_currency)
        findings.append(Finding(
            fingerprint=project_id, object_kind="project", object_id=project_id,
            title=f"{items} approved {noun} not posted to ERP on "
                  f"{main['project__name'] or project_id}",
            money=main["value"], currency=main["ccy"], client_id=main["c_client"] or "",
            project_id=project_id, practice=main["c_practice"],
            legal_entity=main["c_entity"], began_at=oldest + sla,
            severity=Severity.HIGH if now - oldest > 3 * sla else None,
            detail={noun: items, "oldest_approved_at": oldest.isoformat()}))
    return findings


@rule(CaseType.INVOICE_BLOCKED, "Invoice blocked", queue="finance-ops", severity=Severity.HIGH,
      blocks="invoice", wakes_on=INVOICE_AND_MASTERS, counts=False, batch_order=40)
def invoice_blocked() -> list[Finding]:
    """Invoices blocked now, of known clients and projects. Began with its first `blocked`
    event."""
    rows = list(state.Invoice.objects.filter(status="blocked", is_placeholder=False,
                                             client__is_placeholder=False)
                .exclude(project__is_placeholder=True)
                .values("pk", "invoice_id", "amount", "currency", "blocked_reason", "detail",
                        "blocked_at", client_key=F("client__client_id"),
                        project_key=F("project__project_id"),
                        project_practice=F("project__practice"),
                        project_entity=F("project__legal_entity")))
    first_blocked = dict(state.StageEvent.objects.filter(
        kind="invoice", stage="blocked", record_id__in=[r["pk"] for r in rows])
        .values("record_id").annotate(first=Min("at")).values_list("record_id", "first")
        .order_by())
    return [Finding(
        fingerprint=r["invoice_id"], object_kind="invoice", object_id=r["invoice_id"],
        title=f"Invoice {r['invoice_id']} blocked: {r['blocked_reason'] or 'other'}",
        money=r["amount"], currency=r["currency"], client_id=r["client_key"] or "",
        project_id=r["project_key"] or "", practice=r["project_practice"] or "",
        legal_entity=r["project_entity"] or "", severity=Severity.HIGH,
        began_at=first_blocked.get(r["pk"], r["blocked_at"]),
        detail={"blocked_reason": r["blocked_reason"], "detail": r["detail"][:500]})
        for r in rows]


@rule(CaseType.MILESTONE_NOT_INVOICED, "Milestone not invoiced", queue="finance-ops",
      parameters={"grace_days": 5}, blocks="milestone")
def milestone_not_invoiced(now: dt.datetime) -> list[Finding]:
    """Milestones of projects that bill them (milestone and fixed-fee projects) completed
    more than the grace period ago and not billed: not invoiced, or on an invoice not issued,
    voided, or never announced. Began at the start of `completed_on` + grace."""
    grace = dt.timedelta(days=parameter(CaseType.MILESTONE_NOT_INVOICED, "grace_days"))
    zone = firm_zone()
    rows = (selectors.counted_milestones()
            .filter(project__billing_method__in=["milestone", "fixed_fee"],
                    completed_on__lt=(now - grace).astimezone(zone).date())
            .exclude(selectors.BILLED_NOW)
            .values("milestone_id", "name", "amount", "completed_on", "project__project_id",
                    **project_fields("project__")))
    return [Finding(
        fingerprint=r["milestone_id"], object_kind="milestone", object_id=r["milestone_id"],
        title=f"{r['name'] or r['milestone_id']} of {r['project__project_id']} completed "
              f"{r['completed_on']}, not invoiced", money=r["amount"], currency=r["c_currency"],
        client_id=r["c_client"] or "", project_id=r["project__project_id"],
        practice=r["c_practice"], legal_entity=r["c_entity"],
        began_at=day_start(r["completed_on"], zone) + grace,
        detail={"completed_on": r["completed_on"].isoformat()}) for r in rows]


@rule(CaseType.MISSING_BILLING_SETUP, "Missing billing set-up", queue="delivery-ops",
      blocks="project")
def missing_billing_setup() -> list[Finding]:
    """Active and on-hold projects that bill without a complete billing set-up (a rate card
    for time and materials, a PO where required). Began at the earliest approval of billable
    time or expense on it, else its first upsert; its money is the value of its approved
    (milestones: completed) items not billed, items in billing included."""
    projects = (state.Project.objects.filter(is_placeholder=False)
                .exclude(billing_method__in=selectors.NOT_BILLING)
                .exclude(status=state.Project.Status.CLOSED)
                .exclude(state.billing_setup_complete_q()))
    values: defaultdict[int, defaultdict[str, Decimal]] = defaultdict(
        lambda: defaultdict(Decimal))
    earliest: dict[int, dt.datetime] = {}
    unbilled = selectors.BILLED_NOW
    for items, value, currency, billable in (
            (selectors.counted_time(), selectors.TIME_VALUE, F("project__currency"),
             Q(billable=True)),
            (selectors.counted_expenses(), selectors.EXPENSE_VALUE, F("currency"),
             selectors.BILLABLE_EXPENSE),
            (selectors.counted_milestones(), selectors.MILESTONE_VALUE, F("project__currency"),
             None)):
        for row in (items.filter(project__in=projects).exclude(unbilled)
                    .values("project_id", ccy=currency)
                    .annotate(value_=selectors.total(value)).order_by()):
            values[row["project_id"]][row["ccy"]] += row["value_"]
        if billable is not None:
            for project_pk, first in (items.filter(billable, project__in=projects,
                                                   approved_at__isnull=False)
                                      .values("project_id").annotate(first=Min("approved_at"))
                                      .values_list("project_id", "first").order_by()):
                earliest[project_pk] = min(first, earliest.get(project_pk, first))
    findings = []
    # values() with annotations the stubs cannot name: plain mappings.
    rows: Iterable[Mapping[str, Any]] = projects.values(
        "pk", "project_id", "name", "billing_method", "rate_card_id", "po_required", "po_number",
        "first_event_at", "version_time", **project_fields())
    for p in rows:
        missing = [what for what, absent in (
            ("rate card", p["billing_method"] == selectors.T_AND_M and not p["rate_card_id"]),
            ("PO", p["po_required"] and not p["po_number"])) if absent]
        by_currency: Mapping[str, Decimal] = values.get(p["pk"], {})
        main_currency: str = (max(by_currency, key=lambda c: by_currency[c]) if by_currency
                              else p["c_currency"])
        findings.append(Finding(
            fingerprint=p["project_id"], object_kind="project", object_id=p["project_id"],
            title=f"{p['name'] or p['project_id']}: no {' and no '.join(missing)}",
            money=by_currency.get(main_currency, Decimal(0)), currency=main_currency,
            client_id=p["c_client"] or "", project_id=p["project_id"],
            practice=p["c_practice"], legal_entity=p["c_entity"],
            began_at=earliest.get(p["pk"]) or p["first_event_at"] or p["version_time"],
            detail={"missing": missing}))
    return findings
