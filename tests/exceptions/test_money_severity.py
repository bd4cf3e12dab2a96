"""Severity by money at stake: admin thresholds per currency, and money sorted within its
currency."""
from decimal import Decimal

import pytest
from django.core.management import call_command

from exceptions import rules, services
from exceptions.models import Case, CaseEntry, MoneyThreshold, Queue
from exceptions.rules import Finding


@pytest.fixture
def thresholds(db):
    MoneyThreshold.objects.create(currency="EUR", amount=Decimal("25000"), severity="high")
    MoneyThreshold.objects.create(currency="eur", amount=Decimal("100000"), severity="critical")
    MoneyThreshold.objects.create(currency="USD", amount=Decimal("50000"), severity="high")


def test_severity_is_raised_to_the_highest_threshold_reached_in_its_currency(thresholds):
    levels = services.money_thresholds()
    assert services.severity_for_money("medium", Decimal("133604"), "EUR", levels) == "critical"
    assert services.severity_for_money("medium", Decimal("30000"), "EUR", levels) == "high"
    # The same number in another currency is compared with that currency's thresholds.
    assert services.severity_for_money("medium", Decimal("30000"), "USD", levels) == "medium"
    assert services.severity_for_money("low", Decimal("99999999"), "GBP", levels) == "low"
    # Never lowered.
    assert services.severity_for_money("high", Decimal("0"), "USD", levels) == "high"
    assert services.severity_for_money("medium", None, "EUR", levels) == "medium"


def test_a_new_case_opens_at_the_severity_its_money_reaches(thresholds):
    rules.reconcile("invoice_blocked", lambda: [Finding(
        fingerprint="I9", title="Invoice I9 blocked", object_kind="invoice", object_id="I9",
        money=Decimal("133604.00"), currency="EUR", severity="medium")])
    assert Case.objects.get(fingerprint="I9").severity == "critical"


def test_open_cases_are_raised_when_a_threshold_is_added_and_it_is_audited(case):
    case.money_at_stake, case.currency, case.severity = Decimal("60000"), "USD", "medium"
    case.save()
    assert services.apply_money_thresholds() == 0  # no thresholds yet
    MoneyThreshold.objects.create(currency="USD", amount=Decimal("50000"), severity="high")
    assert services.apply_money_thresholds() == 1
    case.refresh_from_db()
    assert case.severity == "high"
    assert CaseEntry.objects.filter(case=case, action="severity_by_money", field="severity",
                                    from_value="medium", to_value="high").exists()


def test_setup_demo_seeds_thresholds_once(db):
    call_command("seed_money_thresholds", stdout=None)
    call_command("seed_money_thresholds", stdout=None)
    assert MoneyThreshold.objects.filter(currency="EUR").count() == 2


def test_money_sorts_within_a_currency(client, logged_in):
    logged_in("finance_ops")
    queue = Queue.objects.get(slug="finance-ops")
    for name, money, currency in [("usd-small", 10, "USD"), ("eur-big", 133604, "EUR"),
                                  ("usd-big", 9000, "USD"), ("gbp", 500, "GBP"),
                                  ("none", None, "")]:
        case = Case(type="invoice_blocked", fingerprint=name, title=name, queue=queue,
                    object_kind="invoice", object_id=name, money_at_stake=money,
                    currency=currency)
        services.refresh_sla(case)
        case.save()
    titles = [c.title for c in client.get("/exceptions/?sort=money").context["page"]]
    assert titles == ["eur-big", "gbp", "usd-big", "usd-small", "none"]


def test_saving_a_threshold_in_the_admin_raises_open_cases(client, case):
    from django.contrib.auth.models import User

    admin = User.objects.create_superuser("boss", "boss@example.com", "pw-boss-12345")
    client.force_login(admin)
    case.money_at_stake, case.currency, case.severity = Decimal("60000"), "GBP", "medium"
    case.save()
    response = client.post("/admin/exceptions/moneythreshold/add/",
                           {"currency": "gbp", "amount": "50000", "severity": "critical"})
    assert response.status_code == 302
    assert MoneyThreshold.objects.get().currency == "GBP"
    case.refresh_from_db()
    assert case.severity == "critical"
    assert CaseEntry.objects.get(case=case, action="severity_by_money").actor == admin
    for page in ("moneythreshold", "savedview", "payloadcorrection"):
        assert client.get(f"/admin/exceptions/{page}/").status_code == 200
