"""Groups of near-identical cases, so thirty sync failures of one flow and error code read
as one expandable row with bulk actions, not thirty rows.

A group key is text (it travels in query strings and forms): the case type, then what makes
cases of that type alike. A type's grouping is declared with its rule (`grouping=` in
`exceptions.rules`): the key parts from a case's values, how to select a key's members, and
the group's label; a type without one groups by type alone."""
from collections import OrderedDict
from dataclasses import dataclass, field

from django.db.models import Q, QuerySet
from django.db.models.fields.json import KT

from .labels import human
from .models import SEVERITY_ORDER, Case
from .rules.registry import REGISTRY, SEPARATOR, Grouping
from .sla import SlaState

__all__ = ["SEPARATOR", "Group", "Grouping", "fill", "group", "key_of", "label", "members"]

# Any other type: its cases are alike by type alone.
BY_TYPE = Grouping(parts=lambda row: [], members=lambda parts: Q(), label=lambda parts: "",
                   arity=0)


def _grouping(case_type: str) -> Grouping:
    declared = REGISTRY.get(case_type)
    return (declared and declared.grouping) or BY_TYPE


def key_of(row: dict) -> str:
    """The group key of a case's values row."""
    return SEPARATOR.join([row["type"], *_grouping(row["type"]).parts(row)])


def _split(key: str) -> tuple[str, list[str]]:
    case_type, *parts = key.split(SEPARATOR)
    return case_type, parts


def label(key: str) -> str:
    """The words of a group key."""
    case_type, parts = _split(key)
    detail = _grouping(case_type).label(parts)
    return f"{human(case_type)} · {detail}" if detail else human(case_type)


def members(queryset: QuerySet, key: str) -> QuerySet:
    """The cases of `queryset` in the group `key` (none for a malformed key)."""
    case_type, parts = _split(key)
    grouping = _grouping(case_type)
    if len(parts) != grouping.arity:
        return queryset.none()
    return queryset.filter(Q(type=case_type) & grouping.members(parts))


@dataclass
class Group:
    key: str
    label: str
    pks: list = field(default_factory=list)
    cases: list = field(default_factory=list)  # the members shown (the first few)
    severity: str = "low"  # the most severe member's
    breached: int = 0  # members past their SLA (waiting ones are paused, not counted)

    @property
    def size(self) -> int:
        return len(self.pks)


def group(queryset: QuerySet) -> list["Group"]:
    """The groups of an ordered queryset of cases, in the order of their first member."""
    rows = queryset.annotate(flow=KT("detail__flow"), error_code=KT("detail__error_code")).values(
        "pk", "type", "fingerprint", "flow", "error_code", "severity", "sla_state", "status")
    found = OrderedDict()
    for row in rows:
        key = key_of(row)
        if key not in found:
            found[key] = Group(key=key, label=label(key))
        similar = found[key]
        similar.pks.append(row["pk"])
        similar.severity = max(similar.severity, row["severity"], key=SEVERITY_ORDER.index)
        similar.breached += row["sla_state"] == SlaState.BREACHED and row["status"] in (
            Case.Status.OPEN, Case.Status.ACKNOWLEDGED)
    return list(found.values())


def fill(groups: list[Group], queryset: QuerySet, shown: int = 20) -> list[Group]:
    """Load the first `shown` members of each group (one query for all of them)."""
    wanted = {pk for g in groups for pk in g.pks[:shown]}
    cases = {case.pk: case for case in queryset.filter(pk__in=wanted)}
    for g in groups:
        g.cases = [cases[pk] for pk in g.pks[:shown] if pk in cases]
    return groups
