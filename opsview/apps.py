from typing import Any

from django.apps import AppConfig
from django.db.models.signals import post_migrate


class OpsviewConfig(AppConfig):
    name = "opsview"
    verbose_name = "Business state"

    def ready(self) -> None:
        post_migrate.connect(warn_without_history, sender=self)


def warn_without_history(verbosity: int = 1, **kwargs: Any) -> None:
    """Rows stored before the lifecycle history existed have no point-in-time state: say
    how to build it rather than let as-of figures silently leave them out."""
    from .models import StageEvent, TimeEntry, WipCell, WipSpan

    if not verbosity or not TimeEntry.objects.exists():
        return
    if not StageEvent.objects.exists():
        print("OpsView: the business state predates its lifecycle history; run "
              "`manage.py rebuild_state --yes` to rebuild it from the inbox.")
    elif WipSpan.objects.exists() and not WipCell.objects.exists():
        print("OpsView: the WIP cells are new; run `manage.py rebuild_state --derived` to "
              "derive them from the lifecycle history.")
