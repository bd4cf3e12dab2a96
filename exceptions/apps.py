from django.apps import AppConfig


class ExceptionsConfig(AppConfig):
    name = "exceptions"
    verbose_name = "Exception cases"

    def ready(self) -> None:
        from ingestion import announce

        from .rules import on_batch_processed

        # Processing announces each committed batch; the event-driven rules listen.
        announce.subscribe(on_batch_processed)
