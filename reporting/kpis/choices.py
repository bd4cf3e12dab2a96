"""The values the pages' filters offer."""


from typing import Any

from opsview import models as state


def filter_choices() -> dict[str, list[Any]]:
    """The values the filters offer: legal entities, practices and clients that exist."""
    projects = state.Project.objects.filter(is_placeholder=False)
    return {
        "legal_entities": sorted(set(projects.values_list("legal_entity", flat=True)) - {""}),
        "practices": sorted(set(projects.values_list("practice", flat=True)) - {""}),
        "clients": list(state.Client.objects.filter(is_placeholder=False)
                        .order_by("name").values_list("client_id", "name")),
    }
