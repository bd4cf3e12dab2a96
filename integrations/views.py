"""The "Request retry" actions on a case and on a selection of cases (bulk)."""
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.views.decorators.http import require_POST

from exceptions.models import Case
from exceptions.views import TriageRequest, can_triage

from . import retries


@require_POST
def request_retry(request: TriageRequest, pk: int) -> HttpResponse:
    if not can_triage(request.user):
        raise PermissionDenied("you can see cases but not change them")
    case = get_object_or_404(Case.objects.select_related("queue"), pk=pk)
    try:
        delivery = retries.request_retry(case, request.user)
    except retries.RetryRefused as error:
        messages.error(request, f"No retry requested: {error}.")
    else:
        assert delivery.source is not None  # a retry request is sent to a source
        messages.info(request, f"Retry requested from {delivery.source.slug}; each attempt "
                               "and its answer appear in the timeline.")
    return redirect("exceptions:case", pk=pk)


@require_POST
def request_retries(request: TriageRequest) -> HttpResponse:
    if not can_triage(request.user):
        raise PermissionDenied("you can see cases but not change them")
    cases = Case.objects.select_related("queue").filter(pk__in=request.POST.getlist("ids"))
    requested, refused = retries.request_retries(cases, request.user)
    messages.info(request, f"request retry: {requested} case(s) asked" + (
        f"; {len(refused)} skipped ({'; '.join(f'#{c.pk}: {why}' for c, why in refused[:5])})"
        if refused else ""))
    return redirect(f"/exceptions/?{request.POST.get('query', '')}")
