"""The main navigation, as a context processor; pages not installed are left out."""
from django.urls import NoReverseMatch, reverse

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


def nav_items(request):
    if not getattr(request, "user", None) or not request.user.is_authenticated:
        return {}
    items = []
    for label, name in NAV:
        try:
            url = reverse(name)
        except NoReverseMatch:
            continue
        active = request.path == url if url == "/" else request.path.startswith(url)
        items.append({"label": label, "url": url, "active": active})
    if request.user.is_staff:
        items.append({"label": "Admin", "url": reverse("admin:index"),
                      "active": request.path.startswith(reverse("admin:index"))})
    return {"nav_items": items}
