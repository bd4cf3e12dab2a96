from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils.text import slugify

from ingestion.models import Source
from opsview import audit


class Command(BaseCommand):
    help = "Create an event source and print its signing secret (once, alone on the last line)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("slug")
        parser.add_argument("--name", default="")
        parser.add_argument("--rate-limit", type=int, default=None,
                            help="requests per minute (0: unlimited)")
        parser.add_argument("--rotate", action="store_true",
                            help="the source exists: rotate its secret, keeping the old one "
                                 "valid until retired")

    def handle(self, slug: str, name: str, rate_limit: int | None, rotate: bool,
               **options: Any) -> None:
        if slugify(slug) != slug:
            raise CommandError(f"{slug!r} is not a slug (lowercase letters, digits, hyphens)")
        source = Source.objects.filter(slug=slug).first()
        if rotate:
            if source is None:
                raise CommandError(f"no source {slug!r} to rotate")
            secret = source.rotate_secret()
            audit.record("source.secret_rotated", f"source:{slug}",
                         actor_label="command:create_source")
            self.stdout.write(f"Rotated the secret of {slug}; the previous one stays valid until "
                              "retired in the admin.")
        else:
            if source is not None:
                raise CommandError(f"source {slug!r} exists; use --rotate for a new secret")
            source = Source(slug=slug, name=name or slug)
            if rate_limit is not None:
                source.rate_limit_per_minute = rate_limit
            source.save()
            audit.record("source.created", f"source:{slug}", actor_label="command:create_source")
            secret = source.secret
            self.stdout.write(f"Created source {slug}: POST events to /ingest/{slug}/events, "
                              "signed with this secret (shown once):")
        self.stdout.write(secret)
