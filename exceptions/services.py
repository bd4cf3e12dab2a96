"""Every change to a case goes through these functions, and each writes its audit entry."""
import datetime as dt
from collections.abc import Callable, Iterable
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from . import sla
from .models import (
    SEVERITY_ORDER,
    Case,
    CaseEntry,
    CaseType,
    MoneyThreshold,
    ResolutionCode,
    Severity,
    SlaPolicy,
    Undo,
)
from .signals import announce

# Who changes a case: a user, or a label such as "rule:sync_failed".
Actor = User | str

DEFAULT_TARGETS = {"critical": (30, 240), "high": (120, 480), "medium": (240, 1440),
                   "low": (480, 2400)}
# The codes a person resolves with (`cleared` is the rule's own).
RESOLUTION_CODES = [code.value for code in ResolutionCode if code != ResolutionCode.CLEARED]


class TransitionError(ValueError):
    """A change the case's current status does not allow."""


class UndoRefused(TransitionError):
    """An undo that is not (or no longer) allowed: someone else's, too late, or done."""


def entry(case: Case, actor: Actor, action: str, *, field: str = "", from_value: Any = "",
          to_value: Any = "", comment: str = "", at: dt.datetime | None = None) -> CaseEntry:
    """An unsaved audit entry; `actor` is a user or a label such as 'rule:sync_failed'."""
    user = None if isinstance(actor, str) else actor
    label = (user.get_full_name() or user.username) if user else str(actor)
    return CaseEntry(case=case, at=at or timezone.now(), actor=user, actor_label=label,
                     action=action, field=field, from_value=str(from_value or "")[:255],
                     to_value=str(to_value or "")[:255], comment=comment)


def targets(case: Case, policies: dict | None = None) -> tuple[int, int, SlaPolicy | None]:
    """(response, resolution) targets in business seconds for the case's type and severity."""
    policies = policies if policies is not None else _policies()
    policy = policies.get((case.type, case.severity)) or policies.get(("", case.severity))
    if policy:
        return policy.response_minutes * 60, policy.resolution_minutes * 60, policy
    response, resolution = DEFAULT_TARGETS[case.severity]
    return response * 60, resolution * 60, None


def _policies() -> dict[tuple[str, str], SlaPolicy]:
    return {(p.case_type, p.severity): p for p in SlaPolicy.objects.all()}


def paused_seconds(case: Case, now: dt.datetime, calendar: sla.Calendar) -> int:
    """Business seconds the case's clock stood still, waiting on someone outside."""
    paused = case.waiting_business_seconds
    if case.status == Case.Status.WAITING and case.waiting_since:
        paused += sla.business_seconds(case.waiting_since, now, calendar)
    return paused


def refresh_sla(case: Case, now: dt.datetime | None = None, calendar: sla.Calendar | None = None,
                policies: dict | None = None) -> Case:
    """Recompute due times and the SLA state. The response target counts from `opened_at`
    (until acknowledged), the resolution target from `began_at` (SPEC section 3): a problem
    that began before OpsView saw it may be breached the moment its case opens. A case that
    blocks billing of a period is due by its cut-off at the latest, and breached past it."""
    now = now or timezone.now()
    calendar = calendar or case.queue.calendar()
    response, resolution, _ = targets(case, policies)
    paused = paused_seconds(case, now, calendar)
    began_at = min(case.began_at or case.opened_at, case.opened_at)
    case.response_due_at = sla.due_at(case.opened_at, response, paused, calendar)
    case.resolution_due_at = sla.due_at(began_at, resolution, paused, calendar)
    # None unless the cut-off comes before the resolution target.
    cutoff = (case.cutoff_at if case.cutoff_at is not None
              and case.cutoff_at < case.resolution_due_at else None)
    if cutoff is not None:
        case.resolution_due_at = cutoff
    if not case.is_open:
        return case
    if cutoff is not None:
        # The cut-off is the target: the business time from the beginning to it.
        resolution = max(sla.business_seconds(began_at, cutoff, calendar) - paused, 0)
    elapsed = sla.business_seconds(began_at, now, calendar) - paused
    states = [sla.sla_state(elapsed, resolution)]
    if cutoff is not None and now >= cutoff:
        states.append(sla.SlaState.BREACHED)
    if case.acknowledged_at is None:
        states.append(sla.sla_state(
            sla.business_seconds(case.opened_at, now, calendar) - paused, response))
    case.sla_state = sla.SlaState.worst(states)
    return case


def _change(case: Case, actor: Actor, fields: dict[str, Any], *, action: str, comment: str = "",
            now: dt.datetime | None = None, announced: bool = True) -> Case:
    """Apply {field: new value}, write one audit entry per changed field, save, and
    announce the change (alerts, the case webhook) after commit."""
    now = now or timezone.now()
    entries = []
    for name, value in fields.items():
        old = getattr(case, name)
        if old == value:
            continue
        setattr(case, name, value)
        shown: Callable[[Any], str] = _username if name == "owner" else str
        entries.append(entry(case, actor, action, field=name, from_value=shown(old),
                             to_value=shown(value), comment=comment, at=now))
    if comment and not entries:
        entries.append(entry(case, actor, action, comment=comment, at=now))
    with transaction.atomic():
        refresh_sla(case, now)
        case.save()
        CaseEntry.objects.bulk_create(entries)
        if announced and entries:
            announce([case], action)
    return case


def _username(user: User | None) -> str:
    return user.username if user else ""


def _leave_waiting(case: Case, now: dt.datetime) -> None:
    if case.status == Case.Status.WAITING and case.waiting_since:
        case.waiting_business_seconds += sla.business_seconds(case.waiting_since, now,
                                                              case.queue.calendar())
        case.waiting_since = None


def _require_open(case: Case) -> None:
    if not case.is_open:
        raise TransitionError(f"the case is {case.status}; reopen it first")


def assign(case: Case, owner: User | None, actor: Actor,
           now: dt.datetime | None = None) -> Case:
    """Give the case to `owner` (or nobody): only someone who may triage can own a case."""
    _require_open(case)
    if owner is not None and not (owner.is_active and owner.has_perm("exceptions.triage_case")):
        raise TransitionError(f"{owner.username} cannot triage cases, so cannot own one")
    return _change(case, actor, {"owner": owner}, action="assigned", now=now)


def claim(case: Case, actor: User, now: dt.datetime | None = None) -> Case:
    """Take the case: its owner is who acts."""
    return assign(case, actor, actor, now)


def acknowledge(case: Case, actor: Actor, now: dt.datetime | None = None) -> Case:
    """Someone is on it: the response target is met (a waiting case resumes)."""
    _require_open(case)
    now = now or timezone.now()
    _leave_waiting(case, now)
    fields = {"status": Case.Status.ACKNOWLEDGED}
    if case.acknowledged_at is None:
        case.acknowledged_at = now
    return _change(case, actor, fields, action="acknowledged", now=now)


def wait(case: Case, actor: Actor, comment: str = "", now: dt.datetime | None = None) -> Case:
    """Waiting on someone outside: the SLA clock stops until the case is acknowledged again."""
    _require_open(case)
    now = now or timezone.now()
    if case.status != Case.Status.WAITING:
        case.waiting_since = now
    if case.acknowledged_at is None:
        case.acknowledged_at = now
    return _change(case, actor, {"status": Case.Status.WAITING}, action="waiting",
                   comment=comment, now=now)


def resolve(case: Case, actor: Actor, code: str, comment: str = "",
            now: dt.datetime | None = None) -> Case:
    """Close the case with a resolution code; `distinct` on duplicate clients marks them
    distinct, so the rule no longer groups them."""
    _require_open(case)
    if code not in RESOLUTION_CODES:
        raise TransitionError(f"resolution code must be one of {', '.join(RESOLUTION_CODES)}")
    now = now or timezone.now()
    _leave_waiting(case, now)
    case.resolved_at = now
    if code == ResolutionCode.DISTINCT and case.type == CaseType.DUPLICATE_CLIENT:
        from opsview.models import Client

        Client.objects.filter(client_id__in=case.detail.get("client_ids", [])).update(
            marked_distinct=True)
    return _change(case, actor, {"status": Case.Status.RESOLVED, "resolution_code": code},
                   action="resolved", comment=comment, now=now)


def ignore(case: Case, actor: Actor, comment: str = "", now: dt.datetime | None = None) -> Case:
    """Close the case as not worth handling."""
    _require_open(case)
    now = now or timezone.now()
    _leave_waiting(case, now)
    case.resolved_at = now
    return _change(case, actor, {"status": Case.Status.IGNORED}, action="ignored",
                   comment=comment, now=now)


def reopen(case: Case, actor: Actor, comment: str = "", now: dt.datetime | None = None) -> Case:
    """Open a closed case again; its clocks start over."""
    if case.is_open:
        raise TransitionError("the case is already open")
    now = now or timezone.now()
    case.opened_at, case.began_at = now, now
    case.resolved_at, case.acknowledged_at = None, None
    case.waiting_business_seconds, case.escalated_at = 0, None
    case.reopened_count += 1
    return _change(case, actor, {"status": Case.Status.OPEN, "resolution_code": "",
                                 "sla_state": sla.SlaState.ON_TRACK},
                   action="reopened", comment=comment, now=now)


def comment(case: Case, actor: Actor, text: str, now: dt.datetime | None = None) -> Case:
    """Add a comment (an audit entry of its own) and announce it."""
    if not text.strip():
        raise TransitionError("a comment needs some text")
    entry(case, actor, "comment", comment=text.strip()[:5000], at=now).save()
    announce([case], "comment")
    return case


def note(case: Case, actor: Actor, action: str, text: str,
         now: dt.datetime | None = None) -> Case:
    """An entry that records something done for the case outside it (a retry request sent,
    a receiver's answer): the case's fields do not change."""
    entry(case, actor, action, comment=text[:5000], at=now).save()
    return case


def escalate(case: Case, now: dt.datetime) -> Case:
    """Past its target: raise the severity and move to the escalation queue, as the policy
    says, and announce it; when the policy notifies, the queues before and after the move
    hear of it (their recipients, and the alert subscriptions on escalations)."""
    _, _, policy = targets(case)
    original_queue = case.queue
    changes: dict[str, Any] = {}
    if (policy is None or policy.escalate_raise_severity) and case.severity != Severity.CRITICAL:
        changes["severity"] = SEVERITY_ORDER[SEVERITY_ORDER.index(case.severity) + 1]
    if policy is not None and policy.escalate_move_queue and case.queue.escalation_queue:
        changes["queue"] = case.queue.escalation_queue
    case.escalated_at = now
    _change(case, "rule:sla", changes, action="escalated", comment="SLA breached", now=now,
            announced=False)
    notify = policy is None or policy.escalate_notify
    announce([case], "escalated",
             notify_queues=[original_queue, case.queue] if notify else [])
    return case


# --- Undo ------------------------------------------------------------------------------------
# The two take different arguments after the actor: `close_undoably` passes each its own.
UNDOABLE: dict[str, tuple[str, Callable[..., Case]]] = {
    "resolve": ("resolved", resolve), "ignore": ("ignored", ignore)}


def _before(case: Case) -> dict[str, Any]:
    return {"status": case.status, "owner": case.owner_id,
            "resolution_code": case.resolution_code}


def close_undoably(cases: Iterable[Case], action: str, actor: User, *,
                   code: str = ResolutionCode.FIXED, comment: str = "",
                   now: dt.datetime | None = None) -> tuple[Undo | None, dict[int, str]]:
    """Resolve or ignore each case and remember how they were, so `actor` may undo it within
    the window. Returns (the Undo or None when nothing changed, the refusals by case)."""
    done_as, change = UNDOABLE[action]
    now = now or timezone.now()
    previous, refused = {}, {}
    for case in cases:
        before = _before(case)
        try:
            if action == "resolve":
                change(case, actor, code, comment, now=now)
            else:
                change(case, actor, comment, now=now)
        except TransitionError as error:
            refused[case.pk] = str(error)
            continue
        previous[str(case.pk)] = before
    if not previous:
        return None, refused
    return Undo.objects.create(actor=actor, action=done_as, at=now, previous=previous), refused


def undo(undo_record: Undo, actor: User,
         now: dt.datetime | None = None) -> tuple[list[Case], list[Case]]:
    """Put the cases back as they were before the resolve or ignore, audited as `undone`.
    Only its actor, only within the window, only once; a case changed since is left alone.
    Returns (cases restored, cases left alone)."""
    from django.contrib.auth import get_user_model

    now = now or timezone.now()
    if undo_record.actor_id != actor.pk:
        raise UndoRefused("only the person who made this change can undo it")
    if undo_record.undone_at is not None:
        raise UndoRefused("this change was already undone")
    if now > undo_record.expires_at():
        raise UndoRefused(f"the undo window ({settings.TRIAGE_UNDO_SECONDS} s) has passed; "
                          "reopen the case instead")
    owners = {u.pk: u for u in get_user_model().objects.filter(
        pk__in={p["owner"] for p in undo_record.previous.values() if p["owner"]})}
    restored, left = [], []
    with transaction.atomic():
        undo_record.undone_at = now
        undo_record.save(update_fields=["undone_at"])
        cases = Case.objects.select_related("queue", "owner").filter(
            pk__in=[int(pk) for pk in undo_record.previous])
        for case in cases:
            before = undo_record.previous[str(case.pk)]
            if case.status != undo_record.action:
                left.append(case)  # changed since: someone else's change stands
                continue
            case.resolved_at = None
            if before["status"] == Case.Status.WAITING:
                case.waiting_since = now  # still waiting: the clock stays paused
            _change(case, actor, {"status": before["status"],
                                  "resolution_code": before["resolution_code"],
                                  "owner": owners.get(before["owner"])},
                    action="undone", now=now)
            restored.append(case)
    return restored, left


# --- Severity by money at stake --------------------------------------------------------------
def money_thresholds() -> dict[str, list[tuple[Decimal, str]]]:
    """{currency: [(amount, severity), …]} as the admin configured them."""
    found: dict[str, list[tuple[Decimal, str]]] = {}
    for threshold in MoneyThreshold.objects.all():
        found.setdefault(threshold.currency, []).append((threshold.amount, threshold.severity))
    return found


def severity_for_money(severity: str, money: Decimal | None, currency: str,
                       thresholds: dict[str, list[tuple[Decimal, str]]]) -> str:
    """`severity`, raised to the highest threshold `money` reaches in its own currency (never
    lowered: a rule's high stays high however little is at stake)."""
    if money is None:
        return severity
    reached = [wanted for amount, wanted in thresholds.get(currency or "", [])
               if money >= amount]
    return max([severity, *reached], key=SEVERITY_ORDER.index)


def apply_money_thresholds(actor: Actor = "rule:money", now: dt.datetime | None = None) -> int:
    """Raise the severity of open cases whose money at stake reaches a threshold of their
    currency, each change audited. Returns how many were raised."""
    thresholds = money_thresholds()
    if not thresholds:
        return 0
    lowest = {currency: min(amount for amount, _ in levels)
              for currency, levels in thresholds.items()}
    reaching = Q()
    for currency, amount in lowest.items():
        reaching |= Q(currency=currency, money_at_stake__gte=amount)
    raised = 0
    for case in Case.objects.select_related("queue").filter(
            reaching, status__in=Case.OPEN_STATES).exclude(severity=Severity.CRITICAL):
        wanted = severity_for_money(case.severity, case.money_at_stake, case.currency,
                                    thresholds)
        if wanted != case.severity:
            _change(case, actor, {"severity": wanted}, action="severity_by_money",
                    comment=f"{case.money_at_stake} {case.currency} at stake", now=now)
            raised += 1
    return raised
