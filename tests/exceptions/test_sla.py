"""Business-hours SLA arithmetic: weekends, holidays, time zones, waiting, at risk, breach."""
import datetime as dt

from exceptions.sla import Calendar, add_business_seconds, business_seconds, due_at, sla_state

UTC = dt.UTC
NINE_TO_FIVE = Calendar()  # UTC, Monday–Friday, 09:00–17:00
HOUR = 3600


def at(text, tz=UTC):
    return dt.datetime.fromisoformat(text).replace(tzinfo=tz)


def test_business_time_counts_only_working_hours():
    # Monday 2026-11-23 08:00 → 12:00 is three business hours (09:00–12:00).
    assert business_seconds(at("2026-11-23T08:00"), at("2026-11-23T12:00"),
                            NINE_TO_FIVE) == 3 * HOUR


def test_weekends_do_not_count():
    # Friday 16:00 → Monday 10:00: one hour on Friday, one on Monday.
    assert business_seconds(at("2026-11-27T16:00"), at("2026-11-30T10:00"),
                            NINE_TO_FIVE) == 2 * HOUR
    assert add_business_seconds(at("2026-11-27T16:00"), 2 * HOUR, NINE_TO_FIVE) == at(
        "2026-11-30T10:00")


def test_holidays_do_not_count():
    calendar = Calendar(holidays=frozenset({dt.date(2026, 11, 26)}))  # Thursday
    assert business_seconds(at("2026-11-25T16:00"), at("2026-11-27T10:00"), calendar) == 2 * HOUR
    assert add_business_seconds(at("2026-11-25T16:00"), 2 * HOUR, calendar) == at(
        "2026-11-27T10:00")


def test_working_hours_are_in_the_queue_time_zone():
    berlin = Calendar(time_zone="Europe/Berlin")  # 09:00–17:00 CET = 08:00–16:00 UTC
    assert business_seconds(at("2026-11-23T07:00"), at("2026-11-23T09:00"), berlin) == 1 * HOUR
    assert add_business_seconds(at("2026-11-23T15:30"), HOUR, berlin) == at("2026-11-24T08:30")


def test_daylight_saving_change_keeps_local_working_hours():
    new_york = Calendar(time_zone="America/New_York")
    # 2026-11-02 (Monday) is after the switch to EST: 09:00 local = 14:00 UTC.
    assert add_business_seconds(at("2026-11-02T00:00"), 0, new_york) == at("2026-11-02T14:00")
    # 2026-10-30 (Friday) is still EDT: 09:00 local = 13:00 UTC.
    assert add_business_seconds(at("2026-10-30T00:00"), 0, new_york) == at("2026-10-30T13:00")


def test_time_spent_waiting_pushes_the_due_time_back():
    opened = at("2026-11-23T09:00")
    assert due_at(opened, 4 * HOUR, 0, NINE_TO_FIVE) == at("2026-11-23T13:00")
    assert due_at(opened, 4 * HOUR, 2 * HOUR, NINE_TO_FIVE) == at("2026-11-23T15:00")


def test_at_risk_from_75_percent_and_breached_at_100():
    assert sla_state(0, 100) == "on_track"
    assert sla_state(74, 100) == "on_track"
    assert sla_state(75, 100) == "at_risk"
    assert sla_state(100, 100) == "breached"
    assert sla_state(150, 100) == "breached"
