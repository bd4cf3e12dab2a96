"""POST /ingest/<source>/events: every status code of SPEC section 1."""
import json
import time

import pytest

from ingestion.events import dumps, make_event
from ingestion.models import DuplicateDelivery, InboxEvent, Source
from ingestion.signing import signed_headers

URL = "/ingest/mulesoft/events"


def time_entry(entry_id="te-1", stage="approved", **data):
    payload = {"time_entry_id": entry_id, "project_id": "p-1", "person_id": "u-1",
               "work_date": "2026-11-02", "hours": "7.50", "billable": True, **data}
    return make_event(f"time_entry.{stage}", payload)


def post_raw(client, source, body, content_type, *, secret=None, msg_id="msg_1", timestamp=None,
             extra_headers=None, slug=None):
    body = body if isinstance(body, bytes) else body.encode()
    headers = signed_headers(secret or source.secret, msg_id, body, timestamp)
    headers.update(extra_headers or {})
    return client.post(f"/ingest/{slug or source.slug}/events", data=body,
                       content_type=content_type, headers=headers)


def assert_problem(response, status):
    assert response.status_code == status
    assert response["Content-Type"] == "application/problem+json"
    problem = response.json()
    assert problem["status"] == status
    assert {"type", "title", "status", "detail", "errors"} <= problem.keys()
    return problem


# --- 202 ----------------------------------------------------------------------------------
def test_structured_event_is_accepted_and_stored(client, source):
    event = time_entry()
    response = post_raw(client, source, dumps(event), "application/cloudevents+json")
    assert response.status_code == 202
    assert response.json() == {"accepted": 1, "duplicates": 0, "rejected": []}
    row = InboxEvent.objects.get()
    assert (row.event_id, row.type, row.status) == (event["id"], "time_entry.approved", "pending")
    assert row.raw == event


def test_batch_is_accepted_in_one_request(deliver, event):
    events = [time_entry(f"te-{i}") for i in range(25)]
    assert deliver.send(*events) == {"accepted": 25, "duplicates": 0, "rejected": []}
    assert InboxEvent.objects.count() == 25


def test_binary_mode_reads_attributes_from_headers(client, source):
    data = {"client_id": "c-1", "name": "Acme"}
    response = post_raw(client, source, json.dumps(data), "application/json", extra_headers={
        "ce-specversion": "1.0", "ce-id": "evt-bin", "ce-source": "urn:crm",
        "ce-type": "client.upserted", "ce-time": "2026-11-02T10:00:00Z",
        "ce-subject": "client/c-1", "ce-correlationid": "corr-9",
    })
    assert response.status_code == 202, response.content
    row = InboxEvent.objects.get()
    assert (row.event_id, row.type, row.subject, row.correlation_id) == (
        "evt-bin", "client.upserted", "client/c-1", "corr-9")
    assert row.raw["data"] == data


def test_content_type_parameters_are_ignored(client, source):
    response = post_raw(client, source, dumps(time_entry()),
                        "application/cloudevents+json; charset=utf-8")
    assert response.status_code == 202


def test_duplicate_delivery_is_counted_not_stored_again(deliver):
    event = time_entry()
    assert deliver.send(event)["accepted"] == 1
    assert deliver.send(event) == {"accepted": 0, "duplicates": 1, "rejected": []}
    assert InboxEvent.objects.count() == 1
    assert DuplicateDelivery.objects.count() == 1


def test_duplicate_inside_one_batch_is_counted_once(deliver):
    event = time_entry()
    assert deliver.send(event, event) == {"accepted": 1, "duplicates": 1, "rejected": []}


def test_invalid_envelope_is_rejected_and_kept_as_dead_letter(deliver):
    good = time_entry()
    bad = {"specversion": "0.3", "id": "evt-bad", "type": "x", "source": "s",
           "time": "yesterday"}
    body = deliver.send(good, bad, 42)
    assert body["accepted"] == 1
    assert [r["index"] for r in body["rejected"]] == [1, 2]
    assert body["rejected"][0]["id"] == "evt-bad"
    assert any("specversion" in e for e in body["rejected"][0]["errors"])
    assert any("time" in e for e in body["rejected"][0]["errors"])
    assert body["rejected"][1]["id"] is None
    dead = InboxEvent.objects.filter(status="dead").order_by("pk")
    assert [d.raw for d in dead] == [bad, 42]
    assert all(d.errors for d in dead)


def test_time_without_offset_is_an_envelope_error(deliver):
    event = time_entry()
    event["time"] = "2026-11-02T10:00:00"
    body = deliver.send(event)
    assert body["accepted"] == 0
    assert "UTC offset" in " ".join(body["rejected"][0]["errors"])


def test_unknown_type_is_accepted_and_kept_unhandled(deliver, process):
    deliver.send(make_event("timesheet.exploded", {"anything": 1}))
    process()
    assert InboxEvent.objects.get().status == "unhandled"


# --- 400 ----------------------------------------------------------------------------------
@pytest.mark.parametrize("body", [b"{not json", b"   ", "{\"a\": \"\xff\"}".encode("latin-1")])
def test_body_that_is_not_json_is_400(client, source, body):
    problem = assert_problem(post_raw(client, source, body, "application/cloudevents+json"), 400)
    assert problem["errors"]
    assert InboxEvent.objects.count() == 0


def test_structured_body_must_be_an_object(client, source):
    response = post_raw(client, source, "[]", "application/cloudevents+json")
    assert "object" in assert_problem(response, 400)["detail"]


def test_batch_body_must_be_an_array(client, source):
    response = post_raw(client, source, "{}", "application/cloudevents-batch+json")
    assert "array" in assert_problem(response, 400)["detail"]


def test_batch_over_the_limit_is_400_and_stores_nothing(client, source):
    events = [time_entry(f"te-{i}") for i in range(1001)]
    response = post_raw(client, source, dumps(events), "application/cloudevents-batch+json")
    assert "1000" in assert_problem(response, 400)["detail"]
    assert InboxEvent.objects.count() == 0


def test_deeply_nested_json_is_a_rejected_event_not_a_500(client, source):
    body = "[" * 100_000 + "]" * 100_000  # a batch of one array nested 99,999 levels deep
    response = post_raw(client, source, body, "application/cloudevents-batch+json")
    assert response.status_code == 202
    [rejected] = response.json()["rejected"]
    assert "nest" in rejected["errors"][0]
    assert InboxEvent.objects.get().status == "dead"


# --- 401 ----------------------------------------------------------------------------------
def _unauthorized_bodies(client, source):
    body = dumps(time_entry())
    ct = "application/cloudevents+json"
    Source.objects.create(slug="off", name="Off", enabled=False, secret=source.secret)
    signed = signed_headers(source.secret, "m", body)
    return {
        "unknown source": post_raw(client, source, body, ct, slug="nope"),
        "disabled source": post_raw(client, source, body, ct, slug="off"),
        "missing headers": client.post(URL, data=body, content_type=ct),
        "missing signature": client.post(URL, data=body, content_type=ct, headers={
            "webhook-id": "m", "webhook-timestamp": signed["webhook-timestamp"]}),
        "bad signature": post_raw(client, source, body, ct, secret="whsec_" + "A" * 44),
        "tampered body": client.post(URL, data=body + " ", content_type=ct, headers=signed),
        "stale timestamp": post_raw(client, source, body, ct, timestamp=time.time() - 301),
        "future timestamp": post_raw(client, source, body, ct, timestamp=time.time() + 330),
    }


def test_every_authentication_failure_is_401_with_one_body(client, source):
    responses = _unauthorized_bodies(client, source)
    bodies = {name: assert_problem(r, 401) for name, r in responses.items()}
    assert len({json.dumps(b, sort_keys=True) for b in bodies.values()}) == 1, bodies
    assert InboxEvent.objects.count() == 0


def test_previous_secret_still_verifies_after_rotation(client, source):
    old_secret = source.secret
    source.rotate_secret()
    body = dumps(time_entry())
    ct = "application/cloudevents+json"
    assert post_raw(client, source, body, ct, secret=old_secret).status_code == 202
    assert post_raw(client, source, dumps(time_entry("te-2")), ct).status_code == 202
    source.retire_previous_secret()
    assert post_raw(client, source, dumps(time_entry("te-3")), ct,
                    secret=old_secret).status_code == 401


def test_signature_is_checked_before_the_body_is_parsed(client, source):
    response = post_raw(client, source, b"{not json", "application/cloudevents+json",
                        secret="whsec_" + "A" * 44)
    assert response.status_code == 401


# --- 413 / 415 / 429 / 405 ----------------------------------------------------------------
def test_body_over_the_limit_is_413(client, source, settings):
    settings.INGEST_MAX_BODY_BYTES = 1024
    body = dumps([time_entry(f"te-{i}") for i in range(20)])
    problem = assert_problem(post_raw(client, source, body, "application/cloudevents-batch+json"),
                             413)
    assert "1024" in problem["detail"]
    assert InboxEvent.objects.count() == 0


def test_other_content_type_is_415(client, source):
    problem = assert_problem(post_raw(client, source, "a=1", "application/x-www-form-urlencoded"),
                             415)
    assert "application/cloudevents+json" in problem["detail"]


def test_over_the_source_rate_limit_is_429_with_retry_after(client, source):
    source.rate_limit_per_minute = 2
    source.save()
    ct = "application/cloudevents+json"
    codes = [post_raw(client, source, dumps(time_entry(f"te-{i}")), ct).status_code
             for i in range(3)]
    assert codes[:2] == [202, 202]
    response = post_raw(client, source, dumps(time_entry("te-9")), ct)
    assert_problem(response, 429)
    assert 1 <= int(response["Retry-After"]) <= 61
    assert InboxEvent.objects.count() == 2


def test_get_is_405(client, source):
    response = client.get(URL)
    assert_problem(response, 405)
    assert "POST" in response["Allow"]


# --- OPTIONS handshake and schemas ----------------------------------------------------------
def test_options_answers_the_webhook_validation_handshake(client, source):
    response = client.options(URL, headers={"WebHook-Request-Origin": "eventemitter.example.com",
                                            "WebHook-Request-Rate": "120"})
    assert response.status_code == 200
    assert response["WebHook-Allowed-Origin"] == "eventemitter.example.com"
    assert response["WebHook-Allowed-Rate"] == "120"
    assert response["Allow"] == "POST"


def test_schema_catalog_lists_every_event_type(client, db):
    catalog = client.get("/ingest/schemas/").json()
    types = {entry["type"] for entry in catalog["types"]}
    assert {"time_entry.approved", "invoice.blocked", "sync.failed",
            "reconciliation.reported", "revenue.recognized"} <= types


def test_schema_of_a_type_is_json_schema(client, db):
    schema = client.get("/ingest/schemas/invoice.blocked.json").json()
    assert schema["title"] == "invoice.blocked"
    assert "blocked_reason" in schema["required"]
    assert client.get("/ingest/schemas/nope.json").status_code == 404


def test_event_with_a_nul_character_is_rejected_and_kept_readable(deliver):
    event = time_entry()
    event["data"]["erp_document_id"] = "ERP\u0000-1"
    body = deliver.send(event, time_entry("te-2"))
    assert body["accepted"] == 1
    assert "NUL" in body["rejected"][0]["errors"][0]
    dead = InboxEvent.objects.get(status="dead")
    assert dead.raw["data"]["erp_document_id"] == "ERP\ufffd-1"


def test_event_nesting_too_deep_is_rejected_not_a_500(deliver):
    event = time_entry()
    nested = {}
    for _ in range(80):
        nested = {"n": nested}
    event["data"]["extra"] = nested
    body = deliver.send(event, time_entry("te-2"))
    assert body["accepted"] == 1
    assert "nest" in body["rejected"][0]["errors"][0]
    assert InboxEvent.objects.filter(status="dead").count() == 1


def test_database_outage_is_a_503_to_retry_not_a_500(client, source, monkeypatch):
    from django.db import OperationalError

    from ingestion import views

    def outage(*args, **kwargs):
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(views, "store_events", outage)
    response = post_raw(client, source, json.dumps(time_entry()), "application/cloudevents+json")
    problem = assert_problem(response, 503)
    assert response["Retry-After"] == "5"
    assert "nothing from this request was accepted" in problem["detail"]


def _svix(headers):
    return {name.replace("webhook-", "svix-"): value for name, value in headers.items()}


def test_svix_header_names_are_accepted_as_aliases(client, source):
    body = dumps(time_entry()).encode()
    headers = _svix(signed_headers(source.secret, "msg_svix", body))
    response = client.post(URL, data=body, content_type="application/cloudevents+json",
                           headers=headers)
    assert response.status_code == 202, response.content
    assert response.json()["accepted"] == 1


def test_svix_headers_with_a_bad_signature_are_the_same_401(client, source):
    body = dumps(time_entry()).encode()
    headers = _svix(signed_headers("whsec_" + "A" * 44, "msg_svix", body))
    response = client.post(URL, data=body, content_type="application/cloudevents+json",
                           headers=headers)
    expected = _unauthorized_bodies(client, source)["bad signature"].json()
    assert assert_problem(response, 401) == expected
    assert not InboxEvent.objects.exists()


# --- The CloudEvents HTTP binding, to the letter ------------------------------------------------
BINARY_ATTRIBUTES = {"ce-specversion": "1.0", "ce-id": "evt-pct", "ce-source": "urn:crm",
                     "ce-type": "client.upserted", "ce-time": "2026-11-02T10:00:00Z"}


def post_binary(client, source, **headers):
    body = json.dumps({"client_id": "c-1", "name": "Acme"}).encode()
    return client.post(URL, data=body, content_type="application/json",
                       headers={**signed_headers(source.secret, "msg_bin", body),
                                **BINARY_ATTRIBUTES, **headers})


@pytest.mark.parametrize("header,sent,stored", [
    ("ce-subject", "Euro%20%E2%82%AC%20%F0%9F%98%80", "Euro \u20ac \U0001F600"),
    ("ce-subject", "lower%e2%82%achex", "lower\u20achex"),
    ("ce-subject", "%41%42C", "ABC"),  # encoded without need: accepted
    ("ce-subject", '"quoted value"', "quoted value"),  # older senders: RFC 7230 quoting
    ("ce-subject", '"a \\"b\\" c%25"', 'a "b" c%'),
    ("ce-source", "urn%3Acrm%2Feu%20west", "urn:crm/eu west"),
    ("ce-correlationid", "corr%2F1", "corr/1"),
    ("ce-region", "eu%20west", "eu west"),  # an extension attribute
])
def test_binary_mode_headers_are_percent_decoded(client, source, header, sent, stored):
    response = post_binary(client, source, **{header: sent})
    assert response.status_code == 202, response.content
    assert response.json()["accepted"] == 1, response.json()
    attribute = header.removeprefix("ce-")
    assert InboxEvent.objects.get().raw[attribute] == stored


@pytest.mark.parametrize("sent", ["%C0%A0", "%FF", "%E2%82", "100%", "%zz"],
                         ids=["overlong", "not-utf8", "truncated", "bare-percent", "not-hex"])
def test_binary_mode_headers_that_do_not_decode_are_a_dead_letter(client, source, sent):
    response = post_binary(client, source, **{"ce-subject": sent})
    assert response.status_code == 202, response.content
    [rejected] = response.json()["rejected"]
    assert rejected["id"] == "evt-pct"
    assert any(error.startswith("ce-subject:") for error in rejected["errors"]), rejected
    dead = InboxEvent.objects.get()
    assert dead.status == "dead" and dead.raw["subject"] == sent  # kept as it came


@pytest.mark.parametrize("when,expected", [
    ("2026-11-02t10:00:00z", "2026-11-02T10:00:00+00:00"),
    ("2026-11-02T10:00:00z", "2026-11-02T10:00:00+00:00"),
    ("2026-11-02t10:00:00+01:00", "2026-11-02T09:00:00+00:00"),
    ("2016-12-31T23:59:60Z", "2017-01-01T00:00:00+00:00"),  # a leap second
])
def test_every_rfc3339_time_is_accepted(deliver, when, expected):
    event = time_entry()
    event["time"] = when
    assert deliver.send(event)["accepted"] == 1
    assert InboxEvent.objects.get().time.isoformat() == expected


def test_binary_mode_time_header_may_be_lower_case(client, source):
    response = post_binary(client, source, **{"ce-time": "2026-11-02t10:00:00z"})
    assert response.json()["accepted"] == 1, response.json()


def post_chunked(source, body, *, terminated, content_type="application/cloudevents+json"):
    """The webhook's answer to a body sent with Transfer-Encoding: chunked, which a WSGI
    server hands on with no Content-Length (the test client cannot send one)."""
    import io

    from django.test import RequestFactory

    from ingestion.views import webhook

    request = RequestFactory().generic("POST", URL, CONTENT_TYPE=content_type, headers={
        **signed_headers(source.secret, "msg_chunk", body), "Transfer-Encoding": "chunked"})
    request.META.pop("CONTENT_LENGTH", None)
    request.META["wsgi.input"] = io.BytesIO(body)
    if terminated:  # the server decoded the chunks and ends the stream (gunicorn does)
        request.META["wsgi.input_terminated"] = True
    response = webhook(request, source=source.slug)
    response.json = lambda: json.loads(response.content)
    return response


def test_a_chunked_body_the_server_decoded_is_read_in_full(source):
    body = dumps([time_entry(f"te-{i}") for i in range(50)]).encode()
    response = post_chunked(source, body, terminated=True,
                            content_type="application/cloudevents-batch+json")
    assert response.status_code == 202, response.content
    assert response.json()["accepted"] == 50


def test_a_chunked_body_the_server_cannot_end_is_411_not_401(source):
    response = post_chunked(source, dumps(time_entry()).encode(), terminated=False)
    problem = assert_problem(response, 411)
    assert "Content-Length" in problem["detail"]
    assert not InboxEvent.objects.exists()


def test_a_chunked_body_over_the_limit_is_413(source, settings):
    settings.INGEST_MAX_BODY_BYTES = 1024
    body = dumps([time_entry(f"te-{i}") for i in range(20)]).encode()
    assert_problem(post_chunked(source, body, terminated=True), 413)
