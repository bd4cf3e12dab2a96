"""The case list's filters, shared by the triage page, its CSV export and the read API."""
import datetime as dt
from typing import Any

import django_filters
from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.models import AnonymousUser
from django.db.models import Case as SqlCase
from django.db.models import F, IntegerField, Q, QuerySet, Value, When
from django.http import QueryDict
from django.utils import timezone

from .models import Case, CaseType, Queue, Severity
from .sla import SlaState

AGE_BUCKETS = {"<4h": (0, 4), "4-24h": (4, 24), "1-3d": (24, 72), "3-7d": (72, 168),
               ">7d": (168, None)}
# Money sorts within a currency: amounts in EUR, GBP and USD are not comparable as raw
# numbers, so cases group by currency (cases without money last), largest first in each.
NO_MONEY_LAST = SqlCase(When(currency="", then=Value(1)), default=Value(0),
                      output_field=IntegerField())
SORTS: dict[str, list[Any]] = {"due": [F("resolution_due_at").asc(nulls_last=True)],
         "money": [NO_MONEY_LAST, "currency", F("money_at_stake").desc(nulls_last=True)],
         "age": ["began_at"], "newest": ["-last_seen_at"],
         # "My work": the cases I own, then the unowned ones, then the rest; due first in each.
         "mine": [F("resolution_due_at").asc(nulls_last=True)]}


class CaseFilter(django_filters.FilterSet):
    q = django_filters.CharFilter(method="search", label="Search")
    queue = django_filters.ModelChoiceFilter(queryset=Queue.objects.all(), to_field_name="slug",
                                             empty_label="Any")
    status = django_filters.ChoiceFilter(choices=[("active", "Open (any)"),
                                                  *Case.Status.choices],
                                         method="by_status", empty_label="Open (any)")
    type = django_filters.ChoiceFilter(choices=CaseType.choices, empty_label="Any")
    severity = django_filters.ChoiceFilter(choices=Severity.choices, empty_label="Any")
    owner = django_filters.CharFilter(method="by_owner", label="Owner")
    sla = django_filters.ChoiceFilter(field_name="sla_state", label="SLA", choices=[
        (SlaState.ON_TRACK, "On track"), (SlaState.AT_RISK, "At risk"),
        (SlaState.BREACHED, "Breached")],
        empty_label="Any")
    # A choice, not django-filter's BooleanFilter, whose select reads anything unknown as
    # "either": `breached=maybe` is refused instead of silently listing every case.
    breached = django_filters.ChoiceFilter(choices=[("true", "Breached"),
                                                    ("false", "Not breached")],
                                           method="by_breached", empty_label="Any")
    age = django_filters.ChoiceFilter(choices=[(k, k) for k in AGE_BUCKETS], method="by_age",
                                      empty_label="Any")
    client = django_filters.CharFilter(method="by_client", label="Client")
    project = django_filters.CharFilter(method="by_project", label="Project")
    work = django_filters.CharFilter(method="by_work", label="My work in queue")
    similar = django_filters.CharFilter(method="by_similar", label="Similar to")
    sort = django_filters.ChoiceFilter(choices=[(k, k) for k in SORTS], method="by_sort",
                                       empty_label="Due first")

    class Meta:
        model = Case
        fields: list[str] = []

    def __init__(self, data: QueryDict | dict[str, Any] | None = None, *args: Any,
                 user: AbstractBaseUser | AnonymousUser | None = None, **kwargs: Any) -> None:
        self.user = user
        data = data.copy() if data is not None else {}
        if not data.get("status"):
            data["status"] = "active"
        super().__init__(data, *args, **kwargs)

    @property
    def qs(self) -> QuerySet:
        queryset = super().qs
        if not self.form.cleaned_data.get("sort"):
            queryset = queryset.order_by(*SORTS["due"], "pk")
        return queryset

    def search(self, queryset: QuerySet, name: str, value: Any) -> QuerySet:
        return queryset.filter(Q(title__icontains=value) | Q(object_id__icontains=value)
                               | Q(fingerprint__icontains=value))

    def by_status(self, queryset: QuerySet, name: str, value: Any) -> QuerySet:
        if value == "active":
            return queryset.filter(status__in=Case.OPEN_STATES)
        return queryset.filter(status=value)

    def by_owner(self, queryset: QuerySet, name: str, value: Any) -> QuerySet:
        if value == "me":
            return queryset.filter(owner=self.user) if self.user else queryset.none()
        if value == "unassigned":
            return queryset.filter(owner__isnull=True)
        if value == "someone":
            return queryset.filter(owner__isnull=False)
        return queryset.filter(owner__username=value)

    def by_work(self, queryset: QuerySet, name: str, value: Any) -> QuerySet:
        """A triager's work: the cases they own (any queue), then `value` queue's unowned."""
        mine = Q(owner=self.user) if self.user and self.user.is_authenticated else Q(pk=None)
        return queryset.filter(mine | Q(queue__slug=value, owner__isnull=True))

    def by_similar(self, queryset: QuerySet, name: str, value: Any) -> QuerySet:
        from . import groups

        return groups.members(queryset, value)

    def by_client(self, queryset: QuerySet, name: str, value: Any) -> QuerySet:
        from opsview.models import Client

        return queryset.filter(Q(client_id=value) | Q(client_id__in=Client.objects.filter(
            name__icontains=value).values("client_id")))

    def by_project(self, queryset: QuerySet, name: str, value: Any) -> QuerySet:
        from opsview.models import Project

        return queryset.filter(Q(project_id=value) | Q(project_id__in=Project.objects.filter(
            name__icontains=value).values("project_id")))

    def by_breached(self, queryset: QuerySet, name: str, value: Any) -> QuerySet:
        breached = Q(sla_state=SlaState.BREACHED)
        return queryset.filter(breached) if value == "true" else queryset.exclude(breached)

    def by_age(self, queryset: QuerySet, name: str, value: Any) -> QuerySet:
        low, high = AGE_BUCKETS[value]
        now = timezone.now()
        queryset = queryset.filter(began_at__lte=now - dt.timedelta(hours=low))
        return queryset.filter(began_at__gt=now - dt.timedelta(hours=high)) if high else queryset

    def by_sort(self, queryset: QuerySet, name: str, value: Any) -> QuerySet:
        if value == "mine":
            user_pk = self.user.pk if self.user and self.user.is_authenticated else None
            rank = SqlCase(When(owner_id=user_pk, then=Value(0)),
                         When(owner__isnull=True, then=Value(1)), default=Value(2),
                         output_field=IntegerField())
            return queryset.order_by(rank, *SORTS[value], "pk")
        return queryset.order_by(*SORTS[value], "pk")
