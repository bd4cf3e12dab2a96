"""Saved views: named filter sets of the case list, personal or shared. Creating, renaming
and deleting go through here, permission-checked and audited; `for_user` lists the views a
person sees, each with its live count."""
from typing import Any

from django.core.exceptions import PermissionDenied
from django.db import IntegrityError, transaction
from django.http import QueryDict

from opsview import audit

from .filters import CaseFilter
from .models import Case, SavedView

# Always there, before the saved ones: a triager's everyday queues.
BUILT_IN = [("My cases", "owner=me"), ("Unassigned", "owner=unassigned"),
            ("Breached", "sla=breached")]
MAX_LISTED = 30
# What a view keeps of the page's query string: its filters and the grouping, not the page.
KEPT = set(CaseFilter.base_filters) | {"view"}


class SavedViewError(ValueError):
    """A name or query a saved view cannot take."""


def clean_query(query: str) -> str:
    data = QueryDict(query or "", mutable=True)
    for name in list(data):
        if name not in KEPT or not any(data.getlist(name)):
            del data[name]
    return data.urlencode()


def _clean_name(name: str | None) -> str:
    name = (name or "").strip()
    if not name:
        raise SavedViewError("a saved view needs a name")
    if len(name) > 80:
        raise SavedViewError("a saved view's name has at most 80 characters")
    return name


def may_share(user: Any) -> bool:
    """Whether the user may share a view with everyone."""
    return user.has_perm("exceptions.triage_case") or user.is_staff


def _may_change(view: SavedView, user: Any) -> None:
    if view.owner_id != user.pk and not user.is_superuser:
        raise PermissionDenied("only the person who saved this view can change it")


def create(user: Any, name: str | None, query: str, *, shared: bool = False,
           request: Any = None) -> SavedView:
    if shared and not may_share(user):
        raise PermissionDenied("only people who triage cases can share a view")
    name = _clean_name(name)
    try:
        with transaction.atomic():
            view = SavedView.objects.create(owner=user, name=name, shared=shared,
                                            query=clean_query(query))
    except IntegrityError:
        raise SavedViewError(f"you already have a view named {name!r}") from None
    audit.record("saved_view.created", f"saved_view:{view.pk}", request=request, actor=user,
                 name=view.name, shared=view.shared, query=view.query)
    return view


def rename(view: SavedView, user: Any, name: str | None, *, request: Any = None) -> SavedView:
    _may_change(view, user)
    old, view.name = view.name, _clean_name(name)
    try:
        with transaction.atomic():
            view.save(update_fields=["name"])
    except IntegrityError:
        raise SavedViewError(f"you already have a view named {view.name!r}") from None
    audit.record("saved_view.renamed", f"saved_view:{view.pk}", request=request, actor=user,
                 old=old, new=view.name)
    return view


def delete(view: SavedView, user: Any, *, request: Any = None) -> None:
    _may_change(view, user)
    audit.record("saved_view.deleted", f"saved_view:{view.pk}", request=request, actor=user,
                 name=view.name, shared=view.shared, query=view.query)
    view.delete()


def count(query: str, user: Any) -> int:
    """How many cases the view's query lists for the user now."""
    return CaseFilter(QueryDict(query), queryset=Case.objects.all(), user=user).qs.count()


def for_user(user: Any, current_query: str = "", work_queue: Any = None) -> list:
    """The built-in views (a triager's work first, where they land), then the person's own
    and everyone's shared views, each with its live count and whether it is the list being
    shown."""
    from urllib.parse import urlencode

    from django.db.models import Q

    current = clean_query(current_query)
    built_in = ([("My work", urlencode({"work": work_queue.slug, "sort": "mine"}))]
                if work_queue is not None else []) + BUILT_IN
    listed: list[dict[str, Any]] = [{"name": name, "query": query, "builtin": True}
                                    for name, query in built_in]
    for view in (SavedView.objects.filter(Q(owner=user) | Q(shared=True))
                 .select_related("owner")[:MAX_LISTED]):
        listed.append({"name": view.name, "query": view.query, "view": view,
                       "mine": view.owner_id == user.pk, "shared": view.shared})
    for item in listed:
        item["count"] = count(item["query"], user)
        item["active"] = clean_query(item["query"]) == current
    return listed
