"""Celery tasks for the inbox: thin wrappers around ingestion.pipeline."""
import datetime as dt
import logging
from collections.abc import Collection

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from . import pipeline

log = logging.getLogger(__name__)


@shared_task(name="ingestion.tasks.process_inbox_events", acks_late=True,
             autoretry_for=(Exception,), retry_backoff=True, max_retries=5)
def process_inbox_events(event_ids: list[int]) -> dict[str, int]:
    """Process these rows, then keep draining whatever else is pending for a while: under
    load, one task handles large batches and the tasks queued behind it find little to do."""
    outcome = pipeline.process_events(event_ids)
    totals = pipeline.drain_inbox(batch_size=settings.INGEST_PROCESS_BATCH,
                                  max_seconds=settings.INGEST_DRAIN_SECONDS)
    # Batches whose rules a killed worker or a database restart left unseen: whoever works
    # next announces them, without waiting for beat's sweeper.
    pipeline.settle_unseen_batches(older_than=_left_behind_before())
    return {"processed": len(outcome.processed) + totals.get("processed", 0)}


def _left_behind_before() -> dt.datetime:
    return timezone.now() - dt.timedelta(seconds=settings.INGEST_SWEEP_AFTER_SECONDS)


def enqueue_processing(event_ids: list[int]) -> None:
    """Queue inbox rows in batches; a broker outage only delays them (the sweeper retries)."""
    size = settings.INGEST_PROCESS_BATCH
    for start in range(0, len(event_ids), size):
        try:
            process_inbox_events.delay(event_ids[start:start + size])
        except Exception:  # broker down: rows stay pending and the sweeper re-enqueues them
            if settings.CELERY_TASK_ALWAYS_EAGER:
                raise
            log.warning("could not enqueue %d inbox rows; the sweeper will pick them up",
                        len(event_ids) - start)
            return


@shared_task(name="ingestion.tasks.announce_dead_letters", acks_late=True,
             autoretry_for=(Exception,), retry_backoff=True, max_retries=5)
def announce_dead_letters(event_ids: list[int]) -> None:
    """Let the exception rules see dead letters kept at intake."""
    pipeline.announce_dead_letters(event_ids)


def enqueue_dead_letter_announcement(event_ids: Collection[int]) -> None:
    """After intake commits dead letters; a broker outage only delays their case until the
    time-based rules run."""
    try:
        announce_dead_letters.delay(list(event_ids))
    except Exception:  # broker down
        if settings.CELERY_TASK_ALWAYS_EAGER:
            raise
        log.warning("could not announce %d dead letters; the time-based rules will",
                    len(event_ids))


@shared_task(name="ingestion.tasks.sweep_inbox")
def sweep_inbox() -> dict[str, int]:
    """Re-enqueue inbox rows still pending after INGEST_SWEEP_AFTER_SECONDS, and let the
    exception rules see the processed batches they have not seen by then."""
    cutoff = _left_behind_before()
    ids = pipeline.pending_ids(limit=50_000, older_than=cutoff)
    enqueue_processing(ids)
    settled = pipeline.settle_unseen_batches(older_than=cutoff)
    return {"enqueued": len(ids), "batches_announced": settled}


@shared_task(name="ingestion.tasks.ensure_inbox_partitions")
def ensure_inbox_partitions() -> list[str]:
    """Create the inbox partitions of this month and the next ones before rows arrive (rows
    of a month without one still land in the DEFAULT partition)."""
    from . import partitions

    return partitions.ensure_partitions(settings.INBOX_PARTITIONS_AHEAD)
