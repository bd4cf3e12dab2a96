"""Management commands and their output contract (SPEC section 6)."""
import datetime as dt
from io import StringIO

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command

from ingestion.models import InboxEvent, Source
from ingestion.signing import verify
from opsview.models import ApiToken, TimeEntry


def run(*args):
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue().strip().splitlines()


def test_create_source_prints_the_new_secret_alone_on_its_last_line(db):
    lines = run("create_source", "boomi", "--name", "Boomi")
    source = Source.objects.get(slug="boomi")
    assert lines[-1] == source.secret
    assert lines[-1].startswith("whsec_")
    assert source.name == "Boomi"


def test_create_source_refuses_a_duplicate_and_rotates_on_request(db):
    run("create_source", "boomi")
    old = Source.objects.get().secret
    with pytest.raises(CommandError):
        run("create_source", "boomi")
    new = run("create_source", "boomi", "--rotate")[-1]
    source = Source.objects.get()
    assert (source.secret, source.previous_secret) == (new, old)


def test_create_source_rejects_a_slug_that_is_not_a_slug(db):
    with pytest.raises(CommandError):
        run("create_source", "Not A Slug")


def test_create_api_token_prints_a_token_stored_only_hashed(db):
    user = User.objects.create_user("cfo")
    token = run("create_api_token", "cfo")[-1]
    stored = ApiToken.objects.get()
    assert token not in (stored.token_hash, stored.token_hint)
    assert ApiToken.authenticate(token) == user
    assert ApiToken.authenticate(token + "x") is None
    stored.revoked = True
    stored.save()
    assert ApiToken.authenticate(token) is None


def test_process_inbox_drains_everything_pending(deliver, event):
    deliver.send(*[event("time_entry.approved", {
        "time_entry_id": f"te-{i}", "project_id": "p", "person_id": "u",
        "work_date": "2026-11-02", "hours": "1", "billable": False}) for i in range(30)])
    lines = run("process_inbox", "--batch-size", "7")
    assert InboxEvent.objects.filter(status="pending").count() == 0
    assert TimeEntry.objects.count() == 30
    assert "processed 30" in " ".join(lines)


def test_replay_selects_by_type_and_keeps_still_invalid_events_dead(deliver, event, process):
    deliver.send(event("client.upserted", {"client_id": "c-1"}),
                 event("person.upserted", {"person_id": "u-1"}))
    process()
    assert InboxEvent.objects.filter(status="dead").count() == 2
    lines = run("replay", "--type", "client.upserted")
    assert lines[0] == "1 dead letters selected"
    assert InboxEvent.objects.filter(status="dead").count() == 2  # still invalid: stays dead
    assert "1 still dead" in lines[-1]


def test_the_signing_secret_verifies_what_create_source_printed(db):
    secret = run("create_source", "celigo")[-1]
    from ingestion.signing import signed_headers

    headers = signed_headers(secret, "m1", b"{}")
    verify([secret], "m1", headers["webhook-timestamp"], headers["webhook-signature"], b"{}")


def test_rebuild_state_gives_back_the_same_state_and_figures(deliver, process):
    from opsview.models import StageEvent, WipSpan
    from reporting import kpis
    from tests.opsview.firm import firm_events

    events = firm_events()
    for start in range(0, len(events), 50):
        deliver.send(*events[start:start + 50])
    process()
    before = [kpis.wip(as_of=dt.date(2026, 3, day))["currencies"] for day in (6, 31)]
    counts = (TimeEntry.objects.count(), StageEvent.objects.count(), WipSpan.objects.count())
    with pytest.raises(CommandError):
        call_command("rebuild_state")  # asks first
    StageEvent.objects.all().delete()  # as an upgraded database would be
    WipSpan.objects.all().delete()
    call_command("rebuild_state", yes=True, stdout=StringIO())
    assert (TimeEntry.objects.count(), StageEvent.objects.count(),
            WipSpan.objects.count()) == counts
    assert [kpis.wip(as_of=dt.date(2026, 3, day))["currencies"] for day in (6, 31)] == before


def test_rebuild_state_derived_rebuilds_spans_and_cells_from_the_history(deliver, process):
    from opsview.models import WipCell, WipSpan
    from reporting import kpis
    from tests.opsview.firm import firm_events

    events = firm_events()
    for start in range(0, len(events), 50):
        deliver.send(*events[start:start + 50])
    process()
    before = [kpis.wip(as_of=dt.date(2026, 3, day))["currencies"] for day in (6, 31)]
    cells = WipCell.objects.count()
    WipCell.objects.all().delete()  # as a database upgraded to the cells would be
    WipSpan.objects.update(value=0)
    run("rebuild_state", "--derived")
    assert WipCell.objects.count() == cells
    assert [kpis.wip(as_of=dt.date(2026, 3, day))["currencies"] for day in (6, 31)] == before
