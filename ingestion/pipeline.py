"""Inbox rows → business state: claim a batch, validate, merge, record statuses, announce.

A batch of pending inbox rows is claimed (row locks, SKIP LOCKED on PostgreSQL), each row's
data is validated against the contract its type declares (`ingestion.catalog`), and the
valid ones are merged target by target in the catalog's order (`ingestion.merge`, which
says why any permutation of one set of events gives the same state). If applying a batch
raises, each event is retried alone so one poison event is dead-lettered and its neighbours
land. A committed batch is announced to the layers above (`ingestion.announce`); dead
letters can be replayed.
"""
import datetime as dt
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import TypedDict

from django.db import DatabaseError, OperationalError, connection, transaction
from django.db.models import F
from django.utils import timezone
from pydantic import ValidationError

from core.bulk import update_rows
from ingestion import announce
from ingestion.announce import BatchChanges
from opsview import derived
from opsview.lifecycle import Kind

from . import catalog, metrics
from .contracts import Envelope, error_messages
from .envelopes import ALTERED, future_time_errors
from .merge import Events
from .models import InboxEvent, ProcessedBatch
from .outcome import BatchOutcome

log = logging.getLogger(__name__)


def apply_events(valid: Events, outcome: BatchOutcome) -> None:
    """Apply validated [(row, contract)] grouped by target, in the catalog's order; then
    refresh what derives from the lifecycle history of the records they touched."""
    groups = defaultdict(list)
    for row, contract in valid:
        groups[catalog.EVENT_TYPES[row.type].target.name].append((row, contract))
    for target in catalog.TARGETS:
        if groups.get(target.name):
            target.apply(groups[target.name], outcome)
    items = {kind: pks for kind, pks in outcome.staged.items() if kind != Kind.INVOICE}
    derived.refresh(items, outcome.staged.get(Kind.INVOICE, set()))


# --- The batch -----------------------------------------------------------------------------
def _validate(rows: list[InboxEvent], outcome: BatchOutcome) -> Events:
    valid = []
    for row in rows:
        if row.type not in catalog.CONTRACTS:
            row.status = InboxEvent.Status.UNHANDLED
            outcome.unhandled.append(row)
            continue
        try:
            valid.append((row, catalog.validate_data(row.type, (row.raw or {}).get("data"))))
        except ValidationError as exc:
            row.status = InboxEvent.Status.DEAD
            row.errors = error_messages(exc, prefix="data.")
            outcome.dead.append(row)
    return valid


def process_events(event_ids: Iterable[int] | None = None, limit: int = 500) -> BatchOutcome:
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


def _apply_one_by_one(valid: Events, outcome: BatchOutcome) -> None:
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


def _record_statuses(rows: list[InboxEvent], outcome: BatchOutcome) -> None:
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


def _rules_see(changes: BatchChanges) -> bool:
    """Announce a committed batch to the layers above (the exception rules); their failure
    never undoes processing. True when every subscriber saw it whole."""
    return announce.batch_processed(changes)


# Advisory-lock namespace of the ProcessedBatch rows a worker is announcing right now.
ANNOUNCING = 0x0B5F


def _announce(unseen: ProcessedBatch, changes: BatchChanges) -> None:
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

    def __init__(self, pk: int, wait: bool = True) -> None:
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


def settle_unseen_batches(older_than: dt.datetime, limit: int = 200,
                          give_up_after: int = 5) -> int:
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


def announce_dead_letters(event_ids: Iterable[int]) -> None:
    """Dead letters kept at intake (their envelope refused) never go through processing:
    announce them like a processed batch's, so their case opens now, not at the next
    time-based evaluation."""
    outcome = BatchOutcome()
    outcome.dead = list(InboxEvent.objects.filter(pk__in=list(event_ids),
                                                  status=InboxEvent.Status.DEAD))
    if outcome.dead and not _rules_see(outcome.changes()):
        raise RuntimeError("the dead-letter rule did not run")  # the task retries


def pending_ids(limit: int | None = None, older_than: dt.datetime | None = None) -> list[int]:
    """The pending inbox rows, oldest first: all, or the first `limit` received before
    `older_than`."""
    qs = InboxEvent.objects.filter(status=InboxEvent.Status.PENDING)
    if older_than is not None:
        qs = qs.filter(received_at__lt=older_than)
    ids = qs.order_by("received_at", "pk").values_list("pk", flat=True)
    return list(ids[:limit] if limit else ids)


def drain_inbox(batch_size: int = 500, progress: Callable[[dict], None] | None = None,
                max_seconds: float | None = None) -> dict[str, int]:
    """Process pending rows batch by batch until none is left (or `max_seconds` pass).
    Returns counts."""
    totals: defaultdict[str, int] = defaultdict(int)
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


class ReplayResult(TypedDict):
    """What a replay did: rows replayed, and how many ended processed, dead or unhandled,
    and how many were replayed from a copy stored altered."""

    replayed: int
    processed: int
    dead: int
    unhandled: int
    altered: int


def replay(event_ids: Iterable[int] | None = None) -> ReplayResult:
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


def replay_summary(result: ReplayResult) -> str:
    """What a replay did, in one line for the person who asked for it; a copy stored altered
    is always mentioned."""
    line = ("Replayed {replayed}: {processed} processed, {dead} still dead, {unhandled} "
            "unhandled".format(**result))
    if result["altered"]:
        line += (f"; {result['altered']} from a copy stored altered (NUL as U+FFFD, numbers as "
                 "strings: see their errors)")
    return line + "."


def _note_altered_copies(notes_by_pk: dict[int, list[str]]) -> int:
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
