"""What one batch of inbox rows did: the rows processed, dead and unhandled, and the state
its merges touched, announced to the layers above once the batch commits."""
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from django.db import models

from ingestion.announce import BatchChanges, SyncSeen


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

    def touch(self, model: type[models.Model], pks: Iterable[int]) -> None:
        """Note rows of `model` this batch changed."""
        self.touched[model._meta.label].update(pks)

    def clear(self) -> None:
        """Forget what a failed attempt at the whole batch touched."""
        self.touched.clear()
        self.sync_attempts.clear()
        self.staged.clear()

    def changes(self) -> BatchChanges:
        """What the layers above are told about this batch."""
        return BatchChanges(
            events=bool(self.processed or self.dead or self.unhandled),
            dead=bool(self.dead),
            # new dead letters, or replayed ones that now went through
            dead_letters_changed=bool(self.dead) or any(row.errors for row in self.processed),
            touched={label: set(pks) for label, pks in self.touched.items() if pks},
            staged={kind: set(pks) for kind, pks in self.staged.items() if pks},
            sync_attempts=[SyncSeen(a.flow, a.object_type, a.object_id, a.succeeded)
                           for a in self.sync_attempts])
