"""A case as the read API and the outbound case webhook show it."""
import datetime as dt
from typing import Any


def serialize(case: Any) -> dict[str, Any]:
    """The case as JSON-ready values."""
    return {
        "id": case.pk, "type": case.type, "fingerprint": case.fingerprint, "title": case.title,
        "status": case.status, "severity": case.severity, "queue": case.queue.slug,
        "owner": case.owner.username if case.owner else None,
        "money_at_stake": None if case.money_at_stake is None else f"{case.money_at_stake:.2f}",
        "currency": case.currency or None,
        "object": {"kind": case.object_kind, "id": case.object_id},
        "client_id": case.client_id or None, "project_id": case.project_id or None,
        "began_at": case.began_at.isoformat(), "opened_at": case.opened_at.isoformat(),
        "first_seen_at": case.first_seen_at.isoformat(),
        "last_seen_at": case.last_seen_at.isoformat(), "times_seen": case.times_seen,
        "sla": {"state": case.sla_state, "breached": case.sla_state == "breached",
                "response_due_at": _iso(case.response_due_at),
                "resolution_due_at": _iso(case.resolution_due_at),
                "blocks_period": case.blocks_period or None,
                "cutoff_at": _iso(case.cutoff_at),
                "acknowledged_at": _iso(case.acknowledged_at)},
        "resolved_at": _iso(case.resolved_at), "resolution_code": case.resolution_code or None,
    }


def _iso(value: dt.datetime | dt.date | None) -> str | None:
    return value.isoformat() if value else None
