"""Alerts where people work: which subscriptions hear of which cases, the messages they
get, and the daily digest. Sending goes through Apprise (deliveries.py), one notification
library for Slack, Teams, PagerDuty, email and the rest."""
from collections.abc import Iterable, Sequence
from urllib.parse import quote, urlencode, urlsplit

from django.conf import settings
from django.db.models import Count, Q, Sum

from exceptions.models import SEVERITY_ORDER, Case, Queue

from .models import AlertSubscription, Delivery

LISTED = 10  # cases named in one message; the rest are counted
HEADLINES = {"opened": "opened", "at_risk": "at risk of breaching their SLA",
             "breached": "past their SLA", "escalated": "escalated"}


def case_url(case: Case) -> str:
    return f"{settings.OPSVIEW_BASE_URL}/exceptions/{case.pk}/"


def matches(subscription: AlertSubscription, case: Case) -> bool:
    return ((subscription.queue_id is None or subscription.queue_id == case.queue_id)
            and (not subscription.case_type or subscription.case_type == case.type)
            and SEVERITY_ORDER.index(case.severity)
            >= SEVERITY_ORDER.index(subscription.min_severity))


def _line(case: Case) -> str:
    money = (f" · {case.currency} {case.money_at_stake:,.2f}"
             if case.money_at_stake is not None else "")
    return f"- {case.severity} · {case.title}{money} · {case_url(case)}"


def message(cases: Sequence[Case], trigger: str) -> tuple[str, str]:
    """(title, body) of one alert about `cases`."""
    what = HEADLINES[trigger]
    title = (f"[OpsView] {cases[0].title}: {what}" if len(cases) == 1
             else f"[OpsView] {len(cases)} cases {what}")
    lines = [_line(case) for case in cases[:LISTED]]
    if len(cases) > LISTED:
        lines.append(f"… and {len(cases) - LISTED} more")
    return title[:300], "\n".join(lines)


def alert_deliveries(cases: Sequence[Case], trigger: str,
                     notify_queues: Iterable[Queue] = ()) -> list[Delivery]:
    """Unsaved deliveries: one per subscription that wants this trigger and matches some of
    the cases, and, for an escalation the policy notifies, one per queue with recipients of
    its own."""
    from .deliveries import new_message_id

    field = f"on_{trigger}"
    subscriptions = AlertSubscription.objects.filter(enabled=True, **{field: True})
    made = []
    for subscription in subscriptions:
        matching = [case for case in cases if matches(subscription, case)]
        if matching:
            title, body = message(matching, trigger)
            made.append(Delivery(kind=Delivery.Kind.ALERT, subscription=subscription,
                                 case=matching[0] if len(matching) == 1 else None,
                                 title=title, body=body, message_id=new_message_id()))
    for queue in {q.pk: q for q in notify_queues}.values():
        if queue_urls(queue):
            for case in cases:
                title, body = message([case], trigger)
                made.append(Delivery(kind=Delivery.Kind.ALERT, queue=queue, case=case,
                                     title=title, body=body, message_id=new_message_id()))
    return made


def queue_urls(queue: Queue) -> list[str]:
    """A queue's own recipients as Apprise URLs: its addresses through the SMTP server of
    the EMAIL_* settings, and its webhook (a Slack incoming webhook natively; any other
    address receives Apprise's JSON message)."""
    urls = []
    recipients = [line.strip() for line in queue.notify_emails.splitlines() if line.strip()]
    if recipients:
        urls.append(smtp_url(recipients))
    if queue.notify_webhook_url:
        parts = urlsplit(queue.notify_webhook_url)
        if parts.hostname == "hooks.slack.com":
            urls.append(queue.notify_webhook_url)
        elif parts.scheme in ("http", "https"):
            urls.append(("jsons" if parts.scheme == "https" else "json")
                        + queue.notify_webhook_url[len(parts.scheme):])
    return urls


def smtp_url(recipients: Sequence[str]) -> str:
    """Apprise's mailto URL for the SMTP server Django is configured with."""
    auth = ""
    if settings.EMAIL_HOST_USER:
        auth = (f"{quote(settings.EMAIL_HOST_USER, safe='')}:"
                f"{quote(settings.EMAIL_HOST_PASSWORD, safe='')}@")
    mode = ("ssl" if settings.EMAIL_USE_SSL else "starttls" if settings.EMAIL_USE_TLS
            else "insecure")
    query = urlencode({"smtp": settings.EMAIL_HOST, "from": settings.DEFAULT_FROM_EMAIL,
                       "to": ",".join(recipients), "mode": mode})
    return f"{'mailtos' if mode != 'insecure' else 'mailto'}://{auth}{settings.EMAIL_HOST}:" \
           f"{settings.EMAIL_PORT}?{query}"


def digest(subscription: AlertSubscription) -> tuple[str, str] | None:
    """(title, body) of a subscription's daily digest of its open cases, or None."""
    cases = Case.objects.filter(status__in=Case.OPEN_STATES,
                                severity__in=SEVERITY_ORDER[
                                    SEVERITY_ORDER.index(subscription.min_severity):])
    if subscription.queue_id:
        cases = cases.filter(queue_id=subscription.queue_id)
    if subscription.case_type:
        cases = cases.filter(type=subscription.case_type)
    totals = cases.aggregate(open=Count("pk"), breached=Count("pk", Q(sla_state="breached")),
                             at_risk=Count("pk", Q(sla_state="at_risk")),
                             unowned=Count("pk", Q(owner__isnull=True)))
    if not totals["open"]:
        return None
    by_type = cases.values("type").annotate(n=Count("pk"), money=Sum("money_at_stake"))
    lines = [f"{totals['open']} open: {totals['breached']} breached, {totals['at_risk']} at "
             f"risk, {totals['unowned']} without an owner.", ""]
    lines += [f"{row['type']}: {row['n']}" for row in by_type.order_by("-n", "type")]
    top = cases.filter(money_at_stake__isnull=False).order_by("-money_at_stake")[:LISTED]
    if top:
        lines += ["", "Most money at stake:", *(_line(case) for case in top)]
    return f"[OpsView] Daily digest: {subscription.name}"[:300], "\n".join(lines)


def queue_digests() -> int:
    """One digest delivery per subscription that wants it and has open cases."""
    from .deliveries import new_message_id
    from .tasks import enqueue

    made = 0
    for subscription in AlertSubscription.objects.filter(enabled=True, daily_digest=True):
        content = digest(subscription)
        if content:
            delivery = Delivery.objects.create(
                kind=Delivery.Kind.ALERT, subscription=subscription, title=content[0],
                body=content[1], message_id=new_message_id())
            enqueue(delivery.pk)
            made += 1
    return made
