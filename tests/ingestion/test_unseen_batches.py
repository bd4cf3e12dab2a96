"""A processed batch whose exception rules did not run — its worker killed, the database
restarted, a rule raising between the batch's commit and the rules — is kept and announced
by the sweeper, so no case is left stale until the next full evaluation."""
import datetime as dt

import psycopg
import pytest
from django.db import OperationalError, connection
from django.utils import timezone

from exceptions import rules
from exceptions.models import Case
from ingestion import pipeline, tasks
from ingestion.models import ProcessedBatch
from tests.exceptions.test_rules import ago, entry, person, project, sync


def open_cases(case_type):
    return Case.objects.filter(type=case_type, status__in=Case.OPEN_STATES).count()


def age_unseen(seconds=600):
    ProcessedBatch.objects.update(created_at=timezone.now() - dt.timedelta(seconds=seconds))


@pytest.fixture
def rules_down(monkeypatch):
    """Every event-driven rule fails as if the database went away mid-way."""

    def gone(*args, **kwargs):
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(rules, "reconcile", gone)
    return monkeypatch


def test_a_batch_is_forgotten_once_its_rules_ran(deliver, process):
    deliver.send(project(), person(), entry("approved", ago(hours=2)), sync(False, ago(hours=2)))
    process()
    assert open_cases("sync_failed") == 1
    assert not ProcessedBatch.objects.exists()


def test_rules_that_failed_run_again_from_the_sweeper(deliver, process, rules_down, settings):
    deliver.send(project(), person(), entry("approved", ago(hours=2)), sync(False, ago(hours=2)))
    process()
    assert open_cases("sync_failed") == 0
    [unseen] = ProcessedBatch.objects.all()
    assert unseen.changes["sync_attempts"] == [["psa-to-erp", "time_entry", "T1", False]]

    rules_down.undo()
    settings.INGEST_SWEEP_AFTER_SECONDS = 60
    assert tasks.sweep_inbox()["batches_announced"] == 0  # too young: its worker may be on it
    age_unseen()
    assert tasks.sweep_inbox()["batches_announced"] == 1
    assert open_cases("sync_failed") == 1
    assert not ProcessedBatch.objects.exists()


def test_a_worker_killed_after_commit_leaves_its_batch_to_the_sweeper(deliver, process,
                                                                      monkeypatch):
    deliver.send(project(), person(), entry("approved", ago(hours=3)), sync(False, ago(hours=3)))
    process()
    assert open_cases("sync_failed") == 1
    # The success arrives; the worker dies right after committing it, before any rule ran.
    monkeypatch.setattr(pipeline, "_announce", lambda unseen, changes: None)
    deliver.send(sync(True, ago(hours=1)))
    process()
    assert open_cases("sync_failed") == 1  # stale: the rules never saw the success
    monkeypatch.undo()
    age_unseen()
    assert pipeline.settle_unseen_batches(older_than=timezone.now()) == 1
    assert open_cases("sync_failed") == 0


def test_a_batch_whose_rules_keep_failing_is_left_to_the_time_based_evaluation(
        deliver, process, rules_down):
    deliver.send(project(), person(), entry("approved", ago(hours=2)), sync(False, ago(hours=2)))
    process()
    age_unseen()
    for attempt in range(1, 5):
        assert pipeline.settle_unseen_batches(older_than=timezone.now()) == 0
        assert ProcessedBatch.objects.get().attempts == attempt
    pipeline.settle_unseen_batches(older_than=timezone.now())  # the fifth failure
    assert not ProcessedBatch.objects.exists()
    rules_down.undo()
    rules.evaluate_time_rules()
    assert open_cases("sync_failed") == 1


@pytest.mark.skipif(connection.vendor != "postgresql", reason="advisory locks: PostgreSQL")
@pytest.mark.django_db(transaction=True)
def test_the_sweeper_skips_a_batch_its_worker_is_still_announcing(deliver, process,
                                                                  rules_down):
    deliver.send(project(), person(), entry("approved", ago(hours=2)), sync(False, ago(hours=2)))
    process()
    rules_down.undo()
    age_unseen()
    unseen = ProcessedBatch.objects.get()
    settings = connection.settings_dict
    with psycopg.connect(host=settings["HOST"], port=settings["PORT"] or 5432,
                         user=settings["USER"], dbname=settings["NAME"],
                         autocommit=True) as worker:
        worker.execute("SELECT pg_advisory_lock(%s, %s)", [pipeline.ANNOUNCING, unseen.pk])
        assert pipeline.settle_unseen_batches(older_than=timezone.now()) == 0
        assert ProcessedBatch.objects.filter(pk=unseen.pk).exists()
        worker.execute("SELECT pg_advisory_unlock(%s, %s)", [pipeline.ANNOUNCING, unseen.pk])
    assert pipeline.settle_unseen_batches(older_than=timezone.now()) == 1
    assert open_cases("sync_failed") == 1


def test_the_next_processing_task_announces_a_batch_left_unseen(deliver, process, rules_down):
    deliver.send(project(), person(), entry("approved", ago(hours=2)), sync(False, ago(hours=2)))
    process()
    rules_down.undo()
    age_unseen()
    deliver.send(entry("approved", ago(hours=1), eid="T2"))
    tasks.process_inbox_events.run([])  # a later batch's task, no beat needed
    assert open_cases("sync_failed") == 1
    assert not ProcessedBatch.objects.exists()
