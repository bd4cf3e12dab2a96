"""core.bulk writes the values the ORM would: insert_rows against bulk_create, update_rows
with values it sends as they are and values it has to prepare (a naive datetime)."""
import datetime as dt
from decimal import Decimal

import pytest
from django.utils import timezone

from core.bulk import insert_rows, update_rows
from opsview import models as state

pytestmark = pytest.mark.django_db

FIELDS = ["kind", "record_id", "start", "end", "in_billing", "project_id", "person_id",
          "on_date", "hours", "bill_rate", "amount", "currency", "billable", "value",
          "value_currency"]


def spans(record_offset):
    start = dt.datetime(2026, 3, 2, 9, 30, 15, 123456, tzinfo=dt.UTC)
    return [
        state.WipSpan(kind="time_entry", record_id=record_offset + 1, start=start, end=None,
                      project_id=7, person_id=None, on_date=dt.date(2026, 3, 1),
                      hours=Decimal("7.50"), bill_rate=None, amount=Decimal("0.10"),
                      currency="", value=Decimal("1125.1234"), value_currency="USD"),
        state.WipSpan(kind="expense", record_id=record_offset + 2, start=start,
                      end=start + dt.timedelta(days=3), in_billing=True, project_id=8,
                      person_id=9, on_date=dt.date(2026, 2, 28), bill_rate=Decimal("150.00"),
                      currency="EUR", billable=False),
    ]


def stored(record_ids):
    return [tuple(row[1:]) for row in state.WipSpan.objects.filter(
        record_id__in=record_ids).order_by("record_id").values_list("record_id", *FIELDS)]


def test_insert_rows_stores_what_bulk_create_stores():
    state.WipSpan.objects.bulk_create(spans(0))
    insert_rows(state.WipSpan, spans(100))
    by_orm, by_insert = stored([1, 2]), stored([101, 102])
    assert len(by_insert) == 2
    # Equal but for the record id.
    assert [row[:1] + row[2:] for row in by_insert] == [row[:1] + row[2:] for row in by_orm]
    assert by_insert[0][FIELDS.index("hours")] == Decimal("7.50")
    assert by_insert[1][FIELDS.index("end")] == dt.datetime(2026, 3, 5, 9, 30, 15, 123456,
                                                             tzinfo=dt.UTC)


def test_insert_rows_skips_conflicting_rows_only_when_asked():
    at = timezone.now()

    def event(inbox_id, stage):
        return state.StageEvent(kind="time_entry", record_id=1, stage=stage, rank=1, at=at,
                                event_id=f"e-{inbox_id}", inbox_event_id=inbox_id)

    insert_rows(state.StageEvent, [event(1, "submitted")])
    insert_rows(state.StageEvent, [event(1, "approved"), event(2, "approved")],
                ignore_conflicts=True)
    assert list(state.StageEvent.objects.order_by("inbox_event_id").values_list(
        "inbox_event_id", "stage")) == [(1, "submitted"), (2, "approved")]
    with pytest.raises(Exception):  # noqa: B017 - the backend's IntegrityError
        insert_rows(state.StageEvent, [event(2, "posted")])


def test_update_rows_prepares_what_it_cannot_send_as_it_is(settings):
    settings.TIME_ZONE = "America/New_York"  # a naive datetime is taken in this zone
    state.WipSpan.objects.bulk_create(spans(0))
    rows = list(state.WipSpan.objects.order_by("record_id"))
    naive = dt.datetime(2026, 4, 1, 12, 0)  # 16:00 UTC
    rows[0].end, rows[0].hours, rows[0].currency = naive, Decimal("3.25"), "GBP"
    rows[1].end, rows[1].on_date, rows[1].billable = None, dt.date(2026, 1, 31), True
    with pytest.warns(RuntimeWarning):  # Django's, for a naive datetime
        update_rows(state.WipSpan, rows, ["end", "hours", "currency", "on_date", "billable"])
    first, second = state.WipSpan.objects.order_by("record_id")
    assert first.end == dt.datetime(2026, 4, 1, 16, 0, tzinfo=dt.UTC)
    assert (first.hours, first.currency) == (Decimal("3.25"), "GBP")
    assert (second.end, second.on_date, second.billable) == (None, dt.date(2026, 1, 31), True)
