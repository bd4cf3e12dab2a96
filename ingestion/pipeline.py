"""Inbox rows → business state, set-based and order-independent.

A batch of pending inbox rows is claimed (row locks, SKIP LOCKED on PostgreSQL), each row's
data is validated against its contract, and the valid ones are applied per entity kind with
a fixed number of statements: create missing rows, lock the affected rows in primary-key
order, merge in Python, write back with one bulk update. Merging is commutative:

- master data keeps the whole record of the greatest (event time, event id);
- a transaction's status is the greatest (lifecycle rank, event time, event id), each stage
  timestamp is the latest event time of that stage, and each data field keeps the value of
  the greatest (event time, event id) that carried it.

So any permutation of one set of events gives the same state. If applying a batch raises,
each event is retried alone so one poison event is dead-lettered and its neighbours land.
"""
import datetime as dt
import logging
import time
from collections import defaultdict
from dataclasses import dataclass, field

from django.db import DatabaseError, OperationalError, connection, transaction
from django.db.models import F
from django.utils import timezone
from pydantic import ValidationError

from core.bulk import insert_new, update_rows
from ingestion import announce
from ingestion.announce import BatchChanges, SyncSeen
from opsview import derived
from opsview import models as state

from . import metrics
from .contracts import CONTRACTS, Envelope, error_messages, validate_data
from .intake import ALTERED, future_time_errors
from .models import InboxEvent, ProcessedBatch

log = logging.getLogger(__name__)
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)


def version_of(row):
    """The total order of events: (event time in µs since the epoch, event id)."""
    return (int(row.time.timestamp() * 1_000_000), row.event_id)


def _newer(version, time, event_id):
    if time is None:
        return True
    return version > (int(time.timestamp() * 1_000_000), event_id)


@dataclass
class BatchOutcome:
    """What a batch changed, for the event-driven exception rules."""

    processed: list = field(default_factory=list)
    dead: list = field(default_factory=list)
    unhandled: list = field(default_factory=list)
    touched: dict = field(default_factory=lambda: defaultdict(set))  # model label -> pks
    sync_attempts: list = field(default_factory=list)
    # Records with new lifecycle events, whose derived state must be refreshed.
    staged: dict = field(default_factory=lambda: defaultdict(set))  # kind -> pks

    def touch(self, model, pks):
        self.touched[model._meta.label].update(pks)

    def clear(self):
        self.touched.clear()
        self.sync_attempts.clear()
        self.staged.clear()

    def changes(self):
        return BatchChanges(
            events=bool(self.processed or self.dead or self.unhandled),
            dead=bool(self.dead),
            # new dead letters, or replayed ones that now went through
            dead_letters_changed=bool(self.dead) or any(row.errors for row in self.processed),
            touched={label: set(pks) for label, pks in self.touched.items() if pks},
            staged={kind: set(pks) for kind, pks in self.staged.items() if pks},
            sync_attempts=[SyncSeen(a.flow, a.object_type, a.object_id, a.succeeded)
                           for a in self.sync_attempts])


# --- Reference resolution ------------------------------------------------------------------
def named(pairs):
    """{external id: earliest event time} from (id, event time) pairs, blank ids left out."""
    earliest = {}
    for key, when in pairs:
        if key and (key not in earliest or when < earliest[key]):
            earliest[key] = when
    return earliest


def ensure_entities(model, key_field, names, outcome):
    """{external id: pk} for the ids of `names` ({id: earliest event time naming it}),
    creating placeholders for ids not yet known. A placeholder remembers the earliest event
    time that named it: the moment its unknown reference began."""
    keys = sorted(names)
    if not keys:
        return {}
    known = {key: (pk, placeholder, since) for key, pk, placeholder, since in
             model.objects.filter(**{f"{key_field}__in": keys})
             .values_list(key_field, "pk", "is_placeholder", "placeholder_since")}
    mapping = {key: row[0] for key, row in known.items()}
    earlier = [model(pk=pk, placeholder_since=names[key])
               for key, (pk, placeholder, since) in sorted(known.items())
               if placeholder and (since is None or names[key] < since)]
    update_rows(model, earlier, ["placeholder_since"])
    missing = [key for key in keys if key not in mapping]
    if missing:
        # Sorted inserts keep concurrent workers from deadlocking on the unique index.
        model.objects.bulk_create(
            [model(**{key_field: key, "is_placeholder": True,
                      "placeholder_since": names[key]}) for key in missing],
            ignore_conflicts=True,
        )
        mapping.update(model.objects.filter(**{f"{key_field}__in": missing})
                       .values_list(key_field, "pk"))
        outcome.touch(model, [mapping[key] for key in missing])
    return mapping


def lock_rows(model, key_field, keys, new_row):
    """{key: row} for `keys`, locked: stored rows by SELECT .. FOR UPDATE in pk order, missing
    ones inserted from `new_row(key)` (a row this transaction inserted is its own until commit;
    one a concurrent worker inserted first is selected, locked and merged like a stored one)."""
    # FOR NO KEY UPDATE: it does not block the foreign-key checks of rows that reference these.
    locked = model.objects.select_for_update(no_key=True)
    rows = {getattr(r, key_field): r
            for r in locked.filter(**{f"{key_field}__in": list(keys)}).order_by("pk")}
    missing = sorted(key for key in keys if key not in rows)
    if missing:
        rows.update(insert_new(model, [new_row(key) for key in missing], key_field))
        unseen = [key for key in missing if key not in rows]
        if unseen:
            rows.update({getattr(r, key_field): r
                         for r in locked.filter(**{f"{key_field}__in": unseen}).order_by("pk")})
    return rows


# --- Master data ---------------------------------------------------------------------------
def _winners(items):
    """The greatest-version item per key. items: [(key, version, values)]."""
    best = {}
    for key, version, values in items:
        if key not in best or version > best[key][0]:
            best[key] = (version, values)
    return best


def apply_master(model, key_field, items, outcome, firsts=None):
    """Whole-record last-writer-wins upsert. items: [(key, version, values)]; firsts:
    {key: {field: moment}} kept at their earliest whichever event wins."""
    winners = _winners(items)
    if not winners:
        return
    earliest = defaultdict(dict)
    for key, version, _ in items:
        moment = _epoch_us_to_datetime(version[0])
        if moment < earliest[key].get("first_event_at", moment + dt.timedelta(1)):
            earliest[key]["first_event_at"] = moment
    for key, moments in (firsts or {}).items():
        for name, moment in moments.items():
            if moment < earliest[key].get(name, moment + dt.timedelta(1)):
                earliest[key][name] = moment
    rows = lock_rows(model, key_field, winners, lambda key: model(**{key_field: key}))
    changed, fields = [], set()
    for row in rows.values():
        version, values = winners[getattr(row, key_field)]
        first_changed = False
        for name, moment in earliest[getattr(row, key_field)].items():
            if getattr(row, name) is None or moment < getattr(row, name):
                setattr(row, name, moment)
                fields.add(name)
                first_changed = True
        if not _newer(version, row.version_time, row.version_event_id):
            if first_changed:
                changed.append(row)
            continue
        for name, value in values.items():
            setattr(row, name, value)
        row.is_placeholder = False
        row.placeholder_since = None
        row.version_time = _epoch_us_to_datetime(version[0])
        row.version_event_id = version[1]
        fields.update(values)
        changed.append(row)
    if changed:
        fields |= {"is_placeholder", "placeholder_since", "version_time", "version_event_id",
                   "updated_at"}
        for row in changed:
            row.updated_at = timezone.now()
        update_rows(model, changed, sorted(fields))
        outcome.touch(model, [row.pk for row in changed])


def _epoch_us_to_datetime(microseconds):
    return EPOCH + dt.timedelta(microseconds=microseconds)


def _text(value):
    return "" if value is None else value


def apply_clients(events, outcome):
    received = defaultdict(dict)
    for row, c in events:
        if row.received_at < received[c.client_id].get("first_received_at", row.received_at
                                                        + dt.timedelta(1)):
            received[c.client_id]["first_received_at"] = row.received_at
    apply_master(state.Client, "client_id", [
        (c.client_id, version_of(row),
         {"name": c.name, "tax_id": _text(c.tax_id), "currency": _text(c.currency),
          "merged_into": _text(c.merged_into)})
        for row, c in events
    ], outcome, firsts=received)


def apply_projects(events, outcome):
    clients = ensure_entities(state.Client, "client_id",
                              named((c.client_id, row.time) for row, c in events), outcome)
    keys = {p.project_id for _, p in events}
    before = {key: (method, currency) for key, method, currency in
              state.Project.objects.filter(project_id__in=keys)
              .values_list("project_id", "billing_method", "currency")}
    apply_master(state.Project, "project_id", [
        (p.project_id, version_of(row), {
            "client_id": clients[p.client_id], "name": p.name, "practice": p.practice,
            "legal_entity": p.legal_entity, "currency": p.currency,
            "billing_method": p.billing_method, "status": p.status,
            "rate_card_id": _text(p.rate_card_id), "po_required": p.po_required,
            "po_number": _text(p.po_number), "contract_value": p.contract_value,
            "budget_hours": p.budget_hours,
        })
        for row, p in events
    ], outcome)
    # A billing method and a currency decide what the project's items are worth and in what:
    # when either changes (or a placeholder project arrives), their WIP is derived again.
    changed = [pk for key, pk, method, currency in state.Project.objects.filter(
        project_id__in=keys).values_list("project_id", "pk", "billing_method", "currency")
               if (method, currency) != before.get(key, ("", ""))]
    for kind, pks in derived.items_of_projects(changed).items():
        outcome.staged[kind].update(pks)


def apply_people(events, outcome):
    keys = {p.person_id for _, p in events}
    before = {key: (rate, placeholder) for key, rate, placeholder in
              state.Person.objects.filter(person_id__in=keys)
              .values_list("person_id", "bill_rate", "is_placeholder")}
    apply_master(state.Person, "person_id", [
        (p.person_id, version_of(row), {
            "name": p.name, "practice": p.practice, "cost_rate": p.cost_rate,
            "bill_rate": p.bill_rate, "capacity_hours_per_week": p.capacity_hours_per_week,
            "active": p.active,
        })
        for row, p in events
    ], outcome)
    # A person's bill rate prices their time that carries no rate of its own, and a person
    # not known until now makes their items count: either way their WIP is derived again.
    changed = [pk for key, pk, rate, placeholder in state.Person.objects.filter(
        person_id__in=keys).values_list("person_id", "pk", "bill_rate", "is_placeholder")
               if (rate, placeholder) != before.get(key, (None, True))]
    for kind, pks in derived.items_of_people(changed).items():
        outcome.staged[kind].update(pks)


def apply_assignments(events, outcome):
    projects = ensure_entities(state.Project, "project_id",
                               named((a.project_id, row.time) for row, a in events), outcome)
    people = ensure_entities(state.Person, "person_id",
                             named((a.person_id, row.time) for row, a in events), outcome)
    apply_master(state.Assignment, "assignment_id", [
        (a.assignment_id, version_of(row), {
            "project_id": projects[a.project_id], "person_id": people[a.person_id],
            "start_date": a.start_date, "end_date": a.end_date,
            "hours_per_week": a.hours_per_week, "bill_rate": a.bill_rate,
        })
        for row, a in events
    ], outcome)


def upsert_latest(model, key_fields, winners, outcome):
    """Last writer wins per key for a keyed figure (not a master record): `winners` is
    {key tuple: (version, {field: value})}; rows are created where missing and overwritten
    where the winner is newer than what they hold."""
    model.objects.bulk_create(
        [model(**dict(zip(key_fields, key)), **values)
         for key, (_, values) in sorted(winners.items())],
        ignore_conflicts=True,
    )
    rows = model.objects.select_for_update(no_key=True).filter(**{
        f"{name}__in": {key[i] for key in winners} for i, name in enumerate(key_fields)
    }).order_by("pk")
    changed, fields = [], set()
    for row in rows:
        winner = winners.get(tuple(getattr(row, name) for name in key_fields))
        if winner is None or not _newer(winner[0], row.version_time, row.version_event_id):
            continue
        for name, value in winner[1].items():
            setattr(row, name, value)
            fields.add(name)
        row.version_time, row.version_event_id = _epoch_us_to_datetime(winner[0][0]), winner[0][1]
        changed.append(row)
    update_rows(model, changed, sorted(fields) + ["version_time", "version_event_id"])
    outcome.touch(model, [row.pk for row in changed])


def apply_revenue(events, outcome):
    projects = ensure_entities(state.Project, "project_id",
                               named((r.project_id, row.time) for row, r in events), outcome)
    upsert_latest(state.RevenueRecognition, ("project_id", "period"), _winners([
        ((projects[r.project_id], r.period), version_of(row),
         {"amount": r.amount, "currency": r.currency})
        for row, r in events
    ]), outcome)


def apply_fx_rates(events, outcome):
    """The latest rate (by event time, ties by id) per base, quote and date wins."""
    upsert_latest(state.FxRate, ("base", "quote", "date"), _winners([
        ((r.base, r.quote, r.date), version_of(row), {"rate": r.rate}) for row, r in events
    ]), outcome)


def apply_reconciliations(events, outcome):
    winners = _winners([
        ((r.flow, r.object_type, r.period_start, r.period_end), version_of(row), {
            "source_count": r.source_count, "target_count": r.target_count,
            "source_amount": r.source_amount, "target_amount": r.target_amount,
        })
        for row, r in events
    ])
    state.ReconciliationReading.objects.bulk_create([
        state.ReconciliationReading(
            flow=r.flow, object_type=r.object_type, period_start=r.period_start,
            period_end=r.period_end, source_count=r.source_count, target_count=r.target_count,
            reported_at=row.time, event_id=row.event_id, inbox_event_id=row.pk)
        for row, r in events], ignore_conflicts=True)
    Report = state.ReconciliationReport
    Report.objects.bulk_create(
        [Report(flow=k[0], object_type=k[1], period_start=k[2], period_end=k[3], **values)
         for k, (_, values) in sorted(winners.items())],
        ignore_conflicts=True,
    )
    rows = Report.objects.select_for_update(no_key=True).filter(
        flow__in={k[0] for k in winners}).order_by("pk")
    changed = []
    for row in rows:
        winner = winners.get((row.flow, row.object_type, row.period_start, row.period_end))
        if winner is None or not _newer(winner[0], row.version_time, row.version_event_id):
            continue
        for name, value in winner[1].items():
            setattr(row, name, value)
        row.version_time, row.version_event_id = _epoch_us_to_datetime(winner[0][0]), winner[0][1]
        changed.append(row)
    update_rows(Report, changed, ["source_count", "target_count", "source_amount",
                                  "target_amount", "version_time", "version_event_id"])
    outcome.touch(Report, [row.pk for row in changed])


# --- Transactions --------------------------------------------------------------------------
def apply_lifecycle(model, key_field, events, references, outcome):
    """Merge lifecycle events into `model` rows and record each in the history.

    events: [(inbox row, contract)]; references: {contract field: (model, key field)} for the
    entities the event names, resolved to placeholders where unknown. An item's invoice is
    not merged here: the history's latest `invoiced` event decides it (`opsview.derived`).
    Returns {key: row}.
    """
    maps = {
        name: ensure_entities(ref_model, ref_key,
                              named((getattr(c, name), row.time) for row, c in events), outcome)
        for name, (ref_model, ref_key) in references.items()
    }
    if model is not state.Invoice:
        ensure_entities(state.Invoice, "invoice_id", named(
            (c.invoice_id, row.time) for row, c in events if row.type.endswith(".invoiced")),
            outcome)
        share_lock(references, maps)
    first = {}
    for row, contract in sorted(events, key=lambda item: version_of(item[0])):
        first.setdefault(getattr(contract, key_field), contract)

    def new_row(key):
        contract = first[key]
        return model(**{key_field: key, "status": "", "status_rank": 0,
                        **{name: maps[name][getattr(contract, name)]
                           for name in references if getattr(contract, name)}})

    rows = lock_rows(model, key_field, first, new_row)
    changed_fields = {"status", "status_rank", "status_time", "status_event_id",
                      "field_versions", "updated_at"}
    history = []
    for inbox_row, contract in events:
        record = rows[getattr(contract, key_field)]
        stage = inbox_row.type.rsplit(".", 1)[1]
        version = version_of(inbox_row)
        rank = model.RANKS[stage]
        history.append(state.StageEvent(
            kind=model.KIND, record_id=record.pk, stage=stage, rank=rank, at=inbox_row.time,
            event_id=inbox_row.event_id, inbox_event_id=inbox_row.pk,
            invoice_ref=(getattr(contract, "invoice_id", None) or "")
            if stage == "invoiced" else ""))
        current = (record.status_rank,
                   int(record.status_time.timestamp() * 1_000_000) if record.status_time else -1,
                   record.status_event_id)
        if (rank, *version) > current:
            record.status, record.status_rank = stage, rank
            record.status_time, record.status_event_id = inbox_row.time, inbox_row.event_id
        stamp = f"{stage}_at"
        if getattr(record, stamp) is None or inbox_row.time > getattr(record, stamp):
            setattr(record, stamp, inbox_row.time)
        changed_fields.add(stamp)
        versions = dict(record.field_versions or {})
        for name in type(contract).model_fields:
            value = getattr(contract, name)
            if name == key_field or value is None or (name == "invoice_id"
                                                      and model is not state.Invoice):
                continue
            if list(version) > versions.get(name, [-1, ""]):
                # A reference ("project_id") maps to the FK column of the same name.
                setattr(record, name, maps[name][value] if name in references else value)
                versions[name] = list(version)
                changed_fields.add(name)
        record.field_versions = versions
        record.updated_at = timezone.now()
    update_rows(model, list(rows.values()), sorted(changed_fields))
    state.StageEvent.objects.bulk_create(history, ignore_conflicts=True)
    outcome.touch(model, [r.pk for r in rows.values()])
    outcome.staged[model.KIND].update(r.pk for r in rows.values())
    return rows


def share_lock(references, maps):
    """Hold the project and person rows the items name (FOR SHARE) before the items: their
    values derive from those rows, so a batch that changes one of them (its billing method,
    a bill rate, a placeholder becoming real) and a batch that adds items naming it must not
    both miss the other. The changing batch waits for the adding one to commit, and then
    sees its items; or the adding one waits, and then reads the changed row. Masters are
    taken before items by every batch, so the two wait, never deadlock."""
    if connection.vendor != "postgresql":
        return  # SQLite runs one writer at a time
    with connection.cursor() as cursor:
        for name, (model, _) in references.items():
            pks = sorted(set(maps[name].values()))
            if pks:
                cursor.execute(f"SELECT 1 FROM {model._meta.db_table} WHERE id = ANY(%s) "
                               "ORDER BY id FOR SHARE", [pks])


TIME_REFERENCES = {"project_id": (state.Project, "project_id"),
                   "person_id": (state.Person, "person_id")}


def apply_time_entries(events, outcome):
    apply_lifecycle(state.TimeEntry, "time_entry_id", events, TIME_REFERENCES, outcome)


def apply_expenses(events, outcome):
    apply_lifecycle(state.Expense, "expense_id", events, TIME_REFERENCES, outcome)


def apply_milestones(events, outcome):
    apply_lifecycle(state.Milestone, "milestone_id", events,
                    {"project_id": (state.Project, "project_id")}, outcome)


def apply_invoices(events, outcome):
    rows = apply_lifecycle(state.Invoice, "invoice_id", events,
                           {"client_id": (state.Client, "client_id"),
                            "project_id": (state.Project, "project_id")}, outcome)
    # An invoice event announces the invoice: a placeholder items named is one no more.
    announced = [row for row in rows.values() if row.is_placeholder]
    for row in announced:
        row.is_placeholder, row.placeholder_since = False, None
    update_rows(state.Invoice, announced, ["is_placeholder", "placeholder_since"])


def apply_sync(events, outcome):
    attempts = [
        state.SyncAttempt(
            inbox_event=row, flow=s.flow, source_system=s.source_system,
            target_system=s.target_system, object_type=s.object_type, object_id=s.object_id,
            succeeded=row.type == "sync.succeeded", latency_ms=s.latency_ms, attempt=s.attempt,
            error_code=getattr(s, "error_code", ""), error_message=getattr(s, "error_message", ""),
            retryable=getattr(s, "retryable", None), occurred_at=row.time,
        )
        for row, s in events
    ]
    state.SyncAttempt.objects.bulk_create(attempts, ignore_conflicts=True)
    outcome.sync_attempts.extend(attempts)


# Applied in this order so references resolve to masters written in the same batch.
APPLIERS = [
    ("client.", apply_clients),
    ("project.", apply_projects),
    ("person.", apply_people),
    ("assignment.", apply_assignments),
    ("time_entry.", apply_time_entries),
    ("expense.", apply_expenses),
    ("milestone.", apply_milestones),
    ("invoice.", apply_invoices),
    ("revenue.", apply_revenue),
    ("fx_rate.", apply_fx_rates),
    ("sync.", apply_sync),
    ("reconciliation.", apply_reconciliations),
]


def _applier(event_type):
    for prefix, apply in APPLIERS:
        if event_type.startswith(prefix):
            return apply
    raise KeyError(event_type)


def apply_events(valid, outcome):
    """Apply validated [(row, contract)] grouped by kind, in dependency order; then refresh
    what derives from the lifecycle history of the records they touched."""
    groups = defaultdict(list)
    for row, contract in valid:
        groups[_applier(row.type)].append((row, contract))
    for _, apply in APPLIERS:
        if groups.get(apply):
            apply(groups[apply], outcome)
    items = {kind: pks for kind, pks in outcome.staged.items() if kind != "invoice"}
    derived.refresh(items, outcome.staged.get("invoice", set()))


# --- The batch -----------------------------------------------------------------------------
def _validate(rows, outcome):
    valid = []
    for row in rows:
        if row.type not in CONTRACTS:
            row.status = InboxEvent.Status.UNHANDLED
            outcome.unhandled.append(row)
            continue
        try:
            valid.append((row, validate_data(row.type, row.raw.get("data"))))
        except ValidationError as exc:
            row.status = InboxEvent.Status.DEAD
            row.errors = error_messages(exc, prefix="data.")
            outcome.dead.append(row)
    return valid


def process_events(event_ids=None, limit=500):
    """Claim and process pending inbox rows — the given ones, or else the oldest `limit` —
    skipping rows another worker holds. Returns a BatchOutcome."""
    outcome = BatchOutcome()
    with transaction.atomic():
        pending = InboxEvent.objects.select_for_update(skip_locked=True).filter(
            status=InboxEvent.Status.PENDING)
        if event_ids is not None:
            rows = list(pending.filter(pk__in=list(event_ids)).order_by("pk"))
        else:
            rows = list(pending.order_by("received_at", "pk")[:limit])
        if not rows:
            return outcome
        valid = _validate(rows, outcome)
        try:
            with transaction.atomic():
                apply_events(valid, outcome)
            outcome.processed = [row for row, _ in valid]
        except OperationalError:
            raise  # deadlock, lost connection…: the batch rolls back and is retried whole
        except Exception:
            log.exception("batch of %d failed; applying its events one by one", len(valid))
            outcome.clear()
            _apply_one_by_one(valid, outcome)
        _record_statuses(rows, outcome)
        changes = outcome.changes()
        unseen = ProcessedBatch.objects.create(changes=changes.as_json())
    metrics.count_batch(outcome, timezone.now())
    _announce(unseen, changes)
    return outcome


def _apply_one_by_one(valid, outcome):
    for row, contract in valid:
        try:
            with transaction.atomic():
                apply_events([(row, contract)], outcome)
            outcome.processed.append(row)
        except OperationalError:
            raise  # transient: not the event's fault, so never a dead letter
        except Exception as exc:  # a poison event: keep it, with the reason, for replay
            log.exception("event %s failed to apply", row.pk)
            row.status = InboxEvent.Status.DEAD
            row.errors = [f"processing: {type(exc).__name__}: {exc}"[:2000]]
            outcome.dead.append(row)


def _record_statuses(rows, outcome):
    """One write per inbox row: its new status, attempt count and outcome time."""
    now = timezone.now()
    for status, done in ((InboxEvent.Status.PROCESSED, outcome.processed),
                         (InboxEvent.Status.UNHANDLED, outcome.unhandled)):
        if done:
            InboxEvent.objects.filter(pk__in=[row.pk for row in done]).update(
                status=status, processed_at=now, errors=[], attempts=F("attempts") + 1)
    for row in outcome.dead:
        row.processed_at = now
        row.attempts += 1
    update_rows(InboxEvent, outcome.dead, ["status", "errors", "processed_at", "attempts"])


def _rules_see(changes):
    """Announce a committed batch to the layers above (the exception rules); their failure
    never undoes processing. True when every subscriber saw it whole."""
    return announce.batch_processed(changes)


# Advisory-lock namespace of the ProcessedBatch rows a worker is announcing right now.
ANNOUNCING = 0x0B5F


def _announce(unseen, changes):
    """Run the rules on a committed batch, then forget it. A batch whose rules failed (the
    database went away, a rule raised) stays for settle_unseen_batches."""
    try:
        with _holding(unseen.pk):
            still_unseen = ProcessedBatch.objects.filter(pk=unseen.pk)
            if still_unseen.exists() and _rules_see(changes):  # not the sweeper's by now
                still_unseen.delete()
    except DatabaseError:  # the connection is lost, closed, or the server restarting
        log.warning("the database went away before the rules saw batch %s; the sweeper "
                    "will announce it", unseen.pk)


class _holding:
    """A session advisory lock on one ProcessedBatch while its rules run, so the sweeper
    never announces a batch its worker is still announcing (PostgreSQL; elsewhere one
    process runs everything)."""

    def __init__(self, pk, wait=True):
        self.pk, self.wait, self.held = pk, wait, False

    def __enter__(self):
        if connection.vendor != "postgresql":
            return True
        function = "pg_advisory_lock" if self.wait else "pg_try_advisory_lock"
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT {function}(%s, %s)", [ANNOUNCING, self.pk])
            row = cursor.fetchone()
        self.held = self.wait or bool(row[0])
        return self.held

    def __exit__(self, *exc):
        if self.held and connection.vendor == "postgresql":
            try:
                with connection.cursor() as cursor:
                    cursor.execute("SELECT pg_advisory_unlock(%s, %s)", [ANNOUNCING, self.pk])
            except DatabaseError:
                pass  # the connection is gone, and its session locks with it
        return False


def settle_unseen_batches(older_than, limit=200, give_up_after=5):
    """Announce processed batches whose rules never ran or failed (a worker killed, the
    database restarted between commit and rules), oldest first. A batch failing
    `give_up_after` times is dropped with an error logged: the time-based evaluation
    covers every rule over the whole state anyway. Returns the number settled."""
    settled = 0
    for pk in ProcessedBatch.objects.filter(created_at__lt=older_than).order_by(
            "pk").values_list("pk", flat=True)[:limit]:
        with _holding(pk, wait=False) as held:
            unseen = held and ProcessedBatch.objects.filter(pk=pk).first()
            if not unseen:
                continue  # its worker is on it, or has just finished
            if _rules_see(BatchChanges.from_json(unseen.changes)):
                unseen.delete()
                settled += 1
            elif unseen.attempts + 1 >= give_up_after:
                log.error("the rules of processed batch %s failed %d times; leaving it to "
                          "the time-based evaluation", pk, give_up_after)
                unseen.delete()
            else:
                ProcessedBatch.objects.filter(pk=pk).update(attempts=F("attempts") + 1)
    return settled


def announce_dead_letters(event_ids):
    """Dead letters kept at intake (their envelope refused) never go through processing:
    announce them like a processed batch's, so their case opens now, not at the next
    time-based evaluation."""
    outcome = BatchOutcome()
    outcome.dead = list(InboxEvent.objects.filter(pk__in=list(event_ids),
                                                  status=InboxEvent.Status.DEAD))
    if outcome.dead and not _rules_see(outcome.changes()):
        raise RuntimeError("the dead-letter rule did not run")  # the task retries


def pending_ids(limit=None, older_than=None):
    qs = InboxEvent.objects.filter(status=InboxEvent.Status.PENDING)
    if older_than is not None:
        qs = qs.filter(received_at__lt=older_than)
    qs = qs.order_by("received_at", "pk").values_list("pk", flat=True)
    return list(qs[:limit] if limit else qs)


def drain_inbox(batch_size=500, progress=None, max_seconds=None):
    """Process pending rows batch by batch until none is left (or `max_seconds` pass).
    Returns counts."""
    totals = defaultdict(int)
    started = time.monotonic()
    while max_seconds is None or time.monotonic() - started < max_seconds:
        outcome = process_events(limit=batch_size)
        totals["processed"] += len(outcome.processed)
        totals["dead"] += len(outcome.dead)
        totals["unhandled"] += len(outcome.unhandled)
        if not (outcome.processed or outcome.dead or outcome.unhandled):
            break  # nothing pending, or the rest is held by another worker right now
        if progress:
            progress(totals)
    return dict(totals)


def replay(event_ids=None):
    """Put dead letters back to pending and process them again: all of them when
    `event_ids` is None, else the given ones (an empty selection replays nothing)."""
    now = timezone.now()
    qs = InboxEvent.objects.filter(status=InboxEvent.Status.DEAD)
    if event_ids is not None:
        qs = qs.filter(pk__in=list(event_ids))
    requeued, still_invalid, altered = [], [], {}
    for row in qs.order_by("pk"):
        if row.event_id is None:
            # Envelope-invalid: its envelope must validate now before it can be processed.
            try:
                envelope = Envelope.model_validate(row.raw)
            except (ValidationError, TypeError):
                still_invalid.append(row.pk)
                continue
            if future_time_errors(envelope, now):  # checked against the replay's moment
                still_invalid.append(row.pk)
                continue
            if InboxEvent.objects.filter(source_id=row.source_id, event_source=envelope.source,
                                         event_id=envelope.id).exists():
                row.status = InboxEvent.Status.DISCARDED
                row.errors = row.errors + ["replay: an event with this source and id was "
                                           "already accepted"]
                row.save(update_fields=["status", "errors"])
                continue
            row.event_source, row.event_id = envelope.source, envelope.id
            row.type, row.time = envelope.type, envelope.time
            row.subject = envelope.subject or ""
            row.correlation_id = envelope.correlationid or ""
        row.status = InboxEvent.Status.PENDING
        row.save(update_fields=["event_source", "event_id", "type", "time", "subject",
                                "correlation_id", "status"])
        requeued.append(row.pk)
        notes = [error for error in row.errors if error.startswith(ALTERED)]
        if notes:
            altered[row.pk] = notes
    outcomes = [process_events(requeued[i:i + 500]) for i in range(0, len(requeued), 500)]
    return {
        "replayed": len(requeued),
        "processed": sum(len(o.processed) for o in outcomes),
        "dead": sum(len(o.dead) for o in outcomes) + len(still_invalid),
        "unhandled": sum(len(o.unhandled) for o in outcomes),
        "altered": _note_altered_copies(altered),
    }


def replay_summary(result):
    """What a replay did, in one line for the person who asked for it; a copy stored altered
    is always mentioned."""
    line = ("Replayed {replayed}: {processed} processed, {dead} still dead, {unhandled} "
            "unhandled".format(**result))
    if result["altered"]:
        line += (f"; {result['altered']} from a copy stored altered (NUL as U+FFFD, numbers as "
                 "strings: see their errors)")
    return line + "."


def _note_altered_copies(notes_by_pk):
    """A dead letter stored altered (U+FFFD for NUL, a number as a string) is replayed from
    that copy, not from what was sent: its errors keep the `stored altered` notes and, once
    it is processed, say that it was processed from the altered copy. Returns how many were."""
    rows = list(InboxEvent.objects.filter(pk__in=list(notes_by_pk)))
    for row in rows:
        row.errors = row.errors + [note for note in notes_by_pk[row.pk] if note not in row.errors]
        if row.status != InboxEvent.Status.DEAD:
            row.errors.append("replay: processed from the copy stored altered (above), not from "
                              "the event as sent")
    update_rows(InboxEvent, rows, ["errors"])
    return sum(row.status != InboxEvent.Status.DEAD for row in rows)
