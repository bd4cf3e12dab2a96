"""How each kind of event merges into the business state, set-based and order-independent.

Every applier takes the validated events of one kind, [(inbox row, contract)], and writes
them with a fixed number of statements: create missing rows, lock the affected rows in
primary-key order, merge in Python, write back with one bulk update. Merging is commutative:

- master data keeps the whole record of the greatest (event time, event id);
- a keyed figure (revenue, an FX rate, a reconciliation) keeps the values of the greatest
  (event time, event id) for its key;
- a transaction's status is the greatest (lifecycle rank, event time, event id), each stage
  timestamp is the latest event time of that stage, and each data field keeps the value of
  the greatest (event time, event id) that carried it.

So any permutation of one set of events gives the same state. Which event type goes to which
applier, with which stage, is declared in `ingestion.catalog`.
"""
import datetime as dt
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from typing import TypeVar

from django.db import connection
from django.db import models as db
from django.utils import timezone

from core.bulk import insert_new, insert_rows, update_rows
from opsview import derived
from opsview import models as state
from opsview.lifecycle import LifecycleStage

from .contracts import Contract, SyncFailed
from .models import InboxEvent
from .outcome import BatchOutcome

Events = list[tuple[InboxEvent, Contract]]
StageOf = Callable[[InboxEvent], LifecycleStage]
Version = tuple[int, str]
K = TypeVar("K")
V = TypeVar("V")

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def version_of(row: InboxEvent) -> Version:
    """The total order of events: (event time in µs since the epoch, event id)."""
    return (int(row.time.timestamp() * 1_000_000), row.event_id)


def _newer(version: Version, time: dt.datetime | None, event_id: str | None) -> bool:
    if time is None:
        return True
    return version > (int(time.timestamp() * 1_000_000), event_id)


# --- Reference resolution ------------------------------------------------------------------
def named(pairs: Iterable[tuple[str | None, dt.datetime]]) -> dict[str, dt.datetime]:
    """{external id: earliest event time} from (id, event time) pairs, blank ids left out."""
    earliest = {}
    for key, when in pairs:
        if key and (key not in earliest or when < earliest[key]):
            earliest[key] = when
    return earliest


def ensure_entities(model: type[db.Model], key_field: str, names: Mapping[str, dt.datetime],
                    outcome: BatchOutcome) -> dict[str, int]:
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


def lock_rows(model: type[db.Model], key_field: str, keys: Iterable,
              new_row: Callable[[object], db.Model]) -> dict:
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
def _winners(items: Iterable[tuple[K, Version, V]]) -> dict[K, tuple[Version, V]]:
    """The greatest-version item per key. items: [(key, version, values)]."""
    best = {}
    for key, version, values in items:
        if key not in best or version > best[key][0]:
            best[key] = (version, values)
    return best


def apply_master(model: type[db.Model], key_field: str, items: list, outcome: BatchOutcome,
                 firsts: Mapping | None = None) -> None:
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


def _epoch_us_to_datetime(microseconds: int) -> dt.datetime:
    return EPOCH + dt.timedelta(microseconds=microseconds)


def _text(value: str | None) -> str:
    return "" if value is None else value


def apply_clients(events: Events, outcome: BatchOutcome) -> None:
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


def apply_projects(events: Events, outcome: BatchOutcome) -> None:
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


def apply_people(events: Events, outcome: BatchOutcome) -> None:
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


def apply_assignments(events: Events, outcome: BatchOutcome) -> None:
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


def upsert_latest(model: type[db.Model], key_fields: tuple[str, ...], winners: dict,
                  outcome: BatchOutcome) -> None:
    """Last writer wins per key for a keyed figure (not a master record): `winners` is
    {key tuple: (version, {field: value})}; rows are created where missing and overwritten
    where the winner is newer than what they hold."""
    model.objects.bulk_create(
        [model(**dict(zip(key_fields, key, strict=True)), **values)
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


def apply_revenue(events: Events, outcome: BatchOutcome) -> None:
    projects = ensure_entities(state.Project, "project_id",
                               named((r.project_id, row.time) for row, r in events), outcome)
    upsert_latest(state.RevenueRecognition, ("project_id", "period"), _winners([
        ((projects[r.project_id], r.period), version_of(row),
         {"amount": r.amount, "currency": r.currency})
        for row, r in events
    ]), outcome)


def apply_fx_rates(events: Events, outcome: BatchOutcome) -> None:
    """The latest rate (by event time, ties by id) per base, quote and date wins."""
    upsert_latest(state.FxRate, ("base", "quote", "date"), _winners([
        ((r.base, r.quote, r.date), version_of(row), {"rate": r.rate}) for row, r in events
    ]), outcome)


def apply_reconciliations(events: Events, outcome: BatchOutcome) -> None:
    """Every reading is kept; the latest (by event time, ties by id) per flow, object type
    and period is the report."""
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
def apply_lifecycle(model: type[db.Model], key_field: str, events: Events,
                    references: Mapping[str, tuple[type[db.Model], str]], outcome: BatchOutcome,
                    stage_of: StageOf) -> dict:
    """Merge lifecycle events into `model` rows and record each in the history.

    events: [(inbox row, contract)]; references: {contract field: (model, key field)} for the
    entities the event names, resolved to placeholders where unknown. An item's invoice is
    not merged here: the history's latest `invoiced` event decides it (`opsview.derived`).
    stage_of gives each event's lifecycle stage (its rank and the field it dates) as
    declared in `ingestion.catalog`. Returns {key: row}.
    """
    maps = {
        name: ensure_entities(ref_model, ref_key,
                              named((getattr(c, name), row.time) for row, c in events), outcome)
        for name, (ref_model, ref_key) in references.items()
    }
    stages = {row.pk: stage_of(row) for row, _ in events}
    if model is not state.Invoice:
        ensure_entities(state.Invoice, "invoice_id", named(
            (c.invoice_id, row.time) for row, c in events if stages[row.pk].bills), outcome)
        share_lock(references, maps)
    first = {}
    for _row, contract in sorted(events, key=lambda item: version_of(item[0])):
        first.setdefault(getattr(contract, key_field), contract)

    def new_row(key: str) -> db.Model:
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
        stage = stages[inbox_row.pk]
        version = version_of(inbox_row)
        rank = stage.rank
        history.append(state.StageEvent(
            kind=model.KIND, record_id=record.pk, stage=stage.value, rank=rank, at=inbox_row.time,
            event_id=inbox_row.event_id, inbox_event_id=inbox_row.pk,
            invoice_ref=(getattr(contract, "invoice_id", None) or "")
            if stage.bills else ""))
        current = (record.status_rank,
                   int(record.status_time.timestamp() * 1_000_000) if record.status_time else -1,
                   record.status_event_id)
        if (rank, *version) > current:
            record.status, record.status_rank = stage.value, rank
            record.status_time, record.status_event_id = inbox_row.time, inbox_row.event_id
        stamp = stage.stamp
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
    insert_rows(state.StageEvent, history, ignore_conflicts=True)
    outcome.touch(model, [r.pk for r in rows.values()])
    outcome.staged[model.KIND].update(r.pk for r in rows.values())
    return rows


def share_lock(references: Mapping[str, tuple[type[db.Model], str]],
               maps: Mapping[str, Mapping[str, int]]) -> None:
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


def apply_time_entries(events: Events, outcome: BatchOutcome, stage_of: StageOf) -> None:
    apply_lifecycle(state.TimeEntry, "time_entry_id", events, TIME_REFERENCES, outcome,
                    stage_of)


def apply_expenses(events: Events, outcome: BatchOutcome, stage_of: StageOf) -> None:
    apply_lifecycle(state.Expense, "expense_id", events, TIME_REFERENCES, outcome, stage_of)


def apply_milestones(events: Events, outcome: BatchOutcome, stage_of: StageOf) -> None:
    apply_lifecycle(state.Milestone, "milestone_id", events,
                    {"project_id": (state.Project, "project_id")}, outcome, stage_of)


def apply_invoices(events: Events, outcome: BatchOutcome, stage_of: StageOf) -> None:
    rows = apply_lifecycle(state.Invoice, "invoice_id", events,
                           {"client_id": (state.Client, "client_id"),
                            "project_id": (state.Project, "project_id")}, outcome, stage_of)
    # An invoice event announces the invoice: a placeholder items named is one no more.
    announced = [row for row in rows.values() if row.is_placeholder]
    for row in announced:
        row.is_placeholder, row.placeholder_since = False, None
    update_rows(state.Invoice, announced, ["is_placeholder", "placeholder_since"])


def apply_sync(events: Events, outcome: BatchOutcome) -> None:
    """Every sync attempt is kept once, whatever retries happen."""
    attempts = [
        state.SyncAttempt(
            inbox_event=row, flow=s.flow, source_system=s.source_system,
            target_system=s.target_system, object_type=s.object_type, object_id=s.object_id,
            succeeded=not isinstance(s, SyncFailed), latency_ms=s.latency_ms, attempt=s.attempt,
            error_code=getattr(s, "error_code", ""), error_message=getattr(s, "error_message", ""),
            retryable=getattr(s, "retryable", None), occurred_at=row.time,
        )
        for row, s in events
    ]
    insert_rows(state.SyncAttempt, attempts, ignore_conflicts=True)
    outcome.sync_attempts.extend(attempts)
