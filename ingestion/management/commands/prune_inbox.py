from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from ingestion import partitions
from opsview import audit


class Command(BaseCommand):
    help = ("Drop processed inbox rows older than the retention (INBOX_RETENTION_MONTHS): on "
            "PostgreSQL whole monthly partitions. Dead letters, rows not yet processed and "
            "corrected events are kept, and so are the idempotency keys.")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--months", type=int,
                            help="retention in months (default INBOX_RETENTION_MONTHS)")
        parser.add_argument("--dry-run", action="store_true",
                            help="count what would be dropped, change nothing")

    def handle(self, months: int | None, dry_run: bool, **options: Any) -> None:
        months = settings.INBOX_RETENTION_MONTHS if months is None else months
        if months < 0:
            raise CommandError("--months must be 0 (keep everything) or more")
        created = [] if dry_run else partitions.ensure_partitions(
            settings.INBOX_PARTITIONS_AHEAD)
        if created:
            self.stdout.write(f"partitions created: {', '.join(created)}")
        if months == 0:
            self.stdout.write("retention is 0 months: the inbox is kept whole")
            return
        result = partitions.prune(months, dry_run=dry_run, progress=self.stdout.write)
        verb = "would drop" if dry_run else "dropped"
        self.stdout.write(
            f"before {result.cutoff:%Y-%m-%d}: {verb} {result.dropped} processed rows "
            f"({len(result.partitions)} partitions), kept {result.kept} rows")
        if not dry_run:
            audit.record("inbox.pruned", f"inbox:before {result.cutoff:%Y-%m-%d}",
                         actor_label="command:prune_inbox", months=months,
                         dropped=result.dropped, kept=result.kept,
                         partitions=result.partitions)
