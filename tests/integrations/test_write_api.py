"""POST /api/v1/exceptions/{id}/actions: the case page's triage actions for machines, and
the signed case webhook a ticketing system mirrors cases with."""
import json

import pytest
from django.contrib.auth.models import User
from django.test import Client
from standardwebhooks.webhooks import Webhook

from exceptions.models import CaseEntry
from integrations.models import CaseWebhook, Delivery
from opsview.models import ApiToken
from tests.conftest import ROLES, make_role_user

ACTIONS = ["claim", "assign", "acknowledge", "wait", "resolve", "ignore", "reopen", "comment"]
SCOPES = ["read", "triage", "read triage"]
TRIAGERS = {"finance_ops", "delivery_ops", "integration", "admin"}
BODIES = {"assign": {"owner": "ann"}, "resolve": {"code": "fixed_upstream"},
          "comment": {"comment": "looked at it"}, "wait": {"comment": "on the ERP team"}}


def act(client, case, action, token=None, **fields):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return client.post(f"/api/v1/exceptions/{case.pk}/actions",
                       data=json.dumps({"action": action, **fields}),
                       content_type="application/json", headers=headers)


def user_for(role):
    if role == "admin":
        return User.objects.create_superuser("root", "root@example.com", "x")
    return make_role_user(f"{role}_api", role)


@pytest.fixture
def ann(db):
    return make_role_user("ann", "finance_ops")


@pytest.mark.parametrize("scopes", SCOPES)
@pytest.mark.parametrize("role", [*ROLES, "admin"])
def test_the_permission_matrix(role, scopes, case, ann, client):
    """Every action × every role × every token scope: done (and audited) only by a user
    who may triage holding a token with the triage scope; otherwise a 403 problem that
    names what is missing, and nothing written."""
    _, token = ApiToken.issue(user_for(role), scopes=scopes)
    allowed = role in TRIAGERS and "triage" in scopes.split()
    for action in ACTIONS:
        case.status = "resolved" if action == "reopen" else "open"
        case.save()
        before = CaseEntry.objects.count()
        response = act(client, case, action, token, **BODIES.get(action, {}))
        if allowed:
            assert response.status_code == 200, (action, response.content)
            body = response.json()
            assert body["entries"] and CaseEntry.objects.count() > before
            assert body["case"]["id"] == case.pk
        else:
            assert response.status_code == 403, (role, scopes, action)
            assert response["Content-Type"] == "application/problem+json"
            named = response.json()["errors"][0].split(":")[0]
            assert named == ("scope" if "triage" not in scopes.split() else "permission")
            assert CaseEntry.objects.count() == before


def test_the_api_writes_what_the_case_page_writes(case, ann, client):
    _, token = ApiToken.issue(ann, scopes="triage")
    body = act(client, case, "assign", token, owner="ann").json()
    assert body["case"]["owner"] == "ann"
    assert body["entries"] == [{"at": body["entries"][0]["at"], "actor": "ann",
                                "action": "assigned", "field": "owner", "from": None,
                                "to": "ann", "comment": None}]
    body = act(client, case, "resolve", token, code="fixed", comment="posted by hand").json()
    assert (body["case"]["status"], body["case"]["resolution_code"]) == ("resolved", "fixed")
    resolved = case.entries.filter(action="resolved").values_list("field", "to_value",
                                                                   "comment")
    by_api = list(resolved)
    page = Client()
    page.force_login(make_role_user("bo", "finance_ops"))
    assert page.post(f"/exceptions/{case.pk}/reopen").status_code == 302
    page.post(f"/exceptions/{case.pk}/resolve", {"code": "fixed", "comment": "posted by hand"})
    assert list(resolved.all()) == by_api * 2  # the page wrote the same entries


@pytest.mark.parametrize("body, status, field", [
    ("not json", 400, "body"), ("[1]", 400, "body"),
    ('{"action": "explode"}', 400, "action"), ('{"action": ["claim"]}', 400, "action"),
    ('{"action": "resolve", "code": "because"}', 400, "code"),
    ('{"action": "comment", "comment": "  "}', 400, "comment"),
    ('{"action": "comment", "comment": 5}', 400, "comment"),
    ('{"action": "assign", "owner": "nobody-here"}', 400, "owner"),
    ('{"action": "reopen"}', 409, "status"),  # the case is open
])
def test_refusals_are_problem_documents_naming_the_field(case, ann, client, body, status, field):
    _, token = ApiToken.issue(ann, scopes="triage")
    response = client.post(f"/api/v1/exceptions/{case.pk}/actions", data=body,
                           content_type="application/json",
                           headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == status
    assert response["Content-Type"] == "application/problem+json"
    assert response.json()["errors"][0].startswith(f"{field}:")


def test_an_executive_cannot_own_a_case(case, ann, client):
    make_role_user("cfo", "executive")
    _, token = ApiToken.issue(ann, scopes="triage")
    response = act(client, case, "assign", token, owner="cfo")
    assert response.status_code == 409 and response.json()["errors"][0].startswith("owner:")


def test_unknown_case_other_methods_and_no_credentials(case, ann, client):
    _, token = ApiToken.issue(ann, scopes="triage")
    assert client.post("/api/v1/exceptions/999999/actions", data='{"action": "claim"}',
                       content_type="application/json",
                       headers={"Authorization": f"Bearer {token}"}).status_code == 404
    response = client.get(f"/api/v1/exceptions/{case.pk}/actions")
    assert response.status_code == 405 and response["Allow"] == "POST"
    assert act(client, case, "claim").status_code == 401
    # A read-scoped token still reads; existing tokens got `read` in the migration.
    _, read_token = ApiToken.issue(ann)
    assert client.get("/api/v1/exceptions", headers={
        "Authorization": f"Bearer {read_token}"}).status_code == 200
    _, triage_only = ApiToken.issue(ann, scopes="triage")
    assert client.get("/api/v1/exceptions", headers={
        "Authorization": f"Bearer {triage_only}"}).status_code == 403


def test_a_session_needs_its_csrf_token(case, ann):
    client = Client(enforce_csrf_checks=True)
    client.force_login(ann)
    response = act(client, case, "claim")
    assert response.status_code == 403 and response.json()["errors"] == [
        "csrf: missing or incorrect"]
    client.get("/exceptions/")  # sets the CSRF cookie
    response = client.post(f"/api/v1/exceptions/{case.pk}/actions", '{"action": "claim"}',
                           content_type="application/json",
                           headers={"X-CSRFToken": client.cookies["csrftoken"].value})
    assert response.status_code == 200


def test_every_change_is_mirrored_to_the_case_webhook(case, ann, client, receiver,
                                                      django_capture_on_commit_callbacks):
    hook = CaseWebhook.objects.create(name="ticketing", url=receiver.url)
    _, token = ApiToken.issue(ann, scopes="triage")
    with django_capture_on_commit_callbacks(execute=True):
        act(client, case, "claim", token)
        act(client, case, "comment", token, comment="escalated to ERP")
        act(client, case, "resolve", token, code="fixed")
    events = [Webhook(hook.secret).verify(r["body"], r["headers"]) for r in receiver.received]
    assert [e["type"] for e in events] == ["opsview.case.changed"] * 3
    assert [e["data"]["action"] for e in events] == ["assigned", "comment", "resolved"]
    assert events[-1]["data"]["case"]["status"] == "resolved"
    assert events[0]["data"]["case"]["owner"] == "ann"
    assert not Delivery.objects.exclude(status="delivered").exists()
