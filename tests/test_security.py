"""Security review as tests: production settings, headers, the permission matrix over every
URL and role, CSRF on every form, login throttling, secrets never shown twice or logged, and
an audit trail nobody can edit."""
import io
import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver

from exceptions.models import Case, CaseEntry, Queue
from ingestion.events import make_event, signed_request
from ingestion.models import Source
from opsview.models import ApiToken, AuditEvent

from .conftest import PASSWORD, ROLES, make_role_user

ROOT = Path(__file__).resolve().parent.parent
PRODUCTION_ENV = {
    "DEBUG": "0",
    "SECRET_KEY": "k3y-" + "x7Yq9pL2vR8sT4wZ6bN1mC5dF0gH3jK" * 2,
    "ALLOWED_HOSTS": "opsview.example.com",
}


def django_subprocess(args, extra_env):
    # The browser tests set DJANGO_ALLOW_ASYNC_UNSAFE in this process, and pytest sets
    # PYTEST_VERSION; production has neither.
    env = {k: v for k, v in os.environ.items()
           if k not in ("DEBUG", "SECRET_KEY", "DJANGO_ALLOW_ASYNC_UNSAFE", "PYTEST_VERSION")}
    env.update(extra_env)
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)


# --- Production settings ------------------------------------------------------------------
def test_check_deploy_is_clean_with_production_settings():
    result = django_subprocess(["manage.py", "check", "--deploy", "--fail-level", "WARNING"],
                               PRODUCTION_ENV)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


@pytest.mark.parametrize("entry", [["manage.py", "check"], ["-c", "import config.wsgi"]],
                         ids=["manage.py", "wsgi"])
@pytest.mark.parametrize("key", [None, "opsview-insecure-demo-key-set-SECRET_KEY-in-production",
                                 "change-me-in-production"],
                         ids=["no-key", "demo-key", "compose-key"])
def test_production_refuses_to_start_without_its_own_secret_key(entry, key):
    env = {"DEBUG": "0", "ALLOWED_HOSTS": "opsview.example.com",
           "DJANGO_SETTINGS_MODULE": "config.settings"}
    if key:
        env["SECRET_KEY"] = key
    result = django_subprocess(entry, env)
    assert result.returncode != 0, result.stdout
    assert "SECRET_KEY" in result.stderr.strip().splitlines()[-1], result.stderr[-500:]


def test_the_demo_and_a_real_key_start():
    assert django_subprocess(["manage.py", "check"], {"DEBUG": "1"}).returncode == 0
    result = django_subprocess(["manage.py", "check"], PRODUCTION_ENV)
    assert result.returncode == 0, result.stderr


def test_check_deploy_flags_the_demo_settings():
    """The same check fails where it should: the embedded demo is not a production setup."""
    result = django_subprocess(["manage.py", "check", "--deploy", "--fail-level", "WARNING"],
                               {"DEBUG": "1"})
    assert result.returncode != 0
    assert "security.W018" in result.stderr + result.stdout  # DEBUG on


def test_production_settings_harden_cookies_and_transport():
    code = ("import django, json; django.setup(); from django.conf import settings as s; "
            "print(json.dumps({k: getattr(s, k) for k in ['SESSION_COOKIE_SECURE', "
            "'CSRF_COOKIE_SECURE', 'SESSION_COOKIE_HTTPONLY', 'CSRF_COOKIE_HTTPONLY', "
            "'SECURE_HSTS_SECONDS', 'SECURE_SSL_REDIRECT', 'SECURE_HSTS_INCLUDE_SUBDOMAINS']}))")
    result = django_subprocess(["-c", code],
                               {**PRODUCTION_ENV, "DJANGO_SETTINGS_MODULE": "config.settings"})
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {
        "SESSION_COOKIE_SECURE": True, "CSRF_COOKIE_SECURE": True,
        "SESSION_COOKIE_HTTPONLY": True, "CSRF_COOKIE_HTTPONLY": True,
        "SECURE_HSTS_SECONDS": 31_536_000, "SECURE_SSL_REDIRECT": True,
        "SECURE_HSTS_INCLUDE_SUBDOMAINS": True,
    }


def test_every_response_carries_a_script_tight_content_security_policy(client, db):
    response = client.get("/accounts/login/")
    policy = dict(part.strip().split(" ", 1)
                  for part in response["Content-Security-Policy"].split(";"))
    assert policy["script-src"] == "'self'"
    assert policy["default-src"] == "'self'"
    assert policy["object-src"] == "'none'" and policy["frame-ancestors"] == "'none'"
    assert response["X-Frame-Options"] == "DENY"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Cross-Origin-Opener-Policy"] == "same-origin"
    assert response["Permissions-Policy"] == "camera=(), microphone=(), geolocation=(), payment=()"
    # The webhook's problem documents carry it too.
    assert "Content-Security-Policy" in client.post("/ingest/x/events", data="{}",
                                                    content_type="application/json")


def test_hsts_is_sent_over_https_when_configured(settings, db):
    settings.SECURE_HSTS_SECONDS = 31_536_000
    response = Client().get("/accounts/login/", secure=True)
    assert response["Strict-Transport-Security"].startswith("max-age=31536000")


def test_pages_hold_no_inline_script(client, logged_in):
    """Every <script> a page carries is the app's own file or inert JSON data."""
    logged_in("finance_ops")
    for url in ["/", "/readiness/", "/wip/", "/latency/", "/integration/", "/margin/",
                "/close/", "/reconciliation/", "/billing/", "/trends/", "/items/invoice/I1/",
                "/exceptions/", "/api/docs/", "/panels/overview_charts/", "/panels/close_summary/",
                "/panels/recon_summary/", "/panels/trend_wip/"]:
        html = client.get(url).content.decode()
        for tag, body in re.findall(r"<script([^>]*)>(.*?)</script>", html, re.S):
            assert 'src="/static/' in tag or 'type="application/json"' in tag, (url, tag)
            assert 'src="/static/' not in tag or not body.strip(), (url, tag)
        assert not re.search(r"\son[a-z]+=", html), url  # no inline event handlers


# --- Permission matrix ----------------------------------------------------------------------
def routes(patterns=None, prefix=""):
    """Every route of the project as (pattern, name); the admin is one entry."""
    for entry in get_resolver().url_patterns if patterns is None else patterns:
        if isinstance(entry, URLResolver):
            if str(entry.pattern) == "admin/":
                yield "admin/", "admin"
            else:
                yield from routes(entry.url_patterns, prefix + str(entry.pattern))
        elif isinstance(entry, URLPattern):
            yield prefix + str(entry.pattern), entry.name


ANONYMOUS = "anonymous"
ADMIN = "admin"
EVERYONE = [ANONYMOUS, *ROLES, ADMIN]
TRIAGERS = {"finance_ops", "delivery_ops", "integration", ADMIN}
LOGIN = "login"  # a redirect to the login page
PAGE_ROUTES = ["", "readiness/", "wip/", "latency/", "integration/", "margin/",
               "close/", "reconciliation/", "billing/", "trends/",
               "items/<str:kind>/<path:item_id>/", "panels/<str:name>/", "exceptions/",
               "exceptions/export.csv",
               "exceptions/<int:pk>/", "api/docs/", "exceptions/views/"]
API_ROUTES = ["api/v1/kpis/wip", "api/v1/kpis/invoice-readiness",
              "api/v1/kpis/posting-latency", "api/v1/kpis/utilization",
              "api/v1/kpis/integration-health", "api/v1/kpis/margin",
              "api/v1/kpis/receivables", "api/v1/kpis/billing", "api/v1/kpis/reconciliation",
              "api/v1/kpis/period-close", "api/v1/kpis/trends",
              "api/v1/exceptions", "api/v1/exceptions.csv", "api/v1/kpis/exceptions",
              "metrics"]
PUBLIC_ROUTES = ["accounts/login/", "ingest/schemas/", "ingest/schemas/<str:event_type>.json",
                 "api/schema/"]
# Routes with their own, separately tested rules: the webhook (signatures, tests/ingestion),
# logout (POST only, ends the session) and the mutations (below).
MUTATIONS = ["exceptions/bulk", "exceptions/<int:pk>/replay", "exceptions/<int:pk>/<str:action>",
             "integrations/cases/<int:pk>/retry", "integrations/cases/retry",
             # Triage round two (tests/exceptions/: test_triage_round_two.py,
             # test_saved_views.py, test_payload_correction.py).
             "exceptions/undo/<int:pk>", "exceptions/views/save",
             "exceptions/views/<int:pk>/<str:change>", "exceptions/<int:pk>/correct/<int:event_pk>"]
# Where the login lands (a redirect by role) and the filters' suggestions (a partial per
# kind): tests/exceptions/test_triage_round_two.py.
TRIAGE_OWN = ["start/", "exceptions/suggest/<str:kind>"]
# The write API: its matrix of action × role × token scope is
# tests/integrations/test_write_api.py::test_the_permission_matrix.
WRITE_API = ["api/v1/exceptions/<int:id>/actions"]
# Single sign-on: open (it is how one logs in), a 404 unless configured (tests/test_sso.py).
SSO = ["oidc/authenticate/", "oidc/callback/"]
OWN_RULES = ["ingest/<str:source>/events", "accounts/logout/", "admin/", *MUTATIONS, *WRITE_API,
             *SSO, *TRIAGE_OWN]


def test_the_matrix_covers_every_route():
    """A new route must be placed in the matrix before it can ship."""
    known = set(PAGE_ROUTES + API_ROUTES + PUBLIC_ROUTES + OWN_RULES)
    assert {pattern for pattern, _ in routes()} <= known


# Routes that need a parameter to answer at all.
REQUIRED_QUERY = {"api/v1/kpis/trends": "?metric=wip"}


def concrete(pattern, case):
    return "/" + (pattern.replace("<str:name>", "overview_cards")
                  .replace("<int:pk>", str(case.pk))
                  .replace("<str:event_type>", "time_entry.approved")
                  .replace("<str:kind>/<path:item_id>", "invoice/I1")) + REQUIRED_QUERY.get(
        pattern, "")


def client_as(role):
    client = Client()
    if role == ADMIN:
        client.force_login(User.objects.create_superuser("root", "root@example.com", PASSWORD))
    elif role != ANONYMOUS:
        client.force_login(make_role_user(f"{role}_matrix", role))
    return client


def expected_read(pattern, role):
    if pattern in PUBLIC_ROUTES:
        return 200
    if role == ANONYMOUS:
        return 401 if pattern in API_ROUTES else LOGIN
    return 200


@pytest.mark.parametrize("role", EVERYONE)
def test_read_routes_by_role(role, case):
    client = client_as(role)
    present = {pattern for pattern, _ in routes()}
    checked = 0
    for pattern in PAGE_ROUTES + API_ROUTES + PUBLIC_ROUTES:
        if pattern not in present:
            continue
        response = client.get(concrete(pattern, case))
        want = expected_read(pattern, role)
        if want == LOGIN:
            assert response.status_code == 302, pattern
            assert response["Location"].startswith("/accounts/login/"), pattern
        else:
            assert response.status_code == want, (pattern, response.status_code)
        checked += 1
    assert checked >= len(PAGE_ROUTES + API_ROUTES) + 3


@pytest.mark.parametrize("role", EVERYONE)
def test_the_admin_is_for_staff_only(role, db):
    response = client_as(role).get("/admin/ingestion/source/")
    if role == ADMIN:
        assert response.status_code == 200
    else:
        assert response.status_code == 302 and "login/" in response["Location"]


@pytest.mark.parametrize("role", EVERYONE)
@pytest.mark.parametrize("action", ["claim", "acknowledge", "comment", "resolve", "bulk"])
def test_mutations_by_role(role, action, case):
    client = client_as(role)
    before = CaseEntry.objects.count()
    if action == "bulk":
        response = client.post("/exceptions/bulk", {"action": "acknowledge", "ids": [case.pk]})
    else:
        response = client.post(f"/exceptions/{case.pk}/{action}",
                               {"comment": "checked", "code": "fixed"})
    if role == ANONYMOUS:
        assert response.status_code == 302 and "/accounts/login/" in response["Location"]
    elif role in TRIAGERS:
        assert response.status_code == 302, response.content
        assert CaseEntry.objects.count() > before  # done, and audited
        return
    else:
        assert response.status_code == 403
    assert CaseEntry.objects.count() == before


@pytest.mark.parametrize("role", EVERYONE)
@pytest.mark.parametrize("path", ["/integrations/cases/{pk}/retry", "/integrations/cases/retry"])
def test_retry_requests_by_role(role, path, case):
    """Refused to those who may not triage; for a triager, asked (or refused with a reason
    when no source takes retries) and audited either way on the case, never a 5xx."""
    response = client_as(role).post(path.format(pk=case.pk), {"ids": [case.pk]})
    if role == ANONYMOUS:
        assert response.status_code == 302 and "/accounts/login/" in response["Location"]
    elif role in TRIAGERS:
        assert response.status_code == 302
    else:
        assert response.status_code == 403


@pytest.mark.parametrize("role", EVERYONE)
def test_mutations_refuse_get(role, case):
    response = client_as(role).get(f"/exceptions/{case.pk}/claim")
    assert response.status_code in (302, 405)
    assert not CaseEntry.objects.exists()


def test_replay_by_role(case, db):
    from ingestion.models import InboxEvent, Source

    letter = InboxEvent.objects.create(source=Source.objects.create(slug="mulesoft", name="M"),
                                       status="dead", raw={"id": "e"}, errors=["envelope: x"])
    dead = Case.objects.create(type="dead_letter", fingerprint="mulesoft", title="Dead letters",
                               severity="medium", queue=Queue.objects.get(slug="integration"),
                               object_kind="source", object_id="mulesoft",
                               detail={"inbox_ids": [letter.pk]})
    assert client_as("executive").post(f"/exceptions/{dead.pk}/replay").status_code == 403
    assert client_as(ANONYMOUS).post(f"/exceptions/{dead.pk}/replay").status_code == 302
    assert client_as("integration").post(f"/exceptions/{dead.pk}/replay").status_code == 302
    assert CaseEntry.objects.filter(case=dead, action="comment").count() == 1


# --- CSRF -------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", ["/exceptions/{pk}/claim", "/exceptions/bulk",
                                  "/exceptions/{pk}/replay", "/accounts/logout/",
                                  "/integrations/cases/{pk}/retry", "/integrations/cases/retry"])
def test_every_session_mutation_needs_the_csrf_token(path, case):
    client = Client(enforce_csrf_checks=True)
    user = make_role_user("csrf_user", "finance_ops")
    client.force_login(user)
    response = client.post(path.format(pk=case.pk), {"action": "claim", "ids": [case.pk]})
    assert response.status_code == 403
    assert not CaseEntry.objects.exists()
    assert client.get("/").status_code == 200  # still logged in: logout was refused too


def test_login_needs_the_csrf_token(db):
    make_role_user("ann", "finance_ops")
    client = Client(enforce_csrf_checks=True)
    response = client.post("/accounts/login/", {"username": "ann", "password": PASSWORD})
    assert response.status_code == 403


def test_every_form_on_every_page_carries_the_csrf_token(client, case):
    logged_in_user = make_role_user("forms_user", "finance_ops")
    client.force_login(logged_in_user)
    pages = ["/", "/exceptions/", f"/exceptions/{case.pk}/"]
    forms = 0
    for url in pages:
        html = client.get(url).content.decode()
        for form in re.findall(r"<form\b[^>]*>.*?</form>", html, re.S):
            if re.search(r'method="post"', form, re.I):
                forms += 1
                assert 'name="csrfmiddlewaretoken"' in form, (url, form[:120])
        assert "X-CSRFToken" in html  # htmx requests send it from hx-headers
    assert forms >= 8  # logout, bulk bar and the case's actions
    client.logout()
    assert 'name="csrfmiddlewaretoken"' in client.get("/accounts/login/").content.decode()


# --- Login throttling -------------------------------------------------------------------------
def test_login_is_throttled_after_repeated_failures(client, settings, db):
    settings.LOGIN_FAILURE_LIMIT = 3
    make_role_user("ann", "finance_ops")
    for _ in range(3):
        response = client.post("/accounts/login/", {"username": "ann", "password": "wrong"})
        assert response.status_code == 200
    # Blocked now, even with the right password.
    response = client.post("/accounts/login/", {"username": "Ann", "password": PASSWORD})
    assert response.status_code == 429
    assert 0 < int(response["Retry-After"]) <= settings.LOGIN_FAILURE_WINDOW
    assert b"Too many failed log-in attempts" in response.content
    assert client.get("/").status_code == 302  # not logged in
    assert AuditEvent.objects.filter(action="login.throttled", target="login-user:ann").exists()
    # Another user from elsewhere is not locked out by ann's failures.
    make_role_user("bob", "finance_ops")
    other = Client(REMOTE_ADDR="10.0.0.9")
    assert other.post("/accounts/login/", {"username": "bob",
                                           "password": PASSWORD}).status_code == 302


def test_one_address_is_throttled_across_usernames(client, settings, db):
    settings.LOGIN_IP_FAILURE_LIMIT = 4
    make_role_user("carol", "finance_ops")
    for n in range(4):
        client.post("/accounts/login/", {"username": f"guess{n}", "password": "x"})
    response = client.post("/accounts/login/", {"username": "carol", "password": PASSWORD})
    assert response.status_code == 429


def test_behind_the_proxy_each_client_address_is_throttled_apart(settings, db):
    """nginx (deploy/nginx) is every request's peer: the address counted is the one it
    sets in X-Real-IP, trusted only from a TRUSTED_PROXIES address."""
    settings.LOGIN_IP_FAILURE_LIMIT = 3
    settings.TRUSTED_PROXIES = ["127.0.0.0/8"]
    make_role_user("erin", "finance_ops")

    def login(real_ip, password="x", peer="127.0.0.1", username="erin"):
        return Client(REMOTE_ADDR=peer).post(
            "/accounts/login/", {"username": username, "password": password},
            headers={"X-Real-IP": real_ip})

    for n in range(3):
        login("203.0.113.7", username=f"guess{n}")
    assert login("203.0.113.7", PASSWORD).status_code == 429
    assert login("198.51.100.4", PASSWORD).status_code == 302  # another client: not blocked
    # From a peer that is not a trusted proxy the header is the client's own claim: ignored.
    for n in range(3):
        login(f"192.0.2.{n}", peer="10.9.9.9", username=f"other{n}")
    assert login("192.0.2.99", PASSWORD, peer="10.9.9.9").status_code == 429


def test_a_successful_login_clears_the_username_counter(client, settings, db):
    settings.LOGIN_FAILURE_LIMIT = 3
    make_role_user("dan", "finance_ops")
    for _ in range(2):
        client.post("/accounts/login/", {"username": "dan", "password": "wrong"})
    assert client.post("/accounts/login/", {"username": "dan",
                                            "password": PASSWORD}).status_code == 302
    client.logout()
    for _ in range(2):
        client.post("/accounts/login/", {"username": "dan", "password": "wrong"})
    assert client.post("/accounts/login/", {"username": "dan",
                                            "password": PASSWORD}).status_code == 302


APPROVED = {"time_entry_id": "te-1", "project_id": "p-1", "person_id": "u-1",
            "work_date": "2026-11-02", "hours": "7.50", "billable": True}


def test_ingestion_is_rate_limited_per_source(client, db):
    source = Source.objects.create(slug="limited", name="Limited", rate_limit_per_minute=2)
    codes = []
    for n in range(3):
        body, headers = signed_request(source.secret, [make_event(
            "time_entry.approved", APPROVED, event_id=f"rl-{n}")])
        codes.append(client.post("/ingest/limited/events", data=body,
                                 content_type=headers.pop("content-type"),
                                 headers=headers).status_code)
    assert codes == [202, 202, 429]


def test_ingestion_is_accepted_while_the_rate_limit_cache_is_away(client, db, monkeypatch):
    """The counter fails open: an authenticated event is never refused for want of Redis."""
    from django.core.cache import cache

    def away(*args, **kwargs):
        raise ConnectionError("cache unavailable")

    source = Source.objects.create(slug="limited", name="Limited", rate_limit_per_minute=1)
    for name in ("add", "incr", "set"):
        monkeypatch.setattr(cache, name, away)
    for n in range(3):
        body, headers = signed_request(source.secret, [make_event(
            "time_entry.approved", APPROVED, event_id=f"away-{n}")])
        response = client.post("/ingest/limited/events", data=body,
                               content_type=headers.pop("content-type"), headers=headers)
        assert response.status_code == 202, response.content


# --- Secrets ------------------------------------------------------------------------------------
@pytest.fixture
def admin_client(db):
    return client_as(ADMIN)


def test_source_secrets_are_never_rendered_in_the_admin(admin_client, db):
    source = Source.objects.create(slug="boomi", name="Boomi")
    source.rotate_secret()
    for url in ["/admin/ingestion/source/", f"/admin/ingestion/source/{source.pk}/change/"]:
        html = admin_client.get(url).content.decode()
        assert source.secret not in html and source.previous_secret not in html
        assert source.secret.removeprefix("whsec_")[:12] not in html


def test_rotating_a_secret_shows_it_once_uncached_and_audited(admin_client, db):
    source = Source.objects.create(slug="boomi", name="Boomi")
    old = source.secret
    response = admin_client.post("/admin/ingestion/source/", {
        "action": "rotate_secret", "_selected_action": [source.pk]})
    source.refresh_from_db()
    assert source.secret != old and source.previous_secret == old
    html = response.content.decode()
    assert html.count(source.secret) == 1 and old not in html
    assert "no-store" in response["Cache-Control"]
    assert all(source.secret not in morsel.value for morsel in response.cookies.values())
    # It is not waiting in a message for the next page either.
    assert source.secret not in admin_client.get("/admin/").content.decode()
    event = AuditEvent.objects.get(action="source.secret_rotated")
    assert event.actor_label == "root" and event.target == "source:boomi"
    assert source.secret not in json.dumps(event.detail)


def test_admin_changes_to_sources_are_audited(admin_client, db):
    source = Source.objects.create(slug="boomi", name="Boomi")
    admin_client.post(f"/admin/ingestion/source/{source.pk}/change/", {
        "slug": "boomi", "name": "Boomi", "rate_limit_per_minute": 10, "stale_after_minutes": 60})
    source.refresh_from_db()
    assert source.rate_limit_per_minute == 10
    event = AuditEvent.objects.get(action="source.changed")
    assert event.detail["fields"] == ["rate_limit_per_minute", "stale_after_minutes"] or \
        "rate_limit_per_minute" in event.detail["fields"]
    admin_client.post("/admin/ingestion/source/", {
        "action": "retire_previous_secret", "_selected_action": [source.pk]})
    assert AuditEvent.objects.filter(action="source.previous_secret_retired").count() == 1


def test_api_tokens_are_shown_once_and_stored_hashed(admin_client, db):
    user = make_role_user("reader", "executive")
    response = admin_client.post("/admin/opsview/apitoken/add/",
                                 {"user": user.pk, "name": "bi-tool", "scopes": "read"})
    token = re.search(r"<code>(opv_[^<]+)</code>", response.content.decode()).group(1)
    stored = ApiToken.objects.get()
    assert token not in (stored.token_hash, stored.token_hint) and len(stored.token_hash) == 64
    assert "no-store" in response["Cache-Control"]
    assert ApiToken.authenticate(token) == user
    html = admin_client.get(f"/admin/opsview/apitoken/{stored.pk}/change/").content.decode()
    assert token not in html and stored.token_hash not in html
    assert AuditEvent.objects.filter(action="api_token.created", target=f"api-token:{stored.pk}")
    admin_client.post(f"/admin/opsview/apitoken/{stored.pk}/change/",
                      {"user": user.pk, "name": "bi-tool", "scopes": "read", "revoked": "on"})
    assert ApiToken.authenticate(token) is None
    assert AuditEvent.objects.filter(action="api_token.revoked").count() == 1


def test_secrets_and_passwords_are_never_logged(client, caplog, db):
    source = Source.objects.create(slug="boomi", name="Boomi")
    make_role_user("erin", "finance_ops")
    with caplog.at_level(logging.DEBUG):
        body, headers = signed_request("whsec_" + "A" * 44,
                                       [make_event("time_entry.approved", APPROVED)])
        client.post("/ingest/boomi/events", data=body, content_type=headers.pop("content-type"),
                    headers=headers)  # a bad signature
        body, headers = signed_request(source.secret, [make_event("time_entry.approved", APPROVED)])
        client.post("/ingest/boomi/events", data=body, content_type=headers.pop("content-type"),
                    headers=headers)
        for _ in range(6):
            client.post("/accounts/login/", {"username": "erin", "password": "s3cret-guess"})
    logged = caplog.text + json.dumps([r.__dict__.get("args") for r in caplog.records],
                                      default=str)
    assert source.secret not in logged and source.secret.removeprefix("whsec_") not in logged
    assert "s3cret-guess" not in logged
    assert "login throttled" in caplog.text  # the throttle is logged, without the password


# --- Audit trail ------------------------------------------------------------------------------
def test_audit_events_cannot_be_changed_or_deleted_in_the_admin(admin_client, db):
    event = AuditEvent.objects.create(actor_label="root", action="source.created",
                                      target="source:x")
    base = f"/admin/opsview/auditevent/{event.pk}"
    assert admin_client.get(f"{base}/change/").status_code == 200  # viewable
    assert admin_client.post(f"{base}/change/", {"action": "forged"}).status_code == 403
    assert admin_client.post(f"{base}/delete/", {"post": "yes"}).status_code == 403
    admin_client.post("/admin/opsview/auditevent/", {
        "action": "delete_selected", "_selected_action": [event.pk], "post": "yes"})
    event.refresh_from_db()
    assert event.action == "source.created"
    with pytest.raises(Exception, match="cannot be changed"):
        event.save()
    with pytest.raises(Exception, match="cannot be deleted"):
        event.delete()


def test_no_view_edits_case_history(client, case):
    user = make_role_user("fin", "finance_ops")
    client.force_login(user)
    client.post(f"/exceptions/{case.pk}/comment", {"comment": "first"})
    entry = CaseEntry.objects.get(action="comment")
    # There is no route that takes an entry: every mutation appends.
    assert all("entry" not in pattern for pattern, _ in routes())
    client.post(f"/exceptions/{case.pk}/comment", {"comment": "second"})
    entry.refresh_from_db()
    assert entry.comment == "first"
    assert CaseEntry.objects.filter(case=case, action="comment").count() == 2


def test_replaying_dead_letters_is_audited(deliver, db):
    from django.core.management import call_command

    deliver.send({"specversion": "1.0", "id": "bad", "source": "s", "type": "x.y"})  # no time
    call_command("replay", "--all", stdout=io.StringIO())
    event = AuditEvent.objects.get(action="inbox.dead_letters_replayed")
    assert event.actor_label == "command:replay" and len(event.detail["ids"]) == 1
    assert "replayed" in event.detail and "dead" in event.detail


def test_login_still_works_while_the_cache_is_away(client, db, monkeypatch):
    """A cache outage neither locks people out nor turns the login page into a 500."""
    from django.core.cache import cache

    def away(*args, **kwargs):
        raise ConnectionError("cache unavailable")

    make_role_user("gil", "executive")
    for name in ("get", "add", "incr", "delete"):
        monkeypatch.setattr(cache, name, away)
    assert client.post("/accounts/login/", {"username": "gil", "password": "no"}).status_code == 200
    assert client.post("/accounts/login/", {"username": "gil",
                                            "password": PASSWORD}).status_code == 302


def test_close_calendar_changes_in_the_admin_are_audited(admin_client, db):
    from opsview.models import CloseCalendar

    response = admin_client.post("/admin/opsview/closecalendar/add/", {
        "legal_entity": "UK", "cutoff_working_day": 4,
        "holidays-TOTAL_FORMS": 1, "holidays-INITIAL_FORMS": 0,
        "holidays-MIN_NUM_FORMS": 0, "holidays-MAX_NUM_FORMS": 1000,
        "holidays-0-date": "2026-04-06", "holidays-0-name": "Easter Monday"})
    assert response.status_code == 302, response.content[:500]
    calendar = CloseCalendar.objects.get(legal_entity="UK")
    assert list(calendar.holidays.values_list("name", flat=True)) == ["Easter Monday"]
    events = {e.action: e for e in AuditEvent.objects.filter(target="close-calendar:UK")}
    assert set(events) == {"close_calendar.created", "close_calendar.holidays_changed"}
    assert events["close_calendar.holidays_changed"].detail["added"] == ["2026-04-06"]
    # A working day the calendar cannot have is refused and changes nothing.
    admin_client.post(f"/admin/opsview/closecalendar/{calendar.pk}/change/", {
        "legal_entity": "UK", "cutoff_working_day": 0,
        "holidays-TOTAL_FORMS": 0, "holidays-INITIAL_FORMS": 0,
        "holidays-MIN_NUM_FORMS": 0, "holidays-MAX_NUM_FORMS": 1000})
    calendar.refresh_from_db()
    assert calendar.cutoff_working_day == 4
    assert client_as("finance_ops").get("/admin/opsview/closecalendar/").status_code == 302
