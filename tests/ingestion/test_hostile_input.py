"""Whatever an authenticated client sends, the answer is a 202 or a problem document."""
import datetime as dt
import json
import time

import pytest
from django.db import transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingestion.events import STRUCTURED, make_event, signed_request
from ingestion.models import InboxEvent
from ingestion.signing import signed_headers

json_scalars = st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(
    allow_nan=False, allow_infinity=False) | st.text(max_size=20)
json_values = st.recursive(json_scalars, lambda children: st.lists(children, max_size=4)
                           | st.dictionaries(st.text(max_size=8), children, max_size=4),
                           max_leaves=20)
ATTRIBUTES = ["specversion", "id", "source", "type", "time", "subject", "correlationid", "data"]
envelopes = st.fixed_dictionaries({}, optional={
    "specversion": st.sampled_from(["1.0", "0.3", 1.0]) | json_values,
    "id": st.text(max_size=300) | json_values,
    "source": st.text(max_size=20),
    "type": st.sampled_from(["time_entry.approved", "invoice.blocked", "sync.failed",
                             "x.unknown"]) | st.text(max_size=300),
    "time": st.sampled_from(["2026-11-02T10:00:00Z", "2026-11-02", "9999-12-31T23:59:59Z",
                             "0001-01-01T00:00:00+14:00"]) | json_values,
    "subject": st.text(max_size=600) | json_values,
    "correlationid": json_values,
    "data": json_values | st.fixed_dictionaries({}, optional={
        "time_entry_id": st.text(max_size=5), "project_id": st.text(max_size=5),
        "person_id": st.text(max_size=5), "work_date": st.text(max_size=12),
        "hours": json_scalars, "billable": json_scalars}),
})


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(batch=st.lists(envelopes | json_values, min_size=1, max_size=5))
def test_fuzzed_batches_never_cause_a_server_error(client, source, batch):
    with transaction.atomic():
        before = InboxEvent.objects.count()
        body, headers = signed_request(source.secret, batch)
        content_type = headers.pop("content-type")
        response = client.post(f"/ingest/{source.slug}/events", data=body,
                               content_type=content_type, headers=headers)
        assert response.status_code in (202, 400), response.content
        if response.status_code == 202:
            result = response.json()
            assert result["accepted"] + result["duplicates"] + len(result["rejected"]) == len(batch)
            stored = InboxEvent.objects.count() - before
            assert stored == result["accepted"] + len(result["rejected"])
            from ingestion import pipeline

            pipeline.drain_inbox()
            assert not InboxEvent.objects.filter(status="pending").exists()
        else:
            assert response["Content-Type"] == "application/problem+json"
            assert InboxEvent.objects.count() == before
        transaction.set_rollback(True)


def test_json_body_round_trips_untouched(deliver):
    event = {"specversion": "1.0", "id": "e", "source": "s", "type": "x.y",
             "time": "2026-11-02T10:00:00Z", "data": {"amount": 1250.10, "ü": "ß"}}
    deliver.send(event)
    assert InboxEvent.objects.get().raw == json.loads(json.dumps(event))


# --- Event data: every type, values valid, at the edges and hostile ------------------------
def _value_for(schema, name):
    """A strategy for one field: mostly what its JSON Schema allows (so events get past
    validation into processing), sometimes edge values and junk."""
    if "anyOf" in schema:
        return st.one_of([_value_for(option, name) for option in schema["anyOf"]])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    kind = schema.get("type")
    ids = st.sampled_from(["A1", "A2", "B1"]) if name.endswith("_id") else st.text(
        min_size=1, max_size=12)
    if kind == "string" and schema.get("format") == "date":
        return st.dates(min_value=dt.date(1, 1, 1)).map(str) | st.sampled_from(
            ["2026-02-30", "2026-11-02T00:00:00Z", "02/11/2026"])
    if kind == "string" and schema.get("format") == "date-time":
        return st.sampled_from(["2026-11-02T10:00:00Z", "2026-11-02T10:00:00+14:00",
                                "2026-11-02 10:00", "9999-12-31T23:59:59-14:00"])
    if kind == "string" and "pattern" in schema and "d+" in schema["pattern"]:  # money, hours
        return st.decimals(min_value=-10**13, max_value=10**13, places=2).map(str) | \
            st.sampled_from(["1e400", "NaN", "-0.00", "99999999999999999999.99", "0.001"])
    if kind == "string" and schema.get("pattern") == "^[A-Z]{3}$":
        return st.sampled_from(["USD", "EUR", "usd", "XXXX"])
    if kind == "string":
        return ids | st.text(max_size=300)
    if kind == "number":
        return st.floats(allow_nan=False, allow_infinity=False) | st.integers(-2**80, 2**80)
    if kind == "integer":
        return st.integers(-2**40, 2**40)
    if kind == "boolean":
        return st.booleans() | st.sampled_from(["true", 1, None])
    if kind == "null":
        return st.none()
    return json_values


def typed_events():
    from ingestion import catalog

    def for_type(event_type):
        schema = catalog.json_schema(event_type)
        fields = {name: _value_for(field, name)
                  for name, field in schema["properties"].items()}
        required = {name: fields.pop(name) for name in schema.get("required", [])}
        data = st.fixed_dictionaries(required, optional=fields) | st.fixed_dictionaries(
            {}, optional={**required, **fields})
        return st.builds(lambda data, n: make_event(event_type, data, event_id=f"f-{n}",
                                                    time="2026-11-02T10:00:00Z"),
                         data, st.integers(0, 10**9))

    return st.sampled_from(sorted(catalog.CONTRACTS)).flatmap(for_type)


@settings(max_examples=200, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(batch=st.lists(typed_events(), min_size=1, max_size=6))
def test_fuzzed_event_data_is_processed_or_dead_lettered_never_stuck(client, source, batch):
    from ingestion import pipeline

    with transaction.atomic():
        body, headers = signed_request(source.secret, batch)
        content_type = headers.pop("content-type")
        response = client.post(f"/ingest/{source.slug}/events", data=body,
                               content_type=content_type, headers=headers)
        assert response.status_code == 202, response.content
        pipeline.drain_inbox()
        statuses = set(InboxEvent.objects.values_list("status", flat=True))
        assert statuses <= {"processed", "dead"}, statuses
        # A dead letter always says why.
        assert not InboxEvent.objects.filter(status="dead", errors=[]).exists()
        transaction.set_rollback(True)


# --- Transport-level hostility -------------------------------------------------------------
APPROVED = {"time_entry_id": "te-1", "project_id": "p-1", "person_id": "u-1",
            "work_date": "2026-11-02", "hours": "7.50", "billable": True}


def post(client, source, body, headers, content_type=STRUCTURED):
    return client.post(f"/ingest/{source.slug}/events", data=body, content_type=content_type,
                       headers=headers)


def assert_problem(response, status):
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/problem+json"
    problem = response.json()
    assert problem["status"] == status and problem["detail"] and "errors" in problem
    return problem


@pytest.mark.parametrize("body", [
    b'{"specversion": "1.0", "id": "\xff\xfe", "type": "x"}',   # invalid UTF-8 in a string
    b"\xef\xbb\xbf{}",                                           # a byte-order mark
    b"\xc3\x28",                                                 # invalid two-byte sequence
    b"\x00" * 64,                                                # NUL bytes
    b'{"specversion": "1.0", "data": {"hours": NaN}}',           # not JSON, though Python
    b'{"specversion": "1.0", "data": {"hours": -Infinity}}',     # would parse it
])
def test_invalid_utf8_or_json_is_a_400_problem_and_stores_nothing(client, source, body):
    body_headers = signed_headers(source.secret, "msg_utf8", body)
    assert_problem(post(client, source, body, body_headers), 400)
    assert not InboxEvent.objects.exists()


def test_header_injection_in_binary_mode_is_contained(client, source):
    """CR/LF and non-ASCII bytes in ce-* headers never reach a response header and never
    cause a 500; the event is stored as sent (a dead letter if the id is unusable)."""
    body = json.dumps(APPROVED).encode()
    headers = signed_headers(source.secret, "msg_inject", body)
    response = client.post(
        f"/ingest/{source.slug}/events", data=body, content_type="application/json",
        headers=headers, HTTP_CE_ID="te-1\r\nSet-Cookie: owned=1", HTTP_CE_SPECVERSION="1.0",
        HTTP_CE_SOURCE="urn:x\r\nX-Injected: 1", HTTP_CE_TYPE="time_entry.approved",
        HTTP_CE_TIME="2026-11-02T10:00:00Z", HTTP_CE_SUBJECT="\udcff\udcfe latin-1 \xe9")
    assert response.status_code == 202, response.content
    assert "Set-Cookie" not in response.headers and "X-Injected" not in response.headers
    assert InboxEvent.objects.count() == 1


def test_header_injection_in_the_signature_headers_is_a_401(client, source):
    body = json.dumps(make_event("time_entry.approved", APPROVED)).encode()
    headers = signed_headers(source.secret, "msg_1", body)
    headers["webhook-id"] = "msg_1\r\nX-Injected: 1"
    response = post(client, source, body, headers)
    assert_problem(response, 401)
    assert "X-Injected" not in response.headers
    assert not InboxEvent.objects.exists()


def test_a_replayed_request_is_counted_as_duplicates_not_stored_twice(client, source):
    body, headers = signed_request(source.secret, [make_event("time_entry.approved", APPROVED,
                                                              event_id="e-1")])
    content_type = headers.pop("content-type")
    first = post(client, source, body, dict(headers), content_type).json()
    again = post(client, source, body, dict(headers), content_type).json()
    assert (first["accepted"], first["duplicates"]) == (1, 0)
    assert (again["accepted"], again["duplicates"]) == (0, 1)
    assert InboxEvent.objects.count() == 1


# Past the 5-minute tolerance with a margin: the request is verified a moment after it is
# signed, so a timestamp 301 s ahead could be inside the window again by then.
@pytest.mark.parametrize("offset", [-330, -3600, 330, 86400 * 365])
def test_replayed_old_or_future_timestamps_are_401_and_store_nothing(client, source, offset):
    body, headers = signed_request(source.secret, [make_event("time_entry.approved", APPROVED)],
                                   timestamp=int(time.time()) + offset)
    content_type = headers.pop("content-type")
    problem = assert_problem(post(client, source, body, headers, content_type), 401)
    assert "source" not in problem["detail"].lower() or source.slug not in problem["detail"]
    assert not InboxEvent.objects.exists()


@pytest.mark.parametrize("timestamp", ["1e10", "-1", "99999999999999999999", "１２３", ""])
def test_malformed_timestamps_are_401_not_500(client, source, timestamp):
    body = json.dumps(make_event("time_entry.approved", APPROVED)).encode()
    headers = signed_headers(source.secret, "msg_1", body)
    headers["webhook-timestamp"] = timestamp
    assert_problem(post(client, source, body, headers), 401)


def test_oversize_body_is_413_before_it_is_read_in_full(client, source, settings):
    settings.INGEST_MAX_BODY_BYTES = 1024
    body = json.dumps(make_event("time_entry.approved", {**APPROVED, "pad": "x" * 5000})).encode()
    assert_problem(post(client, source, body, signed_headers(source.secret, "m", body)), 413)
    assert not InboxEvent.objects.exists()


@pytest.mark.parametrize("depth", [100, 10_000, 200_000])
def test_deeply_nested_json_is_a_problem_not_a_crash(client, source, depth):
    nested = "[" * depth + "]" * depth
    body = ('{"specversion":"1.0","id":"deep","source":"s","type":"time_entry.approved",'
            '"time":"2026-11-02T10:00:00Z","data":' + nested + '}').encode()
    response = post(client, source, body, signed_headers(source.secret, "m", body))
    assert response.status_code in (202, 400)
    if response.status_code == 202:  # stored as a dead letter that says why
        assert response.json()["rejected"][0]["errors"]
    else:
        assert_problem(response, 400)


@pytest.mark.parametrize("text", ["\\ud800", "x\\udfff", "\\udcff\\udcfe"])
def test_unpaired_surrogates_are_rejected_and_kept_readable(client, source, text):
    """JSON lets a \\u escape name half a surrogate pair; PostgreSQL cannot store one."""
    body = ('{"specversion":"1.0","id":"sur","source":"s","type":"time_entry.approved",'
            '"time":"2026-11-02T10:00:00Z","subject":"' + text + '","data":{}}').encode()
    response = post(client, source, body, signed_headers(source.secret, "m", body))
    assert response.status_code == 202, response.content
    [rejected] = response.json()["rejected"]
    assert "surrogate" in rejected["errors"][0]
    stored = InboxEvent.objects.get()
    assert stored.status == "dead" and "\ufffd" in stored.raw["subject"]


def test_a_paired_surrogate_escape_is_an_ordinary_character(deliver):
    body = deliver.send(make_event("time_entry.approved", APPROVED, subject="\U0001F600 ok"))
    assert body["accepted"] == 1


def test_an_empty_batch_is_accepted_as_nothing(client, source):
    body, headers = signed_request(source.secret, [])
    content_type = headers.pop("content-type")
    response = post(client, source, body, headers, content_type)
    assert response.status_code == 202
    assert response.json() == {"accepted": 0, "duplicates": 0, "rejected": []}
    assert not InboxEvent.objects.exists()


# --- Numbers a binary float cannot hold, and arrays nested too deep ------------------------
def _event_text(event_id, *, data='{"client_id": "c-%s", "name": "Acme"}', extension="",
                event_type="client.upserted"):
    body = data % event_id if "%s" in data else data
    return (f'{{"specversion":"1.0","id":"{event_id}","source":"urn:s","type":"{event_type}",'
            f'"time":"2026-11-02T10:00:00Z"{extension},"data":{body}}}')


def _post_batch(client, source, items):
    body = ("[" + ",".join(items) + "]").encode()
    return client.post(f"/ingest/{source.slug}/events", data=body,
                       content_type="application/cloudevents-batch+json",
                       headers=signed_headers(source.secret, "msg_batch", body))


HUGE = "9" * 5000  # past Python's 4,300-digit limit for int(), let alone a float's range
OUT_OF_RANGE = [
    ("data", '{"client_id": "c-x", "name": "n", "weight": 1e400}', "data.weight", "1e400"),
    ("data", '{"client_id": "c-x", "name": "n", "rates": [1, -1E+999]}', "data.rates[1]",
     "-1E+999"),
    ("extension", ',"loadfactor":1e309', "loadfactor", "1e309"),
    ("extension", ',"counter":' + "1" + "0" * 400, "counter", "1" + "0" * 400),
    ("extension", ',"counter":' + HUGE, "counter", HUGE),
]


@pytest.mark.parametrize("where,fragment,path,text", OUT_OF_RANGE,
                         ids=["data-float", "data-nested", "ext-float", "ext-int", "ext-5000"])
def test_a_number_a_float_cannot_hold_is_rejected_alone(client, source, where, fragment, path,
                                                        text):
    bad = (_event_text("bad", data=fragment) if where == "data"
           else _event_text("bad", extension=fragment))
    response = _post_batch(client, source, [_event_text("1"), bad, _event_text("2")])
    assert response.status_code == 202, response.content
    body = response.json()
    assert body["accepted"] == 2
    [rejected] = body["rejected"]
    assert (rejected["index"], rejected["id"]) == (1, "bad")
    assert any(error.startswith(f"{path}: ") and "outside the range of a binary float" in error
               for error in rejected["errors"]), rejected
    dead = InboxEvent.objects.get(status="dead")
    kept = dead.raw["data"] if where == "data" else dead.raw
    assert text in json.dumps(kept)  # kept as its text, a string
    assert any(e.startswith("stored altered:") and path in e for e in dead.errors), dead.errors


@pytest.mark.parametrize("value", [2**64, 10**30, -(10**300)], ids=["2^64", "1e30", "-1e300"])
def test_huge_integers_a_float_can_hold_are_stored_and_checked_by_the_contract(
        client, source, value):
    from ingestion import pipeline

    items = [_event_text("big-ext", extension=f',"counter":{value}'),
             _event_text("big-hours", event_type="time_entry.approved",
                         data='{"time_entry_id": "t", "project_id": "p", "person_id": "u", '
                         f'"work_date": "2026-11-02", "billable": true, "hours": {value}' + "}"),
             _event_text("big-latency", event_type="sync.succeeded",
                         data='{"flow": "f", "source_system": "a", "target_system": "b", '
                         f'"object_type": "x", "object_id": "1", "latency_ms": {value}' + "}")]
    response = _post_batch(client, source, items)
    assert response.status_code == 202, response.content
    assert response.json()["accepted"] == 3
    pipeline.drain_inbox()
    rows = {row.event_id: row for row in InboxEvent.objects.all()}
    assert rows["big-ext"].status == "processed"
    assert rows["big-ext"].raw["counter"] == value
    for event_id, field in (("big-hours", "data.hours"), ("big-latency", "data.latency_ms")):
        assert rows[event_id].status == "dead"
        assert any(error.startswith(field) for error in rows[event_id].errors), \
            rows[event_id].errors


@pytest.mark.parametrize("depth", [65, 900, 5000])
@pytest.mark.parametrize("where", ["root", "data"])
def test_arrays_nested_too_deep_are_rejected_alone(client, source, depth, where):
    nested = "[" * depth + "]" * depth
    bad = nested if where == "root" else _event_text("deep", data=nested)
    response = _post_batch(client, source, [_event_text("1"), bad, _event_text("2")])
    assert response.status_code == 202, response.content
    body = response.json()
    assert body["accepted"] == 2
    [rejected] = body["rejected"]
    assert rejected["index"] == 1
    assert "nest" in " ".join(rejected["errors"])
    assert InboxEvent.objects.filter(status="dead").count() == 1


def test_a_too_deep_body_that_does_not_balance_is_still_not_json(client, source):
    response = _post_batch(client, source, [_event_text("1"), "[" * 5000 + "]" * 4999])
    assert_problem(response, 400)
    assert not InboxEvent.objects.exists()


@pytest.mark.parametrize("data", ['{"weight": 1e400}', "[" * 5000 + "]" * 5000],
                         ids=["out-of-range", "too-deep"])
@pytest.mark.parametrize("mode", ["structured", "binary"])
def test_structured_and_binary_events_are_kept_as_dead_letters_too(client, source, mode, data):
    if mode == "structured":
        body, content_type, extra = _event_text("one", data=data).encode(), STRUCTURED, {}
    else:
        body, content_type = data.encode(), "application/json"
        extra = {"ce-specversion": "1.0", "ce-id": "one", "ce-source": "urn:s",
                 "ce-type": "client.upserted", "ce-time": "2026-11-02T10:00:00Z"}
    response = client.post(f"/ingest/{source.slug}/events", data=body, content_type=content_type,
                           headers={**signed_headers(source.secret, "m", body), **extra})
    assert response.status_code == 202, response.content
    assert response.json()["accepted"] == 0
    # A structured body nested past what the parser takes is never parsed: its id is unknown.
    unparsed = mode == "structured" and data.startswith("[")
    assert response.json()["rejected"][0]["id"] == (None if unparsed else "one")
    assert InboxEvent.objects.get().status == "dead"
