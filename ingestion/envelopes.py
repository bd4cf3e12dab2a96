"""What intake and replay both check of an accepted envelope, and the note they both read.

Kept apart from `intake` so that processing (`pipeline`, reached from intake through the
tasks it enqueues) can use them without importing intake back.
"""
import datetime as dt

from django.conf import settings

from .contracts import Envelope

# Dead-letter errors that say how the stored copy differs from what the sender sent.
ALTERED = "stored altered: "


def future_time_errors(envelope: Envelope, now: dt.datetime) -> list[str]:
    """An event whose time lies more than INGEST_FUTURE_LIMIT_HOURS after `now` is refused:
    a clock error must not win last-writer-wins forever."""
    hours = settings.INGEST_FUTURE_LIMIT_HOURS
    if envelope.time <= now + dt.timedelta(hours=hours):
        return []
    return [f"time: {envelope.time.isoformat()} is more than {hours} hours after "
            f"{now.isoformat(timespec='seconds')}, when it was checked (time in the future)"]
