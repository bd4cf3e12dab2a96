"""Exception rules: conditions in the business state that become owned cases.

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
import logging
import re
import zlib
from collections import defaultdict
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Count, F, Max, Min, OuterRef, Q, Subquery
from django.utils import timezone

from core.bulk import update_rows
from ingestion.models import InboxEvent, Source
from opsview import models as state
from opsview import selectors
from opsview.rhythm import expected_silence, learn_rhythms
from opsview.timeline import day_start, firm_zone

from . import services
from .models import Case, CaseEntry, Queue, RoutingRule, RuleSetting, fingerprint_key
from .signals import announce

log = logging.getLogger(__name__)


@dataclass
class Finding:
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


def _setting(case_type):
    setting = RuleSetting.objects.select_related("queue").filter(case_type=case_type).first()
    if setting is None:  # a rule nobody configured still lands somewhere
        queue = Queue.objects.order_by("pk").first() or Queue.objects.create(
            slug="triage", name="Triage")
        setting = RuleSetting(case_type=case_type, queue=queue)
    return setting


def route(case, rules):
    for rule in rules:
        if rule.matches(case):
            return rule.queue, rule.owner
    return None, None


# --- Reconciliation --------------------------------------------------------------------------
# Advisory-lock keys: (this namespace, a stable number per case type).
LOCK_NAMESPACE = 0x0B5E


@contextmanager
def exclusive(case_type):
    """A transaction in which no other worker reconciles `case_type`."""
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)",
                               [LOCK_NAMESPACE, zlib.crc32(case_type.encode()) & 0x7FFFFFFF])
        yield


def reconcile(case_type, find, *, now=None, scope=None, count=True):
    """Make the open cases of `case_type` (within `scope`, a Q on Case) match the findings
    that `find()` returns, computed under the type's lock."""
    now = now or timezone.now()
    with exclusive(case_type):
        return _reconcile(case_type, find(), now, scope, count)


def _reconcile(case_type, findings, now, scope, count):
    open_in_scope = Case.objects.filter(type=case_type, status__in=Case.OPEN_STATES)
    if scope is not None:
        open_in_scope = open_in_scope.filter(scope)
    if not findings and not open_in_scope.exists():
        return {"opened": 0, "updated": 0, "resolved": 0}  # the common case, in one query
    setting = _setting(case_type)
    if not setting.enabled:
        findings = []
    if case_type in BLOCKING and findings:
        due_by_cutoffs(case_type, findings)
    label = f"rule:{case_type}"
    wanted = {fingerprint_key(f.fingerprint): f for f in findings}
    known = {c.fingerprint: c for c in
             Case.objects.select_related("queue").filter(type=case_type,
                                                         fingerprint__in=list(wanted))}
    rules = list(RoutingRule.objects.filter(active=True).select_related("queue", "owner"))
    policies = services._policies()
    thresholds = services.money_thresholds()
    calendars = {}
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
                                          from_value="resolved", to_value="open",
                                          comment="The condition came back.", at=now))
            case.status, case.resolution_code, case.resolved_at = Case.Status.OPEN, "", None
            case.opened_at, case.acknowledged_at, case.escalated_at = now, None, None
            case.waiting_business_seconds, case.sla_state = 0, "on_track"
            case.reopened_count += 1
            _fill(case, finding, now)
            reopened.append(case)
        if (case.began_at != before[UPDATABLE.index("began_at")] or case.opened_at == now
                or case.cutoff_at != before[UPDATABLE.index("cutoff_at")]):
            services.refresh_sla(case, now, _calendar(case.queue, calendars), policies)
        if [getattr(case, name) for name in UPDATABLE] != before:
            updated.append(case)  # time-driven re-evaluation writes only what changed

    cleared = Case.objects.select_related("queue").filter(type=case_type,
                                                          status__in=Case.OPEN_STATES)
    if scope is not None:
        cleared = cleared.filter(scope)
    cleared = [c for c in cleared.exclude(fingerprint__in=list(wanted))]
    for case in cleared:
        entries.append(services.entry(case, label, "resolved", field="status",
                                      from_value=case.status, to_value="resolved",
                                      comment="The condition cleared.", at=now))
        case.status, case.resolution_code, case.resolved_at = "resolved", "cleared", now
        updated.append(case)

    Case.objects.bulk_create(created, batch_size=500)
    created = list(Case.objects.filter(type=case_type,
                                       fingerprint__in=[c.fingerprint for c in created]))
    entries += [services.entry(c, label, "opened", field="status", to_value="open",
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


def _fill(case, finding, now):
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


def _calendar(queue, cache):
    if queue.pk not in cache:
        cache[queue.pk] = queue.calendar()
    return cache[queue.pk]


# --- Due by the cut-off ------------------------------------------------------------------------
# The case types that can block billing of a period, and what they are about (SPEC section 7,
# Period close): a project with unbilled items of the period, an invoice holding them, one of
# the period's milestones.
BLOCKING = {"approved_time_unposted": "project", "approved_expense_unposted": "project",
            "missing_billing_setup": "project", "invoice_blocked": "invoice",
            "milestone_not_invoiced": "milestone"}


def due_by_cutoffs(case_type, findings):
    """Give each finding the earliest period whose billing it blocks, and that period's
    cut-off (its legal entity's close calendar): the case is due by it at the latest."""
    from opsview.calendar import cutoff
    from opsview.periods import month_bounds

    ids = {f.object_id for f in findings}
    kind = BLOCKING[case_type]
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


# --- The rules -------------------------------------------------------------------------------
def _project_fields(prefix=""):
    # Prefixed names: an annotation may not shadow a model field.
    return {"c_client": F(f"{prefix}client__client_id"), "c_practice": F(f"{prefix}practice"),
            "c_entity": F(f"{prefix}legal_entity"), "c_currency": F(f"{prefix}currency")}


# The object's own evidence that a failed sync has since arrived (SPEC section 3): progress
# toward the target only — a void or a reversal is not.
EVIDENCE = {
    "time_entry": (state.TimeEntry, "time_entry_id", ("posted", "invoiced")),
    "expense": (state.Expense, "expense_id", ("posted", "invoiced")),
    "invoice": (state.Invoice, "invoice_id", ("issued", "paid")),
    "milestone": (state.Milestone, "milestone_id", ("invoiced",)),
}


def sync_failed(keys=None):
    """Objects whose last failure is later than their last success and than their own
    evidence of arrival. keys: {(flow, object_type, object_id)} to look at (None: all)."""
    attempts = state.SyncAttempt.objects.all()
    if keys is not None:
        if not keys:
            return []
        attempts = attempts.filter(object_id__in={k[2] for k in keys})
    # The latest success of each failed object, looked up by the (flow, object) index rather
    # than aggregating every success there is.
    last_ok = (state.SyncAttempt.objects
               .filter(flow=OuterRef("flow"), object_type=OuterRef("object_type"),
                       object_id=OuterRef("object_id"), succeeded=True)
               .order_by("-occurred_at").values("occurred_at")[:1])
    failures = (attempts.filter(succeeded=False)
                .values("flow", "object_type", "object_id")
                .annotate(last_failed=Max("occurred_at"), last_ok=Subquery(last_ok)).order_by())
    candidates = {}
    for row in failures:
        key = (row["flow"], row["object_type"], row["object_id"])
        if keys is not None and key not in keys:
            continue
        if row["last_ok"] is None or row["last_ok"] < row["last_failed"]:
            candidates[key] = row
    evidence = _arrival_evidence(candidates)
    findings = []
    runs = _failure_runs(candidates, evidence)
    for key, row in candidates.items():
        cleared = max(filter(None, [row["last_ok"], evidence.get(key[1:])]), default=None)
        if cleared is not None and cleared > row["last_failed"]:
            continue  # the object arrived after its last failure
        run = runs[key]
        flow, object_type, object_id = key
        findings.append(Finding(
            fingerprint="|".join(key), object_kind=object_type or "object",
            object_id=object_id, began_at=run["began_at"],
            title=f"{flow}: {object_type} {object_id} failed to sync ({run['code']})",
            severity="high" if run["failures"] >= 3 else None,
            detail={"flow": flow, "object_type": object_type, "object_id": object_id,
                    "error_code": run["code"], "error_message": run["message"][:500],
                    "failures": run["failures"]}))
    _money_for_objects(findings)
    return findings


def _arrival_evidence(keys):
    """{(object_type, object_id): latest event time of the object's own progress}."""
    result = {}
    by_type = defaultdict(set)
    for _, object_type, object_id in keys:
        if object_type in EVIDENCE:
            by_type[object_type].add(object_id)
    for object_type, object_ids in by_type.items():
        model, key_field, stages = EVIDENCE[object_type]
        pks = dict(model.objects.filter(**{f"{key_field}__in": object_ids})
                   .values_list("pk", key_field))
        for record_id, latest in (state.StageEvent.objects
                                  .filter(kind=model.KIND, record_id__in=pks, stage__in=stages)
                                  .values("record_id").annotate(latest=Max("at"))
                                  .values_list("record_id", "latest").order_by()):
            result[(object_type, pks[record_id])] = latest
    return result


def _failure_runs(candidates, evidence):
    """The current run of failures of each object: those after its last success or
    arrival. {key: {began_at, failures, code, message}}."""
    runs = {}
    if not candidates:
        return runs
    rows = (state.SyncAttempt.objects.filter(
        succeeded=False, object_id__in={k[2] for k in candidates})
        .values_list("flow", "object_type", "object_id", "occurred_at", "error_code",
                     "error_message").order_by("occurred_at", "pk"))
    for flow, object_type, object_id, occurred_at, code, message in rows:
        key = (flow, object_type, object_id)
        if key not in candidates:
            continue
        row = candidates[key]
        cleared = max(filter(None, [row["last_ok"], evidence.get(key[1:])]), default=None)
        if cleared is not None and occurred_at < cleared:
            continue  # before the last success or arrival: an earlier, settled run
        run = runs.setdefault(key, {"began_at": occurred_at, "failures": 0})
        run.update(failures=run["failures"] + 1, code=code, message=message)
    return runs


def _money_for_objects(findings):
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


def _fill_money(findings, items, key_field, value, currency):
    rows = {r[key_field]: r for r in items.filter(
        **{f"{key_field}__in": [f.object_id for f in findings]}).values(
        key_field, "project__project_id", value_=value, ccy=currency,
        **_project_fields("project__"))}
    for finding in findings:
        row = rows.get(finding.object_id)
        if row:
            finding.money, finding.currency = row["value_"], row["ccy"]
            finding.project_id, finding.client_id = row["project__project_id"], row["c_client"]
            finding.practice, finding.legal_entity = row["c_practice"], row["c_entity"]


def _error_signature(errors):
    fields = sorted({str(e).split(":", 1)[0] for e in errors or []})
    return ",".join(fields)[:200] or "unknown"


def dead_letter():
    groups = defaultdict(list)
    for pk, slug, event_type, errors, received_at in (
            InboxEvent.objects.filter(status=InboxEvent.Status.DEAD)
            .values_list("pk", "source__slug", "type", "errors", "received_at")):
        groups[(slug, event_type or "(no type)", _error_signature(errors))].append(
            (pk, errors, received_at))
    return [Finding(
        fingerprint="|".join(key), object_kind="source", object_id=key[0],
        title=f"{len(rows)} dead letter{'s' if len(rows) > 1 else ''} from {key[0]}: "
              f"{key[1]} ({key[2]})",
        began_at=min(received for _, _, received in rows),
        detail={"inbox_ids": [pk for pk, _, _ in rows[:200]], "count": len(rows),
                "errors": rows[0][1][:10]}) for key, rows in groups.items()]


PLACEHOLDER_KINDS = [("project", "opsview.Project", "project_id"),
                     ("person", "opsview.Person", "person_id"),
                     ("client", "opsview.Client", "client_id"),
                     ("invoice", "opsview.Invoice", "invoice_id")]


def unknown_reference(touched=None):
    """Placeholders: all of them, or those among `touched` ({model label: pks}). Each began
    with the first event that named it; its money is the value of the items naming it, where
    that can be told (an unknown project's billing method is unknown too)."""
    from django.apps import apps

    findings = []
    for kind, label, key in PLACEHOLDER_KINDS:
        placeholders = apps.get_model(label).objects.filter(is_placeholder=True)
        if touched is not None:
            placeholders = placeholders.filter(pk__in=touched.get(label, ()))
        rows = list(placeholders.values_list("pk", key, "placeholder_since"))
        money = _placeholder_money(kind, [pk for pk, _, _ in rows])
        for pk, external_id, since in rows:
            amount, currency = money.get(pk, (None, ""))
            findings.append(Finding(
                fingerprint=f"{kind}:{external_id}", object_kind=kind, object_id=external_id,
                title=f"Events name {kind} {external_id}, which no "
                      f"{'invoice event' if kind == 'invoice' else 'master record'} has "
                      f"announced",
                project_id=external_id if kind == "project" else "",
                client_id=external_id if kind == "client" else "",
                money=amount, currency=currency, began_at=since,
                detail={"since": since.isoformat() if since else None}))
    return findings


def _placeholder_money(kind, pks):
    """{placeholder pk: (value, currency)} of the items naming it, in the currency holding
    the most value."""
    if not pks:
        return {}
    item_sets = {
        "invoice": [(state.TimeEntry.objects.filter(invoice_id__in=pks), "invoice_id",
                     selectors.TIME_VALUE, F("project__currency")),
                    (state.Expense.objects.filter(invoice_id__in=pks), "invoice_id",
                     selectors.EXPENSE_VALUE, F("currency")),
                    (state.Milestone.objects.filter(invoice_id__in=pks), "invoice_id",
                     selectors.MILESTONE_VALUE, F("project__currency"))],
        "person": [(state.TimeEntry.objects.filter(person_id__in=pks), "person_id",
                    selectors.TIME_VALUE, F("project__currency")),
                   (state.Expense.objects.filter(person_id__in=pks), "person_id",
                    selectors.EXPENSE_VALUE, F("currency"))],
        "client": [(state.TimeEntry.objects.filter(project__client_id__in=pks),
                    "project__client_id", selectors.TIME_VALUE, F("project__currency")),
                   (state.Expense.objects.filter(project__client_id__in=pks),
                    "project__client_id", selectors.EXPENSE_VALUE, F("currency"))],
    }.get(kind, [])
    sums = defaultdict(lambda: defaultdict(Decimal))
    for items, owner, value, currency in item_sets:
        for row in (items.exclude(status__in=["rejected", "reversed", "submitted"])
                    .values(owner_=F(owner), ccy=currency)
                    .annotate(value_=selectors.total(value)).order_by()):
            sums[row["owner_"]][row["ccy"] or ""] += row["value_"]
    return {pk: max(((v, c) for c, v in by_currency.items()), key=lambda vc: vc[0])
            for pk, by_currency in sums.items() if any(by_currency.values())}


def _touched_fingerprints(touched):
    from django.apps import apps

    fingerprints = []
    for kind, label, key in PLACEHOLDER_KINDS:
        if touched.get(label):
            fingerprints += [f"{kind}:{external_id}" for external_id in apps.get_model(label)
                             .objects.filter(pk__in=touched[label]).values_list(key, flat=True)]
    return fingerprints


# Object types (or batches of them, e.g. "expense_batch") that carry money.
MONEY_OBJECTS = ("time_entry", "expense", "milestone", "invoice")


def stale_feed(now, flows=True):
    """Sources silent past their threshold, and flows silent past their learned expected
    silence (`opsview.rhythm`). A flow carrying time, expenses, milestones or invoices is
    high severity; a silent source is high (it carries the business events)."""
    findings = []
    for source in Source.objects.filter(enabled=True, last_event_at__isnull=False):
        silent = now - source.last_event_at
        limit = dt.timedelta(minutes=source.stale_after_minutes)
        if silent > limit:
            findings.append(Finding(
                fingerprint=f"source:{source.slug}", object_kind="source", object_id=source.slug,
                title=f"No events from {source.slug} for {_duration(silent)}",
                began_at=source.last_event_at + limit, severity="high",
                detail={"last_event_at": source.last_event_at.isoformat(),
                        "expected_silence_seconds": round(limit.total_seconds())}))
    if flows:
        zone = firm_zone()
        rhythms = {r.flow: r for r in state.FlowRhythm.objects.all()}
        carries = set()
        for prefix in MONEY_OBJECTS:
            carries |= set(state.SyncAttempt.objects.filter(object_type__startswith=prefix)
                           .values_list("flow", flat=True).distinct())
        for flow, last in selectors.last_event_by_flow().items():
            limit = expected_silence(rhythms.get(flow), last, zone)
            if now - last > limit:
                findings.append(Finding(
                    fingerprint=f"flow:{flow}", object_kind="flow", object_id=flow,
                    title=f"Flow {flow} silent for {_duration(now - last)} (expected at most "
                          f"{_duration(limit)})",
                    began_at=last + limit, severity="high" if flow in carries else "medium",
                    detail={"last_event_at": last.isoformat(),
                            "expected_silence_seconds": round(limit.total_seconds())}))
    return findings


def _duration(delta):
    hours = delta.total_seconds() / 3600
    if hours < 1:
        return f"{delta.total_seconds() / 60:.0f} min"
    return f"{hours:.0f} h" if hours < 48 else f"{hours / 24:.0f} days"


# --- Reconciliation against OpsView's own counts --------------------------------------------
def shows_gap(source_count, target_count, own):
    """Whether a report disagrees with itself, or with OpsView's own counts."""
    if source_count != target_count:
        return True
    return own[0] is not None and (source_count, target_count) != own


def reconciliation_gap():
    """The latest report of each flow, object type and period that shows a gap — between
    its own counts, or against OpsView's (the systems see different worlds). It began with
    the earliest report of the unbroken run of reports showing a gap."""
    findings = []
    for report in state.ReconciliationReport.objects.all():
        own = selectors.opsview_counts(report.object_type, report.period_start, report.period_end)
        if not shows_gap(report.source_count, report.target_count, own):
            continue
        readings = list(state.ReconciliationReading.objects.filter(
            flow=report.flow, object_type=report.object_type,
            period_start=report.period_start, period_end=report.period_end)
            .order_by("-reported_at", "-event_id").values_list(
                "source_count", "target_count", "reported_at"))
        began = report.version_time
        for source_count, target_count, reported_at in readings:
            if not shows_gap(source_count, target_count, own):
                break
            began = reported_at
        gap = report.source_count - report.target_count
        sides = []
        if gap:
            sides.append(f"{gap} {report.object_type} missing in the target")
        if own[0] is not None and own != (report.source_count, report.target_count):
            sides.append("the report disagrees with OpsView's own counts (" + ", ".join(
                f"{label} {reported} against OpsView's {counted}"
                for label, reported, counted in (
                    ("approved", report.source_count, own[0]),
                    ("posted", report.target_count, own[1])) if reported != counted) + ")")
        findings.append(Finding(
            fingerprint=f"{report.flow}|{report.object_type}|{report.period_start}|"
                        f"{report.period_end}",
            object_kind="reconciliation",
            object_id=f"{report.flow}:{report.object_type}:{report.period_start}",
            title=f"{report.flow}: {'; '.join(sides)} in {report.period_start:%Y-%m-%d} – "
                  f"{report.period_end:%Y-%m-%d}",
            money=(abs(report.source_amount - report.target_amount)
                   if report.source_amount is not None and report.target_amount is not None
                   else None),
            severity="high" if abs(gap) > 50 else None, began_at=began,
            detail={"flow": report.flow, "object_type": report.object_type,
                    "source_count": report.source_count, "target_count": report.target_count,
                    "opsview_source_count": own[0], "opsview_target_count": own[1]}))
    return findings


# --- Finance operations ----------------------------------------------------------------------
def _posting_sla(case_type):
    return dt.timedelta(hours=_setting(case_type).parameters.get(
        "posting_sla_hours", settings.POSTING_SLA_HOURS))


def approved_time_unposted(now):
    """Per project: time approved longer than the posting SLA ago and never posted. Began
    when the oldest such approval ran out of its SLA; its money is the value of all the
    project's approved, unposted time."""
    return _unposted("approved_time_unposted", selectors.unposted_time(),
                     selectors.TIME_VALUE, "project__currency", "entries", now)


def approved_expense_unposted(now):
    """Likewise for billable expenses."""
    return _unposted("approved_expense_unposted", selectors.unposted_expenses(),
                     selectors.EXPENSE_VALUE, "currency", "expenses", now)


def _unposted(case_type, unposted, value, currency, noun, now):
    sla = _posting_sla(case_type)
    overdue = set(unposted.filter(approved_at__lt=now - sla).values_list(
        "project_id", flat=True).distinct())
    rows = (unposted.filter(project_id__in=overdue)
            .values("project__project_id", "project__name", ccy=F(currency),
                    **_project_fields("project__"))
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
            severity="high" if now - oldest > 3 * sla else None,
            detail={noun: items, "oldest_approved_at": oldest.isoformat()}))
    return findings


def invoice_blocked():
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
        legal_entity=r["project_entity"] or "", severity="high",
        began_at=first_blocked.get(r["pk"], r["blocked_at"]),
        detail={"blocked_reason": r["blocked_reason"], "detail": r["detail"][:500]})
        for r in rows]


def milestone_not_invoiced(now):
    """Milestones of projects that bill them (milestone and fixed-fee projects) completed
    more than the grace period ago and not billed: not invoiced, or on an invoice not issued,
    voided, or never announced. Began at the start of `completed_on` + grace."""
    grace = dt.timedelta(days=_setting("milestone_not_invoiced").parameters.get("grace_days", 5))
    zone = firm_zone()
    rows = (selectors.counted_milestones()
            .filter(project__billing_method__in=["milestone", "fixed_fee"],
                    completed_on__lt=(now - grace).astimezone(zone).date())
            .exclude(selectors.BILLED_NOW)
            .values("milestone_id", "name", "amount", "completed_on", "project__project_id",
                    **_project_fields("project__")))
    return [Finding(
        fingerprint=r["milestone_id"], object_kind="milestone", object_id=r["milestone_id"],
        title=f"{r['name'] or r['milestone_id']} of {r['project__project_id']} completed "
              f"{r['completed_on']}, not invoiced", money=r["amount"], currency=r["c_currency"],
        client_id=r["c_client"] or "", project_id=r["project__project_id"],
        practice=r["c_practice"], legal_entity=r["c_entity"],
        began_at=day_start(r["completed_on"], zone) + grace,
        detail={"completed_on": r["completed_on"].isoformat()}) for r in rows]


def missing_billing_setup():
    """Active and on-hold projects that bill without a complete billing set-up (a rate card
    for time and materials, a PO where required). Began at the earliest approval of billable
    time or expense on it, else its first upsert; its money is the value of its approved
    (milestones: completed) items not billed, items in billing included."""
    projects = (state.Project.objects.filter(is_placeholder=False)
                .exclude(billing_method__in=selectors.NOT_BILLING)
                .exclude(status=state.Project.Status.CLOSED)
                .exclude(state.billing_setup_complete_q()))
    values = defaultdict(lambda: defaultdict(Decimal))
    earliest = {}
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
    for p in projects.values("pk", "project_id", "name", "billing_method", "rate_card_id",
                             "po_required", "po_number", "first_event_at", "version_time",
                             **_project_fields()):
        missing = [what for what, absent in (
            ("rate card", p["billing_method"] == selectors.T_AND_M and not p["rate_card_id"]),
            ("PO", p["po_required"] and not p["po_number"])) if absent]
        by_currency = values.get(p["pk"], {})
        currency = max(by_currency, key=by_currency.get) if by_currency else p["c_currency"]
        findings.append(Finding(
            fingerprint=p["project_id"], object_kind="project", object_id=p["project_id"],
            title=f"{p['name'] or p['project_id']}: no {' and no '.join(missing)}",
            money=by_currency.get(currency, Decimal(0)), currency=currency,
            client_id=p["c_client"] or "", project_id=p["project_id"],
            practice=p["c_practice"], legal_entity=p["c_entity"],
            began_at=earliest.get(p["pk"]) or p["first_event_at"] or p["version_time"],
            detail={"missing": missing}))
    return findings


# --- Master data -----------------------------------------------------------------------------
SUFFIXES = re.compile(r"\b(inc|incorporated|corp|corporation|co|company|ltd|limited|llc|plc|"
                      r"gmbh|ag|sa|bv)\b")


def normalize_name(name):
    """'ACME Corporation, Inc.' and 'Acme Corp' both become 'acme'."""
    cleaned = re.sub(r"[^a-z0-9 ]", " ", name.lower())
    return " ".join(SUFFIXES.sub(" ", cleaned).split())


def client_groups(clients):
    """Clients linked by a shared normalized name or tax id, transitively: a list of sets
    of client ids (union–find over the links)."""
    parent = {c["client_id"]: c["client_id"] for c in clients}

    def root(client_id):
        while parent[client_id] != client_id:
            parent[client_id] = parent[parent[client_id]]
            client_id = parent[client_id]
        return client_id

    first_by_link = {}
    for c in clients:
        links = []
        if c["name"] and normalize_name(c["name"]):
            links.append(f"name:{normalize_name(c['name'])}")
        if c["tax_id"]:
            links.append(f"tax:{c['tax_id'].strip().upper()}")
        for link in links:
            other = first_by_link.setdefault(link, c["client_id"])
            parent[root(c["client_id"])] = root(other)
    groups = defaultdict(set)
    for client_id in parent:
        groups[root(client_id)].add(client_id)
    return [ids for ids in groups.values() if len(ids) > 1]


def duplicate_client():
    """One case per group of linked clients with at least two clients neither merged away
    nor marked distinct. Its fingerprint is the group's first client by receipt; it began
    when its second such client arrived."""
    clients = {c["client_id"]: c for c in state.Client.objects.filter(is_placeholder=False)
               .values("client_id", "name", "tax_id", "merged_into", "marked_distinct",
                       "first_received_at")}
    findings = []
    far_future = dt.datetime.max.replace(tzinfo=dt.timezone.utc)
    for ids in client_groups(list(clients.values())):
        by_receipt = sorted(ids, key=lambda i: (clients[i]["first_received_at"] or far_future,
                                                i))
        counted = [i for i in by_receipt
                   if not clients[i]["merged_into"] and not clients[i]["marked_distinct"]]
        if len(counted) < 2:
            continue
        first = by_receipt[0]
        findings.append(Finding(
            fingerprint=f"group:{first}", object_kind="client", object_id=first,
            title="Possible duplicate clients: " + ", ".join(
                clients[i]["name"] or i for i in counted),
            client_id=first, began_at=clients[counted[1]]["first_received_at"],
            detail={"client_ids": by_receipt, "counted": counted}))
    return findings


# --- Entry points ----------------------------------------------------------------------------
def _sync_keys_to_evaluate(changes):
    """The (flow, object type, object id) whose sync_failed case this batch may change: new
    failures, and the open cases of objects that just succeeded or just showed evidence."""
    keys = {(a.flow, a.object_type, a.object_id) for a in changes.sync_attempts
            if not a.succeeded}
    touched = Q(pk__in=[])
    succeeded = {(a.flow, a.object_type, a.object_id) for a in changes.sync_attempts
                 if a.succeeded}
    if succeeded:
        touched |= Q(object_id__in={k[2] for k in succeeded})
    for kind, pks in changes.staged.items():
        if kind in EVIDENCE and pks:
            model, key_field, _ = EVIDENCE[kind]
            touched |= Q(object_kind=kind, object_id__in=list(
                model.objects.filter(pk__in=pks).values_list(key_field, flat=True)))
    if succeeded or any(changes.staged.values()):
        for detail in Case.objects.filter(touched, type="sync_failed",
                                          status__in=Case.OPEN_STATES).values_list(
                "detail", flat=True):
            keys.add((detail.get("flow", ""), detail.get("object_type", ""),
                      detail.get("object_id", "")))
    return keys


def on_batch_processed(changes):
    """Event-driven rules, run after each processed inbox batch (`changes`, an
    ingestion.pipeline.BatchChanges); only those the batch can have changed. Each runs on
    its own: one failing is logged and stops no other. True when all of them ran."""
    now, ran = timezone.now(), True
    for case_type, find, options in _event_driven(changes, now):
        try:
            reconcile(case_type, find, now=now, **options)
        except Exception:  # noqa: BLE001 - the batch is announced again, later
            log.exception("event-driven rule %s failed for a batch", case_type)
            ran = False
    return ran


def _event_driven(changes, now):
    """(case type, finder, reconcile options) of each rule this batch can have changed."""
    keys = _sync_keys_to_evaluate(changes)
    if keys:
        scope = Q(fingerprint__in=[fingerprint_key("|".join(k)) for k in keys])
        yield "sync_failed", lambda: sync_failed(keys), {
            "scope": scope, "count": bool(changes.sync_attempts)}
    if changes.dead_letters_changed:  # new, or replayed
        yield "dead_letter", dead_letter, {"count": changes.dead}
    touched = changes.touched
    if any(touched.get(label) for _, label, _ in PLACEHOLDER_KINDS):
        yield "unknown_reference", lambda: unknown_reference(touched), {
            "count": False, "scope": Q(fingerprint__in=_touched_fingerprints(touched))}
    # A blocked invoice of a client or project not known yet is an unknown reference, not
    # yet a case: the master record arriving later must open it, as in-order delivery would.
    if any(touched.get(label) for label in ("opsview.Invoice", "opsview.Client",
                                            "opsview.Project")):
        yield "invoice_blocked", invoice_blocked, {"count": False}
    if touched.get("opsview.ReconciliationReport"):
        yield "reconciliation_gap", reconciliation_gap, {}
    if touched.get("opsview.Client"):
        yield "duplicate_client", duplicate_client, {"count": False}
    if changes.events:
        # An event arrived: a source that was stale is not any more; nor is a flow that
        # just reported.
        yield "stale_feed", lambda: stale_feed(now, flows=False), {
            "count": False, "scope": Q(fingerprint__startswith="source:")}
        flows = {a.flow for a in changes.sync_attempts}
        if flows:
            yield "stale_feed", lambda: [f for f in stale_feed(now)
                                         if f.fingerprint.startswith("flow:")], {
                "count": False, "scope": Q(fingerprint__in=[f"flow:{flow}" for flow in flows])}


TIME_RULES = {
    "sync_failed": lambda now: sync_failed(),
    "dead_letter": lambda now: dead_letter(),
    "unknown_reference": lambda now: unknown_reference(),
    "stale_feed": lambda now: stale_feed(now),
    "reconciliation_gap": lambda now: reconciliation_gap(),
    "approved_time_unposted": approved_time_unposted,
    "approved_expense_unposted": approved_expense_unposted,
    "invoice_blocked": lambda now: invoice_blocked(),
    "milestone_not_invoiced": milestone_not_invoiced,
    "missing_billing_setup": lambda now: missing_billing_setup(),
    "duplicate_client": lambda now: duplicate_client(),
}


def evaluate_time_rules(now=None):
    """Every rule over the whole state (time-driven ones included), then the SLA sweep. One
    rule failing is logged and does not stop the others."""
    now = now or timezone.now()
    try:
        learn_rhythms(now)
    except Exception:  # noqa: BLE001 - the rhythm is an input; stale detection falls back
        log.exception("could not learn the flows' rhythms")
    results = {}
    for case_type, find in TIME_RULES.items():
        try:
            results[case_type] = reconcile(case_type, lambda: find(now), now=now, count=False)
        except Exception:  # noqa: BLE001
            log.exception("rule %s failed", case_type)
            results[case_type] = {"error": True}
    from .escalation import sla_sweep

    # Money at stake changes as the state does: open cases reaching a threshold are raised.
    results["severity_by_money"] = services.apply_money_thresholds(now=now)
    results["sla"] = sla_sweep(now)
    return results
