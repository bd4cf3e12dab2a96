"""Building and signing CloudEvents: the one helper the simulator, tests and docs use."""
import datetime as dt
import json
import uuid
from decimal import Decimal
from typing import Any

from .signing import signed_headers

STRUCTURED = "application/cloudevents+json"
BATCHED = "application/cloudevents-batch+json"


def _json_default(value: Any) -> str:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def dumps(value: Any) -> str:
    """Compact JSON; Decimals as strings, dates as ISO 8601."""
    return json.dumps(value, default=_json_default, separators=(",", ":"))


def make_event(event_type: str, data: Any, *, event_id: str | None = None,
               time: dt.datetime | str | None = None, source: str = "urn:opsview:test",
               subject: str | None = None, correlationid: str | None = None) -> dict[str, Any]:
    """A CloudEvents 1.0 event as a dict; money may be given as Decimal."""
    time = time or dt.datetime.now(dt.UTC)
    if isinstance(time, dt.datetime):
        time = time.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")
    event = {
        "specversion": "1.0",
        "id": event_id or str(uuid.uuid4()),
        "source": source,
        "type": event_type,
        "time": time,
        "datacontenttype": "application/json",
        "data": json.loads(dumps(data)),
    }
    if subject:
        event["subject"] = subject
    if correlationid:
        event["correlationid"] = correlationid
    return event


def signed_request(secret: str, events: dict | list, *, msg_id: str | None = None,
                   timestamp: int | float | None = None) -> tuple[bytes, dict[str, str]]:
    """(body bytes, headers) for one event (structured) or a list (batched)."""
    batched = isinstance(events, list)
    body = dumps(events).encode()
    headers = signed_headers(secret, msg_id or f"msg_{uuid.uuid4().hex}", body, timestamp)
    headers["content-type"] = BATCHED if batched else STRUCTURED
    return body, headers
