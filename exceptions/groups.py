"""Groups of near-identical cases, so thirty sync failures of one flow and error code read
as one expandable row with bulk actions, not thirty rows.

A group key is text (it travels in query strings and forms): the case type, then what makes
cases of that type alike. Each type's grouping is declared once in GROUPINGS: the key parts
from a case's values, how to select a key's members, and the group's label."""
from collections import OrderedDict
from dataclasses import dataclass, field

from django.db.models import Q
from django.db.models.fields.json import KT

from .labels import human
from .models import SEVERITY_ORDER

SEPARATOR = "|"


@dataclass(frozen=True)
class Grouping:
    parts: callable  # the values row → the parts after the type
    members: callable  # the parts → a Q selecting the cases of the group
    label: callable  # the parts → words
    arity: int = 2  # how many parts follow the type


def _dead_letter_parts(row):
    # A dead letter's fingerprint is "<source>|<event type>|<error fields>": group by the
    # source and the error, across event types.
    source, _, signature = (row["fingerprint"].split(SEPARATOR) + ["", "", ""])[:3]
    return [source, signature]


GROUPINGS = {
    "sync_failed": Grouping(
        parts=lambda row: [row["flow"] or "", row["error_code"] or ""],
        members=lambda parts: Q(detail__flow=parts[0], detail__error_code=parts[1]),
        label=lambda parts: f"flow {parts[0] or '—'} · error {parts[1] or '—'}"),
    "dead_letter": Grouping(
        parts=_dead_letter_parts,
        members=lambda parts: Q(object_id=parts[0],
                                fingerprint__endswith=SEPARATOR + parts[1]),
        label=lambda parts: f"source {parts[0]} · failing {parts[1].replace(',', ', ')}"),
}
# Any other type: its cases are alike by type alone.
BY_TYPE = Grouping(parts=lambda row: [], members=lambda parts: Q(), label=lambda parts: "",
                   arity=0)


def _grouping(case_type):
    return GROUPINGS.get(case_type, BY_TYPE)


def key_of(row):
    return SEPARATOR.join([row["type"], *_grouping(row["type"]).parts(row)])


def _split(key):
    case_type, *parts = key.split(SEPARATOR)
    return case_type, parts


def label(key):
    case_type, parts = _split(key)
    detail = _grouping(case_type).label(parts)
    return f"{human(case_type)} · {detail}" if detail else human(case_type)


def members(queryset, key):
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
    def size(self):
        return len(self.pks)


def group(queryset):
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
        similar.breached += row["sla_state"] == "breached" and row["status"] in (
            "open", "acknowledged")
    return list(found.values())


def fill(groups, queryset, shown=20):
    """Load the first `shown` members of each group (one query for all of them)."""
    wanted = {pk for g in groups for pk in g.pks[:shown]}
    cases = {case.pk: case for case in queryset.filter(pk__in=wanted)}
    for g in groups:
        g.cases = [cases[pk] for pk in g.pks[:shown] if pk in cases]
    return groups
