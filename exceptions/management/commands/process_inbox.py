import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from exceptions import rules
from ingestion import pipeline
from ingestion.models import InboxEvent


class Command(BaseCommand):
    help = ("Drain the inbox synchronously, then run the time-based exception rules and the SLA "
            "sweep once: afterwards every figure and case is current.")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--batch-size", type=int, default=500)

    def handle(self, batch_size: int, **options: Any) -> None:
        pending = InboxEvent.objects.filter(status=InboxEvent.Status.PENDING).count()
        self.stdout.write(f"{pending} pending inbox events")
        progress = None
        if pending > batch_size:
            def progress(totals: dict[str, int]) -> None:
                done = totals["processed"] + totals["dead"] + totals["unhandled"]
                sys.stderr.write(f"\r  {done}/{pending} ({done * 100 // max(pending, 1)} %)")
                sys.stderr.flush()

        totals = pipeline.drain_inbox(batch_size=batch_size, progress=progress)
        if progress is not None:
            sys.stderr.write("\n")
        self.stdout.write("processed {processed}, dead letters {dead}, unhandled types "
                          "{unhandled}".format(**{"processed": 0, "dead": 0, "unhandled": 0,
                                                  **totals}))
        rules.evaluate_time_rules()
        self.stdout.write("time-based rules and SLA sweep done")
