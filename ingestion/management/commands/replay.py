from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from ingestion import pipeline
from ingestion.models import InboxEvent
from opsview import audit


class Command(BaseCommand):
    help = ("Replay dead letters after the schema or data is fixed: the given inbox ids, those "
            "of a source or type, or --all.")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("ids", nargs="*", type=int, help="inbox event ids")
        parser.add_argument("--source", help="only dead letters of this source slug")
        parser.add_argument("--type", dest="event_type", help="only dead letters of this type")
        parser.add_argument("--all", action="store_true", dest="replay_all",
                            help="every dead letter (needed when nothing else selects)")

    def handle(self, ids: list[int], source: str | None, event_type: str | None,
               replay_all: bool, **options: Any) -> None:
        # Replaying everything is never what an empty selection means.
        if not (ids or source or event_type or replay_all):
            raise CommandError("say which dead letters: inbox ids, --source, --type, or --all")
        dead = InboxEvent.objects.filter(status=InboxEvent.Status.DEAD)
        if ids:
            dead = dead.filter(pk__in=ids)
        if source:
            dead = dead.filter(source__slug=source)
        if event_type:
            dead = dead.filter(type=event_type)
        selected = list(dead.values_list("pk", flat=True))
        self.stdout.write(f"{len(selected)} dead letters selected")
        if not selected:
            return
        result = pipeline.replay(selected)
        audit.record("inbox.dead_letters_replayed", f"inbox:{len(selected)} rows",
                     actor_label="command:replay", ids=selected[:1000], **result)
        self.stdout.write(pipeline.replay_summary(result))
