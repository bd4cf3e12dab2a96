"""The demo a newcomer runs: demo users, a simulated small firm, every panel alive."""
import datetime as dt
from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import call_command

from exceptions.models import Case, CaseType
from reporting import kpis
from tests.conftest import screenshot

END = "2026-11-20"


def build_demo():
    call_command("setup_demo", stdout=StringIO())
    call_command("simulate", "--size", "small", "--end", END, "--process", stdout=StringIO())
    call_command("process_inbox", stdout=StringIO())


def test_the_demo_firm_fills_every_kpi_and_opens_every_kind_of_case(db):
    build_demo()
    open_types = set(Case.objects.filter(status__in=Case.OPEN_STATES)
                     .values_list("type", flat=True))
    assert open_types == set(CaseType.values)
    end = dt.date.fromisoformat(END)
    month = {"start": end.replace(day=1), "end": end}
    wip = kpis.wip(as_of=end)
    assert all(Decimal(c["total"]) > 0 for c in wip["currencies"].values())
    readiness = kpis.invoice_readiness(period=END[:7], first_day=month["start"], last_day=end)
    assert readiness["blocked_invoices"]["count"] > 0
    assert any(Decimal(c["ready_value"]) > 0 for c in readiness["currencies"].values())
    latency = kpis.posting_latency(**month)
    assert latency["count"] > 0 and latency["backlog"]["count"] > 0
    assert Decimal(kpis.utilization(**month)["billable_hours"]) > 0
    health = kpis.integration_health(start=dt.datetime(2026, 11, 1, tzinfo=dt.UTC),
                                     end=dt.datetime(2026, 11, 21, tzinfo=dt.UTC))
    assert health["flows"] and health["reconciliation_gaps"] and health["inbox"]["dead"]
    assert any(Decimal(r["earned_revenue"]) > 0 for r in kpis.margin(**month)["rows"])
    assert kpis.receivables(as_of=end)["currencies"]


@pytest.mark.browser
@pytest.mark.parametrize("username", ["finance", "delivery", "integration", "cfo"])
def test_each_demo_role_logs_in_and_sees_the_overview(page, username):
    build_demo()
    page.goto(page.base_url + "/accounts/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", "opsview-demo")
    page.click("button[type=submit]")
    page.wait_for_url(lambda url: "/accounts/login" not in url)
    page.goto(page.base_url + f"/?period={END[:7]}")
    page.wait_for_selector(".main-svg")
    page.wait_for_load_state("networkidle")
    assert page.locator(".panel-overview_cards .kpi").count() >= 6
    screenshot(page, f"demo-overview-{username}")
