"""Triage: the case list, the case page, and the actions on them (htmx, no page reload)."""
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db.models import Model, Q, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST
from django_htmx.middleware import HtmxDetails

from core.csvexport import csv_response
from ingestion import pipeline
from ingestion.models import InboxEvent
from opsview.models import SyncAttempt

from . import corrections, groups, saved_views, services
from .filters import CaseFilter
from .models import Case, CaseType, Queue, ResolutionCode, SavedView, Undo

CSV_COLUMNS = ["id", "type", "status", "severity", "queue", "owner", "title", "money_at_stake",
               "currency", "object_kind", "object_id", "client_id", "project_id",
               "sla_state", "response_due_at", "resolution_due_at", "first_seen_at",
               "last_seen_at", "times_seen"]


class TriageRequest(HttpRequest):
    """A request as LoginRequiredMiddleware and django-htmx leave it (for the type checker;
    no instance is made): a signed-in user, and what htmx sent."""

    user: User
    htmx: HtmxDetails


def can_triage(user: Any) -> bool:
    """Whether the user may change cases (see them all may)."""
    return user.has_perm("exceptions.triage_case")


def home_queue(user: Any) -> Queue | None:
    """The queue a triager works: one they are a member of, else the one named after their
    role group (finance_ops → finance-ops); None when neither exists."""
    member_of = user.queues.order_by("pk").first()
    if member_of is not None:
        return member_of
    slugs = [name.replace("_", "-") for name in user.groups.values_list("name", flat=True)]
    return Queue.objects.filter(slug__in=slugs).order_by("pk").first()


def _work_queue(user: Any) -> Queue | None:
    return home_queue(user) if can_triage(user) else None


def start(request: TriageRequest) -> HttpResponse:
    """Where each role lands after login: a triager on their work (cases they own, then their
    queue's unowned ones), everyone else (executives) on the overview."""
    if not can_triage(request.user):
        return redirect("home")
    work = home_queue(request.user)
    query = {"owner": "me"} if work is None else {"work": work.slug, "sort": "mine"}
    return redirect(f"{reverse('exceptions:queue')}?{urlencode(query)}")


def _filtered(request: TriageRequest) -> CaseFilter:
    return CaseFilter(request.GET, queryset=Case.objects.select_related("queue", "owner"),
                      user=request.user)


def queue(request: TriageRequest) -> HttpResponse:
    case_filter = _filtered(request)
    grouped = request.GET.get("view") == "grouped"
    if grouped:
        similar = groups.group(case_filter.qs)
        page = Paginator(similar, 50).get_page(request.GET.get("page"))
        groups.fill(list(page.object_list), case_filter.qs)
        count = sum(g.size for g in similar)
    else:
        page = Paginator(case_filter.qs, 50).get_page(request.GET.get("page"))
        count = page.paginator.count
    query = request.GET.copy()
    query.pop("page", None)
    context = {"filter": case_filter, "page": page, "can_triage": can_triage(request.user),
               "query": query.urlencode(), "grouped": grouped, "count": count,
               "similar_label": groups.label(request.GET.get("similar") or "") if
               request.GET.get("similar") else "",
               "resolution_codes": services.RESOLUTION_CODES, "undo": pending_undo(request),
               "saved_views": saved_views.for_user(request.user, query.urlencode(),
                                                   _work_queue(request.user)),
               "may_share": saved_views.may_share(request.user)}
    if request.htmx and request.htmx.target == "case-rows":
        return render(request, "exceptions/partials/rows.html", context)
    return render(request, "exceptions/queue.html", context)


def views_panel(request: TriageRequest) -> HttpResponse:
    """The saved views with their live counts (the side list refreshes itself)."""
    query = request.GET.get("current", "")
    return render(request, "exceptions/partials/saved_views.html", {
        "saved_views": saved_views.for_user(request.user, query, _work_queue(request.user)),
        "query": query,
        "may_share": saved_views.may_share(request.user)})


def _back_to_list(query: str) -> HttpResponseRedirect:
    return redirect(f"{reverse('exceptions:queue')}?{saved_views.clean_query(query)}")


@require_POST
def save_view(request: TriageRequest) -> HttpResponse:
    query = request.POST.get("query", "")
    try:
        view = saved_views.create(request.user, request.POST.get("name"), query,
                                  shared=request.POST.get("shared") == "on", request=request)
    except saved_views.SavedViewError as error:
        messages.error(request, f"The view was not saved: {error}.")
        return _back_to_list(query)
    messages.info(request, f"Saved view “{view.name}”" + (" (shared)." if view.shared else "."))
    return _back_to_list(view.query)


@require_POST
def change_view(request: TriageRequest, pk: int, change: str) -> HttpResponse:
    view = get_object_or_404(SavedView, pk=pk)
    try:
        if change == "rename":
            saved_views.rename(view, request.user, request.POST.get("name"), request=request)
            messages.info(request, f"Renamed the view to “{view.name}”.")
        elif change == "delete":
            saved_views.delete(view, request.user, request=request)
            messages.info(request, f"Deleted the view “{view.name}”.")
        else:
            return _refusal(404, f"no change {change!r} of a saved view")
    except saved_views.SavedViewError as error:
        messages.error(request, f"The view was not changed: {error}.")
    return _back_to_list(request.POST.get("query", ""))


SUGGESTIONS = {"client": ("Client", "client_id"), "project": ("Project", "project_id")}


def suggest(request: TriageRequest, kind: str) -> HttpResponse:
    """Names (and ids) of clients or projects matching what was typed, as <option>s for the
    filter's datalist."""
    from opsview import models as state

    if kind not in SUGGESTIONS:
        return _refusal(404, f"no suggestions for {kind!r}")
    model_name, key = SUGGESTIONS[kind]
    typed = (request.GET.get(kind) or request.GET.get("q") or "").strip()[:100]
    found = getattr(state, model_name).objects.filter(is_placeholder=False)
    if typed:
        found = found.filter(Q(name__icontains=typed) | Q(**{f"{key}__istartswith": typed}))
    options = found.order_by("name").values_list("name", key)[:20]
    return render(request, "exceptions/partials/suggestions.html", {"options": options})


def export_csv(request: TriageRequest) -> HttpResponse:
    return cases_csv(_filtered(request).qs)


def cases_csv(cases: QuerySet) -> HttpResponse:
    """The cases (at most 50,000) as a CSV download."""
    return csv_response("exceptions.csv", CSV_COLUMNS, (
        [case.pk, case.type, case.status, case.severity, case.queue.slug,
         case.owner.username if case.owner else "", case.title, case.money_at_stake,
         case.currency, case.object_kind, case.object_id, case.client_id, case.project_id,
         case.sla_state, case.response_due_at, case.resolution_due_at, case.first_seen_at,
         case.last_seen_at, case.times_seen]
        for case in cases[:50_000]))


def detail(request: TriageRequest, pk: int) -> HttpResponse:
    """The case page."""
    case = get_object_or_404(Case.objects.select_related("queue", "owner"), pk=pk)
    return _case_page(request, case)


def _case_page(request: TriageRequest, case: Case, *, status: int = 200,
               correcting: int | None = None, typed: str = "",
               problem: corrections.CorrectionError | None = None) -> HttpResponse:
    return render(request, "exceptions/case.html", {
        "case": case, "undo": pending_undo(request), "timeline": timeline(case),
        "can_triage": can_triage(request.user),
        "resolution_codes": services.RESOLUTION_CODES, "business_object": business_object(case),
        "dead_letters": _dead_letters(case, correcting, typed, problem),
        "users": _assignable(case),
    }, status=status)


def timeline(case: Case) -> list[dict]:
    """Audit entries, the inbound events and the sync attempts of the case's object."""
    items = [{"at": e.at, "kind": "audit", "entry": e} for e in case.entries.all()]
    events = InboxEvent.objects.filter(correlation_id=case.object_id).order_by("-time")[:50]
    items += [{"at": e.time or e.received_at, "kind": "event", "event": e} for e in events]
    attempts = SyncAttempt.objects.filter(object_id=case.object_id).order_by("-occurred_at")[:50]
    items += [{"at": a.occurred_at, "kind": "sync", "attempt": a} for a in attempts]
    return sorted(items, key=lambda item: item["at"], reverse=True)


def business_object(case: Case) -> list[tuple[str, Any]] | None:
    """The business record the case is about, for the case page (None: not known)."""
    from opsview import models as state

    lookups: dict[str, tuple[type[Model], str]] = {
        "project": (state.Project, "project_id"), "invoice": (state.Invoice, "invoice_id"),
        "milestone": (state.Milestone, "milestone_id"),
        "time_entry": (state.TimeEntry, "time_entry_id"), "expense": (state.Expense, "expense_id"),
        "client": (state.Client, "client_id"), "person": (state.Person, "person_id")}
    if case.object_kind not in lookups:
        return None
    model, key = lookups[case.object_kind]
    row = model._default_manager.filter(**{key: case.object_id}).first()  # i.e. `objects`
    if row is None:
        return None
    hidden = {"id", "field_versions", "version_event_id", "version_time", "is_placeholder",
              "placeholder_since", "updated_at", "status_event_id", "status_rank"}
    return [(str(f.verbose_name), getattr(row, f.name)) for f in model._meta.concrete_fields
            if f.name not in hidden]


def _dead_letters(case: Case, correcting: int | None = None, typed: str = "",
                  problem: corrections.CorrectionError | None = None) -> list[dict[str, Any]]:
    """The case's dead letters, each with its fields (failing ones marked) and the JSON to
    correct: what was typed, with the refusal, for the one whose correction was refused."""
    if case.type != CaseType.DEAD_LETTER:
        return []
    letters = []
    for event in InboxEvent.objects.filter(pk__in=case.detail.get("inbox_ids", []),
                                           status=InboxEvent.Status.DEAD).order_by("pk")[:50]:
        refused = correcting == event.pk
        shown = typed if refused else corrections.pretty(event.raw)
        letters.append({"event": event, "rows": corrections.payload_rows(event.raw, event.errors),
                        "json": shown, "rows_shown": min(max(shown.count("\n") + 2, 8), 40),
                        "problem": problem if refused else None})
    return letters


def _assignable(case: Case) -> QuerySet[User]:
    """The people who may own the case: its queue's members (everyone, if it has none) who
    can triage."""
    from django.contrib.auth.models import User
    from django.db.models import Q

    triagers = User.objects.filter(
        Q(groups__permissions__codename="triage_case")
        | Q(user_permissions__codename="triage_case") | Q(is_superuser=True),
        is_active=True).distinct()
    members = case.queue.members.all()
    return triagers.filter(pk__in=members) if members.exists() else triagers


ACTIONS = {"claim", "assign", "acknowledge", "wait", "resolve", "ignore", "reopen", "comment"}


def _apply(case: Case, action: str, user: User, data: Mapping[str, str]) -> Undo | None:
    """Apply one action; returns the Undo record of a resolve or ignore (None otherwise)."""
    if action in services.UNDOABLE:
        undo, refused = services.close_undoably([case], action, user,
                                                code=data.get("code", ResolutionCode.FIXED),
                                                comment=data.get("comment", ""))
        if refused:
            raise services.TransitionError(refused[case.pk])
        return undo
    if action == "claim":
        services.claim(case, user)
    elif action == "assign":
        from django.contrib.auth.models import User

        owner = User.objects.filter(username=data.get("owner", "")).first()
        if data.get("owner") and owner is None:
            raise services.TransitionError(f"no user {data.get('owner')!r}")
        services.assign(case, owner, user)
    elif action == "acknowledge":
        services.acknowledge(case, user)
    elif action == "wait":
        services.wait(case, user, data.get("comment", ""))
    elif action == "reopen":
        services.reopen(case, user, data.get("comment", ""))
    elif action == "comment":
        services.comment(case, user, data.get("comment", ""))
    return None


def _refusal(status: int, message: str) -> HttpResponse:
    """A refusal that names what was sent: plain text (never markup), so the value is shown,
    not run, whoever renders it."""
    return HttpResponse(message, status=status, content_type="text/plain; charset=utf-8")


@require_POST
def act(request: TriageRequest, pk: int, action: str) -> HttpResponse:
    if not can_triage(request.user):
        raise PermissionDenied("you can see cases but not change them")
    if action not in ACTIONS:
        return _refusal(400, f"unknown action {action!r}")
    case = get_object_or_404(Case.objects.select_related("queue", "owner"), pk=pk)
    try:
        undo = _apply(case, action, request.user, request.POST)
    except services.TransitionError as error:
        if request.htmx:
            return _refusal(409, str(error))
        messages.error(request, str(error))
        return redirect("exceptions:case", pk=pk)
    if request.htmx and request.POST.get("from") == "list":
        case.refresh_from_db()
        # The row in its new state, and (out of band) the undo notice of a resolve or ignore.
        return render(request, "exceptions/partials/row.html", {
            "case": case, "can_triage": True, "resolution_codes": services.RESOLUTION_CODES,
            "undo": undo, "undo_oob": True, "undo_next": _current_url(request)})
    if undo is not None:
        request.session[UNDO_SESSION_KEY] = undo.pk
    return redirect("exceptions:case", pk=pk)


@require_POST
def bulk(request: TriageRequest) -> HttpResponse:
    if not can_triage(request.user):
        raise PermissionDenied("you can see cases but not change them")
    action = request.POST.get("action", "")
    if action not in ACTIONS - {"comment"}:
        return _refusal(400, f"unknown action {action!r}")
    cases = Case.objects.select_related("queue", "owner").filter(pk__in=_bulk_ids(request))
    done, failed = 0, []
    if action in services.UNDOABLE:
        undo, refused = services.close_undoably(
            list(cases), action, request.user, code=request.POST.get("code", ResolutionCode.FIXED),
            comment=request.POST.get("comment", ""))
        done = len(undo.previous) if undo else 0
        failed = [f"#{pk}: {error}" for pk, error in refused.items()]
        if undo is not None:
            request.session[UNDO_SESSION_KEY] = undo.pk
    for case in cases if action not in services.UNDOABLE else []:
        try:
            _apply(case, action, request.user, request.POST)
            done += 1
        except services.TransitionError as error:
            failed.append(f"#{case.pk}: {error}")
    messages.info(request, f"{action}: {done} case(s) changed" +
                  (f"; {len(failed)} skipped ({'; '.join(failed[:5])})" if failed else ""))
    return redirect(f"{request.path.rsplit('/bulk', 1)[0]}/?{request.POST.get('query', '')}")


def _bulk_ids(request: TriageRequest) -> QuerySet[Case, int] | list[str]:
    """The selected cases, or every case of one group of similar cases within the filters
    the page showed (`group` and `query`)."""
    if request.POST.get("group"):
        from django.http import QueryDict

        from . import groups

        shown = CaseFilter(QueryDict(request.POST.get("query", "")),
                           queryset=Case.objects.all(), user=request.user).qs
        # Their keys, as a subquery (the SQL a query of cases would make in `pk__in`).
        return groups.members(shown, request.POST["group"]).values_list("pk", flat=True)
    return [pk for pk in request.POST.getlist("ids") if pk.isdigit()]


UNDO_SESSION_KEY = "exceptions_undo"


def _current_url(request: TriageRequest) -> str:
    """Where the person was (htmx sends the page's URL), as a local path to come back to."""
    from django.utils.http import url_has_allowed_host_and_scheme

    candidate = request.POST.get("next") or (request.htmx.current_url if request.htmx else "")
    if candidate and url_has_allowed_host_and_scheme(candidate, {request.get_host()},
                                                      require_https=request.is_secure()):
        return candidate
    return reverse("exceptions:queue")


def pending_undo(request: TriageRequest) -> Undo | None:
    """The undo offer to show once on the page the person lands on after a resolve or
    ignore (bulk or the case page), while its window is open."""
    from django.utils import timezone

    pk = request.session.pop(UNDO_SESSION_KEY, None)
    if pk is None:
        return None
    undo = Undo.objects.filter(pk=pk, actor=request.user, undone_at__isnull=True).first()
    return undo if undo and undo.expires_at() > timezone.now() else None


@require_POST
def undo(request: TriageRequest, pk: int) -> HttpResponse:
    """Take back a resolve or ignore: only its actor, within the window, once."""
    if not can_triage(request.user):
        raise PermissionDenied("you can see cases but not change them")
    record = get_object_or_404(Undo, pk=pk)
    back = _current_url(request)
    try:
        restored, left = services.undo(record, request.user)
    except services.UndoRefused as error:
        if request.htmx:
            return _refusal(409, f"Cannot undo: {error}.")
        messages.error(request, f"Cannot undo: {error}.")
        return redirect(back)
    text = f"Undone: {len(restored)} case(s) back to how they were"
    if left:
        text += f"; {len(left)} changed since by someone else, left as they are"
    messages.info(request, text + ".")
    if request.htmx:  # the notice's button: the whole page shows the cases as they are now
        response = HttpResponse(status=204)
        response["HX-Redirect"] = back
        return response
    return redirect(back)


@require_POST
def correct(request: TriageRequest, pk: int, event_pk: int) -> HttpResponse:
    """Replay a dead letter as the triager corrected it (the original kept, audited)."""
    if not can_triage(request.user):
        raise PermissionDenied("you can see cases but not change them")
    case = get_object_or_404(Case.objects.select_related("queue", "owner"), pk=pk,
                             type=CaseType.DEAD_LETTER)
    original = get_object_or_404(InboxEvent, pk=event_pk)
    typed = request.POST.get("payload", "")
    try:
        _, summary = corrections.correct_and_replay(
            case, original, typed, request.user, comment=request.POST.get("comment", "")[:2000],
            request=request)
    except corrections.CorrectionError as error:
        return _case_page(request, case, status=400, correcting=original.pk, typed=typed,
                          problem=error)
    messages.info(request, summary)
    return redirect("exceptions:case", pk=pk)


@require_POST
def replay(request: TriageRequest, pk: int) -> HttpResponse:
    """Replay the case's dead letters as they are, then re-run the dead-letter rule."""
    if not can_triage(request.user):
        raise PermissionDenied("you can see cases but not change them")
    case = get_object_or_404(Case, pk=pk, type=CaseType.DEAD_LETTER)
    ids = list(InboxEvent.objects.filter(pk__in=case.detail.get("inbox_ids", []),
                                         status=InboxEvent.Status.DEAD)
               .values_list("pk", flat=True))
    if not ids:
        messages.info(request, "No dead letters left to replay on this case: nothing was "
                               "replayed.")
        return redirect("exceptions:case", pk=pk)
    result = pipeline.replay(ids)
    services.comment(case, request.user, pipeline.replay_summary(result))
    from .rules import dead_letter, reconcile

    reconcile(CaseType.DEAD_LETTER, dead_letter, count=False)
    messages.info(request, pipeline.replay_summary(result))
    return redirect("exceptions:case", pk=pk)
