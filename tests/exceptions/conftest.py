import datetime as dt

import pytest

from exceptions import rules
from exceptions.models import Case


@pytest.fixture
def evaluate():
    """Run every rule (and the SLA sweep) as of a moment; return the cases by type."""

    def run(now=None):
        rules.evaluate_time_rules(now=now or dt.datetime.now(dt.UTC))
        return {t: list(Case.objects.filter(type=t).order_by("pk"))
                for t in Case.objects.values_list("type", flat=True).distinct()}

    return run
