from django.apps import AppConfig


class IntegrationsConfig(AppConfig):
    name = "integrations"
    verbose_name = "Integrations: retries, alerts, case webhooks"

    def ready(self) -> None:
        from exceptions.signals import case_changed

        from . import listeners

        case_changed.connect(listeners.on_case_changed, dispatch_uid="integrations.cases")
