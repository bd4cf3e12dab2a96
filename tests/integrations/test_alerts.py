"""Alerts where people work, through Apprise, against real receivers on loopback: an HTTP
server (Apprise's JSON service, and a queue's webhook) and an SMTP server (aiosmtpd)."""
import datetime as dt
import json
import logging

import pytest

from exceptions.escalation import sla_sweep
from exceptions.models import Case, Queue
from integrations import alerts, deliveries
from integrations.models import AlertSubscription, Delivery

from .test_retry import failure

UTC = dt.UTC
MONDAY = dt.datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


def json_url(receiver, auth=""):
    return f"json://{auth}127.0.0.1:{receiver.port}/hook"


def subscribe(url, **fields):
    return AlertSubscription.objects.create(name="ops", url=url, **fields)


def messages(receiver):
    return [json.loads(r["body"]) for r in receiver.received]


@pytest.fixture
def run_on_commit(django_capture_on_commit_callbacks):
    """Announcements and deliveries run after commit; tests run inside one transaction."""
    def run(action, *args, **kwargs):
        with django_capture_on_commit_callbacks(execute=True):
            return action(*args, **kwargs)
    return run


def open_case(severity="high", queue="finance-ops", state=None, **fields):
    from exceptions import services

    case = Case(type="invoice_blocked", fingerprint=fields.pop("fingerprint", "I1"),
                title=fields.pop("title", "Invoice I1 blocked: missing_po"), severity=severity,
                queue=Queue.objects.get(slug=queue), object_kind="invoice", object_id="I1",
                money_at_stake=1200, currency="USD", opened_at=MONDAY, began_at=MONDAY,
                acknowledged_at=MONDAY, **fields)
    services.refresh_sla(case, MONDAY)
    case.sla_state = state or case.sla_state
    case.save()
    return case


def test_a_rule_opening_a_case_alerts_its_subscribers(deliver, process, receiver,
                                                     run_on_commit):
    subscribe(json_url(receiver), case_type="sync_failed")
    subscribe(json_url(receiver), case_type="invoice_blocked")  # another type: not told
    run_on_commit(deliver.send, failure(dt.datetime.now(UTC) - dt.timedelta(hours=1)))
    run_on_commit(process)
    assert Case.objects.filter(type="sync_failed").exists()
    [alert] = messages(receiver)
    assert "TE-1" in alert["title"] and alert["title"].endswith("opened")
    assert "/exceptions/" in alert["message"]


def test_at_risk_breached_and_escalated_reach_email_and_webhooks(db, receiver, smtp,
                                                                run_on_commit):
    subscribe(json_url(receiver), on_opened=False, on_at_risk=True, on_breached=True,
              on_escalated=False)
    queue = Queue.objects.get(slug="finance-ops")
    queue.notify_emails = "lead@example.com\nops@example.com"
    queue.notify_webhook_url = f"http://127.0.0.1:{receiver.port}/queue-hook"
    queue.save()
    case = open_case()
    run_on_commit(sla_sweep, MONDAY + dt.timedelta(hours=6, minutes=1))  # 75 % of 8 h
    run_on_commit(sla_sweep, MONDAY + dt.timedelta(hours=8))
    titles = [(r["path"], json.loads(r["body"])["title"]) for r in receiver.received]
    assert ("/hook", "[OpsView] Invoice I1 blocked: missing_po: at risk of breaching their "
                     "SLA") in titles
    assert ("/hook", "[OpsView] Invoice I1 blocked: missing_po: past their SLA") in titles
    # The escalation goes to the queue's own recipients (before and after the move).
    assert ("/queue-hook", "[OpsView] Invoice I1 blocked: missing_po: escalated") in titles
    # Apprise sends each address its own message.
    assert sorted(to for mail in smtp.messages for to in mail["to"]) == [
        "lead@example.com", "ops@example.com"]
    for mail in smtp.messages:
        assert "escalated" in mail["subject"] and f"/exceptions/{case.pk}/" in mail["content"]
    assert not Delivery.objects.exclude(status="delivered").exists()


def test_alerts_are_retried_while_the_receiver_is_down(db, receiver, run_on_commit,
                                                       settings):
    settings.DELIVERY_BACKOFF_SECONDS = 30
    subscribe(json_url(receiver))
    receiver.stop()
    case = open_case()
    from exceptions.signals import announce

    run_on_commit(announce, [case], "opened")
    delivery = Delivery.objects.get(kind="alert")
    assert (delivery.status, delivery.attempts) == ("pending", 1)
    assert "not delivered" in delivery.log[0]["answer"]
    later = delivery.next_attempt_at + dt.timedelta(seconds=1)
    assert deliveries.send_due(later) == [60]  # still down: twice the wait
    receiver.start()
    deliveries.send_due(later + dt.timedelta(seconds=61))
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == ("delivered", 3)
    assert len(messages(receiver)) == 1


def test_severity_and_queue_narrow_a_subscription(db, receiver, run_on_commit):
    subscribe(json_url(receiver), min_severity="high",
              queue=Queue.objects.get(slug="finance-ops"))
    from exceptions.signals import announce

    low = open_case(severity="low", fingerprint="I2", title="low one")
    elsewhere = open_case(queue="integration", fingerprint="I3", title="elsewhere")
    high = open_case(fingerprint="I4", title="high one")
    run_on_commit(announce, [low, elsewhere, high], "opened")
    [alert] = messages(receiver)
    assert alert["title"] == "[OpsView] high one: opened"


def test_the_daily_digest_summarises_open_cases(db, smtp, run_on_commit):
    subscribe(alerts.smtp_url(["cfo@example.com"]), on_opened=False, daily_digest=True)
    open_case(fingerprint="I5", title="Invoice I5 blocked", state="breached")
    open_case(fingerprint="I6", title="Invoice I6 blocked", owner=None)
    assert run_on_commit(alerts.queue_digests) == 1
    [mail] = smtp.messages
    assert mail["to"] == ["cfo@example.com"]
    assert "2 open: 1 breached" in mail["content"] and "invoice_blocked: 2" in mail["content"]


def test_alert_urls_are_checked_and_their_tokens_never_logged(db, receiver, caplog,
                                                              run_on_commit):
    from django.core.exceptions import ValidationError

    for url in ("windows://", "file:///etc/passwd", "not a url"):
        with pytest.raises(ValidationError):
            AlertSubscription(name="x", url=url).full_clean()
    token = "tok3n-s3cret-value"
    subscription = subscribe(json_url(receiver, f"user:{token}@"))
    assert token not in subscription.masked_url()
    receiver.stop()
    from exceptions.signals import announce

    with caplog.at_level(logging.DEBUG):
        run_on_commit(announce, [open_case()], "opened")
    assert Delivery.objects.get().attempts == 1
    assert token not in caplog.text + json.dumps(list(Delivery.objects.values("log", "body")))
