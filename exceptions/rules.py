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
import re
import zlib
from collections import defaultdict
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Count, F, Max, Min, OuterRef, Q, Subquery, Sum
from django.utils import timezone

from ingestion.bulk import update_rows
from ingestion.models import InboxEvent, Source
from opsview import kpis
from opsview import models as state

from . import services
from .models import Case, CaseEntry, Queue, RoutingRule, RuleSetting


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
    label = f"rule:{case_type}"
    wanted = {f.fingerprint: f for f in findings}
    known = {c.fingerprint: c for c in
             Case.objects.select_related("queue").filter(type=case_type,
                                                         fingerprint__in=list(wanted))}
    rules = list(RoutingRule.objects.filter(active=True).select_related("queue", "owner"))
    policies = services._policies()
    calendars = {}
    created, updated, entries = [], [], []
    for fingerprint, finding in wanted.items():
        case = known.get(fingerprint)
        if case is None:
            case = Case(type=case_type, fingerprint=fingerprint, severity=finding.severity
                        or setting.severity, queue=setting.queue, first_seen_at=now,
                        last_seen_at=now, opened_at=now)
            _fill(case, finding)
            queue, owner = route(case, rules)
            case.queue, case.owner = queue or setting.queue, owner
            services.refresh_sla(case, now, _calendar(case.queue, calendars), policies)
            created.append(case)
            continue
        before = [getattr(case, name) for name in UPDATABLE]
        _fill(case, finding)
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
    return {"opened": len(created), "updated": len(updated) - len(cleared),
            "resolved": len(cleared)}


UPDATABLE = ["title", "money_at_stake", "currency", "client_id", "project_id", "practice",
             "legal_entity", "detail", "last_seen_at", "times_seen", "status", "resolution_code",
             "resolved_at", "opened_at", "acknowledged_at", "escalated_at",
             "waiting_business_seconds", "sla_state", "reopened_count", "response_due_at",
             "resolution_due_at", "object_kind", "object_id"]


def _fill(case, finding):
    case.title = finding.title[:300]
    case.object_kind, case.object_id = finding.object_kind, finding.object_id[:255]
    case.money_at_stake = finding.money
    case.currency = finding.currency or ""
    for name in ("client_id", "project_id", "practice", "legal_entity"):
        setattr(case, name, (getattr(finding, name) or "")[:255])
    case.detail = finding.detail


def _calendar(queue, cache):
    if queue.pk not in cache:
        cache[queue.pk] = queue.calendar()
    return cache[queue.pk]


# --- The ten rules ---------------------------------------------------------------------------
def _project_fields(prefix=""):
    # Prefixed names: an annotation may not shadow a model field.
    return {"c_client": F(f"{prefix}client__client_id"), "c_practice": F(f"{prefix}practice"),
            "c_entity": F(f"{prefix}legal_entity"), "c_currency": F(f"{prefix}currency")}


def sync_failed(keys=None):
    """Objects whose latest sync attempt failed. keys: {(flow, object_type, object_id)}."""
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
                .annotate(last_failed=Max("occurred_at"), failures=Count("pk"),
                          code=Max("error_code"), message=Max("error_message"),
                          last_ok=Subquery(last_ok)).order_by())
    findings = []
    for row in failures:
        key = (row["flow"], row["object_type"], row["object_id"])
        if keys is not None and key not in keys:
            continue
        if row["last_ok"] and row["last_ok"] > row["last_failed"]:
            continue
        findings.append(Finding(
            fingerprint="|".join(key), object_kind=row["object_type"] or "object",
            object_id=row["object_id"],
            title=f"{row['flow']}: {row['object_type']} {row['object_id']} failed to sync "
                  f"({row['code']})",
            severity="high" if row["failures"] >= 3 else None,
            detail={"flow": row["flow"], "error_code": row["code"],
                    "error_message": row["message"][:500], "failures": row["failures"]}))
    _money_for_objects(findings)
    return findings


def _money_for_objects(findings):
    """Money at stake of time entries and invoices a sync failure holds back."""
    entries = [f for f in findings if f.object_kind == "time_entry"]
    if entries:
        values = {r["time_entry_id"]: r for r in kpis.counted_time().filter(
            time_entry_id__in=[f.object_id for f in entries])
            .annotate(value=kpis.TIME_VALUE).values("time_entry_id", "value",
                                                    "project__project_id", **_project_fields(
                                                        "project__"))}
        for finding in entries:
            row = values.get(finding.object_id)
            if row:
                finding.money, finding.currency = row["value"], row["c_currency"]
                finding.project_id, finding.client_id = row["project__project_id"], row[
                    "c_client"]
                finding.practice, finding.legal_entity = row["c_practice"], row["c_entity"]
    invoices = [f for f in findings if f.object_kind == "invoice"]
    if invoices:
        amounts = {r["invoice_id"]: r for r in state.Invoice.objects.filter(
            invoice_id__in=[f.object_id for f in invoices]).values(
            "invoice_id", "amount", "currency", client_key=F("client__client_id"))}
        for finding in invoices:
            row = amounts.get(finding.object_id)
            if row:
                finding.money, finding.currency = row["amount"], row["currency"]
                finding.client_id = row["client_key"]


def _error_signature(errors):
    fields = sorted({str(e).split(":", 1)[0] for e in errors or []})
    return ",".join(fields)[:200] or "unknown"


def dead_letter():
    groups = defaultdict(list)
    for pk, slug, event_type, errors in (InboxEvent.objects.filter(status=InboxEvent.Status.DEAD)
                                         .values_list("pk", "source__slug", "type", "errors")):
        groups[(slug, event_type or "(no type)", _error_signature(errors))].append(
            (pk, errors))
    return [Finding(
        fingerprint="|".join(key), object_kind="source", object_id=key[0],
        title=f"{len(rows)} dead letter{'s' if len(rows) > 1 else ''} from {key[0]}: "
              f"{key[1]} ({key[2]})",
        detail={"inbox_ids": [pk for pk, _ in rows[:200]], "count": len(rows),
                "errors": rows[0][1][:10]}) for key, rows in groups.items()]


PLACEHOLDER_KINDS = [("project", "opsview.Project", "project_id"),
                     ("person", "opsview.Person", "person_id"),
                     ("client", "opsview.Client", "client_id")]


def unknown_reference(touched=None):
    """Placeholders: all of them, or those among `touched` ({model label: pks})."""
    from django.apps import apps

    findings = []
    for kind, label, key in PLACEHOLDER_KINDS:
        placeholders = apps.get_model(label).objects.filter(is_placeholder=True)
        if touched is not None:
            placeholders = placeholders.filter(pk__in=touched.get(label, ()))
        for external_id, since in placeholders.values_list(key, "placeholder_since"):
            findings.append(Finding(
                fingerprint=f"{kind}:{external_id}", object_kind=kind, object_id=external_id,
                title=f"Events name {kind} {external_id}, which no master record has created",
                project_id=external_id if kind == "project" else "",
                client_id=external_id if kind == "client" else "",
                detail={"since": since.isoformat() if since else None}))
    return findings


def _touched_fingerprints(touched):
    from django.apps import apps

    fingerprints = []
    for kind, label, key in PLACEHOLDER_KINDS:
        if touched.get(label):
            fingerprints += [f"{kind}:{external_id}" for external_id in apps.get_model(label)
                             .objects.filter(pk__in=touched[label]).values_list(key, flat=True)]
    return fingerprints


def stale_feed(now, flows=True):
    findings = []
    for source in Source.objects.filter(enabled=True, last_event_at__isnull=False):
        silent = now - source.last_event_at
        if silent > dt.timedelta(minutes=source.stale_after_minutes):
            findings.append(Finding(
                fingerprint=f"source:{source.slug}", object_kind="source", object_id=source.slug,
                title=f"No events from {source.slug} for {_duration(silent)}",
                detail={"last_event_at": source.last_event_at.isoformat()}))
    if flows:
        limit = dt.timedelta(minutes=settings.STALE_FLOW_MINUTES)
        for flow, last in (state.SyncAttempt.objects.values("flow")
                           .annotate(last=Max("occurred_at")).values_list("flow", "last")
                           .order_by()):
            if now - last > limit:
                findings.append(Finding(
                    fingerprint=f"flow:{flow}", object_kind="flow", object_id=flow,
                    title=f"Flow {flow} silent for {_duration(now - last)}",
                    detail={"last_event_at": last.isoformat()}))
    return findings


def _duration(delta):
    hours = delta.total_seconds() / 3600
    return f"{hours:.0f} h" if hours < 48 else f"{hours / 24:.0f} days"


def reconciliation_gap():
    return [Finding(
        fingerprint=f"{r.flow}|{r.object_type}|{r.period_start}|{r.period_end}",
        object_kind="reconciliation", object_id=f"{r.flow}:{r.object_type}:{r.period_start}",
        title=f"{r.flow}: {r.source_count - r.target_count} {r.object_type} missing in "
              f"{r.period_start:%Y-%m-%d} – {r.period_end:%Y-%m-%d}",
        money=(abs(r.source_amount - r.target_amount) if r.source_amount is not None
               and r.target_amount is not None else None),
        severity="high" if abs(r.source_count - r.target_count) > 50 else None,
        detail={"source_count": r.source_count, "target_count": r.target_count})
        for r in state.ReconciliationReport.objects.exclude(source_count=F("target_count"))]


def approved_time_unposted(now):
    hours = _setting("approved_time_unposted").parameters.get(
        "posting_sla_hours", settings.POSTING_SLA_HOURS)
    cutoff = now - dt.timedelta(hours=hours)
    rows = (kpis.counted_time(statuses=["approved"]).filter(approved_at__lt=cutoff)
            .values("project__project_id", "project__name", **_project_fields("project__"))
            .annotate(entries=Count("pk"), n_hours=Sum("hours"), value=Sum(kpis.TIME_VALUE),
                      oldest=Min("approved_at")).order_by())
    return [Finding(
        fingerprint=r["project__project_id"], object_kind="project",
        object_id=r["project__project_id"],
        title=f"{r['entries']} approved entries ({r['n_hours']} h) not posted to ERP on "
              f"{r['project__name'] or r['project__project_id']}",
        money=r["value"], currency=r["c_currency"], client_id=r["c_client"] or "",
        project_id=r["project__project_id"], practice=r["c_practice"],
        legal_entity=r["c_entity"],
        severity="high" if now - r["oldest"] > dt.timedelta(hours=3 * hours) else None,
        detail={"entries": r["entries"], "hours": str(r["n_hours"]),
                "oldest_approved_at": r["oldest"].isoformat()}) for r in rows]


def invoice_blocked():
    rows = (state.Invoice.objects.filter(status="blocked", client__is_placeholder=False)
            .exclude(project__is_placeholder=True)
            .values("invoice_id", "amount", "currency", "blocked_reason", "detail",
                    client_key=F("client__client_id"), project_key=F("project__project_id"),
                    project_practice=F("project__practice"),
                    project_entity=F("project__legal_entity")))
    return [Finding(
        fingerprint=r["invoice_id"], object_kind="invoice", object_id=r["invoice_id"],
        title=f"Invoice {r['invoice_id']} blocked: {r['blocked_reason'] or 'other'}",
        money=r["amount"], currency=r["currency"], client_id=r["client_key"] or "",
        project_id=r["project_key"] or "", practice=r["project_practice"] or "",
        legal_entity=r["project_entity"] or "", severity="high",
        detail={"blocked_reason": r["blocked_reason"], "detail": r["detail"][:500]})
        for r in rows]


def milestone_not_invoiced(now):
    grace = _setting("milestone_not_invoiced").parameters.get("grace_days", 5)
    rows = (kpis.counted_milestones(statuses=["completed"])
            .filter(completed_on__lt=now.date() - dt.timedelta(days=grace))
            .values("milestone_id", "name", "amount", "completed_on", "project__project_id",
                    **_project_fields("project__")))
    return [Finding(
        fingerprint=r["milestone_id"], object_kind="milestone", object_id=r["milestone_id"],
        title=f"{r['name'] or r['milestone_id']} of {r['project__project_id']} completed "
              f"{r['completed_on']}, not invoiced", money=r["amount"], currency=r["c_currency"],
        client_id=r["c_client"] or "", project_id=r["project__project_id"],
        practice=r["c_practice"], legal_entity=r["c_entity"],
        detail={"completed_on": r["completed_on"].isoformat()}) for r in rows]


def missing_billing_setup():
    projects = (state.Project.objects.filter(is_placeholder=False)
                .exclude(billing_method=state.Project.BillingMethod.NON_BILLABLE)
                .exclude(status=state.Project.Status.CLOSED)
                .exclude(state.billing_setup_complete_q()))
    value = {r["project_id"]: r["value"] for r in kpis.counted_time(statuses=["approved",
                                                                              "posted"])
             .filter(billable=True, project__in=projects).values("project_id")
             .annotate(value=Sum(kpis.TIME_VALUE)).order_by()}
    findings = []
    for p in projects.values("pk", "project_id", "name", "billing_method", "rate_card_id",
                             "po_required", "po_number", **_project_fields()):
        missing = [what for what, absent in (
            ("billing method", not p["billing_method"]), ("rate card", not p["rate_card_id"]),
            ("PO", p["po_required"] and not p["po_number"])) if absent]
        findings.append(Finding(
            fingerprint=p["project_id"], object_kind="project", object_id=p["project_id"],
            title=f"{p['name'] or p['project_id']}: no {' and no '.join(missing)}",
            money=value.get(p["pk"]), currency=p["c_currency"], client_id=p["c_client"] or "",
            project_id=p["project_id"], practice=p["c_practice"],
            legal_entity=p["c_entity"], detail={"missing": missing}))
    return findings


SUFFIXES = re.compile(r"\b(inc|incorporated|corp|corporation|co|company|ltd|limited|llc|plc|"
                      r"gmbh|ag|sa|bv)\b")


def normalize_name(name):
    """'ACME Corporation, Inc.' and 'Acme Corp' both become 'acme'."""
    cleaned = re.sub(r"[^a-z0-9 ]", " ", name.lower())
    return " ".join(SUFFIXES.sub(" ", cleaned).split())


def duplicate_client():
    clients = list(state.Client.objects.filter(is_placeholder=False, marked_distinct=False)
                   .values("client_id", "name", "tax_id"))
    groups = defaultdict(set)
    for c in clients:
        if c["name"] and normalize_name(c["name"]):
            groups[f"name:{normalize_name(c['name'])}"].add(c["client_id"])
        if c["tax_id"]:
            groups[f"tax:{c['tax_id']}"].add(c["client_id"])
    names = {c["client_id"]: c["name"] for c in clients}
    return [Finding(
        fingerprint=key, object_kind="client", object_id=sorted(ids)[0],
        title="Possible duplicate clients: " + ", ".join(sorted(names[i] for i in ids)),
        client_id=sorted(ids)[0], detail={"client_ids": sorted(ids)})
        for key, ids in groups.items() if len(ids) > 1]


# --- Entry points ----------------------------------------------------------------------------
def on_batch_processed(outcome):
    """Event-driven rules, run after each processed inbox batch; only those the batch can
    have changed."""
    now = timezone.now()
    if outcome.sync_attempts:
        keys = {(a.flow, a.object_type, a.object_id) for a in outcome.sync_attempts}
        scope = Q(fingerprint__in=["|".join(k) for k in keys])
        failed = {(a.flow, a.object_type, a.object_id) for a in outcome.sync_attempts
                  if not a.succeeded}
        # Successes only matter to objects with an open case.
        keys = failed | {tuple(c.split("|", 2)) for c in Case.objects.filter(
            scope, type="sync_failed", status__in=Case.OPEN_STATES).values_list(
            "fingerprint", flat=True)}
        if keys:
            reconcile("sync_failed", lambda: sync_failed(keys), now=now, scope=scope)
    if outcome.dead or any(row.errors for row in outcome.processed):  # new, or replayed
        reconcile("dead_letter", dead_letter, now=now, count=bool(outcome.dead))
    touched = outcome.touched
    if any(touched.get(label) for _, label, _ in PLACEHOLDER_KINDS):
        reconcile("unknown_reference", lambda: unknown_reference(touched), now=now, count=False,
                  scope=Q(fingerprint__in=_touched_fingerprints(touched)))
    # A blocked invoice of a client or project not known yet is an unknown reference, not
    # yet a case: the master record arriving later must open it, as in-order delivery would.
    if any(touched.get(label) for label in ("opsview.Invoice", "opsview.Client",
                                            "opsview.Project")):
        reconcile("invoice_blocked", invoice_blocked, now=now, count=False)
    if touched.get("opsview.ReconciliationReport"):
        reconcile("reconciliation_gap", reconciliation_gap, now=now)
    if outcome.processed or outcome.dead or outcome.unhandled:
        # An event arrived: a source that was stale is not any more.
        reconcile("stale_feed", lambda: stale_feed(now, flows=False), now=now, count=False,
                  scope=Q(fingerprint__startswith="source:"))


def evaluate_time_rules(now=None):
    """Every rule over the whole state (time-driven ones included), then the SLA sweep."""
    now = now or timezone.now()
    results = {
        "sync_failed": reconcile("sync_failed", sync_failed, now=now, count=False),
        "dead_letter": reconcile("dead_letter", dead_letter, now=now, count=False),
        "unknown_reference": reconcile("unknown_reference", unknown_reference, now=now,
                                       count=False),
        "stale_feed": reconcile("stale_feed", lambda: stale_feed(now), now=now, count=False),
        "reconciliation_gap": reconcile("reconciliation_gap", reconciliation_gap, now=now,
                                        count=False),
        "approved_time_unposted": reconcile("approved_time_unposted",
                                            lambda: approved_time_unposted(now), now=now,
                                            count=False),
        "invoice_blocked": reconcile("invoice_blocked", invoice_blocked, now=now,
                                     count=False),
        "milestone_not_invoiced": reconcile("milestone_not_invoiced",
                                            lambda: milestone_not_invoiced(now), now=now,
                                            count=False),
        "missing_billing_setup": reconcile("missing_billing_setup", missing_billing_setup,
                                           now=now, count=False),
        "duplicate_client": reconcile("duplicate_client", duplicate_client, now=now,
                                      count=False),
    }
    from .escalation import sla_sweep

    results["sla"] = sla_sweep(now)
    return results

