"""The admin site under OpsView's name."""
from typing import Any

from django.contrib import admin
from django.db.models.options import Options
from django.http import HttpRequest


class OpsViewAdminSite(admin.AdminSite):
    """The admin under OpsView's name, listing models by their plural names as people say
    them: Django's default plural adds an "s" ("duplicate deliverys")."""

    site_header = "OpsView administration"
    site_title = "OpsView administration"
    index_title = "Business state, ingestion, cases and integrations"

    def get_app_list(self, request: HttpRequest, app_label: str | None = None,
                     ) -> list[dict[str, Any]]:
        """Django's app list, each model under its plural name as `plural` writes it."""
        app_list = super().get_app_list(request, app_label)
        for app in app_list:
            for model in app["models"]:
                model["name"] = plural(model["model"]._meta)
        return app_list


def plural(opts: Options) -> str:
    """The model's plural name: its own when it declares one, otherwise the singular with
    English's -y → -ies rule applied."""
    name, singular = str(opts.verbose_name_plural), str(opts.verbose_name)
    if name == singular + "s" and len(singular) > 1 and singular.endswith("y") \
            and singular[-2] not in "aeiou":
        name = singular[:-1] + "ies"
    words = [ACRONYMS.get(word, word) for word in name.split(" ")]
    return " ".join([words[0][:1].upper() + words[0][1:], *words[1:]])


# Abbreviations written in capitals wherever they appear in a model's name.
ACRONYMS = {"api": "API", "fx": "FX", "wip": "WIP", "sla": "SLA"}
