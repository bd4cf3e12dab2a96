"""Retry through the middleware, end to end: a triager requests a retry, OpsView posts a
signed `opsview.retry.requested` to the source's callback URL, the receiver from
docs/connecting.md verifies it with the Standard Webhooks reference library and acts by
reporting `sync.succeeded`, and that success clears the case."""
import datetime as dt
import json
import re
import threading
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from exceptions.models import Case
from ingestion.events import make_event
from integrations import deliveries, retries
from integrations.models import Delivery
from tests.conftest import make_role_user, reseed

DOCS = Path(__file__).resolve().parents[2] / "docs" / "connecting.md"
UTC = dt.UTC


def receiver_code():
    """The last Python block of docs/connecting.md: the receiver the docs show."""
    return re.findall(r"```python\n(.*?)```", DOCS.read_text(), re.S)[-1]


def failure(when, object_id="TE-1"):
    return make_event("sync.failed", {
        "flow": "psa-to-erp", "source_system": "psa", "target_system": "erp",
        "object_type": "time_entry", "object_id": object_id, "attempt": 1,
        "error_code": "ERP-503", "error_message": "ERP unavailable", "retryable": True},
        time=when, correlationid=object_id)


def takes_retries(source, url):
    source.callback_url = url
    source.save()
    return source.new_callback_secret()


@pytest.fixture
def failed_sync(deliver, process, source):
    reseed()  # a live-server test starts from flushed tables: the seeded queues and rules
    deliver.send(failure(dt.datetime.now(UTC) - dt.timedelta(hours=1)))
    process()
    return Case.objects.get(type="sync_failed")


@pytest.fixture
def docs_receiver(live_server, django_db_serialized_rollback, source, monkeypatch):
    """The docs' receiver, run as written, against the live OpsView."""
    source.callback_url = "http://127.0.0.1:0/"  # set below, once the port is known
    monkeypatch.setenv("OPSVIEW_URL", live_server.url)
    monkeypatch.setenv("OPSVIEW_SOURCE", source.slug)
    monkeypatch.setenv("OPSVIEW_INGEST_SECRET", source.secret)
    monkeypatch.setenv("OPSVIEW_CALLBACK_SECRET", source.new_callback_secret())
    namespace = {"__name__": "receiver"}
    exec(compile(receiver_code(), str(DOCS), "exec"), namespace)  # noqa: S102 - our own docs
    server = ThreadingHTTPServer(("127.0.0.1", 0), namespace["RetryReceiver"])
    threading.Thread(target=server.serve_forever, daemon=True).start()
    source.callback_url = f"http://127.0.0.1:{server.server_address[1]}/opsview/retry"
    source.save()
    yield server
    server.shutdown()
    server.server_close()


def test_a_retry_request_leads_to_a_cleared_case(docs_receiver, client, failed_sync):
    triager = make_role_user("ann", "integration")
    client.force_login(triager)
    page = client.get(f"/exceptions/{failed_sync.pk}/").content.decode()
    assert "Request retry" in page
    response = client.post(f"/integrations/cases/{failed_sync.pk}/retry")
    assert response.status_code == 302
    failed_sync.refresh_from_db()
    assert (failed_sync.status, failed_sync.resolution_code) == ("resolved", "cleared")
    delivery = Delivery.objects.get(kind="retry_request")
    assert (delivery.status, delivery.attempts) == ("delivered", 1)
    event = json.loads(delivery.body)
    assert event["type"] == "opsview.retry.requested"
    assert event["data"] | {"case": None} == {
        "flow": "psa-to-erp", "object_type": "time_entry", "object_id": "TE-1",
        "correlationid": "TE-1", "reason": "sync_failed", "requested_by": "ann", "case": None}
    timeline = [(e.actor_label, e.action, e.comment) for e in failed_sync.entries.all()]
    assert [a for _, a, _ in timeline] == ["opened", "retry_requested", "retry_attempt",
                                           "resolved"]
    assert "attempt 1: HTTP 202" in timeline[2][2]
    html = client.get(f"/exceptions/{failed_sync.pk}/").content.decode()
    assert "attempt 1: HTTP 202" in html  # the case page's timeline shows the answer


def test_the_signature_verifies_with_the_reference_library(failed_sync, source, receiver):
    secret = takes_retries(source, receiver.url)
    retries.request_retry(failed_sync, make_role_user("bo", "integration"))
    deliveries.send_due()
    [request] = receiver.received
    assert request["headers"]["content-type"] == "application/cloudevents+json"
    event = Webhook(secret).verify(request["body"], request["headers"])
    assert event["data"]["object_id"] == "TE-1"
    with pytest.raises(WebhookVerificationError):  # the inbound secret does not sign these
        Webhook(source.secret).verify(request["body"], request["headers"])


def test_attempts_back_off_until_the_receiver_answers(failed_sync, source, receiver, settings):
    settings.DELIVERY_BACKOFF_SECONDS = 30
    takes_retries(source, receiver.url)
    receiver.stop()  # down: connections are refused
    delivery = retries.request_retry(failed_sync, make_role_user("cy", "integration"))
    start = dt.datetime.now(UTC)
    assert deliveries.send_due(start) == [30]
    assert deliveries.send_due(start + dt.timedelta(seconds=29)) == []  # not due yet
    receiver.start()
    receiver.answers.append(503)  # up, but not ready
    assert deliveries.send_due(start + dt.timedelta(seconds=31)) == [60]
    assert deliveries.send_due(start + dt.timedelta(seconds=92)) == [None]
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == ("delivered", 3)
    # The same message id on every attempt, so the receiver can de-duplicate.
    assert len({r["headers"]["webhook-id"] for r in receiver.received}) == 1
    notes = [e.comment for e in failed_sync.entries.filter(action="retry_attempt")]
    assert "attempt 1: no answer: ConnectionError (next attempt in 30 s)" in notes[0]
    assert "attempt 2: HTTP 503 try later (next attempt in 60 s)" in notes[1]
    assert "attempt 3: HTTP 200 taken (delivered)" in notes[2]


def test_a_delivery_is_given_up_after_the_last_attempt(failed_sync, source, settings):
    settings.DELIVERY_MAX_ATTEMPTS = 2
    source.callback_url, source.callback_secret = "http://127.0.0.1:9/down", "whsec_" + "A" * 44
    source.save()
    delivery = retries.request_retry(failed_sync, "someone")
    later = dt.datetime.now(UTC) + dt.timedelta(hours=1)
    deliveries.send_due(later)
    deliveries.send_due(later + dt.timedelta(hours=1))
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == ("given_up", 2)


def test_bulk_retry_asks_for_each_retryable_case_and_names_the_rest(client, failed_sync,
                                                                   source, case, receiver):
    takes_retries(source, receiver.url)
    client.force_login(make_role_user("di", "finance_ops"))
    closed = Case.objects.create(type="sync_failed", fingerprint="x", title="closed",
                                 queue=case.queue, object_kind="time_entry", object_id="X",
                                 status="resolved")
    response = client.post("/integrations/cases/retry",
                           {"ids": [failed_sync.pk, case.pk, closed.pk]}, follow=True)
    text = response.content.decode()
    assert "2 case(s) asked" in text and "1 skipped" in text and "the case is closed" in text
    assert Delivery.objects.filter(kind="retry_request").count() == 2  # the blocked invoice too


def test_retry_needs_the_triage_permission_and_a_retryable_case(client, failed_sync, source):
    client.force_login(make_role_user("exec", "executive"))
    assert client.post(f"/integrations/cases/{failed_sync.pk}/retry").status_code == 403
    client.force_login(make_role_user("eve", "integration"))
    response = client.post(f"/integrations/cases/{failed_sync.pk}/retry", follow=True)
    assert "no source with a callback URL" in response.content.decode()
    assert not Delivery.objects.exists()


def test_callback_urls_must_be_http(source):
    from django.core.exceptions import ValidationError

    for url in ("file:///etc/passwd", "ftp://example.com/x", "gopher://x"):
        source.callback_url = url
        with pytest.raises(ValidationError):
            source.full_clean()


def test_a_retry_still_works_when_retention_dropped_the_attempts_inbox_row(failed_sync,
                                                                           source):
    """A sync attempt outlives its inbox row (no database constraint between them): the
    retry names the object from the attempt and the one source that takes retries."""
    from ingestion.models import InboxEvent
    from opsview.models import SyncAttempt

    takes_retries(source, "http://127.0.0.1:9/down")
    attempt = SyncAttempt.objects.get()
    InboxEvent.objects.filter(pk=attempt.inbox_event_id)._raw_delete("default")
    assert SyncAttempt.objects.filter(pk=attempt.pk).exists()
    delivery = retries.request_retry(failed_sync, "someone")
    body = json.loads(delivery.body)
    assert body["data"]["object_id"] == "TE-1"
    assert delivery.source == source
