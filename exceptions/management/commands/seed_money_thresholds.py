from decimal import Decimal
from typing import Any

from django.core.management.base import BaseCommand

from exceptions.models import MoneyThreshold

# The demo's defaults: a case with this much at stake is at least this severe.
DEFAULTS = [("USD", "25000", "high"), ("USD", "100000", "critical"),
            ("EUR", "25000", "high"), ("EUR", "100000", "critical"),
            ("GBP", "20000", "high"), ("GBP", "80000", "critical")]


class Command(BaseCommand):
    help = "Create the demo's money thresholds of severity (idempotent; existing ones kept)."

    def handle(self, *args: Any, **options: Any) -> None:
        for currency, amount, severity in DEFAULTS:
            MoneyThreshold.objects.get_or_create(currency=currency, severity=severity,
                                                 defaults={"amount": Decimal(amount)})
        from exceptions.services import apply_money_thresholds

        raised = apply_money_thresholds()
        self.stdout.write(f"Money thresholds: {MoneyThreshold.objects.count()}; "
                          f"{raised} open case(s) raised.")
