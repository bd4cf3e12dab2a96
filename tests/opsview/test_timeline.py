"""The pure point-in-time core (opsview/timeline.py): statuses and WIP spans from events."""
import datetime as dt
from zoneinfo import ZoneInfo

from opsview.timeline import (
    InvoiceDates,
    Span,
    Stage,
    invoice_dates,
    status_at,
    wip_spans,
)

UTC = dt.UTC


def t(day, hour=12):
    return dt.datetime(2026, 3, day, hour, tzinfo=UTC)


def d(day):
    return dt.date(2026, 3, day)


def stage(name, when, rank, ref="", event_id=None):
    return Stage(when, rank, name, event_id or f"{name}-{when:%d%H}", ref)


TIME_RANKS = {"submitted": 1, "approved": 2, "rejected": 2, "posted": 3, "invoiced": 4,
              "reversed": 5}


def te(name, when, ref=""):
    return stage(name, when, TIME_RANKS[name], ref)


def test_a_rejection_and_an_approval_share_a_rank_the_later_wins():
    stages = [te("approved", t(2)), te("rejected", t(4)), te("approved", t(6))]
    assert [status_at(stages, t(day)) for day in (1, 3, 5, 7)] == [
        None, "approved", "rejected", "approved"]


def test_an_entry_approved_rejected_and_approved_again_has_two_spans():
    stages = [te("approved", t(2)), te("rejected", t(4)), te("approved", t(6))]
    assert wip_spans("time_entry", stages, d(1), {}, UTC) == [
        Span(t(2), t(4), False), Span(t(6), None, False)]


def test_work_approved_before_its_date_counts_from_its_date():
    spans = wip_spans("time_entry", [te("approved", t(2))], d(5), {}, UTC)
    assert spans == [Span(dt.datetime(2026, 3, 5, tzinfo=UTC), None, False)]


def test_an_item_leaves_wip_when_its_invoice_is_issued_and_returns_when_it_is_voided():
    stages = [te("approved", t(1)), te("invoiced", t(3), "I1"), te("invoiced", t(9), "I2")]
    invoices = {"I1": InvoiceDates(announced_at=t(2), issued_date=d(4), voided_date=d(6)),
                "I2": InvoiceDates(announced_at=t(8), issued_date=d(10))}
    assert wip_spans("time_entry", stages, d(1), invoices, UTC) == [
        Span(t(1), t(3), False),                       # approved, not invoiced
        Span(t(3), dt.datetime(2026, 3, 4, tzinfo=UTC), True),   # on I1, drafted
        Span(dt.datetime(2026, 3, 6, tzinfo=UTC), t(9), False),  # I1 voided
        Span(t(9), dt.datetime(2026, 3, 10, tzinfo=UTC), True),  # on I2, drafted
    ]


def test_an_invoice_never_announced_leaves_the_item_unbilled():
    stages = [te("approved", t(1)), te("invoiced", t(3), "I404")]
    assert wip_spans("time_entry", stages, d(1), {}, UTC) == [Span(t(1), None, False)]


def test_a_reversed_entry_counts_until_its_reversal():
    stages = [te("posted", t(2)), te("reversed", t(5))]
    assert wip_spans("time_entry", stages, d(1), {}, UTC) == [Span(t(2), t(5), False)]


def test_a_milestone_counts_from_its_completion_date_whenever_it_was_reported():
    stages = [stage("completed", t(20), 1)]
    assert wip_spans("milestone", stages, d(10), {}, UTC) == [
        Span(dt.datetime(2026, 3, 10, tzinfo=UTC), None, False)]


def test_day_boundaries_follow_the_firms_time_zone():
    zone = ZoneInfo("America/New_York")
    # Approved 02:00 UTC on the 3rd is still the 2nd in New York.
    spans = wip_spans("time_entry", [te("approved", t(3, hour=2))], d(2), {}, zone)
    assert spans == [Span(t(3, hour=2), None, False)]
    dates = invoice_dates([stage("issued", t(5, hour=2), 3)], zone=zone)
    assert dates.issued_date == d(4)


def test_an_invoice_is_issued_on_issued_on_else_its_issued_or_paid_events_date():
    drafted = stage("drafted", t(1), 1)
    assert invoice_dates([drafted], issued_on=d(9)).issued_date is None  # not issued yet
    issued = stage("issued", t(3), 3)
    assert invoice_dates([drafted, issued], issued_on=d(2)).issued_date == d(2)
    assert invoice_dates([drafted, issued]).issued_date == d(3)
    paid = stage("paid", t(30), 4)
    dates = invoice_dates([paid])
    assert (dates.issued_date, dates.paid_date, dates.announced_at) == (d(30), d(30), t(30))
    voided = invoice_dates([drafted, issued, stage("voided", t(7), 5)])
    assert (voided.voided_date, voided.state_at(t(6)), voided.state_at(t(8))) == (
        d(7), "billed", "voided")
