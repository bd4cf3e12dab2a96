"""`manage.py rebuild_state`: rebuild the business state from the inbox.

The inbox keeps every accepted event, and processing is idempotent and order-independent, so
the business state (and the lifecycle history and WIP spans derived from it) can always be
rebuilt: after an upgrade whose migration adds derived state (the point-in-time history of
version 2), or after a change to the firm's time zone, which moves every "as of" boundary.
Exception cases are kept; the rules reconcile them against the rebuilt state.
"""
from typing import Any

from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from ingestion.models import InboxEvent
from opsview import models as state

# Children first: every table the rebuild empties, in an order the foreign keys allow.
STATE_TABLES = [state.WipDayChange, state.WipCell, state.WipSpan, state.StageEvent,
                state.ReconciliationReading, state.ReconciliationReport, state.SyncAttempt,
                state.RevenueRecognition,
                state.TimeEntry, state.Expense, state.Milestone, state.Invoice,
                state.Assignment, state.Project, state.Person, state.Client, state.FlowRhythm]


class Command(BaseCommand):
    help = ("Empty the business state and process every accepted inbox event again, then run "
            "the time-based rules: the state, its history and its WIP spans as the events "
            "imply them today.")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--yes", action="store_true",
                            help="do it without asking (the business state is emptied first)")
        parser.add_argument("--batch-size", type=int, default=1000)
        parser.add_argument("--derived", action="store_true",
                            help="only derive again what the lifecycle history implies "
                                 "(invoice dates, WIP spans and cells), keeping the state")

    def handle(self, yes: bool, batch_size: int, derived: bool, **options: Any) -> None:
        if derived:
            return self._derive_again(batch_size)
        done = InboxEvent.objects.filter(status__in=[InboxEvent.Status.PROCESSED,
                                                     InboxEvent.Status.UNHANDLED])
        count = done.count()
        if not yes:
            raise CommandError(f"This empties the business state and reprocesses {count} "
                               "inbox events; run again with --yes to do it.")
        with transaction.atomic():
            for model in STATE_TABLES:
                model._default_manager.all().delete()
            requeued = done.update(status=InboxEvent.Status.PENDING, processed_at=None)
        self.stdout.write(f"business state emptied; {requeued} inbox events to process again")
        call_command("process_inbox", batch_size=batch_size, stdout=self.stdout,
                     stderr=self.stderr)

    def _derive_again(self, batch_size: int) -> None:
        """Invoice dates, then every item's spans and cells, from the kept history: after
        a migration that adds derived state, or a change of the firm's time zone."""
        from opsview import derived

        with transaction.atomic():
            state.WipDayChange.objects.all().delete()
            state.WipCell.objects.all().delete()
            state.WipSpan.objects.all().delete()
        invoices = list(state.Invoice.objects.values_list("pk", flat=True))
        for start in range(0, len(invoices), batch_size):
            with transaction.atomic():
                derived.refresh_invoices(invoices[start:start + batch_size])
        for kind, (model, _) in derived.ITEMS.items():
            pks = list(model.objects.order_by("pk").values_list("pk", flat=True))
            for start in range(0, len(pks), batch_size):
                with transaction.atomic():
                    derived.refresh_items(kind, pks[start:start + batch_size])
                self.stderr.write(f"\r  {kind}: {min(start + batch_size, len(pks))}/{len(pks)}",
                                  ending="")
            self.stderr.write("")
        self.stdout.write(f"derived again: {len(invoices)} invoices, "
                          f"{state.WipSpan.objects.count()} WIP spans, "
                          f"{state.WipCell.objects.count()} WIP cells")
