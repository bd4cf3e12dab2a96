"""Which reads the router sends to the replica; tests/test_replica.py runs it against a real
streaming replica."""
import contextvars

import pytest
from django.contrib.auth.models import User
from django.contrib.sessions.models import Session
from django.db import connections, router
from django.test import RequestFactory
from django.urls import resolve

from core import dbrouting
from ingestion.models import Source
from opsview.models import ApiToken, AuditEvent, Project


@pytest.mark.parametrize("method, path, routed", [
    ("GET", "/", True),
    ("GET", "/wip/", True),
    ("HEAD", "/trends/", True),
    ("GET", "/panels/wip_summary/", True),
    ("GET", "/items/time_entry/T1/", True),
    ("GET", "/api/v1/kpis/wip", True),
    ("GET", "/api/v1/exceptions", True),
    ("POST", "/api/v1/exceptions/1/actions", False),
    ("POST", "/wip/", False),
    ("GET", "/exceptions/", False),
    ("GET", "/exceptions/1/", False),
    ("GET", "/admin/", False),
    ("GET", "/accounts/login/", False),
    ("GET", "/ingest/schemas/", False),
    ("GET", "/metrics", False),
])
def test_only_dashboard_pages_and_the_read_api_read_from_the_replica(method, path, routed):
    request = RequestFactory().generic(method, path)
    request.resolver_match = resolve(path)
    assert dbrouting._routed(request) is routed


def in_routed_request(check):
    """Run `check` as a routed request's code would, in a context of its own."""

    def routed():
        dbrouting._wrote.set(False)
        dbrouting._reads_on_replica.set(True)
        return check()

    return contextvars.copy_context().run(routed)


def test_reads_of_a_routed_request_go_to_the_replica_until_it_writes():
    def check():
        before = router.db_for_read(Project)
        assert router.db_for_write(Source) == "default"
        return before, router.db_for_read(Project)

    assert in_routed_request(check) == ("replica", "default")


def test_an_object_read_from_the_replica_is_saved_to_the_primary():
    def check():
        read = Project(project_id="P1")
        read._state.db = "replica"
        return (router.db_for_write(Project, instance=read),
                router.db_for_read(Project, instance=read))

    assert in_routed_request(check) == ("default", "default")


@pytest.mark.parametrize("model", [Session, User, ApiToken, AuditEvent])
def test_login_session_and_credentials_stay_on_the_primary_and_do_not_pin(model):
    def check():
        on = router.db_for_read(model)
        router.db_for_write(model)  # a session saved, a token's last use recorded
        return on, router.db_for_read(Project)

    assert in_routed_request(check) == ("default", "replica")


def test_outside_a_routed_request_everything_is_the_primary():
    # The worker, the rules, management commands: no request opened a routing context.
    assert router.db_for_read(Project) == "default"
    router.db_for_write(Project)
    assert dbrouting._wrote.get() is None
    assert router.allow_migrate("default", "opsview") and not router.allow_migrate(
        "replica", "opsview")


def test_without_a_replica_the_api_and_pages_answer_as_before(logged_in, client):
    assert "replica" not in connections
    logged_in()
    for url in ("/wip/", "/api/v1/kpis/wip"):
        response = client.get(url)
        assert response.status_code == 200
        assert dbrouting.LAG_HEADER not in response
        assert dbrouting.PIN_COOKIE not in response.cookies
        assert "lagging" not in response.content.decode()
