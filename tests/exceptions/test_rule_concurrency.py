"""Two workers reconciling the same case type at once: the one whose findings are older must
not undo the case the other just opened. Each reconcile computes its findings under a
per-type lock, so they run one after the other and the later one sees the newer state."""
import threading

import pytest
from django.db import connection

from exceptions import rules
from exceptions.models import Case

pytestmark = pytest.mark.skipif(connection.vendor != "postgresql",
                                reason="SQLite runs one writer at a time anyway")


def _blocked(invoice):
    return rules.Finding(fingerprint=invoice, title=f"Invoice {invoice} blocked",
                         object_kind="invoice", object_id=invoice, severity="high")


def _in_thread(target):
    def run():
        try:
            target()
        finally:
            connection.close()
    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_a_stale_reconcile_does_not_resolve_a_case_opened_meanwhile(
        transactional_db, django_db_serialized_rollback):
    finding_read, go_on = threading.Event(), threading.Event()

    def stale_findings():  # worker A read the state before invoice I9 was blocked...
        finding_read.set()
        assert go_on.wait(10)  # ...and is slow to write what it found
        return []

    slow = _in_thread(lambda: rules.reconcile("invoice_blocked", stale_findings))
    assert finding_read.wait(10)
    # Worker B has committed I9 as blocked and reconciles with fresh findings.
    fresh = _in_thread(lambda: rules.reconcile("invoice_blocked", lambda: [_blocked("I9")]))
    fresh.join(1.0)
    assert fresh.is_alive(), "the second reconcile of a type must wait for the first"
    go_on.set()
    slow.join(10)
    fresh.join(10)

    [case] = Case.objects.filter(type="invoice_blocked", fingerprint="I9")
    assert case.status == "open"


def test_different_case_types_do_not_wait_for_each_other(
        transactional_db, django_db_serialized_rollback):
    finding_read, go_on = threading.Event(), threading.Event()

    def slow_findings():
        finding_read.set()
        assert go_on.wait(10)
        return []

    slow = _in_thread(lambda: rules.reconcile("invoice_blocked", slow_findings))
    assert finding_read.wait(10)
    other = _in_thread(lambda: rules.reconcile("dead_letter", lambda: []))
    other.join(5)
    assert not other.is_alive()
    go_on.set()
    slow.join(10)
