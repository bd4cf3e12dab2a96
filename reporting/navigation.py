"""The main navigation, as a context processor."""
from django.http import HttpRequest
from django.urls import reverse

NAV = [
    ("Overview", "home"),
    # Short labels: the whole bar fits one line at 1440 px; pages carry the full titles.
    ("Readiness", "readiness"),
    ("WIP", "wip"),
    ("Latency", "latency"),
    ("Integration", "integration"),
    ("Margin", "margin"),
    ("Billing", "billing"),
    ("Period close", "close"),
    ("Reconciliation", "reconciliation"),
    ("Trends", "trends"),
    ("Exceptions", "exceptions:queue"),
    ("API", "api-docs"),
]


def nav_items(request: HttpRequest) -> dict[str, list[dict[str, object]]]:
    """The navigation bar's links for a signed-in user, the current page's marked active."""
    if not getattr(request, "user", None) or not request.user.is_authenticated:
        return {}
    items = []
    for label, name in NAV:
        url = reverse(name)
        active = request.path == url if url == "/" else request.path.startswith(url)
        items.append({"label": label, "url": url, "active": active})
    if request.user.is_staff:
        items.append({"label": "Admin", "url": reverse("admin:index"),
                      "active": request.path.startswith(reverse("admin:index"))})
    return {"nav_items": items}
