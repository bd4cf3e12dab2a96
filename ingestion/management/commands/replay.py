from django.core.management.base import BaseCommand

from ingestion import pipeline
from ingestion.models import InboxEvent
from opsview import audit


class Command(BaseCommand):
    help = "Replay dead letters (all, or the given inbox ids) after the schema or data is fixed."

    def add_arguments(self, parser):
        parser.add_argument("ids", nargs="*", type=int, help="inbox event ids (default: all dead)")
        parser.add_argument("--source", help="only dead letters of this source slug")
        parser.add_argument("--type", dest="event_type", help="only dead letters of this type")

    def handle(self, ids, source, event_type, **options):
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
