"""The integration family: a sync that failed, dead letters, references nobody announced,
silent feeds, and reconciliation reports that disagree."""
import datetime as dt
from collections import defaultdict
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

from django.apps import apps
from django.db.models import F, Max, OuterRef, Q, Subquery

from ingestion.models import InboxEvent, Source
from opsview import models as state
from opsview import selectors
from opsview.rhythm import expected_silence
from opsview.timeline import firm_zone

from ..models import Case, CaseType, Severity, fingerprint_key
from .engine import Finding, money_for_objects
from .registry import SEPARATOR, Grouping, Run, rule

# The object's own evidence that a failed sync has since arrived (SPEC section 3): progress
# toward the target only — a void or a reversal is not.
EVIDENCE: dict[str, tuple[type[state.TimeEntry] | type[state.Expense] | type[state.Invoice]
                          | type[state.Milestone], str, tuple[str, ...]]] = {
    "time_entry": (state.TimeEntry, "time_entry_id", ("posted", "invoiced")),
    "expense": (state.Expense, "expense_id", ("posted", "invoiced")),
    "invoice": (state.Invoice, "invoice_id", ("issued", "paid")),
    "milestone": (state.Milestone, "milestone_id", ("invoiced",)),
}


def _sync_keys_to_evaluate(changes: Any) -> set[tuple[str, str, str]]:
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
        for detail in Case.objects.filter(touched, type=CaseType.SYNC_FAILED,
                                          status__in=Case.OPEN_STATES).values_list(
                "detail", flat=True):
            keys.add((detail.get("flow", ""), detail.get("object_type", ""),
                      detail.get("object_id", "")))
    return keys


def _sync_failed_batch(changes: Any, now: dt.datetime) -> Iterator[Run]:
    # Only the objects the batch concerns: their failures count as occurrences.
    keys = _sync_keys_to_evaluate(changes)
    if keys:
        yield Run(lambda: sync_failed(keys), count=bool(changes.sync_attempts),
                  scope=Q(fingerprint__in=[fingerprint_key("|".join(k)) for k in keys]))


@rule(CaseType.SYNC_FAILED, "Sync failed", queue="integration", on_batch=_sync_failed_batch,
      batch_order=10,
      grouping=Grouping(
          parts=lambda row: [row["flow"] or "", row["error_code"] or ""],
          members=lambda parts: Q(detail__flow=parts[0], detail__error_code=parts[1]),
          label=lambda parts: f"flow {parts[0] or '—'} · error {parts[1] or '—'}"))
def sync_failed(keys: set[tuple[str, str, str]] | None = None) -> list[Finding]:
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
            severity=Severity.HIGH if run["failures"] >= 3 else None,
            detail={"flow": flow, "object_type": object_type, "object_id": object_id,
                    "error_code": run["code"], "error_message": run["message"][:500],
                    "failures": run["failures"]}))
    money_for_objects(findings)
    return findings


def _arrival_evidence(keys: Any) -> dict[tuple[str, str], dt.datetime]:
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


def _failure_runs(candidates: dict, evidence: dict) -> dict[tuple[str, str, str], dict]:
    """The current run of failures of each object: those after its last success or
    arrival. {key: {began_at, failures, code, message}}."""
    runs: dict[tuple[str, str, str], dict[str, Any]] = {}
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


def _error_signature(errors: list | None) -> str:
    fields = sorted({str(e).split(":", 1)[0] for e in errors or []})
    return ",".join(fields)[:200] or "unknown"


def _dead_letter_parts(row: dict) -> list[str]:
    # A dead letter's fingerprint is "<source>|<event type>|<error fields>": group by the
    # source and the error, across event types.
    source, _, signature = (row["fingerprint"].split(SEPARATOR) + ["", "", ""])[:3]
    return [source, signature]


def _dead_letter_batch(changes: Any, now: dt.datetime) -> Iterator[Run]:
    if changes.dead_letters_changed:  # new, or replayed
        yield Run(dead_letter, count=changes.dead)


@rule(CaseType.DEAD_LETTER, "Dead letter", queue="integration", severity=Severity.HIGH,
      on_batch=_dead_letter_batch, batch_order=20, grouping=Grouping(
          parts=_dead_letter_parts,
          members=lambda parts: Q(object_id=parts[0],
                                  fingerprint__endswith=SEPARATOR + parts[1]),
          label=lambda parts: f"source {parts[0]} · failing {parts[1].replace(',', ', ')}"))
def dead_letter() -> list[Finding]:
    """One case per source, event type and failing fields of the dead letters there are.
    Began with the first of them received."""
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


def _unknown_reference_batch(changes: Any, now: dt.datetime) -> Iterator[Run]:
    touched = changes.touched
    if any(touched.get(label) for _, label, _ in PLACEHOLDER_KINDS):
        yield Run(lambda: unknown_reference(touched), count=False,
                  scope=Q(fingerprint__in=_touched_fingerprints(touched)))


@rule(CaseType.UNKNOWN_REFERENCE, "Unknown reference", queue="integration",
      on_batch=_unknown_reference_batch, batch_order=30)
def unknown_reference(touched: dict[str, Any] | None = None) -> list[Finding]:
    """Placeholders: all of them, or those among `touched` ({model label: pks}). Each began
    with the first event that named it; its money is the value of the items naming it, where
    that can be told (an unknown project's billing method is unknown too)."""
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


def _placeholder_money(kind: str, pks: list[int]) -> dict[int, tuple[Decimal, str]]:
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
    sums: defaultdict[Any, defaultdict[str, Decimal]] = defaultdict(
        lambda: defaultdict(Decimal))
    for items, owner, value, currency in item_sets:
        for row in (items.exclude(status__in=["rejected", "reversed", "submitted"])
                    .values(owner_=F(owner), ccy=currency)
                    .annotate(value_=selectors.total(value)).order_by()):
            sums[row["owner_"]][row["ccy"] or ""] += row["value_"]
    return {pk: max(((v, c) for c, v in by_currency.items()), key=lambda vc: vc[0])
            for pk, by_currency in sums.items() if any(by_currency.values())}


def _touched_fingerprints(touched: dict[str, Any]) -> list[str]:
    fingerprints = []
    for kind, label, key in PLACEHOLDER_KINDS:
        if touched.get(label):
            fingerprints += [f"{kind}:{external_id}" for external_id in apps.get_model(label)
                             .objects.filter(pk__in=touched[label]).values_list(key, flat=True)]
    return fingerprints


# Object types (or batches of them, e.g. "expense_batch") that carry money.
MONEY_OBJECTS = ("time_entry", "expense", "milestone", "invoice")


def _stale_feed_batch(changes: Any, now: dt.datetime) -> Iterator[Run]:
    if changes.events:
        # An event arrived: a source that was stale is not any more; nor is a flow that
        # just reported.
        yield Run(lambda: stale_feed(now, flows=False), count=False,
                  scope=Q(fingerprint__startswith="source:"))
        flows = {a.flow for a in changes.sync_attempts}
        if flows:
            yield Run(lambda: [f for f in stale_feed(now) if f.fingerprint.startswith("flow:")],
                      count=False, scope=Q(fingerprint__in=[f"flow:{flow}" for flow in flows]))


@rule(CaseType.STALE_FEED, "Stale feed", queue="integration", severity=Severity.HIGH,
      on_batch=_stale_feed_batch, batch_order=90)
def stale_feed(now: dt.datetime, flows: bool = True) -> list[Finding]:
    """Sources silent past their threshold, and flows silent past their learned expected
    silence (`opsview.rhythm`). A flow carrying time, expenses, milestones or invoices is
    high severity; a silent source is high (it carries the business events)."""
    findings = []
    for source in Source.objects.filter(enabled=True, last_event_at__isnull=False):
        last_event_at = source.last_event_at
        if last_event_at is None:  # filtered out above; said again for the type checker
            continue
        silent = now - last_event_at
        limit = dt.timedelta(minutes=source.stale_after_minutes)
        if silent > limit:
            findings.append(Finding(
                fingerprint=f"source:{source.slug}", object_kind="source", object_id=source.slug,
                title=f"No events from {source.slug} for {_duration(silent)}",
                began_at=last_event_at + limit, severity=Severity.HIGH,
                detail={"last_event_at": last_event_at.isoformat(),
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
                    began_at=last + limit,
                    severity=Severity.HIGH if flow in carries else Severity.MEDIUM,
                    detail={"last_event_at": last.isoformat(),
                            "expected_silence_seconds": round(limit.total_seconds())}))
    return findings


def _duration(delta: dt.timedelta) -> str:
    hours = delta.total_seconds() / 3600
    if hours < 1:
        return f"{delta.total_seconds() / 60:.0f} min"
    return f"{hours:.0f} h" if hours < 48 else f"{hours / 24:.0f} days"


# --- Reconciliation against OpsView's own counts --------------------------------------------
def shows_gap(source_count: int, target_count: int, own: tuple[int | None, int | None]) -> bool:
    """Whether a report disagrees with itself, or with OpsView's own counts."""
    if source_count != target_count:
        return True
    return own[0] is not None and (source_count, target_count) != own


@rule(CaseType.RECONCILIATION_GAP, "Reconciliation gap", queue="integration",
      wakes_on=("opsview.ReconciliationReport",), batch_order=50)
def reconciliation_gap() -> list[Finding]:
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
            severity=Severity.HIGH if abs(gap) > 50 else None, began_at=began,
            detail={"flow": report.flow, "object_type": report.object_type,
                    "source_count": report.source_count, "target_count": report.target_count,
                    "opsview_source_count": own[0], "opsview_target_count": own[1]}))
    return findings
