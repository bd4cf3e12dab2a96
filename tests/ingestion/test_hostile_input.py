"""Whatever an authenticated client sends, the answer is a 202 or a problem document."""
import json

from django.db import transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingestion.events import signed_request
from ingestion.models import InboxEvent

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
