"""The pure pieces of the month-end close: cut-off working days, trend intervals and
currency conversion. No database."""
import datetime as dt
from decimal import Decimal

import pytest

from opsview.periods import cutoff_day, intervals, month_bounds
from reporting.fx import Rate, choose, convert

D = dt.date


def test_the_cutoff_is_the_nth_working_day_after_the_month():
    # March 2026 ends on a Tuesday: Wed 1, Thu 2, Fri 3 April.
    assert cutoff_day(D(2026, 3, 31), 3) == D(2026, 4, 3)
    assert cutoff_day(D(2026, 3, 31), 1) == D(2026, 4, 1)
    # February 2026 ends on a Saturday: Mon 2, Tue 3, Wed 4 March.
    assert cutoff_day(D(2026, 2, 28), 3) == D(2026, 3, 4)


def test_holidays_are_not_working_days():
    good_friday, easter_monday = D(2026, 4, 3), D(2026, 4, 6)
    assert cutoff_day(D(2026, 3, 31), 3, {good_friday}) == D(2026, 4, 6)
    assert cutoff_day(D(2026, 3, 31), 3, {good_friday, easter_monday}) == D(2026, 4, 7)
    # A holiday on a weekend changes nothing.
    assert cutoff_day(D(2026, 3, 31), 3, {D(2026, 4, 4)}) == D(2026, 4, 3)


def test_a_cutoff_needs_at_least_one_working_day():
    with pytest.raises(ValueError):
        cutoff_day(D(2026, 3, 31), 0)


def test_months_are_calendar_months():
    assert month_bounds(D(2024, 2, 10)) == (D(2024, 2, 1), D(2024, 2, 29))
    assert intervals(D(2026, 1, 15), D(2026, 3, 10), "month") == [
        (D(2026, 1, 15), D(2026, 1, 31)), (D(2026, 2, 1), D(2026, 2, 28)),
        (D(2026, 3, 1), D(2026, 3, 10))]


def test_weeks_are_iso_weeks_monday_to_sunday():
    # Thursday 1 January 2026 to Wednesday 14 January: a partial first and last week.
    assert intervals(D(2026, 1, 1), D(2026, 1, 14), "week") == [
        (D(2026, 1, 1), D(2026, 1, 4)), (D(2026, 1, 5), D(2026, 1, 11)),
        (D(2026, 1, 12), D(2026, 1, 14))]
    assert intervals(D(2026, 1, 5), D(2026, 1, 5), "week") == [(D(2026, 1, 5), D(2026, 1, 5))]
    with pytest.raises(ValueError):
        intervals(D(2026, 1, 5), D(2026, 1, 5), "quarter")


USD_EUR = Rate("USD", "EUR", Decimal("0.9"), D(2026, 3, 31))
EUR_GBP = Rate("EUR", "GBP", Decimal("0.85"), D(2026, 3, 30))


def test_each_amount_is_converted_unrounded_and_the_total_rounded():
    # 100.005 × 0.9 = 90.0045; 1,200 / 0.85 = 1,411.7647…; EUR 1 as it is: 1,502.7692… → 1,502.77.
    block = convert({"USD": Decimal("100.005"), "GBP": Decimal("1200"), "EUR": Decimal("1")},
                    "EUR", {"USD": USD_EUR, "GBP": EUR_GBP})
    assert block == {"currency": "EUR", "total": "1502.77",
                     "rates": [{"base": "EUR", "quote": "GBP", "rate": "0.85",
                                "date": "2026-03-30"},
                               {"base": "USD", "quote": "EUR", "rate": "0.9",
                                "date": "2026-03-31"}],
                     "unconverted": []}


def test_a_currency_without_a_rate_is_named_never_guessed():
    block = convert({"USD": Decimal("10"), "JPY": Decimal("0")}, "EUR", {"USD": USD_EUR})
    # A zero amount needs a rate like any other.
    assert (block["total"], block["unconverted"]) == ("9.00", ["JPY"])


def test_the_latest_rate_on_or_before_the_date_wins_direct_before_inverted():
    inverted = Rate("EUR", "USD", Decimal("1.25"), D(2026, 3, 31))
    older = Rate("USD", "EUR", Decimal("0.8"), D(2026, 3, 1))
    later = Rate("USD", "EUR", Decimal("0.7"), D(2026, 4, 1))
    candidates = [older, inverted, USD_EUR, later]
    assert choose(candidates, "USD", "EUR", D(2026, 3, 31)) == USD_EUR
    assert choose([older, inverted], "USD", "EUR", D(2026, 3, 31)) == inverted
    assert choose(candidates, "USD", "EUR", D(2026, 3, 15)) == older
    assert choose(candidates, "USD", "EUR", D(2026, 2, 1)) is None
    assert inverted.factor("USD", "EUR") == Decimal("0.8")
