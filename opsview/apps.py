from django.apps import AppConfig
from django.db.models.signals import post_migrate


class OpsviewConfig(AppConfig):
    name = "opsview"
    verbose_name = "Business state"

    def ready(self):
        post_migrate.connect(warn_without_history, sender=self)


def warn_without_history(verbosity=1, **kwargs):
    """Rows stored before the lifecycle history existed have no point-in-time state: say
    how to build it rather than let as-of figures silently leave them out."""
    from .models import StageEvent, TimeEntry

    if TimeEntry.objects.exists() and not StageEvent.objects.exists() and verbosity:
        print("OpsView: the business state predates its lifecycle history; run "
              "`manage.py rebuild_state --yes` to rebuild it from the inbox.")
