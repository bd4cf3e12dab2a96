"""What processing tells the layers above it: each processed batch, once committed.

Ingestion knows nothing of who listens: an app above it subscribes in its
`AppConfig.ready()` (the exceptions app subscribes its event-driven rules). A subscriber
returns True when it saw the batch whole; a batch that some subscriber did not see whole
stays unseen (a `ProcessedBatch` row) and is announced again by the sweeper.
"""
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SyncSeen:
    flow: str
    object_type: str
    object_id: str
    succeeded: bool


@dataclass
class BatchChanges:
    """What the event-driven exception rules need to know of a processed batch; kept as JSON
    (ProcessedBatch) until they have run."""

    events: bool = False
    dead: bool = False
    dead_letters_changed: bool = False
    touched: dict = field(default_factory=dict)  # model label -> pks
    staged: dict = field(default_factory=dict)  # kind -> pks
    sync_attempts: list = field(default_factory=list)  # [SyncSeen]

    def as_json(self) -> dict[str, Any]:
        """The changes as JSON, to be kept until the rules have seen them."""
        return {"events": self.events, "dead": self.dead,
                "dead_letters_changed": self.dead_letters_changed,
                "touched": {k: sorted(v) for k, v in self.touched.items()},
                "staged": {k: sorted(v) for k, v in self.staged.items()},
                "sync_attempts": [[a.flow, a.object_type, a.object_id, a.succeeded]
                                  for a in self.sync_attempts]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "BatchChanges":
        """The changes `as_json` wrote."""
        return cls(events=data["events"], dead=data["dead"],
                   dead_letters_changed=data["dead_letters_changed"],
                   touched={k: set(v) for k, v in data["touched"].items()},
                   staged={k: set(v) for k, v in data["staged"].items()},
                   sync_attempts=[SyncSeen(*a) for a in data["sync_attempts"]])


Subscriber = Callable[[BatchChanges], bool]
_subscribers: dict[str, Subscriber] = {}


def subscribe(subscriber: Subscriber) -> Subscriber:
    """Announce every processed batch to `subscriber` (once, however often it subscribes)."""
    _subscribers[f"{subscriber.__module__}.{subscriber.__qualname__}"] = subscriber
    return subscriber


def batch_processed(changes: BatchChanges) -> bool:
    """Tell every subscriber; True when each saw the batch whole. A subscriber that raises
    never undoes processing: the batch stays unseen for the sweeper."""
    seen = True
    for name, subscriber in list(_subscribers.items()):
        try:
            seen = subscriber(changes) is not False and seen
        except Exception:
            log.exception("%s failed on a processed batch", name)
            seen = False
    return seen
