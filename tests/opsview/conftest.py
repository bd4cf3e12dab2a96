import pytest

from .firm import firm_events


@pytest.fixture
def firm(deliver, process):
    events = firm_events()
    for start in range(0, len(events), 100):
        deliver.send(*events[start:start + 100])
    process()
