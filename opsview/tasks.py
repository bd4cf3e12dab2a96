"""Celery tasks for the business state: thin wrappers around opsview.derived."""
import logging

from celery import shared_task

from . import derived

log = logging.getLogger(__name__)


@shared_task(name="opsview.tasks.compact_wip_day_changes")
def compact_wip_day_changes() -> int:
    """Fold the day changes the workers appended since the last run (beat, every minute)."""
    removed = derived.compact_day_changes()
    log.debug("WIP day changes: %d rows folded", removed)
    return removed
