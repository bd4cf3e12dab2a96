"""Correcting a dead letter's payload and replaying it.

A triager sees the failing event with its failing fields marked (the inbox row's `errors`
name them), edits the JSON and replays it. Nothing changes unless the corrected event is
valid JSON, a valid CloudEvents envelope and valid data for its type. Then, in one
transaction: the correction becomes a new inbox row (the original keeps its payload, its
errors and its key; its status becomes `discarded`, superseded), a PayloadCorrection links
the two, the case's timeline and the security audit record it. The new row is then processed
by the normal pipeline, and the dead-letter rule re-evaluated."""
import datetime as dt
import json
from collections.abc import Iterable
from typing import Any

from django.db import transaction
from pydantic import ValidationError

from ingestion import pipeline
from ingestion.catalog import CONTRACTS, validate_data
from ingestion.contracts import Envelope, error_messages
from ingestion.intake import content_digest, future_time_errors
from ingestion.models import InboxEvent, InboxKey
from opsview import audit

from . import services
from .models import Case, CaseType, PayloadCorrection

MAX_BYTES = 1_000_000


class CorrectionError(ValueError):
    """A correction that cannot be replayed; `errors` name the fields and what is wrong."""

    def __init__(self, message: str, errors: Iterable[str] = ()) -> None:
        super().__init__(message)
        self.errors = list(errors)


def field_of(error: object) -> str:
    """'data.amount: Input should be…' → 'data.amount'; 'envelope: time: …' → 'time'."""
    text = str(error)
    if text.startswith("envelope: "):
        text = text[len("envelope: "):]
    return text.split(": ", 1)[0].strip() if ": " in text else "(root)"


def payload_rows(raw: Any, errors: list | None) -> list[dict]:
    """The event's fields as (path, value as JSON, failing messages), depth first, and the
    failing fields it lacks (a required field missing) after them."""
    failing: dict[str, list[str]] = {}
    for error in errors or []:
        failing.setdefault(field_of(error), []).append(str(error))
    rows: list[dict[str, Any]] = []
    seen: set[str] = set()

    def walk(value: Any, path: str) -> None:
        if isinstance(value, dict) and value:
            for key, item in value.items():
                walk(item, f"{path}.{key}" if path else str(key))
            return
        if isinstance(value, list) and value:
            for index, item in enumerate(value):
                walk(item, f"{path}.{index}")
            return
        seen.add(path)
        rows.append({"path": path or "(root)", "value": json.dumps(value, ensure_ascii=False),
                     "errors": failing.get(path or "(root)", [])})

    walk(raw, "")
    # A failing object (data: "not an object") or a missing field is listed as such.
    for path, messages in failing.items():
        if path not in seen and not any(r["path"].startswith(path + ".") for r in rows):
            rows.append({"path": path, "value": "(missing)", "errors": messages})
        elif path not in seen:
            for row in rows:
                if row["path"].startswith(path + ".") and not row["errors"]:
                    row["errors"] = messages
                    break
    return rows


def pretty(raw: Any) -> str:
    return json.dumps(raw, indent=2, ensure_ascii=False)


def _parse(text: str) -> dict[str, Any]:
    if len(text.encode()) > MAX_BYTES:
        raise CorrectionError(f"the corrected event is over {MAX_BYTES:,} bytes")
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as error:
        raise CorrectionError(f"not valid JSON: {error.msg} at line {error.lineno}, column "
                              f"{error.colno}") from None
    if not isinstance(raw, dict):
        raise CorrectionError("an event must be a JSON object")
    return raw


def _validate(raw: dict[str, Any], now: dt.datetime) -> Envelope:
    try:
        envelope = Envelope.model_validate(raw)
    except ValidationError as error:
        raise CorrectionError("the envelope is still invalid", error_messages(error)) from None
    problems = future_time_errors(envelope, now)
    if problems:
        raise CorrectionError("the event's time is still in the future", problems)
    if envelope.type not in CONTRACTS:
        raise CorrectionError(f"OpsView has no event type {envelope.type!r}",
                              [f"type: unknown event type {envelope.type!r}"])
    try:
        validate_data(envelope.type, raw.get("data"))
    except ValidationError as error:
        raise CorrectionError("the data is still invalid",
                              error_messages(error, prefix="data.")) from None
    return envelope


def _free_id(original: InboxEvent, envelope: Envelope, raw: dict[str, Any]) -> str:
    """The corrected event's id: its own when its key is free (a dead letter whose envelope
    was refused holds none), else the original id with `~fix<n>` so both rows keep theirs."""
    # Keys outlive the inbox rows retention drops: a pruned event's id stays taken.
    taken = InboxKey.objects.filter(source_id=original.source_id, event_source=envelope.source)
    if not taken.filter(event_id=envelope.id).exists():
        return envelope.id
    n = original.corrections.count() + 1
    while taken.filter(event_id=f"{envelope.id}~fix{n}").exists():
        n += 1
    return f"{envelope.id}~fix{n}"[:255]


def correct_and_replay(case: Case, original: InboxEvent, text: str, actor: Any, *,
                       comment: str = "", request: Any = None,
                       now: dt.datetime | None = None) -> tuple[PayloadCorrection, str]:
    """Store the corrected event and process it. Returns (the correction, the replay
    summary). Raises CorrectionError, changing nothing, when it cannot be replayed."""
    from django.utils import timezone

    now = now or timezone.now()
    if original.pk not in case.detail.get("inbox_ids", []):
        raise CorrectionError(f"inbox event {original.pk} is not a dead letter of this case")
    if original.status != InboxEvent.Status.DEAD:
        raise CorrectionError(f"inbox event {original.pk} is {original.status}, no longer a "
                              "dead letter")
    raw = _parse(text)
    if raw == original.raw:
        raise CorrectionError("the event is unchanged: correct the failing fields first")
    envelope = _validate(raw, now)
    with transaction.atomic():
        event_id = _free_id(original, envelope, raw)
        if event_id != envelope.id:
            raw = {**raw, "id": event_id}
        InboxKey.objects.create(source_id=original.source_id, event_source=envelope.source,
                                event_id=event_id)
        corrected = InboxEvent.objects.create(
            source_id=original.source_id, event_source=envelope.source, event_id=event_id,
            type=envelope.type, time=envelope.time, subject=envelope.subject or "",
            correlation_id=envelope.correlationid or "", raw=raw,
            content_digest=content_digest(raw), received_at=now)
        # Only the status: the payload, its errors and its key stay as they arrived.
        InboxEvent.objects.filter(pk=original.pk).update(status=InboxEvent.Status.DISCARDED)
        correction = PayloadCorrection.objects.create(
            case=case, original=original, corrected=corrected, actor=actor, at=now,
            comment=comment)
        services.note(case, actor, "payload_corrected",
                      f"Inbox event #{original.pk} corrected as #{corrected.pk} and replayed."
                      + (f" {comment}" if comment else ""), now=now)
        audit.record("inbox.dead_letter_corrected", f"inbox:{original.pk}", request=request,
                     actor=actor, corrected=corrected.pk, case=case.pk, event_id=event_id)
    pipeline.process_events([corrected.pk])
    from .rules import dead_letter, reconcile

    reconcile(CaseType.DEAD_LETTER, dead_letter, count=False)
    corrected.refresh_from_db()
    summary = (f"Corrected event #{corrected.pk} {corrected.status}"
               + (f": {'; '.join(corrected.errors[:3])}" if corrected.errors else "") + ".")
    services.note(case, actor, "replayed", summary)
    return correction, summary
