"""A dead letter's failing payload on its case: failing fields marked, corrected JSON
replayed through the pipeline, the original kept, everything audited; bad corrections
change nothing."""
import json

import pytest

from exceptions import corrections
from exceptions.models import Case, CaseEntry, PayloadCorrection
from ingestion.events import make_event
from ingestion.models import InboxEvent
from opsview.models import AuditEvent, Client


@pytest.fixture
def dead_letter(deliver, process):
    """client.upserted without its name: a dead letter and its case."""
    deliver.send(make_event("client.upserted", {"client_id": "C1", "currency": "EUR"}))
    process()
    case = Case.objects.get(type="dead_letter")
    return case, InboxEvent.objects.get(status="dead")


def corrected_json(row, **data):
    raw = json.loads(json.dumps(row.raw))
    raw["data"].update(data)
    return json.dumps(raw)


def test_failing_fields_are_marked_and_missing_ones_listed(dead_letter):
    _, row = dead_letter
    rows = {r["path"]: r for r in corrections.payload_rows(row.raw, row.errors)}
    assert rows["data.name"]["value"] == "(missing)" and rows["data.name"]["errors"]
    assert rows["data.client_id"]["errors"] == []
    rows = {r["path"]: r for r in corrections.payload_rows(
        {"data": {"hours": "abc"}}, ["data.hours: Input should be a valid decimal"])}
    assert rows["data.hours"]["errors"] == ["data.hours: Input should be a valid decimal"]


def test_the_case_page_shows_the_payload_with_failing_fields(client, logged_in, dead_letter):
    case, row = dead_letter
    logged_in("integration")
    page = client.get(f"/exceptions/{case.pk}/").content.decode()
    assert "Failing payload" in page and "data.name" in page and 'class="failing"' in page
    assert f'id="payload-{row.pk}"' in page


def test_a_correction_is_replayed_and_the_original_kept(client, logged_in, dead_letter):
    case, row = dead_letter
    original_raw, original_errors = row.raw, row.errors
    user = logged_in("integration")
    response = client.post(f"/exceptions/{case.pk}/correct/{row.pk}",
                           {"payload": corrected_json(row, name="Acme"), "comment": "name"})
    assert response.status_code == 302
    assert Client.objects.get(client_id="C1").name == "Acme"
    row.refresh_from_db()
    assert (row.raw, row.errors, row.status) == (original_raw, original_errors, "discarded")
    correction = PayloadCorrection.objects.get()
    assert correction.original == row and correction.actor == user
    assert correction.corrected.status == "processed"
    assert correction.corrected.event_id == f"{row.event_id}~fix1"  # the key stays the original's
    assert CaseEntry.objects.filter(case=case, action="payload_corrected").exists()
    assert AuditEvent.objects.filter(action="inbox.dead_letter_corrected").exists()
    case.refresh_from_db()
    assert case.status == "resolved"  # no dead letter left


@pytest.mark.parametrize("payload, says", [
    ("{not json", "not valid JSON"),
    ("[1, 2]", "must be a JSON object"),
    ("same", "unchanged"),
    ("still-invalid", "data is still invalid"),
    ("bad-envelope", "envelope is still invalid"),
])
def test_a_bad_correction_is_refused_clearly_and_changes_nothing(client, logged_in, dead_letter,
                                                                payload, says):
    case, row = dead_letter
    logged_in("integration")
    raw = json.loads(json.dumps(row.raw))
    if payload == "same":
        payload = json.dumps(raw)
    elif payload == "still-invalid":
        payload = corrected_json(row, currency="euros", name="Acme")
    elif payload == "bad-envelope":
        raw["data"]["name"] = "Acme"
        del raw["time"]
        payload = json.dumps(raw)
    inbox_before = InboxEvent.objects.count()
    response = client.post(f"/exceptions/{case.pk}/correct/{row.pk}", {"payload": payload})
    assert response.status_code == 400
    assert says in response.content.decode() and "nothing changed" in response.content.decode()
    assert InboxEvent.objects.count() == inbox_before
    row.refresh_from_db()
    assert row.status == "dead" and not PayloadCorrection.objects.exists()
    assert not CaseEntry.objects.filter(action="payload_corrected").exists()


def test_only_triagers_correct(client, logged_in, dead_letter):
    case, row = dead_letter
    logged_in("executive")
    response = client.post(f"/exceptions/{case.pk}/correct/{row.pk}",
                           {"payload": corrected_json(row, name="Acme")})
    assert response.status_code == 403
    assert InboxEvent.objects.get(pk=row.pk).status == "dead"
