"""The beat sweeper re-enqueues inbox rows a lost broker message left pending."""
import datetime as dt

from django.utils import timezone

from ingestion import tasks
from ingestion.models import InboxEvent
from opsview.models import TimeEntry


def approved(i):
    return {"time_entry_id": f"te-{i}", "project_id": "p", "person_id": "u",
            "work_date": "2026-11-02", "hours": "1", "billable": True}


def test_rows_left_pending_are_processed_by_the_sweeper(deliver, event, settings):
    deliver.send(*[event("time_entry.approved", approved(i)) for i in range(5)])
    # The broker lost the message: the rows sit pending, as received three minutes ago.
    InboxEvent.objects.update(received_at=timezone.now() - dt.timedelta(minutes=3))
    settings.INGEST_SWEEP_AFTER_SECONDS = 120
    assert tasks.sweep_inbox()["enqueued"] == 5
    assert InboxEvent.objects.filter(status="processed").count() == 5
    assert TimeEntry.objects.count() == 5


def test_recent_pending_rows_are_left_to_the_task_already_queued(deliver, event, settings):
    deliver.send(event("time_entry.approved", approved(1)))
    settings.INGEST_SWEEP_AFTER_SECONDS = 120
    assert tasks.sweep_inbox()["enqueued"] == 0
    assert InboxEvent.objects.get().status == "pending"


def test_enqueue_failure_keeps_rows_pending_for_the_sweeper(deliver, event, settings,
                                                            monkeypatch):
    from config.celery import app

    def broker_down(*args, **kwargs):
        raise ConnectionError("broker unreachable")

    app.conf.task_always_eager = False  # restored by the autouse fixture
    settings.CELERY_TASK_ALWAYS_EAGER = False
    monkeypatch.setattr(tasks.process_inbox_events, "delay", broker_down)
    deliver.send(event("time_entry.approved", approved(1)))
    tasks.enqueue_processing(list(InboxEvent.objects.values_list("pk", flat=True)))
    assert InboxEvent.objects.get().status == "pending"
