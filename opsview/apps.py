from django.apps import AppConfig


class OpsviewConfig(AppConfig):
    name = "opsview"
    verbose_name = "Business state"
