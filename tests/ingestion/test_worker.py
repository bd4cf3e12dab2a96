"""A real Celery worker on Redis against PostgreSQL: events posted over HTTP are processed,
and a worker killed mid-batch loses nothing (the sweeper re-enqueues what it left)."""
import os
import signal
import subprocess
import sys
import time
import uuid

import pytest
import requests
from django.db import connection

from config.celery import app as celery_app
from ingestion import tasks
from ingestion.events import make_event, signed_request
from ingestion.intake import store_events
from ingestion.models import InboxEvent
from opsview.models import TimeEntry

pytestmark = [
    pytest.mark.worker,
    pytest.mark.skipif(not os.environ.get("CELERY_BROKER_URL", "").startswith("redis"),
                       reason="needs CELERY_BROKER_URL=redis://…"),
    pytest.mark.skipif(not os.environ.get("DATABASE_URL", "").startswith("postgres"),
                       reason="a worker process needs a shared database (PostgreSQL)"),
]
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def entry(i, project="p-1"):
    return make_event("time_entry.approved", {
        "time_entry_id": f"te-{i}", "project_id": project, "person_id": f"u-{i % 7}",
        "work_date": "2026-11-02", "hours": "1.00", "billable": True})


class Worker:
    def __init__(self, queue):
        self.queue = queue
        self.process = None

    def start(self):
        db = connection.settings_dict
        env = dict(os.environ)
        env["DATABASE_URL"] = (f"postgresql://{db['USER']}@{db['HOST'] or '127.0.0.1'}:"
                               f"{db['PORT'] or 5432}/{db['NAME']}")
        env["PYTHONPATH"] = ROOT
        self.process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "config", "worker", "-Q", self.queue,
             "--pool", "solo", "--without-heartbeat", "--without-mingle", "--without-gossip",
             "-l", "warning"],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return self

    def kill(self):
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture
def worker_queue(settings, transactional_db, django_db_serialized_rollback):
    queue = f"opsview-test-{uuid.uuid4().hex[:8]}"
    previous = (celery_app.conf.task_always_eager, celery_app.conf.task_default_queue)
    celery_app.conf.task_always_eager = False
    celery_app.conf.task_default_queue = queue
    settings.CELERY_TASK_ALWAYS_EAGER = False
    workers = []

    def start_worker():
        workers.append(Worker(queue).start())
        return workers[-1]

    yield start_worker
    for worker in workers:
        worker.stop()
    with celery_app.connection_for_write() as conn:
        conn.default_channel.queue_purge(queue)
    celery_app.conf.task_always_eager, celery_app.conf.task_default_queue = previous


def wait_until(condition, timeout=60, interval=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval)
    return False


def count(status):
    return InboxEvent.objects.filter(status=status).count()


def test_events_posted_over_http_are_processed_by_the_worker(worker_queue, live_server, source):
    worker_queue()
    events = [entry(i) for i in range(300)]
    body, headers = signed_request(source.secret, events)
    response = requests.post(f"{live_server.url}/ingest/{source.slug}/events", data=body,
                             headers=headers, timeout=30)
    assert response.status_code == 202
    assert response.json()["accepted"] == 300
    assert wait_until(lambda: count("processed") == 300), (count("pending"), count("dead"))
    assert TimeEntry.objects.filter(status="approved").count() == 300


def test_a_worker_killed_mid_batch_loses_nothing(worker_queue, source, settings):
    total = 12_000
    for start in range(0, total, 500):  # 24 batches, each enqueued on commit
        store_events(source, [entry(i, project=f"p-{i % 40}") for i in range(start, start + 500)])
    assert count("pending") == total

    worker = worker_queue()
    assert wait_until(lambda: count("processed") > 0, timeout=60)
    worker.kill()
    processed, pending = count("processed"), count("pending")
    assert pending > 0, "the worker finished before it could be killed; raise `total`"
    assert processed + pending == total
    # Nothing half-written: exactly the processed rows have business state.
    assert TimeEntry.objects.count() == processed

    settings.INGEST_SWEEP_AFTER_SECONDS = 0
    worker_queue()
    assert tasks.sweep_inbox.run()["enqueued"] == pending  # every row the dead worker left
    assert wait_until(lambda: count("processed") == total, timeout=120), count("pending")
    assert TimeEntry.objects.count() == total
    assert count("dead") == 0
