import pytest

from .firm import close_calendars, firm_events, month_end_events


@pytest.fixture
def firm(deliver, process):
    events = firm_events()
    for start in range(0, len(events), 100):
        deliver.send(*events[start:start + 100])
    process()


@pytest.fixture
def closing_firm(firm, deliver, process):
    """The hand-worked firm with its month-end events and close calendars."""
    events = month_end_events()
    for start in range(0, len(events), 100):
        deliver.send(*events[start:start + 100])
    process()
    close_calendars()
