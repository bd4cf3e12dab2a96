"""From an authenticated request body to committed inbox rows.

Parsing follows CloudEvents 1.0 over HTTP (structured, batched and binary modes). Every
event of a request is written by one INSERT .. ON CONFLICT DO NOTHING statement, so a
repeat of the idempotency key (the Source of the URL, the CloudEvents `source`, the event
`id`) is a duplicate with no second effect.
"""
import datetime as dt
import hashlib
import json
import logging
import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone
from pydantic import ValidationError

from core.bulk import insert_returning
from core.problems import Problem

from . import jsontext, metrics
from .contracts import Envelope, error_messages
from .envelopes import ALTERED, future_time_errors
from .models import DuplicateDelivery, InboxEvent, InboxKey, Source

log = logging.getLogger(__name__)
STRUCTURED = "application/cloudevents+json"
BATCHED = "application/cloudevents-batch+json"
BINARY = "application/json"
BINARY_PREFIX = "ce-"  # binary mode: every attribute, extensions included, is a ce-* header


@dataclass
class Unreadable:
    """An event whose attributes could not be read as sent (a ce-* header that does not
    decode): kept as a dead letter with the values as they came and the reasons."""

    event: dict
    errors: list


# A double-quoted header value's backslash escapes (RFC 7230 section 3.2.6), and runs of
# percent-encoded bytes.
_QUOTED_PAIR = re.compile(r"\\(.)")
_PERCENT_RUN = re.compile(r"(?:%[0-9A-Fa-f]{2})+")


def header_value(value: str) -> str:
    """An attribute from its ce-* header, as the CloudEvents HTTP binding (3.1.3.2) says: a
    double-quoted value is unquoted first, then one round of percent-decoding is done, in
    upper or lower case; the decoded bytes must be UTF-8 (an overlong form such as %C0%A0
    is refused). Raises ValueError for a value that does not decode."""
    value = value.strip(" \t")
    if len(value) >= 2 and value[0] == value[-1] == '"':
        value = _QUOTED_PAIR.sub(r"\1", value[1:-1])

    def decoded(run: re.Match) -> str:
        try:
            return bytes.fromhex(run.group().replace("%", "")).decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError(f"{run.group()[:30]} is not percent-encoded UTF-8") from None

    if "%" in _PERCENT_RUN.sub("", value):
        raise ValueError("a % must be percent-encoded itself (%25)")
    return _PERCENT_RUN.sub(decoded, value)


def media_type(content_type: str | None) -> str:
    """The media type of a Content-Type header, lower case, without parameters."""
    return (content_type or "").split(";", 1)[0].strip().lower()


def _invalid_json(detail: str, error: str) -> Problem:
    return Problem(400, "invalid-json", "Body is not valid JSON", detail, [error])


def _loads(body: bytes, *, batched: bool = False) -> Any:
    """The body's JSON value. Nesting past what the parser takes does not fail the request:
    a batch is split into its elements (the deep ones become TOO_DEEP), another body is
    TOO_DEEP as a whole; either way an event that nests too deep is rejected on its own."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _invalid_json(f"The body is not UTF-8 (byte {exc.start}).",
                            f"body: invalid UTF-8 at byte {exc.start}") from None
    try:
        try:
            return jsontext.parse(text)
        except RecursionError:
            return jsontext.split_array(text) if batched else _too_deep(text)
    except ValueError as exc:
        raise _invalid_json(f"The body is not valid JSON: {exc}.", f"body: {exc}") from None


def _too_deep(text: str) -> Any:
    jsontext.split_array("[" + text + "]")  # raises ValueError if the brackets do not balance
    return jsontext.TOO_DEEP


def parse_events(content_type: str | None, headers: Mapping[str, str], body: bytes) -> list:
    """The raw event objects of a request, or a Problem (400/415)."""
    kind = media_type(content_type)
    if kind == STRUCTURED:
        event = _loads(body)
        if event is jsontext.TOO_DEEP:
            return [event]
        if not isinstance(event, dict):
            raise Problem(400, "invalid-body", "Body is not a CloudEvent",
                          "A structured-mode body must be one JSON object.",
                          ["body: expected a JSON object"])
        return [event]
    if kind == BATCHED:
        events = _loads(body, batched=True)
        if not isinstance(events, list):
            raise Problem(400, "invalid-body", "Body is not a CloudEvents batch",
                          "A batched-mode body must be a JSON array of events.",
                          ["body: expected a JSON array"])
        limit = settings.INGEST_MAX_BATCH
        if len(events) > limit:
            raise Problem(400, "batch-too-large", "Batch too large",
                          f"A batch holds at most {limit} events; this one has {len(events)}.",
                          [f"body: {len(events)} events, limit {limit}"])
        return events
    if kind == BINARY:
        event, errors = {}, []
        for name, value in headers.items():
            if not name.startswith(BINARY_PREFIX):
                continue
            try:
                event[name.removeprefix(BINARY_PREFIX)] = header_value(value)
            except ValueError as exc:
                event[name.removeprefix(BINARY_PREFIX)] = value
                errors.append(f"{name}: {exc}")
        event["data"] = _loads(body) if body.strip() else None
        return [Unreadable(event, errors) if errors else event]
    raise Problem(415, "unsupported-media-type", "Unsupported Media Type",
                  f"Content-Type {kind or '(none)'} is not accepted; send {STRUCTURED}, "
                  f"{BATCHED}, or {BINARY} with ce-* headers.",
                  [f"content-type: {kind or '(none)'} not supported"])


@dataclass
class IntakeResult:
    accepted: int = 0
    duplicates: int = 0
    conflicts: int = 0  # of the duplicates; not in the 202 body, whose shape SPEC fixes
    rejected: list = field(default_factory=list)
    pending_ids: list = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """The counts and refusals a webhook answer reports."""
        return {"accepted": self.accepted, "duplicates": self.duplicates,
                "rejected": self.rejected}


MAX_DEPTH = jsontext.MAX_DEPTH
# A valid inbox row's idempotency key within its source: (event source, event id).
EventKey = tuple[str, str]


def _envelope_row(source: Source, raw: Any, received_at: dt.datetime,
                  ) -> tuple[dict[str, Any], list[str] | None]:
    """(row, None) for a valid envelope, (dead-letter row, errors) otherwise."""
    read_errors = []
    if isinstance(raw, Unreadable):
        raw, read_errors = raw.event, raw.errors
    found = jsontext.inspect(raw)
    if found.depth > MAX_DEPTH:
        errors = read_errors + [f"(root): an event may nest at most {MAX_DEPTH} levels"]
        kept: dict[str, str | None] = {
            "unstored": f"the event nested deeper than {MAX_DEPTH} levels"}
        if isinstance(raw, dict):
            event_type = raw.get("type")
            kept = {"id": _raw_id(raw),
                    "type": event_type[:255] if isinstance(event_type, str) else "", **kept}
        return _dead_row(source, jsontext.storable(kept), received_at, errors), errors
    errors, altered = _unstorable_errors(raw, found)
    errors = read_errors + errors
    if errors:
        return _dead_row(source, jsontext.storable(raw), received_at, errors, altered), errors
    try:
        envelope = Envelope.model_validate(raw)
    except ValidationError as exc:
        errors = error_messages(exc)
        return _dead_row(source, raw, received_at, errors), errors
    errors = future_time_errors(envelope, received_at)
    if errors:
        return _dead_row(source, raw, received_at, errors), errors
    return {
        "source_id": source.pk,
        "event_source": envelope.source,
        "event_id": envelope.id,
        "type": envelope.type,
        "time": envelope.time,
        "subject": envelope.subject or "",
        "correlation_id": envelope.correlationid or "",
        "raw": raw,
        "received_at": received_at,
        "status": InboxEvent.Status.PENDING,
        "attempts": 0,
        "errors": [],
    }, None


def _unstorable_errors(raw: Any, found: jsontext.Findings) -> tuple[list[str], list[str]]:
    """(errors, how the stored copy will differ) for an event no JSON column takes as sent,
    or one that is not an object."""
    errors, altered = [], []
    if not isinstance(raw, dict):
        errors.append("(root): an event must be a JSON object")
    if found.unstorable:
        errors.append("(root): strings must not contain NUL (\\u0000) or unpaired surrogate "
                      "(\\ud800-\\udfff) characters")
        altered.append("NUL and unpaired surrogate characters replaced by U+FFFD")
    if found.out_of_range:
        paths = jsontext.out_of_range_paths(raw)
        errors += [f"{path}: the number is outside the range of a binary float (magnitude "
                   "above 1.8e308); send it as a string" for path in paths[:20]]
        errors += [f"… and {len(paths) - 20} more such numbers"] if len(paths) > 20 else []
        altered.append("numbers outside the range of a binary float kept as strings: "
                       + ", ".join(paths[:20]) + (" …" if len(paths) > 20 else ""))
    return errors, altered


def _dead_row(source: Source, raw: Any, received_at: dt.datetime, errors: list[str],
              altered: Iterable[str] = ()) -> dict[str, Any]:
    # The id is not kept as the inbox key: a corrected resend with the same id is accepted.
    return {
        "source_id": source.pk,
        "event_source": _raw_text(raw, "source", 500),
        "event_id": None,
        "type": _raw_text(raw, "type", 255),
        "time": None,
        "subject": "",
        "correlation_id": _raw_text(raw, "correlationid", 255),
        "raw": raw,
        "received_at": received_at,
        "status": InboxEvent.Status.DEAD,
        "attempts": 0,
        "errors": ["envelope: " + message for message in errors]
        + [ALTERED + note for note in altered],
    }


def _raw_id(raw: Any) -> str | None:
    if isinstance(raw, Unreadable):
        raw = raw.event
    value = raw.get("id") if isinstance(raw, dict) else None
    return value if isinstance(value, str) else None


def _raw_text(raw: Any, name: str, limit: int) -> str:
    """A dead letter's attribute as text for its columns, whatever the sender put there."""
    value = raw.get(name, "") if isinstance(raw, dict) else ""
    return str(value)[:limit]


INBOX_COLUMNS = ["source_id", "event_source", "event_id", "type", "time", "subject",
                 "correlation_id", "raw", "content_digest", "received_at", "status", "attempts",
                 "errors"]
IDEMPOTENCY_KEY = ["source_id", "event_source", "event_id"]


# PostgreSQL: the rows travel as one array per column, so the statement stays short and is
# parsed once. The keys go first into their own unique table; an inbox row is written for a
# key that was new, and for every dead letter without an id (it has no key), in the same
# statement.
UNNEST_INSERT = """
WITH e AS (
    SELECT * FROM unnest(%s::bigint[], %s::text[], %s::text[], %s::text[],
                         %s::timestamptz[], %s::text[], %s::text[], %s::text[], %s::text[],
                         %s::text[], %s::text[])
        AS e(source_id, event_source, event_id, type, time, subject, correlation_id, raw,
             content_digest, status, errors)
), k AS (
    INSERT INTO ingestion_inboxkey (source_id, event_source, event_id)
    SELECT source_id, event_source, event_id FROM e WHERE event_id IS NOT NULL
    ON CONFLICT (source_id, event_source, event_id) DO NOTHING
    RETURNING source_id, event_source, event_id
)
INSERT INTO ingestion_inboxevent (source_id, event_source, event_id, type, time, subject,
                                  correlation_id, raw, content_digest, received_at, status,
                                  attempts, errors)
SELECT e.source_id, e.event_source, e.event_id, e.type, e.time, e.subject, e.correlation_id,
       e.raw::jsonb, e.content_digest, %s, e.status, 0, e.errors::jsonb
FROM e
WHERE e.event_id IS NULL
   OR EXISTS (SELECT 1 FROM k WHERE k.source_id = e.source_id
              AND k.event_source = e.event_source AND k.event_id = e.event_id)
RETURNING id, event_source, event_id
"""


def insert_inbox_rows(rows: list[dict[str, Any]]) -> list[tuple[int, str, str | None]]:
    """Insert inbox rows whose idempotency key is new (and dead letters without an id) in
    one statement; returns (pk, event_source, event_id) of the rows inserted."""
    if not rows:  # an empty batch
        return []
    if connection.vendor != "postgresql":
        new_keys = set(insert_returning(
            InboxKey, [row for row in rows if row["event_id"] is not None], IDEMPOTENCY_KEY,
            conflict=IDEMPOTENCY_KEY, returning=["event_source", "event_id"]))
        fresh = [row for row in rows if row["event_id"] is None
                 or (row["event_source"], row["event_id"]) in new_keys]
        return insert_returning(InboxEvent, fresh, INBOX_COLUMNS, conflict=None,
                                returning=["id", "event_source", "event_id"])
    columns = [[row[name] for row in rows] for name in
               ("source_id", "event_source", "event_id", "type", "time", "subject",
                "correlation_id")]
    columns.append([row["raw_json"] for row in rows])  # jsonb ignores the key order
    columns.append([row["content_digest"] for row in rows])
    columns.append([row["status"] for row in rows])
    columns.append([json.dumps(row["errors"]) for row in rows])
    with connection.cursor() as cursor:
        cursor.execute(UNNEST_INSERT, [*columns, rows[0]["received_at"]])
        return cursor.fetchall()


def canonical_json(raw: Any) -> str:
    """An event as canonical JSON (sorted keys, compact): what its content digest hashes."""
    return json.dumps(raw, sort_keys=True, separators=(",", ":"))


def content_digest(raw: Any) -> str:
    """The SHA-256 of an event's canonical JSON: a repeat with other content differs."""
    return hashlib.sha256(canonical_json(raw).encode()).hexdigest()


def _stored_digests(source: Source, keys: set[EventKey]) -> dict[EventKey, str]:
    """{(event source, event id): content digest} of the stored inbox rows with these keys; a
    row stored before digests were kept has its digest computed from its raw JSON."""
    if not keys:
        return {}
    stored = InboxEvent.objects.filter(source=source, event_id__in={eid for _, eid in keys},
                                       event_source__in={es for es, _ in keys})
    # Rows found by these keys all have an event id (only a dead letter's may be NULL).
    digests: dict[EventKey, str] = {
        (es, eid or ""): digest for es, eid, digest in
        stored.values_list("event_source", "event_id", "content_digest")}
    if not all(digests.values()):
        digests.update(((es, eid or ""), content_digest(raw)) for es, eid, raw in
                       stored.filter(content_digest="").values_list("event_source", "event_id",
                                                                   "raw"))
    return digests


def _dead_letter_digests(source: Source, digests: Collection[str]) -> set[str]:
    """Which of these content digests belong to dead letters stored without a key (their
    envelope was refused). An identical resend of one is a repeat with no second effect;
    a corrected one differs and is taken anew."""
    if not digests:
        return set()
    return set(InboxEvent.objects.filter(
        source=source, event_id__isnull=True, content_digest__in=digests,
        status__in=[InboxEvent.Status.DEAD, InboxEvent.Status.DISCARDED],
    ).values_list("content_digest", flat=True))


def _repeat_deliveries(source: Source, repeats: list[tuple[EventKey, str, Any]],
                       first_rows: Mapping[EventKey, dict[str, Any]],
                       inserted_keys: set[EventKey],
                       received_at: dt.datetime) -> list[DuplicateDelivery]:
    """DuplicateDelivery rows for repeats [(key, digest, raw)]; a repeat whose content differs
    from the stored event is a conflict and keeps its raw JSON."""
    if not repeats:
        return []
    digests = {key: first_rows[key]["content_digest"] for key in inserted_keys}
    digests.update(_stored_digests(source, {key for key, _, _ in repeats} - inserted_keys))
    deliveries = []
    for (event_source, event_id), digest, raw in repeats:
        # A row gone since the insert (pruned) leaves nothing to compare: not a conflict.
        conflict = digests.get((event_source, event_id), digest) != digest
        deliveries.append(DuplicateDelivery(
            source=source, event_source=event_source, event_id=event_id,
            received_at=received_at, conflict=conflict, raw=raw if conflict else None))
    return deliveries


def store_events(source: Source, raw_events: list) -> IntakeResult:
    """Commit every event of one request to the inbox; enqueue processing after commit."""
    received_at = timezone.now()
    result = IntakeResult()
    rows, first_rows, repeats, rejected = [], {}, [], []
    for index, raw in enumerate(raw_events):
        row, errors = _envelope_row(source, raw, received_at)
        row["raw_json"] = canonical_json(row["raw"])
        row["content_digest"] = hashlib.sha256(row["raw_json"].encode()).hexdigest()
        key = (row["event_source"], row["event_id"])
        if errors:
            rejected.append((index, raw, row, errors))
        elif key in first_rows:
            repeats.append((key, row["content_digest"], row["raw"]))
        else:
            first_rows[key] = row
            rows.append(row)

    with transaction.atomic():
        deliveries = []
        known = _dead_letter_digests(source, {row["content_digest"] for _, _, row, _ in rejected})
        for index, raw, row, errors in rejected:
            if row["content_digest"] in known:  # this very dead letter is stored already
                deliveries.append(DuplicateDelivery(
                    source=source, event_source=row["event_source"],
                    event_id=(_raw_id(raw) or "")[:255], received_at=received_at))
                continue
            known.add(row["content_digest"])
            result.rejected.append({"index": index, "id": _raw_id(raw), "errors": errors})
            rows.append(row)
        inserted = insert_inbox_rows(rows)
        inserted_keys = {(es, eid) for _, es, eid in inserted if eid is not None}
        repeats += [(key, row["content_digest"], row["raw"])
                    for key, row in first_rows.items() if key not in inserted_keys]
        deliveries += _repeat_deliveries(source, repeats, first_rows, inserted_keys, received_at)
        if deliveries:
            DuplicateDelivery.objects.bulk_create(deliveries)
            result.conflicts = sum(delivery.conflict for delivery in deliveries)
            if result.conflicts:
                log.warning("%d repeat(s) from %s differ from the stored event (conflicts)",
                            result.conflicts, source.slug)
        result.accepted = len(inserted_keys)
        result.duplicates = len(deliveries)
        result.pending_ids = [pk for pk, _, event_id in inserted if event_id is not None]
        dead_ids = [pk for pk, _, event_id in inserted if event_id is None]
        from .tasks import enqueue_dead_letter_announcement, enqueue_processing

        if result.pending_ids:
            pending = list(result.pending_ids)
            transaction.on_commit(lambda: enqueue_processing(pending), robust=True)
        if dead_ids:
            transaction.on_commit(lambda: enqueue_dead_letter_announcement(dead_ids),
                                  robust=True)
    if inserted_keys or deliveries:
        # At most one write a second per source: concurrent requests do not queue on the row.
        type(source).objects.filter(pk=source.pk).filter(
            Q(last_event_at__isnull=True)
            | Q(last_event_at__lt=received_at - dt.timedelta(seconds=1))
        ).update(last_event_at=received_at)
    metrics.count_intake(result)
    return result
