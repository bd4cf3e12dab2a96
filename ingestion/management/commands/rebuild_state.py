"""`manage.py rebuild_state`: rebuild the business state from the inbox.

The inbox keeps every accepted event, and processing is idempotent and order-independent, so
the business state (and the lifecycle history and WIP spans derived from it) can always be
rebuilt: after an upgrade whose migration adds derived state (the point-in-time history of
version 2), or after a change to the firm's time zone, which moves every "as of" boundary.
Exception cases are kept; the rules reconcile them against the rebuilt state.
"""
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from ingestion.models import InboxEvent
from opsview import models as state

# Children first: every table the rebuild empties, in an order the foreign keys allow.
STATE_TABLES = [state.WipSpan, state.StageEvent, state.ReconciliationReading,
                state.ReconciliationReport, state.SyncAttempt, state.RevenueRecognition,
                state.TimeEntry, state.Expense, state.Milestone, state.Invoice,
                state.Assignment, state.Project, state.Person, state.Client, state.FlowRhythm]


class Command(BaseCommand):
    help = ("Empty the business state and process every accepted inbox event again, then run "
            "the time-based rules: the state, its history and its WIP spans as the events "
            "imply them today.")

    def add_arguments(self, parser):
        parser.add_argument("--yes", action="store_true",
                            help="do it without asking (the business state is emptied first)")
        parser.add_argument("--batch-size", type=int, default=1000)

    def handle(self, yes, batch_size, **options):
        done = InboxEvent.objects.filter(status__in=[InboxEvent.Status.PROCESSED,
                                                     InboxEvent.Status.UNHANDLED])
        count = done.count()
        if not yes:
            raise CommandError(f"This empties the business state and reprocesses {count} "
                               "inbox events; run again with --yes to do it.")
        with transaction.atomic():
            for model in STATE_TABLES:
                model.objects.all().delete()
            requeued = done.update(status=InboxEvent.Status.PENDING, processed_at=None)
        self.stdout.write(f"business state emptied; {requeued} inbox events to process again")
        call_command("process_inbox", batch_size=batch_size, stdout=self.stdout,
                     stderr=self.stderr)
